"""The plain side of ``bench sweep``: one STIR training as the original's ``scripts/train.py`` runs it, in its own process.

``python -m raysys.bench.plain_stir --npz emoji.npz --seed 1 --epochs 3`` trains ``stir_<model>``
(raysys's module: the same layers and parameters) on the scenario's train scales of the npz
arrays, in memory: a shuffled ``DataLoader`` of batch 16, Adam, cross-entropy, a validation
pass after every epoch, one test pass on the scenario's test scales at the end. No tracking,
no checkpoints: what the original's shell loop over ``scripts/train.py`` pays per seed is a
fresh Python with torch and this work. Prints one JSON line (accuracies, seconds).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = {"train": 0, "val": 1, "test": 2}  # axis 0 of the npz arrays


def _split(arrays, split: str, evaluation: int, limit: int):
    """(images (N, C, 64, 64) in [0, 1], labels) of ``split`` at the scenario's scales, in layout order."""
    from raysys.data.formats.stir_npz import CANVAS, SCALES
    from raysys.families.stir.scenarios import split_scales

    keep = [SCALES.index(s) for s in split_scales(evaluation, split)]
    images = arrays.imgs[SPLITS[split]][keep].reshape(-1, CANVAS, CANVAS, arrays.channels)
    labels = arrays.lbls[SPLITS[split]][keep].reshape(-1)
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0)
    return tensor, torch.from_numpy(labels.astype(np.int64))


@torch.no_grad()
def _accuracy(model, images, labels, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        correct += int((model(images[start:start + batch_size]).argmax(1) == labels[start:start + batch_size]).sum())
    return 100.0 * correct / max(1, len(labels))


def train(npz: str, *, model_name: str = "standard", evaluation: int = 2, seed: int = 1, epochs: int = 3,
          lr: float = 1e-3, batch_size: int = 16, threads: int = 2, limit: int = 0, test_limit: int = 0) -> dict:
    """One training run; returns its validation and test accuracies and its seconds."""
    from torch.utils.data import DataLoader, TensorDataset

    from raysys.data.formats.stir_npz import load_npz
    from raysys.models import create_model

    begin = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    arrays = load_npz(npz)
    train_x, train_y = _split(arrays, "train", evaluation, limit)
    val_x, val_y = _split(arrays, "val", evaluation, test_limit)
    test_x, test_y = _split(arrays, "test", evaluation, test_limit)
    model = create_model(f"stir_{model_name}", in_channels=train_x.shape[1], num_classes=int(arrays.num_classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    val_accs: List[float] = []
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
        val_accs.append(_accuracy(model, val_x, val_y, batch_size))
    test_acc = _accuracy(model, test_x, test_y, batch_size)
    return {"seed": seed, "val_acc": val_accs, "test_acc": test_acc, "seconds": time.perf_counter() - begin}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raysys.bench.plain_stir", description=__doc__.splitlines()[0])
    parser.add_argument("--npz", required=True)
    parser.add_argument("--model", default="standard")
    parser.add_argument("--evaluation", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="the first N train rows only (0: all)")
    parser.add_argument("--test-limit", type=int, default=0, help="the first N val and test rows only (0: all)")
    args = parser.parse_args(argv)
    result = train(args.npz, model_name=args.model, evaluation=args.evaluation, seed=args.seed, epochs=args.epochs,
                   lr=args.lr, batch_size=args.batch_size, threads=args.threads, limit=args.limit,
                   test_limit=args.test_limit)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
