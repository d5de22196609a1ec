"""Cross-resolution as the original: source-phase augmentation at 32 px, fine-tuning from the best source epoch."""
from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import torch

from raysys.config import load_config
from raysys.data.augment import AUGMENTS, resize, resnet_augment
from raysys.data.stream import BatchCollator, ImageFormat
from raysys.errors import ConfigError
from raysys.models import InputSpec, build_model, create_model
from raysys.train.recipes import build_recipe

CROSSRES = "flexconv/crossres-cifar10-flexnet7"
TINY = ["flexconv.net.no_hidden=4", "flexconv.net.no_blocks=1", "flexconv.net.block_width_factors=[1.0, 1]",
        "flexconv.kernel.no_hidden=4", "train.epochs=3", "cross_res.finetune_epochs=2"]


def raw_table(images: np.ndarray) -> pa.Table:
    """A batch of raw (N, H, W, C) uint8 rows as the shards store them."""
    return pa.table({"image": pa.array([image.tobytes() for image in images], pa.binary()),
                     "label": pa.array(np.zeros(len(images), np.int64)), "index": pa.array(np.arange(len(images)))})


def test_crossres_cifar10_presets_augment_before_resizing_and_imagenetk_after():
    assert load_config(CROSSRES).train.augment == "resnet-before-resize"
    assert load_config("flexconv/crossres-cifar10-resnet44").train.augment == "resnet-before-resize"
    # ImageNet-k: the original reads natively downsampled ImageNet and pad-crops at that size.
    assert load_config("flexconv/crossres-imagenetk-flexnet5-gabor-reg").train.augment == "resnet"
    assert load_config("flexconv/cifar10-flexnet7").train.augment == "resnet"


def test_the_16px_source_phase_crops_at_32_with_padding_4_then_resizes():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    fmt = ImageFormat("raw", 32, 32, 3, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), resize=16)
    collator = BatchCollator(fmt, "resnet-before-resize", seed=3, epoch=1, rank=0)
    out = collator(raw_table(images))["image"]
    assert out.shape == (6, 3, 16, 16)
    # By hand, with the batch's generator: flip + 32-crop of the 4-padded 32 px image, then resize to 16.
    full = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    expected = resize(resnet_augment(full, collator._generator(0)), 16).float()
    torch.testing.assert_close(out, expected)
    # The plain resnet augmentation resizes first and pad-crops the 16 px image by 2: not the same pixels.
    plain = BatchCollator(fmt, "resnet", seed=3, epoch=1, rank=0)(raw_table(images))["image"]
    assert plain.shape == out.shape and not torch.equal(plain, out)
    # At the stored size (the 32 px fine-tuning phase) it is the resnet augmentation.
    same = ImageFormat("raw", 32, 32, 3, (0.0,) * 3, (1 / 255,) * 3, resize=32)
    torch.testing.assert_close(BatchCollator(same, "resnet-before-resize", 3, 1, 0)(raw_table(images))["image"],
                               BatchCollator(same, "resnet", 3, 1, 0)(raw_table(images))["image"])
    assert AUGMENTS.family("resnet-before-resize") == "flexconv"


def crossres_setup(*extra):
    cfg = load_config(CROSSRES, [*TINY, *extra])
    torch.manual_seed(0)
    model = build_model(cfg, InputSpec(3, 16, 10))
    return cfg, model, build_recipe(cfg)


def run_source_phase(model, recipe, accuracies):
    """Epochs of the source phase with ``accuracies``; returns each epoch's weights."""
    source = recipe.phases()[0]
    recipe.on_phase_start(model, source, 16)
    states = []
    for epoch, acc in enumerate(accuracies, start=1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * epoch)
        states.append(copy.deepcopy(model.state_dict()))
        metrics = recipe.named_metrics({"epoch": epoch, "phase": 0, "resolution": 16, "test_acc": acc, "test_loss": 1.0})
        recipe.on_validation_end(model, metrics)
    return states


def same_weights(model, state) -> bool:
    # train_length (the kernel grid) is the phase's; every weight must match
    return all(torch.equal(value, state[name]) for name, value in model.state_dict().items()
               if not name.endswith("train_length"))


def test_fine_tuning_starts_from_the_best_source_epoch_by_default():
    cfg, model, recipe = crossres_setup()
    assert cfg.cross_res.finetune_from == "best"
    states = run_source_phase(model, recipe, [0.5, 0.7, 0.6])
    saved = recipe.state_dict()  # a checkpoint taken at the end of the source phase holds the best weights
    assert saved["source_best"]["epoch"] == 2
    recipe.on_phase_start(model, recipe.phases()[1], 32)
    assert same_weights(model, states[1])
    assert {int(m.train_length[0]) for m in model.modules() if hasattr(m, "train_length")} == {33}
    first = recipe.named_metrics({"epoch": 4, "phase": 1, "source_test_acc": 0.6, "ootb_test_acc": 0.4, "ootb_diff": -0.2})
    assert first["source_test_acc"] == 0.7 and first["source_best_epoch"] == 2.0
    assert first["ootb_diff"] == pytest.approx(0.4 - 0.7)

    # Resumed from the end-of-source checkpoint: the same weights are loaded when fine-tuning starts.
    _, resumed_model, resumed = crossres_setup()
    resumed.load_state_dict(saved)
    resumed.on_phase_start(resumed_model, resumed.phases()[1], 32)
    assert same_weights(resumed_model, states[1])
    # Resumed inside the fine-tuning phase: nothing is held, the checkpoint's weights stay.
    _, mid_model, mid = crossres_setup()
    before = copy.deepcopy(mid_model.state_dict())
    mid.on_phase_start(mid_model, mid.phases()[1], 32)
    assert same_weights(mid_model, before)


def test_finetune_from_last_keeps_the_last_source_epoch():
    cfg, model, recipe = crossres_setup("cross_res.finetune_from=last")
    states = run_source_phase(model, recipe, [0.5, 0.7, 0.6])
    recipe.on_phase_start(model, recipe.phases()[1], 32)
    assert same_weights(model, states[2])
    assert recipe.named_metrics({"source_test_acc": 0.6})["source_test_acc"] == 0.6


def test_ties_go_to_the_lower_loss_then_the_later_epoch():
    cfg, model, recipe = crossres_setup()
    source = recipe.phases()[0]
    recipe.on_phase_start(model, source, 16)
    for epoch, (acc, loss) in enumerate([(0.7, 0.5), (0.7, 0.9), (0.7, 0.5)], start=1):
        recipe.on_validation_end(model, {"epoch": epoch, "phase": 0, "test_acc": acc, "test_loss": loss})
    assert recipe.source_best["epoch"] == 3


def test_a_bad_finetune_from_is_refused_by_name():
    with pytest.raises(ConfigError, match="cross_res.finetune_from"):
        load_config(CROSSRES, ["cross_res.finetune_from=first"])


def test_dropout_in_drops_input_pixels_in_training_only():
    model = create_model("flexnet", in_channels=1, num_classes=3, no_hidden=4, no_blocks=1, block_width_factors=[1.0, 1],
                         kernel_no_hidden=4, horizon="5", dropout_in=0.5)
    assert isinstance(model.dropout_in, torch.nn.Dropout) and model.dropout_in.p == 0.5
    x = torch.ones(2, 1, 8, 8)
    model.train()
    dropped = model.dropout_in(x)
    assert (dropped == 0).any() and set(dropped.unique().tolist()) <= {0.0, 2.0}
    model.eval()
    assert torch.equal(model.dropout_in(x), x)
    cfg = load_config("flexconv/cifar10-flexnet7", ["flexconv.net.dropout_in=0.1"])
    assert build_model(cfg, InputSpec(3, 32, 10)).dropout_in.p == 0.1
