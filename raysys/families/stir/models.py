"""The 11 models of "Just a Matter of Scale?" (taltstidl/scale-equivariant-cnn).

All share one skeleton: two convolutions (16 then 32 channels, k×k, ReLU),
a global max pool and ``Linear(32, classes)``; they differ in how the
convolutions handle scale. Each is a factory with plain keyword arguments,
registered as ``stir_<name>`` (``model.name``), so it builds without a config:
``create_model("stir_disco", in_channels=1, num_classes=36, kernel_size=7)``.
Keywords: ``in_channels``, ``num_classes``, ``kernel_size`` (3, 7, 11, 15;
paper 7), and where used ``interpolation`` (nearest, bilinear, bicubic, area;
paper bicubic), ``size`` (input side, default 64) and ``basis_file`` (disco:
the original's DISCO proxy ``.pt``). The adapter (:func:`config_adapter`)
takes them from ``stir.kernel_size``, ``stir.interpolation``, the input and
``stir.disco_basis``. Module attribute names follow the original, so its
``state_dict`` keys match (original checkpoints load, see SteerableBasis).

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
``stir_disco``         SESN, DISCO basis, scales 1..2 (computed, or the original's file; layers/sesn.py)
=====================  ======================================================

Scale-pooling models keep the chosen scales of the last batch in
``model.pool1.indices`` / ``model.pool2.indices``; :meth:`StirNet.stages`
returns the two post-ReLU feature maps the original's equivariance
evaluation compares.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from raysys.errors import ConfigError, one_of
from raysys.models.registry import InputSpec, input_kwargs, register_model
from raysys.families.stir.layers.baselines import KanazawaConv2d, XuConv2d, gaussian_pyramid
from raysys.families.stir.layers.sesn import SESConvHH, SESConvZ2H, SteerableBasis, build_basis, load_proxy_basis
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


def check_kernel_size(kernel_size: int) -> int:
    """``kernel_size`` if it is one of the paper's sizes, else ConfigError (key ``stir.kernel_size``)."""
    k = int(kernel_size)
    if k not in KERNEL_SIZES:
        raise ConfigError(f"stir.kernel_size={k} (keyword kernel_size) is not one of {list(KERNEL_SIZES)}")
    return k


def check_interpolation(interpolation: str) -> str:
    """``interpolation`` if SiConv2d knows it, else ConfigError (key ``stir.interpolation``)."""
    mode = str(interpolation)
    if mode not in INTERPOLATIONS:
        raise ConfigError(f"stir.interpolation: {one_of(mode, INTERPOLATIONS)}")
    return mode


# ---- factories: plain keyword arguments, no config (create_model("stir_disco", in_channels=1, ...)) ----------


def standard(in_channels: int, num_classes: int, kernel_size: int = 7) -> StirNet:
    """Two plain valid convolutions."""
    k = check_kernel_size(kernel_size)
    return StirNet(nn.Conv2d(in_channels, WIDTHS[0], k), nn.Conv2d(WIDTHS[0], WIDTHS[1], k), num_classes)


def scale_pool_factory(mode: str) -> Callable[..., StirNet]:
    """The SiConv2d + ScalePool(``mode``) model; ``size`` is the input's side (it fixes the scale counts)."""

    def factory(in_channels: int, num_classes: int, kernel_size: int = 7, interpolation: str = "bicubic",
                size: int = 64) -> StirNet:
        k, interp = check_kernel_size(kernel_size), check_interpolation(interpolation)
        s1, s2 = scale_counts(size, k)
        return StirNet(SiConv2d(in_channels, WIDTHS[0], s1, k, interp), SiConv2d(WIDTHS[0], WIDTHS[1], s2, k, interp),
                       num_classes, ScalePool(mode), ScalePool(mode))

    factory.__name__ = f"{mode}_pool"
    factory.__doc__ = f"SiConv2d + ScalePool({mode!r}) after each convolution."
    return factory


def conv3d(in_channels: int, num_classes: int, kernel_size: int = 7, interpolation: str = "bicubic",
           size: int = 64) -> StirNet:
    """SiConv2d, then Conv3d(k, k, k) over (scale, h, w)."""
    k, interp = check_kernel_size(kernel_size), check_interpolation(interpolation)
    s1, _ = scale_counts(size, k)
    return StirNet(SiConv2d(in_channels, WIDTHS[0], s1, k, interp), nn.Conv3d(WIDTHS[0], WIDTHS[1], (k, k, k)),
                   num_classes)


def ensemble(in_channels: int, num_classes: int, kernel_size: int = 7) -> EnsembleNet:
    return EnsembleNet(in_channels, num_classes, check_kernel_size(kernel_size))


def spatial_transform(in_channels: int, num_classes: int, kernel_size: int = 7, size: int = 64) -> SpatialTransformNet:
    return SpatialTransformNet(in_channels, num_classes, check_kernel_size(kernel_size), size)


def xu(in_channels: int, num_classes: int, kernel_size: int = 7) -> XuNet:
    return XuNet(in_channels, num_classes, check_kernel_size(kernel_size))


def kanazawa(in_channels: int, num_classes: int, kernel_size: int = 7) -> StirNet:
    """Input rescaled by 1.26^e (e = -2..3) around each convolution."""
    k = check_kernel_size(kernel_size)
    return StirNet(KanazawaConv2d(in_channels, WIDTHS[0], k, KANAZAWA_SCALES),
                   KanazawaConv2d(WIDTHS[0], WIDTHS[1], k, KANAZAWA_SCALES), num_classes)


def _sesn(in_channels: int, num_classes: int, kernel_size: int, settings: dict, proxy=None) -> StirNet:
    k = check_kernel_size(kernel_size)
    widest = (k - 1) * int(max(settings["scales"])) + 1
    if settings["basis_type"] == "disco_b" and widest > SESN_SIZE:
        raise ConfigError(f"stir.kernel_size={k}: the DISCO basis dilates k×k to {widest}×{widest} at scale "
                          f"{max(settings['scales'])}, more than its {SESN_SIZE}×{SESN_SIZE} kernel; use 3 or 7")
    options = {key: value for key, value in settings.items() if key not in ("basis_type", "scales")}
    if proxy is not None:
        options["proxy"] = proxy
    basis = build_basis(settings["basis_type"], SESN_SIZE, settings["scales"], k, **options)
    # one basis module per layer, as the original's: a checkpoint may hold a different basis for each
    return StirNet(SESConvZ2H(in_channels, WIDTHS[0], basis),
                   SESConvHH(WIDTHS[0], WIDTHS[1], 1, SteerableBasis(basis.basis.clone())), num_classes)


def hermite(in_channels: int, num_classes: int, kernel_size: int = 7) -> StirNet:
    """SESN with the Hermite basis at scales 2..4."""
    return _sesn(in_channels, num_classes, kernel_size, HERMITE)


def disco(in_channels: int, num_classes: int, kernel_size: int = 7, basis_file: Optional[str] = None) -> StirNet:
    """SESN with the DISCO basis at scales 1..2: computed, or the original's proxy file at ``basis_file``."""
    proxy = None
    if basis_file:
        proxy = load_proxy_basis(basis_file, SESN_SIZE, DISCO["scales"], check_kernel_size(kernel_size))
    return _sesn(in_channels, num_classes, kernel_size, DISCO, proxy)


# the original's --model names, in its order -> factory
FACTORIES: Dict[str, Callable[..., nn.Module]] = {
    "standard": standard,
    "pixel_pool": scale_pool_factory("pixel"),
    "slice_pool": scale_pool_factory("slice"),
    "energy_pool": scale_pool_factory("energy"),
    "conv3d": conv3d,
    "ensemble": ensemble,
    "spatial_transform": spatial_transform,
    "xu": xu,
    "kanazawa": kanazawa,
    "hermite": hermite,
    "disco": disco,
}
MODEL_NAMES = tuple(FACTORIES)

# factory keyword -> its value from a run's config (the ``stir`` section) and input
CONFIG_KWARGS: Dict[str, Callable[[Any, InputSpec], Any]] = {
    "kernel_size": lambda cfg, spec: int(cfg.stir.kernel_size),
    "interpolation": lambda cfg, spec: str(cfg.stir.interpolation),
    "size": lambda cfg, spec: int(spec.size),
    "basis_file": lambda cfg, spec: str(OmegaConf.select(cfg, "stir.disco_basis", default="") or "") or None,
}


def config_adapter(factory: Callable[..., nn.Module]) -> Callable[[Any, InputSpec], Dict[str, Any]]:
    """The adapter giving ``factory`` its inputs, classes and every :data:`CONFIG_KWARGS` key it accepts."""
    wanted = [name for name in inspect.signature(factory).parameters if name in CONFIG_KWARGS]

    def adapter(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
        kwargs = input_kwargs(cfg, spec)
        kwargs.update({name: CONFIG_KWARGS[name](cfg, spec) for name in wanted})
        return kwargs

    return adapter


for _name, _factory in FACTORIES.items():
    register_model(f"stir_{_name}", adapter=config_adapter(_factory))(_factory)
