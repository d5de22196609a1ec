"""FlexConv's command lines (experiments/readme.md) translate to raysys presets, verbatim."""
from __future__ import annotations

import shlex

import pytest

from raysys.cli.main import main
from raysys.config.loader import load_config, parse_override
from raysys.errors import ConfigError
from raysys.legacy import translate
from raysys.families.flexconv.legacy.flags import parse_flags

# (expected preset, seed, the command exactly as the seed's experiments/readme.md gives it)
SEED_COMMANDS = [
    ("flexconv/cifar10-flexnet7", 0,
     'python run_experiment.py conv.horizon=33 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=FlexConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 "summary=[64, 3, 32, 32]" seed=0'),
    ("flexconv/cifar10-conv3", 0,
     'python run_experiment.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" conv.type=Conv conv.horizon=3 dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam train.scheduler=cosine train.weight_decay=0 "summary=[64, 3, 32, 32]" seed=0'),
    ("flexconv/cifar10-conv33", 0,
     'python run_experiment.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" conv.type=Conv conv.horizon=33 dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam train.scheduler=cosine train.weight_decay=0 "summary=[64, 3, 32, 32]" seed=0'),
    ("flexconv/cifar10-njet", 0,
     'python run_experiment.py conv.type=SRF dataset=CIFAR10 device=cuda "net.block_width_factors=[1, 2, 1.5, 3, 2, 2]" net.dropout=0.2 net.dropout_in=0 net.no_blocks=7 net.no_hidden=38 net.norm=BatchNorm net.type=ResNet seed=0 train.augment=resnet train.batch_size=64 train.epochs=350 train.lr=0.01 train.mask_params_lr_factor=0.1 train.optimizer=Adam train.scheduler=cosine train.scheduler_params.warmup_epochs=5 train.weight_decay=1e-05'),
    ("flexconv/cifar10-ckcnn", 1,
     'python run_experiment.py conv.horizon=33 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=CKConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 kernel.input_scale=25.6 kernel.type=SIREN kernel.omega_0=30.0 kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.001 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 seed=1'),
    ("flexconv/cifar10-ckcnn-magnet", 1,
     'python run_experiment.py conv.horizon=33 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=CKConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 seed=1'),
    ("flexconv/cifar10-flexnet7-siren", 1,
     'python run_experiment.py conv.horizon=33 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=FlexConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 kernel.input_scale=25.6 kernel.type=SIREN kernel.omega_0=30.0 kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.001 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 seed=1'),
    ("flexconv/cifar10-flexnet7-gabor", 1,
     'python run_experiment.py conv.horizon=33 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=FlexConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 kernel.input_scale=25.6 kernel.type=Gabor kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 seed=1'),
    ("flexconv/imagenet32-flexnet5", 0,
     'python run_experiment.py conv.horizon=33 conv.type=FlexConv dataset=Imagenet32 dataset_params.from_cache=True dataset_params.in_ram=True dataset_params.root=<link-to-imagenet-32-raw-data> device=cuda kernel.input_scale=25.6 kernel.no_hidden=32 kernel.no_layers=3 kernel.type=MAGNet mask.dynamic_cropping=True mask.init_value=0.075 mask.temperature=15 mask.type=gaussian "net.block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]" net.dropout=0.2 net.dropout_in=0 net.no_blocks=5 net.no_hidden=22 net.norm=BatchNorm net.type=ResNet train.augment=resnet train.batch_size=2048 train.epochs=350 train.lr=0.01 train.mask_params_lr_factor=0.1 train.optimizer=Adam train.report_top5_acc=True train.scheduler=cosine train.scheduler_params.warmup_epochs=5 train.weight_decay=1e-05 seed=0'),
    ("flexconv/cifar10-resnet32", 0,
     'python run_experiment.py train.augment=resnet train.batch_size=64 device=cuda dataset=CIFAR10 train.epochs=350 train.lr=0.001 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 net.type=CIFARResNet32 train.optimizer=Adam train.scheduler=cosine train.weight_decay=0 seed=0'),
    ("flexconv/mnist-flexnet7", 1,
     'python run_experiment.py conv.horizon=29 train.augment=None train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=FlexConv dataset=MNIST device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=350 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 "summary=[64, 1, 28, 28]" seed=1'),
    ("flexconv/stl10-flexnet7", 3,
     'python run_experiment.py conv.horizon=97 train.augment=None train.batch_size=256 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=FlexConv dataset=STL10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 summary="[64, 3, 96, 96]" seed=3'),
    ("flexconv/crossres-cifar10-flexnet7-gabor-reg", 0,
     'python run_crossres.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" device=cuda conv.type=FlexConv dataset=CIFAR10 net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 cross_res.finetune_epochs=100 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam kernel.regularize=True kernel.regularize_params.factor=0.1 train.scheduler=cosine cross_res.source_res=16 cross_res.target_res=32 train.weight_decay=0 kernel.regularize_params.target=gabor kernel.regularize_params.method=together kernel.regularize_params.gauss_stddevs=2.0 seed=0'),
    ("flexconv/crossres-cifar10-flexnet7-gabor-mask-reg", 0,
     'python run_crossres.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" device=cuda conv.type=FlexConv dataset=CIFAR10 net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 cross_res.finetune_epochs=100 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam kernel.regularize=True kernel.regularize_params.factor=0.1 train.scheduler=cosine cross_res.source_res=16 cross_res.target_res=32 train.weight_decay=0 kernel.regularize_params.target=gabor+mask kernel.regularize_params.method=together kernel.regularize_params.gauss_stddevs=2.0 seed=0'),
    ("flexconv/crossres-cifar10-resnet44", 0,
     'python run_crossres.py train.augment=resnet train.batch_size=64 device=cuda dataset=CIFAR10 train.epochs=100 cross_res.finetune_epochs=100 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 net.type=CIFARResNet44 train.optimizer=Adam train.scheduler=cosine cross_res.source_res=16 cross_res.target_res=32 train.weight_decay=0 seed=0'),
    ("flexconv/crossres-cifar10-conv3", 0,
     'python run_crossres.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" conv.type=Conv conv.horizon=3 dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 cross_res.finetune_epochs=100 cross_res.source_res=16 cross_res.target_res=32 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam train.scheduler=cosine train.weight_decay=0 "summary=[64, 3, 32, 32]" seed=0'),
    ("flexconv/crossres-cifar10-conv33", 0,
     'python run_crossres.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" conv.type=Conv conv.horizon=33 dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 cross_res.finetune_epochs=100 cross_res.source_res=16 cross_res.target_res=32 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam train.scheduler=cosine train.weight_decay=0 "summary=[64, 3, 32, 32]" seed=0'),
    ("flexconv/crossres-cifar10-njet", 0,
     'python run_crossres.py comment=c10-cres-srf7 conv.type=SRF dataset=CIFAR10 device=cuda "net.block_width_factors=[1, 2, 1.5, 3, 2, 2]" net.dropout=0.2 net.dropout_in=0 net.no_blocks=7 net.no_hidden=38 net.norm=BatchNorm net.type=ResNet train.augment=resnet train.batch_size=64 train.epochs=100 train.lr=0.01 train.mask_params_lr_factor=0.1 train.optimizer=Adam train.scheduler=cosine train.scheduler_params.warmup_epochs=5 train.weight_decay=1e-05 cross_res.source_res=16 cross_res.target_res=32 cross_res.finetune_epochs=100 seed=0'),
    ("flexconv/crossres-cifar10-ckcnn", 0,
     'python run_crossres.py cross_res.source_res=16 cross_res.target_res=32 cross_res.finetune_epochs=100 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=CKConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 kernel.input_scale=25.6 kernel.type=SIREN kernel.omega_0=30.0 kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 seed=0'),
    ("flexconv/crossres-cifar10-flexnet7-siren", 0,
     'python run_crossres.py cross_res.source_res=16 cross_res.target_res=32 cross_res.finetune_epochs=100 train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" net.no_blocks=7 net.no_hidden=24 conv.type=FlexConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 kernel.input_scale=25.6 kernel.type=SIREN kernel.omega_0=30.0 kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine train.weight_decay=0 seed=0'),
    ("flexconv/crossres-cifar10-flexnet7", 0,
     'python run_crossres.py train.augment=resnet train.batch_size=64 "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]" conv.type=FlexConv dataset=CIFAR10 device=cuda net.dropout=0.2 net.dropout_in=0 mask.dynamic_cropping=True train.epochs=100 cross_res.finetune_epochs=100 kernel.input_scale=25.6 kernel.type=MAGNet kernel.no_hidden=32 kernel.no_layers=3 train.lr=0.01 train.scheduler_params.warmup_epochs=5 train.mask_params_lr_factor=0.1 mask.init_value=0.075 mask.temperature=15.0 mask.type=gaussian net.type=ResNet net.no_blocks=7 net.no_hidden=24 net.norm=BatchNorm train.optimizer=Adam kernel.regularize=False train.scheduler=cosine cross_res.source_res=16 cross_res.target_res=32 train.weight_decay=0 seed=0'),
    ("flexconv/crossres-imagenetk-flexnet5-gabor-reg", 0,
     'python run_crossres.py cross_res.source_res=16 cross_res.target_res=32 conv.type=FlexConv dataset=Imagenet-k dataset_params.from_cache=True dataset_params.in_ram=True dataset_params.root=/home/nfs/robertjanbruin/CV-Datasets/Imagenet-k/raw-data device=cuda kernel.input_scale=25.6 kernel.no_hidden=32 kernel.no_layers=3 kernel.regularize=True kernel.regularize_params.factor=0.1 kernel.regularize_params.gauss_stddevs=2 kernel.type=MAGNet mask.dynamic_cropping=True mask.init_value=0.075 mask.temperature=15 mask.type=gaussian "net.block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]" net.dropout=0.2 net.dropout_in=0 net.no_blocks=5 net.no_hidden=22 net.norm=BatchNorm net.type=ResNet train.augment=resnet train.batch_size=2048 train.epochs=100 cross_res.finetune_epochs=100 train.lr=0.01 train.mask_params_lr_factor=0.1 train.optimizer=Adam train.report_top5_acc=True train.scheduler=cosine train.scheduler_params.warmup_epochs=5 train.weight_decay=1e-05 kernel.regularize_params.target=gabor kernel.regularize_params.method=together seed=0'),
    ("flexconv/crossres-imagenetk-resnet32", 0,
     'python run_crossres.py cross_res.source_res=16 cross_res.target_res=32 dataset=Imagenet-k dataset_params.from_cache=True dataset_params.in_ram=True dataset_params.root=/home/nfs/robertjanbruin/CV-Datasets/Imagenet-k/raw-data device=cuda net.type=CIFARResNet32 train.augment=resnet train.batch_size=2048 train.epochs=100 cross_res.finetune_epochs=100 train.lr=0.01 train.optimizer=Adam train.report_top5_acc=True train.scheduler=cosine train.scheduler_params.warmup_epochs=5 train.weight_decay=1e-05 seed=0'),
    ("flexconv/crossres-imagenetk-njet", 0,
     'python run_crossres.py cross_res.source_res=16 cross_res.target_res=32 conv.type=SRF dataset=Imagenet-k dataset_params.from_cache=True dataset_params.in_ram=True dataset_params.root=/home/nfs/robertjanbruin/CV-Datasets/Imagenet-k/raw-data device=cuda "net.block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]" net.dropout=0.2 net.dropout_in=0 net.no_blocks=5 net.no_hidden=32 net.norm=BatchNorm net.type=ResNet train.augment=resnet train.batch_size=2048 train.epochs=100 cross_res.finetune_epochs=100 train.lr=0.01 train.mask_params_lr_factor=0.1 train.optimizer=Adam train.report_top5_acc=True train.scheduler=cosine train.scheduler_params.warmup_epochs=5 train.weight_decay=1e-05 seed=0'),
]

FLEXNET7 = SEED_COMMANDS[0][2]


@pytest.mark.parametrize("preset,seed,command", SEED_COMMANDS, ids=[f"{i:02d}-{p.split('/')[1]}" for i, (p, _, _) in enumerate(SEED_COMMANDS)])
def test_every_seed_command_maps_to_its_preset(preset, seed, command):
    translation = translate(shlex.split(command))
    assert translation.command == "train"
    assert translation.preset == preset
    # The preset reproduces the command: nothing to override but the seed.
    assert translation.overrides == [f"seed={seed}"]


def test_print_shows_a_command_that_loads(capsys):
    command = SEED_COMMANDS[21][2]  # ImageNet-k, FlexNet-5 with the aliasing regularizer
    assert main(["legacy", "--print", "--", *shlex.split(command)]) == 0
    captured = capsys.readouterr()
    argv = shlex.split(captured.out.strip())
    assert argv[:4] == ["python", "-m", "raysys", "train"]
    cfg = load_config(argv[4], argv[5:])
    assert cfg.cross_res.source_res == 16 and cfg.cross_res.target_res == 32
    assert cfg.flexconv.kernel.regularize and cfg.flexconv.kernel.regularize_params.target == "gabor"
    assert cfg.train.batch_size == 2048 and cfg.data.name == "imagenet32"
    # What is not carried over is said, by name; so are the renamed groups.
    assert "dataset_params.root=" in captured.err and "device=cuda ignored" in captured.err
    assert "the original's conv.*, kernel.*, mask.*, net.* are raysys's flexconv.conv.*, flexconv.kernel.*" in captured.err


def test_differences_from_the_preset_become_overrides():
    command = FLEXNET7.replace("train.lr=0.01", "train.lr=0.005").replace("seed=0", "seed=4")
    command = command.replace(" train.mask_params_lr_factor=0.1", "") + " conv.use_fft=True"
    translation = translate(shlex.split(command))
    assert translation.preset == "flexconv/cifar10-flexnet7"
    # A flag left out takes the original's default (mask_params_lr_factor 1.0); use_fft=True is
    # the original's rule (FFT only for kernels above 50), conv.use_fft=auto being the preset's.
    assert sorted(translation.overrides) == sorted([
        "train.lr=0.005", "train.mask_params_lr_factor=1.0", "flexconv.conv.fft_min_kernel=51", "seed=4",
    ])
    cfg = load_config(translation.preset, translation.overrides)
    assert cfg.train.lr == 0.005 and cfg.seed == 4 and cfg.flexconv.conv.fft_min_kernel == 51


def test_the_closest_preset_is_chosen():
    # FlexNet-7 on CIFAR-10 with SIREN kernels but lr 0.01: the SIREN preset plus one override.
    command = SEED_COMMANDS[6][2].replace("train.lr=0.001", "train.lr=0.01")
    translation = translate(shlex.split(command))
    assert translation.preset == "flexconv/cifar10-flexnet7-siren"
    assert translation.overrides == ["train.lr=0.01", "seed=1"]


def test_hydra_values_are_typed_like_hydra():
    flags = parse_flags("run_experiment.py", [
        "train.weight_decay=1e-05", "net.block_width_factors=[1, 2, 1.5]", "train.augment=None",
        "mask.dynamic_cropping=True", "summary=[64, 3, 96, 96]", "comment=c10-cres-srf7",
    ])
    assert flags == {
        "train.weight_decay": 1e-05, "net.block_width_factors": [1, 2, 1.5], "train.augment": "None",
        "mask.dynamic_cropping": True, "summary": [64, 3, 96, 96], "comment": "c10-cres-srf7",
    }
    assert parse_override("train.weight_decay=1.0e-05")[1] == 1e-05


@pytest.mark.parametrize("flag,message", [
    ("train.do=False", "unsupported flag train.do=False"),
    ("pretrained=True", "unsupported flag pretrained=True"),
    ("conv.padding=valid", "unsupported flag conv.padding=valid"),
    ("dataset_params.permuted=True", "unsupported flag dataset_params.permuted=True"),
    ("net.type=OriginalResNet18", "unsupported flag net.type=OriginalResNet18"),
    ("train.scheduler=plateau", "unsupported flag train.scheduler=plateau"),
    ("cross_res.source_res=16", "unsupported flag cross_res.source_res=16"),
    ("wandb.team=x", "unknown flag 'wandb.team'"),
    ("--multirun", "unsupported argument '--multirun'"),
])
def test_unsupported_flags_are_refused_by_name(flag, message):
    key = flag.split("=", 1)[0]
    args = [a for a in shlex.split(FLEXNET7) if a.split("=", 1)[0] != key] + [flag]
    with pytest.raises(ConfigError, match="legacy run_experiment.py: " + message):
        translate(args)


def test_a_flag_given_twice_is_refused():
    with pytest.raises(ConfigError, match="flag 'seed' is given twice"):
        translate(shlex.split(FLEXNET7) + ["seed=3"])


def test_refusal_is_one_line_on_the_cli(capsys):
    assert main(["legacy", "--print", "--", *shlex.split(FLEXNET7), "train.mask_l2_norm=0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.mask_l2_norm=0.1" in err[0]


def test_crossres_needs_both_resolutions():
    command = SEED_COMMANDS[14][2].replace(" cross_res.target_res=32", "")
    with pytest.raises(ConfigError, match="cross_res.target_res"):
        translate(shlex.split(command))
