"""``bench mimo``: inference images/s of one MIMONet at n = 1, 2, 4 images per bundle.

One model (``MIMONet-<depth>``, HRR, capacity 4), one set of weights, one input batch
of ``batch`` random 32x32 images; only ``set_superposition(n)`` changes between the
cases. Eval mode, ``torch.inference_mode``, channels_last, interleaved repeats. The
paper's claim: bundling n images makes the body run on B/n maps, 2-4x faster at n=4.

For reference, the fused HRR bind + bundle (a 1x1 conv from n·C to C channels) is
timed against the original's formulation (a grouped ``Conv1d`` of kernel C with
circular padding through the channels of every pixel, then a sum), on the stem output.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.result import Goal
from raysys.bench.timing import compare, default_device, torch_threads

GOAL = Goal(">=", 2.5)
SUPERPOSITIONS = (1, 2, 4)


def build_mimonet(depth: int, width: int, initial_width: int, capacity: int = 4, binding: str = "HRR"):
    from raysys.families.mimoconv.models import DEPTHS, FAMILIES
    from raysys.families.mimoconv.models.network import SuperWideNet

    family = FAMILIES["MIMONet"]
    return SuperWideNet(DEPTHS[depth], 10, 3, width=width, initial_width=initial_width, activation=family.activation,
                        isometric=True, binding=binding, capacity=capacity)


def original_hrr_bundle(keys: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
    """The original's HRR bind (grouped circular Conv1d per pixel) then sum, for comparison."""
    capacity, channels = keys.shape
    b, c, h, w = x.shape
    grouped = x.reshape(b // n, n, c, h, w).repeat(1, capacity // n, 1, 1, 1)
    rows = grouped.permute(0, 3, 4, 1, 2).reshape(-1, capacity, c)
    padded = F.pad(rows, (c // 2, c // 2), mode="circular")
    bound = F.conv1d(padded, keys.unsqueeze(1), groups=capacity)[:, :, 1:]
    bound = bound.reshape(b // n, h, w, capacity, c).permute(0, 3, 4, 1, 2)
    return bound.sum(1)


def _inference_case(model, images, n: int, amp: bool):
    def run() -> float:
        model.set_superposition(n)
        autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            model(images)
        return float(images.shape[0])

    return run


def _bundle_cases(model, images, n: int) -> dict:
    with torch.inference_mode():
        stem = model.relu(model.bn1(model.conv1(images))).contiguous()
    keys = model.binding.keys.detach()

    def fused() -> float:
        with torch.inference_mode():
            model.binding(stem, n)
        return float(stem.shape[0])

    def original() -> float:
        with torch.inference_mode():
            original_hrr_bundle(keys, stem, n)
        return float(stem.shape[0])

    return {f"hrr_bundle_n{n}.fused": fused, f"hrr_bundle_n{n}.original_conv1d": original}


@register_benchmark(
    "mimo",
    help="images/s of one MIMONet (HRR, capacity 4) at n = 1, 2, 4 bundled images, same weights and input",
    full=dict(depth=28, width=10, initial_width=4, batch=32, torch_threads=2, repeats=3, warmup=1, amp=True),
    quick=dict(depth=10, width=1, initial_width=1, batch=8, repeats=1, warmup=1),
)
def bench_mimo(ctx: BenchContext) -> None:
    result, device = ctx.result, default_device()
    amp = bool(ctx["amp"]) and device.type == "cuda"
    with torch_threads(ctx["torch_threads"]):
        result.machine["torch_threads"] = torch.get_num_threads()
        torch.manual_seed(0)
        model = build_mimonet(ctx["depth"], ctx["width"], ctx["initial_width"]).to(device).eval()
        model = model.to(memory_format=torch.channels_last)
        images = torch.randn(ctx["batch"], 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
        parameters = sum(p.numel() for p in model.parameters())
        result.notes.append(f"MIMONet-{ctx['depth']}-{ctx['width']} (initial_width {ctx['initial_width']}, HRR, "
                            f"capacity 4): {parameters:,} parameters; batch {ctx['batch']}; amp={amp}")
        cases = {f"n{n}": _inference_case(model, images, n, amp) for n in SUPERPOSITIONS}
        samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"], device=device)
        for name, sample in samples.items():
            result.add_figure(name, "images/s", sample.rate().values)
        for n in SUPERPOSITIONS[1:]:
            result.add_ratio(f"n{n}/n1", f"n{n}", "n1", GOAL if n == 4 else None)

        bundle_cases = _bundle_cases(model, images, 4)
        bundle = compare(bundle_cases, repeats=ctx["repeats"], warmup=ctx["warmup"], device=device)
        for name, sample in bundle.items():
            result.add_figure(name, "images/s", sample.rate().values, "bind + bundle only, on the stem output")
        names = list(bundle_cases)
        result.add_ratio("hrr_bundle fused/original", names[0], names[1])
    result.notes.append("n images per bundle: the body runs on batch/n maps; the stem and the unbinding head on all")
