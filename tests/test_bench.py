"""The benchmark harness: statistics, interleaving, ratios, the CLI and its JSON.

These tests check behaviour and output structure only; figures are never
asserted (machines are noisy). The benchmarks themselves run end to end in
tests/test_bench_e2e.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raysys.bench import BENCHMARKS, register_benchmark
from raysys.bench.fixtures import write_cifar10, write_imagefolder
from raysys.bench.result import BenchResult, Goal
from raysys.bench.runner import apply_overrides
from raysys.bench.timing import Stats, compare
from raysys.cli.main import main
from raysys.errors import ConfigError


@register_benchmark("toy-test", help="a toy: two cases and a ratio", full=dict(n=2, repeats=3, warmup=1), quick=dict(repeats=1))
def _toy(ctx):
    samples = compare({"fast": lambda: 10.0, "slow": lambda: sum(range(20000)) and 10.0}, repeats=ctx["repeats"], warmup=ctx["warmup"])
    for name, sample in samples.items():
        ctx.result.add_figure(name, "items/s", sample.rate().values)
    ctx.result.add_ratio("fast/slow", "fast", "slow", Goal(">=", 0.0))


def test_stats_median_and_spread():
    stats = Stats([4.0, 1.0, 100.0, 3.0, 2.0])
    assert stats.median == 3.0
    assert stats.spread() == {"q1": 2.0, "q3": 4.0, "min": 1.0, "max": 100.0}
    assert stats.to_json()["n"] == 5


def test_compare_warms_up_then_interleaves_abba():
    calls = []
    cases = {name: (lambda name=name: calls.append(name) or 1.0) for name in ("a", "b")}
    warm = {"a": lambda: calls.append("a-warm")}
    samples = compare(cases, repeats=3, warmup=1, warmup_cases=warm)
    assert calls == ["a-warm", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(samples[n].seconds) for n in "ab"] == [3, 3]
    assert all(rate > 0 for rate in samples["a"].rate().values)
    with pytest.raises(ValueError):
        compare(cases, repeats=0)


def test_ratio_uses_medians_and_pairs_rounds():
    result = BenchResult("x", {})
    result.add_figure("new", "images/s", [30.0, 20.0, 40.0])
    result.add_figure("old", "images/s", [10.0, 10.0, 10.0])
    ratio = result.add_ratio("new/old", "new", "old", Goal(">=", 2.0))
    assert ratio.value == 3.0 and ratio.paired.values == [3.0, 2.0, 4.0] and ratio.met
    assert not Goal("<=", 1.15).met(1.2) and Goal("<=", 1.15).met(1.1)
    assert result.ratios["new/old"].to_json()["goal"] == ">= 2"


def test_overrides_are_checked_against_the_parameters():
    params = {"images": 10, "jpeg": True, "workers": [1, 2], "scale": 0.5}
    assert apply_overrides(params, ["images=20", "jpeg=false", "workers=[1, 2, 4]", "scale=1"]) == {
        "images": 20, "jpeg": False, "workers": [1, 2, 4], "scale": 1,
    }
    with pytest.raises(ConfigError, match=r"unknown benchmark parameter 'image' \(did you mean: images"):
        apply_overrides(params, ["image=3"])
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(params, ["images=many"])


def test_cli_json_is_one_object_with_machine_figures_and_ratios(capfd):
    assert main(["bench", "toy-test", "--json", "--set", "repeats=2"]) == 0
    out = capfd.readouterr().out
    data = json.loads(out)
    assert data["bench"] == "toy-test" and data["params"] == {"n": 2, "repeats": 2, "warmup": 1}
    assert {"cores", "torch_threads", "device", "versions", "date", "load_average"} <= set(data["machine"])
    figure = data["figures"]["fast"]
    assert figure["unit"] == "items/s" and figure["n"] == 2 and len(figure["values"]) == 2
    assert set(figure["spread"]) == {"q1", "q3", "min", "max"} and figure["median"] > 0
    ratio = data["ratios"]["fast/slow"]
    assert {"value", "median", "spread", "goal", "met", "numerator", "denominator"} <= set(ratio)
    assert ratio["goal"] == ">= 0" and ratio["met"] is True


def test_cli_text_lists_benchmarks_and_refuses_unknown_names(capfd):
    assert main(["bench", "toy-test", "--quick"]) == 0
    text = capfd.readouterr().out
    assert text.startswith("bench toy-test") and "cores: " in text and "torch_threads: " in text
    assert "fast/slow" in text and "--quick" in text
    assert main(["bench"]) == 0
    listing = capfd.readouterr().out
    for name in ("data", "train-overhead", "scaling", "toy-test"):
        assert f"{name}: " in listing
    assert main(["bench", "dta"]) == ConfigError.exit_code
    assert "did you mean: data" in capfd.readouterr().err
    assert main(["bench", "toy-test", "--set", "rounds=2"]) == ConfigError.exit_code
    assert "unknown benchmark parameter 'rounds'" in capfd.readouterr().err


def test_the_shipped_benchmarks_have_quick_sizes():
    from raysys.bench import load_benchmarks

    load_benchmarks()
    for name in ("data", "train-overhead", "scaling", "channels-last"):
        bench = BENCHMARKS.get(name)
        assert bench.quick and set(bench.quick) <= set(bench.full)
        assert {"repeats", "warmup"} <= set(bench.full)


def test_cifar_fixture_reads_in_torchvision_and_raysys(tmp_path):
    from pipelines.prepare import prepare
    from raysys.bench import reference
    from tests.test_formats import read_split

    batches = write_cifar10(tmp_path / "src", train_per_batch=3, test=4)
    dataset = reference.cifar10(tmp_path / "src", True, transform=None)
    assert len(dataset) == 15 and dataset.classes[0] == "airplane"
    train = np.concatenate([batches[f"data_batch_{n}"][0] for n in range(1, 6)])
    np.testing.assert_array_equal(dataset.data, train)
    assert reference.cifar10(tmp_path / "src", False, transform=None).targets == batches["test_batch"][1].tolist()
    prepare("cifar10", str(tmp_path / "src"), str(tmp_path / "out"))
    images, labels = read_split(tmp_path / "out", "train")
    np.testing.assert_array_equal(images, train)
    assert labels.tolist() == dataset.targets


def test_imagefolder_fixture_reads_in_torchvision_and_raysys(tmp_path):
    from pipelines.prepare import prepare
    from raysys.bench import reference

    write_imagefolder(tmp_path / "src", classes=2, train_per_class=2, val_per_class=1, size=(40, 30))
    dataset = reference.image_folder(tmp_path / "src" / "train", reference.imagenet_transform(train=True, size=16))
    image, label = dataset[3]
    assert tuple(image.shape) == (3, 16, 16) and label == 1
    manifest = prepare("imagenet", str(tmp_path / "src"), str(tmp_path / "out"))
    assert {name: split["count"] for name, split in manifest["splits"].items()} == {"train": 4, "val": 2}


def test_channels_last_quick_trains_both_formats_from_the_same_weights():
    from raysys.bench.runner import run_benchmark

    result = run_benchmark("channels-last", quick=True, overrides=["steps=1"]).to_json()
    assert set(result["figures"]) == {"channels_last", "contiguous"}
    assert all(figure["n"] == 1 and figure["median"] > 0 for figure in result["figures"].values())
    assert result["ratios"]["channels_last/contiguous"]["goal"] is None
    assert result["machine"]["torch_threads"] == 2


def test_train_steps_keeps_the_memory_format():
    import torch

    from raysys.bench.channels_last import TrainSteps

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    images, labels = torch.randn(2, 3, 6, 6), torch.tensor([0, 1])
    model(images)
    steps = TrainSteps(model, images, labels, steps=2, memory_format=torch.channels_last)
    before = model[0].weight.detach().clone()
    assert steps() == 4
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(before, model[0].weight)


def test_antialias_data_part_gets_every_parameter_of_bench_data():
    """``bench antialias`` runs ``bench data``'s JPEG cases: it must pass all of their parameters."""
    from raysys.bench import BenchContext, load_benchmarks
    from raysys.bench.antialias import data_params

    load_benchmarks()
    antialias = BENCHMARKS.get("antialias")
    ctx = BenchContext(antialias.params(quick=True), Path("unused"), BenchResult("antialias", {}), quick=True)
    params = data_params(ctx)
    assert set(BENCHMARKS.get("data").full) <= set(params)
    assert params["jpeg_images"] == antialias.quick["jpeg_images"] and params["batch"] == antialias.quick["data_batch"]
