"""The original's published weights (``--pretrained``): which file each ``-a`` name loads, and its URL.

As the original's model functions (e.g. antialiased_cnns/resnet.py:287-300): ``<arch>_lpf4``
loads the fine-tuned file ``<arch>_lpf4_finetune-<hash>.pth`` unless ``--force_nonfinetuned``;
other filter sizes (and ``_lpf4`` with it) load ``<arch>_lpf<N>-<hash>.pth``, published for a few
architectures only. A plain ``<arch>`` loads torchvision's ``IMAGENET1K_V1`` weights
(``torchvision.models.<arch>(pretrained=True)``, main.py:219-220). The hash in each name is the
sha256 prefix torch.hub checks (``check_hash=True``).
"""
from __future__ import annotations

import re

from raysys.errors import ConfigError
from raysys.models.torchvision_models import baseline_weights_url

WEIGHTS_URL = "https://antialiased-cnns.s3.us-east-2.amazonaws.com/weights_v0.1/"

# File names of the original's model_urls (antialiased_cnns/{alexnet,vgg,resnet,densenet,mobilenet}.py).
PUBLISHED_FILES = tuple("""
alexnet_lpf2-da8aca74 alexnet_lpf3-f9bbc410 alexnet_lpf4-0114fe25 alexnet_lpf5-4fa3706a alexnet_lpf4_finetune-20598a7a
vgg16_bn_lpf2-2c2052a8 vgg16_bn_lpf3-1782878a vgg16_bn_lpf4-a1c3559b vgg16_bn_lpf5-c500b52f
vgg16_lpf2-60268e0c vgg16_lpf3-e9b0ce42 vgg16_lpf4-de9267ac vgg16_lpf5-1391f70c
vgg11_bn_lpf4_finetune-5d60b5e4 vgg11_lpf4_finetune-35eab449 vgg13_bn_lpf4_finetune-45e2a72f vgg13_lpf4_finetune-d8ff02c4
vgg16_bn_lpf4_finetune-1dd798d1 vgg16_lpf4_finetune-79c9dff7 vgg19_bn_lpf4_finetune-d0114293 vgg19_lpf4_finetune-7ab2cf45
resnet18_lpf2-6e2ee76f resnet18_lpf3-449351b9 resnet18_lpf4-8c77af40 resnet18_lpf5-c1eed0a1
resnet34_lpf2-4707aed9 resnet34_lpf3-16aa6c48 resnet34_lpf4-55747267 resnet34_lpf5-85283561
resnet50_lpf2-f0f7589d resnet50_lpf3-a4e868d2 resnet50_lpf4-994b528f resnet50_lpf5-9953c9ad
resnet101_lpf2-3d00941d resnet101_lpf3-928f1444 resnet101_lpf4-f8a116ff resnet101_lpf5-1f3745af
resnet18_lpf4_finetune-8cc58f59 resnet34_lpf4_finetune-db622952 resnet50_lpf4_finetune-cad66808
resnet101_lpf4_finetune-9280acb0 resnet152_lpf4_finetune-7f67d9ae resnext50_32x4d_lpf4_finetune-9106e549
resnext101_32x8d_lpf4_finetune-8f13a25d wide_resnet50_2_lpf4_finetune-02a183f7 wide_resnet101_2_lpf4_finetune-da4eae04
densenet121_lpf2-7da7d4cd densenet121_lpf3-0f267ad8 densenet121_lpf4-edeaab00 densenet121_lpf5-ebc7880c
densenet121_lpf4_finetune-eceaa619 densenet161_lpf4_finetune-a5e0f328 densenet169_lpf4_finetune-992131e6
densenet201_lpf4_finetune-736979b2
mobilenet_v2_lpf2-f4379012 mobilenet_v2_lpf3-23b2e2ee mobilenet_v2_lpf4-2e0b9cb9 mobilenet_v2_lpf5-ab8fe968
mobilenet_v2_lpf4_finetune-7eed94b1
""".split())
_BY_KEY = {name.rsplit("-", 1)[0]: f"{name}.pth" for name in PUBLISHED_FILES}
_LPF = re.compile(r"^(?P<base>.+)_lpf(?P<size>\d+)$")


def published_key(arch: str, finetuned: bool = True) -> str:
    """The original's ``model_urls`` key that ``-a arch --pretrained`` loads."""
    match = _LPF.match(arch)
    return f"{arch}_finetune" if match and match.group("size") == "4" and finetuned else arch


def published_file(arch: str, finetuned: bool = True) -> str:
    """The file name (``<key>-<hash>.pth``) of ``arch``'s published antialiased weights; ConfigError if none."""
    key = published_key(arch, finetuned)
    if key not in _BY_KEY:
        published = sorted(k for k in _BY_KEY if k.startswith(f"{_LPF.match(arch).group('base')}_lpf")) if _LPF.match(arch) else []
        raise ConfigError(
            f"main.py -a {arch} --pretrained: the original publishes no {key} weights"
            + (f" (published: {', '.join(published)})" if published else "") + "; pass --weights PATH"
        )
    return _BY_KEY[key]


def pretrained_url(arch: str, finetuned: bool = True) -> str:
    """Where ``-a arch --pretrained`` fetches its weights: the original's S3 file, or torchvision's for a baseline."""
    if _LPF.match(arch):
        return WEIGHTS_URL + published_file(arch, finetuned)

    return baseline_weights_url(arch)
