"""STIR data: generation (emoji, mnist, trafficsign, aerial), npz <-> shards, scenarios, stream filter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.stir.generate import convert, generate
from pipelines.stir.mnist import stir_digit
from raysys.data.formats.stir_npz import SCALES, load_npz
from raysys.data.stir_shards import load_shards
from raysys.families.stir.scenarios import SCENARIOS, get_scenario, original_train_order, scenario_rows, split_scales
from raysys.errors import ConfigError, DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
KEYS = ("imgs", "lbls", "scls", "psts", "metadata", "lbldata")
# The class order of the original gen_emoji.py (Font Awesome 5 names).
ORIGINAL_EMOJIS = [
    "tired", "surprise", "smile-wink", "smile-beam", "sad-tear", "sad-cry", "meh-rolling-eyes", "meh-blank",
    "laugh-wink", "laugh-squint", "laugh-beam", "laugh", "kiss-wink-heart", "kiss-beam", "kiss", "grin-wink",
    "grin-tongue-wink", "grin-tongue-squint", "grin-tongue", "grin-tears", "grin-stars", "grin-squint-tears",
    "grin-squint", "grin-hearts", "grin-beam-sweat", "grin-beam", "grin-alt", "grin", "grimace", "frown-open",
    "flushed", "dizzy", "angry", "smile", "meh", "frown",
]  # fmt: skip


def assert_same_arrays(a, b) -> None:
    for key in KEYS:
        x, y = getattr(a, key), getattr(b, key)
        assert x.shape == y.shape and x.dtype.kind == y.dtype.kind, key
        assert np.array_equal(x, y), key


def assert_layout(arrays, n: int, m: int, colour: bool) -> None:
    """The original's shapes, dtypes and value ranges."""
    grid = (3, 48, n, m)
    assert arrays.imgs.shape == grid + ((64, 64, 3) if colour else (64, 64))
    assert arrays.imgs.dtype == np.uint8
    assert arrays.lbls.shape == arrays.scls.shape == grid and arrays.psts.shape == grid + (2,)
    assert arrays.lbls.dtype == arrays.scls.dtype == arrays.psts.dtype == np.int64
    assert np.array_equal(arrays.lbls[0, 0, :, 0], np.arange(n))
    assert arrays.scls[:, 0].min() == 64 and np.all(arrays.scls[:, 47] == 17)
    assert np.array_equal(arrays.scls[0, :, 0, 0], np.arange(64, 16, -1))
    assert arrays.metadata.shape == (6, 2) and list(arrays.metadata[:, 0]) == [
        "title", "description", "author", "license", "version", "date"]
    assert arrays.lbldata.shape == (n,)


def object_box_mask(arrays, index) -> np.ndarray:
    """True inside the object box of image ``index``."""
    scale = arrays.scls[index]
    left, top = arrays.psts[index]
    mask = np.zeros((64, 64), bool)
    mask[top : top + scale, left : left + scale] = True
    return mask


# ---- emoji -------------------------------------------------------------------


def default_glyphs() -> str:
    """The original's Font Awesome 5.15.3 when ``make install`` cached it, else Font Awesome 6 (offline)."""
    from pipelines.stir.emoji import offline_glyphs

    return offline_glyphs()


@pytest.fixture(scope="module")
def emoji_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stir") / "emoji"
    generate("emoji", str(out), glyphs=default_glyphs())
    return out


def test_emoji_has_the_original_layout_classes_and_placement(emoji_dir):
    arrays = load_npz(emoji_dir / "emoji.npz")
    assert_layout(arrays, 36, 1, colour=False)
    assert list(arrays.lbldata) == ORIGINAL_EMOJIS
    assert arrays.imgs.max() == 255 and arrays.imgs.min() == 0
    left, top = arrays.psts[..., 0], arrays.psts[..., 1]
    assert left.min() >= 0 and top.min() >= 0
    assert np.all(left + arrays.scls <= 64) and np.all(top + arrays.scls <= 64)
    for index in [(0, 0, 0, 0), (1, 20, 5, 0), (2, 47, 35, 0)]:  # white pixels stay in the object box
        image = arrays.imgs[index]
        assert np.all(image[~object_box_mask(arrays, index)] == 0)
        assert image.max() == 255
    # positions replay the original's draws for seed 42: RandomState(42), order icon, scale, split
    draws = np.random.RandomState(42)
    for icon in range(2):
        for i, scale in enumerate(SCALES):
            for split in range(3):
                assert np.array_equal(arrays.psts[split, i, icon, 0], draws.randint(0, 64 - scale + 1, 2))


def test_emoji_shards_carry_latents_and_round_trip(emoji_dir, tmp_path):
    manifest = json.loads((emoji_dir / "manifest.json").read_text())
    assert manifest["dataset"] == "stir-emoji" and manifest["num_classes"] == 36
    assert {"scale", "left", "top"} <= set(manifest["columns"])
    assert manifest["splits"]["train"]["count"] == 48 * 36
    glyphs = default_glyphs()
    assert manifest["options"]["generator"] == {"source": "emoji", "seed": 42, "instances": 1, "glyphs": glyphs}
    version = "5.15.3" if glyphs == "fontawesome5" else "6"
    assert f"CC BY 4.0 modified from Font Awesome Free {version} by @fontawesome" in manifest["options"]["metadata"]["license"]
    original = load_npz(emoji_dir / "emoji.npz")
    assert_same_arrays(load_shards(str(emoji_dir)), original)
    # an existing original-format npz -> shards -> the same arrays
    converted = tmp_path / "converted"
    manifest = convert(str(emoji_dir / "emoji.npz"), str(converted), rows_per_shard=500)
    assert len(manifest["splits"]["val"]["shards"]) == 4  # latents stay aligned across shards
    assert_same_arrays(load_shards(str(converted)), original)
    assert_same_arrays(load_npz(converted / "emoji.npz"), original)


def test_prepare_reads_a_folder_with_the_original_npz(emoji_dir, tmp_path):
    from pipelines.prepare import prepare

    manifest = prepare("stir-emoji", str(emoji_dir), str(tmp_path / "prepared"))
    assert manifest["splits"]["test"]["count"] == 48 * 36
    assert_same_arrays(load_shards(str(tmp_path / "prepared")), load_npz(emoji_dir / "emoji.npz"))


# ---- mnist -------------------------------------------------------------------


@pytest.fixture(scope="module")
def idx_dir() -> Path:
    if not FASHION_DIR.is_dir():
        pytest.fail(f"{FASHION_DIR} is missing: `make test` installs Debian's dataset-fashion-mnist")
    return FASHION_DIR


def test_mnist_follows_the_original_procedure_and_is_deterministic(idx_dir, tmp_path):
    generate("mnist", str(tmp_path / "a"), source=str(idx_dir), instances=1)
    generate("mnist", str(tmp_path / "b"), source=str(idx_dir), instances=1)
    generate("mnist", str(tmp_path / "c"), source=str(idx_dir), instances=1, seed=7)
    a, b, c = (load_npz(tmp_path / name / "mnist.npz") for name in "abc")
    assert_layout(a, 10, 1, colour=False)
    assert_same_arrays(a, b)  # same seed: byte-identical arrays
    assert not np.array_equal(a.psts, c.psts)
    per_image_max = a.imgs.reshape(-1, 64 * 64).max(axis=1)
    # min-max scaled to 0..255, then truncated as in the original (so the top may land on 254)
    assert np.all(per_image_max >= 254) and np.all(a.imgs.reshape(-1, 64 * 64).min(axis=1) == 0)
    # train instance 0 of class 3 is the first class-3 image after RandomState(42).shuffle
    from raysys.data.formats.idx import MNIST_CLASSES, read_idx

    train = next(s for s in read_idx(idx_dir, name="x", classes=MNIST_CLASSES).splits if s.name == "train")
    images, labels = (np.concatenate(part) for part in zip(*train.chunks()))
    rows = np.flatnonzero(labels == 3)
    first, second = rows[np.random.RandomState(42).permutation(len(rows))][:2]
    left, top = a.psts[0, 40, 3, 0]  # scale 24
    assert np.array_equal(a.imgs[0, 40, 3, 0], stir_digit(images[first, ..., 0], 24, left, top))
    left, top = a.psts[1, 40, 3, 0]  # validation uses instance i + m
    assert np.array_equal(a.imgs[1, 40, 3, 0], stir_digit(images[second, ..., 0], 24, left, top))


# ---- trafficsign (MTSD) and aerial (DOTA) fixtures ------------------------------

SIGN_COLOURS = {"regulatory--stop--g1": (220, 20, 20), "warning--curve--g1": (20, 20, 220)}


def _photo(path: Path, size, box, colour, seed: int) -> None:
    from PIL import Image

    rng = np.random.RandomState(seed)
    pixels = (90 + rng.randint(0, 30, size=(size[1], size[0], 3))).astype(np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = colour
    Image.fromarray(pixels).save(path)


def write_mtsd(root: Path) -> None:
    """A tiny MTSD v2 folder: 2 usable classes, plus signs the selection must drop."""
    annotations, images, splits = root / "annotations", root / "images", root / "splits"
    for folder in (annotations, images, splits):
        folder.mkdir(parents=True)
    signs = (
        [("regulatory--stop--g1", 64 + 4 * k, 64 + 4 * k, {}) for k in range(6)]
        + [("warning--curve--g1", 66 + 3 * k, 68 + 3 * k, {}) for k in range(7)]
        + [("other-sign", 80, 80, {}) for _ in range(6)]  # the catch-all class is excluded
        + [("small--sign--g1", 70, 70, {}) for _ in range(5)] + [("small--sign--g1", 40, 40, {})]
        + [("regulatory--stop--g1", 90, 90, {"occluded": True})]  # flagged: ignored
        + [("warning--curve--g1", 100, 70, {})]  # not square: ignored
    )
    keys = []
    for number, (label, width, height, flags) in enumerate(signs):
        key = f"img{number:03d}"
        x, y = 60 + 7 * number, 50 + 5 * number
        colour = SIGN_COLOURS.get(label, (20, 220, 20))
        _photo(images / f"{key}.jpg", (400, 380), (x, y, x + width, y + height), colour, number)
        properties = {"occluded": False, "ambiguous": False, **flags}
        obj = {"key": f"o{number}", "label": label, "properties": properties,
               "bbox": {"xmin": x + 0.2, "ymin": float(y), "xmax": x + width - 0.4, "ymax": float(y + height)}}
        (annotations / f"{key}.json").write_text(json.dumps({"width": 400, "height": 380, "objects": [obj]}))
        keys.append(key)
    (splits / "train.txt").write_text("\n".join(keys[::2]) + "\n")
    (splits / "val.txt").write_text("\n".join(keys[1::2]) + "\n")


def write_dota(root: Path) -> None:
    """A tiny DOTA v1.5 folder: planes and ships usable; rotated, small and GaoFen objects dropped."""
    objects = (
        [("train", "plane", 70 + 5 * k, 0.0, "GoogleEarth") for k in range(3)]
        + [("train", "ship", 64 + 6 * k, 0.0, "GoogleEarth") for k in range(3)] + [("val", "ship", 90, 0.0, "GoogleEarth")]
        + [("val", "small-vehicle", 30, 0.0, "GoogleEarth") for _ in range(3)]  # too small
        + [("val", "plane", 95, 30.0, "GoogleEarth")]  # rotated
        + [("val", "ship", 95, 0.0, "GF2")]  # another image source
    )
    colours = {"plane": (230, 230, 30), "ship": (30, 230, 230), "small-vehicle": (230, 30, 230)}
    for number, (split, label, side, angle, source) in enumerate(objects):
        for sub in ("labelTxt", "images"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        x, y = 150 + 3 * number, 120 + 4 * number
        _photo(root / split / "images" / f"P{number:04d}.png", (520, 510), (x, y, x + side, y + side), colours[label], number)
        corners = np.array([[0, 0], [side, 0], [side, side], [0, side]], float)
        turn = np.deg2rad(angle)
        corners = corners @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]]) + (x, y)
        coords = " ".join(f"{v:.1f}" for v in corners.reshape(-1))
        (root / split / "labelTxt" / f"P{number:04d}.txt").write_text(
            f"imagesource:{source}\ngsd:0.5\n{coords} {label} 0\n")


def assert_objects_in_boxes(arrays, colours) -> None:
    """The object's colour fills its box (2 pixels in from the edges) at every 8th scale."""
    for index in np.ndindex(arrays.lbls.shape):
        if index[1] % 8:
            continue
        scale, (left, top) = arrays.scls[index], arrays.psts[index]
        inside = arrays.imgs[index][top + 2 : top + scale - 2, left + 2 : left + scale - 2]
        colour = colours[str(arrays.lbldata[arrays.lbls[index]])]
        assert np.abs(inside.reshape(-1, 3).mean(axis=0) - colour).max() < 40, index


def test_trafficsign_selection_layout_and_determinism(tmp_path):
    write_mtsd(tmp_path / "mtsd")
    generate("trafficsign", str(tmp_path / "a"), source=str(tmp_path / "mtsd"), instances=2)
    generate("trafficsign", str(tmp_path / "b"), source=str(tmp_path / "mtsd"), instances=2)
    a, b = load_npz(tmp_path / "a" / "trafficsign.npz"), load_npz(tmp_path / "b" / "trafficsign.npz")
    assert list(a.lbldata) == ["regulatory--stop--g1", "warning--curve--g1"]
    assert_layout(a, 2, 2, colour=True)
    assert_same_arrays(a, b)
    assert_objects_in_boxes(a, SIGN_COLOURS)
    assert_same_arrays(load_shards(str(tmp_path / "a")), a)


def test_aerial_selection_layout_and_determinism(tmp_path):
    write_dota(tmp_path / "dota")
    generate("aerial", str(tmp_path / "a"), source=str(tmp_path / "dota"), instances=1)
    generate("aerial", str(tmp_path / "b"), source=str(tmp_path / "dota"), instances=1)
    a, b = load_npz(tmp_path / "a" / "aerial.npz"), load_npz(tmp_path / "b" / "aerial.npz")
    assert list(a.lbldata) == ["plane", "ship"]
    assert_layout(a, 2, 1, colour=True)
    assert_same_arrays(a, b)
    assert_objects_in_boxes(a, {"plane": (230, 230, 30), "ship": (30, 230, 230)})


# ---- bad input -------------------------------------------------------------------


def _cli(capsys, *args: str):
    from raysys.cli.main import main

    code = main(["stir", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "emojis"], "unknown STIR source: 'emojis'"),
        (["generate", "mnist", "--source", "{tmp}/no-idx"], "does not exist"),
        (["generate", "mnist", "--source", "{tmp}/empty"], "missing file"),
        (["generate", "mnist"], "needs --source"),
        (["generate", "mnist", "--source", "{tmp}/empty", "--glyphs", "fontawesome6"], "option of STIR emoji only"),
        (["generate", "trafficsign", "--source", "{tmp}/empty"], "no images/ folder"),
        (["generate", "trafficsign", "--source", "{tmp}/mtsd-no-annotations"], "missing MTSD split list"),
        (["generate", "aerial", "--source", "{tmp}/empty"], "missing DOTA label folder"),
        (["shards", "--source", "{tmp}/empty/x.npz", "--name", "emoji"], "missing STIR npz file"),
        (["shards", "--source", "{tmp}/other.npz", "--name", "emoji"], "is not a STIR npz file"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "mtsd-no-annotations" / "images").mkdir(parents=True)
    np.savez(tmp_path / "other.npz", imgs=np.zeros(3))
    before = set(tmp_path.iterdir())
    out = tmp_path / "out"
    code, err = _cli(capsys, *[a.format(tmp=tmp_path) for a in args], "--out", str(out))
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert set(tmp_path.iterdir()) == before  # no output folder, no temporary left behind


def test_existing_output_is_refused_without_overwrite(emoji_dir, capsys):
    code, err = _cli(capsys, "shards", "--source", str(emoji_dir / "emoji.npz"), "--out", str(emoji_dir))
    assert code == 2 and "--overwrite" in err


# ---- scenarios -----------------------------------------------------------------


def test_scenarios_have_the_original_scale_splits():
    expected = {
        1: ("Small2Large", range(17, 33), range(33, 65)),
        2: ("Mid2Rest", range(33, 49), [*range(17, 33), *range(49, 65)]),
        3: ("Large2Small", range(49, 65), range(17, 49)),
        4: ("All2All", range(17, 65), range(17, 65)),
    }
    assert sorted(SCENARIOS) == [1, 2, 3, 4]
    for number, (name, train, test) in expected.items():
        scenario = get_scenario(number)
        assert scenario.name == name
        assert split_scales(number, "train") == split_scales(number, "val") == tuple(train)
        assert split_scales(number, "test") == tuple(test)
    assert split_scales(0, "test") == tuple(sorted(SCALES))
    with pytest.raises(ConfigError, match="stir.evaluation=5"):
        get_scenario(5)
    from raysys.families.stir.scenarios import row_filters

    assert row_filters(0, {"train": ("train", 0)}) == {}
    filters = row_filters(1, {"train": ("train", 0), "test": ("val", 0)})
    assert sorted(filters) == ["test", "train"]  # the "test" stream reads val: train/val scales
    assert str(filters["test"]) == str(filters["train"]) != str(row_filters(1, {"t": ("test", 0)})["t"])


def test_scenario_rows_come_from_the_manifest(emoji_dir):
    manifest = json.loads((emoji_dir / "manifest.json").read_text())
    assert scenario_rows(manifest, "train", 1) == 16 * 36
    assert scenario_rows(manifest, "test", 2) == 32 * 36
    assert scenario_rows(manifest, "test", 0) == 48 * 36
    with pytest.raises(ConfigError, match="per-scale counts"):
        scenario_rows({"dataset": "fashion-mnist", "options": {}}, "train", 1)


def test_config_key_selects_the_scenario():
    from raysys.config import load_config

    cfg = load_config("stir/emoji", ["stir.evaluation=3"])
    assert cfg.stir.evaluation == 3
    # Another family's run has no stir section, and refuses the key.
    with pytest.raises(ConfigError, match="section 'stir' belongs to family stir"):
        load_config("cifar-resnet/fashion-mnist-resnet20", ["stir.evaluation=2"])


def test_stream_filters_a_scenario_and_returns_scales(emoji_dir, ray_cluster):
    from raysys.data.shards import load_manifest
    from raysys.families.stir.scenarios import row_filters
    from raysys.data.stream import BatchCollator, build_datasets, image_format

    manifest = load_manifest(str(emoji_dir))
    fmt = image_format(manifest, (0.0,), (1.0,))
    splits = {"train": ("train", 0), "test": ("test", 0)}
    datasets = build_datasets(
        str(emoji_dir), manifest, splits, fmt, seed=0, row_filters=row_filters(2, splits), extra_columns=("scale",),
    )
    collator = BatchCollator(fmt, "none", seed=0, epoch=0, rank=0, extra_columns=("scale",))
    for name in ("train", "test"):
        scales, rows = set(), 0
        for batch in datasets[name].iter_torch_batches(batch_size=256, collate_fn=collator):
            assert batch["image"].shape[1:] == (1, 64, 64) and float(batch["image"].max()) <= 1.0
            scales |= set(batch["scale"].tolist())
            rows += len(batch["label"])
        assert scales == set(split_scales(2, name))
        assert rows == scenario_rows(manifest, name, 2)
    # stir.shuffle=once: the train stream in the original's order, the same on every pass
    order = original_train_order(manifest, 2)
    plain = BatchCollator(fmt, "none", seed=0, epoch=0, rank=0)
    ordered = build_datasets(str(emoji_dir), manifest, {"train": ("train", 0)}, fmt, seed=0,
                             row_filters=row_filters(2, {"train": ("train", 0)}), row_orders={"train": order})
    for _ in range(2):
        read = np.concatenate([batch["index"].numpy() for batch in
                               ordered["train"].iter_torch_batches(batch_size=100, collate_fn=plain)])
        assert np.array_equal(read, order)


def test_original_train_order_is_the_once_shuffled_scale_stack(emoji_dir):
    manifest = json.loads((emoji_dir / "manifest.json").read_text())
    arrays = load_npz(emoji_dir / "emoji.npz")
    order = original_train_order(manifest, 1)
    # The original (data/dataset.py to_numpy): images[0, [64 - s for s in 17..32]] flattened, then
    # RandomState(42).shuffle; a row's index is its position in the split's flattened npz order.
    stacked = arrays.scls[0][[64 - s for s in range(17, 33)]].reshape(-1)
    np.random.RandomState(42).shuffle(stacked)
    assert np.array_equal(arrays.scls[0].reshape(-1)[order], stacked)
    flat = arrays.imgs[0].reshape(-1, 64, 64)
    images = arrays.imgs[0][[64 - s for s in range(17, 33)]].reshape(-1, 64, 64)
    np.random.RandomState(42).shuffle(images)
    assert np.array_equal(flat[order], images)
    assert len(order) == 16 * 36 and len(set(order.tolist())) == len(order)
    assert np.array_equal(np.sort(original_train_order(manifest, 0)), np.arange(48 * 36))


def test_shards_refuse_extra_columns_that_do_not_fit(tmp_path):
    from raysys.data.formats.base import SourceDataset, SplitSource
    from raysys.data.shards import write_shards

    def split(name, columns):
        images, labels = np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, np.int64)
        return SplitSource(name, 2, lambda: iter([(images, labels)]), columns)

    for splits, message in [
        ([split("train", {"scale": np.arange(2)}), split("test", {})], "extra columns"),
        ([split("train", {"scale": np.arange(3)})], "expected integers \\(2,\\)"),
        ([split("train", {"label": np.arange(2)})], "invalid extra column name"),
    ]:
        dataset = SourceDataset("d", "test", ["a"], "raw", (4, 4, 1), splits)
        with pytest.raises(DataError, match=message):
            write_shards(dataset, str(tmp_path / "out"))
        assert not (tmp_path / "out").exists()
