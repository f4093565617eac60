"""``baseline``: a plain convolutional encoder-decoder without skip connections.

The "simple CNN" of course reports on colorization: a stack of 3x3 conv + BatchNorm + ReLU layers
that halves the resolution ``depth`` times (each stage a stride-2 conv doubling the channels and a
conv), then mirrors it (each stage a x2 bilinear upsampling and two convs halving the channels)
and predicts ab with a 1x1 conv. Regression output uses
``tanh`` by default, so normalised ab lies in ``(-1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from colorization.models.blocks import (
    NORMS,
    ConvNormAct,
    OutputHead,
    check_choice,
    check_input,
    check_positive,
    init_weights,
    resolve_out_activation,
)
from colorization.models.registry import register_model

__all__ = ["BaselineConfig", "Baseline"]


@dataclass(frozen=True)
class BaselineConfig:
    """Hyper-parameters of :class:`Baseline`.

    out_channels: 2 (normalised ab regression) or Q (bin logits).
    width: channels of the first layer (doubled at every downsampling; 32 -> 256 at stride 8).
    depth: number of stride-2 downsamplings (the model's stride is ``2 ** depth``).
    norm: "batch", "instance" or "none".
    out_activation: "auto" (= "tanh" for regression, "none" for logits), "tanh" or "none".
    """

    out_channels: int = 2
    width: int = 32
    depth: int = 3
    norm: str = "batch"
    out_activation: str = "auto"

    def __post_init__(self) -> None:
        check_positive("BaselineConfig", out_channels=self.out_channels, width=self.width, depth=self.depth)
        check_choice("BaselineConfig", "norm", self.norm, NORMS)
        resolve_out_activation("BaselineConfig", self.out_activation, self.out_channels, "tanh")

    @classmethod
    def tiny(cls) -> BaselineConfig:
        """A small config for unit tests."""
        return cls(width=8, depth=2)


@register_model(
    "baseline",
    BaselineConfig,
    description="plain conv encoder-decoder (strided convs down, bilinear upsample + conv up), no skips",
    paper="course-report simple CNN baseline",
)
class Baseline(nn.Module):
    """Plain encoder-decoder. ``forward(l_norm (B,1,H,W) in [-1,1]) -> (B, out_channels, H, W)``
    float32; H and W must be multiples of ``stride = 2 ** depth``."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.stride = 2**config.depth
        w, norm = config.width, config.norm
        enc: list[nn.Module] = [ConvNormAct(1, w, norm=norm)]
        ch = w
        for _ in range(config.depth):
            enc += [ConvNormAct(ch, ch * 2, stride=2, norm=norm), ConvNormAct(ch * 2, ch * 2, norm=norm)]
            ch *= 2
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        for _ in range(config.depth):
            dec += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                ConvNormAct(ch, ch // 2, norm=norm),
                ConvNormAct(ch // 2, ch // 2, norm=norm),
            ]
            ch //= 2
        self.decoder = nn.Sequential(*dec)
        act = resolve_out_activation("BaselineConfig", config.out_activation, config.out_channels, "tanh")
        self.head = OutputHead(ch, config.out_channels, act)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, 1, self.stride, self.model_name)
        return self.head(self.decoder(self.encoder(x)))
