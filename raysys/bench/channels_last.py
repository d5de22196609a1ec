"""``bench channels-last``: training steps per second of a model in channels_last vs contiguous memory.

One process, no Ray, no data pipeline: the same model (same initial weights)
twice, one copy in each memory format, trained with SGD on one fixed random
batch; the two cases alternate round by round. On CPU, oneDNN's convolutions
prefer channels_last; on CUDA, tensor-core convolutions do (with AMP).
``train.channels_last`` (default true) picks the format for ``raysys train``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.timing import compare, default_device, torch_threads
from raysys.bench.training import PRESET


class TrainSteps:
    """Each call: ``steps`` SGD steps of ``model`` on ``images``; returns the images trained."""

    def __init__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, memory_format):
        self.model = model.to(memory_format=memory_format).train()
        self.images = images.contiguous(memory_format=memory_format)
        self.labels, self.steps = labels, steps
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def __call__(self) -> int:
        for _ in range(self.steps):
            loss = F.cross_entropy(self.model(self.images), self.labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return self.steps * self.images.shape[0]


@register_benchmark(
    "channels-last",
    help="images/s of training steps: channels_last vs contiguous memory format, same model, one process",
    full=dict(model="cifar_resnet20", size=32, batch=128, steps=20, threads=2, repeats=7, warmup=1),
    quick=dict(batch=8, steps=2, repeats=1),
)
def bench_channels_last(ctx: BenchContext) -> None:
    from raysys.config import load_config
    from raysys.models import InputSpec, build_model

    result, device = ctx.result, default_device()
    cfg = load_config(PRESET, [f"model.name={ctx['model']}"])
    with torch_threads(ctx["threads"]):
        result.machine["torch_threads"] = torch.get_num_threads()
        torch.manual_seed(0)
        model = build_model(cfg, InputSpec(3, ctx["size"], 10)).to(device)
        images = torch.randn(ctx["batch"], 3, ctx["size"], ctx["size"], device=device)
        labels = torch.randint(0, 10, (ctx["batch"],), device=device)
        cases = {
            "channels_last": TrainSteps(copy.deepcopy(model), images, labels, ctx["steps"], torch.channels_last),
            "contiguous": TrainSteps(copy.deepcopy(model), images, labels, ctx["steps"], torch.contiguous_format),
        }
        samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"], device=device)
    for name, sample in samples.items():
        result.add_figure(name, "images/s", sample.rate().values)
    result.add_ratio("channels_last/contiguous", "channels_last", "contiguous")
    result.notes.append(
        f"{ctx['model']}, batch {ctx['batch']} of {ctx['size']}x{ctx['size']}, {ctx['steps']} SGD steps per sample, "
        f"{ctx['threads']} torch threads, device {device.type}, fp32"
    )
