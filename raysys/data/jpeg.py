"""JPEG shards -> uint8 batches of square images, as ImageNet training reads them.

Each image is decoded with ``torchvision.io.decode_jpeg`` (libjpeg-turbo), or
only the part its crop reads where that is smaller than the image (the same
pixels; :mod:`raysys.data.jpeg_window`), and squared by a crop policy
(:class:`CropPolicy`): ``random-resized`` (RandomResizedCrop, the training
transform) or ``center`` (Resize to size/0.875, then CenterCrop: 256 -> 224, the
evaluation transform). Crop parameters come from an explicit ``torch.Generator``,
so a batch is a pure function of its seed.

Two options change where or how images are decoded (``data.jpeg_draft``,
``data.jpeg_device``; docs/configuration.md):

* reduced-size decoding (``draft=True``): a policy first chooses its window on
  the full-size image (the same generator draws as a full decode), then the
  image is decoded at the smallest DCT scale (1/2, 1/4, 1/8; Pillow's
  ``Image.draft``) at which the window keeps at least the side it needs, so
  crop boxes and output shapes are those of a full decode; pixels differ by the
  DCT-domain downscale (docs/fidelity.md);
* GPU decoding (``device="cuda"``): nvJPEG through ``decode_jpeg(device=...)``;
  the crops run on the GPU and the batch stays there.

torchvision is imported on first use: importing it costs seconds (it loads
torch._dynamo), which every Ray Train worker of a raw-pixel run would pay.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from raysys.data import jpeg_window
from raysys.errors import ConfigError, DataError
from raysys.registry import Registry

# Resize(256) + CenterCrop(224): the short side is resized to size / CENTER_FRACTION.
CENTER_FRACTION = 0.875
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
# libjpeg's reduced-size IDCTs that Pillow's draft mode offers, largest first.
REDUCTIONS = (8, 4, 2)
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Window:
    """Where a crop policy reads an image (full-size pixels) and the side it needs there.

    ``need``: both sides of the window, in a reduced-size decode, must keep at
    least this many pixels for the output to lose no resolution.
    """

    top: int
    left: int
    height: int
    width: int
    need: int

    def cut(self, image: torch.Tensor) -> torch.Tensor:
        """The window's pixels of ``image`` (..., H, W), a view."""
        return image[..., self.top : self.top + self.height, self.left : self.left + self.width]


@dataclass(frozen=True)
class CropPolicy:
    """How an image is squared: ``window(height, width, size, generator)``, then ``finish(pixels, size)``.

    ``finish`` gets the window's pixels (uint8 (3, h, w)) and returns (3, size, size).
    Calling the policy on a full-size image applies both.
    """

    window: Callable[[int, int, int, torch.Generator], Window]
    finish: Callable[[torch.Tensor, int], torch.Tensor]

    def __call__(self, image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
        box = self.window(image.shape[-2], image.shape[-1], size, generator)
        return self.finish(box.cut(image), size)


# name -> CropPolicy (or a plain function (image, size, generator) -> image: never draft-decoded).
CROPS: Registry[CropPolicy] = Registry("crop")


def encoded_tensors(column: pa.ChunkedArray | pa.Array) -> List[torch.Tensor]:
    """The binary ``image`` column as 1-D uint8 tensors (one copy of the bytes in all)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise DataError(f"JPEG image column has {column.null_count} missing images")
    if len(column) == 0:
        return []
    offset_type = np.int32 if pa.types.is_binary(column.type) else np.int64
    _, offsets_buffer, values_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, offset_type)[column.offset : column.offset + len(column) + 1]
    values = torch.from_numpy(np.frombuffer(values_buffer, np.uint8)[offsets[0] : offsets[-1]].copy())
    starts = (offsets - offsets[0]).tolist()
    return [values[a:b] for a, b in zip(starts[:-1], starts[1:])]


def decode_tensors(tensors: List[torch.Tensor], device: torch.device = torch.device("cpu")) -> List[torch.Tensor]:
    """Encoded JPEGs (1-D uint8 tensors) as uint8 (3, H, W) RGB tensors on ``device``."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not tensors:
        return []
    try:
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as err:
        raise DataError(f"cannot decode a JPEG image of the shards: {err}") from None


def decode(column: pa.ChunkedArray | pa.Array, device: str = "cpu") -> List[torch.Tensor]:
    """Each JPEG as a uint8 (3, H, W) RGB tensor, decoded on ``device`` (cpu, or cuda: nvJPEG)."""
    return decode_tensors(encoded_tensors(column), decode_device(device))


# -- the decode device --------------------------------------------------------------------------
def check_options(draft: bool, device: str) -> None:
    """ConfigError for a ``data.jpeg_device`` value or a combination that cannot work."""
    if device not in DEVICES:
        raise ConfigError(f"bad value for 'data.jpeg_device': {device!r} is not one of {list(DEVICES)}")
    if draft and device != "cpu":
        raise ConfigError(
            "data.jpeg_draft=true decodes with libjpeg on the CPU; nvJPEG (data.jpeg_device=cuda) has no "
            "reduced-size decoding: set one of them only"
        )


def check_device_available(device: str, workers_use_gpu: bool) -> None:
    """ConfigError for ``data.jpeg_device=cuda`` on workers without a GPU."""
    if device == "cuda" and not workers_use_gpu:
        raise ConfigError(
            "data.jpeg_device=cuda decodes on the training workers' GPUs, but they have none "
            "(scaling.use_gpu, or no GPU in the cluster): use data.jpeg_device=cpu"
        )


@functools.lru_cache(maxsize=None)
def decode_device(name: str) -> torch.device:
    """The torch device for ``data.jpeg_device``; ``cuda`` is this Ray Train worker's GPU.

    A bare "cuda" would mean the calling thread's current device (cuda:0 on a
    prefetch thread), not the worker's, so it is resolved to an index once per process.
    """
    check_options(False, name)
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("data.jpeg_device=cuda, but this process sees no CUDA device: use data.jpeg_device=cpu")
    try:
        from ray.train.torch import get_device
        from ray.train.utils import _in_ray_train_worker

        if _in_ray_train_worker():
            return get_device()
    except ImportError:  # Ray without Train: not a worker
        pass
    return torch.device("cuda", torch.cuda.current_device())


# -- crop policies ---------------------------------------------------------------------------------
def random_resized_params(
    height: int, width: int, generator: torch.Generator, scale: Sequence[float] = SCALE, ratio: Sequence[float] = RATIO
) -> Tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's ``RandomResizedCrop.get_params``, seeded by ``generator``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize_uint8(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 (3, h, w) image.

    On the CPU in uint8 directly (bit-identical to torchvision's ``resize``); CUDA
    kernels have no uint8 bilinear, so there it runs in float32 and rounds back,
    as torchvision does.
    """
    batch = image[None]
    if image.device.type == "cpu":
        return F.interpolate(batch, size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
    out = F.interpolate(batch.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def _random_resized_window(height: int, width: int, size: int, generator: torch.Generator) -> Window:
    return Window(*random_resized_params(height, width, generator), need=size)


def _resize_window(image: torch.Tensor, size: int) -> torch.Tensor:
    return resize_uint8(image, size, size)


# RandomResizedCrop(size): a random area (8-100%) and aspect (3/4-4/3), resized to size x size.
# Bit-identical to torchvision's ``resized_crop`` on uint8 (antialiased bilinear), without its
# copy of the crop: ~15% less time per image.
CROPS.add("random-resized", CropPolicy(_random_resized_window, _resize_window))


def short_side_policy(short_side: Callable[[int], int]) -> CropPolicy:
    """Resize the short side to ``short_side(size)``, then CenterCrop(size): the whole image is read."""

    def window(height: int, width: int, size: int, generator: torch.Generator) -> Window:
        return Window(0, 0, height, width, need=short_side(size))

    def finish(image: torch.Tensor, size: int) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF

        return TF.center_crop(TF.resize(image, [short_side(size)], antialias=True), [size, size])

    return CropPolicy(window, finish)


def center_short_side(size: int) -> int:
    """Resize(256) for CenterCrop(224): size / 0.875."""
    return int(size / CENTER_FRACTION)


CROPS.add("center", short_side_policy(center_short_side))


# -- decoding only the window ----------------------------------------------------------------------
def window_pixels(blob: torch.Tensor, window: Window, height: int, width: int) -> Optional[torch.Tensor]:
    """``window``'s pixels of a ``height`` x ``width`` JPEG, decoded alone; None where that cannot be done."""
    if not jpeg_window.enabled() or (window.height, window.width) == (height, width):
        return None
    return jpeg_window.decode(blob, window.top, window.left, window.height, window.width, height, width)


def decode_window(blob: torch.Tensor, box: Window, height: int, width: int) -> torch.Tensor:
    """``box``'s pixels of a ``height`` x ``width`` JPEG: decoded alone where possible, else cut from a full decode."""
    pixels = window_pixels(blob, box, height, width)
    return box.cut(decode_tensors([blob])[0]) if pixels is None else pixels


def crop_pixels(blob: torch.Tensor, policy: CropPolicy, size: int, generator: torch.Generator) -> torch.Tensor:
    """The pixels of the window ``policy`` draws on one JPEG, decoding only that window where possible.

    The window is drawn on the header's size, as a full decode would draw it, so
    the generator advances the same way and the pixels are the same.
    """
    dims = jpeg_window.header(blob)
    if dims is None:
        image = decode_tensors([blob])[0]
        return policy.window(image.shape[-2], image.shape[-1], size, generator).cut(image)
    return decode_window(blob, policy.window(*dims, size, generator), *dims)


def square(blob: torch.Tensor, policy: CropPolicy, size: int, generator: torch.Generator) -> torch.Tensor:
    """One JPEG squared by ``policy`` (:func:`crop_pixels`, then ``policy.finish``)."""
    return policy.finish(crop_pixels(blob, policy, size, generator), size)


# -- reduced-size (draft) decoding ----------------------------------------------------------------
def draft_reduction(window: Window) -> int:
    """The largest reduction (8, 4, 2; else 1) at which both sides of ``window`` keep ``need`` pixels."""
    return next((r for r in REDUCTIONS if min(window.height, window.width) >= window.need * r), 1)


def reduced_window(window: Window, reduction: int, height: int, width: int) -> Window:
    """``window`` in the pixels of an image decoded at 1/``reduction`` (``height`` x ``width`` of those).

    Reduced pixel j covers full-size pixels [j*r, (j+1)*r); edges round to the
    nearest reduced pixel (floor(x + 1/2): shift-invariant, so a side of at
    least need*r full-size pixels keeps at least ``need``).
    """
    def edge(x: int, limit: int) -> int:
        return min(limit, int(math.floor(x / reduction + 0.5)))

    top, left = edge(window.top, height), edge(window.left, width)
    bottom, right = edge(window.top + window.height, height), edge(window.left + window.width, width)
    return Window(top, left, bottom - top, right - left, window.need)


def _open(blob: torch.Tensor):
    from PIL import Image

    try:
        return Image.open(io.BytesIO(blob.numpy().tobytes()), formats=["JPEG"])
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode a JPEG image of the shards: {err}") from None


def _draft_pixels(picture, reduction: int) -> Optional[torch.Tensor]:
    """Decode an opened JPEG at 1/``reduction`` as uint8 (3, h, w) RGB (a channels-last view); None if it cannot."""
    from PIL import Image

    width, height = picture.size
    # Pillow picks the largest scale whose size is >= the request: exactly 1/reduction here.
    picture.draft("RGB", (width // reduction, height // reduction))
    if picture.size != (-(-width // reduction), -(-height // reduction)):
        return None  # the loader declined to scale (not a plain JPEG stream)
    try:
        picture = picture if picture.mode == "RGB" else picture.convert("RGB")
        pixels = np.array(picture)  # writable: np.asarray of a Pillow image is read-only
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode a JPEG image of the shards: {err}") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def draft_decode(
    blob: torch.Tensor, policy: CropPolicy, size: int, generator: torch.Generator,
) -> Tuple[torch.Tensor, Window, int]:
    """Decode one JPEG at the smallest scale ``policy``'s window allows: (pixels, window there, reduction).

    The window is drawn on the full-size dimensions (read from the header), so
    the generator advances exactly as in a full decode. At reduction 1 the image
    is decoded as without draft mode (its window alone where possible, else
    ``decode_jpeg``), so its output is the same.
    """
    dims = jpeg_window.header(blob)
    if dims is None:
        with _open(blob) as picture:  # Pillow reads the size
            width, height = picture.size
            window = policy.window(height, width, size, generator)
            reduction = draft_reduction(window)
            pixels = _draft_pixels(picture, reduction) if reduction > 1 else None
    else:
        (height, width), pixels = dims, None
        window = policy.window(height, width, size, generator)
        reduction = draft_reduction(window)
        if reduction > 1:  # only then does Pillow open it
            with _open(blob) as picture:
                pixels = _draft_pixels(picture, reduction)
    if pixels is None:
        pixels = window_pixels(blob, window, height, width)
        if pixels is not None:
            return pixels, Window(0, 0, window.height, window.width, window.need), 1
        return decode_tensors([blob])[0], window, 1
    return pixels, reduced_window(window, reduction, pixels.shape[-2], pixels.shape[-1]), reduction


def draft_square(blob: torch.Tensor, policy: CropPolicy, size: int, generator: torch.Generator) -> Tuple[torch.Tensor, int]:
    """One JPEG squared by ``policy`` from its reduced-size decode: ((3, size, size) image, reduction)."""
    pixels, window, reduction = draft_decode(blob, policy, size, generator)
    return policy.finish(window.cut(pixels), size), reduction


def decode_batch(
    column: pa.ChunkedArray | pa.Array, size: int, crop: str, generator: torch.Generator,
    *, draft: bool = False, device: str = "cpu",
) -> torch.Tensor:
    """JPEG bytes -> uint8 (N, 3, size, size), each image squared by the crop policy ``crop``.

    ``draft``: decode each image at the smallest DCT scale its crop allows
    (:func:`draft_square`). ``device="cuda"``: decode (nvJPEG) and crop on this
    worker's GPU; the batch is returned there.
    """
    check_options(draft, device)
    policy = CROPS.get(crop)
    # A policy registered as a plain function (image, size, generator) has no window: decoded whole.
    if draft and isinstance(policy, CropPolicy):
        images = [draft_square(blob, policy, size, generator)[0] for blob in encoded_tensors(column)]
    elif device == "cpu" and isinstance(policy, CropPolicy):
        # One image at a time: a batch of large decoded images is never held at once.
        images = [square(blob, policy, size, generator) for blob in encoded_tensors(column)]
    elif device == "cpu":
        images = [policy(decode_tensors([blob])[0], size, generator) for blob in encoded_tensors(column)]
    else:
        images = [policy(image, size, generator) for image in decode(column, device)]  # nvJPEG: one batched call
    if not images:
        return torch.empty((0, 3, size, size), dtype=torch.uint8, device=decode_device(device))
    return torch.stack(images)
