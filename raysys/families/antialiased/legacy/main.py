"""``main.py`` of adobe/antialiased-cnns (its PyTorch ImageNet example) -> raysys.

- ``-e`` / ``-es`` / ``-ed`` -> ``eval`` with the ``accuracy`` / ``shift-consistency`` /
  ``diagonal-consistency`` evaluator (presets ``antialiased/eval-<arch>``,
  ``antialiased/consistency-<arch>``);
- no evaluation flag -> ``train`` (``antialiased/scratch-<arch>``, or
  ``finetune-resnet50_lpf4`` with ``--finetune``);
- ``--save_weights P --resume C`` -> ``export-weights``.

Weights are local files, never downloaded: ``--pretrained`` and ``--finetune``
look in ``$RAYSYS_WEIGHTS_DIR`` (default ``./weights``) for the original's file
names (``resnet50_lpf4_finetune-cad66808.pth``, torchvision's ``resnet50-0676ba61.pth``)
or plain ``<arch>.pth``; ``--weights P`` names the file. Flags raysys cannot honour
are refused by name.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence

from raysys.errors import ConfigError
from raysys.legacy.registry import Translation, register_translator

PAPER = "antialiased"
WEIGHTS_DIR_ENV = "RAYSYS_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = "weights"
WEIGHTS_URL = "https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/"
_LPF = re.compile(r"^(?P<base>.+)_lpf(?P<size>\d)$")

# Flags of main.py that raysys does not accept, with the reason shown to the user.
REFUSED = {
    "--start-epoch": "raysys resumes a run from its own latest checkpoint (same preset and overrides)",
    "--evaluate-save": "saving validation images is not supported",
    "--world-size": "Ray Train places the workers: set scaling.num_workers",
    "--rank": "Ray Train places the workers: set scaling.num_workers",
    "--dist-url": "Ray Train sets up the process group",
    "--dist-backend": "Ray Train sets up the process group",
    "--multiprocessing-distributed": "Ray Train places the workers: set scaling.num_workers",
    "--no-data-aug": "only the RandomResizedCrop + flip recipe is available (train.augment=imagenet)",
    "--embed": "an IPython shell inside the run is not supported",
    "--val-debug": "training on the validation split is not supported",
    "-mti": "not supported",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", add_help=False, allow_abbrev=False)
    p.add_argument("--data")
    p.add_argument("-a", "--arch", default="resnet18")
    p.add_argument("-j", "--workers", type=int)
    p.add_argument("-ep", "--epochs", "--ep", type=int)
    p.add_argument("-b", "--batch-size", type=int)
    p.add_argument("--lr", "--learning-rate", type=float)
    p.add_argument("--lr_step", type=float)
    p.add_argument("--cos_lr", action="store_true")
    p.add_argument("--momentum", type=float)
    p.add_argument("--wd", "--weight-decay", type=float, dest="weight_decay")
    p.add_argument("-p", "--print-freq", type=int)
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--resume", default="")
    p.add_argument("-e", "--evaluate", action="store_true")
    p.add_argument("-es", "--evaluate-shift", action="store_true")
    p.add_argument("--epochs-shift", type=int)
    p.add_argument("-ed", "--evaluate-diagonal", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--gpu", type=int)
    p.add_argument("--out-dir")
    p.add_argument("-ba", "--batch-accum", "--ba", type=int)
    p.add_argument("--weights")
    p.add_argument("--save_weights")
    p.add_argument("--finetune", action="store_true")
    p.add_argument("--force_nonfinetuned", action="store_true")
    p.add_argument("--wandb", action="store_true")
    return p


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR)


def _candidates(arch: str, finetuned: bool) -> List[str]:
    names = [f"{arch}.pth", f"{arch}.pth.tar"]
    if _LPF.match(arch) and finetuned:
        names.append(f"{arch}_finetune-*.pth")
    names.append(f"{arch}-*.pth")
    return names


def find_weights(arch: str, flag: str, finetuned: bool = True) -> str:
    """The local weights file for ``arch``, or a ConfigError explaining how to supply one."""
    directory = weights_dir()
    patterns = _candidates(arch, finetuned)
    for pattern in patterns:
        found = sorted(directory.glob(pattern))
        if found:
            return str(found[0].resolve())
    source = (f"the original's file from {WEIGHTS_URL} (names in antialiased_cnns' model_urls)"
              if _LPF.match(arch) else f"torchvision's {arch} weights (torchvision.models.{arch} weights URL)")
    raise ConfigError(
        f"main.py {flag}: no local weights for {arch} in {directory}/ (looked for {', '.join(patterns)}); "
        f"raysys never downloads at run time: save {source} there, set {WEIGHTS_DIR_ENV}, or pass --weights PATH"
    )


@functools.lru_cache(maxsize=1)
def _preset_names() -> frozenset:
    from raysys.config.loader import list_presets

    return frozenset(info.name for info in list_presets() if info.paper == PAPER)


def _preset(kind: str, arch: str) -> tuple[str, List[str]]:
    """A preset of this kind for ``arch``, or the resnet50_lpf4 one with model.name overridden."""
    preset = f"{PAPER}/{kind}-{arch}"
    if preset in _preset_names():
        return preset, []
    fallback = f"{PAPER}/{kind}-resnet50_lpf4"
    return fallback, [f"model.name={arch}"]


def _check_arch(arch: str) -> None:
    import raysys.families.antialiased.models  # noqa: F401
    from raysys.models.registry import MODELS

    if arch not in MODELS:
        from raysys.families.antialiased.models import ARCHITECTURES

        raise ConfigError(
            f"main.py -a {arch}: unknown architecture; use one of {', '.join(ARCHITECTURES)}, "
            "optionally with _lpf1.._lpf7 (e.g. resnet50_lpf4)"
        )


def _refuse(args: Sequence[str]) -> None:
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in REFUSED:
            raise ConfigError(f"main.py {flag}: {REFUSED[flag]}")


@register_translator("main.py")
def translate_main(args: Sequence[str]) -> Translation:
    _refuse(args)
    known, unknown = _parser().parse_known_args(list(args))
    if unknown:
        raise ConfigError(f"main.py: unsupported flag(s) {' '.join(unknown)}")
    a = known
    _check_arch(a.arch)
    overrides: List[str] = []
    notes: List[str] = []

    if a.data:
        if (Path(a.data) / "manifest.json").is_file():
            overrides.append(f"data.path={a.data}")
        else:
            notes.append(
                f"--data {a.data} is an ImageFolder tree; raysys reads Parquet shards: run "
                f"`python -m raysys prepare imagenet --source {a.data} --out data/shards/imagenet` once "
                "(or pass data.path=<shards>)"
            )
    if a.workers is not None or a.print_freq is not None:
        notes.append("-j/-p ignored: Ray Data decodes in parallel; progress goes to MLflow")
    if a.wandb:
        notes.append("--wandb ignored: every run is tracked in MLflow")
    if a.gpu is not None:
        overrides.append("scaling.num_workers=1")
        notes.append(f"--gpu {a.gpu}: one Ray Train worker (it uses a GPU when the cluster has one)")
    if a.seed is not None:
        overrides.append(f"seed={a.seed}")

    evaluating = a.evaluate or a.evaluate_shift or a.evaluate_diagonal
    if a.save_weights:
        if not a.resume:
            raise ConfigError("main.py --save_weights needs --resume CHECKPOINT (the checkpoint whose weights to save)")
        preset, extra = _preset("eval", a.arch)
        return Translation("export-weights", preset, [*extra, "--checkpoint", a.resume, "--out", a.save_weights], notes)

    weights = _initial_weights(a, evaluating)
    if evaluating:
        kind, metrics = _eval_kind(a)
        preset, extra = _preset(kind, a.arch)
        overrides = extra + overrides + [f"evaluate.metrics=[{','.join(metrics)}]"]
        if a.batch_size is not None:
            overrides.append(f"train.batch_size={a.batch_size}")
        if a.epochs_shift is not None:
            overrides.append(f"evaluate.shift_passes={a.epochs_shift}")
        if weights:
            overrides.append(f"antialias.weights={weights}")
        else:
            raise ConfigError(
                f"main.py {'-e' if a.evaluate else '-es' if a.evaluate_shift else '-ed'} evaluates given weights: "
                "add --pretrained, --weights PATH or --resume CHECKPOINT"
            )
        return Translation("eval", preset, overrides, notes)

    kind = "finetune" if a.finetune and a.arch == "resnet50_lpf4" else "scratch"
    preset, extra = _preset(kind, a.arch)
    overrides = extra + overrides
    if weights:
        overrides.append(f"antialias.weights={weights}")
    for flag, key, value in (
        ("-ep", "train.epochs", a.epochs), ("-b", "train.batch_size", a.batch_size), ("--lr", "train.lr", a.lr),
        ("--momentum", "train.momentum", a.momentum), ("--wd", "train.weight_decay", a.weight_decay),
        ("-ba", "train.accumulate_steps", a.batch_accum),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    if a.batch_accum and a.batch_accum > 1:
        notes.append(
            "-ba: raysys averages the accumulated gradients (one big batch's step); the original adds them "
            "(lr x N in effect): add train.accumulate_sum=true to reproduce that"
        )
    if a.cos_lr:
        overrides += ["train.scheduler=cosine", "train.scheduler_params.eta_min=0.0"]
    if a.lr_step is not None:
        overrides.append(f"train.scheduler_params.step_size={a.lr_step:g}")
    if a.out_dir:
        overrides.append(f"run_name={Path(a.out_dir.rstrip('/')).name or 'antialiased'}")
        notes.append("--out-dir names the run; checkpoints go to checkpoint.storage_path/<run_name>, the best by top-1 kept")
    if a.resume:
        notes.append("--resume: the run starts from the checkpoint's weights; optimizer and epoch restart "
                     "(raysys resumes its own runs automatically)")
    if a.epochs_shift is not None:
        overrides.append(f"evaluate.shift_passes={a.epochs_shift}")
    return Translation("train", preset, overrides, notes)


def _eval_kind(a) -> tuple[str, List[str]]:
    metrics = []
    if a.evaluate:
        metrics.append("accuracy")
    if a.evaluate_shift:
        metrics.append("shift-consistency")
    if a.evaluate_diagonal:
        metrics.append("diagonal-consistency")
    kind = "eval" if a.evaluate and not (a.evaluate_shift or a.evaluate_diagonal) else "consistency"
    return kind, metrics


def _initial_weights(a, evaluating: bool) -> Optional[str]:
    """The weights file the model starts from, per --weights / --resume / --pretrained / --finetune."""
    if a.weights:
        return str(Path(a.weights).expanduser().resolve())
    if a.resume:
        return str(Path(a.resume).expanduser().resolve())
    if a.finetune:
        match = _LPF.match(a.arch)
        if not match:
            raise ConfigError(f"main.py --finetune copies baseline weights into an antialiased model: use -a <arch>_lpf<N>, not {a.arch}")
        return find_weights(match.group("base"), "--finetune")
    if a.pretrained:
        return find_weights(a.arch, "--pretrained", finetuned=not a.force_nonfinetuned)
    return None
