"""Antialiased CNNs on ImageNet: recipe, weights files, evaluators, presets and main.py translation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from raysys.cli.main import main
from raysys.config import list_presets, load_config
from raysys.errors import CheckpointError, ConfigError
from raysys.eval.evaluators import EvalSettings, build_evaluators, diagonal_files, image_side
from raysys.legacy import translate
from raysys.models import InputSpec, build_model
from raysys.families.antialiased.models import ARCHITECTURES, build_baseline
from raysys.models.weights import load_weights, read_state_dict, save_weights
from raysys.train.accumulate import Accumulation

# -- gradient accumulation -------------------------------------------------------------


def _grads(model: nn.Module):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("batches,steps", [(2, 2), (3, 3)])
def test_accumulation_gives_the_gradient_of_one_big_batch(batches, steps):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(4 * batches, 6), torch.randint(0, 3, (4 * batches,))
    loss_fn = nn.functional.cross_entropy
    loss_fn(model(x), y).backward()
    big = _grads(model)
    model.zero_grad()
    plan = Accumulation(steps, batches)
    for i, (xb, yb) in enumerate(zip(x.chunk(batches), y.chunk(batches))):
        if plan.opens_group(i):
            model.zero_grad()
        (loss_fn(model(xb), yb) * plan.loss_scale(i)).backward()
        assert plan.closes_group(i) == (i == batches - 1)
    for a, b in zip(big, _grads(model)):
        torch.testing.assert_close(a, b)


def test_accumulate_sum_is_the_originals_summed_gradient():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    mean = _grads(model)
    model.zero_grad()
    plan = Accumulation(2, 2, sum=True)
    for i, (xb, yb) in enumerate(zip(x.chunk(2), y.chunk(2))):
        (nn.functional.cross_entropy(model(xb), yb) * plan.loss_scale(i)).backward()
    for a, b in zip(mean, _grads(model)):
        torch.testing.assert_close(2 * a, b)


def test_accumulation_groups_and_a_short_last_group():
    plan = Accumulation(2, 5)
    assert plan.optimizer_steps == 3
    assert [plan.closes_group(i) for i in range(5)] == [False, True, False, True, True]
    assert plan.loss_scale(4) == 1.0 and plan.loss_scale(0) == 0.5
    with pytest.raises(ConfigError, match="accumulate_steps"):
        Accumulation(0, 5)


# -- weights files -----------------------------------------------------------------------


def _small_cfg(*extra):
    return load_config("antialiased/scratch-resnet18_lpf4", ["model.num_classes=10", *extra])


def test_baseline_weights_initialise_the_antialiased_model_for_finetuning(tmp_path):
    baseline = build_baseline("resnet18", num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(baseline.state_dict(), path)
    model = build_model(_small_cfg(f"antialias.weights={path}", "train.recipe=antialiased-finetune"), InputSpec(3, 224, 10))
    for (name, theirs), ours in zip(baseline.state_dict().items(), model.state_dict().values()):
        assert torch.equal(theirs, ours), name
    # Outside fine-tuning a baseline's file is refused for an antialiased model.
    with pytest.raises(CheckpointError, match="torchvision baseline's file.*antialiased-finetune"):
        build_model(_small_cfg(f"antialias.weights={path}"), InputSpec(3, 224, 10))


def test_missing_or_mismatched_weights_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist \(give a local file or an http\(s\) URL\)"):
        build_model(_small_cfg(f"antialias.weights={tmp_path / 'nope.pth'}"), InputSpec(3, 224, 10))
    other = tmp_path / "resnet34.pth"
    torch.save({"state_dict": build_baseline("resnet34", num_classes=10).state_dict()}, other)
    with pytest.raises(CheckpointError, match=r"do not fit ResNet: \d+ unexpected keys"):
        build_model(_small_cfg(f"antialias.weights={other}", "train.recipe=antialiased-finetune"), InputSpec(3, 224, 10))
    with pytest.raises(CheckpointError, match="refusing to load"):
        (tmp_path / "bad.pth").write_bytes(b"not a pickle")
        read_state_dict(tmp_path / "bad.pth")


class TinyVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.classifier = nn.Linear(4, 2)


def test_save_weights_strips_optimizer_and_parallel_prefixes(tmp_path):
    model = TinyVGG()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state = {k.replace("module.features.", "features.module."): v for k, v in state.items()}  # DataParallel(features)
    checkpoint = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, checkpoint)
    out = tmp_path / "weights.pth.tar"
    save_weights(read_state_dict(checkpoint), out)
    saved = torch.load(out, weights_only=True)
    assert list(saved) == ["state_dict"]
    assert list(saved["state_dict"]) == list(model.state_dict())
    load_weights(TinyVGG(), out)


def test_export_weights_command_refuses_another_architecture(tmp_path, capsys):
    checkpoint = tmp_path / "state.pt"
    model = build_model(_small_cfg(), InputSpec(3, 224, 10))
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 1}, checkpoint)
    out = tmp_path / "w.pth"
    assert main(["export-weights", "antialiased/eval-resnet18_lpf4", "--checkpoint", str(checkpoint), "--out", str(out), "model.num_classes=10"]) == 0
    assert list(torch.load(out, weights_only=True)["state_dict"]) == list(model.state_dict())
    capsys.readouterr()
    assert main(["export-weights", "antialiased/eval-resnet34_lpf4", "--checkpoint", str(checkpoint), "--out", str(out), "model.num_classes=10"]) == 2
    assert "do not fit" in capsys.readouterr().err


# -- evaluators ----------------------------------------------------------------------------


class Fixed(nn.Module):
    """Predicts class = 0 if the top-left pixel of the crop is > 0, else 1."""

    def forward(self, x):
        score = x[:, 0, 0, 0]
        return torch.stack([score, -score], dim=1)


def test_accuracy_uses_the_centre_crop_and_counts_top1_top5():
    settings = EvalSettings(crop=4, options={"max_shift": 2, "shift_passes": 1, "diagonal_offsets": 3})
    evaluators = build_evaluators(["accuracy", "es", "diagonal"], settings)
    assert list(evaluators) == ["accuracy", "shift-consistency", "diagonal-consistency"]
    assert image_side(evaluators, settings) == 6
    images = -torch.ones(2, 3, 6, 6)
    images[0, :, 1, 1] = 1.0  # centre crop of a 6-image starts at (1, 1)
    labels = torch.tensor([0, 0])
    acc = evaluators["accuracy"]
    acc.update(Fixed(), images, labels, torch.arange(2), torch.Generator())
    metrics = acc.metrics(acc.totals())
    assert metrics["eval_top1"] == 50.0 and metrics["eval_top5"] == 100.0 and metrics["eval_count"] == 2
    diagonal = evaluators["diagonal-consistency"]
    diagonal.update(Fixed(), images, labels, torch.tensor([5, 2]), torch.Generator())
    files = diagonal_files(diagonal.arrays())
    assert files["diag_corrs"].shape == (2, 3)
    # Rows in validation order: index 2 (all negative) first, then index 5, positive only at (1, 1).
    assert files["diag_corrs"].tolist() == [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    with pytest.raises(ConfigError, match="unknown evaluator"):
        build_evaluators(["acuracy"], settings)


# -- presets and main.py --------------------------------------------------------------------

SEED_ARCHS = [
    "alexnet_lpf4", "vgg11_lpf4", "vgg13_lpf4", "vgg16_lpf4", "vgg19_lpf4", "vgg11_bn_lpf4", "vgg13_bn_lpf4",
    "vgg16_bn_lpf4", "vgg19_bn_lpf4", "resnet18_lpf4", "resnet34_lpf4", "resnet50_lpf4", "resnet101_lpf4",
    "resnet152_lpf4", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2_lpf4", "wide_resnet101_2_lpf4",
    "densenet121_lpf4", "densenet169_lpf4", "densenet201_lpf4", "densenet161_lpf4", "mobilenet_v2_lpf4",
]
D = "--data /PTH/TO/ILSVRC2012"
SEED_COMMANDS = (
    [f"python main.py {D} -a {a} --pretrained -e" + (" --gpu 0" if a == "alexnet_lpf4" else "") for a in SEED_ARCHS]
    + [f"python main.py {D} -a {a} --pretrained -es -b 8" + (" --gpu 0" if a == "alexnet_lpf4" else "") for a in SEED_ARCHS]
    + [
        f"python main.py {D} -a alexnet_lpf4 --out-dir alexnet_lpf4 --gpu 0 --lr .01",
        f"python main.py {D} -a vgg16_lpf4 --out-dir vgg16_lpf4 --lr .01 -b 128 -ba 2",
        f"python main.py {D} -a vgg16_bn_lpf4 --out-dir vgg16_bn_lpf4 --lr .05 -b 128 -ba 2",
        f"python main.py {D} -a resnet18_lpf4 --out-dir resnet18_lpf4",
        f"python main.py {D} -a resnet34_lpf4 --out-dir resnet34_lpf4",
        f"python main.py {D} -a resnet50_lpf4 --out-dir resnet50_lpf4",
        f"python main.py {D} -a resnet101_lpf4 --out-dir resnet101_lpf4",
        f"python main.py {D} -a densenet121_lpf4 --out-dir densenet121_lpf4",
        f"python main.py {D} -a mobilenet_v2_lpf4 --out-dir mobilenet_v2_lpf4 --lr .05 --cos_lr --wd 4e-5 --ep 150",
        f"python main.py {D} -a resnet50_lpf4 --out-dir resnet50_lpf4 --lr .01 -ep 60 --finetune",
        "python main.py -a resnet18_lpf4 --resume resnet18_lpf4/model_best.pth.tar --save_weights resnet18_lpf4/weights.pth.tar",
    ]
)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """Empty files named like the original's downloads: only their names are looked up."""
    for arch in SEED_ARCHS:
        (tmp_path / (f"{arch}_finetune-0000.pth" if "_lpf" in arch else f"{arch}-0000.pth")).touch()
    (tmp_path / "resnet50-0676ba61.pth").touch()
    monkeypatch.setenv("RAYSYS_WEIGHTS_DIR", str(tmp_path))
    return tmp_path


def test_every_seed_command_has_a_preset():
    names = {p.name for p in list_presets() if p.paper == "antialiased"}
    assert {f"antialiased/eval-{a}" for a in SEED_ARCHS} <= names
    assert {f"antialiased/consistency-{a}" for a in SEED_ARCHS} <= names
    assert len([n for n in names if "/scratch-" in n]) == 9 and "antialiased/finetune-resnet50_lpf4" in names


@pytest.mark.parametrize("command", SEED_COMMANDS)
def test_every_seed_command_translates(command, weights_dir):
    translation = translate([command])
    arch = command.split(" -a ")[1].split()[0]
    overrides = [o for o in translation.overrides if "=" in o and not o.startswith("--")]
    cfg = load_config(translation.preset, overrides)
    assert cfg.model.name == arch
    tokens = command.split()
    if "-e" in tokens:
        assert translation.command == "eval" and list(cfg.evaluate.metrics) == ["accuracy"]
    elif "-es" in tokens:
        assert translation.command == "eval" and list(cfg.evaluate.metrics) == ["shift-consistency"]
        assert cfg.train.batch_size == 8 and cfg.evaluate.shift_passes == 5
    elif "--save_weights" in command:
        assert translation.command == "export-weights"
        assert translation.overrides[-6:] == ["--checkpoint", "resnet18_lpf4/model_best.pth.tar", "--out",
                                              "resnet18_lpf4/weights.pth.tar", "--format", "original"]
        return
    else:
        assert translation.command == "train"
    if "--pretrained" in command:
        assert cfg.antialias.weights.startswith(str(weights_dir)) and arch in cfg.antialias.weights
    if "-ba 2" in command:  # the original adds the 2 gradients (main.py:454-460)
        assert cfg.train.batch_size * cfg.train.accumulate_steps == 256 and cfg.train.accumulate_sum
    if "--finetune" in command:
        assert cfg.antialias.weights.endswith("resnet50-0676ba61.pth") and cfg.train.lr == 0.01 and cfg.train.epochs == 60
        assert cfg.train.recipe == "antialiased-finetune"
    if "--cos_lr" in command:
        assert cfg.train.scheduler == "epoch_cosine" and cfg.train.epochs == 150 and cfg.train.weight_decay == 4e-5


def test_recipe_defaults_match_the_original():
    cfg = load_config("antialiased/scratch-resnet50_lpf4", [])
    t = cfg.train
    assert (t.epochs, t.batch_size, t.lr, t.momentum, t.weight_decay, t.augment) == (90, 256, 0.1, 0.9, 1e-4, "imagenet")
    assert t.scheduler == "step" and t.scheduler_params["step_size"] == 30 and t.scheduler_params["gamma"] == 0.1
    assert cfg.checkpoint.score_attribute == "test_acc" and cfg.data.resize == 224


def test_pretrained_without_a_local_file_names_the_originals_url(tmp_path, monkeypatch, capsys):
    """--print needs no weights: the URL is fetched (torch.hub cache, hash check) when the model is built."""
    monkeypatch.setenv("RAYSYS_WEIGHTS_DIR", str(tmp_path))
    assert main(["legacy", "--print", "--", "python", "main.py", "-a", "resnet50_lpf4", "--pretrained", "-e"]) == 0
    out = capsys.readouterr().out
    assert ("antialias.weights=https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/"
            "resnet50_lpf4_finetune-cad66808.pth") in out
    assert main(["legacy", "--print", "--", "python main.py -a resnet152_lpf3 --pretrained -e"]) == 2
    assert "publishes no resnet152_lpf3 weights" in capsys.readouterr().err


@pytest.mark.parametrize("flag,reason", [("--dist-url", "process group"), ("--no-data-aug", "RandomResizedCrop"), ("--bogus", "unsupported flag")])
def test_unsupported_flags_are_refused_by_name(flag, reason, weights_dir):
    with pytest.raises(ConfigError, match=reason) as info:
        translate(["python", "main.py", "-a", "resnet18_lpf4", "--pretrained", "-e", flag, "x"])
    assert flag in str(info.value)


def test_print_shows_the_raysys_command(weights_dir, capsys):
    assert main(["legacy", "--print", "--", "python main.py -a vgg16_lpf4 --lr .01 -b 128 -ba 2"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("python -m raysys train antialiased/scratch-vgg16_lpf4")
    assert "train.accumulate_steps=2" in out and "train.batch_size=128" in out


def test_every_architecture_is_accepted_with_any_filter_size(weights_dir):
    for arch in ARCHITECTURES:
        translation = translate(["python", "main.py", "-a", f"{arch}_lpf3", "--lr", "0.01"])
        assert f"model.name={arch}_lpf3" in translation.overrides or translation.preset.endswith(f"{arch}_lpf3")
    with pytest.raises(ConfigError, match="unknown architecture"):
        translate(["python", "main.py", "-a", "resnet50_lpf9"])


def test_pareto_front_matches_the_readmes_bold_variants():
    from pipelines.report.definitions.antialiased import PUBLISHED, pareto_front

    def front(arch):
        return pareto_front([(row, acc, cons) for row, (acc, cons) in PUBLISHED[arch][1].items()])

    assert front("alexnet") == ["Rect-2", "Tri-3", "Tri-4"]
    assert front("resnet34") == ["Rect-2", "Tri-4"]
    assert front("vgg16") == ["Tri-4", "Bin-5"]
    assert front("resnet101") == ["Tri-4"]


def test_weights_in_the_originals_module_layout_load_by_order(tmp_path):
    """The original nests blurred convs (conv2.1.weight) and stores BlurPool filters (.filt)."""
    model = build_model(_small_cfg(), InputSpec(3, 64, 10))
    original = {}
    for key, value in model.state_dict().items():
        if key == "layer2.0.conv2.weight":
            original["layer2.0.conv2.0.filt"] = torch.ones(128, 1, 4, 4)
            key = "layer2.0.conv2.1.weight"
        original[key] = value.clone() + 1
    path = tmp_path / "resnet18_lpf4_finetune-0000.pth"
    torch.save({"state_dict": original}, path)
    fresh = build_model(_small_cfg(f"antialias.weights={path}"), InputSpec(3, 64, 10))
    torch.testing.assert_close(fresh.state_dict()["layer2.0.conv2.weight"], original["layer2.0.conv2.1.weight"])
    del original["layer2.0.conv2.1.weight"]  # one tensor short: refused, not guessed
    torch.save(original, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model(_small_cfg(f"antialias.weights={path}"), InputSpec(3, 64, 10))


def test_the_antialias_benchmark_has_quick_sizes():
    from raysys.bench import load_benchmarks

    bench = load_benchmarks().get("antialias")
    assert set(bench.quick) <= set(bench.full) and {"repeats", "warmup"} <= set(bench.full)
    assert bench.params(quick=True)["archs"] == "resnet18,mobilenet_v2"
