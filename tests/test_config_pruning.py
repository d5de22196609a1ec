"""A run's config holds only what it uses: a family's sections are present only in its runs.

A run uses a family when its model, recipe, evaluators or dataset is registered by that family
(raysys/config/schema.py: used_families). Run names, old configs and old run fingerprints keep working.
"""
from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import pytest
import yaml
from omegaconf import OmegaConf

from raysys.config import renames
from raysys.config.loader import _preset_layers, _flat_keys, flatten, from_container, list_presets, load_config, to_yaml
from raysys.config.schema import key_family, root_schema, section_names, used_families
from raysys.errors import ConfigError
from raysys.track import identity

RESNET20 = "cifar-resnet/fashion-mnist-resnet20"
FAMILY_SECTIONS = {
    "flexconv": {"flexconv", "cross_res"},
    "mimoconv": {"mimo", "superposition", "mimo_recipe"},
    "antialiased": {"antialias"},
    "stir": {"stir"},
}
SHARED_SECTIONS = {"model", "data", "train", "scaling", "checkpoint", "failure", "tracking", "evaluate"}
FLEXCONV_TRAIN_FIELDS = {"train.mask_params_lr_factor", "train.omega_0_lr_factor"}


def family_keys(flat):
    return sorted(k for k in flat if key_family(k) is not None)


def test_sections_belong_to_their_families():
    owners = {name: key_family(name) for name in section_names()}
    assert {name for name, family in owners.items() if family is None} == SHARED_SECTIONS
    for family, sections in FAMILY_SECTIONS.items():
        assert {name for name, owner in owners.items() if owner == family} == sections
    assert {key_family(k) for k in FLEXCONV_TRAIN_FIELDS} == {"flexconv"}
    assert key_family("train.lr") is None and key_family("flexconv.kernel.regularize_params.target") == "flexconv"


def test_resnet20_print_config_has_no_family_key():
    from raysys.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", RESNET20, "--print-config"]) == 0
    text = out.getvalue()
    assert len(text.splitlines()) < 100  # 166 when every family's sections were in every run
    printed = yaml.safe_load(text)
    assert set(printed) - {"preset", "paper", "seed", "run_name", "deterministic"} == SHARED_SECTIONS
    for word in ("antialias", "pad_type", "superposition", "mimo", "flexconv", "kernel", "mask", "cross_res", "stir"):
        assert word not in text, word


def test_resnet20_params_and_config_yaml_hold_no_family_key():
    """What RunRecord.log_config logs: flatten(cfg) as params, to_yaml(cfg) as config.yaml."""
    cfg = load_config(RESNET20)
    params = flatten(cfg)
    assert family_keys(params) == [] and len(params) < 134  # 134 params before
    assert not FLEXCONV_TRAIN_FIELDS & set(params)
    assert family_keys(flatten(yaml.safe_load(to_yaml(cfg)))) == []
    # The params are the full resolved config of what it uses: enough to re-run it.
    rebuilt = from_container(yaml.safe_load(to_yaml(cfg)))
    assert OmegaConf.to_container(rebuilt) == OmegaConf.to_container(cfg)


@pytest.mark.parametrize("preset, families", [
    ("flexconv/cifar10-flexnet7", ["flexconv"]),
    ("flexconv/crossres-cifar10-resnet44", ["flexconv"]),  # a CIFAR ResNet with the FlexConv recipe
    ("mimoconv/cifar10-mimonet28-10-n2", ["mimoconv"]),
    ("antialiased/scratch-resnet18_lpf4", ["antialiased"]),
    ("antialiased/eval-resnext50_32x4d", ["antialiased"]),  # torchvision's baseline (antialias.weights)
    ("stir/emoji", ["stir"]),
    (RESNET20, []),
])
def test_a_preset_keeps_the_sections_of_its_families(preset, families):
    cfg = load_config(preset)
    assert used_families(OmegaConf.to_container(cfg)) == families
    expected = SHARED_SECTIONS.union(*(FAMILY_SECTIONS[f] for f in families))
    assert set(cfg) - {"preset", "paper", "seed", "run_name", "deterministic"} == expected
    assert (FLEXCONV_TRAIN_FIELDS <= set(flatten(cfg))) == ("flexconv" in families)


def test_flexconv_preset_keeps_its_values():
    cfg = load_config("flexconv/crossres-cifar10-flexnet7")
    assert cfg.train.mask_params_lr_factor == 0.1 and cfg.cross_res.source_res == 16 and cfg.flexconv.conv.horizon == "33"


def test_an_override_can_switch_families():
    cfg = load_config(RESNET20, ["model.name=flexnet", "flexconv.kernel.omega_0=10.0"])
    assert cfg.flexconv.kernel.omega_0 == 10.0 and "cross_res" in cfg and "antialias" not in cfg
    # an evaluator names a family too
    cfg = load_config(RESNET20, ["evaluate.after_training=[accuracy,dynamic]"])
    assert "superposition" in cfg and "flexconv" not in cfg
    with pytest.raises(ConfigError, match="bad value for 'evaluate.metrics'"):
        load_config(RESNET20, ["evaluate.metrics=[acuracy]"])


@pytest.mark.parametrize("override, family", [
    ("antialias.pad_type=zero", "antialiased"),
    ("superposition.capacity=4", "mimoconv"),
    ("flexconv.kernel.regularize_params.factor=0.1", "flexconv"),
    ("kernel.regularize_params.factor=0.1", "flexconv"),  # its old name
    ("stir.evaluation=2", "stir"),
    ("train.mask_params_lr_factor=0.1", "flexconv"),
])
def test_an_override_of_an_unused_family_is_refused_in_one_line(override, family):
    with pytest.raises(ConfigError) as err:
        load_config(RESNET20, [override])
    message = str(err.value)
    assert "\n" not in message
    assert f"belongs to family {family}" in message and "'cifar_resnet20'" in message
    assert renames.current_key(override.split("=")[0]) in message


def test_every_preset_sets_only_keys_of_the_families_it_uses_and_round_trips():
    for info in list_presets():
        cfg = load_config(info.name)
        used = used_families(OmegaConf.to_container(cfg))
        for layer in _preset_layers(info.name):
            for key in _flat_keys(layer):
                assert key_family(key) in (None, *used), (info.name, key)
        assert OmegaConf.to_container(from_container(OmegaConf.to_container(cfg))) == OmegaConf.to_container(cfg), info.name


def full_config(preset, overrides=()):
    """A config as saved before configs were pruned: every family's sections (unused ones at defaults)."""
    pruned = OmegaConf.to_container(load_config(preset, overrides))
    full = OmegaConf.merge(OmegaConf.structured(root_schema()), pruned)
    return OmegaConf.to_container(full)


def test_an_old_full_config_yaml_loads_and_is_pruned(tmp_path):
    old = full_config(RESNET20)
    assert {"antialias", "flexconv", "superposition", "stir"} <= set(old) and "mask_params_lr_factor" in old["train"]
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
    cfg = from_container(yaml.safe_load(path.read_text()))
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(load_config(RESNET20))
    # a checkpoint of a FlexConv run keeps its sections and values
    old = full_config("flexconv/cifar10-flexnet7", ["flexconv.kernel.omega_0=10.0"])
    cfg = from_container(old)
    assert cfg.flexconv.kernel.omega_0 == 10.0 and "antialias" not in cfg and cfg.train.mask_params_lr_factor == 0.1


def test_an_old_checkpoint_config_loads_for_evaluation():
    from raysys.driver.checkpoints import apply_eval_overrides

    state = {"config": full_config("antialiased/eval-resnet18_lpf4")}  # as raysys/driver/checkpoints.py reads a checkpoint
    cfg = apply_eval_overrides(from_container(state["config"]), ["evaluate.limit=5"])
    assert cfg.evaluate.limit == 5 and cfg.antialias.pad_type == "reflect" and "flexconv" not in cfg


# Computed before configs were pruned (every family's sections in every config): run names and
# fingerprints of runs recorded then.
BEFORE_PRUNING = [
    (RESNET20, [], "fashion-mnist-resnet20-seed0", "2dae726447a98350"),
    (RESNET20, ["seed=3", "train.epochs=2"], "fashion-mnist-resnet20-seed3-587e4059", "8b35da75eace4a11"),
    (RESNET20, ["model.name=flexnet"], "fashion-mnist-resnet20-seed0-b087ffec", "6c07bf1cac4b2f75"),
    ("cifar-resnet/cifar10-resnet20", ["train.lr=0.05", "scaling.num_workers=2"], "cifar10-resnet20-seed0-949a1086", "bbd1576015f9612d"),
    ("flexconv/cifar10-flexnet7", ["kernel.omega_0=10.0"], "cifar10-flexnet7-seed0-d5eba004", "da4d815389b5f963"),
    ("flexconv/crossres-cifar10-resnet44", ["cross_res.finetune_epochs=3"], "crossres-cifar10-resnet44-seed0-335a747d", "e43161023436f100"),
    ("mimoconv/cifar10-mimonet28-10-n2", ["superposition.capacity=4"], "cifar10-mimonet28-10-n2-seed0-0d416371", "84fbf711e974a185"),
    ("antialiased/scratch-resnet18_lpf4", ["antialias.pad_type=zero", "seed=1"], "scratch-resnet18_lpf4-seed1-406b56cf", "736f1e1aa0c11993"),
    ("stir/emoji", ["stir.evaluation=3", "model.name=stir_pixel_pool"], "emoji-seed0-e6a7fadd", "2a6a975d342bce17"),
    ("stir/mnist", [], "mnist-seed0", "13170ba3ab0fb334"),
]


@pytest.mark.parametrize("preset, overrides, run_name, _", BEFORE_PRUNING)
def test_run_names_are_what_they_were(preset, overrides, run_name, _):
    assert load_config(preset, overrides).run_name == run_name


def recorded(fingerprint):
    return SimpleNamespace(data=SimpleNamespace(tags={identity.FINGERPRINT_TAG: fingerprint}))


# Presets whose defaults changed since (docs/fidelity.md): their old runs match only with the old behaviour.
# Shared defaults changed since: fp16 autocast was on by default; the originals train in fp32.
OLD_DEFAULTS = ["train.amp=true"]
OLD_BEHAVIOUR = {"flexconv/crossres-cifar10-resnet44": ["train.augment=resnet", "cross_res.finetune_from=last"]}


@pytest.mark.parametrize("preset, overrides, _, old_fingerprint", BEFORE_PRUNING)
def test_a_run_recorded_before_pruning_is_still_the_same_run(preset, overrides, _, old_fingerprint):
    # every preset's runs of then trained under train.amp=true, the default then
    assert identity.match(recorded(old_fingerprint), identity.fingerprint(load_config(preset, overrides))) == identity.STALE
    overrides = [*overrides, *OLD_DEFAULTS, *OLD_BEHAVIOUR.get(preset, [])]
    cfg = load_config(preset, overrides)
    fp = identity.fingerprint(cfg)
    assert fp.accepted[0] == str(fp) and old_fingerprint in fp.accepted  # this config's (what new runs record), and the old one
    assert identity.match(recorded(old_fingerprint), fp) == identity.SAME  # recorded before pruning
    assert identity.match(recorded(str(fp)), fp) == identity.SAME  # recorded after
    # the full config's, as then (under the names of then: raysys/config/renames.py)
    assert old_fingerprint in identity.fingerprint(full_config(preset, overrides)).accepted
    changed = load_config(preset, [*overrides, "train.epochs=7"])
    assert identity.match(recorded(old_fingerprint), identity.fingerprint(changed)) == identity.STALE
    assert identity.match(recorded(str(fp)), identity.fingerprint(changed)) == identity.STALE


def test_fingerprint_of_a_plain_dict_and_of_the_config_agree():
    cfg = load_config("stir/emoji")
    tree = OmegaConf.to_container(cfg, resolve=True)
    assert identity.fingerprint(tree).accepted == identity.fingerprint(cfg).accepted
    assert identity.accepted("0123456789abcdef") == ("0123456789abcdef",)


# Fingerprints recorded at 21d84e8 (2026-12-02): pruned configs, FlexConv's old section names, the
# consistency evaluators' fields still in the shared evaluate section, train.amp's old default.
RECORDED_2026_12_02 = {
    "cifar-resnet/fashion-mnist-resnet20": "f6cb021741dff3cc",
    "stir/emoji": "6ce60a570137adf2",
    "antialiased/scratch-resnet18_lpf4": "ae2befb21dc6b3d7",
    "flexconv/cifar10-flexnet7": "ed40ba8051924666",
    "mimoconv/cifar10-mimonet28-10-n2": "79ba487ee54100d8",
}


@pytest.mark.parametrize("preset, old_fingerprint", sorted(RECORDED_2026_12_02.items()))
def test_a_run_recorded_before_the_renames_and_moves_is_still_the_same_run(preset, old_fingerprint):
    assert identity.match(recorded(old_fingerprint), identity.fingerprint(load_config(preset, OLD_DEFAULTS))) == identity.SAME
    assert identity.match(recorded(old_fingerprint), identity.fingerprint(load_config(preset))) == identity.STALE
