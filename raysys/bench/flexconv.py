"""``bench flexconv``: FlexNet-7 training steps on the direct, the FFT and the automatic conv path.

One process, no Ray: FlexNet-7 (the ``flexconv/cifar10-flexnet7`` preset: FlexConv +
MAGNet, horizon 33) trained with the FlexConv recipe (Adam, mask-parameter group,
kernel-L2 loss) on one fixed random batch. Six cases, interleaved round by round:
``flexconv.conv.use_fft`` false (direct ``F.conv2d``), true (rfft2) and auto (FFT from
``flexconv.conv.fft_min_kernel``), each at the mask's initial size (sigma 0.075: about 5x5 of
the 33x33 grid after dynamic cropping) and with fully grown masks (sigma 1: the whole
33x33 horizon). Every case has its own copy of the same initial weights. ``sizes`` and
``paths`` pick a subset (e.g. ``sizes=init paths=direct,auto``: many cheap repeats).
"""
from __future__ import annotations

import copy

import torch

from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.result import Goal
from raysys.bench.timing import compare, default_device, torch_threads
from raysys.errors import ConfigError

PRESET = "flexconv/cifar10-flexnet7"
PATHS = {"direct": "false", "fft": "true", "auto": "auto"}
# Mask sigma of the two sizes: the preset's init, and wide enough that cropping keeps the whole grid.
MASK_SIGMAS = {"init": None, "full": 1.0}
FULL_GOAL = Goal(">=", 3.0)
# "Never slower" at the initial size, with 5% for timing noise (both run the same direct path there).
INIT_GOAL = Goal(">=", 0.95)


class FlexNetSteps:
    """Each call: ``steps`` recipe training steps on a fixed batch; returns the images trained."""

    def __init__(self, cfg, model, images, labels, steps: int):
        from raysys.train.optim import build_optimizer
        from raysys.train.recipes import build_recipe

        self.recipe = build_recipe(cfg)
        self.model = model.to(memory_format=torch.channels_last).train()
        self.images = images.contiguous(memory_format=torch.channels_last)
        self.labels, self.steps = labels, steps
        self.optimizer = build_optimizer(cfg, self.recipe.param_groups(self.model), self.recipe.optimizer_weight_decay())

    def __call__(self) -> int:
        for _ in range(self.steps):
            loss, _ = self.recipe.loss(self.model, self.model(self.images), self.labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return self.steps * self.images.shape[0]


def kernel_sides(model) -> list:
    from raysys.families.flexconv.layers.ckconv import CKConv

    return sorted({max(m.kernel_size()) for m in model.modules() if isinstance(m, CKConv)})


def _set_mask_sigma(model, sigma) -> None:
    from raysys.families.flexconv.layers.ckconv import FlexConv

    if sigma is None:
        return
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, FlexConv):
                layer.mask_params[:, 1] = sigma


def selected(key: str, text: str, choices: dict) -> dict:
    """The entries of ``choices`` named in ``text`` (comma-separated), in ``choices``' order."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names or set(names) - set(choices):
        raise ConfigError(f"bad value {text!r} for benchmark parameter {key!r}: "
                          f"name one or more of {', '.join(choices)}, comma-separated")
    return {name: value for name, value in choices.items() if name in names}


@register_benchmark(
    "flexconv",
    help="FlexNet-7 training steps/s: direct vs FFT vs auto conv path, at the initial and the full mask size",
    full=dict(batch=64, size=32, steps=1, threads=2, repeats=3, warmup=1, weight_decay=0.0, fft_min_kernel=15,
              sizes="init,full", paths="direct,fft,auto"),
    quick=dict(batch=2, size=16, repeats=1),
)
def bench_flexconv(ctx: BenchContext) -> None:
    from raysys.config import load_config
    from raysys.models import InputSpec, build_model

    result, device = ctx.result, default_device()
    mask_sigmas = selected("sizes", ctx["sizes"], MASK_SIGMAS)
    paths = selected("paths", ctx["paths"], PATHS)
    cases, sides = {}, {}
    with torch_threads(ctx["threads"]):
        result.machine["torch_threads"] = torch.get_num_threads()
        images = torch.randn(ctx["batch"], 3, ctx["size"], ctx["size"], device=device)
        labels = torch.randint(0, 10, (ctx["batch"],), device=device)
        for path, use_fft in paths.items():
            cfg = load_config(PRESET, [f"flexconv.conv.use_fft={use_fft}", f"flexconv.conv.fft_min_kernel={ctx['fft_min_kernel']}",
                                       f"train.weight_decay={ctx['weight_decay']}"])
            torch.manual_seed(0)
            base = build_model(cfg, InputSpec(3, ctx["size"], 10)).to(device)
            for size, sigma in mask_sigmas.items():
                model = copy.deepcopy(base)
                _set_mask_sigma(model, sigma)
                name = f"{path}_{size}"
                cases[name] = FlexNetSteps(cfg, model, images, labels, ctx["steps"])
                sides[size] = kernel_sides(model)  # horizon 33: the grid is known before any forward
        samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"], device=device)
    for name, sample in samples.items():
        result.add_figure(name, "images/s", sample.rate().values)
    for size, goal in (("full", FULL_GOAL), ("init", INIT_GOAL)):
        for path, path_goal in (("auto", goal), ("fft", None)):
            if size in mask_sigmas and {path, "direct"} <= set(paths):
                result.add_ratio(f"{path}/direct {size}", f"{path}_{size}", f"direct_{size}", path_goal)
    result.notes.append(
        f"FlexNet-7 ({PRESET}), batch {ctx['batch']} of {ctx['size']}x{ctx['size']}, {ctx['steps']} Adam step(s) per "
        f"sample (FlexConv recipe, weight_decay {ctx['weight_decay']}), {ctx['threads']} torch threads, "
        f"device {device.type}, fp32, channels_last; kernel sides: {sides}; "
        f"auto uses the FFT from side {ctx['fft_min_kernel']}"
    )
