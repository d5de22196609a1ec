"""The typed run configuration: OmegaConf structured configs over dataclasses.

The core sections below cover every run. Model families add their own
sections (``net``, ``kernel``, ``superposition``, ...) with
:func:`config_section`; :func:`root_schema` assembles them all into one
structured config, so an override of an unknown key or of the wrong type is
refused by OmegaConf itself.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

_SECTIONS: Dict[str, type] = {}


def config_section(name: str):
    """Register a dataclass as the top-level config section ``name``."""

    def register(cls: type) -> type:
        if name in _SECTIONS and _SECTIONS[name] is not cls:
            raise ValueError(f"config section {name!r} is registered twice")
        _SECTIONS[name] = cls
        return cls

    return register


@config_section("model")
@dataclass
class ModelConfig:
    """Which architecture to build; its options live in family sections."""

    name: str = "cifar_resnet20"
    # 0 means: take it from the dataset's manifest.
    num_classes: int = 0
    in_channels: int = 0


@config_section("data")
@dataclass
class DataConfig:
    """Where the Parquet shards are and how much of them to read."""

    name: str = "fashion-mnist"
    path: str = "data/shards/fashion-mnist"
    train_split: str = "train"
    test_split: str = "test"
    # Take only the first N examples of each split (0 = all): quick runs.
    limit: int = 0
    test_limit: int = 0
    # Resize images to this side length in the stream (0 = keep).
    resize: int = 0
    # Verify every shard's sha256 against the manifest before reading.
    verify_checksums: bool = False
    # Rows the local shuffle buffer of each worker holds (0 = no shuffle).
    shuffle_buffer: int = 10000
    # Hold this many rows of the train split out as the evaluation set instead of
    # the test split (0 = none); chosen as torch's random_split with holdout_seed
    # (MIMOConv without -f: 5000, seed 42). See raysys/data/holdout.py.
    holdout: int = 0
    holdout_seed: int = 42


@config_section("train")
@dataclass
class TrainConfig:
    """The optimisation recipe. Names follow the FlexConv command lines."""

    epochs: int = 10
    batch_size: int = 128
    # Evaluation batch size (0 = same as batch_size).
    eval_batch_size: int = 0
    lr: float = 0.1
    optimizer: str = "SGD"
    momentum: float = 0.9
    nesterov: bool = False
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    # The optimizer's weight decay. A recipe may give it another meaning
    # (FlexConv: the L2 norm of generated kernels, as in the original).
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    scheduler_params: Dict[str, Any] = field(
        default_factory=lambda: {"warmup_epochs": 0}
    )
    augment: str = "resnet"
    normalize: str = "dataset"
    grad_clip: float = 0.0
    report_top5_acc: bool = False
    # Mixed precision (CUDA only) and the channels_last memory format.
    amp: bool = True
    channels_last: bool = True
    # Which family recipe shapes the loop (extra losses, param groups, ...).
    recipe: str = "default"
    # Gradient accumulation: one optimizer step per this many batches of
    # batch_size (effective batch batch_size * accumulate_steps; antialiased-cnns -ba).
    accumulate_steps: int = 1
    # Add the batches' gradients instead of averaging them: the original -ba
    # (its effective lr is lr * accumulate_steps); off = the same step as one big batch.
    accumulate_sum: bool = False
    # FlexConv recipe: lr multipliers of the mask parameters and of a learnable SIREN omega_0.
    mask_params_lr_factor: float = 1.0
    omega_0_lr_factor: float = 1.0
    # Early stopping: stop after this many epochs without a better
    # early_stopping_metric (higher is better; 0 = off), then reload the best
    # epoch's weights before the recipe's final evaluation (STIR: patience 10 on val_acc).
    early_stopping_patience: int = 0
    early_stopping_metric: str = "test_acc"


@config_section("scaling")
@dataclass
class ScalingConfig:
    """How many Ray Train workers, and what each one gets."""

    num_workers: int = 1
    # "auto": use GPUs when the cluster has them; true/false to force.
    use_gpu: str = "auto"
    cpus_per_worker: int = 1
    # torch intra-op threads per worker (0 = cpus_per_worker).
    torch_threads: int = 0
    # Ray placement of the workers: PACK (fewest nodes) or SPREAD (one per node first).
    placement_strategy: str = "PACK"


@config_section("checkpoint")
@dataclass
class CheckpointConfig:
    """Where runs keep their checkpoints, and how many."""

    # Local path, NFS path or a pyarrow URI (s3://, gs://). Empty: ./runs
    storage_path: str = ""
    every_epochs: int = 1
    num_to_keep: int = 2
    # Resume from the latest checkpoint of a run with the same name.
    resume: bool = True
    # Keep the best checkpoints by this reported metric (e.g. test_acc), not the
    # newest; the newest is kept too, for resuming. Empty: keep the newest.
    score_attribute: str = ""
    score_order: str = "max"
    # A plain local storage_path is refused on a multi-node cluster unless it is
    # on a network filesystem or declared shared here (every node mounts it).
    shared: bool = False


@config_section("failure")
@dataclass
class FailureConfig:
    """What to do when a worker or node dies."""

    max_failures: int = 2


@config_section("tracking")
@dataclass
class TrackingConfig:
    """MLflow: where runs go and how they are named."""

    # Empty: a local sqlite file, sqlite:///<cwd>/mlflow.db
    uri: str = ""
    # Empty: the preset's paper.
    experiment: str = ""
    enabled: bool = True
    log_checkpoint: bool = True


def root_schema() -> type:
    """The root dataclass: every registered section plus the run's identity."""
    fields = [
        ("preset", str, field(default="")),
        ("paper", str, field(default="")),
        ("seed", int, field(default=0)),
        # Empty: derived from preset, seed and the science-relevant overrides.
        ("run_name", str, field(default="")),
        ("deterministic", bool, field(default=True)),
    ]
    for name, cls in _SECTIONS.items():
        fields.append((name, cls, field(default_factory=cls)))
    return dataclasses.make_dataclass("Config", fields)


def section_names() -> List[str]:
    return list(_SECTIONS)


# Keys (sections or dotted keys) that describe how or where a run executes,
# not what it computes. They do not enter the run's identity hash.
OPERATIONAL_KEYS = (
    "scaling", "checkpoint", "failure", "tracking", "run_name", "preset", "paper",
    "data.path", "data.verify_checksums",
)


def registered_section(name: str) -> Optional[type]:
    return _SECTIONS.get(name)
