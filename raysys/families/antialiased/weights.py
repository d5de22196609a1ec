"""Which weights files fit an ``<arch>_lpf<N>``: the BlurPool filter size and the kind of file.

A file is read by :func:`raysys.models.weights.read_weights` (local path or URL) and then:

- a file in the original's module layout stores its BlurPool filters (``*.filt``, N x N):
  N must be the model's, so an ``_lpf3`` file is refused for an ``_lpf4`` model (the
  filters are not loaded: ours are fixed, and the rest is matched by order and shape);
- a file that names its architecture (``arch``: the original's checkpoints, raysys's
  exports and checkpoints) must name this model;
- a file with neither holds torchvision's keys and no filters: a torchvision baseline's
  file, which initialises an antialiased model only when fine-tuning (``finetune=True``,
  the original's ``--finetune``). With ``finetune=True`` the file must be the baseline's.

``raysys eval --weights FILE`` runs the same checks (:func:`read_antialiased_weights`, the
family's registered weights reader).
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Set

import torch
from torch import nn

from raysys.errors import CheckpointError
from raysys.models.weights import StoredWeights, load_state, read_weights, register_weights_reader

_LPF = re.compile(r"^(?P<base>.+)_lpf(?P<size>\d+)$")
# Keys of torchvision's old DenseNet files ("...denselayer1.norm.1.weight"), as still
# served by its download URLs; torchvision renames them on load, and so do we.
OLD_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")

FINETUNE_HINT = "fine-tuning from a baseline: train.recipe=antialiased-finetune (main.py --finetune)"


def renamed_densenet_keys(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {OLD_DENSENET_KEY.sub(r"\1\2.", key): value for key, value in state.items()}


def blur_filter_sizes(state: Mapping[str, torch.Tensor]) -> Set[int]:
    """The side lengths of the BlurPool filters (``*.filt``) a state_dict stores."""
    return {int(value.shape[-1]) for key, value in state.items() if key.endswith(".filt")}


def base_arch(name: str) -> str:
    match = _LPF.match(name)
    return match.group("base") if match else name


def load_antialiased_weights(model: nn.Module, source: str, name: str, finetune: bool = False) -> nn.Module:
    """Load ``source`` into the ``name`` (``<arch>_lpf<N>``) model ``model``, after the checks above."""
    stored = read_weights(source)
    if finetune:
        return load_state(model, renamed_densenet_keys(checked_baseline(stored, source, name)), str(source))
    return load_state(model, checked_antialiased(stored, source, name), str(source))


def checked_baseline(stored: StoredWeights, source: str, name: str) -> Dict[str, torch.Tensor]:
    """``stored`` if it is the torchvision baseline's file that fine-tuning ``name`` starts from."""
    sizes, baseline = blur_filter_sizes(stored.state), base_arch(name)
    if sizes or (stored.arch and stored.arch != baseline):
        found = stored.arch or f"an antialiased model (BlurPool filters {sorted(sizes)})"
        raise CheckpointError(f"fine-tuning {name} copies torchvision's {baseline} weights; {source} are of {found}")
    return stored.state


def checked_antialiased(stored: StoredWeights, source: str, name: str) -> Dict[str, torch.Tensor]:
    """``stored`` if it holds weights of ``name``: its BlurPool filter size, its named architecture, not a baseline's."""
    sizes, filt_size = blur_filter_sizes(stored.state), int(_LPF.match(name).group("size"))
    baseline = base_arch(name)
    if sizes and sizes != {filt_size}:
        raise CheckpointError(
            f"weights {source} have BlurPool filters of size {'/'.join(map(str, sorted(sizes)))}, "
            f"the model {name} has {filt_size}: use model.name={baseline}_lpf{min(sizes)}"
        )
    if stored.arch and stored.arch != name:
        raise CheckpointError(f"weights {source} are of {stored.arch}, not of the model {name}")
    if not sizes and not stored.arch:
        raise CheckpointError(
            f"weights {source} hold no BlurPool filters and name no architecture: a torchvision baseline's file, "
            f"which initialises {name} only when {FINETUNE_HINT}"
        )
    return stored.state


@register_weights_reader("antialiased")
def read_antialiased_weights(model: nn.Module, source: str, name: str) -> Dict[str, torch.Tensor]:
    """``eval --weights`` for an ``<arch>_lpf<N>``: the file's state_dict after the checks of training's loading."""
    return checked_antialiased(read_weights(source), source, name)
