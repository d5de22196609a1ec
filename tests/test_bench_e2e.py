"""Each benchmark end to end at its ``--quick`` sizes: real Ray, Parquet, CIFAR pickles and JPEGs.

Only the structure of the results is checked, never a figure.
"""
from __future__ import annotations

import json

import pytest

from raysys.bench.runner import run_benchmark
from raysys.cli.main import main


def check_figures(data: dict, figures: set, ratios: set) -> None:
    assert figures <= set(data["figures"]), sorted(data["figures"])
    assert set(data["ratios"]) == ratios
    for name in figures:
        figure = data["figures"][name]
        assert figure["median"] > 0 and figure["n"] == len(figure["values"]) >= 1, name
    for ratio in data["ratios"].values():
        assert ratio["value"] > 0 and ratio["n"] >= 1


def test_bench_data_quick_json(ray_cluster, tmp_path, capfd):
    code = main(["bench", "data", "--quick", "--json", "--workdir", str(tmp_path), "--set", "jpeg_images=20"])
    assert code == 0
    data = json.loads(capfd.readouterr().out)
    assert data["bench"] == "data" and data["params"]["jpeg_images"] == 20
    check_figures(
        data,
        {"cifar.ray_data", "cifar.torchvision", "cifar.torchvision_in_process", "jpeg.ray_data", "jpeg.torchvision",
         "cifar.ray_data.cpu", "jpeg.torchvision.cpu", "jpeg.ray_data_full", "jpeg.decode_window.cpu"},
        {f"{suite} ray_data/{baseline}" for suite in ("cifar", "jpeg") for baseline in ("torchvision", "torchvision_in_process")}
        # whole-image decoding and reduced-size decoding beside the default, and the decode-only floor
        | {"jpeg ray_data_full/torchvision", "jpeg ray_data/ray_data_full", "jpeg ray_data_draft/ray_data",
           "jpeg ray_data_draft/torchvision", "jpeg decode_draft/decode_full", "jpeg decode_window/decode_full"},
    )
    assert data["figures"]["cifar.ray_data"]["unit"] == "images/s"
    assert data["figures"]["cifar.ray_data.cpu"]["unit"] == "CPU ms/image"
    assert data["ratios"]["cifar ray_data/torchvision"]["goal"] == ">= 2"
    assert data["ratios"]["jpeg ray_data/torchvision"]["goal"] == ">= 2.5"
    assert data["machine"]["torch_threads"] == 1
    # The benchmark wrote real CIFAR pickles and a JPEG ImageFolder, and prepared both.
    assert (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert (tmp_path / "imagenet-shards" / "manifest.json").is_file()


def test_bench_train_overhead_quick(ray_cluster, tmp_path):
    result = run_benchmark("train-overhead", quick=True, workdir=str(tmp_path)).to_json()
    check_figures(
        result,
        {"raysys_train", "plain_pytorch", "raysys_train.last_epoch", "plain_pytorch.last_epoch",
         "ray_train_empty_fit", "raysys_train-ray_train_empty_fit"},
        {"raysys_train/plain_pytorch", "last_epoch raysys/plain", "(raysys_train-ray_train_empty_fit)/plain_pytorch"},
    )
    empty, total = result["figures"]["ray_train_empty_fit"]["median"], result["figures"]["raysys_train"]["median"]
    assert 0 < empty < total
    assert result["figures"]["ray_startup"]["values"] == [0.0]  # Ray was already running
    assert result["ratios"]["raysys_train/plain_pytorch"]["goal"] == "<= 1.15"


@pytest.mark.slow
def test_bench_scaling_quick(ray_cluster, tmp_path):
    result = run_benchmark("scaling", quick=True, workdir=str(tmp_path)).to_json()
    check_figures(result, {"workers=1.images_per_s", "workers=2.images_per_s", "workers=2.wall"}, {"workers=2/workers=1"})


@pytest.mark.slow
def test_bench_sweep_quick(ray_cluster, tmp_path):
    result = run_benchmark("sweep", quick=True, workdir=str(tmp_path)).to_json()
    check_figures(
        result,
        {"sweep_packed", "sweep_unpacked", "plain_processes", "plain_processes.inside"},
        {"sweep_packed/plain_processes", "sweep_unpacked/plain_processes", "sweep_packed/sweep_unpacked"},
    )
    assert result["ratios"]["sweep_packed/plain_processes"]["goal"] == "<= 1.2"
    assert result["figures"]["ray_startup"]["values"] == [0.0]  # Ray was already running
    assert (tmp_path / "stir-emoji" / "emoji.npz").is_file()  # generated, then read by both sides
