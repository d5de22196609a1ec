"""STIR feature analysis of a trained model: the original's ``eval.py --equivariance`` and ``--index-correlation``.

Both read the *test* split of the STIR arrays (every instance, all 48 object
scales) and give numpy arrays that become run artifacts:

``errors.npz`` (:func:`equivariance_errors`)
    ``stage1``, ``stage2``: float64 (n classes, m instances, 6). Column j is
    the error of pair ``PAIRS[j]`` (reference scale, other scale) of
    :mod:`raysys.families.stir.layers.equivariance`: the other image's post-ReLU stage map,
    cropped to the object and resized bicubically to the reference crop,
    against the reference crop, ‖ref − other‖² / ‖ref‖². A map that is zero on
    the reference crop gives inf/nan, as in the original (plots drop them).
``indices.npz`` (:func:`scale_indices`)
    ``pool1``, ``pool2``: uint8, the scale index (0 = the k×k kernel, i = the
    (k+2i)² kernel) each scale pool chose, shape (48, n, m, C) for slice and
    energy pooling and (48, n, 1, C, H, W) for pixel pooling (first instance
    of each class only: per-pixel maps of every instance would take GBs).
    ``scales`` (48,): the object scale of axis 0, ascending 17..64 (the
    original's row order); ``kernel_size``: k.

Scope as in the original: errors for ``standard``, the three scale-pool
models and ``kanazawa`` (the other models' stage maps keep a scale axis or
are same-padded columns, so the object crop is undefined) on emoji, mnist and
trafficsign; indices for the scale-pool models, on any STIR dataset, for
every run (the original hard-coded two run ids).

Fixed quirk: the original fed the equivariance pass raw 0..255 pixels to a
model trained on pixels / 255; here the images are scaled as in training
(``raw_pixels=True`` restores the original's inputs).
"""
from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from raysys.data.formats.stir_npz import SCALES
from raysys.data.shards import decode_raw, load_manifest, shard_files
from raysys.errors import ConfigError, DataError
from raysys.eval.overrides import allow_eval_override
from raysys.families.stir.layers.equivariance import PAIRS, crop_object, equivariance_error
from raysys.families.stir.params import original_params
from raysys.models.registry import build_model
from raysys.track import runs
from raysys.train.inputs import input_spec

ERRORS_ARTIFACT = "errors.npz"
ERROR_TAG = "stir_analysis_error"  # on a run whose analysis failed after training
INDICES_ARTIFACT = "indices.npz"
EQUIVARIANCE_MODELS = ("standard", "pixel_pool", "slice_pool", "energy_pool", "kanazawa")
EQUIVARIANCE_DATA = ("emoji", "mnist", "trafficsign")
INDEX_MODELS = ("pixel_pool", "slice_pool", "energy_pool")
PIXEL_MAP_INSTANCES = 1  # pixel pooling: per-pixel index maps of the first instance of each class
CANVAS = 64
OBJECT_SCALES = tuple(range(17, CANVAS + 1))  # ascending, the order of indices.npz axis 0


def analyses_for(model: str, data: str) -> Tuple[str, ...]:
    """The artifacts the original computes for ``model`` on ``data`` (original names, e.g. pixel_pool, emoji)."""
    out = []
    if model in EQUIVARIANCE_MODELS and data in EQUIVARIANCE_DATA:
        out.append(ERRORS_ARTIFACT)
    if model in INDEX_MODELS:
        out.append(INDICES_ARTIFACT)
    return tuple(out)


@dataclass
class TestObjects:
    """The test split of STIR arrays: images (48, n, m, 64, 64, C) uint8, scales (48, n, m), positions (48, n, m, 2).

    Axis 0 is the npz scale index ``64 - s`` (s = 64 first).
    """

    images: np.ndarray
    scales: np.ndarray
    positions: np.ndarray

    @classmethod
    def from_arrays(cls, arrays) -> "TestObjects":
        """From :class:`raysys.data.formats.stir_npz.StirArrays` (split 2 = test)."""
        images = arrays.imgs[2]
        if images.ndim == 5:
            images = images[..., None]
        return cls(images, arrays.scls[2], arrays.psts[2])

    @property
    def classes(self) -> int:
        return int(self.images.shape[1])

    @property
    def instances(self) -> int:
        return int(self.images.shape[2])

    def batch(self, rows: np.ndarray, cols: Tuple[np.ndarray, ...], raw_pixels: bool) -> torch.Tensor:
        """Float NCHW images at (scale index, class, instance) = (rows, *cols), scaled like in training."""
        pixels = torch.from_numpy(np.ascontiguousarray(self.images[(rows, *cols)])).permute(0, 3, 1, 2).float()
        return pixels if raw_pixels else pixels / 255.0


def load_test_objects(path: str) -> TestObjects:
    """The test split from a STIR shards folder (only that split is read)."""
    manifest = load_manifest(path)
    stir = manifest.get("options", {}).get("stir")
    if not stir:
        raise DataError(f"{path} does not hold STIR shards (no 'stir' entry in its manifest)")
    grid = (len(SCALES), int(manifest["num_classes"]), int(stir["instances"]))
    channels = int(manifest["image"]["channels"])
    table = pq.read_table(shard_files(path, manifest, "test")).sort_by("index")
    if table.num_rows != int(np.prod(grid)):
        raise DataError(f"{path}: the test split has {table.num_rows} rows, expected {int(np.prod(grid))} (48·n·m)")
    images = decode_raw(table.column("image"), (CANVAS, CANVAS, channels)).reshape(grid + (CANVAS, CANVAS, channels))
    left, top = table.column("left").to_numpy(), table.column("top").to_numpy()
    return TestObjects(images, table.column("scale").to_numpy().reshape(grid),
                       np.stack([left, top], axis=1).reshape(grid + (2,)))


def _pair_scales() -> Tuple[int, ...]:
    """The distinct scales of PAIRS in order of appearance (64, 49, 48, 33, 32, 17)."""
    return tuple(dict.fromkeys(s for pair in PAIRS for s in pair))


@torch.no_grad()
def equivariance_errors(model: nn.Module, objects: TestObjects, device=None, *, objects_per_batch: int = 4,
                        raw_pixels: bool = False) -> Dict[str, np.ndarray]:
    """``stage1``/``stage2`` errors (n, m, 6) of a model with ``stages(x)`` (see the module docstring)."""
    device = torch.device(device or "cpu")
    model.eval()
    scales = _pair_scales()
    slot = {s: j for j, s in enumerate(scales)}
    scale_rows = np.array([CANVAS - s for s in scales])
    n, m = objects.classes, objects.instances
    errors = {name: np.empty((n, m, len(PAIRS))) for name in ("stage1", "stage2")}
    pairs = [(slot[a], slot[b]) for a, b in PAIRS]
    everything = [(c, i) for c in range(n) for i in range(m)]
    for start in range(0, len(everything), objects_per_batch):
        chunk = everything[start:start + objects_per_batch]
        cls = np.repeat([c for c, _ in chunk], len(scales))
        inst = np.repeat([i for _, i in chunk], len(scales))
        rows = np.tile(scale_rows, len(chunk))
        maps = model.stages(objects.batch(rows, (cls, inst), raw_pixels).to(device))
        for name, stage in maps.items():
            if name not in errors:
                continue
            stage = stage.float().reshape(len(chunk), len(scales), *stage.shape[1:])
            for b, (c, i) in enumerate(chunk):
                crops = [crop_object(stage[b, j], int(objects.scales[r, c, i]), *map(int, objects.positions[r, c, i]))
                         for j, r in enumerate(scale_rows)]
                for p, (ref, other) in enumerate(pairs):
                    errors[name][c, i, p] = equivariance_error(crops[ref], crops[other])
    return errors


@torch.no_grad()
def scale_indices(model: nn.Module, objects: TestObjects, device=None, *, batch_size: int = 32,
                  raw_pixels: bool = False) -> Dict[str, np.ndarray]:
    """``pool1``/``pool2`` scale indices of a scale-pool model over the test split (see the module docstring)."""
    device = torch.device(device or "cpu")
    model.eval()
    pixel = getattr(model.pool1, "mode", "") == "pixel"
    m = min(objects.instances, PIXEL_MAP_INSTANCES) if pixel else objects.instances
    grid = (len(OBJECT_SCALES), objects.classes, m)
    rows, cls, inst = (a.reshape(-1) for a in np.indices(grid))
    rows = CANVAS - np.asarray(OBJECT_SCALES)[rows]  # ascending object scale -> npz scale index
    parts: Dict[str, list] = {"pool1": [], "pool2": []}
    for start in range(0, len(rows), batch_size):
        part = slice(start, start + batch_size)
        model(objects.batch(rows[part], (cls[part], inst[part]), raw_pixels).to(device))
        for name in parts:
            parts[name].append(getattr(model, name).indices.to("cpu", torch.uint8).numpy())
    out = {name: np.concatenate(chunks).reshape(grid + chunks[0].shape[1:]) for name, chunks in parts.items()}
    kernel = getattr(model.conv1, "kernel_size", 0)
    return {**out, "scales": np.asarray(OBJECT_SCALES), "kernel_size": np.asarray(int(kernel))}


def npz_bytes(arrays: Dict[str, np.ndarray]) -> bytes:
    """Compressed npz of ``arrays`` in memory."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def analyse(model: nn.Module, objects: TestObjects, which: Iterable[str], device=None, *,
            raw_pixels: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
    """{artifact name: arrays} for the artifacts in ``which`` (see :func:`analyses_for`)."""
    compute = {ERRORS_ARTIFACT: equivariance_errors, INDICES_ARTIFACT: scale_indices}
    return {name: compute[name](model, objects, device, raw_pixels=raw_pixels) for name in which}


def log_analysis(uri: str, run_id: str, results: Dict[str, Dict[str, np.ndarray]]) -> None:
    """Log each result as ``<name>`` (an npz file) at the root of the run's artifacts."""
    with tempfile.TemporaryDirectory() as directory:
        files = []
        for name, data in analysis_files(results).items():
            path = Path(directory) / name
            path.write_bytes(data)
            files.append(path)
        mlflow_client = runs.client(uri)
        for path in files:
            mlflow_client.log_artifact(run_id, str(path))


def analysis_files(results: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, bytes]:
    """{artifact name: npz file bytes} of :func:`analyse`'s results."""
    return {name: npz_bytes(arrays) for name, arrays in results.items()}


def analyse_run(cfg, params: Dict[str, object], model: nn.Module, device=None,
                objects: Optional[TestObjects] = None) -> Tuple[Dict[str, bytes], str]:
    """The analysis artifacts of a just-trained STIR run (``params``: the original's model/data names).

    Returns ({artifact name: npz bytes}, error): nothing when ``stir.analysis`` is off or
    nothing applies. A failure does not fail the finished training: it comes back as a
    one-line message (logged as a warning), which the caller records as the run tag
    :data:`ERROR_TAG` (``raysys stir analyze`` can redo it). Opens no MLflow run: the
    training loop sends the bytes to the driver, which logs them.
    """
    which = analyses_for(str(params["model"]), str(params["data"]))
    if not which or not cfg.stir.analysis:
        return {}, ""
    try:
        if objects is None:
            objects = load_test_objects(str(cfg.data.path))
        results = analyse(model, objects, which, device, raw_pixels=bool(cfg.stir.analysis_raw_pixels))
        return analysis_files(results), ""
    except Exception as err:  # noqa: BLE001 - the training result must survive a failed analysis
        message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        logging.getLogger(__name__).warning("STIR analysis failed: %s", message)
        return {}, message


def analyse_trained(trained, target: str) -> Dict[str, object]:
    """``python -m raysys stir analyze <run id | run name | checkpoint>``: the artifacts of a finished run.

    ``trained`` is the run's model and config as the driver resolved ``target``
    (:func:`raysys.driver.checkpoints.resolve`); the artifacts go into that run.
    Computed even when the run had ``stir.analysis=false``.
    """
    cfg = trained.cfg
    if str(cfg.train.recipe) != "stir":
        raise ConfigError(f"{target!r} was trained with train.recipe={cfg.train.recipe!r}; stir analyze needs a STIR run")
    params = original_params(cfg)
    which = analyses_for(str(params["model"]), str(params["data"]))
    model = build_model(cfg, input_spec(cfg))
    model.load_state_dict(trained.state)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = analyse(model.to(device), load_test_objects(str(cfg.data.path)), which, device,
                      raw_pixels=bool(cfg.stir.analysis_raw_pixels))
    if trained.run_id:
        log_analysis(str(cfg.tracking.uri), trained.run_id, results)
    return {"run_id": trained.run_id, "source": trained.source, "model": params["model"], "data": params["data"],
            "artifacts": list(results)}


# ``raysys stir analyze <trained run> stir.analysis_raw_pixels=true``: redo the analysis differently.
allow_eval_override("stir.analysis_raw_pixels")
allow_eval_override("stir.analysis")
