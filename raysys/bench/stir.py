"""``bench stir``: training time per epoch of the 11 STIR models on emoji, scenario 2, side by side.

Each model (k = 7, bicubic, 1 channel, 36 classes) trains with Adam on the
same batches of real STIR emoji images at the scenario-2 train scales
(33-48, 576 images per epoch); the timed unit is ``batches`` optimizer steps
(forward, backward, step) at ``batch_size``, and the epoch time is
extrapolated to the 576 images of a scenario-2 epoch. Cases run interleaved
round by round, so the ratios to ``standard`` compare the same machine state.
The emoji npz comes from ``path`` (a ``stir generate emoji`` folder) or is
generated into the bench's scratch folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.timing import compare, default_device, torch_threads

SCENARIO = 2


def _emoji_images(path: str, workdir: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images (N, 1, 64, 64) in [0, 1], labels, rows per epoch) of the scenario's train split."""
    from raysys.data.formats.stir_npz import SCALES, load_npz
    from raysys.families.stir.scenarios import split_scales

    npz = Path(path) / "emoji.npz"
    if not npz.is_file():
        from pipelines.stir.emoji import offline_glyphs
        from pipelines.stir.generate import generate

        out = workdir / "stir-emoji"
        if not (out / "emoji.npz").is_file():
            generate("emoji", str(out), glyphs=offline_glyphs())  # timing only: FA 6 where 5.15.3 is not cached
        npz = out / "emoji.npz"
    arrays = load_npz(npz)
    keep = [SCALES.index(s) for s in split_scales(SCENARIO, "train")]
    images = arrays.imgs[0][keep].reshape(-1, 1, 64, 64)
    labels = arrays.lbls[0][keep].reshape(-1)
    order = np.random.RandomState(42).permutation(len(labels))
    return (torch.from_numpy(images[order].astype(np.float32) / 255.0), torch.from_numpy(labels[order]),
            len(labels))


def _train_case(model, optimizer, images, labels, batches: int, batch_size: int, device):
    def run() -> float:
        model.train()
        for b in range(batches):
            x = images[b * batch_size:(b + 1) * batch_size].to(device)
            y = labels[b * batch_size:(b + 1) * batch_size].to(device)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        return float(batches * batch_size)

    return run


@register_benchmark(
    "stir",
    help="training s/epoch of the 11 STIR models (emoji, scenario 2, k=7, bicubic), ratios to standard",
    full=dict(models="all", batches=2, batch_size=16, repeats=2, warmup=1, torch_threads=2, path="data/stir/emoji"),
    quick=dict(models="standard,pixel_pool,hermite", batches=1, batch_size=2, repeats=1, warmup=0),
)
def bench_stir(ctx: BenchContext) -> None:
    from raysys.models import InputSpec, build_model
    from raysys.families.stir.models import MODEL_NAMES

    result, device = ctx.result, default_device()
    names = list(MODEL_NAMES) if ctx["models"] == "all" else [n.strip() for n in str(ctx["models"]).split(",")]
    if "standard" not in names:
        names.insert(0, "standard")
    images, labels, epoch_rows = _emoji_images(str(ctx["path"]), ctx.workdir)
    batches, batch_size = int(ctx["batches"]), int(ctx["batch_size"])
    with torch_threads(ctx["torch_threads"]):
        result.machine["torch_threads"] = torch.get_num_threads()
        cases = {}
        for name in names:
            cfg = OmegaConf.create({"model": {"name": f"stir_{name}"},
                                    "stir": {"kernel_size": 7, "interpolation": "bicubic"}})
            torch.manual_seed(0)
            model = build_model(cfg, InputSpec(1, 64, 36)).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            cases[name] = _train_case(model, optimizer, images, labels, batches, batch_size, device)
        samples = compare(cases, repeats=int(ctx["repeats"]), warmup=int(ctx["warmup"]), device=device)
        for name, sample in samples.items():
            per_epoch = [epoch_rows / rate for rate in sample.rate().values]
            result.add_figure(name, "s/epoch", per_epoch,
                              f"{batches}x{batch_size} images timed, scaled to {epoch_rows}")
        for name in names:
            if name != "standard":
                result.add_ratio(f"{name}/standard", name, "standard")
    result.notes.append(f"emoji scenario {SCENARIO} ({epoch_rows} train images per epoch), 1 channel, k=7, bicubic; "
                        f"Adam, batch {batch_size}; device {device.type}")
    result.notes.append("the paper reports pixel_pool about 80x standard on a GPU (its Table 2; not measured here)")
