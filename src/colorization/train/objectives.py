"""Training objectives: the trainer's only view of a model.

An objective is an :class:`torch.nn.Module` that wraps a registered generator (and, for GANs, a
discriminator) and turns a batch into losses (the base class :class:`Objective` lives in
:mod:`.objective_base`; the ``realism`` objective in :mod:`.realism`).  The trainer never looks inside the networks:

* ``objective.phases`` lists the optimisation phases run per step (one optimizer each);
* ``objective.phase_parameters(phase)`` gives that optimizer's parameters;
* ``objective(batch, phase)`` returns a dict of scalar tensors, ``"loss"`` being what
  ``backward()`` uses (the other entries are detached, for logging);
* ``objective.predict(l_norm)`` gives normalised ab for validation and export;
* ``objective.configure(**options)`` changes stage options (the loss of a regression objective,
  whether a GAN is in its adversarial phase, ...) between stages of a staged schedule.

Batches are dicts with ``"l"`` (float ``(B, 1, H, W)``, normalised L in ``[-1, 1]``), ``"ab"``
(float ``(B, 2, H, W)``, normalised ab, roughly ``[-1, 1]``) and optionally ``"label"`` (int64
``(B,)``, ``-1`` where the class is unknown).  All Lab maths goes through
:mod:`colorization.color`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization import color
from colorization.models.hint_map import simulate_hints
from colorization.train.adversarial import target_loss
from colorization.train.losses import ssim
from colorization.train.objective_base import CriticObjective, Objective
from colorization.train.objective_base import check_batch as _check_batch
from colorization.train.objective_base import soft_ce as _soft_ce

__all__ = [
    "REGRESSION_LOSSES",
    "GAN_LOSSES",
    "OBJECTIVES",
    "ADVERSARIAL_OBJECTIVES",
    "Objective",
    "RegressionObjective",
    "ClassificationObjective",
    "GANObjective",
    "HybridObjective",
    "build_objective",
    "objective_option_names",
]

REGRESSION_LOSSES = ("l1", "mse", "l1_ssim", "mse_ssim", "mse_l1")
GAN_LOSSES = ("lsgan", "vanilla")
OBJECTIVES = ("regression", "classification", "gan", "hybrid", "realism")
#: objectives that train a discriminator (critic) next to the generator
ADVERSARIAL_OBJECTIVES = ("gan", "realism")


class RegressionObjective(Objective):
    """Per-pixel regression of normalised ab.

    Losses (``pred``/``target`` are normalised ab ``(B, 2, H, W)``):

    * ``l1``: mean absolute error; ``mse``: mean squared error;
    * ``l1_ssim``: ``l1 + ssim_weight * (1 - SSIM)``; ``mse_ssim``: ``mse + ssim_weight * (1 - SSIM)``;
    * ``mse_l1``: ``mse + l1_weight * l1``.

    SSIM is computed on RGB (``ssim_space="rgb"``, the prediction combined with the input L through
    :func:`color.l_ab_to_rgb`, data range 1) or directly on normalised ab (``ssim_space="ab"``,
    data range 2).
    """

    head = "regression"
    stage_options = ("loss", "ssim_weight", "l1_weight", "ssim_space", "aux_weight")

    def __init__(
        self,
        generator: nn.Module,
        loss: str = "l1",
        ssim_weight: float = 1e-3,
        l1_weight: float = 1.0,
        ssim_space: str = "rgb",
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__(generator, aux_weight=aux_weight)
        self.loss = "l1"
        self.ssim_weight = 1e-3
        self.l1_weight = 1.0
        self.ssim_space = "rgb"
        self.configure(loss=loss, ssim_weight=ssim_weight, l1_weight=l1_weight, ssim_space=ssim_space)

    def _set_option(self, name: str, value: Any) -> None:
        if name == "loss":
            if value not in REGRESSION_LOSSES:
                raise ValueError(f"unknown regression loss {value!r}; valid: {list(REGRESSION_LOSSES)}")
            self.loss = str(value)
        elif name in ("ssim_weight", "l1_weight"):
            if float(value) < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, float(value))
        elif name == "ssim_space":
            if value not in ("rgb", "ab"):
                raise ValueError(f"ssim_space must be 'rgb' or 'ab', got {value!r}")
            self.ssim_space = str(value)
        else:
            super()._set_option(name, value)

    def forward(self, batch: Mapping[str, Tensor], phase: str = "main") -> dict[str, Tensor]:
        """Loss dict for one batch: ``loss`` plus detached components (``l1``, ``mse``, ``ssim``, ``aux``)."""
        if phase != "main":
            raise ValueError(f"unknown phase {phase!r} for RegressionObjective; phases: ('main',)")
        l_norm, target = _check_batch(batch)
        pred, aux = self._generate(batch, l_norm)
        if pred.shape != target.shape:
            raise ValueError(
                f"regression generator returned {tuple(pred.shape)} for target {tuple(target.shape)}; "
                "build it with out_channels=2"
            )
        pred = pred.float()
        target = target.float()
        logs: dict[str, Tensor] = {}
        l1 = (pred - target).abs().mean()
        mse = (pred - target).pow(2).mean()
        logs["l1"], logs["mse"] = l1.detach(), mse.detach()
        if self.loss == "l1":
            loss = l1
        elif self.loss == "mse":
            loss = mse
        elif self.loss == "mse_l1":
            loss = mse + self.l1_weight * l1
        else:  # l1_ssim / mse_ssim
            if self.ssim_space == "rgb":
                rgb_pred = color.l_ab_to_rgb(l_norm.float(), pred)
                s = ssim(rgb_pred, color.l_ab_to_rgb(l_norm.float(), target), data_range=1.0)
            else:
                s = ssim(pred, target, data_range=2.0)
            logs["ssim"] = s.detach()
            base = l1 if self.loss == "l1_ssim" else mse
            loss = base + self.ssim_weight * (1.0 - s)
        if aux is not None:
            logs["aux"] = aux.detach()
            loss = loss + self.aux_weight * aux
        logs["loss"] = loss
        return logs


class ClassificationObjective(Objective):
    """Colour classification over the quantised ab gamut (Zhang et al., ECCV 2016).

    The target is the soft encoding of the true ab over the ``Q`` bins (:func:`color.soft_encode`,
    ``k`` nearest bins, Gaussian ``sigma`` in Lab units); the loss is the cross-entropy with the
    predicted distribution, weighted per pixel by the rebalancing weight of the pixel's nearest bin
    (:func:`color.rebalance_weights`, mixing ``lam``) when ``rebalance`` is on.  Prediction decodes
    the logits by the annealed mean at ``temperature``.

    The generator must output ``Q = color.num_ab_bins()`` channels of logits at input resolution.
    """

    head = "classification"
    stage_options = ("rebalance", "aux_weight")

    def __init__(
        self,
        generator: nn.Module,
        rebalance: bool = True,
        lam: float = color.DEFAULT_REBALANCE_LAMBDA,
        sigma: float = color.DEFAULT_SIGMA,
        k: int = color.DEFAULT_K,
        temperature: float = color.DEFAULT_TEMPERATURE,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__(generator, aux_weight=aux_weight)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if sigma <= 0 or k < 1:
            raise ValueError(f"soft encoding needs sigma > 0 and k >= 1, got sigma={sigma}, k={k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.rebalance = bool(rebalance)
        self.lam = float(lam)
        self.sigma = float(sigma)
        self.k = int(k)
        self.temperature = float(temperature)
        self.num_bins = color.num_ab_bins()
        self.register_buffer("class_weights", color.rebalance_weights(lam=self.lam).float(), persistent=False)

    def _set_option(self, name: str, value: Any) -> None:
        if name == "rebalance":
            self.rebalance = bool(value)
        else:
            super()._set_option(name, value)

    def _check_logits(self, logits: Tensor, l_norm: Tensor) -> None:
        expected = (l_norm.shape[0], self.num_bins, *l_norm.shape[2:])
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"classification generator returned {tuple(logits.shape)}, expected {expected}; "
                f"build it with out_channels={self.num_bins} (color.num_ab_bins())"
            )

    def forward(self, batch: Mapping[str, Tensor], phase: str = "main") -> dict[str, Tensor]:
        """Loss dict: ``loss`` (weighted soft cross-entropy [+ aux]), ``ce`` (unweighted), ``aux``."""
        if phase != "main":
            raise ValueError(f"unknown phase {phase!r} for ClassificationObjective; phases: ('main',)")
        l_norm, ab_norm = _check_batch(batch)
        logits, aux = self._generate(batch, l_norm)
        self._check_logits(logits, l_norm)
        ce, loss = _soft_ce(logits, ab_norm, self.k, self.sigma, self.class_weights if self.rebalance else None)
        logs: dict[str, Tensor] = {"ce": ce}
        if aux is not None:
            logs["aux"] = aux.detach()
            loss = loss + self.aux_weight * aux
        logs["loss"] = loss
        return logs

    @torch.no_grad()
    def predict(self, l_norm: Tensor, generator: nn.Module | None = None) -> Tensor:
        """Normalised ab ``(B, 2, H, W)`` (float32) decoded by the annealed mean; ``generator``
        overrides ``self.generator`` (e.g. an EMA copy)."""
        logits = (self.generator if generator is None else generator)(l_norm).float()
        self._check_logits(logits, l_norm)
        return color.normalize_ab(color.annealed_mean(logits, T=self.temperature))


class GANObjective(CriticObjective):
    """Conditional GAN (pix2pix, Isola et al. 2017): generator + discriminator conditioned on L.

    The discriminator sees ``cat(l, ab)`` ``(B, 3, H, W)`` and returns a patch logit map.  Losses:

    * discriminator: ``0.5 * (D(real) -> 1  +  D(fake) -> 0)``;
    * generator: ``D(fake) -> 1  +  l1_weight * |fake - real|``;

    with least squares (``lsgan``) or binary cross-entropy on logits (``vanilla``).  With
    ``adversarial=False`` (an L1 pre-training stage) only the generator is trained, on plain L1.
    """

    head = "regression"
    stage_options = ("adversarial", "l1_weight", "aux_weight")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        gan_loss: str = "lsgan",
        l1_weight: float = 100.0,
        adversarial: bool = True,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__(generator, aux_weight=aux_weight)
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"unknown gan_loss {gan_loss!r}; valid: {list(GAN_LOSSES)}")
        self.discriminator = discriminator
        self.gan_loss = gan_loss
        self.l1_weight = 100.0
        self.adversarial = True
        self.configure(l1_weight=l1_weight, adversarial=adversarial)

    def _set_option(self, name: str, value: Any) -> None:
        if name == "adversarial":
            self.adversarial = bool(value)
        elif name == "l1_weight":
            if float(value) < 0:
                raise ValueError(f"l1_weight must be >= 0, got {value}")
            self.l1_weight = float(value)
        else:
            super()._set_option(name, value)

    @property
    def phases(self) -> tuple[str, ...]:
        return ("discriminator", "generator") if self.adversarial else ("generator",)

    def _adv(self, logits: Tensor, real: bool) -> Tensor:
        return target_loss(self.gan_loss, logits, real)

    def forward(self, batch: Mapping[str, Tensor], phase: str = "generator") -> dict[str, Tensor]:
        """Loss dict for ``phase``: ``"discriminator"`` (``loss``, ``d_real``, ``d_fake``) or
        ``"generator"`` (``loss``, ``g_adv``, ``l1``[, ``aux``])."""
        l_norm, ab_norm = _check_batch(batch)
        if phase == "discriminator":
            if not self.adversarial:
                raise ValueError("the discriminator phase is not active (adversarial=False)")
            with torch.no_grad():
                fake = self.generator(l_norm)
            d_real = self._adv(self.discriminator(torch.cat([l_norm, ab_norm.to(l_norm.dtype)], dim=1)), True)
            d_fake = self._adv(self.discriminator(torch.cat([l_norm, fake.to(l_norm.dtype)], dim=1)), False)
            loss = 0.5 * (d_real + d_fake)
            return {"loss": loss, "d_real": d_real.detach(), "d_fake": d_fake.detach()}
        if phase != "generator":
            raise ValueError(f"unknown phase {phase!r} for GANObjective; phases: {self.all_phases}")
        fake, aux = self._generate(batch, l_norm)
        if fake.shape != ab_norm.shape:
            raise ValueError(
                f"GAN generator returned {tuple(fake.shape)} for target {tuple(ab_norm.shape)}; "
                "build it with out_channels=2"
            )
        l1 = (fake.float() - ab_norm.float()).abs().mean()
        logs: dict[str, Tensor] = {"l1": l1.detach()}
        if self.adversarial:
            g_adv = self._adv(self.discriminator(torch.cat([l_norm, fake.to(l_norm.dtype)], dim=1)), True)
            logs["g_adv"] = g_adv.detach()
            loss = g_adv + self.l1_weight * l1
        else:
            loss = l1
        if aux is not None:
            logs["aux"] = aux.detach()
            loss = loss + self.aux_weight * aux
        logs["loss"] = loss
        return logs


class HybridObjective(Objective):
    """Regression + classification heads at the head stride, with simulated colour hints.

    For generators with ``forward_heads(l_norm, hints) -> {"regression", "logits"}`` at stride
    ``generator.head_stride`` (e.g. ``effnet_fpn``). The target is the ground-truth ab
    area-averaged to that stride. Loss: ``L1(regression, target) + ce_weight *`` the rebalanced
    soft-encoded cross-entropy of the logits (Zhang et al. 2016). When the generator accepts hints
    (``accepts_hints``), each batch gets hints sampled from the ground truth
    (:func:`colorization.models.hint_map.simulate_hints`; ``hint_p_none`` of the images get none), so one
    network learns automatic and user-guided colorization. Prediction is the generator's own
    decoding (``forward``).
    """

    head = "regression"
    stage_options = ("ce_weight", "aux_weight")

    def __init__(
        self,
        generator: nn.Module,
        ce_weight: float = 0.1,
        lam: float = color.DEFAULT_REBALANCE_LAMBDA,
        sigma: float = color.DEFAULT_SIGMA,
        k: int = color.DEFAULT_K,
        hint_p_none: float = 0.5,
        hint_mean_count: float = 8.0,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__(generator, aux_weight=aux_weight)
        if not hasattr(generator, "forward_heads"):
            raise ValueError(
                f"the 'hybrid' objective needs a generator with forward_heads (e.g. 'effnet_fpn'), "
                f"got {type(generator).__name__}"
            )
        if not 0.0 <= lam <= 1.0 or sigma <= 0 or k < 1:
            raise ValueError(f"need lam in [0, 1], sigma > 0, k >= 1; got lam={lam}, sigma={sigma}, k={k}")
        self.ce_weight = 0.1
        self.lam, self.sigma, self.k = float(lam), float(sigma), int(k)
        self.hint_p_none, self.hint_mean_count = float(hint_p_none), float(hint_mean_count)
        if not 0.0 <= self.hint_p_none <= 1.0 or self.hint_mean_count < 1.0:
            raise ValueError(
                f"need hint_p_none in [0, 1] and hint_mean_count >= 1, got {hint_p_none}, {hint_mean_count}"
            )
        self.register_buffer("class_weights", color.rebalance_weights(lam=self.lam).float(), persistent=False)
        self.configure(ce_weight=ce_weight)

    def _set_option(self, name: str, value: Any) -> None:
        if name == "ce_weight":
            if float(value) < 0:
                raise ValueError(f"ce_weight must be >= 0, got {value}")
            self.ce_weight = float(value)
        else:
            super()._set_option(name, value)

    def forward(self, batch: Mapping[str, Tensor], phase: str = "main") -> dict[str, Tensor]:
        """Loss dict: ``loss``, ``l1`` (regression head), ``ce`` (unweighted), ``hinted`` (share of
        images that got hints)."""
        if phase != "main":
            raise ValueError(f"unknown phase {phase!r} for HybridObjective; phases: ('main',)")
        l_norm, ab_norm = _check_batch(batch)
        gen = self.generator
        hints = None
        if getattr(gen, "accepts_hints", False):
            hints = simulate_hints(ab_norm, p_none=self.hint_p_none, mean_count=self.hint_mean_count)
            hints = hints.to(dtype=l_norm.dtype, memory_format=torch.contiguous_format)
        heads = gen.forward_heads(l_norm, hints)
        stride = int(gen.head_stride)
        target = F.avg_pool2d(ab_norm.float(), stride) if stride > 1 else ab_norm.float()
        l1 = (heads["regression"].float() - target).abs().mean()
        ce, weighted_ce = _soft_ce(heads["logits"], target, self.k, self.sigma, self.class_weights)
        loss = l1 + self.ce_weight * weighted_ce
        logs = {"l1": l1.detach(), "ce": ce, "loss": loss}
        if hints is not None:
            logs["hinted"] = (hints[:, 2].flatten(1).amax(dim=1) > 0).float().mean().detach()
        return logs


_OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "regression": ("loss", "ssim_weight", "l1_weight", "ssim_space", "aux_weight"),
    "classification": ("rebalance", "lam", "sigma", "k", "temperature", "aux_weight"),
    "gan": ("gan_loss", "l1_weight", "adversarial", "aux_weight"),
    "hybrid": ("ce_weight", "lam", "sigma", "k", "hint_p_none", "hint_mean_count", "aux_weight"),
}


def objective_option_names(kind: str) -> tuple[str, ...]:
    """Constructor options accepted by :func:`build_objective` for ``kind``."""
    if kind == "realism":
        from colorization.train.realism import REALISM_OPTIONS  # it builds on this module

        return REALISM_OPTIONS
    if kind not in _OPTION_NAMES:
        raise ValueError(f"unknown objective {kind!r}; valid: {list(OBJECTIVES)}")
    return _OPTION_NAMES[kind]


def build_objective(
    kind: str,
    generator: nn.Module,
    discriminator: nn.Module | None = None,
    **options: Any,
) -> Objective:
    """Build an objective by name.

    Args:
        kind: one of :data:`OBJECTIVES`.
        generator: the network to train (exported afterwards).
        discriminator: required for the :data:`ADVERSARIAL_OBJECTIVES` (``"gan"``, ``"realism"``)
            only (e.g. ``create_model("patchgan")``).
        options: constructor options of the objective class (see :func:`objective_option_names`);
            unknown names raise ``ValueError`` listing the valid ones.
    """
    valid = objective_option_names(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the {kind!r} objective; valid: {list(valid)}")
    if kind in ADVERSARIAL_OBJECTIVES:
        if discriminator is None:
            raise ValueError(f"the {kind!r} objective needs a discriminator (e.g. create_model('patchgan'))")
        if kind == "realism":
            from colorization.train.realism import RealismObjective

            return RealismObjective(generator, discriminator, **options)
        return GANObjective(generator, discriminator, **options)
    if discriminator is not None:
        raise ValueError(f"the {kind!r} objective takes no discriminator")
    if kind == "regression":
        return RegressionObjective(generator, **options)
    if kind == "hybrid":
        return HybridObjective(generator, **options)
    return ClassificationObjective(generator, **options)
