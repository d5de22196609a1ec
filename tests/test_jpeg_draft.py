"""Reduced-size JPEG decoding (data.jpeg_draft) and the decode device option (data.jpeg_device)."""
from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from raysys.bench.fixtures import smooth_image
from raysys.data import eval_images  # noqa: F401  (registers the short-side policy)
from raysys.data import jpeg
from raysys.data.jpeg import CROPS, Window, decode, decode_batch, draft_decode, draft_reduction, draft_square
from raysys.errors import ConfigError, DataError

SIZE = 224


def photo_jpeg(width: int, height: int, seed: int = 0, mode: str = "RGB") -> bytes:
    """A large photo-like JPEG: ImageNet-scale detail upscaled, as a camera image of the same scene."""
    small = smooth_image(max(2, width // 4), max(2, height // 4), np.random.default_rng(seed))
    out = io.BytesIO()
    small.resize((width, height), Image.Resampling.BICUBIC).convert(mode).save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def large() -> bytes:
    return photo_jpeg(2000, 1500, seed=1)


def blob_of(data: bytes) -> torch.Tensor:
    return jpeg.encoded_tensors(pa.array([data], pa.binary()))[0]


def mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.int() - b.int()).abs().float().mean())


def test_reduction_is_the_largest_that_keeps_the_output_size():
    # 2000x1500 image, a 1400x1800 crop box to 224: 1400 >= 4*224 but < 8*224.
    assert draft_reduction(Window(0, 0, 1400, 1800, need=SIZE)) == 4
    assert draft_reduction(Window(0, 0, 500, 900, need=SIZE)) == 2  # the short side decides
    assert draft_reduction(Window(0, 0, 447, 2000, need=SIZE)) == 1
    assert draft_reduction(Window(0, 0, 1792, 1792, need=SIZE)) == 8
    # Center crop 224 of a 2000x1500 image: the short side must keep 256 (Resize(256)).
    window = CROPS.get("center").window(1500, 2000, SIZE, torch.Generator())
    assert (window.need, draft_reduction(window)) == (256, 4)


def test_reduced_window_keeps_the_needed_side():
    for top, height in [(0, 896), (3, 897), (1, 899), (601, 899)]:
        reduced = jpeg.reduced_window(Window(top, 5, height, 1000, need=SIZE), 4, 375, 500)
        assert reduced.height >= SIZE and reduced.top + reduced.height <= 375
        assert abs(reduced.top - top / 4) <= 0.5


def test_draft_decodes_at_the_computed_scale(large):
    blob = blob_of(large)
    for seed in range(4):
        full_box = jpeg.random_resized_params(1500, 2000, torch.Generator().manual_seed(seed))
        expected = draft_reduction(Window(*full_box, need=SIZE))
        pixels, window, reduction = draft_decode(blob, CROPS.get("random-resized"), SIZE, torch.Generator().manual_seed(seed))
        assert reduction == expected
        assert tuple(pixels.shape) == (3, math.ceil(1500 / reduction), math.ceil(2000 / reduction))
        assert min(window.height, window.width) >= SIZE
    pixels, _, reduction = draft_decode(blob, CROPS.get("center"), SIZE, torch.Generator())
    assert reduction == 4 and tuple(pixels.shape) == (3, 375, 500)


@pytest.mark.parametrize("crop, tolerance", [("random-resized", 3.0), ("center", 1.0), ("short-side", 1.0)])
def test_draft_matches_full_decode(large, crop, tolerance):
    """Same crop boxes (generator draws) and shapes; pixels within a few grey levels."""
    blob, full = blob_of(large), decode(pa.array([large], pa.binary()))[0]
    policy = CROPS.get(crop)
    for seed in range(3):
        g_full, g_draft = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        expected = policy(full, SIZE, g_full)
        out, reduction = draft_square(blob, policy, SIZE, g_draft)
        assert reduction > 1 and out.shape == expected.shape == (3, SIZE, SIZE) and out.dtype == torch.uint8
        assert torch.equal(g_full.get_state(), g_draft.get_state())  # the same draws: the same crop box
        assert mean_abs(out, expected) < tolerance


def test_draft_without_a_reduction_is_the_full_decode():
    """ImageNet-sized images at 224: no crop box allows 1/2, so draft mode changes nothing."""
    col = pa.array([photo_jpeg(500, 375, seed=s) for s in range(4)], pa.binary())
    for crop in ("random-resized", "center"):
        full = decode_batch(col, SIZE, crop, torch.Generator().manual_seed(7))
        draft = decode_batch(col, SIZE, crop, torch.Generator().manual_seed(7), draft=True)
        assert torch.equal(full, draft)


def test_option_off_is_todays_output(large):
    """draft=False: decode_jpeg + torchvision's resized_crop / Resize(256)+CenterCrop(224), bit for bit."""
    import torchvision.transforms.v2 as T
    import torchvision.transforms.v2.functional as TF

    blobs = [large, photo_jpeg(640, 480, seed=2)]
    col = pa.array(blobs, pa.binary())
    images = decode(col)
    generator = torch.Generator().manual_seed(3)
    expected = []
    for image in images:
        top, left, h, w = jpeg.random_resized_params(image.shape[-2], image.shape[-1], generator)
        expected.append(TF.resized_crop(image, top, left, h, w, [SIZE, SIZE], antialias=True))
    assert torch.equal(decode_batch(col, SIZE, "random-resized", torch.Generator().manual_seed(3)), torch.stack(expected))
    center = torch.stack([T.Compose([T.Resize(256), T.CenterCrop(SIZE)])(image) for image in images])
    assert torch.equal(decode_batch(col, SIZE, "center", torch.Generator()), center)


def test_draft_batches_follow_the_seed(large):
    col = pa.array([large, photo_jpeg(1200, 1000, seed=3)], pa.binary())
    a = decode_batch(col, SIZE, "random-resized", torch.Generator().manual_seed(5), draft=True)
    b = decode_batch(col, SIZE, "random-resized", torch.Generator().manual_seed(5), draft=True)
    c = decode_batch(col, SIZE, "random-resized", torch.Generator().manual_seed(6), draft=True)
    assert a.shape == (2, 3, SIZE, SIZE) and torch.equal(a, b) and not torch.equal(a, c)
    assert decode_batch(pa.array([], pa.binary()), SIZE, "center", torch.Generator(), draft=True).shape == (0, 3, SIZE, SIZE)


def test_draft_handles_greyscale_and_refuses_broken_files():
    grey = decode_batch(pa.array([photo_jpeg(1000, 800, mode="L")], pa.binary()), 64, "center", torch.Generator(), draft=True)
    assert grey.shape == (1, 3, 64, 64) and torch.equal(grey[0, 0], grey[0, 1])
    with pytest.raises(DataError, match="cannot decode a JPEG"):
        decode_batch(pa.array([b"not a jpeg"], pa.binary()), 64, "center", torch.Generator(), draft=True)


def test_a_plain_function_policy_is_decoded_whole(large, monkeypatch):
    calls = []

    def whole(image, size, generator):
        calls.append(tuple(image.shape))
        return image[:, :size, :size]

    monkeypatch.setitem(CROPS._items, "test-whole", whole)
    out = decode_batch(pa.array([large], pa.binary()), 32, "test-whole", torch.Generator(), draft=True)
    assert out.shape == (1, 3, 32, 32) and calls == [(3, 1500, 2000)]


# -- data.jpeg_device and the config keys ------------------------------------------------------------
def test_device_values_are_checked():
    with pytest.raises(ConfigError, match="data.jpeg_device.*'gpu'.*cpu.*cuda"):
        jpeg.check_options(False, "gpu")
    with pytest.raises(ConfigError, match="data.jpeg_draft.*data.jpeg_device=cuda"):
        jpeg.check_options(True, "cuda")
    with pytest.raises(ConfigError, match="data.jpeg_device=cuda.*no"):
        jpeg.check_device_available("cuda", workers_use_gpu=False)
    jpeg.check_device_available("cpu", workers_use_gpu=False)
    assert jpeg.decode_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no CUDA is present")
def test_cuda_decoding_is_refused_without_cuda():
    jpeg.decode_device.cache_clear()
    with pytest.raises(ConfigError, match="data.jpeg_device=cuda.*no CUDA"):
        decode_batch(pa.array([photo_jpeg(64, 48)], pa.binary()), 32, "center", torch.Generator(), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
def test_cuda_decoding_matches_the_cpu(large):
    col = pa.array([large, photo_jpeg(640, 480, seed=2)], pa.binary())
    for crop in ("random-resized", "center"):
        cpu = decode_batch(col, SIZE, crop, torch.Generator().manual_seed(1))
        gpu = decode_batch(col, SIZE, crop, torch.Generator().manual_seed(1), device="cuda")
        assert gpu.is_cuda and gpu.shape == cpu.shape and gpu.dtype == torch.uint8
        assert mean_abs(gpu.cpu(), cpu) < 2


def test_image_format_carries_the_options():
    from raysys.data.stream import image_format

    manifest = {"dataset": "imagenet", "image": {"encoding": "jpeg", "channels": 3}}
    fmt = image_format(manifest, (0.5,) * 3, (0.5,) * 3, 32, jpeg_draft=True)
    assert (fmt.jpeg_draft, fmt.jpeg_device) == (True, "cpu")
    with pytest.raises(ConfigError, match="data.jpeg_device"):
        image_format(manifest, (0.5,) * 3, (0.5,) * 3, 32, jpeg_device="tpu")


def test_the_options_are_off_by_default_and_in_every_preset():
    from raysys.config import list_presets, load_config
    from raysys.config.loader import _preset_layers

    cfg = load_config("cifar-resnet/cifar10-resnet20", ["data.jpeg_draft=true"])
    assert cfg.data.jpeg_draft is True and cfg.data.jpeg_device == "cpu"
    for preset in list_presets():
        for layer in _preset_layers(preset.name):
            data = (layer.get("data") or {}) if isinstance(layer, dict) else {}
            assert data.get("jpeg_draft", False) is False and data.get("jpeg_device", "cpu") == "cpu", preset.name


def test_runs_recorded_before_the_keys_still_match():
    from omegaconf import OmegaConf

    from raysys.config import load_config
    from raysys.config.renames import legacy_tree

    tree = OmegaConf.to_container(load_config("cifar-resnet/cifar10-resnet20"), resolve=True)
    old = legacy_tree(tree)
    assert old is not None and "jpeg_draft" not in old["data"] and "jpeg_device" not in old["data"]
    tree["data"]["jpeg_draft"] = True
    assert legacy_tree(tree) is None  # draft-decoded runs are new experiments


def test_a_declined_draft_falls_back_to_the_full_decode(large, monkeypatch):
    from PIL import JpegImagePlugin

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: None)
    full = decode_batch(pa.array([large], pa.binary()), SIZE, "center", torch.Generator())
    _, _, reduction = draft_decode(blob_of(large), CROPS.get("center"), SIZE, torch.Generator())
    assert reduction == 1
    assert torch.equal(decode_batch(pa.array([large], pa.binary()), SIZE, "center", torch.Generator(), draft=True), full)


def test_bench_decode_floor_cases_read_the_shards(tmp_path):
    """``bench data``'s decode-only cases on prepared shards: full size, the crop windows, the scales draft mode picks."""
    from pipelines.prepare import prepare
    from raysys.bench.data import DecodeOnly, shard_jpegs
    from raysys.bench.fixtures import write_imagefolder

    write_imagefolder(tmp_path / "src", classes=2, train_per_class=2, val_per_class=1, size=(1600, 1200))
    prepare("imagenet", str(tmp_path / "src"), str(tmp_path / "shards"))
    blobs = shard_jpegs(tmp_path / "shards")
    full, draft, window = DecodeOnly(blobs, "full"), DecodeOnly(blobs, "draft"), DecodeOnly(blobs, "window")
    assert len(blobs) == 4 and full() == 4 and draft() == 4 and window() == 4 and window.cpu_ms[0] > 0
    assert len(draft.reductions) == 4 and set(draft.reductions) <= {1, 2, 4, 8} and max(draft.reductions) > 1
    first = list(draft.reductions)
    draft()
    assert draft.reductions == first  # seeded: every pass decodes at the same scales
    assert len(draft.cpu_ms) == 2 and len(full.cpu_ms) == 1 and min(draft.cpu_ms + full.cpu_ms) > 0
