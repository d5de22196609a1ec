"""The demo: Fashion-MNIST -> Parquet shards -> ResNet-20 on 2 Ray Train workers -> MLflow.

``make demo`` runs this. It finds Fashion-MNIST (the given folder, else
Debian's dataset-fashion-mnist, else a torchvision download), prepares the
shards once, trains the demo preset and prints, last, one JSON line with the
run id, the test accuracy and the tracking URI.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from raysys.errors import DataError, RaysysError

PRESET = "cifar-resnet/fashion-mnist-resnet20"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

log = logging.getLogger("raysys.demo")


def has_idx_files(folder: Path) -> bool:
    return all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in IDX_FILES)


def find_fashion_mnist(given: Optional[Path], download_root: Path) -> Path:
    """The given folder, else Debian's package folder, else a torchvision download."""
    for folder in (given, DEBIAN_DIR):
        if folder is not None and has_idx_files(folder):
            return folder
    log.info("Fashion-MNIST not found locally; downloading it with torchvision into %s", download_root)
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(download_root), train=True, download=True)
        FashionMNIST(str(download_root), train=False, download=True)
    except Exception as exc:
        raise DataError(
            f"Fashion-MNIST is neither in {given or DEBIAN_DIR} nor downloadable ({exc}); "
            "install Debian's dataset-fashion-mnist or pass --fashion-dir"
        ) from None
    return download_root / "FashionMNIST" / "raw"


def ensure_shards(source: Path, out: Path) -> None:
    from pipelines.prepare import prepare
    from raysys.data.shards import load_manifest

    try:
        load_manifest(str(out))
        log.info("shards already prepared in %s", out)
        return
    except DataError:
        pass
    log.info("preparing shards from %s into %s", source, out)
    prepare("fashion-mnist", str(source), str(out), overwrite=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-dir", type=Path, default=None)
    parser.add_argument("--shards", type=Path, default=Path("data/shards/fashion-mnist"))
    parser.add_argument("overrides", nargs="*", help="extra overrides for the demo preset")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from raysys.cli.main import stop_ray_output
    from raysys.console import phase, rayout

    phase("demo: finding Fashion-MNIST and its shards")
    rayout.prepare("demo")  # Ray's own output into a log file, before Ray is imported
    try:
        from raysys.config import load_config
        from raysys.driver.training import run_training
        from raysys.track import runs

        source = find_fashion_mnist(args.fashion_dir, Path("data/downloads"))
        ensure_shards(source, args.shards)
        cfg = load_config(PRESET, [f"data.path={args.shards}", *args.overrides])
        summary = run_training(cfg, progress=True)
    except RaysysError as exc:
        stop_ray_output()  # nothing after the error line
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    stop_ray_output()  # Ray Data's bars and Ray's forwarded output end before the last lines
    db = summary["tracking_uri"]
    exp_id = runs.client(db).get_run(summary["run_id"]).info.experiment_id
    # MLflow 3's UI opens in its GenAI view unless the link asks for model training
    page = f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
    print(f"\nMLflow UI:  mlflow ui --backend-store-uri {db}   (then open {page})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from raysys.cli.main import exit_silently

    exit_silently(main())  # exits right after the JSON line, nothing printed after it
