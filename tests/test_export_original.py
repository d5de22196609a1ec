"""``raysys export-weights --format original`` writes what each original loads strictly; ``eval --weights`` reads the originals' files.

The originals' keys and shapes are recorded in tests/data/original_state_dicts (README there).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from raysys.cli.main import main
from raysys.config import load_config
from raysys.driver.checkpoints import _bare_model, read_for_model
from raysys.driver.evaluation import check_model
from raysys.driver.record import CHECKPOINT_DIR_TAG
from raysys.errors import CheckpointError
from raysys.families.mimoconv.models.original_weights import to_original_state_dict
from raysys.models import InputSpec
from raysys.track.runs import RUN_NAME_TAG
from raysys.train import checkpoint as ckpt

DATA = Path(__file__).parent / "data" / "original_state_dicts"
STIR_MODELS = ("standard", "pixel_pool", "slice_pool", "energy_pool", "conv3d", "ensemble", "spatial_transform", "xu",
               "kanazawa", "hermite", "disco")
BIG = pytest.mark.slow  # 35M+ parameters: seconds to build, save and read back twice

# recorded file -> (preset, overrides, the file's top-level keys: None for a bare state_dict, whether the order must match)
CASES = {
    "antialiased-resnet18_lpf4": ("antialiased/eval-resnet18_lpf4", [], ["arch", "state_dict"], True),
    "antialiased-resnet50_lpf3": ("antialiased/eval-resnet50_lpf4", ["model.name=resnet50_lpf3"], ["arch", "state_dict"], True),
    "antialiased-mobilenet_v2_lpf3": ("antialiased/eval-mobilenet_v2_lpf4", ["model.name=mobilenet_v2_lpf3"],
                                      ["arch", "state_dict"], True),
    "antialiased-densenet121_lpf4": ("antialiased/eval-densenet121_lpf4", [], ["arch", "state_dict"], True),
    "antialiased-alexnet_lpf4": ("antialiased/eval-alexnet_lpf4", [], ["arch", "state_dict"], True),
    "antialiased-vgg11_bn_lpf2": ("antialiased/eval-vgg11_bn_lpf4", ["model.name=vgg11_bn_lpf2"], ["arch", "state_dict"], True),
    "flexconv-flexnet7": ("flexconv/cifar10-flexnet7", [], ["model"], True),
    "mimoconv-mimonet10-n2": ("mimoconv/fashion-mnist-mimonet10-n2", [], ["model_state_dict"], False),
    "mimoconv-wideisonet16-mbat": ("mimoconv/cifar100-mimonet28-10-n2", ["model.name=WideISONet-16", "superposition.binding=MBAT",
                                                                          "mimo.width=2", "mimo.initial_width=2"],
                                   ["model_state_dict"], False),
    "mimoconv-mimonet28-10-n4": ("mimoconv/cifar10-mimonet28-10-n4", [], ["model_state_dict"], False),
    "mimoconv-wrn28-10": ("mimoconv/cifar10-wrn28-10", [], ["model_state_dict"], False),
    **{f"stir-{m}": ("stir/emoji", [f"model.name=stir_{m}"], None, True) for m in STIR_MODELS},
}
SLOW = {"antialiased-alexnet_lpf4", "antialiased-vgg11_bn_lpf2", "mimoconv-mimonet28-10-n4", "mimoconv-wrn28-10"}


def _trained(tmp_path: Path, preset: str, overrides, seed: int = 0):
    """A raysys checkpoint (the real save path) of the preset's model with random weights; returns (cfg, model, file)."""
    cfg = load_config(preset, overrides)
    torch.manual_seed(seed)
    model = _bare_model(cfg)
    with torch.no_grad():  # every tensor differs from a fresh model's, buffers included
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value))
    path = tmp_path / "checkpoint_000001" / ckpt.STATE_FILE
    ckpt.save_atomic({"config": OmegaConf.to_container(cfg), "model": model.state_dict(), "epoch": 1,
                      "history": [{"epoch": 1, "val_acc": 0.5}]}, path)
    return cfg, model, path


def _tensors(payload):
    return payload if all(isinstance(v, torch.Tensor) for v in payload.values()) else \
        next(v for v in payload.values() if isinstance(v, dict))


@pytest.mark.parametrize("case", [pytest.param(c, marks=BIG) if c in SLOW else c for c in CASES])
def test_export_writes_the_originals_keys_and_shapes_and_reads_back_identically(tmp_path, case, capsys):
    preset, overrides, wrapper, ordered = CASES[case]
    cfg, model, checkpoint = _trained(tmp_path, preset, overrides)
    out = tmp_path / "original.pt"
    assert main(["export-weights", preset, *overrides, "--checkpoint", str(checkpoint), "--out", str(out), "--format", "original"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    payload = torch.load(out, map_location="cpu", weights_only=True)  # plain tensors: the originals' torch.load reads it too
    assert (sorted(payload) if wrapper else "state_dict") == (wrapper or "state_dict") == printed["layout"]
    state = _tensors(payload)
    recorded = json.loads((DATA / f"{case}.json").read_text())
    assert {k: list(v.shape) for k, v in state.items()} == recorded
    if ordered:  # raysys reads antialiased files by order; the others keep the original's order as well
        assert list(state) == list(recorded)
    if wrapper and "arch" in wrapper:
        assert payload["arch"] == cfg.model.name
    # Back through raysys's own reader of the original's files: the same tensors.
    fresh = _bare_model(cfg)
    read_for_model(cfg, fresh, str(out))
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_the_original_formats_differ_from_raysys_where_the_originals_do(tmp_path, capsys):
    """What each exporter changes: MIMO's renamed binding, STIR's saved basis, antialiased's filters."""
    cfg, model, checkpoint = _trained(tmp_path, "mimoconv/fashion-mnist-mimonet10-n2", [])
    out = tmp_path / "mimo.pt"
    assert main(["export-weights", "mimoconv/fashion-mnist-mimonet10-n2", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--format", "original"]) == 0
    state = torch.load(out, weights_only=True)["model_state_dict"]
    expected = to_original_state_dict(model.state_dict())
    assert "channelConv.weight" in state and "binding.keys" not in state
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    cfg, model, checkpoint = _trained(tmp_path / "stir", "stir/emoji", ["model.name=stir_hermite"])
    out = tmp_path / "hermite.pt"
    assert main(["export-weights", "stir/emoji", "model.name=stir_hermite", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--format", "original"]) == 0
    assert torch.equal(torch.load(out, weights_only=True)["conv1.basis.basis"], model.conv1.basis.basis)
    capsys.readouterr()
    raysys_out = tmp_path / "raysys.pth"  # the default format is raysys's: no basis, {'state_dict', 'arch'}
    assert main(["export-weights", "stir/emoji", "model.name=stir_hermite", "--checkpoint", str(checkpoint), "--out", str(raysys_out)]) == 0
    written = torch.load(raysys_out, weights_only=True)
    assert written["arch"] == "stir_hermite" and list(written["state_dict"]) == list(model.state_dict())


def test_a_changed_basis_in_an_original_stir_file_is_the_one_loaded(tmp_path):
    cfg, model, checkpoint = _trained(tmp_path, "stir/emoji", ["model.name=stir_disco"])
    out = tmp_path / "disco.pt"
    assert main(["export-weights", "stir/emoji", "model.name=stir_disco", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--format", "original"]) == 0
    state = torch.load(out, weights_only=True)
    state["conv2.basis.basis"] = state["conv2.basis.basis"] * 2  # the original's proxy basis, say
    torch.save(state, out)
    fresh = _bare_model(cfg)
    read_for_model(cfg, fresh, str(out))
    assert torch.equal(fresh.conv2.basis.basis, state["conv2.basis.basis"])


# -- --run: an MLflow run's checkpoint --------------------------------------------------------


@pytest.fixture
def tracking(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("stir", artifact_location=(tmp_path / "artifacts").as_uri())


def test_export_by_run_name_or_id_takes_the_runs_newest_or_best_checkpoint(tmp_path, tracking, capsys):
    uri, client, experiment = tracking
    folder = tmp_path / "runs" / "emoji-run"
    preset, overrides = "stir/emoji", ["model.name=stir_standard", f"tracking.uri={uri}"]
    _, better, _ = _trained(folder / "a", preset, overrides, seed=1)
    ckpt.save_atomic({**ckpt.load_file(folder / "a" / "checkpoint_000001"), "history": [{"epoch": 1, "val_acc": 0.9}]},
                     folder / "a" / "checkpoint_000001" / ckpt.STATE_FILE)
    _, newest, _ = _trained(folder / "b", preset, overrides, seed=2)  # written later, val_acc 0.5
    run = client.create_run(experiment, tags={RUN_NAME_TAG: "emoji-run", CHECKPOINT_DIR_TAG: str(folder)})
    for target, extra, expected in (("emoji-run", [], newest), (run.info.run_id, ["checkpoint.score_attribute=val_acc"], better)):
        out = tmp_path / f"{len(extra)}.pt"
        assert main(["export-weights", preset, *overrides, *extra, "--run", target, "--out", str(out), "--format", "original"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["source"] == f"run {target}"
        written = torch.load(out, weights_only=True)
        assert all(torch.equal(written[k], v) for k, v in expected.state_dict().items())


def test_export_by_run_refuses_an_unknown_run_and_a_run_of_another_experiment(tmp_path, tracking, capsys):
    uri, client, _ = tracking
    other = client.create_experiment("elsewhere", artifact_location=(tmp_path / "other").as_uri())
    client.create_run(other, tags={RUN_NAME_TAG: "far-run"})
    for name in ("no-such-run", "far-run"):
        assert main(["export-weights", "stir/emoji", f"tracking.uri={uri}", "--run", name, "--out", str(tmp_path / "x.pt")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--run {name!r}: no MLflow run with this id, nor a run of this name in experiment 'stir'" in err[0]
    assert not (tmp_path / "x.pt").exists()


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("preset, overrides, extra, message", [
    ("stir/emoji", [], ["--format", "pytorch"], "--format: 'pytorch' is not one of ['original', 'raysys']"),
    ("cifar-resnet/fashion-mnist-resnet20", [], ["--format", "original"],
     "--format original: model.name=cifar_resnet20 (family none: a shared model) has no original format; "
     "families with one: antialiased, flexconv, mimoconv, stir"),
    ("flexconv/cifar10-flexnet7", ["flexconv.conv.type=SRF"], ["--format", "original"],
     "--format original: flexnet with flexconv.conv.type=SRF has no recorded original layout"),
])
def test_export_refuses_bad_input_in_one_line(tmp_path, capsys, preset, overrides, extra, message):
    _, _, checkpoint = _trained(tmp_path, preset, overrides)
    out = tmp_path / "x.pt"
    assert main(["export-weights", preset, *overrides, "--checkpoint", str(checkpoint), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


# -- eval --weights: the originals' files, the family's checks --------------------------------


class _Scheduler:
    """Stands for the original's pickled OneCycleLR: weights-only loading refuses it."""


def test_eval_weights_reads_an_original_mimo_checkpoint(tmp_path):
    cfg, model, _ = _trained(tmp_path, "mimoconv/fashion-mnist-mimonet10-n2", [])
    path = tmp_path / "Experiment0_model.pt"
    torch.save({"model_state_dict": to_original_state_dict(model.state_dict()), "scheduler_state_dict": _Scheduler(), "epoch": 3}, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)
    state = check_model(cfg, InputSpec(1, 28, 10), None, "", weights=str(path))  # `raysys eval --weights`, before Ray
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    wider = load_config("mimoconv/fashion-mnist-mimonet10-n2", ["mimo.width=2"])
    with pytest.raises(CheckpointError, match="do not fit"):
        check_model(wider, InputSpec(1, 28, 10), None, "", weights=str(path))


def test_eval_weights_runs_the_antialiased_filter_size_check(tmp_path, capsys):
    spec, small = InputSpec(3, 224, 10), ["model.num_classes=10", "antialias.weights="]  # --weights replaces the preset's
    lpf4 = load_config("antialiased/eval-resnet18_lpf4", small)
    _, _, checkpoint = _trained(tmp_path, "antialiased/eval-resnet18_lpf4", [*small, "model.name=resnet18_lpf3"])
    lpf3 = tmp_path / "resnet18_lpf3.pth"
    assert main(["export-weights", "antialiased/eval-resnet18_lpf4", *small, "model.name=resnet18_lpf3", "--checkpoint",
                 str(checkpoint), "--out", str(lpf3), "--format", "original"]) == 0
    with pytest.raises(CheckpointError, match=r"BlurPool filters of size 3, the model resnet18_lpf4 has 4: use model.name=resnet18_lpf3"):
        check_model(lpf4, spec, None, "", weights=str(lpf3))
    plain = tmp_path / "resnet18.pth"
    torch.save(_bare_model(load_config("antialiased/eval-resnet18_lpf4", [*small, "model.name=resnet18"])).state_dict(), plain)
    with pytest.raises(CheckpointError, match="a torchvision baseline's file, which initialises resnet18_lpf4 only when fine-tuning"):
        check_model(lpf4, spec, None, "", weights=str(plain))
    lpf3_cfg = load_config("antialiased/eval-resnet18_lpf4", [*small, "model.name=resnet18_lpf3"])
    assert check_model(lpf3_cfg, spec, None, "", weights=str(lpf3)) is not None
