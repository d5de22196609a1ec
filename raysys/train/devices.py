"""GPUs per worker: the share a worker reserves, the device it trains on, the process group it joins.

``scaling.gpus_per_worker`` (default 1) is what each Ray Train worker reserves
when GPUs are used (``scaling.use_gpu``). A fraction lets several 1-worker trials
share one GPU; with more than one worker it is refused, since NCCL cannot put two
ranks of one process group on the same GPU. Ray assigns logical GPUs even where
CUDA is missing (a cluster that declares ``num_gpus``, a test): the worker then
trains on the CPU and its process group uses gloo instead of crashing in NCCL.
"""
from __future__ import annotations

import math

import torch

from raysys.errors import ConfigError

# Ray keeps resource quantities to 4 decimal places.
RAY_RESOURCE_DECIMALS = 4


def check_gpu_share(num_workers: int, gpus_per_worker: float) -> None:
    """ConfigError for a share Ray or NCCL cannot honour (before Ray starts)."""
    share = float(gpus_per_worker)
    allowed = "a fraction in (0, 1) for a 1-worker run, or a whole number >= 1"
    if not math.isfinite(share) or share <= 0:
        raise ConfigError(f"bad value for 'scaling.gpus_per_worker': {gpus_per_worker} (must be {allowed})")
    if share > 1 and not share.is_integer():
        raise ConfigError(f"bad value for 'scaling.gpus_per_worker': {gpus_per_worker} "
                          f"(must be {allowed}: Ray grants more than one GPU only in whole GPUs)")
    if share < 1 and round(share, RAY_RESOURCE_DECIMALS) != share:
        raise ConfigError(f"bad value for 'scaling.gpus_per_worker': {gpus_per_worker} "
                          f"(Ray keeps {RAY_RESOURCE_DECIMALS} decimal places)")
    if share < 1 and num_workers > 1:
        raise ConfigError(
            f"scaling.gpus_per_worker={gpus_per_worker} with scaling.num_workers={num_workers}: a fraction of a GPU "
            "needs scaling.num_workers=1 (NCCL cannot put two ranks on one GPU); share GPUs between trials instead"
        )


def gpus_needed(num_workers: int, gpus_per_worker: float) -> float:
    """GPUs a run's workers reserve together."""
    return num_workers * float(gpus_per_worker)


def worker_device() -> torch.device:
    """The device this Ray Train worker trains on: its GPU, or the CPU where CUDA is missing."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    import ray.train.torch

    return ray.train.torch.get_device()


def _process_group_backend() -> str:
    """On a worker: nccl when it can reach CUDA, gloo otherwise."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def torch_config():
    """Ray Train's TorchConfig, with the backend chosen on the workers (nccl with CUDA, else gloo).

    Ray's TorchTrainer picks nccl whenever GPUs are reserved, which fails where
    the GPUs are only logical (no CUDA on the node): there the workers use gloo.
    """
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _TorchBackend

    class _DeviceAwareBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config):
            if backend_config.backend in (None, "nccl"):  # the trainer sets nccl whenever use_gpu
                backends = set(worker_group.execute(_process_group_backend))
                backend = "nccl" if backends == {"nccl"} else "gloo"
                backend_config = TorchConfig(backend=backend, init_method=backend_config.init_method,
                                             timeout_s=backend_config.timeout_s)
            super().on_start(worker_group, backend_config)

    class DeviceAwareTorchConfig(TorchConfig):
        @property
        def backend_cls(self):
            return _DeviceAwareBackend

    return DeviceAwareTorchConfig()
