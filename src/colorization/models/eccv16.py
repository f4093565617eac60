"""``eccv16``: the classification network of Zhang, Isola & Efros, "Colorful Image Colorization"
(ECCV 2016).

A VGG-styled stack of 8 conv blocks, each 2-3 3x3 convs with ReLU, blocks 1-7 ending in
BatchNorm. Resolution is reduced by strided convs (no pooling) in blocks 1-3 (stride 8); blocks 5
and 6 use dilation 2; block 8 starts with a 4x4 transposed conv (x2), so the prediction is made at
1/4 of the input resolution. A 1x1 conv gives ``out_channels`` maps (Q ab-bin logits by default),
which ``forward`` upsamples bilinearly to the input size.

Channels (``width`` = 64 in the paper): block1 w, block2 2w, block3 4w, blocks 4-7 8w, block8 4w.

``out_channels=None`` (the default) means "one logit per ab bin": it is resolved to
``colorization.color.num_ab_bins()`` when the network is built, and the built model's ``.config``
holds the resolved integer (so exported configs are explicit). ``out_channels=2`` turns the network
into a regression model (linear output).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from colorization import color
from colorization.models.blocks import (
    OutputHead,
    check_input,
    check_positive,
    init_weights,
    resolve_out_activation,
    upsample_to,
)
from colorization.models.registry import register_model

__all__ = ["ECCV16Config", "ECCV16"]


@dataclass(frozen=True)
class ECCV16Config:
    """Hyper-parameters of :class:`ECCV16`.

    out_channels: None (= ``color.num_ab_bins()``, resolved at build time), Q, or 2 (regression).
    width: channel multiplier (64 in the paper).
    out_activation: "auto" (= "none"), "none" or "tanh" (regression only).
    """

    out_channels: int | None = None
    width: int = 64
    out_activation: str = "auto"

    def __post_init__(self) -> None:
        check_positive("ECCV16Config", out_channels=self.out_channels, width=self.width)
        if self.out_channels is not None:
            resolve_out_activation("ECCV16Config", self.out_activation, self.out_channels, "none")

    @classmethod
    def tiny(cls) -> ECCV16Config:
        """A small config for unit tests (regression head; no gamut file needed)."""
        return cls(width=8, out_channels=2)


def _block(in_ch: int, out_ch: int, n: int, stride_last: int = 1, dilation: int = 1, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        stride = stride_last if i == n - 1 else 1
        layers += [
            nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    if bn:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


@register_model(
    "eccv16",
    ECCV16Config,
    description="VGG-style 8-block classification net over Q ab bins (strided, dilated convs), predicts at 1/4 res",
    paper="Zhang, Isola & Efros 2016, Colorful Image Colorization (ECCV)",
)
class ECCV16(nn.Module):
    """``forward(l_norm (B,1,H,W) in [-1,1]) -> (B, out_channels, H, W)`` float32 (logits over ab
    bins by default). H and W must be multiples of ``stride = 8``."""

    stride = 8

    def __init__(self, config: ECCV16Config) -> None:
        super().__init__()
        if config.out_channels is None:
            # Read the gamut on the CPU even when the caller builds under another default device
            # (e.g. ``with torch.device("meta")``), so that color's cached tensors stay real.
            with torch.device("cpu"):
                num_bins = color.num_ab_bins()
            config = dataclasses.replace(config, out_channels=num_bins)
        self.config = config
        w = config.width
        self.block1 = _block(1, w, 2, stride_last=2)
        self.block2 = _block(w, 2 * w, 2, stride_last=2)
        self.block3 = _block(2 * w, 4 * w, 3, stride_last=2)
        self.block4 = _block(4 * w, 8 * w, 3)
        self.block5 = _block(8 * w, 8 * w, 3, dilation=2)
        self.block6 = _block(8 * w, 8 * w, 3, dilation=2)
        self.block7 = _block(8 * w, 8 * w, 3)
        self.block8 = nn.Sequential(
            nn.ConvTranspose2d(8 * w, 4 * w, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        act = resolve_out_activation("ECCV16Config", config.out_activation, config.out_channels, "none")
        self.head = OutputHead(4 * w, config.out_channels, act)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, 1, self.stride, self.model_name)
        size = x.shape[-2:]
        for block in (
            self.block1, self.block2, self.block3, self.block4, self.block5, self.block6, self.block7, self.block8
        ):
            x = block(x)
        return upsample_to(self.head(x), size)
