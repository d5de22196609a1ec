"""FlexConv's Hydra command lines (``run_experiment.py``, ``run_crossres.py``) -> raysys.

The original takes ``key=value`` overrides of its ``cfg/config.yaml``. Every key of that file
has a rule here: mapped to a raysys key, accepted at its default, noted (it only concerns the
original's environment: W&B, devices, data loading) or refused by name. Keys the original does
not have are refused too.

The translation picks the ``flexconv/`` preset that needs the fewest overrides to reproduce the
command, then adds those overrides: a command of ``experiments/readme.md`` translates to its
table's preset plus ``seed=N``.

The original's groups ``net``, ``kernel``, ``conv`` and ``mask`` are raysys's ``flexconv.net``,
``flexconv.kernel``, ... (raysys/config/renames.py); the translation writes the new names and
says so in a note.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from omegaconf import OmegaConf

from raysys.config import renames
from raysys.config.loader import _preset_layers, list_presets, load_config
from raysys.config.schema import root_schema
from raysys.errors import ConfigError, RaysysError, did_you_mean
from raysys.legacy.registry import Translation

@dataclass
class Context:
    """What the rules produce while reading one command line."""

    script: str
    values: Dict[str, Any]  # every original key=value of the command
    mapped: Dict[str, Any] = field(default_factory=dict)  # raysys key -> value
    notes: List[str] = field(default_factory=list)

    def refuse(self, key: str, why: str) -> None:
        raise ConfigError(f"legacy {self.script}: unsupported flag {key}={_show(self.values[key])} ({why})")


Rule = Callable[[Context, str, Any], None]


# ---- parsing ------------------------------------------------------------------


def _scalar(raw: str) -> Any:
    """A Hydra-style scalar: int, float, bool, null, else the string."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _value(raw: str) -> Any:
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(item) for item in inner.split(",") if item.strip()] if inner else []
    return _scalar(text)


def parse_flags(script: str, args: Sequence[str]) -> Dict[str, Any]:
    """``key=value`` arguments -> {key: value}; anything else is refused by name."""
    values: Dict[str, Any] = {}
    for arg in args:
        if "=" not in arg or arg.startswith(("-", "+", "~")):
            raise ConfigError(
                f"legacy {script}: unsupported argument {arg!r} (only Hydra overrides key=value of cfg/config.yaml are translated)"
            )
        key, raw = arg.split("=", 1)
        if key in values:
            raise ConfigError(f"legacy {script}: flag {key!r} is given twice")
        values[key] = _value(raw)
    return values


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


# ---- rules ----------------------------------------------------------------------


def same(ours: Optional[str] = None, cast: Callable[[Any], Any] = lambda v: v) -> Rule:
    """The key exists in raysys under the same (or the given) name; a renamed group under its new name."""

    def rule(ctx: Context, key: str, value: Any) -> None:
        ctx.mapped[ours or renames.current_key(key)] = cast(value)

    return rule


def default_only(default: Any, why: str) -> Rule:
    """Accepted at the original's default (nothing to do), refused otherwise."""

    def rule(ctx: Context, key: str, value: Any) -> None:
        if value != default and not (default == "" and value is None):
            ctx.refuse(key, why)

    return rule


def note(why: str) -> Rule:
    """Concerns only the original's environment: accepted, and said so."""

    def rule(ctx: Context, key: str, value: Any) -> None:
        ctx.notes.append(f"{key}={_show(value)} ignored: {why}")

    return rule


def _net_type(ctx: Context, key: str, value: Any) -> None:
    if value == "ResNet":
        ctx.mapped["model.name"] = "flexnet"
        return
    depths = ("20", "32", "44", "56", "110", "1202")
    if isinstance(value, str) and value.startswith("CIFARResNet") and value[len("CIFARResNet"):] in depths:
        ctx.mapped["model.name"] = f"cifar_resnet{value[len('CIFARResNet'):]}"
        return
    ctx.refuse(key, "supported: ResNet (FlexNet), CIFARResNet{20,32,44,56,110,1202}")


DATASETS = {
    "CIFAR10": "cifar10", "CIFAR100": "cifar100", "MNIST": "mnist", "STL10": "stl10",
    "Imagenet16": "imagenet16", "Imagenet32": "imagenet32", "Imagenet64": "imagenet64",
}


def _dataset(ctx: Context, key: str, value: Any) -> None:
    if value == "Imagenet-k":
        if ctx.script != "run_crossres.py":
            ctx.refuse(key, "Imagenet-k exists only in run_crossres.py")
        target = ctx.values.get("cross_res.target_res")
        if target not in (16, 32, 64):
            ctx.refuse(key, "Imagenet-k needs cross_res.target_res in 16, 32, 64")
        name = f"imagenet{target}"
        ctx.notes.append(
            f"dataset=Imagenet-k: both phases read the {name} shards; the source phase resizes them to "
            "cross_res.source_res (the original reads the natively downsampled ImageNet of that side)"
        )
    elif value in DATASETS:
        name = DATASETS[value]
        if value == "CIFAR100":
            ctx.notes.append("dataset=CIFAR100: 100 classes (the original's CLASSES_DATASET says 10, a bug)")
    else:
        ctx.refuse(key, f"image datasets only: {', '.join([*DATASETS, 'Imagenet-k'])}")
    ctx.mapped["data.name"] = name
    ctx.mapped["data.path"] = f"data/shards/{name}"


def _horizon(ctx: Context, key: str, value: Any) -> None:
    ctx.mapped["flexconv.conv.horizon"] = str(value)


def _use_fft(ctx: Context, key: str, value: Any) -> None:
    # The original convolves in the Fourier domain only with use_fft and all kernel sides > 50.
    if value:
        ctx.mapped["flexconv.conv.use_fft"] = "auto"
        ctx.mapped["flexconv.conv.fft_min_kernel"] = 51
    else:
        ctx.mapped["flexconv.conv.use_fft"] = "false"


def _augment(ctx: Context, key: str, value: Any) -> None:
    name = "None" if value is None else str(value)
    if name == "resnet" and ctx.script == "run_crossres.py" and ctx.values.get("dataset") != "Imagenet-k":
        # datasets/cifar10.py flips and crops at 32 px, then resizes to the phase's side.
        name = "resnet-before-resize"
    ctx.mapped["train.augment"] = name


def _scheduler(ctx: Context, key: str, value: Any) -> None:
    if value in ("", None):
        ctx.mapped["train.scheduler"] = "constant"
    elif value in ("cosine", "multistep", "exponential"):
        ctx.mapped["train.scheduler"] = value
    else:
        ctx.refuse(key, "supported: cosine, multistep, exponential, '' (constant)")


def _warmup(ctx: Context, key: str, value: Any) -> None:
    ctx.mapped["train.scheduler_params.warmup_epochs"] = max(0, int(value))


def _momentum(ctx: Context, key: str, value: Any) -> None:
    if value != -1:
        ctx.mapped["train.momentum"] = float(value)


def _device(ctx: Context, key: str, value: Any) -> None:
    if value == "cpu":
        ctx.mapped["scaling.use_gpu"] = "false"
    else:
        ctx.notes.append(f"{key}={value} ignored: raysys uses the cluster's GPUs when it has them (scaling.use_gpu=auto)")


def _data_root(ctx: Context, key: str, value: Any) -> None:
    dataset = ctx.values.get("dataset")
    name = DATASETS.get(dataset) or (f"imagenet{ctx.values.get('cross_res.target_res')}" if dataset == "Imagenet-k" else "<dataset>")
    ctx.notes.append(
        f"{key}={value} ignored: raysys reads Parquet shards from data.path (data/shards/{name}); write them once with "
        f"`python -m raysys prepare {name} --source <the {name} folder> --out data/shards/{name}`"
    )


_WANDB = "raysys tracks runs in MLflow (tracking.*), not Weights & Biases"

# Every key of the original's cfg/config.yaml (HEAD 0f355d1).
RULES: Dict[str, Rule] = {
    "net.type": _net_type,
    **{f"net.{k}": same() for k in ("no_hidden", "no_blocks", "dropout", "dropout_in", "norm", "nonlinearity", "block_width_factors")},
    **{f"kernel.{k}": same() for k in (
        "type", "no_hidden", "no_layers", "omega_0", "learn_omega_0", "steerable", "init_spatial_value",
        "input_scale", "sampling_rate_norm", "regularize", "srf.scale",
    )},
    "kernel.bias_init": same(cast=lambda v: "None" if v is None else str(v)),
    **{f"kernel.regularize_params.{k}": same() for k in ("res", "res_offset", "target", "fn", "method", "factor", "gauss_stddevs", "gauss_factor")},
    "kernel.dim_linear": note("the original sets it from the data (2 for images), as raysys does"),
    "kernel.activ_function": default_only("", "used only by the MLP kernel, which is not implemented"),
    "kernel.norm": default_only("", "used only by the MLP kernel, which is not implemented"),
    "kernel.weight_norm": default_only(False, "weight-normalised kernel generators are not implemented"),
    "conv.type": same(),
    "conv.horizon": _horizon,
    "conv.use_fft": _use_fft,
    "conv.bias": same(),
    "conv.padding": default_only("same", "FlexNet convolutions are always 'same'"),
    "conv.stride": default_only(1, "FlexNet convolutions have stride 1"),
    "conv.cache": default_only(False, "kernel caching is not implemented"),
    **{f"mask.{k}": same() for k in ("use", "type", "temperature", "init_value", "dynamic_cropping", "threshold")},
    "dataset": _dataset,
    "dataset_params.root": _data_root,
    "dataset_params.in_ram": note("Ray Data streams the shards"),
    "dataset_params.from_cache": note("Ray Data streams the shards"),
    "dataset_params.permuted": default_only(False, "sequence tasks are not implemented"),
    "dataset_params.noise_padded": default_only(False, "noise-padded CIFAR-10 is not implemented"),
    "dataset_params.memory_size": default_only(-1, "sequence tasks are not implemented"),
    "dataset_params.mfcc": default_only(False, "sequence tasks are not implemented"),
    "dataset_params.drop_rate": default_only(0.0, "sequence tasks are not implemented"),
    "dataset_params.seq_length": default_only(-1, "sequence tasks are not implemented"),
    "cross_res.source_res": default_only(0, "cross-resolution runs are run_crossres.py's"),
    "cross_res.target_res": default_only(0, "cross-resolution runs are run_crossres.py's"),
    "cross_res.finetune_epochs": default_only(100, "cross-resolution runs are run_crossres.py's"),
    "cross_res.resize": default_only("", "use data.resize"),
    "cross_res.interpolation": default_only("bilinear", "raysys resizes bilinearly"),
    "cross_res.resize_blur": default_only(False, "blurred resizing is not implemented"),
    "cross_res.resize_blur_sigma": default_only(1.0, "blurred resizing is not implemented"),
    "cross_res.blur": default_only(False, "blurred CIFAR-10 is not implemented"),
    "train.do": default_only(True, "for a test-only run use `python -m raysys eval`"),
    "train.augment": _augment,
    **{f"train.{k}": same() for k in (
        "report_top5_acc", "epochs", "batch_size", "lr", "omega_0_lr_factor", "mask_params_lr_factor",
        "weight_decay", "grad_clip", "optimizer",
    )},
    "train.mask_l2_norm": default_only(0.0, "the original's LimitLnLoss crashes (it reads a missing attribute)"),
    "train.magnitude_reg": default_only(0.0, "the kernel magnitude regularizer is not implemented"),
    "train.optimizer_params.momentum": _momentum,
    "train.optimizer_params.nesterov": same("train.nesterov"),
    "train.scheduler": _scheduler,
    "train.scheduler_params.warmup_epochs": _warmup,
    "train.scheduler_params.decay_steps": default_only(-1, "set train.scheduler_params.milestones / step_size in raysys"),
    "train.scheduler_params.decay_factor": default_only(-1, "set train.scheduler_params.gamma in raysys"),
    "train.scheduler_params.patience": default_only(-1, "the plateau scheduler is not implemented"),
    "test.before_train": default_only(False, "not implemented"),
    "test.patched": default_only(False, "segmentation is not implemented"),
    "wandb.project": same("tracking.experiment", cast=str),
    "wandb.entity": note(_WANDB),
    "wandb.dir": note(_WANDB),
    "device": _device,
    "debug": note(_WANDB + "; disable tracking with tracking.enabled=false"),
    "pretrained": default_only(False, "loading the original's checkpoints is not supported"),
    "pretrained_params.filepath": default_only("", "loading the original's checkpoints is not supported"),
    "pretrained_wandb": default_only(False, "loading checkpoints from W&B is not supported"),
    "pretrained_wandb_params.filename": default_only("", "loading checkpoints from W&B is not supported"),
    "pretrained_wandb_params.run_path": default_only("", "loading checkpoints from W&B is not supported"),
    "pretrained_strict": default_only(True, "loading the original's checkpoints is not supported"),
    "seed": same(cast=int),
    "deterministic": same(cast=bool),
    "comment": note("a W&B run comment; raysys names runs from preset, seed and overrides"),
    "profile.n_batches": default_only(30, "profiling is run_profiler.py's; use `python -m raysys bench`"),
    "profile.directory": default_only("", "profiling is run_profiler.py's; use `python -m raysys bench`"),
    "profile.data_mode": default_only("fake", "profiling is run_profiler.py's; use `python -m raysys bench`"),
    "profile.data_shape": default_only(0, "profiling is run_profiler.py's; use `python -m raysys bench`"),
    "time": default_only(False, "use `python -m raysys bench` for timings"),
    "summary": note("the original prints a model summary; see `python -m raysys summary <preset>`"),
    "summary_depth": note("the original prints a model summary; see `python -m raysys summary <preset>`"),
    **{f"testcase.{k}": default_only(d, "test-case recording is not implemented") for k, d in (
        ("load", False), ("save", False), ("epochs", 1), ("batches", 20), ("path", ""))},
}

CROSS_RES_RULES: Dict[str, Rule] = {
    "cross_res.source_res": same(cast=int),
    "cross_res.target_res": same(cast=int),
    "cross_res.finetune_epochs": same(cast=int),
}

# The original's defaults of keys a command may leave out, where presets differ (applied when
# they matter for the model the command builds).
IMPLICIT_DEFAULTS: Dict[str, Any] = {
    "train.augment": "None",
    "train.weight_decay": 0.0,
    "train.report_top5_acc": False,
    "train.mask_params_lr_factor": 1.0,
    "flexconv.net.dropout": 0.0,
    "flexconv.kernel.regularize": False,
    "flexconv.kernel.omega_0": 0.0,
}


def _relevant(key: str, model: str, conv: str) -> bool:
    """Whether ``key`` changes what a ``model`` with ``flexconv.conv.type=conv`` computes."""
    if key.startswith("flexconv.") or key == "train.mask_params_lr_factor":
        if model != "flexnet":
            return False
    if key.startswith("flexconv.kernel.") and not key.startswith("flexconv.kernel.srf"):
        return conv in ("FlexConv", "CKConv")
    if key == "train.mask_params_lr_factor" or key.startswith("flexconv.mask."):
        return conv == "FlexConv"
    return True


# ---- translation ------------------------------------------------------------------


def read_command(script: str, args: Sequence[str], cross_res: bool) -> Context:
    ctx = Context(script, parse_flags(script, args))
    rules = {**RULES, **(CROSS_RES_RULES if cross_res else {})}
    for key, value in ctx.values.items():
        rule = rules.get(key)
        if rule is None:
            hint = did_you_mean(key, list(rules))
            raise ConfigError(f"legacy {script}: unknown flag {key!r}: cfg/config.yaml has no such key{hint}")
        rule(ctx, key, value)
    moved = sorted({key.split(".", 1)[0] for key in ctx.values if renames.current_key(key) != key})
    if moved:
        ctx.notes.append("the original's " + ", ".join(f"{group}.*" for group in moved) + " are raysys's "
                         + ", ".join(f"{renames.current_key(group)}.*" for group in moved))
    if cross_res and not (ctx.mapped.get("cross_res.source_res") and ctx.mapped.get("cross_res.target_res")):
        raise ConfigError(f"legacy {script}: give cross_res.source_res and cross_res.target_res, as the original requires")
    return ctx


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _differences(preset: str, mapped: Dict[str, Any]) -> Optional[List[str]]:
    """Overrides turning ``preset`` into the command, or None if the preset cannot be loaded."""
    try:
        cfg = preset_values(preset)
    except RaysysError:
        return None
    # The model the command builds decides which implicit defaults matter.
    model = mapped.get("model.name", cfg.model.name)
    conv = mapped.get("flexconv.conv.type", cfg.flexconv.conv.type)
    wanted = dict(mapped)
    for key, value in IMPLICIT_DEFAULTS.items():
        if key not in wanted and _relevant(key, model, conv):
            wanted[key] = value
    overrides = []
    for key, value in wanted.items():
        if key == "seed":
            continue
        if OmegaConf.select(cfg, key) != value:
            overrides.append(f"{key}={_yaml_value(value)}")
    return overrides


@functools.lru_cache(maxsize=None)
def preset_values(name: str) -> Any:
    """A preset's values (its extends chain merged over the schema), cached per process.

    Cheaper than ``load_config`` (no per-key checks, overrides or run naming): the translator
    scores every candidate preset, then validates only the chosen one with ``load_config``.
    """
    cfg = OmegaConf.structured(root_schema())
    try:
        for layer in _preset_layers(name):
            cfg = OmegaConf.merge(cfg, layer)
    except Exception as exc:  # noqa: BLE001  (an unloadable preset is no candidate)
        raise ConfigError(f"preset {name!r} does not load: {exc}") from None
    return cfg


def candidate_presets(cross_res: bool) -> List[str]:
    """The flexconv presets of the script: cross-resolution ones for run_crossres.py only."""
    names = [p.name for p in list_presets() if p.paper == "flexconv"]
    return [n for n in names if n.split("/", 1)[1].startswith("crossres-") == cross_res]


def translate_command(script: str, args: Sequence[str], cross_res: bool) -> Translation:
    """The ``raysys train`` command equivalent to ``python <script> <args>``."""
    ctx = read_command(script, args, cross_res)
    best: Optional[Tuple[str, List[str]]] = None
    for preset in candidate_presets(cross_res):
        overrides = _differences(preset, ctx.mapped)
        if overrides is not None and (best is None or len(overrides) < len(best[1])):
            best = (preset, overrides)
    if best is None:
        raise ConfigError(f"legacy {script}: no flexconv preset loads (is the FlexConv recipe registered?)")
    preset, overrides = best
    overrides.append(f"seed={int(ctx.mapped.get('seed', 0))}")
    try:
        load_config(preset, overrides)
    except ConfigError as exc:
        raise ConfigError(f"legacy {script}: {exc}") from None
    return Translation("train", preset, overrides, ctx.notes)
