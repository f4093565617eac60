"""``patchgan``: the 70x70 PatchGAN discriminator of pix2pix (Isola et al., "Image-to-Image
Translation with Conditional Adversarial Networks", CVPR 2017).

C64-C128-C256-C512 (``Ck`` = 4x4 conv with k filters, norm, LeakyReLU 0.2; the first without norm;
strides 2, 2, 2, 1) followed by a 4x4 conv to one channel: each output logit sees a 70x70 patch
of the input. Input: normalised L and ab concatenated, ``(B, 3, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from colorization.models.blocks import check_choice, check_input, check_positive, init_weights, is_tracing
from colorization.models.registry import register_model

__all__ = ["PatchGANConfig", "PatchGAN"]


@dataclass(frozen=True)
class PatchGANConfig:
    """Hyper-parameters of :class:`PatchGAN`.

    in_channels: 3 (L + ab, normalised).
    width: filters of the first layer (64 in the paper; doubled per layer up to 8x).
    n_layers: number of stride-2 layers (3 gives the 70x70 receptive field).
    norm: "batch" (pix2pix default) or "instance".
    """

    in_channels: int = 3
    width: int = 64
    n_layers: int = 3
    norm: str = "batch"

    def __post_init__(self) -> None:
        check_positive("PatchGANConfig", in_channels=self.in_channels, width=self.width, n_layers=self.n_layers)
        check_choice("PatchGANConfig", "norm", self.norm, ("batch", "instance"))

    @classmethod
    def tiny(cls) -> PatchGANConfig:
        """A small config for unit tests."""
        return cls(width=8)


@register_model(
    "patchgan",
    PatchGANConfig,
    kind="discriminator",
    description="70x70 PatchGAN discriminator (C64-C128-C256-C512, 4x4 convs, LeakyReLU 0.2) on L+ab",
    paper="Isola et al. 2017, pix2pix (CVPR)",
)
class PatchGAN(nn.Module):
    """``forward(lab_norm (B, 3, H, W)) -> patch logits (B, 1, H/2**n - 2, W/2**n - 2)`` float32
    (30x30 for 256x256 input with n_layers=3). H and W must be multiples of ``stride = 2**n_layers``
    and at least ``3 * stride``."""

    def __init__(self, config: PatchGANConfig) -> None:
        super().__init__()
        self.config = config
        self.stride = 2**config.n_layers
        w = config.width
        norm_layer = nn.BatchNorm2d if config.norm == "batch" else (lambda c: nn.InstanceNorm2d(c, affine=True))
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = w
        for i in range(1, config.n_layers + 1):
            out = w * min(2**i, 8)
            stride = 2 if i < config.n_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False),
                norm_layer(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        init_weights(self)
        for m in self.modules():  # pix2pix init: N(0, 0.02) convs, N(1, 0.02) norm scales
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                nn.init.normal_(m.weight, 1.0, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.config.in_channels, self.stride, self.model_name)
        if not is_tracing() and (x.shape[-2] < 3 * self.stride or x.shape[-1] < 3 * self.stride):
            raise ValueError(
                f"{self.model_name}: input must be at least {3 * self.stride}x{3 * self.stride}, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        return self.net(x)
