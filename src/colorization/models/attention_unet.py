"""``attention_unet``: U-Net with additive attention gates on the skip connections
(Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", 2018).

Encoder: ``depth + 1`` levels of DoubleConv (3x3 conv + BN + ReLU, twice) separated by 2x2
max-pooling, with ``width * 2**i`` channels (64 ... 1024 for the paper-sized default). Decoder:
:class:`~colorization.models.blocks.UNetDecoder` with ``attention=True``: at each level the deeper
features are upsampled bilinearly and convolved, they gate the skip through an
:class:`~colorization.models.blocks.AttentionGate`, and the gated skip is concatenated before a
DoubleConv. A 1x1 conv predicts the output; regression output is linear by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from colorization.models.blocks import (
    NORMS,
    DoubleConv,
    OutputHead,
    UNetDecoder,
    check_choice,
    check_input,
    check_positive,
    init_weights,
    resolve_out_activation,
)
from colorization.models.registry import register_model

__all__ = ["AttentionUNetConfig", "AttentionUNet"]


@dataclass(frozen=True)
class AttentionUNetConfig:
    """Hyper-parameters of :class:`AttentionUNet`.

    out_channels: 2 (normalised ab regression) or Q (bin logits).
    width: channels of the first level (doubled at each of the ``depth`` poolings).
    depth: number of 2x2 max-poolings (stride ``2 ** depth``; 4 in the paper).
    norm: "batch", "instance" or "none".
    out_activation: "auto" (= "none"), "none" or "tanh" (regression only).
    """

    out_channels: int = 2
    width: int = 64
    depth: int = 4
    norm: str = "batch"
    out_activation: str = "auto"

    def __post_init__(self) -> None:
        check_positive("AttentionUNetConfig", out_channels=self.out_channels, width=self.width, depth=self.depth)
        check_choice("AttentionUNetConfig", "norm", self.norm, NORMS)
        resolve_out_activation("AttentionUNetConfig", self.out_activation, self.out_channels, "none")

    @classmethod
    def tiny(cls) -> AttentionUNetConfig:
        """A small config for unit tests."""
        return cls(width=8, depth=3)


@register_model(
    "attention_unet",
    AttentionUNetConfig,
    description="U-Net (max-pool encoder, bilinear upsample + conv decoder) with additive attention gates on skips",
    paper="Oktay et al. 2018, Attention U-Net",
)
class AttentionUNet(nn.Module):
    """``forward(l_norm (B,1,H,W) in [-1,1]) -> (B, out_channels, H, W)`` float32.
    H and W must be multiples of ``stride = 2 ** depth``."""

    def __init__(self, config: AttentionUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.stride = 2**config.depth
        chans = [config.width * 2**i for i in range(config.depth + 1)]
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList()
        in_ch = 1
        for c in chans:
            self.encoder.append(DoubleConv(in_ch, c, norm=config.norm))
            in_ch = c
        self.decoder = UNetDecoder(
            chans,
            [2**i for i in range(config.depth + 1)],
            list(reversed(chans[:-1])),
            attention=True,
            norm=config.norm,
        )
        act = resolve_out_activation("AttentionUNetConfig", config.out_activation, config.out_channels, "none")
        self.head = OutputHead(self.decoder.out_channels, config.out_channels, act)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, 1, self.stride, self.model_name)
        feats = []
        for i, level in enumerate(self.encoder):
            x = level(x if i == 0 else self.pool(x))
            feats.append(x)
        return self.head(self.decoder(feats))
