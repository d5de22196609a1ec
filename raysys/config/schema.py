"""The typed run configuration: OmegaConf structured configs over dataclasses.

The core sections below cover every run. Model families add their own
sections (``net``, ``kernel``, ``superposition``, ...) with
:func:`config_section`, and fields of a shared section with :func:`config_fields`;
:func:`root_schema` assembles them into one structured config, so an override of an
unknown key or of the wrong type is refused by OmegaConf itself.

A section (or field) registered by a family's module belongs to that family
(:mod:`raysys.families`). A run's config holds only the sections its families use:
:func:`used_families` reads which from the names the config selects (``model.name``,
``train.recipe``, ``evaluate.metrics``, ...), ``root_schema(used)`` is the schema of
such a run, and :func:`prune` drops the rest from a saved config.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from raysys import families
from raysys.registry import choice_keys

_SECTIONS: Dict[str, type] = {}
# shared section -> dataclasses whose fields a family adds to it
_FIELDS: Dict[str, List[type]] = {}
_COMPOSED: Dict[Tuple[type, ...], type] = {}
_version = 0  # bumped on every registration: caches of the schema key on it


def config_section(name: str):
    """Register a dataclass as the top-level config section ``name``."""

    def register(cls: type) -> type:
        global _version
        if name in _SECTIONS and _SECTIONS[name] is not cls:
            raise ValueError(f"config section {name!r} is registered twice")
        _SECTIONS[name] = cls
        _version += 1
        return cls

    return register


def config_fields(section: str):
    """Register a dataclass whose fields a family adds to the shared section ``section``.

    The fields keep their dotted names (``train.mask_params_lr_factor``) but, like a
    family's sections, are present only in the configs of runs that use the family.
    """

    def register(cls: type) -> type:
        global _version
        added = _FIELDS.setdefault(section, [])
        if cls in added:
            return cls
        names = {f.name for f in dataclasses.fields(cls)}
        taken = set()
        if section in _SECTIONS:
            taken |= {f.name for f in dataclasses.fields(_SECTIONS[section])}
        for other in added:
            taken |= {f.name for f in dataclasses.fields(other)}
        if names & taken:
            raise ValueError(f"config fields {sorted(names & taken)} of section {section!r} are registered twice")
        added.append(cls)
        _version += 1
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
    # JPEG shards: decode each image at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
    # its crop's resolution. Faster on large images; pixels differ slightly (docs/fidelity.md).
    jpeg_draft: bool = False
    # JPEG shards: decode on "cpu" (libjpeg-turbo) or "cuda" (nvJPEG, on each worker's GPU).
    jpeg_device: str = "cpu"
    # Verify every shard's sha256 against the manifest before reading.
    verify_checksums: bool = False
    # Rows the local shuffle buffer of each worker holds (0 = no shuffle).
    shuffle_buffer: int = 10000
    # A split whose decoded size is at most this many GiB is read once into Ray's object
    # store; a larger one streams from the shards every epoch (0 = always stream).
    materialize_limit_gb: float = 2.0
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
    # fp16 autocast with a gradient scaler (CUDA only). Off: the four originals train in fp32
    # (docs/fidelity.md); turn it on as a speed option, knowing the numbers move.
    amp: bool = False
    # The channels_last memory format (same math, faster convolutions on CUDA and oneDNN).
    channels_last: bool = True
    # Which family recipe shapes the loop (extra losses, param groups, ...).
    recipe: str = "default"
    # Gradient accumulation: one optimizer step per this many batches of
    # batch_size (effective batch batch_size * accumulate_steps; antialiased-cnns -ba).
    accumulate_steps: int = 1
    # Add the batches' gradients instead of averaging them: the original -ba
    # (its effective lr is lr * accumulate_steps); off = the same step as one big batch.
    accumulate_sum: bool = False
    # Early stopping: stop after this many epochs without a better
    # early_stopping_metric (higher is better; 0 = off), then reload the best
    # epoch's weights before the recipe's final evaluation (STIR: patience 10 on val_acc).
    # The metric is named as the loop computes it (test_acc) or as MLflow records it (test/acc).
    early_stopping_patience: int = 0
    early_stopping_metric: str = "test_acc"


@config_section("scaling")
@dataclass
class ScalingConfig:
    """How many Ray Train workers, and what each one gets."""

    num_workers: int = 1
    # "auto": use GPUs when the cluster has them; true/false to force.
    use_gpu: str = "auto"
    # GPUs each worker reserves when GPUs are used: a fraction (e.g. 0.5) lets several
    # 1-worker trials share a GPU; a fraction with num_workers > 1 is refused (NCCL
    # cannot put two ranks on one GPU). A whole number > 1 reserves that many per worker.
    gpus_per_worker: float = 1.0
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


def _family(cls: type) -> Optional[str]:
    return families.family_of(cls.__module__)


def _section_class(name: str, used: Optional[set]) -> type:
    """Section ``name``'s dataclass with the fields families add to it (only ``used`` families' if given)."""
    base = _SECTIONS[name]
    extra = [cls for cls in _FIELDS.get(name, ()) if used is None or _family(cls) in used]
    if not extra:
        return base
    key = (base, *extra)
    if key not in _COMPOSED:
        # Fields in MRO order reversed: the section's own first, then each family's.
        _COMPOSED[key] = dataclasses.make_dataclass(base.__name__, [], bases=(*reversed(extra), base))
    return _COMPOSED[key]


def root_schema(used: Optional[Iterable[str]] = None) -> type:
    """The root dataclass: the run's identity plus every registered section.

    With ``used`` (family names), only the shared sections and those of the families in
    ``used``, and of a shared section only the fields of those families: a run's schema.
    """
    families.discover()
    keep = None if used is None else set(used)
    fields = [
        ("preset", str, field(default="")),
        ("paper", str, field(default="")),
        ("seed", int, field(default=0)),
        # Empty: derived from preset, seed and the science-relevant overrides.
        ("run_name", str, field(default="")),
        ("deterministic", bool, field(default=True)),
    ]
    for name, cls in _SECTIONS.items():
        family = _family(cls)
        if keep is not None and family is not None and family not in keep:
            continue
        section = _section_class(name, keep)
        fields.append((name, section, field(default_factory=section)))
    return dataclasses.make_dataclass("Config", fields)


def section_names() -> List[str]:
    """Every registered section, each family's included."""
    families.discover()
    return list(_SECTIONS)


# Keys (sections or dotted keys) that describe how or where a run executes,
# not what it computes. They do not enter the run's identity hash.
OPERATIONAL_KEYS = (
    "scaling", "checkpoint", "failure", "tracking", "run_name", "preset", "paper",
    "data.path", "data.verify_checksums", "data.materialize_limit_gb",
)


def registered_section(name: str) -> Optional[type]:
    families.discover()
    return _SECTIONS.get(name)


def schema_version() -> int:
    """Changes whenever a section or field is registered (for caches of the schema)."""
    families.discover()
    return _version


# -- families: which sections a run uses ---------------------------------------------------
def key_family(dotted: str) -> Optional[str]:
    """The family a dotted config key (or section name) belongs to; None for a shared key."""
    families.discover()
    head, _, rest = dotted.partition(".")
    cls = _SECTIONS.get(head)
    if cls is None:
        return None
    family = _family(cls)
    if family is not None or not rest:
        return family
    leaf = rest.split(".", 1)[0]
    for extra in _FIELDS.get(head, ()):
        if leaf in {f.name for f in dataclasses.fields(extra)}:
            return _family(extra)
    return None


def _select(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def used_families(tree: Mapping[str, Any]) -> List[str]:
    """The families a config (a plain nested dict) uses, sorted.

    A run uses a family when a shared key names an entry that family registered: its
    model (``model.name``), recipe (``train.recipe``), evaluators (``evaluate.metrics``,
    ``evaluate.after_training``), dataset (``data.name``), ... -- every key tied to a
    registry (:func:`raysys.registry.choice_keys`). Keys of a family's own sections select
    nothing: their defaults name that family's entries.
    """
    used = set()
    for key, registry in choice_keys().items():
        if key_family(key) is not None:
            continue
        value = _select(tree, key)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item in registry:
                family = registry.family(item)
                if family:
                    used.add(family)
    return sorted(used)


def prune(tree: Mapping[str, Any], used: Iterable[str]) -> Dict[str, Any]:
    """``tree`` (a plain nested dict) without the sections and fields of families not in ``used``."""
    keep = set(used)
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        family = key_family(key)
        if family is not None and family not in keep:
            continue
        if family is None and key in _SECTIONS and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if key_family(f"{key}.{k}") in (None, *keep)}
        out[key] = value
    return out
