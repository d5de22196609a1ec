"""Model weights files: load strictly with ``weights_only=True``, save stripped.

A weights source is a local path or an ``http(s)://`` URL. A URL is fetched as
``torch.hub.load_state_dict_from_url`` fetches it (what the original
antialiased-cnns does): into torch's hub cache (``$TORCH_HOME/hub/checkpoints``),
checked against the sha256 prefix in its file name; offline, a file of that name
in the hub cache or in ``$RAYSYS_WEIGHTS_DIR`` serves. Accepted layouts: a bare
state_dict, the original antialiased-cnns ``{"state_dict": ...}`` (checkpoints
and ``--save_weights`` files) and a raysys checkpoint (``{"model": ...}``);
DDP/DataParallel ``module.`` prefixes are removed. A file may name its
architecture (``arch``, as the original's checkpoints and raysys's exports do, or
a raysys checkpoint's ``config.model.name``): :func:`read_weights` returns it.
Every failure is a one-line :class:`~raysys.errors.CheckpointError`.

Two registries keyed by family (docs/weights.md): :data:`ORIGINAL_FORMATS`, how a family
writes a model's weights in its original code's file layout (``export-weights --format
original``), and :data:`WEIGHTS_READERS`, how it reads a weights file into a state_dict for
its models (``eval --weights``: the original's layout, the family's checks); a family without
a reader gets :func:`read_state_dict`.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

import torch
import torch.hub
from torch import nn

from raysys.errors import CheckpointError
from raysys.models.load_errors import describe_mismatch, load_failure
from raysys.registry import Registry

PathLike = Union[str, os.PathLike]
_WRAPPER_KEYS = ("state_dict", "model")
WEIGHTS_DIR_ENV = "RAYSYS_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = "weights"


@dataclass(frozen=True)
class StoredWeights:
    """A weights file's model state_dict, and the architecture the file names (None if it names none)."""

    state: Dict[str, torch.Tensor]
    arch: Optional[str] = None


# (model with its weights loaded, its model.name) -> the object the original's loading code reads
OriginalExporter = Callable[[nn.Module, str], Dict[str, Any]]
# (the model, the weights file, its model.name) -> the state_dict to load (after the family's checks)
WeightsReader = Callable[[nn.Module, str, str], Dict[str, torch.Tensor]]
ORIGINAL_FORMATS: Registry[OriginalExporter] = Registry("original weights format")
WEIGHTS_READERS: Registry[WeightsReader] = Registry("weights reader")


def register_original_format(family: str) -> Callable[[OriginalExporter], OriginalExporter]:
    """Register ``family``'s exporter; its docstring says the layout and which original code reads it."""
    return ORIGINAL_FORMATS.register(family)


def register_weights_reader(family: str) -> Callable[[WeightsReader], WeightsReader]:
    """Register how ``eval --weights`` reads a file for ``family``'s models."""
    return WEIGHTS_READERS.register(family)


def weights_dir() -> Path:
    """Where local weights files are looked up by name: ``$RAYSYS_WEIGHTS_DIR``, default ``./weights``."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR)


def is_url(source: PathLike) -> bool:
    return str(source).startswith(("http://", "https://"))


def fetch_weights(url: str) -> Path:
    """The local copy of ``url``: torch's hub cache, else ``$RAYSYS_WEIGHTS_DIR``, else downloaded into the cache.

    As ``torch.hub.load_state_dict_from_url(url, check_hash=True)``: a download is checked
    against the sha256 prefix in the file name (``name-<hex>.pth``) and kept only if it matches.
    """
    name = Path(url.split("?", 1)[0]).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    for local in (cached, weights_dir() / name):
        if local.is_file():
            return local
    match = torch.hub.HASH_REGEX.search(name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(cached), match.group(1) if match else None, progress=False)
    except RuntimeError as exc:  # the hash check
        raise CheckpointError(f"refusing weights from {url}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:  # offline, refused, 404 (urllib's errors are OSErrors)
        raise CheckpointError(
            f"cannot fetch weights {url} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"offline, put {name} in {cached.parent} or ${WEIGHTS_DIR_ENV} ({weights_dir()}), or pass a local file"
        ) from None
    return cached


def strip_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove DDP/DataParallel prefixes: ``module.``, and ``features.module.`` (the
    original wraps only AlexNet's and VGG's ``features`` in DataParallel)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("features.module."):
            key = "features." + key.removeprefix("features.module.")
        out[key] = value
    return out


def read_weights(source: PathLike) -> StoredWeights:
    """The model state_dict stored at ``source`` (a path or URL) and the architecture it names."""
    path = fetch_weights(str(source)) if is_url(source) else Path(source)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist (give a local file or an http(s) URL)")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"refusing to load weights {path}: {load_failure(exc, 'weights')}") from None
    state, arch = stored, _named_arch(stored)
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} holds no state_dict of tensors")
    return StoredWeights(strip_state_dict(state), arch)


def _named_arch(stored) -> Optional[str]:
    """``arch`` of the original's checkpoints and raysys's exports, or a raysys checkpoint's model name."""
    if not isinstance(stored, Mapping):
        return None
    if isinstance(stored.get("arch"), str):
        return stored["arch"]
    model = stored.get("config", {}).get("model") if isinstance(stored.get("config"), Mapping) else None
    return model.get("name") if isinstance(model, Mapping) and isinstance(model.get("name"), str) else None


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The model state_dict stored at ``path`` (see the module docstring for layouts)."""
    return read_weights(path).state


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a file of another architecture is named as such."""
    return load_state(model, read_state_dict(path), str(path))


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load a state_dict strictly; every mismatch is summarised in one line naming ``source``."""
    state = strip_state_dict(state)
    own = model.state_dict()
    if set(state) != set(own):
        by_order = _match_by_order(own, state, _has_blur_filters(model))
        if by_order is not None:
            model.load_state_dict(by_order, strict=True)
            return model
    extra = _loadable_buffers(model, own, state)
    mismatch = describe_mismatch({**own, **extra}, state)
    if mismatch:
        raise CheckpointError(f"weights {source} do not fit {type(model).__name__}: {mismatch}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a non-persistent buffer the model does not read back
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"weights {source} do not fit {type(model).__name__}: {lines[-1]}") from None
    return model


def _loadable_buffers(model: nn.Module, own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]):
    """Non-persistent buffers of ``model`` that ``state`` holds (STIR's ``basis``, saved by the original):
    the modules that read them back take them; for the others strict loading refuses them."""
    buffers = dict(model.named_buffers())
    return {k: buffers[k] for k in state if k not in own and k in buffers}


def _has_blur_filters(model: nn.Module) -> bool:
    """Whether ``model`` holds BlurPool filters (non-persistent ``filt`` buffers)."""
    return any(name.endswith(".filt") or name == "filt" for name, _ in model.named_buffers())


def _match_by_order(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], drop_filters: bool = True):
    """``state`` renamed to ``own``'s keys by position, if every shape agrees; else None.

    The original antialiased-cnns models hold the same tensors as torchvision's in the
    same order under other module names (``conv2.1.weight`` for ``conv2.weight``, shifted
    ``features.<i>``), plus persistent BlurPool filters (``*.filt``), which are dropped
    for a model that has BlurPools of its own (their size is checked by the caller; for a
    model without, the filters stay and the file does not fit). This is how its
    ``copy_params_buffers`` copies weights: by order and shape.
    """
    theirs = [(k, v) for k, v in state.items() if not (drop_filters and k.endswith(".filt"))]
    if len(theirs) != len(own):
        return None
    if any(tuple(v.shape) != tuple(mine.shape) for (_, v), mine in zip(theirs, own.values())):
        return None
    return {name: value for name, (_, value) in zip(own, theirs)}


def save_weights(state: Mapping[str, torch.Tensor], path: PathLike, arch: str = "") -> Path:
    """Write ``{"state_dict": ...}`` without prefixes, atomically (the original's ``--save_weights``);
    with ``arch``, the file names its architecture (``"arch"``, as the original's checkpoints do)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"state_dict": strip_state_dict(state), **({"arch": arch} if arch else {})}, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
