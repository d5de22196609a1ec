"""``make gpu-check``: does raysys work on this GPU node, and how fast? One JSON file and one Markdown table.

Two tiers (``--tier``):

* ``bare``: this file alone, on whatever torch + torchvision is installed (no Ray,
  MLflow or raysys imported), e.g. ``python raysys/bench/gpu.py --tier bare`` on a
  fresh GPU machine. The operations raysys leans on, synchronised on CUDA:
  FlexConv's two conv paths at the full 33x33 horizon (direct ``F.conv2d`` vs
  rfft2, checked equal), MIMO bundling throughput at n = 1, 2, 4, a STIR
  scale-pool layer's seconds per epoch beside a standard conv's, ResNet-50
  training steps in fp32 / AMP and contiguous / channels_last, and JPEG decoding
  on the CPU vs the GPU (``torchvision.io.decode_jpeg(device="cuda")``).
* ``full`` (the default of ``python -m raysys bench gpu``): the bare tier, then
  raysys itself on the node (:mod:`raysys.bench.gpu_full`): one short
  ``raysys train`` of each family's preset in fp32 and AMP, the ``flexconv``,
  ``mimo`` and ``stir`` benchmarks on CUDA, the Ray Data JPEG feed against
  torchvision's ImageFolder + DataLoader and against what a ResNet-50 step
  consumes, and DDP over NCCL across every GPU (skipped, and said so, with fewer than 2).

``--rehearse`` runs every step at tiny sizes on the CPU (the test suite does), so
the GPU path cannot rot; its figures mean nothing. A step that fails is recorded
as failed and the others still run; the exit status is 1 when any step failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

if __name__ == "__main__":  # run as a file: its folder on sys.path would shadow top-level modules
    _HERE = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

import torch
import torch.nn.functional as F
from torch import nn

TIERS = ("bare", "full")
SCHEMA = "raysys-gpu-check/1"
# The paper's figures each step is read against (where the references here give one).
PAPER_MIMO = "2-4x at N = 2-4 (MIMOConv paper; docs/mimoconv.md)"
PAPER_STIR = "pixel_pool about 80x standard on a GPU (STIR paper, Table 2; raysys/bench/stir.py)"


# -- sizes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """How big each step is: ``FULL`` fits the whole check in minutes on one GPU, ``REHEARSE`` in seconds on a CPU."""

    repeats: int
    warmup: int
    conv_batch: int
    conv_channels: int
    conv_size: int
    conv_kernel: int
    mimo_batch: int
    mimo_width: int
    mimo_blocks: int
    stir_batches: int
    stir_size: int
    resnet_batch: int
    resnet_size: int
    resnet_steps: int
    jpeg_images: int
    jpeg_size: tuple


FULL = Sizes(repeats=5, warmup=2, conv_batch=64, conv_channels=64, conv_size=32, conv_kernel=33,
             mimo_batch=256, mimo_width=160, mimo_blocks=4, stir_batches=4, stir_size=64,
             resnet_batch=64, resnet_size=224, resnet_steps=5, jpeg_images=256, jpeg_size=(500, 375))
REHEARSE = Sizes(repeats=1, warmup=1, conv_batch=2, conv_channels=4, conv_size=16, conv_kernel=33,
                 mimo_batch=8, mimo_width=8, mimo_blocks=1, stir_batches=1, stir_size=24,
                 resnet_batch=2, resnet_size=32, resnet_steps=1, jpeg_images=4, jpeg_size=(64, 48))


# -- the report -------------------------------------------------------------------------------
@dataclass
class Step:
    """One step's outcome: figures (median of repeats), ratios read against a claim, notes."""

    name: str
    status: str = "ok"  # ok | skipped | failed
    figures: Dict[str, dict] = field(default_factory=dict)
    ratios: Dict[str, dict] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def figure(self, name: str, unit: str, values: List[float], note: str = "") -> float:
        median = statistics.median(values)
        self.figures[name] = {"unit": unit, "median": median, "values": list(values), "note": note}
        return median

    def ratio(self, name: str, numerator: str, denominator: str, claim: str = "") -> float:
        value = self.figures[numerator]["median"] / self.figures[denominator]["median"]
        self.ratios[name] = {"value": value, "numerator": numerator, "denominator": denominator, "claim": claim}
        return value

    def skip(self, why: str) -> None:
        self.status = "skipped"
        self.notes.append(why)

    def to_json(self) -> dict:
        return {"status": self.status, "seconds": round(self.seconds, 2), "figures": self.figures,
                "ratios": self.ratios, "notes": self.notes}


@dataclass
class Check:
    """What every step gets: the device, the sizes, a scratch folder; the steps' outcomes."""

    device: torch.device
    sizes: Sizes
    workdir: Path
    rehearse: bool
    steps: Dict[str, Step] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def run(self, name: str, fn: Callable[["Check", Step], None]) -> Step:
        step = self.steps[name] = Step(name)
        begin = time.perf_counter()
        print(f"gpu-check: {name} ...", file=sys.stderr, flush=True)
        try:
            fn(self, step)
        except Exception as exc:  # noqa: BLE001 - a check reports every failure and goes on
            step.status = "failed"
            step.notes.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            step.notes.append(traceback.format_exc(limit=4))
        step.seconds = time.perf_counter() - begin
        print(f"gpu-check: {name} {step.status} in {step.seconds:.1f} s", file=sys.stderr, flush=True)
        return step

    @property
    def failed(self) -> List[str]:
        return [name for name, step in self.steps.items() if step.status == "failed"]


def environment(device: torch.device) -> Dict[str, Any]:
    """The versions and hardware the figures depend on."""
    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:
        vision = None
    env: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": vision,
        "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
        "cores": os.cpu_count(), "device": str(device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if torch.cuda.is_available():
        env["gpus"] = [
            {"name": torch.cuda.get_device_name(i), "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
             "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
            for i in range(torch.cuda.device_count())
        ]
        env["cudnn"] = torch.backends.cudnn.version()
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


# -- timing -----------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(cases: Dict[str, Callable[[], float]], device: torch.device, repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Work per second of each case, per repeat; cases alternate (ABBA) after ``warmup`` untimed rounds.

    A case runs once and returns the work it did (e.g. images). The clock is read
    after ``torch.cuda.synchronize``, so queued kernels count.
    """
    names = list(cases)
    rates: Dict[str, List[float]] = {name: [] for name in names}
    for number in range(warmup + repeats):
        for name in names if number % 2 == 0 else names[::-1]:
            sync(device)
            begin = time.perf_counter()
            work = cases[name]()
            sync(device)
            if number >= warmup:
                rates[name].append(work / max(time.perf_counter() - begin, 1e-9))
    return rates


def autocast(device: torch.device, enabled: bool):
    """fp16 autocast on CUDA; bf16 on the CPU (a rehearsal's stand-in); nothing when off."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


# -- step: FlexConv's conv paths ----------------------------------------------------------------
def fft_conv2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=k // 2)`` (odd square k, stride 1) computed with rfft2."""
    k = weight.shape[-1]
    h, w = x.shape[-2:]
    size = (h + k - 1, w + k - 1)
    # conv2d is a cross-correlation: the FFT product convolves, so the kernel is flipped.
    spectrum = torch.einsum("bihw,oihw->bohw", torch.fft.rfft2(x, s=size), torch.fft.rfft2(weight.flip(-2, -1), s=size))
    full = torch.fft.irfft2(spectrum, s=size)
    return full[..., k // 2:k // 2 + h, k // 2:k // 2 + w]


def step_conv_paths(check: Check, step: Step) -> None:
    s, device = check.sizes, check.device
    torch.manual_seed(0)
    x = torch.randn(s.conv_batch, s.conv_channels, s.conv_size, s.conv_size, device=device)
    weight = torch.randn(s.conv_channels, s.conv_channels, s.conv_kernel, s.conv_kernel, device=device) / s.conv_kernel
    error = (fft_conv2d(x, weight) - F.conv2d(x, weight, padding=s.conv_kernel // 2)).abs().max().item()
    scale = F.conv2d(x, weight, padding=s.conv_kernel // 2).abs().max().item()
    step.notes.append(f"max |fft - direct| = {error:.2e} (outputs up to {scale:.2e})")
    if error > 1e-3 * max(scale, 1.0):
        raise AssertionError(f"the FFT path disagrees with F.conv2d: max error {error:.3g}")
    w = weight.clone().requires_grad_(True)

    def train(conv) -> Callable[[], float]:
        def run() -> float:
            conv(x, w).square().mean().backward()
            return float(x.shape[0])
        return run

    rates = interleaved({"direct": train(lambda a, b: F.conv2d(a, b, padding=s.conv_kernel // 2)),
                         "fft": train(fft_conv2d)}, device, s.repeats, s.warmup)
    for name, values in rates.items():
        step.figure(name, "images/s", values, "forward + backward of one layer")
    step.ratio("fft/direct", "fft", "direct")
    step.notes.append(f"one {s.conv_channels}->{s.conv_channels} conv, {s.conv_kernel}x{s.conv_kernel} kernel "
                      f"(FlexConv's full horizon), batch {s.conv_batch} of {s.conv_size}x{s.conv_size}, fp32")


# -- step: MIMO bundling ----------------------------------------------------------------------
class BundledNet(nn.Module):
    """MIMO's shape of work: a per-image stem, n images bound into one map, a body on B/n maps, n heads.

    A stand-in for MIMONet (torch only): the 1x1 bind + bundle, a wide body of
    3x3 convs over three stages, then n linear heads from the pooled features.
    """

    def __init__(self, width: int, blocks: int, classes: int = 10, capacity: int = 4):
        super().__init__()
        self.capacity, self.classes, self.n = capacity, classes, 1
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bind = nn.Conv2d(capacity * width, width, 1, bias=False)
        layers: List[nn.Module] = []
        channels = width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                stride = 2 if stage and not block else 1
                layers += [nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, capacity * classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, n = images.shape[0], self.n
        stem = self.stem(images)
        grouped = stem.reshape(b // n, n * stem.shape[1], *stem.shape[2:])
        bound = self.bind(F.pad(grouped, (0, 0, 0, 0, 0, (self.capacity - n) * stem.shape[1])))
        pooled = self.body(bound).mean((2, 3))
        return self.head(pooled).reshape(b // n, self.capacity, self.classes)[:, :n].reshape(b, self.classes)


def step_mimo(check: Check, step: Step) -> None:
    s, device = check.sizes, check.device
    torch.manual_seed(0)
    model = BundledNet(s.mimo_width, s.mimo_blocks).to(device, memory_format=torch.channels_last).eval()
    images = torch.randn(s.mimo_batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)

    def infer(n: int) -> Callable[[], float]:
        def run() -> float:
            model.n = n
            with torch.inference_mode(), autocast(device, check.cuda):
                model(images)
            return float(images.shape[0])
        return run

    rates = interleaved({f"n{n}": infer(n) for n in (1, 2, 4)}, device, s.repeats, s.warmup)
    for name, values in rates.items():
        step.figure(name, "images/s", values)
    for n in (2, 4):
        step.ratio(f"n{n}/n1", f"n{n}", "n1", PAPER_MIMO)
    step.notes.append(f"a MIMO-shaped stand-in (width {s.mimo_width}, {3 * s.mimo_blocks} body convs), batch "
                      f"{s.mimo_batch} of 32x32, inference, channels_last, AMP={check.cuda}; "
                      "the full tier times the real MIMONet-28-10 (bench mimo)")


# -- step: STIR scale pooling -----------------------------------------------------------------
class ScalePoolConv(nn.Module):
    """One shared kernel resized (bicubic) to k, k+2, ...; a valid conv at each size, max over the sizes per pixel."""

    def __init__(self, cin: int, cout: int, k: int, input_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5)
        self.k, self.scales = k, (input_size - k) // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(self.scales):
            size = self.k + 2 * i
            kernel = F.interpolate(self.weight, size=(size, size), mode="bicubic", align_corners=False) * (self.k / size) ** 2
            outs.append(F.conv2d(x, kernel, padding=i))
        return torch.stack(outs, 2).amax(2)


def stir_model(kind: str, size: int, classes: int = 36) -> nn.Module:
    """STIR's two-layer network (16 and 32 channels, k = 7, max-pool 2), with plain or scale-pooled convs."""
    after_one = (size - 6) // 2

    def conv(cin: int, cout: int, at: int) -> nn.Module:
        return ScalePoolConv(cin, cout, 7, at) if kind == "pixel_pool" else nn.Conv2d(cin, cout, 7)

    return nn.Sequential(conv(1, 16, size), nn.ReLU(), nn.MaxPool2d(2), conv(16, 32, after_one), nn.ReLU(),
                         nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, classes))


def step_stir(check: Check, step: Step) -> None:
    s, device = check.sizes, check.device
    epoch_images, batch = 576, 16  # scenario 2 of STIR: 576 train images per epoch; the paper's batch 16
    torch.manual_seed(0)
    images = torch.rand(s.stir_batches * batch, 1, s.stir_size, s.stir_size, device=device)
    labels = torch.randint(0, 36, (images.shape[0],), device=device)

    def train(model: nn.Module) -> Callable[[], float]:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run() -> float:
            for b in range(s.stir_batches):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(images[b * batch:(b + 1) * batch]), labels[b * batch:(b + 1) * batch]).backward()
                optimizer.step()
            return float(images.shape[0])
        return run

    cases = {kind: train(stir_model(kind, s.stir_size).to(device)) for kind in ("standard", "pixel_pool")}
    rates = interleaved(cases, device, s.repeats, s.warmup)
    for name, values in rates.items():
        step.figure(name, "s/epoch", [epoch_images / rate for rate in values],
                    f"{s.stir_batches}x{batch} images timed, scaled to {epoch_images}")
    step.ratio("pixel_pool/standard", "pixel_pool", "standard", PAPER_STIR)
    step.notes.append(f"{s.stir_size}x{s.stir_size} grey inputs, Adam, fp32; the full tier times all 11 real models (bench stir)")


# -- step: ResNet-50 steps, AMP and channels_last ------------------------------------------------
def resnet50_steps(check: Check, *, amp: bool, channels_last: bool, batch: Optional[int] = None) -> Callable[[], float]:
    """A closure: ``resnet_steps`` SGD training steps of torchvision's ResNet-50 on one fixed batch."""
    import torchvision

    s, device = check.sizes, check.device
    batch = batch or s.resnet_batch
    memory = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).to(device, memory_format=memory).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and check.cuda)
    images = torch.randn(batch, 3, s.resnet_size, s.resnet_size, device=device).contiguous(memory_format=memory)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def run() -> float:
        for _ in range(s.resnet_steps):
            with autocast(device, amp):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return float(s.resnet_steps * batch)

    return run


def step_resnet50(check: Check, step: Step) -> None:
    s = check.sizes
    cases = {
        "fp32_contiguous": resnet50_steps(check, amp=False, channels_last=False),
        "fp32_channels_last": resnet50_steps(check, amp=False, channels_last=True),
        "amp_channels_last": resnet50_steps(check, amp=True, channels_last=True),
    }
    rates = interleaved(cases, check.device, s.repeats, s.warmup)
    for name, values in rates.items():
        step.figure(name, "images/s", values)
    step.ratio("channels_last/contiguous fp32", "fp32_channels_last", "fp32_contiguous")
    step.ratio("amp/fp32 channels_last", "amp_channels_last", "fp32_channels_last")
    amp = "fp16 autocast + GradScaler" if check.cuda else "bf16 autocast (CPU rehearsal)"
    step.notes.append(f"torchvision ResNet-50, SGD, batch {s.resnet_batch} of {s.resnet_size}x{s.resnet_size}; AMP: {amp}; "
                      "amp_channels_last is what a step consumes (the full tier's data feed is read against it)")
    if check.cuda:
        step.figure("peak_memory_gib", "GiB", [torch.cuda.max_memory_allocated(check.device) / 2**30])


# -- step: JPEG decoding ----------------------------------------------------------------------
def _jpegs(count: int, size: tuple) -> List[torch.Tensor]:
    """``count`` photo-like JPEGs (smooth colour fields plus noise) as encoded uint8 tensors."""
    from torchvision.io import encode_jpeg

    generator = torch.Generator().manual_seed(0)
    width, height = size
    out = []
    for _ in range(count):
        coarse = torch.rand(1, 3, max(2, height // 32), max(2, width // 32), generator=generator)
        image = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
        image = image + 0.05 * torch.randn(image.shape, generator=generator)
        out.append(encode_jpeg((image.clamp(0, 1) * 255).to(torch.uint8), quality=90))
    return out


def step_jpeg(check: Check, step: Step) -> None:
    from torchvision.io import decode_jpeg

    s = check.sizes
    data = _jpegs(s.jpeg_images, s.jpeg_size)
    first = decode_jpeg(data[0])
    if tuple(first.shape) != (3, s.jpeg_size[1], s.jpeg_size[0]):
        raise AssertionError(f"decoded shape {tuple(first.shape)}")
    cases = {"cpu": lambda: float(len([decode_jpeg(d) for d in data]))}
    if check.cuda:
        cases["cuda"] = lambda: float(len(decode_jpeg(data, device=check.device)))
    else:
        step.notes.append("cuda: skipped, no CUDA device (decode_jpeg(device='cuda') is what a GPU node times)")
    rates = interleaved(cases, check.device, check.sizes.repeats, check.sizes.warmup)
    for name, values in rates.items():
        step.figure(name, "images/s", values, "one thread" if name == "cpu" else "one batched call (nvjpeg)")
    if "cuda" in rates:
        step.ratio("cuda/cpu", "cuda", "cpu")
    step.notes.append(f"{s.jpeg_images} JPEGs of about {s.jpeg_size[0]}x{s.jpeg_size[1]} (quality 90), decode only")


BARE_STEPS: Dict[str, Callable[[Check, Step], None]] = {
    "conv_paths": step_conv_paths,
    "mimo_bundle": step_mimo,
    "stir_scale_pool": step_stir,
    "resnet50_amp_channels_last": step_resnet50,
    "jpeg_decode": step_jpeg,
}


# -- writing ----------------------------------------------------------------------------------
def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown(report: dict) -> str:
    """One table of every step's figures and one of its ratios."""
    env = report["environment"]
    gpus = ", ".join(g["name"] for g in env.get("gpus", [])) or "none"
    lines = [f"# raysys gpu-check ({report['tier']} tier{', rehearsal: figures mean nothing' if report['rehearse'] else ''})",
             "", f"{env['date']}; torch {env['torch']}, torchvision {env['torchvision']}, CUDA {env['torch_cuda']}; "
             f"device {env['device']}; GPUs: {gpus}; {env['cores']} cores", "",
             "| step | status | figure | median | unit | note |", "|---|---|---|---:|---|---|"]
    for name, step in report["steps"].items():
        if not step["figures"]:
            lines.append(f"| {name} | {step['status']} | - | - | - | {'; '.join(n.splitlines()[0] for n in step['notes'][:2])} |")
        for figure, data in step["figures"].items():
            lines.append(f"| {name} | {step['status']} | {figure} | {_num(data['median'])} | {data['unit']} | {data['note']} |")
    lines += ["", "| step | ratio | value | read against |", "|---|---|---:|---|"]
    for name, step in report["steps"].items():
        for ratio, data in step["ratios"].items():
            lines.append(f"| {name} | {ratio} | {data['value']:.3g} | {data['claim'] or '-'} |")
    lines += ["", "Notes:", ""]
    for name, step in report["steps"].items():
        lines += [f"- {name}: {note.splitlines()[0]}" for note in step["notes"] if note.strip()]
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> Dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "gpu-check.json", "markdown": out / "gpu-check.md"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    return paths


# -- running ----------------------------------------------------------------------------------
def pick_device(rehearse: bool) -> torch.device:
    """CUDA when present; the CPU for a rehearsal."""
    return torch.device("cuda" if torch.cuda.is_available() and not rehearse else "cpu")


def run_check(tier: str = "full", *, rehearse: bool = False, out: Optional[Path] = None, workdir: Optional[Path] = None,
              only: Optional[List[str]] = None, full_steps: Optional[Dict[str, Callable]] = None) -> dict:
    """Run the ``tier``'s steps (``only``: a subset by name) and return the report; write it to ``out`` when given.

    The full tier's steps need raysys and Ray: raysys/bench/gpu_full.py passes them as ``full_steps``
    (this file imports neither, so it runs on a bare GPU machine).
    """
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {list(TIERS)}, got {tier!r}")
    if tier == "full" and full_steps is None:
        raise ValueError("the full tier runs through raysys: python -m raysys bench gpu (or make gpu-check)")
    import tempfile

    device = pick_device(rehearse)
    with tempfile.TemporaryDirectory(prefix="raysys-gpu-check-") as scratch:
        check = Check(device, REHEARSE if rehearse else FULL, Path(workdir or scratch), rehearse)
        steps = {**BARE_STEPS, **(full_steps if tier == "full" else {})}
        unknown = sorted(set(only or ()) - set(steps))
        if unknown:
            raise ValueError(f"unknown gpu-check steps {unknown}: choose from {sorted(steps)}")
        begin = time.perf_counter()
        for name, fn in steps.items():
            if not only or name in only:
                check.run(name, fn)
    report = {
        "schema": SCHEMA, "tier": tier, "rehearse": rehearse, "environment": environment(device),
        "seconds": round(time.perf_counter() - begin, 1), "failed": check.failed,
        "steps": {name: step.to_json() for name, step in check.steps.items()},
    }
    if out is not None:
        report["files"] = {kind: str(path) for kind, path in write(report, Path(out)).items()}
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="gpu.py")
    parser.add_argument("--tier", choices=TIERS, default="bare", help="bare: torch + torchvision only; full: raysys and Ray too")
    parser.add_argument("--rehearse", action="store_true", help="every step at tiny sizes on the CPU (figures mean nothing)")
    parser.add_argument("--out", default="gpu-check", help="folder for gpu-check.json and gpu-check.md")
    parser.add_argument("--steps", default="", help="comma-separated subset of the steps")
    args = parser.parse_args(argv)
    if args.tier == "full":
        parser.error("the full tier runs through raysys: python -m raysys bench gpu (or make gpu-check)")
    report = run_check(args.tier, rehearse=args.rehearse, out=Path(args.out),
                       only=[s.strip() for s in args.steps.split(",") if s.strip()] or None)
    print(Path(report["files"]["markdown"]).read_text(encoding="utf-8"))
    print(f"wrote {report['files']['json']} and {report['files']['markdown']}", file=sys.stderr)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
