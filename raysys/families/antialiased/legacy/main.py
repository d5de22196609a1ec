"""``main.py`` of adobe/antialiased-cnns (its PyTorch ImageNet example) -> raysys.

- ``-e`` / ``-es`` / ``-ed`` -> ``eval`` with the ``accuracy`` / ``shift-consistency`` /
  ``diagonal-consistency`` evaluator (presets ``antialiased/eval-<arch>``,
  ``antialiased/consistency-<arch>``);
- no evaluation flag -> ``train`` (``antialiased/scratch-<arch>``, or
  ``finetune-resnet50_lpf4`` with ``--finetune``);
- ``--save_weights P --resume C`` -> ``export-weights --format original`` (the original's layout, docs/weights.md).

``--pretrained`` and ``--finetune`` use a local file from ``$RAYSYS_WEIGHTS_DIR``
(default ``./weights``) when it holds one (``<arch>.pth``, the original's file names
such as ``resnet50_lpf4_finetune-cad66808.pth``, torchvision's ``resnet50-0676ba61.pth``),
else the URL the original fetches (raysys/families/antialiased/pretrained.py), fetched when
the model is built into torch's hub cache with its hash check; ``--weights P`` names the
file. ``--finetune`` runs the ``antialiased-finetune`` recipe, ``--resume C`` (training) the
``antialiased-resume`` recipe (epoch, optimizer, schedule, best top-1), ``-ba N`` adds the
N gradients (``train.accumulate_sum=true``) and ``--cos_lr`` is the per-epoch cosine
(``train.scheduler=epoch_cosine``), as in the original. Flags raysys cannot honour are
refused by name.
"""
from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path
from typing import List, Optional, Sequence

from raysys.config.loader import list_presets
from raysys.errors import ConfigError
from raysys.families.antialiased.models import ARCHITECTURES
from raysys.families.antialiased.pretrained import pretrained_url
from raysys.legacy.registry import Translation, register_translator
from raysys.models.registry import MODELS
from raysys.models.weights import weights_dir

PAPER = "antialiased"
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


def _candidates(arch: str, finetuned: bool) -> List[str]:
    names = [f"{arch}.pth", f"{arch}.pth.tar"]
    if _LPF.match(arch) and finetuned:
        names.append(f"{arch}_finetune-*.pth")
    names.append(f"{arch}-*.pth")
    return names


def find_weights(arch: str, finetuned: bool = True) -> str:
    """The weights ``--pretrained`` loads for ``arch``: a local file in ``$RAYSYS_WEIGHTS_DIR``, else its URL.

    The URL is only named here (``--print`` needs no weights); the model's build fetches it.
    """
    directory = weights_dir()
    for pattern in _candidates(arch, finetuned):
        found = sorted(directory.glob(pattern))
        if found:
            return str(found[0].resolve())
    return pretrained_url(arch, finetuned)


@functools.lru_cache(maxsize=1)
def _preset_names() -> frozenset:
    return frozenset(info.name for info in list_presets() if info.paper == PAPER)


def _preset(kind: str, arch: str) -> tuple[str, List[str]]:
    """A preset of this kind for ``arch``, or the resnet50_lpf4 one with model.name overridden."""
    preset = f"{PAPER}/{kind}-{arch}"
    if preset in _preset_names():
        return preset, []
    fallback = f"{PAPER}/{kind}-resnet50_lpf4"
    # A shared baseline keeps the antialias section (antialias.weights) through the family's recipe.
    recipe = [] if _LPF.match(arch) or kind == "finetune" else ["train.recipe=antialiased"]
    return fallback, [f"model.name={arch}", *recipe]


def _check_arch(arch: str) -> None:
    if arch not in MODELS:
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
        # The original's --save_weights writes its own layout (with the BlurPool filter buffers).
        return Translation("export-weights", preset,
                           [*extra, "--checkpoint", a.resume, "--out", a.save_weights, "--format", "original"], notes)

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
    if a.resume:
        overrides.append("train.recipe=antialiased-resume")
    elif a.finetune and kind != "finetune":
        overrides.append("train.recipe=antialiased-finetune")
    for flag, key, value in (
        ("-ep", "train.epochs", a.epochs), ("-b", "train.batch_size", a.batch_size), ("--lr", "train.lr", a.lr),
        ("--momentum", "train.momentum", a.momentum), ("--wd", "train.weight_decay", a.weight_decay),
        ("-ba", "train.accumulate_steps", a.batch_accum),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    if a.batch_accum and a.batch_accum > 1:
        overrides.append("train.accumulate_sum=true")  # the original adds the N gradients (main.py:454-460)
    if a.cos_lr:
        overrides.append("train.scheduler=epoch_cosine")
    elif a.lr_step is not None:
        overrides.append(f"train.scheduler_params.step_size={a.lr_step:g}")
    if a.out_dir:
        overrides.append(f"run_name={Path(a.out_dir.rstrip('/')).name or 'antialiased'}")
        notes.append("--out-dir names the run; checkpoints go to checkpoint.storage_path/<run_name>, the best by top-1 kept")
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
    """The weights the model starts from: --resume over --weights over --finetune over --pretrained,
    as the original applies them in the other order, each over the last (main.py:213-293)."""
    if a.resume:
        return str(Path(a.resume).expanduser().resolve())
    if a.weights:
        return str(Path(a.weights).expanduser().resolve())
    if a.finetune:
        match = _LPF.match(a.arch)
        if not match:
            raise ConfigError(f"main.py --finetune copies baseline weights into an antialiased model: use -a <arch>_lpf<N>, not {a.arch}")
        return find_weights(match.group("base"))
    if a.pretrained:
        return find_weights(a.arch, finetuned=not a.force_nonfinetuned)
    return None
