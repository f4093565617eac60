"""The ``realism`` objective: fine-tune a trained generator towards colours that look real.

A pixel loss rewards the average of the plausible colours, and the average is brown. This
objective keeps a pixel loss only as a *guard* and adds what brings colour knowledge and nerve,
after DeOldify's "NoGAN" recipe (pre-train the generator, pre-train the critic on its outputs,
then a short adversarial phase stopped where the results peak) and DDColor's losses:

``generator loss = l1_weight * L1 guard (+ ce_weight * rebalanced ab-bin CE for hybrid heads)
+ perceptual_weight * (features + logit_weight * logits) + adv_weight * adversarial
+ chroma_weight * chroma``

* **guard**: for generators with ``forward_heads`` (``effnet_fpn``) exactly the ``hybrid``
  objective's loss (L1 of the regression head and the rebalanced soft-encoded cross-entropy of
  the classification head against the truth area-averaged to the head stride, with simulated
  colour hints so that hint-guided colorization keeps working); for other regression generators
  the L1 of their output (plus the auxiliary class loss of ``fusion`` with ``aux_weight``).
* **perceptual** (:mod:`colorization.train.perceptual`): a frozen pretrained RGB network compares
  the photo rebuilt from the input L and the predicted ab (:func:`colorization.color.l_ab_to_rgb`,
  differentiable) with the true photo: the EfficientNet-Lite ImageNet classifier's features of
  chosen stages, and the KL divergence between its class predictions (``logit_weight``), or
  ST-LPIPS. Never the FID Inception network.
* **adversarial** (:mod:`colorization.train.adversarial`): a conditional critic (e.g. ``patchgan``
  with ``norm: none`` and ``spectral_norm: true``) sees ``cat(L, ab)`` and learns to tell the true
  ab from the generator's; ``adv_loss`` ``hinge`` (default), ``lsgan``, ``ragan`` (relativistic
  average) or ``vanilla``.
* **chroma** (optional, default 0): ``mean(relu(cf_true - cf_pred)) / 100`` over the images, with
  ``cf`` the Hasler-Süsstrunk colourfulness (:func:`colorization.color.colorfulness`): a push
  towards the truth's colourfulness that never rewards exceeding it.

``match_resolution`` (default on): a generator that predicts at a stride (``head_stride``, 4 for
``effnet_fpn``) cannot paint chroma finer than that, and the Colorizer upsamples its ab the same
way. The true ab is resampled through that stride (area average, then bilinear up) before the
critic, the perceptual loss and the chroma term see it, so they judge colour, not a resolution
the head cannot produce (a critic would otherwise win on chroma edges alone).

Stage options (``stages`` of a run) make the recipe:

* ``train_generator: false`` (and ``adversarial: true``): **critic pre-training** on the frozen
  generator's outputs (computed in eval mode, without gradients; the generator, its BatchNorm
  statistics and so its EMA stay exactly as they were);
* ``adversarial: false``: the generator alone on guard + perceptual (+ chroma) (NoGAN's perceptual
  pre-training);
* both true (default): the **joint phase**: each step trains the generator, then the critic on
  that step's generated colours (reused, not recomputed).

Phases are named ``generator`` and ``discriminator`` (the trainer's optimizers and ``d_lr``, as
for the ``gan`` objective). The perceptual network is not part of the training state (it is
rebuilt from its package; :meth:`RealismObjective.state_dict` leaves it out) and is never exported:
the exported model is the plain generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization import color
from colorization.models.hint_map import simulate_hints
from colorization.train.adversarial import ADVERSARIAL_LOSSES, critic_loss, generator_loss
from colorization.train.objective_base import CriticObjective, check_batch, soft_ce
from colorization.train.perceptual import PERCEPTUAL_NETS, build_perceptual

__all__ = ["RealismObjective", "REALISM_OPTIONS"]

#: constructor options of :class:`RealismObjective` (``objective_options``)
REALISM_OPTIONS = (
    "train_generator", "adversarial", "adv_loss", "adv_weight", "l1_weight", "ce_weight",
    "perceptual", "perceptual_weight", "perceptual_layers", "perceptual_layer_weights", "perceptual_distance",
    "perceptual_normalize", "perceptual_size", "logit_weight", "logit_temperature", "chroma_weight",
    "match_resolution", "hint_p_none", "hint_mean_count", "lam", "sigma", "k", "aux_weight",
)

_WEIGHTS = ("adv_weight", "l1_weight", "ce_weight", "perceptual_weight", "logit_weight", "chroma_weight")
_PERCEPTUAL_PREFIX = "perceptual_net."


class RealismObjective(CriticObjective):
    """Guard + perceptual + adversarial fine-tuning of a regression (or hybrid) generator.

    Args:
        generator: a registered generator with 2 output channels (normalised ab), or one with
            ``forward_heads``/``decode``/``head_stride`` (``effnet_fpn``).
        discriminator: the conditional critic, ``(B, 3, H, W)`` normalised ``cat(L, ab)`` -> logits.
        perceptual_module: a ready perceptual loss (tests, benchmarks); default: built from
            ``perceptual`` and the ``perceptual_*`` options by
            :func:`colorization.train.perceptual.build_perceptual`.
        Other options: module docs; the defaults are a starting point, not a measured optimum.
    """

    head = "regression"
    stage_options = ("train_generator", "adversarial", *_WEIGHTS, "aux_weight")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        train_generator: bool = True,
        adversarial: bool = True,
        adv_loss: str = "hinge",
        adv_weight: float = 0.01,
        l1_weight: float = 1.0,
        ce_weight: float = 0.1,
        perceptual: str = "lite2",
        perceptual_weight: float = 0.1,
        perceptual_layers: Sequence[int] = (1, 2, 4, 6),
        perceptual_layer_weights: Sequence[float] | None = None,
        perceptual_distance: str = "l2",
        perceptual_normalize: bool = True,
        perceptual_size: int = 0,
        logit_weight: float = 0.0,
        logit_temperature: float = 1.0,
        chroma_weight: float = 0.0,
        match_resolution: bool = True,
        hint_p_none: float = 0.5,
        hint_mean_count: float = 8.0,
        lam: float = color.DEFAULT_REBALANCE_LAMBDA,
        sigma: float = color.DEFAULT_SIGMA,
        k: int = color.DEFAULT_K,
        aux_weight: float = 0.0,
        perceptual_module: nn.Module | None = None,
    ) -> None:
        super().__init__(generator, aux_weight=aux_weight)
        self.hybrid = hasattr(generator, "forward_heads")
        if not self.hybrid and getattr(getattr(generator, "config", None), "out_channels", 2) != 2:
            raise ValueError(
                "the 'realism' objective needs a generator that outputs normalised ab (out_channels=2) or has "
                f"forward_heads (effnet_fpn); {type(generator).__name__} outputs "
                f"{generator.config.out_channels} channels"
            )
        if adv_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"adv_loss must be one of {list(ADVERSARIAL_LOSSES)}, got {adv_loss!r}")
        if perceptual not in (*PERCEPTUAL_NETS, "none"):
            raise ValueError(f"perceptual must be one of {[*PERCEPTUAL_NETS, 'none']}, got {perceptual!r}")
        if not 0.0 <= float(hint_p_none) <= 1.0 or float(hint_mean_count) < 1.0:
            raise ValueError(f"need hint_p_none in [0, 1] and hint_mean_count >= 1, got {hint_p_none}, "
                             f"{hint_mean_count}")
        for name, flag in (("match_resolution", match_resolution), ("perceptual_normalize", perceptual_normalize)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        if not 0.0 <= lam <= 1.0 or sigma <= 0 or k < 1:
            raise ValueError(f"need lam in [0, 1], sigma > 0, k >= 1; got lam={lam}, sigma={sigma}, k={k}")
        self.discriminator = discriminator
        self.adv_loss = adv_loss
        self.perceptual = perceptual
        self.match_resolution = bool(match_resolution)
        self.hint_p_none, self.hint_mean_count = float(hint_p_none), float(hint_mean_count)
        self.sigma, self.k = float(sigma), int(k)
        self.register_buffer("class_weights", color.rebalance_weights(lam=float(lam)).float(), persistent=False)
        if perceptual_module is None and perceptual != "none":
            options = {} if perceptual == "stlpips" else dict(
                layers=perceptual_layers, layer_weights=perceptual_layer_weights, distance=perceptual_distance,
                normalize=perceptual_normalize, size=perceptual_size, logit_temperature=logit_temperature)
            perceptual_module = build_perceptual(perceptual, **options)
        self.perceptual_net = perceptual_module
        # the frozen teacher is rebuilt from its package: keep it out of the training state
        self.register_state_dict_post_hook(_drop_perceptual_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_perceptual_keys)
        self._fake_cache: tuple[Tensor, Tensor, Tensor] | None = None
        self.train_generator, self.adversarial = True, True
        self.adv_weight = self.l1_weight = self.ce_weight = 0.0
        self.perceptual_weight = self.logit_weight = self.chroma_weight = 0.0
        self.configure(
            train_generator=train_generator, adversarial=adversarial, adv_weight=adv_weight, l1_weight=l1_weight,
            ce_weight=ce_weight, perceptual_weight=perceptual_weight, logit_weight=logit_weight,
            chroma_weight=chroma_weight,
        )

    # --- options ----------------------------------------------------------------------------------
    def configure(self, **options: Any) -> None:
        super().configure(**options)
        if not (self.train_generator or self.adversarial):
            raise ValueError("train_generator and adversarial are both false: the stage would train nothing")
        if self.perceptual_net is None and (self.perceptual_weight > 0 or self.logit_weight > 0):
            raise ValueError("perceptual_weight/logit_weight > 0 need a perceptual network (perceptual is 'none')")
        if self.perceptual == "stlpips" and self.logit_weight > 0:
            raise ValueError("logit_weight > 0 needs an EfficientNet-Lite perceptual network; 'stlpips' has no logits")

    def _set_option(self, name: str, value: Any) -> None:
        if name in ("train_generator", "adversarial"):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            setattr(self, name, value)
        elif name in _WEIGHTS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
            setattr(self, name, float(value))
        else:
            super()._set_option(name, value)

    # --- phases -----------------------------------------------------------------------------------
    @property
    def phases(self) -> tuple[str, ...]:
        if not self.adversarial:
            return ("generator",)
        return ("generator", "discriminator") if self.train_generator else ("discriminator",)

    # --- pieces -----------------------------------------------------------------------------------
    def _hints(self, ab_norm: Tensor, like: Tensor) -> Tensor | None:
        if not getattr(self.generator, "accepts_hints", False):
            return None
        hints = simulate_hints(ab_norm, p_none=self.hint_p_none, mean_count=self.hint_mean_count)
        return hints.to(dtype=like.dtype, memory_format=torch.contiguous_format)

    def _stride(self) -> int:
        return int(getattr(self.generator, "head_stride", 1)) if self.match_resolution else 1

    def real_ab(self, ab_norm: Tensor) -> Tensor:
        """The true ab ``(B, 2, H, W)`` as the critic and the perceptual loss see it (float32):
        resampled through the generator's head stride with ``match_resolution`` (module docs)."""
        ab = ab_norm.float()
        s = self._stride()
        if s > 1:
            ab = F.interpolate(F.avg_pool2d(ab, s), size=ab.shape[-2:], mode="bilinear", align_corners=False)
        return ab

    def _generate_ab(self, batch: Mapping[str, Tensor], l_norm: Tensor, ab_norm: Tensor) -> tuple[Tensor, dict]:
        """The generator's ab ``(B, 2, H, W)`` (float32) and its guard terms (``guard`` in the
        graph, the rest detached for the log)."""
        if self.hybrid:
            gen = self.generator
            hints = self._hints(ab_norm, l_norm)
            heads = gen.forward_heads(l_norm, hints)
            stride = int(gen.head_stride)
            target = F.avg_pool2d(ab_norm.float(), stride) if stride > 1 else ab_norm.float()
            l1 = (heads["regression"].float() - target).abs().mean()
            guard = self.l1_weight * l1
            terms = {"l1": l1.detach()}
            if self.ce_weight > 0:
                ce, weighted = soft_ce(heads["logits"], target, self.k, self.sigma, self.class_weights)
                guard = guard + self.ce_weight * weighted
                terms["ce"] = ce
            fake = F.interpolate(gen.decode(heads), size=l_norm.shape[-2:], mode="bilinear", align_corners=False)
            if hints is not None:
                terms["hinted"] = (hints[:, 2].flatten(1).amax(dim=1) > 0).float().mean()
        else:
            fake, aux = self._generate(batch, l_norm)
            if fake.shape != ab_norm.shape:
                raise ValueError(f"generator returned {tuple(fake.shape)} for ab {tuple(ab_norm.shape)}")
            fake = fake.float()
            l1 = (fake - ab_norm.float()).abs().mean()
            guard = self.l1_weight * l1
            terms = {"l1": l1.detach()}
            if aux is not None:
                guard = guard + self.aux_weight * aux
                terms["aux"] = aux.detach()
        terms["guard"] = guard
        return fake, terms

    def _critic(self, l_norm: Tensor, ab: Tensor) -> Tensor:
        return self.discriminator(torch.cat([l_norm, ab.to(l_norm.dtype)], dim=1))

    # --- losses -----------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Tensor], phase: str = "generator") -> dict[str, Tensor]:
        """Loss dict for ``phase``: ``"generator"`` (``loss``, ``l1``, ``ce``, ``perceptual``,
        ``logits``, ``adv``, ``chroma``, ``hinted`` as active) or ``"discriminator"`` (``loss``,
        ``real``/``fake``: the critic's mean logits)."""
        l_norm, ab_norm = check_batch(batch)
        if phase == "discriminator":
            return self._critic_step(l_norm, ab_norm, batch)
        if phase != "generator":
            raise ValueError(f"unknown phase {phase!r} for RealismObjective; phases: {self.all_phases}")
        if not self.train_generator:
            raise ValueError("the generator phase is not active (train_generator=False)")
        fake, terms = self._generate_ab(batch, l_norm, ab_norm)
        loss = terms.pop("guard")
        logs = dict(terms)
        real = self.real_ab(ab_norm)
        if self.perceptual_weight > 0 or self.logit_weight > 0 or self.chroma_weight > 0:
            l32 = l_norm.float()
            with torch.autocast(l_norm.device.type, enabled=False):  # Lab -> RGB in float32 (not bf16 matmuls)
                rgb_fake = color.l_ab_to_rgb(l32, fake)
                with torch.no_grad():
                    rgb_real = color.l_ab_to_rgb(l32, real)
            if self.perceptual_weight > 0 or self.logit_weight > 0:
                d = self.perceptual_net(rgb_fake, rgb_real, logits=self.logit_weight > 0)
                perc = d["features"] + self.logit_weight * d["logits"] if "logits" in d else d["features"]
                loss = loss + self.perceptual_weight * perc
                logs["perceptual"] = d["features"].detach()
                if "logits" in d:
                    logs["logits"] = d["logits"].detach()
            if self.chroma_weight > 0:
                with torch.autocast(l_norm.device.type, enabled=False):
                    with torch.no_grad():
                        cf_real = color.colorfulness(rgb_real)
                    chroma = F.relu(cf_real - color.colorfulness(rgb_fake, eps=1e-6)).mean() / 100.0
                loss = loss + self.chroma_weight * chroma
                logs["chroma"] = chroma.detach()
        if self.adversarial and self.adv_weight > 0:
            if self.adv_loss == "ragan":  # one critic pass; the real half only as a detached reference
                logits_real, logits_fake = self._critic(torch.cat([l_norm, l_norm]), torch.cat([real, fake])).chunk(2)
                adv = generator_loss(self.adv_loss, logits_fake, logits_real.detach())
            else:
                adv = generator_loss(self.adv_loss, self._critic(l_norm, fake))
            loss = loss + self.adv_weight * adv
            logs["adv"] = adv.detach()
        if self.adversarial:
            self._fake_cache = (batch["l"], batch["ab"], fake.detach())
        logs["loss"] = loss
        return logs

    @torch.no_grad()
    def _frozen_fake(self, batch: Mapping[str, Tensor], l_norm: Tensor, ab_norm: Tensor) -> Tensor:
        """The generator's ab in eval mode (critic pre-training): no gradient, no BatchNorm update."""
        gen = self.generator
        was_training = gen.training
        gen.eval()
        try:
            if self.hybrid:
                return gen(l_norm, self._hints(ab_norm, l_norm)).float()
            return gen(l_norm).float()
        finally:
            gen.train(was_training)

    def _critic_step(self, l_norm: Tensor, ab_norm: Tensor, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if not self.adversarial:
            raise ValueError("the discriminator phase is not active (adversarial=False)")
        cached, self._fake_cache = self._fake_cache, None
        if self.train_generator:  # joint phase: this step's generator output, computed once
            if cached is None or not (_same(cached[0], batch["l"]) and _same(cached[1], batch["ab"])):
                raise RuntimeError("joint phase: the discriminator phase must follow the generator phase on the "
                                   "same batch (it reuses that phase's generated ab)")
            fake = cached[2]
        else:  # critic pre-training: the frozen generator's output
            fake = self._frozen_fake(batch, l_norm, ab_norm)
        logits_real, logits_fake = self._critic(
            torch.cat([l_norm, l_norm]), torch.cat([self.real_ab(ab_norm), fake])
        ).float().chunk(2)
        loss = critic_loss(self.adv_loss, logits_real, logits_fake)
        return {"loss": loss, "real": logits_real.mean().detach(), "fake": logits_fake.mean().detach()}


def _same(a: Tensor, b: Tensor) -> bool:
    """The same tensor data (a wrapper such as DDP may hand over a new tensor object of it)."""
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride())


def _drop_perceptual_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + _PERCEPTUAL_PREFIX)]:
        del state_dict[key]


def _ignore_missing_perceptual_keys(module: nn.Module, incompatible_keys: Any) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if "." + _PERCEPTUAL_PREFIX not in "." + k]
