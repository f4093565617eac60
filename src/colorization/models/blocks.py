"""Shared building blocks: conv/norm/activation units, residual blocks, attention gates and the
U-Net decoder (bilinear upsampling + conv, concatenated skips) used by several networks.

Reusing the decoder with another encoder (e.g. ``effnet_unet``)::

    enc_channels = [1, 16, 24, 40, 112, 320]   # input L, then encoder stages, shallow -> deep
    enc_strides  = [1, 2, 4, 8, 16, 32]
    decoder = UNetDecoder(enc_channels, enc_strides, decoder_channels=(256, 128, 64, 32, 16))
    head = OutputHead(decoder.out_channels, out_channels=2, activation="none")
    feats = [l_norm, *encoder_features(l_norm)]        # same order as enc_channels
    out = head(decoder(feats))                         # (B, 2, H, W)

All blocks take and return float tensors ``(B, C, H, W)``; they are dtype/device agnostic and
export to ONNX (bilinear resizing uses ``align_corners=False``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "NORMS",
    "ACTIVATIONS",
    "OUT_ACTIVATIONS",
    "make_norm",
    "make_act",
    "ConvNormAct",
    "DoubleConv",
    "BasicBlock",
    "AttentionGate",
    "UpBlock",
    "UNetDecoder",
    "OutputHead",
    "resolve_out_activation",
    "check_positive",
    "check_choice",
    "check_input",
    "is_tracing",
    "init_weights",
    "upsample_to",
    "upsample2x",
]

NORMS: tuple[str, ...] = ("batch", "instance", "none")
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "none")
OUT_ACTIVATIONS: tuple[str, ...] = ("auto", "none", "tanh")


# --------------------------------------------------------------------------------------------
# Validation helpers (used by the config dataclasses' __post_init__)
# --------------------------------------------------------------------------------------------


def check_positive(owner: str, **values: int | None) -> None:
    """Raise ``ValueError`` naming ``owner.field`` when an int field is not >= 1 (None allowed)."""
    for field, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}.{field} must be a positive integer, got {value!r}")


def check_choice(owner: str, field: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ValueError`` naming ``owner.field`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        valid = ", ".join(map(repr, choices))
        raise ValueError(f"{owner}.{field} must be one of {valid}, got {value!r}")


def is_tracing() -> bool:
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return True
    # torch.onnx loads on first attribute access (~25 ms); an export has always imported it already
    onnx = sys.modules.get("torch.onnx")
    return bool(onnx is not None and onnx.is_in_onnx_export())


def check_input(x: Tensor, channels: int, stride: int, model: str) -> None:
    """Check a network input: float ``(B, channels, H, W)`` with H, W multiples of ``stride``.

    Skipped while tracing, compiling or exporting (ONNX), so that symbolic shapes stay free.
    """
    if is_tracing():
        return
    if not isinstance(x, Tensor):
        raise TypeError(f"{model}: input must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{model}: input must be a floating point tensor, got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{model}: input must have shape (B, {channels}, H, W), got {tuple(x.shape)}"
        )
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % stride or w % stride or h == 0 or w == 0:
        raise ValueError(
            f"{model}: input height and width must be positive multiples of {stride}, got {h}x{w}"
        )


def resolve_out_activation(owner: str, value: str, out_channels: int, regression_default: str) -> str:
    """Resolve the ``out_activation`` config field to ``"none"`` or ``"tanh"``.

    ``"auto"`` means ``regression_default`` for regression heads (``out_channels == 2``) and
    ``"none"`` for classification logits. ``"tanh"`` on a classification head is rejected.
    """
    check_choice(owner, "out_activation", value, OUT_ACTIVATIONS)
    if value == "auto":
        return regression_default if out_channels == 2 else "none"
    if value == "tanh" and out_channels != 2:
        raise ValueError(
            f"{owner}.out_activation='tanh' needs a regression head (out_channels=2); "
            f"classification logits (out_channels={out_channels}) take no activation"
        )
    return value


# --------------------------------------------------------------------------------------------
# Basic units
# --------------------------------------------------------------------------------------------


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"batch"`` -> BatchNorm2d, ``"instance"`` -> InstanceNorm2d (affine), ``"none"`` -> Identity."""
    check_choice("norm", "kind", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def make_act(kind: str) -> nn.Module:
    """``"relu"``, ``"leaky_relu"`` (slope 0.2) or ``"none"``."""
    check_choice("activation", "kind", kind, ACTIVATIONS)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    return nn.Identity()


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation. "Same" padding (``dilation * (k - 1) // 2``), so the output
    is ``(B, out_ch, ceil(H / stride), ceil(W / stride))`` for odd kernels. The conv has a bias
    only when there is no norm layer."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=norm == "none",
            ),
            make_norm(norm, out_ch),
            make_act(act),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3 ConvNormAct (the U-Net unit): ``(B, in_ch, H, W) -> (B, out_ch, H, W)``."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch", act: str = "relu") -> None:
        super().__init__(
            ConvNormAct(in_ch, out_ch, norm=norm, act=act),
            ConvNormAct(out_ch, out_ch, norm=norm, act=act),
        )


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 conv+BN, identity or 1x1-conv shortcut.

    ``(B, in_ch, H, W) -> (B, out_ch, H / stride, W / stride)``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, "Attention U-Net").

    ``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` with 1x1 convs + BatchNorm, and the gated skip is
    ``x * alpha``. Here the gating signal ``g`` is the decoder feature already upsampled to the
    skip's resolution (the common single-resolution variant of the paper's gate).

    Args: x_ch: skip channels. g_ch: gating channels. inter_ch: channels of the joint space.
    Forward: ``x (B, x_ch, H, W)``, ``g (B, g_ch, H, W)`` -> ``(B, x_ch, H, W)``; the coefficients
    of the last call are kept in ``.last_alpha`` ``(B, 1, H, W)`` in ``[0, 1]`` (detached) for
    visualisation.
    """

    def __init__(self, x_ch: int, g_ch: int, inter_ch: int) -> None:
        super().__init__()
        self.w_x = nn.Sequential(nn.Conv2d(x_ch, inter_ch, 1, bias=False), nn.BatchNorm2d(inter_ch))
        self.w_g = nn.Sequential(nn.Conv2d(g_ch, inter_ch, 1, bias=True), nn.BatchNorm2d(inter_ch))
        self.psi = nn.Sequential(nn.Conv2d(inter_ch, 1, 1, bias=True), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)
        self.last_alpha: Tensor | None = None

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        alpha = self.psi(self.relu(self.w_x(x) + self.w_g(g)))
        self.last_alpha = alpha.detach()
        return x * alpha


def upsample_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``(B, C, *size)`` (``align_corners=False``).

    Pass ``size`` straight from another tensor's ``.shape[-2:]`` (no ``int()``), so that ONNX
    export keeps the sizes dynamic.
    """
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample2x(x: Tensor) -> Tensor:
    """Bilinear x2 upsampling ``(B, C, h, w) -> (B, C, 2h, 2w)`` (``align_corners=False``)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class UpBlock(nn.Module):
    """One decoder stage: bilinear upsample -> 3x3 conv -> [gate skip] -> concat skip -> DoubleConv.

    Without a skip (``skip_ch=0``) the input is upsampled by 2 and refined by the DoubleConv.
    Forward: ``x (B, in_ch, h, w)``, ``skip (B, skip_ch, H, W) | None`` -> ``(B, out_ch, H, W)``
    (``H, W = 2h, 2w`` without a skip).
    """

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        out_ch: int,
        attention: bool = False,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.skip_ch = skip_ch
        self.up_conv = ConvNormAct(in_ch, out_ch, norm=norm, act=act)
        self.gate = AttentionGate(skip_ch, out_ch, max(skip_ch // 2, 1)) if attention and skip_ch else None
        self.conv = DoubleConv(out_ch + skip_ch, out_ch, norm=norm, act=act)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if (skip is None) != (self.skip_ch == 0):
            raise ValueError(f"UpBlock expects {'a' if self.skip_ch else 'no'} skip tensor")
        up = self.up_conv(upsample2x(x) if skip is None else upsample_to(x, skip.shape[-2:]))
        if skip is None:
            return self.conv(up)
        if self.gate is not None:
            skip = self.gate(skip, up)
        return self.conv(torch.cat([up, skip], dim=1))


class UNetDecoder(nn.Module):
    """U-Net decoder of bilinear upsampling + conv stages with concatenated skips, down to the
    input resolution (stride 1). No transposed convolutions.

    Args:
        encoder_channels: channel count of each encoder feature, ordered shallow (high resolution)
            to deep. The last entry is the bottleneck the decoder starts from; every other entry is
            a skip connection. Include the network input itself (stride 1) to get a full-resolution
            skip.
        encoder_strides: stride of each feature relative to the network input: powers of two,
            strictly increasing, same length as ``encoder_channels``.
        decoder_channels: output channels of each stage. There is one stage per skip
            (``len(encoder_channels) - 1``, deep to shallow) followed by ``log2(encoder_strides[0])``
            skip-less stages (upsample x2 + DoubleConv) that bring the shallowest stride to 1.
            Default (None): each skip stage outputs ``max(skip channels, min_channels)`` and each
            extra stage halves the previous count (not below ``min_channels``).
        attention: gate every skip with an :class:`AttentionGate` (Attention U-Net).
        norm, act: normalisation / activation of all convs (see :func:`make_norm`, :func:`make_act`).
        min_channels: floor for the default ``decoder_channels``.

    Forward: ``features`` - a sequence of tensors ``(B, encoder_channels[i], H / s_i, W / s_i)``
    in the same order -> ``(B, out_channels, H, W)`` where ``out_channels = decoder_channels[-1]``.
    Skips are matched by their actual size, so it works for any H, W that the encoder accepts.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_strides: Sequence[int],
        decoder_channels: Sequence[int] | None = None,
        *,
        attention: bool = False,
        norm: str = "batch",
        act: str = "relu",
        min_channels: int = 16,
    ) -> None:
        super().__init__()
        enc_ch = [int(c) for c in encoder_channels]
        strides = [int(s) for s in encoder_strides]
        if len(enc_ch) < 1 or len(enc_ch) != len(strides):
            raise ValueError("UNetDecoder: encoder_channels and encoder_strides must have the same non-zero length")
        if any(c < 1 for c in enc_ch):
            raise ValueError(f"UNetDecoder: encoder_channels must be positive, got {enc_ch}")
        if any(s < 1 or s & (s - 1) for s in strides) or any(b <= a for a, b in zip(strides, strides[1:])):
            raise ValueError(
                f"UNetDecoder: encoder_strides must be strictly increasing powers of two, got {strides}"
            )
        n_skip = len(enc_ch) - 1
        n_extra = int(math.log2(strides[0]))
        if decoder_channels is None:
            dec: list[int] = [max(c, min_channels) for c in reversed(enc_ch[:-1])]
            prev = dec[-1] if dec else enc_ch[-1]
            for _ in range(n_extra):
                prev = max(prev // 2, min_channels)
                dec.append(prev)
        else:
            dec = [int(c) for c in decoder_channels]
        if len(dec) != n_skip + n_extra or len(dec) == 0 or any(c < 1 for c in dec):
            raise ValueError(
                f"UNetDecoder: decoder_channels needs {n_skip + n_extra} positive entries "
                f"({n_skip} skip stages + {n_extra} stages to stride 1), got {dec}"
            )
        self.encoder_channels = tuple(enc_ch)
        self.encoder_strides = tuple(strides)
        self.decoder_channels = tuple(dec)
        self.out_channels = dec[-1]
        self.stages = nn.ModuleList()
        in_ch = enc_ch[-1]
        skips = list(reversed(enc_ch[:-1])) + [0] * n_extra
        for out_ch, skip_ch in zip(dec, skips):
            self.stages.append(UpBlock(in_ch, skip_ch, out_ch, attention=attention, norm=norm, act=act))
            in_ch = out_ch

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        if len(features) != len(self.encoder_channels):
            raise ValueError(
                f"UNetDecoder expects {len(self.encoder_channels)} feature maps, got {len(features)}"
            )
        x = features[-1]
        skips = list(reversed(features[:-1]))
        for i, stage in enumerate(self.stages):
            x = stage(x, skips[i] if i < len(skips) else None)
        return x


class OutputHead(nn.Module):
    """1x1 conv to ``out_channels`` followed by ``activation`` ("none" or "tanh").

    ``(B, in_ch, H, W) -> (B, out_channels, H, W)``; with tanh the values lie in ``(-1, 1)``.
    """

    def __init__(self, in_ch: int, out_channels: int, activation: str = "none") -> None:
        super().__init__()
        check_choice("OutputHead", "activation", activation, ("none", "tanh"))
        self.conv = nn.Conv2d(in_ch, out_channels, 1)
        self.activation = activation

    def reset_parameters(self) -> None:
        """PyTorch's default conv init (small outputs at the start of training)."""
        self.conv.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return torch.tanh(x) if self.activation == "tanh" else x


def init_weights(module: nn.Module) -> None:
    """He (Kaiming) normal init for convs/linears (fan_out, ReLU), zero biases, unit norm scales.

    :class:`OutputHead` layers are reset to PyTorch's default init afterwards, so that a fresh
    regression head predicts values near 0 (gray) instead of large ones.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, OutputHead):
            m.reset_parameters()
