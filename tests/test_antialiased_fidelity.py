"""Antialiased CNNs: the original main.py's behaviour where raysys reproduces it (docs/fidelity.md).

Summed -ba with the short last group dropped, --cos_lr stepped per epoch, --resume restoring
epoch/optimizer/schedule/best top-1, filter-size checks on weights, and --pretrained fetched
into torch's hub cache with its hash check (served over loopback HTTP: no test leaves the machine).
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from raysys.config import load_config
from raysys.errors import CheckpointError
from raysys.families.antialiased import pretrained
from raysys.families.antialiased.recipe import ResumeRecipe
from raysys.legacy import translate
from raysys.models import create_model
from raysys.models.weights import save_weights
from raysys.train.accumulate import Accumulation
from raysys.train.optim import build_optimizer, build_scheduler

# -- -ba N: summed gradients, the short last group dropped (main.py:434-460) ----------------


def test_summed_accumulation_drops_a_short_last_group():
    plan = Accumulation(2, 5, sum=True)
    assert plan.optimizer_steps == 2
    assert [plan.closes_group(i) for i in range(5)] == [False, True, False, True, False]
    assert plan.loss_scale(4) == 1.0
    # the default (mean) still steps on the short group
    assert Accumulation(2, 5).optimizer_steps == 3 and Accumulation(2, 5).closes_group(4)


def test_vgg_presets_and_translation_sum_as_the_original():
    for arch in ("vgg16_lpf4", "vgg16_bn_lpf4"):
        cfg = load_config(f"antialiased/scratch-{arch}")
        assert (cfg.train.batch_size, cfg.train.accumulate_steps, cfg.train.accumulate_sum) == (128, 2, True)
    t = translate(["python main.py -a resnet18_lpf4 -b 64 -ba 4"])
    assert {"train.accumulate_steps=4", "train.accumulate_sum=true"} <= set(t.overrides) and not t.notes


# -- --cos_lr: CosineAnnealingLR(T_max=epochs) stepped at each epoch's start (main.py:382-395) --


def _optimizer():
    return torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.05, momentum=0.9)


def test_epoch_cosine_is_the_originals_cos_lr():
    epochs, steps = 5, 3
    cfg = load_config("antialiased/scratch-mobilenet_v2_lpf4", [f"train.epochs={epochs}"])
    assert cfg.train.scheduler == "epoch_cosine"
    ours = build_scheduler(cfg, opt := build_optimizer(cfg, [{"params": [nn.Parameter(torch.zeros(2))]}], 0.0), steps)
    reference_opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=cfg.train.lr)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_opt, epochs)
    for epoch in range(epochs):
        with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": the original's order
            warnings.simplefilter("ignore")
            reference.step()  # the original, before each epoch
        for _ in range(steps):
            assert opt.param_groups[0]["lr"] == pytest.approx(reference_opt.param_groups[0]["lr"], abs=1e-12), epoch
            opt.step()
            ours.step()
    assert reference_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the last epoch trains at 0
    t = translate(["python main.py -a resnet18_lpf4 --cos_lr --lr_step 10"])
    assert "train.scheduler=epoch_cosine" in t.overrides and not any("step_size" in o for o in t.overrides)


# -- --resume: epoch, optimizer, schedule, best top-1 (main.py:276-293) ------------------------


def test_resume_restores_epoch_optimizer_schedule_and_best(tmp_path):
    param = nn.Parameter(torch.ones(3))
    theirs = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=1e-4)
    param.grad = torch.full((3,), 0.5)
    theirs.step()
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet18_lpf4", "state_dict": {}, "best_acc1": torch.tensor(55.0),
                "optimizer": theirs.state_dict()}, path)
    cfg = load_config("antialiased/scratch-resnet18_lpf4", [
        "train.recipe=antialiased-resume", f"antialias.weights={path}", "train.scheduler_params.step_size=2"])
    ours = nn.Parameter(torch.ones(3))
    optimizer = build_optimizer(cfg, [{"params": [ours]}], 1e-4)
    loop = SimpleNamespace(optimizer=optimizer, scheduler=build_scheduler(cfg, optimizer, 4), start_epoch=0,
                           wc=SimpleNamespace(steps_per_epoch=4), history=[])
    recipe = ResumeRecipe(cfg)
    recipe.on_fit_start(loop)
    assert loop.start_epoch == 3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1 ** (3 // 2))  # the original's adjust_learning_rate
    torch.testing.assert_close(optimizer.state[ours]["momentum_buffer"], theirs.state[param]["momentum_buffer"])
    loop.scheduler.step()  # the schedule goes on from epoch 3
    assert recipe.named_metrics({"test_acc": 0.5})["best_test_acc"] == pytest.approx(0.55)
    assert recipe.named_metrics({"test_acc": 0.6})["best_test_acc"] == pytest.approx(0.6)
    assert ResumeRecipe(cfg).state_dict()["best_test_acc"] == 0.0
    t = translate([f"python main.py -a resnet18_lpf4 --resume {path}"])
    assert f"antialias.weights={path}" in t.overrides and "train.recipe=antialiased-resume" in t.overrides


# -- weights: the filter size and the kind of file are checked ------------------------------


def _original_layout(model: nn.Module, filt_size: int):
    """``model``'s state_dict as the original stores it: persistent ``.filt`` buffers in front of blurred convs."""
    state = {}
    for key, value in model.state_dict().items():
        if key == "layer2.0.conv2.weight":
            state["layer2.0.conv2.0.filt"] = torch.ones(128, 1, filt_size, filt_size) / filt_size ** 2
            key = "layer2.0.conv2.1.weight"
        state[key] = value.clone()
    return state


@pytest.fixture(scope="module")
def resnet18_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    lpf4 = create_model("resnet18_lpf4", num_classes=10)
    torch.save({"state_dict": _original_layout(lpf4, 3)}, root / "lpf3.pth")
    torch.save({"state_dict": _original_layout(lpf4, 4)}, root / "lpf4.pth")
    torch.save(create_model("resnet18", num_classes=10).state_dict(), root / "baseline.pth")
    save_weights(lpf4.state_dict(), root / "export_lpf3.pth", arch="resnet18_lpf3")
    return root


def test_a_file_of_another_filter_size_is_refused(resnet18_files):
    with pytest.raises(CheckpointError, match="BlurPool filters of size 3, the model resnet18_lpf4 has 4"):
        create_model("resnet18_lpf4", num_classes=10, weights=str(resnet18_files / "lpf3.pth"))
    create_model("resnet18_lpf3", num_classes=10, weights=str(resnet18_files / "lpf3.pth"))
    create_model("resnet18_lpf4", num_classes=10, weights=str(resnet18_files / "lpf4.pth"))
    with pytest.raises(CheckpointError, match="are of resnet18_lpf3, not of the model resnet18_lpf4"):
        create_model("resnet18_lpf4", num_classes=10, weights=str(resnet18_files / "export_lpf3.pth"))


def test_a_baseline_file_initialises_an_lpf_model_only_when_finetuning(resnet18_files):
    baseline = str(resnet18_files / "baseline.pth")
    with pytest.raises(CheckpointError, match="torchvision baseline's file"):
        create_model("resnet18_lpf4", num_classes=10, weights=baseline)
    create_model("resnet18_lpf4", num_classes=10, weights=baseline, finetune=True)
    with pytest.raises(CheckpointError, match="copies torchvision's resnet18 weights"):
        create_model("resnet18_lpf4", num_classes=10, weights=str(resnet18_files / "lpf4.pth"), finetune=True)
    # ... and an antialiased file does not fit the baseline (its filters are not dropped there)
    with pytest.raises(CheckpointError, match="do not fit"):
        create_model("resnet18", num_classes=10, weights=str(resnet18_files / "lpf4.pth"))


# -- --pretrained: torch.hub's cache and hash check, over loopback HTTP ------------------------


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server of ``tmp_path/served``; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _publish(folder, name: str, state) -> str:
    """Save ``state`` as ``<name>-<sha256 prefix>.pth``, the original's naming; returns the file name."""
    tmp = folder / "tmp.pth"
    torch.save({"state_dict": state}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    target = folder / f"{name}-{digest}.pth"
    tmp.rename(target)
    return target.name


def test_pretrained_weights_are_fetched_into_the_hub_cache_with_the_hash_check(server, tmp_path, monkeypatch):
    served, base = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RAYSYS_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(pretrained, "WEIGHTS_URL", base)
    t = translate(["python main.py -a resnet18_lpf4 --pretrained -e"])  # no weights needed to translate
    original = "resnet18_lpf4_finetune-8cc58f59.pth"  # the original's file name (antialiased_cnns/resnet.py:66)
    assert f"antialias.weights={base}{original}" in t.overrides
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    # A file whose content does not hash to its name's prefix is refused and not kept.
    model = create_model("resnet18_lpf4", num_classes=10)
    ours = _publish(served, "resnet18_lpf4", _original_layout(model, 4))
    (served / original).write_bytes((served / ours).read_bytes())
    cfg = load_config(t.preset, [o for o in t.overrides if "=" in o] + ["model.num_classes=10"])
    with pytest.raises(CheckpointError, match="refusing weights .*hash"):
        create_model("resnet18_lpf4", num_classes=10, weights=cfg.antialias.weights)
    assert not (cache / original).exists()
    # A file that matches is fetched into torch's hub cache, which then serves it offline.
    fetched = create_model("resnet18_lpf4", num_classes=10, weights=base + ours)
    torch.testing.assert_close(fetched.fc.weight, model.fc.weight)
    assert (cache / ours).is_file()
    (served / ours).unlink()
    create_model("resnet18_lpf4", num_classes=10, weights=base + ours)


def test_offline_weights_dir_serves_and_a_missing_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RAYSYS_WEIGHTS_DIR", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    model = create_model("resnet18_lpf4", num_classes=10)
    name = _publish(tmp_path / "weights", "resnet18_lpf4", _original_layout(model, 4))
    unreachable = "http://127.0.0.1:9/"  # the discard port: nothing listens
    create_model("resnet18_lpf4", num_classes=10, weights=unreachable + name)
    with pytest.raises(CheckpointError, match=r"cannot fetch weights .*offline, put resnet18_lpf4-00000000.pth in") as info:
        create_model("resnet18_lpf4", num_classes=10, weights=unreachable + "resnet18_lpf4-00000000.pth")
    assert "\n" not in str(info.value)
