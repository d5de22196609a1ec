"""``make gpu-check`` (``bench gpu``): the bare tier runs on torch alone; every step rehearses on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import REPO

GPU_PY = REPO / "raysys" / "bench" / "gpu.py"
# Run as a file with these imports refused: the bare tier must need nothing but torch and torchvision.
BARE_RUNNER = """
import importlib.abc, runpy, sys
REFUSED = {"ray", "mlflow", "omegaconf", "raysys", "pyarrow", "pipelines"}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ImportError(f"the bare tier imported {name}")
sys.meta_path.insert(0, Refuse())
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("LOADED", sorted({m.split(".")[0] for m in sys.modules} & REFUSED), file=sys.stderr)
"""


def test_the_bare_tier_rehearses_every_step_as_a_file_with_torch_alone(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run(
        [sys.executable, "-c", BARE_RUNNER, str(GPU_PY), "--tier", "bare", "--rehearse", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED []" in proc.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["tier"] == "bare" and report["rehearse"] and not report["failed"]
    assert report["environment"]["torch"] == torch.__version__
    steps = report["steps"]
    assert set(steps) == {"conv_paths", "mimo_bundle", "stir_scale_pool", "resnet50_amp_channels_last", "jpeg_decode"}
    assert all(step["status"] == "ok" for step in steps.values())
    assert set(steps["mimo_bundle"]["figures"]) == {"n1", "n2", "n4"}
    assert "2-4x" in steps["mimo_bundle"]["ratios"]["n4/n1"]["claim"]
    assert set(steps["resnet50_amp_channels_last"]["figures"]) >= {"fp32_contiguous", "fp32_channels_last", "amp_channels_last"}
    assert steps["stir_scale_pool"]["figures"]["pixel_pool"]["unit"] == "s/epoch"
    assert any("cuda: skipped" in note for note in steps["jpeg_decode"]["notes"])  # said so, not silently left out
    table = (out / "gpu-check.md").read_text()
    assert "| conv_paths | ok | fft |" in table and "| mimo_bundle | n4/n1 |" in table


def test_the_fft_path_computes_conv2d_at_the_full_horizon():
    from raysys.bench.gpu import fft_conv2d

    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 20, 20), torch.randn(4, 3, 33, 33)
    assert torch.allclose(fft_conv2d(x, w), F.conv2d(x, w, padding=16), atol=1e-3, rtol=1e-4)


def test_a_failing_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    from raysys.bench import gpu

    def broken(check, step):
        raise RuntimeError("no kernel image is available")

    monkeypatch.setattr(gpu, "BARE_STEPS", {"broken": broken, "jpeg_decode": gpu.step_jpeg})
    report = gpu.run_check("bare", rehearse=True, out=tmp_path)
    assert report["failed"] == ["broken"] and report["steps"]["jpeg_decode"]["status"] == "ok"
    assert "RuntimeError: no kernel image is available" in report["steps"]["broken"]["notes"][0]
    with pytest.raises(ValueError, match="unknown gpu-check steps"):
        gpu.run_check("bare", rehearse=True, only=["nope"])


def test_bench_gpu_is_registered_and_quick_means_rehearse():
    from raysys.bench.registry import load_benchmarks

    bench = load_benchmarks().get("gpu")
    assert bench.params(False)["tier"] == "full" and not bench.params(False)["rehearse"]
    assert bench.params(True)["rehearse"]
    assert "gpu-check:" in (REPO / "Makefile").read_text()


@pytest.mark.slow
def test_the_full_tier_rehearses_every_step_on_cpu(ray_cluster, workdir):
    from raysys.bench.runner import run_benchmark

    out = workdir / "check"
    result = run_benchmark("gpu", quick=True, overrides=[f"out={out}"], workdir=str(workdir / "scratch"))
    report = json.loads((out / "gpu-check.json").read_text())
    assert not report["failed"], {name: report["steps"][name]["notes"][:1] for name in report["failed"]}
    steps = report["steps"]
    assert {"family_runs", "flexconv_paths", "mimo_throughput", "stir_epoch_times", "data_feed", "ddp_nccl"} <= set(steps)
    runs = steps["family_runs"]["figures"]
    assert {f"{family}.{precision}.run" for family in ("flexconv", "mimoconv", "antialiased", "stir")
            for precision in ("fp32", "amp")} <= set(runs)
    assert {"ray_data", "torchvision", "resnet50_step"} <= set(steps["data_feed"]["figures"])
    assert steps["ddp_nccl"]["status"] == "ok"  # the rehearsal runs 2 CPU workers over gloo
    assert "data_feed.ray_data" in result.figures
