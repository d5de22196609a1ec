"""STIR analysis: equivariance errors and scale indices of a model, the artifacts, and Figs. 6/7."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.report import stir_analysis as figures
from raysys.families.stir import analysis as sa
from raysys.families.stir.layers.equivariance import PAIRS
from raysys.families.stir.layers.siconv import ScalePool, SiConv2d
from raysys.families.stir.models import StirNet

PAIR_SCALES = sorted({s for pair in PAIRS for s in pair})


def _objects(classes: int, instances: int, fill=None, seed: int = 0) -> sa.TestObjects:
    """Test split with objects at every scale: emoji renders at random positions, or a constant image."""
    from pipelines.stir.emoji import emoji_svgs, render_coverage

    rng = np.random.default_rng(seed)
    grid = (48, classes, instances)
    images = np.zeros(grid + (64, 64, 1), np.uint8)
    scales = np.broadcast_to(np.arange(64, 16, -1)[:, None, None], grid).copy()
    positions = np.zeros(grid + (2,), np.int64)
    names = ("tired", "smile-beam", "grin", "angry")
    svgs = emoji_svgs("fontawesome6")  # offline everywhere (a PyPI requirement)
    for c in range(classes):
        for i in range(instances):
            for s in (PAIR_SCALES if fill is None else range(17, 65)):
                left, top = rng.integers(0, 64 - s + 1, size=2)
                positions[64 - s, c, i] = (left, top)
                if fill is None:
                    images[64 - s, c, i, top:top + s, left:left + s, 0] = render_coverage(svgs[names[c]], s)
                else:
                    images[64 - s, c, i] = fill
    return sa.TestObjects(images, scales, positions)


def _pair_of_models(channels=(4, 4)):
    """A pixel-pool StirNet and a standard one with the same first-layer weights."""
    torch.manual_seed(0)
    siconv = SiConv2d(1, channels[0], 29, 7)
    scale_eq = StirNet(siconv, nn.Conv2d(channels[0], channels[1], 7), 3, ScalePool("pixel"))
    standard = StirNet(nn.Conv2d(1, channels[0], 7), nn.Conv2d(channels[0], channels[1], 7), 3)
    with torch.no_grad():
        standard.conv1.weight.copy_(siconv.weights)
        standard.conv1.bias.copy_(siconv.bias)
        standard.conv2.load_state_dict(scale_eq.conv2.state_dict())
    return scale_eq, standard


def test_scope_follows_the_original():
    assert sa.analyses_for("standard", "emoji") == (sa.ERRORS_ARTIFACT,)
    assert sa.analyses_for("slice_pool", "mnist") == (sa.ERRORS_ARTIFACT, sa.INDICES_ARTIFACT)
    assert sa.analyses_for("pixel_pool", "aerial") == (sa.INDICES_ARTIFACT,)  # the original skips aerial errors
    assert sa.analyses_for("kanazawa", "trafficsign") == (sa.ERRORS_ARTIFACT,)
    assert sa.analyses_for("conv3d", "emoji") == sa.analyses_for("hermite", "emoji") == ()


def test_constant_objects_have_zero_error():
    model = StirNet(nn.Conv2d(1, 4, 7), nn.Conv2d(4, 4, 7), 3)
    with torch.no_grad():
        for conv in (model.conv1, model.conv2):
            conv.weight.abs_()
            conv.bias.fill_(0.1)
    errors = sa.equivariance_errors(model, _objects(2, 2, fill=200))
    assert set(errors) == {"stage1", "stage2"}
    for stage in errors.values():
        assert stage.shape == (2, 2, 6)
        np.testing.assert_allclose(stage, 0.0, atol=1e-10)


def test_scale_equivariant_layer_is_closer_to_equivariant_than_standard():
    scale_eq, standard = _pair_of_models()
    objects = _objects(2, 1)
    eq, plain = sa.equivariance_errors(scale_eq, objects), sa.equivariance_errors(standard, objects)
    assert np.isfinite(plain["stage1"]).all() and (plain["stage1"] > 0).all()
    assert eq["stage1"].mean() < 0.7 * plain["stage1"].mean()
    # Batching objects does not change the numbers.
    np.testing.assert_allclose(sa.equivariance_errors(standard, objects, objects_per_batch=1)["stage1"],
                               plain["stage1"], rtol=1e-5)


class ScaleStack(nn.Module):
    """A cheap stand-in for SiConv2d: (B, C, H, W) -> (B, out, S, H-6, W-6), a different gain per scale."""

    kernel_size = 7

    def __init__(self, in_channels: int, out_channels: int, num_scales: int):
        super().__init__()
        self.gain = nn.Parameter(torch.randn(out_channels, in_channels, num_scales))

    def forward(self, x):
        x = x[..., 3:-3, 3:-3]
        return torch.einsum("bihw,ois->boshw", x, self.gain) + torch.linspace(0, 1, x.shape[-1])


@pytest.mark.parametrize("mode", ["slice", "pixel"])
def test_scale_indices_layout(mode):
    torch.manual_seed(0)
    model = StirNet(ScaleStack(1, 2, 29), ScaleStack(2, 3, 26), 3, ScalePool(mode), ScalePool(mode))
    model.lin = nn.Linear(3, 3)
    objects = _objects(1, 2, fill=0)
    objects.images[:] = np.random.default_rng(1).integers(0, 256, objects.images.shape, dtype=np.uint8)
    out = sa.scale_indices(model, objects, batch_size=40)
    m = 2 if mode == "slice" else 1  # per-pixel maps: first instance only
    tail1, tail2 = ((2,), (3,)) if mode == "slice" else ((2, 58, 58), (3, 52, 52))
    assert out["pool1"].shape == (48, 1, m) + tail1 and out["pool2"].shape == (48, 1, m) + tail2
    assert out["pool1"].dtype == np.uint8 and int(out["kernel_size"]) == 7
    assert list(out["scales"]) == list(range(17, 65))
    assert len(np.unique(out["pool2"])) > 1
    # Axis 0 is the object scale: row 20 - 17 holds the indices of the image of scale 20.
    with torch.no_grad():
        model(torch.from_numpy(objects.images[64 - 20, 0, :m]).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_array_equal(out["pool2"][20 - 17, 0], model.pool2.indices.numpy())


def test_npz_round_trip_keeps_keys_and_shapes(tmp_path):
    arrays = {"stage1": np.random.rand(3, 2, 6), "stage2": np.random.rand(3, 2, 6)}
    (tmp_path / "errors.npz").write_bytes(sa.npz_bytes(arrays))
    with np.load(tmp_path / "errors.npz") as data:
        assert sorted(data.files) == ["stage1", "stage2"] and data["stage2"].shape == (3, 2, 6)


def test_pair_selection():
    assert figures.selected_pairs(2) == figures.selected_pairs(2, "original") == (0, 1, 4, 5)
    assert figures.selected_pairs(1) == (0, 1, 2, 3) and figures.selected_pairs(1, "original") == (2, 3, 4, 5)
    assert figures.selected_pairs(3) == (2, 3, 4, 5)
    assert figures.selected_pairs(4) == figures.selected_pairs(0) == tuple(range(6))


# ---- figures on fake MLflow runs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("stir", artifact_location=str(root / "artifacts"))
    return uri, client, experiment


def _record(tracking, model: str, test_acc: float, artifacts=None, evaluation: int = 2, seed: int = 1) -> dict:
    uri, client, experiment = tracking
    run = client.create_run(experiment)
    run_id = run.info.run_id
    params = {"model": model, "data": "emoji", "evaluation": str(evaluation), "seed": str(seed), "lr": "0.001"}
    for key, value in params.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "test_acc", test_acc)
    if artifacts:
        sa.log_analysis(uri, run_id, artifacts)
    client.set_terminated(run_id)
    return {"run_id": run_id, "status": "FINISHED", "metrics.test_acc": test_acc,
            **{f"params.{key}": value for key, value in params.items()}}


def _csv(path: Path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_equivariance_figure_plots_the_runs_with_errors(tracking, tmp_path):
    errors = np.arange(12, dtype=float).reshape(1, 2, 6)
    records = [
        _record(tracking, "standard", 40.0, {sa.ERRORS_ARTIFACT: {"stage1": errors, "stage2": 2 * errors}}),
        _record(tracking, "pixel_pool", 60.0, {sa.ERRORS_ARTIFACT: {"stage1": errors, "stage2": errors}}),
        _record(tracking, "slice_pool", 55.0),  # no artifact: skipped
        _record(tracking, "conv3d", 50.0),
    ]
    paths = figures.equivariance_figure(records, tracking[0], tmp_path)
    assert [p.name for p in paths] == ["stir_equivariance.png", "stir_equivariance.pdf", "stir_equivariance.csv"]
    assert all(p.stat().st_size > 0 for p in paths)
    rows = _csv(tmp_path / "stir_equivariance.csv")
    assert [(r["model"], r["run_id"]) for r in rows] == [("standard", records[0]["run_id"]),
                                                         ("pixel_pool", records[1]["run_id"])]
    expected = errors[:, :, [0, 1, 4, 5]].mean()  # scenario 2: the pairs 64<->49 and 32<->17
    assert float(rows[0]["stage2_error"]) == pytest.approx(2 * expected)
    assert float(rows[1]["stage1_error"]) == pytest.approx(expected) and rows[1]["test_acc"] == "60.0"


def test_figures_without_artifacts_still_write_files(tracking, tmp_path):
    records = [_record(tracking, "slice_pool", 70.0), _record(tracking, "standard", 30.0)]
    for function, stem in ((figures.equivariance_figure, "stir_equivariance"),
                           (figures.indices_figure, "stir_indices")):
        paths = function(records, tracking[0], tmp_path)
        assert {p.name for p in paths} == {f"{stem}.png", f"{stem}.pdf", f"{stem}.csv"}
        assert _csv(tmp_path / f"{stem}.csv") == []
    assert figures.equivariance_figure([], tracking[0], tmp_path)[0].exists()


def test_indices_figure_uses_the_best_run_and_sorts_channels(tracking, tmp_path):
    scales = np.arange(17, 65)
    rising = np.repeat((scales - 17) // 4, 1).astype(np.uint8)  # kernel grows with the object
    pool2 = np.stack([rising, rising[::-1], np.full(48, 3, np.uint8)], axis=-1)[:, None, None, :]  # (48, 1, 1, 3)
    indices = {"pool1": pool2, "pool2": pool2, "scales": scales, "kernel_size": np.asarray(7)}
    worse = _record(tracking, "slice_pool", 50.0, {sa.INDICES_ARTIFACT: indices})
    best = _record(tracking, "slice_pool", 80.0, {sa.INDICES_ARTIFACT: indices}, seed=2)
    untracked = _record(tracking, "slice_pool", 90.0, seed=3)  # best accuracy, but no artifact
    paths = figures.indices_figure([worse, best, untracked], tracking[0], tmp_path)
    assert paths[-1].name == "stir_indices.csv"
    rows = _csv(paths[-1])
    assert len(rows) == 48 * 3 and {r["run_id"] for r in rows} == {best["run_id"]}
    rank = {int(r["channel"]): int(r["rank"]) for r in rows}
    assert rank == {1: 0, 2: 1, 0: 2}  # r = -1, 0, +1
    at_64 = [r for r in rows if r["channel"] == "0" and r["scale"] == "64"]
    assert int(at_64[0]["kernel_size"]) == 7 + 2 * rising[-1]


def test_stir_analyze_logs_into_a_finished_run(tracking, tmp_path):
    """``raysys stir analyze <run>``: model and config from the run's checkpoint, artifacts into the run."""
    from omegaconf import OmegaConf

    from pipelines.stir.writer import write_outputs
    from raysys.config import load_config
    from raysys.data.formats.stir_npz import METADATA_KEYS, StirArrays
    from raysys.driver.checkpoints import resolve
    from raysys.models.registry import InputSpec, build_model
    from raysys.train import checkpoint as ckpt

    objects = _objects(2, 1)
    grid = (3, 48, 2, 1)
    arrays = StirArrays(
        imgs=np.broadcast_to(objects.images[..., 0], grid + (64, 64)).copy(),
        lbls=np.broadcast_to(np.arange(2)[:, None], grid).copy(),
        scls=np.broadcast_to(objects.scales, grid).copy(), psts=np.broadcast_to(objects.positions, grid + (2,)).copy(),
        metadata=np.array([[key, "test"] for key in METADATA_KEYS]), lbldata=np.array(["a", "b"]))
    write_outputs(arrays, "emoji", str(tmp_path / "emoji"))
    uri, client, experiment = tracking
    cfg = load_config("stir/emoji", [f"data.path={tmp_path / 'emoji'}", f"tracking.uri={uri}"])
    model = build_model(cfg, InputSpec(1, 64, 2))
    ckpt.save_atomic({"config": OmegaConf.to_container(cfg), "model": model.state_dict(), "epoch": 1},
                     tmp_path / "state.pt")
    run_id = client.create_run(experiment).info.run_id
    client.log_artifact(run_id, str(tmp_path / "state.pt"), "checkpoint")
    summary = sa.analyse_trained(resolve(run_id, [f"tracking.uri={uri}"]), run_id)
    assert summary["run_id"] == run_id and summary["artifacts"] == [sa.ERRORS_ARTIFACT]
    errors = figures.load_artifact(client, run_id, sa.ERRORS_ARTIFACT)
    np.testing.assert_allclose(errors["stage1"], sa.equivariance_errors(model, objects)["stage1"], rtol=1e-5)


def test_a_failed_analysis_is_a_message_for_the_run_tag(tmp_path):
    from raysys.config import load_config

    model = StirNet(nn.Conv2d(1, 4, 7), nn.Conv2d(4, 4, 7), 3)
    params = {"model": "standard", "data": "emoji"}
    off = load_config("stir/emoji", [f"data.path={tmp_path}", "stir.analysis=false"])
    assert sa.analyse_run(off, params, model) == ({}, "")
    missing = load_config("stir/emoji", [f"data.path={tmp_path / 'missing'}"])
    files, error = sa.analyse_run(missing, params, model)  # no MLflow: the loop sends files and tag to the driver
    assert files == {} and "missing" in error and sa.ERROR_TAG == "stir_analysis_error"
