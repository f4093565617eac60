"""``patchgan``: the 70x70 PatchGAN discriminator of pix2pix (Isola et al., "Image-to-Image
Translation with Conditional Adversarial Networks", CVPR 2017).

C64-C128-C256-C512 (``Ck`` = 4x4 conv with k filters, norm, LeakyReLU 0.2; the first without norm;
strides 2, 2, 2, 1) followed by a 4x4 conv to one channel: each output logit sees a 70x70 patch
of the input. Input: normalised L and ab concatenated, ``(B, 3, H, W)``: a *conditional* critic,
which judges the colours together with the lightness they were painted on.

Two options make it the critic of the realism stage (:mod:`colorization.train.realism`):
``norm="none"`` (no normalisation; BatchNorm would let the critic compare the statistics of a real
batch with a fake one instead of judging each image) and ``spectral_norm=True`` (every conv's
weight divided by its largest singular value, estimated by one power iteration per training
forward: Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018),
which bounds the critic's Lipschitz constant and keeps its gradients to the generator tame.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from colorization.models.blocks import check_choice, check_input, check_positive, init_weights, is_tracing
from colorization.models.registry import register_model

__all__ = ["PatchGANConfig", "PatchGAN"]


@dataclass(frozen=True)
class PatchGANConfig:
    """Hyper-parameters of :class:`PatchGAN`.

    in_channels: 3 (L + ab, normalised).
    width: filters of the first layer (64 in the paper; doubled per layer up to 8x).
    n_layers: number of stride-2 layers (3 gives the 70x70 receptive field).
    norm: "batch" (pix2pix default), "instance" or "none".
    spectral_norm: spectral normalisation of every conv (module docs).
    """

    in_channels: int = 3
    width: int = 64
    n_layers: int = 3
    norm: str = "batch"
    spectral_norm: bool = False

    def __post_init__(self) -> None:
        check_positive("PatchGANConfig", in_channels=self.in_channels, width=self.width, n_layers=self.n_layers)
        check_choice("PatchGANConfig", "norm", self.norm, ("batch", "instance", "none"))
        if not isinstance(self.spectral_norm, bool):
            raise TypeError(f"PatchGANConfig.spectral_norm must be a bool, got {self.spectral_norm!r}")

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
        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = w
        for i in range(1, config.n_layers + 1):
            out = w * min(2**i, 8)
            stride = 2 if i < config.n_layers else 1
            layers.append(nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=config.norm == "none"))
            if config.norm == "batch":
                layers.append(nn.BatchNorm2d(out))
            elif config.norm == "instance":
                layers.append(nn.InstanceNorm2d(out, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        init_weights(self)
        for m in self.modules():  # pix2pix init: N(0, 0.02) convs, N(1, 0.02) norm scales
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                nn.init.normal_(m.weight, 1.0, 0.02)
        if config.spectral_norm:
            for i, m in enumerate(self.net):
                if isinstance(m, nn.Conv2d):
                    self.net[i] = _spectral_norm(m)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.config.in_channels, self.stride, self.model_name)
        if not is_tracing() and (x.shape[-2] < 3 * self.stride or x.shape[-1] < 3 * self.stride):
            raise ValueError(
                f"{self.model_name}: input must be at least {3 * self.stride}x{3 * self.stride}, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        return self.net(x)
