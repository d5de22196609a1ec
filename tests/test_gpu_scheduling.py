"""``scaling.gpus_per_worker``: fractional GPUs let 1-worker trials share a GPU; a worker whose GPU is only logical trains on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from raysys.config import load_config
from raysys.errors import ConfigError
from tests.conftest import REPO

PRESET = "cifar-resnet/fashion-mnist-resnet20"


def cfg(*overrides: str):
    """The preset with one worker (it trains on two by default), then ``overrides``."""
    return load_config(PRESET, ["scaling.num_workers=1", *overrides])


def test_the_default_is_one_gpu_per_worker():
    assert cfg().scaling.gpus_per_worker == 1.0


@pytest.mark.parametrize("overrides, message", [
    (["scaling.num_workers=2", "scaling.gpus_per_worker=0.5"], "needs scaling.num_workers=1 \\(NCCL cannot put two ranks"),
    (["scaling.gpus_per_worker=0"], "bad value for 'scaling.gpus_per_worker': 0"),
    (["scaling.gpus_per_worker=-1"], "bad value for 'scaling.gpus_per_worker'"),
    (["scaling.gpus_per_worker=1.5"], "whole GPUs"),
    (["scaling.gpus_per_worker=0.123456"], "4 decimal places"),
])
def test_bad_shares_are_refused_before_ray(overrides, message, monkeypatch):
    from raysys.driver import launch

    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    with pytest.raises(ConfigError, match=message):
        launch.check_before_ray(cfg(*overrides, "scaling.use_gpu=false"))


@pytest.mark.parametrize("overrides", [["scaling.gpus_per_worker=0.5"], ["scaling.gpus_per_worker=0.25"],
                                       ["scaling.num_workers=2", "scaling.gpus_per_worker=1"],
                                       ["scaling.gpus_per_worker=2"]])
def test_good_shares_pass(overrides):
    from raysys.train.devices import check_gpu_share

    c = cfg(*overrides)
    check_gpu_share(c.scaling.num_workers, c.scaling.gpus_per_worker)


def test_the_share_goes_into_ray_trains_scaling_config_only_when_gpus_are_used():
    from raysys.train.session import worker_scaling

    scaling = cfg("scaling.gpus_per_worker=0.5", "scaling.cpus_per_worker=2").scaling
    with_gpu = worker_scaling(scaling, use_gpu=True)
    assert with_gpu.use_gpu and with_gpu.resources_per_worker == {"CPU": 2, "GPU": 0.5}
    assert worker_scaling(scaling, use_gpu=False).resources_per_worker == {"CPU": 2}


def test_capacity_and_sweep_concurrency_count_the_share(monkeypatch):
    import ray

    from raysys.train.session import check_capacity
    from raysys.tune import sweep

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 9.0, "GPU": 1.0})
    monkeypatch.setattr(sweep, "_autoscaler_max_resources", lambda: None)
    check_capacity(1, 1, True, 0.5)
    with pytest.raises(ConfigError, match="needs 2 GPUs; the cluster has 1"):
        check_capacity(2, 1, True, 1.0)
    trials = lambda share: [cfg("scaling.use_gpu=true", f"scaling.gpus_per_worker={share}")]  # noqa: E731
    assert sweep.default_concurrency(trials(1)) == 1
    assert sweep.default_concurrency(trials(0.5)) == 2
    assert sweep.default_concurrency(trials(0.25)) == 4
    assert sweep.default_concurrency(trials(0.1)) == 8  # the CPUs (9, one kept for Ray Data) bound it now
    assert sweep.default_concurrency([cfg("scaling.use_gpu=false")]) == 8


def test_a_local_machine_counts_the_share(monkeypatch):
    from raysys.train import preflight

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(preflight, "_ray_running", lambda: False)
    preflight.check_local_capacity(cfg("scaling.use_gpu=true", "scaling.gpus_per_worker=0.5"), cpu_count=4, gpu_count=1)
    with pytest.raises(ConfigError, match="needs 2 GPUs"):
        preflight.check_local_capacity(cfg("scaling.use_gpu=true", "scaling.num_workers=2"), cpu_count=4, gpu_count=1)


def test_a_worker_without_cuda_trains_on_the_cpu(monkeypatch):
    from raysys.train.devices import worker_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device() == torch.device("cpu")


# Two 1-worker TorchTrainers, each reserving half of the one logical GPU of a CPU-only Ray,
# started from two Ray tasks as Tune starts trials: both must hold their worker at once.
SHARED_GPU_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import ray, ray.train
    from ray.train.torch import TorchTrainer
    from raysys.config import load_config
    from raysys.train.devices import torch_config
    from raysys.train.session import worker_scaling

    storage = sys.argv[1]
    os.makedirs(storage, exist_ok=True)
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    scaling = load_config("cifar-resnet/fashion-mnist-resnet20", ["scaling.num_workers=1", "scaling.gpus_per_worker=0.5"]).scaling

    def work(config):
        import torch.distributed as dist
        from raysys.train.devices import worker_device
        begin = time.time()
        time.sleep(config["hold"])
        seen = {"begin": begin, "end": time.time(), "device": str(worker_device()), "backend": dist.get_backend(),
                "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        with open(config["out"], "w") as stream:  # Ray Train v2 keeps only metrics reported with a checkpoint
            json.dump(seen, stream)

    @ray.remote(num_cpus=0)
    def trial(name):
        out = os.path.join(storage, name + ".json")
        TorchTrainer(work, train_loop_config={"hold": 8, "out": out}, scaling_config=worker_scaling(scaling, True),
                     torch_config=torch_config(), run_config=ray.train.RunConfig(name=name, storage_path=storage)).fit()
        with open(out) as stream:
            return json.load(stream)

    print("RESULT", json.dumps(ray.get([trial.remote("a"), trial.remote("b")])))
""")


def test_two_half_gpu_trials_share_one_gpu_at_once(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SHARED_GPU_SCRIPT, str(tmp_path / "runs")], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    a, b = json.loads(line[len("RESULT "):])
    assert a["begin"] < b["end"] and b["begin"] < a["end"], (a, b)  # the two windows overlap
    for got in (a, b):
        assert got["gpu_ids"] == ["0"] and got["cuda_visible_devices"] == "0"  # Ray granted the logical GPU
        assert got["device"] == "cpu" and got["backend"] == "gloo"  # no CUDA here: no NCCL crash
