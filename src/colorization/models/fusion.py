"""``fusion``: the joint global/local network of Iizuka, Simo-Serra & Ishikawa, "Let there be
Color!" (SIGGRAPH 2016).

* Low-level features (shared): six 3x3 conv + BN + ReLU layers, three of them stride 2
  (``w, 2w, 2w, 4w, 4w, 8w`` channels; stride 8).
* Mid-level features: two 3x3 convs (``8w, 4w``) on the low-level features.
* Global features: the low-level features are bilinearly resized to a fixed
  ``global_size // 8`` square (28x28 for the paper's 224 px global input), then four 3x3 convs
  (two of stride 2) and three fully connected layers give a ``4w``-d vector (256-d by default).
  Because of the resize any input size works. (The paper runs the shared low-level network a
  second time on the image rescaled to 224x224; resizing the features instead saves that pass.)
* Fusion layer: the global vector is broadcast to every mid-level position, concatenated and
  mixed by a 1x1 conv + BN + ReLU (``4w`` channels).
* Colorization network: conv, upsample x2, two convs, upsample x2, conv, then a 1x1 prediction
  conv at half the input resolution, upsampled bilinearly to the input size (as in the paper).
  Regression output uses ``tanh`` by default (the paper's sigmoid, for ab normalised to [-1, 1]).
* Optional classification head (``num_classes > 0``): two FC layers on the ``8w``-d global
  features, returned by :meth:`Fusion.forward_with_aux`.

Fully connected layers have no BatchNorm, so batch size 1 trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from colorization.models.blocks import (
    ConvNormAct,
    OutputHead,
    check_input,
    check_positive,
    init_weights,
    resolve_out_activation,
    upsample2x,
    upsample_to,
)
from colorization.models.registry import register_model

__all__ = ["FusionConfig", "Fusion"]


@dataclass(frozen=True)
class FusionConfig:
    """Hyper-parameters of :class:`Fusion`.

    out_channels: 2 (normalised ab regression) or Q (bin logits).
    width: channel multiplier (64 in the paper: low-level 64..512, global vector 256).
    global_size: input-pixel side the global path works at (multiple of 32; 224 in the paper);
        the low-level features are resized to ``global_size // 8`` before the global convs.
    num_classes: size of the auxiliary scene-classification head (0 = none).
    out_activation: "auto" (= "tanh" for regression), "none" or "tanh".
    """

    out_channels: int = 2
    width: int = 64
    global_size: int = 224
    num_classes: int = 0
    out_activation: str = "auto"

    def __post_init__(self) -> None:
        check_positive("FusionConfig", out_channels=self.out_channels, width=self.width, global_size=self.global_size)
        if self.global_size % 32:
            raise ValueError(f"FusionConfig.global_size must be a multiple of 32, got {self.global_size}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"FusionConfig.num_classes must be an integer >= 0, got {self.num_classes!r}")
        resolve_out_activation("FusionConfig", self.out_activation, self.out_channels, "tanh")

    @classmethod
    def tiny(cls) -> FusionConfig:
        """A small config for unit tests (with a 5-class auxiliary head)."""
        return cls(width=8, global_size=64, num_classes=5)


@register_model(
    "fusion",
    FusionConfig,
    description="low-level + mid-level + global (FC) paths, fusion layer, upsample + conv decoder; optional class head",
    paper="Iizuka, Simo-Serra & Ishikawa 2016, Let there be Color! (SIGGRAPH)",
)
class Fusion(nn.Module):
    """``forward(l_norm (B,1,H,W) in [-1,1]) -> (B, out_channels, H, W)`` float32;
    ``forward_with_aux`` also returns class logits ``(B, num_classes)``.
    H and W must be multiples of ``stride = 8``."""

    stride = 8

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        w = config.width
        self.low = nn.Sequential(
            ConvNormAct(1, w, stride=2),
            ConvNormAct(w, 2 * w),
            ConvNormAct(2 * w, 2 * w, stride=2),
            ConvNormAct(2 * w, 4 * w),
            ConvNormAct(4 * w, 4 * w, stride=2),
            ConvNormAct(4 * w, 8 * w),
        )
        self.mid = nn.Sequential(ConvNormAct(8 * w, 8 * w), ConvNormAct(8 * w, 4 * w))
        self.global_feature_size = config.global_size // 8
        self.global_convs = nn.Sequential(
            ConvNormAct(8 * w, 8 * w, stride=2),
            ConvNormAct(8 * w, 8 * w),
            ConvNormAct(8 * w, 8 * w, stride=2),
            ConvNormAct(8 * w, 8 * w),
        )
        g = config.global_size // 32
        self.global_fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * w * g * g, 16 * w),
            nn.ReLU(inplace=True),
            nn.Linear(16 * w, 8 * w),
            nn.ReLU(inplace=True),
        )
        self.global_out = nn.Sequential(nn.Linear(8 * w, 4 * w), nn.ReLU(inplace=True))
        self.classifier: nn.Module | None = None
        if config.num_classes > 0:
            self.classifier = nn.Sequential(
                nn.Linear(8 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, config.num_classes)
            )
        self.fuse = ConvNormAct(8 * w, 4 * w, kernel_size=1)
        self.color1 = ConvNormAct(4 * w, 2 * w)
        self.color2 = nn.Sequential(ConvNormAct(2 * w, w), ConvNormAct(w, w))
        self.color3 = ConvNormAct(w, max(w // 2, 1))
        act = resolve_out_activation("FusionConfig", config.out_activation, config.out_channels, "tanh")
        self.head = OutputHead(max(w // 2, 1), config.out_channels, act)
        init_weights(self)
        if self.classifier is not None:
            # Last FC of the classifier: default init keeps the initial logits small.
            self.classifier[-1].reset_parameters()

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (output (B, out_channels, H, W), global 8w-d features (B, 8w))."""
        check_input(x, 1, self.stride, self.model_name)
        size = x.shape[-2:]
        low = self.low(x)
        mid = self.mid(low)
        s = self.global_feature_size
        glob = self.global_fc(self.global_convs(upsample_to(low, (s, s))))
        vec = self.global_out(glob)
        vec_map = vec[:, :, None, None].expand(-1, -1, mid.shape[-2], mid.shape[-1])
        y = self.fuse(torch.cat([mid, vec_map], dim=1))
        y = self.color1(y)
        y = self.color2(upsample2x(y))
        y = self.color3(upsample2x(y))
        return upsample_to(self.head(y), size), glob

    def forward(self, x: Tensor) -> Tensor:
        return self._features(x)[0]

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(out (B, out_channels, H, W), class_logits (B, num_classes))``; needs num_classes > 0."""
        if self.classifier is None:
            raise ValueError("fusion: forward_with_aux needs a classification head (config num_classes > 0)")
        out, glob = self._features(x)
        return out, self.classifier(glob)
