"""``resnet_unet``: ResNet-18/34 encoder + U-Net decoder (bilinear upsampling + conv).

Encoder: the standard ResNet of He et al. (2016) with basic blocks and the full stage layout
([2, 2, 2, 2] for ResNet-18, [3, 4, 6, 3] for ResNet-34), adapted to a 1-channel input (normalised
L): 7x7/2 stem conv, 3x3/2 max-pool, four stages of ``width * (1, 2, 4, 8)`` channels at strides
4, 8, 16, 32. Trained from scratch (no pretrained weights are used in this package).

Decoder: :class:`~colorization.models.blocks.UNetDecoder` with skips from stage 3, 2, 1, the stem
and the input L itself, i.e. five upsample + conv stages from stride 32 back to full resolution,
then a 1x1 prediction conv. Regression output is linear by default (no activation).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from colorization.models.blocks import (
    BasicBlock,
    OutputHead,
    UNetDecoder,
    check_choice,
    check_input,
    check_positive,
    init_weights,
    resolve_out_activation,
)
from colorization.models.registry import register_model

__all__ = ["ResNetUNetConfig", "ResNetEncoder", "ResNetUNet", "RESNET_LAYERS"]

RESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@dataclass(frozen=True)
class ResNetUNetConfig:
    """Hyper-parameters of :class:`ResNetUNet`.

    out_channels: 2 (normalised ab regression) or Q (bin logits).
    depth: 18 or 34 (ResNet variant; full stage layout).
    width: base channels (64 in the paper; stages use width * 1, 2, 4, 8).
    decoder_channels: output channels of the 5 decoder stages (strides 16, 8, 4, 2, 1);
        None = ``(4w, 2w, w, w, max(w // 2, 1))``.
    out_activation: "auto" (= "none"), "none" or "tanh" (regression only).
    """

    out_channels: int = 2
    depth: int = 18
    width: int = 64
    decoder_channels: tuple[int, ...] | None = None
    out_activation: str = "auto"

    def __post_init__(self) -> None:
        check_positive("ResNetUNetConfig", out_channels=self.out_channels, width=self.width)
        check_choice("ResNetUNetConfig", "depth", self.depth, tuple(RESNET_LAYERS))
        if self.decoder_channels is not None:
            dc = tuple(self.decoder_channels)
            if len(dc) != 5:
                raise ValueError(f"ResNetUNetConfig.decoder_channels needs 5 entries, got {dc!r}")
            check_positive("ResNetUNetConfig", **{f"decoder_channels[{i}]": c for i, c in enumerate(dc)})
            object.__setattr__(self, "decoder_channels", dc)
        resolve_out_activation("ResNetUNetConfig", self.out_activation, self.out_channels, "none")

    @classmethod
    def tiny(cls) -> ResNetUNetConfig:
        """A small config for unit tests."""
        return cls(width=8)

    def resolved_decoder_channels(self) -> tuple[int, ...]:
        w = self.width
        return self.decoder_channels or (4 * w, 2 * w, w, w, max(w // 2, 1))


class ResNetEncoder(nn.Module):
    """ResNet-18/34 feature extractor for a ``in_ch``-channel image.

    ``forward(x (B, in_ch, H, W)) -> [stem (B, w, H/2, W/2), layer1 (B, w, H/4, W/4),
    layer2 (B, 2w, H/8), layer3 (B, 4w, H/16), layer4 (B, 8w, H/32)]``.
    """

    def __init__(self, depth: int = 18, width: int = 64, in_ch: int = 1) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_ch, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers = RESNET_LAYERS[depth]
        chans = (w, 2 * w, 4 * w, 8 * w)
        self.layers = nn.ModuleList()
        in_c = w
        for i, (n_blocks, out_c) in enumerate(zip(layers, chans)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_c, out_c, stride)] + [BasicBlock(out_c, out_c) for _ in range(n_blocks - 1)]
            self.layers.append(nn.Sequential(*blocks))
            in_c = out_c
        self.channels = (w, *chans)
        self.strides = (2, 4, 8, 16, 32)

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        feats = [stem]
        x = self.maxpool(stem)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


@register_model(
    "resnet_unet",
    ResNetUNetConfig,
    description="ResNet-18/34 encoder + U-Net decoder (bilinear upsample + conv, concat skips)",
    paper="He et al. 2016 (ResNet); Ronneberger et al. 2015 (U-Net)",
)
class ResNetUNet(nn.Module):
    """``forward(l_norm (B,1,H,W) in [-1,1]) -> (B, out_channels, H, W)`` float32.
    H and W must be multiples of ``stride = 32``."""

    stride = 32

    def __init__(self, config: ResNetUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ResNetEncoder(config.depth, config.width, in_ch=1)
        self.decoder = UNetDecoder(
            (1, *self.encoder.channels),
            (1, *self.encoder.strides),
            config.resolved_decoder_channels(),
        )
        act = resolve_out_activation("ResNetUNetConfig", config.out_activation, config.out_channels, "none")
        self.head = OutputHead(self.decoder.out_channels, config.out_channels, act)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, 1, self.stride, self.model_name)
        return self.head(self.decoder([x, *self.encoder(x)]))
