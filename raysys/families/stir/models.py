"""The 11 models of "Just a Matter of Scale?" (taltstidl/scale-equivariant-cnn).

All share one skeleton: two convolutions (16 then 32 channels, k×k, ReLU),
a global max pool and ``Linear(32, classes)``; they differ in how the
convolutions handle scale. Registered as ``stir_<name>`` (``model.name``);
``stir.kernel_size`` (3, 7, 11, 15; paper 7) and ``stir.interpolation``
(nearest, bilinear, bicubic, area; paper bicubic, used by the SiConv2d
models only) configure them. Module attribute names follow the original, so
its ``state_dict`` keys match.

=====================  ======================================================
``stir_standard``      plain valid convolutions
``stir_pixel_pool``    SiConv2d + ScalePool("pixel") after each convolution
``stir_slice_pool``    SiConv2d + ScalePool("slice")
``stir_energy_pool``   SiConv2d + ScalePool("energy")
``stir_conv3d``        SiConv2d, then Conv3d(k,k,k) over (scale, h, w)
``stir_ensemble``      shared same-padded CNN on a 3-level Gaussian pyramid, logits averaged
``stir_spatial_transform``  spatial transformer (identity init), then the standard CNN
``stir_xu``            Xu et al. multi-column kernels 3..11, column max at the end
``stir_kanazawa``      Kanazawa et al. input rescaling by 1.26^e, e = -2..3
``stir_hermite``       SESN, Hermite basis, scales 2..4
``stir_disco``         SESN, DISCO basis, scales 1..2 (computed, see raysys/families/stir/layers/sesn.py)
=====================  ======================================================

Scale-pooling models keep the chosen scales of the last batch in
``model.pool1.indices`` / ``model.pool2.indices``; :meth:`StirNet.stages`
returns the two post-ReLU feature maps the original's equivariance
evaluation compares.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError, one_of
from raysys.models.registry import InputSpec, register_model
from raysys.families.stir.layers.baselines import KanazawaConv2d, XuConv2d, gaussian_pyramid
from raysys.families.stir.layers.sesn import SESConvHH, SESConvZ2H, build_basis
from raysys.families.stir.layers.siconv import INTERPOLATIONS, GlobalMaxPool, ScalePool, SiConv2d, num_scales_for

KERNEL_SIZES = (3, 7, 11, 15)
WIDTHS = (16, 32)
XU_KERNEL_SIZES = (3, 5, 7, 9, 11)
KANAZAWA_SCALES = tuple(1.26**e for e in range(-2, 4))
SESN_SIZE = 15  # SESN kernels are 15×15 with an effective size of k
HERMITE = dict(basis_type="hermite_b", scales=(2.0, 2.52, 3.17, 4.0), mult=1.5, max_order=4)
DISCO = dict(basis_type="disco_b", scales=(1.0, 1.26, 1.59, 2.0), mult=1.9, max_order=4, min_scale=1.9)


def scale_counts(size: int, kernel_size: int) -> Tuple[int, int]:
    """SiConv2d scales of the two layers: (size-k)//2+1, then the same on the (size-k+1) map."""
    return num_scales_for(size, kernel_size), num_scales_for(size - kernel_size + 1, kernel_size)


class StirNet(nn.Module):
    """conv1 -> [pool1] -> ReLU -> conv2 -> [pool2] -> ReLU -> global max -> linear."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, num_classes: int,
                 pool1: nn.Module | None = None, pool2: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1
        if pool1 is not None:
            self.pool1 = pool1
        self.act1 = nn.ReLU()
        self.conv2 = conv2
        if pool2 is not None:
            self.pool2 = pool2
        self.act2 = nn.ReLU()
        self.global_pool = GlobalMaxPool()
        self.lin = nn.Linear(WIDTHS[1], num_classes)

    def _pool(self, name: str, x: torch.Tensor) -> torch.Tensor:
        pool = getattr(self, name, None)
        return x if pool is None else pool(x)

    def stages(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The feature maps after each convolution stage (``stage1``, ``stage2``)."""
        stage1 = self.act1(self._pool("pool1", self.conv1(x)))
        stage2 = self.act2(self._pool("pool2", self.conv2(stage1)))
        return {"stage1": stage1, "stage2": stage2}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.global_pool(self.stages(x)["stage2"]))


def plain_cnn(channels: int, num_classes: int, k: int, padding: int = 0) -> nn.Sequential:
    """The standard CNN as one Sequential (valid or same padding)."""
    return nn.Sequential(
        nn.Conv2d(channels, WIDTHS[0], k, padding=padding), nn.ReLU(),
        nn.Conv2d(WIDTHS[0], WIDTHS[1], k, padding=padding), nn.ReLU(),
        GlobalMaxPool(), nn.Linear(WIDTHS[1], num_classes),
    )


class EnsembleNet(nn.Module):
    """One same-padded CNN applied to a 3-level Gaussian pyramid; logits averaged."""

    def __init__(self, channels: int, num_classes: int, k: int, levels: int = 3):
        super().__init__()
        self.levels = levels
        self.base_model = plain_cnn(channels, num_classes, k, padding=(k - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.base_model(level) for level in gaussian_pyramid(x, self.levels)]).mean(dim=0)


class SpatialTransformNet(nn.Module):
    """A spatial transformer (affine, initialised to identity) in front of the standard CNN."""

    def __init__(self, channels: int, num_classes: int, k: int, size: int):
        super().__init__()
        self.base_model = plain_cnn(channels, num_classes, k)
        self.transform_model = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 16), nn.ReLU(), nn.Linear(16, 6),
        )
        nn.init.zeros_(self.transform_model[-1].weight)
        with torch.no_grad():
            self.transform_model[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.transform_model(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model(self.transform(x))


class XuNet(StirNet):
    """Xu et al.: 5 columns share each layer's kernel; the column max precedes the global pool."""

    def __init__(self, channels: int, num_classes: int, k: int):
        super().__init__(XuConv2d(channels, WIDTHS[0], k, XU_KERNEL_SIZES, initial=True),
                         XuConv2d(WIDTHS[0], WIDTHS[1], k, XU_KERNEL_SIZES), num_classes)
        self.kernel_sizes = XU_KERNEL_SIZES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        b, c, h, w = x.shape
        x = x.view(b, len(self.kernel_sizes), c // len(self.kernel_sizes), h, w).amax(dim=1)
        return self.lin(self.global_pool(x))


def _kernel_size(cfg) -> int:
    k = int(cfg.stir.kernel_size)
    if k not in KERNEL_SIZES:
        raise ConfigError(f"stir.kernel_size={k} is not one of {list(KERNEL_SIZES)}")
    return k


def _interpolation(cfg) -> str:
    mode = str(cfg.stir.interpolation)
    if mode not in INTERPOLATIONS:
        raise ConfigError(f"stir.interpolation: {one_of(mode, INTERPOLATIONS)}")
    return mode


def _scale_pool_net(mode: str):
    def build(cfg, spec: InputSpec) -> nn.Module:
        k, interp = _kernel_size(cfg), _interpolation(cfg)
        s1, s2 = scale_counts(spec.size, k)
        return StirNet(SiConv2d(spec.channels, WIDTHS[0], s1, k, interp), SiConv2d(WIDTHS[0], WIDTHS[1], s2, k, interp),
                       spec.num_classes, ScalePool(mode), ScalePool(mode))
    return build


def _standard(cfg, spec: InputSpec) -> nn.Module:
    k = _kernel_size(cfg)
    return StirNet(nn.Conv2d(spec.channels, WIDTHS[0], k), nn.Conv2d(WIDTHS[0], WIDTHS[1], k), spec.num_classes)


def _conv3d(cfg, spec: InputSpec) -> nn.Module:
    k, interp = _kernel_size(cfg), _interpolation(cfg)
    s1, _ = scale_counts(spec.size, k)
    return StirNet(SiConv2d(spec.channels, WIDTHS[0], s1, k, interp), nn.Conv3d(WIDTHS[0], WIDTHS[1], (k, k, k)),
                   spec.num_classes)


def _kanazawa(cfg, spec: InputSpec) -> nn.Module:
    k = _kernel_size(cfg)
    return StirNet(KanazawaConv2d(spec.channels, WIDTHS[0], k, KANAZAWA_SCALES),
                   KanazawaConv2d(WIDTHS[0], WIDTHS[1], k, KANAZAWA_SCALES), spec.num_classes)


def _sesn(settings: dict):
    def build(cfg, spec: InputSpec) -> nn.Module:
        k = _kernel_size(cfg)
        widest = (k - 1) * int(max(settings["scales"])) + 1
        if settings["basis_type"] == "disco_b" and widest > SESN_SIZE:
            raise ConfigError(f"stir.kernel_size={k}: the DISCO basis dilates k×k to {widest}×{widest} at scale "
                              f"{max(settings['scales'])}, more than its {SESN_SIZE}×{SESN_SIZE} kernel; use 3 or 7")
        options = {key: value for key, value in settings.items() if key not in ("basis_type", "scales")}
        basis = build_basis(settings["basis_type"], SESN_SIZE, settings["scales"], k, **options)
        return StirNet(SESConvZ2H(spec.channels, WIDTHS[0], basis), SESConvHH(WIDTHS[0], WIDTHS[1], 1, basis),
                       spec.num_classes)
    return build


BUILDERS: Dict[str, Callable[[object, InputSpec], nn.Module]] = {
    "standard": _standard,
    "pixel_pool": _scale_pool_net("pixel"),
    "slice_pool": _scale_pool_net("slice"),
    "energy_pool": _scale_pool_net("energy"),
    "conv3d": _conv3d,
    "ensemble": lambda cfg, spec: EnsembleNet(spec.channels, spec.num_classes, _kernel_size(cfg)),
    "spatial_transform": lambda cfg, spec: SpatialTransformNet(spec.channels, spec.num_classes, _kernel_size(cfg),
                                                               spec.size),
    "xu": lambda cfg, spec: XuNet(spec.channels, spec.num_classes, _kernel_size(cfg)),
    "kanazawa": _kanazawa,
    "hermite": _sesn(HERMITE),
    "disco": _sesn(DISCO),
}
MODEL_NAMES = tuple(BUILDERS)  # the original's --model names, in its order

for _name, _builder in BUILDERS.items():
    register_model(f"stir_{_name}")(_builder)
