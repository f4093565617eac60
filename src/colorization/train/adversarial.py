"""Adversarial losses on critic logits, shared by the ``gan`` and ``realism`` objectives.

Every function takes the critic's raw logits (any shape, e.g. PatchGAN maps ``(B, 1, h, w)``; any
float dtype, computed in float32) and returns a scalar float32 tensor. ``real`` are the logits of
real (ground-truth) colourings, ``fake`` those of the generator's.

* ``lsgan``: critic ``0.5 * (mean((r - 1)^2) + mean(f^2))``; generator ``mean((f - 1)^2)``;
* ``vanilla``: critic ``0.5 * (BCE(r, 1) + BCE(f, 0))``; generator ``BCE(f, 1)`` (non-saturating);
* ``hinge``: critic ``mean(relu(1 - r)) + mean(relu(1 + f))``; generator ``-mean(f)``;
* ``ragan``: critic ``0.5 * (BCE(r - mean(f), 1) + BCE(f - mean(r), 0))``; generator
  ``0.5 * (BCE(r - mean(f), 0) + BCE(f - mean(r), 1))``.

``BCE(x, t)`` is the binary cross-entropy on logits, averaged. LSGAN: Mao et al. 2017; hinge:
Lim & Ye 2017 / Miyato et al. 2018; ``ragan`` is the relativistic average GAN (Jolicoeur-Martineau
2019, as ESRGAN uses it): each logit is judged against the mean logit of the other set, here the
mean over the whole batch and every patch position. Only ``ragan``'s generator loss needs the real
logits (pass them detached: the generator step does not train the critic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ADVERSARIAL_LOSSES", "critic_loss", "generator_loss", "target_loss"]

ADVERSARIAL_LOSSES = ("hinge", "lsgan", "ragan", "vanilla")


def _check(kind: str) -> None:
    if kind not in ADVERSARIAL_LOSSES:
        raise ValueError(f"unknown adversarial loss {kind!r}; valid: {list(ADVERSARIAL_LOSSES)}")


def target_loss(kind: str, logits: Tensor, real: bool) -> Tensor:
    """The loss of ``logits`` towards the "real" (``real=True``) or "fake" target, for the
    target-based kinds ``lsgan`` (least squares to 1 or 0) and ``vanilla`` (BCE on logits)."""
    if kind not in ("lsgan", "vanilla"):
        raise ValueError(f"target_loss is defined for 'lsgan' and 'vanilla', not {kind!r}")
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def critic_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """The critic's loss (lower: it tells real from fake better); see the module table."""
    _check(kind)
    real, fake = real.float(), fake.float()
    if kind in ("lsgan", "vanilla"):
        return 0.5 * (target_loss(kind, real, True) + target_loss(kind, fake, False))
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    rel_real, rel_fake = real - fake.mean(), fake - real.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(rel_real, torch.ones_like(rel_real))
                  + F.binary_cross_entropy_with_logits(rel_fake, torch.zeros_like(rel_fake)))


def generator_loss(kind: str, fake: Tensor, real: Tensor | None = None) -> Tensor:
    """The generator's adversarial loss (lower: the critic takes its colours for real); ``real``
    (the critic's logits of the ground truth, detached) is needed by ``ragan`` only."""
    _check(kind)
    fake = fake.float()
    if kind in ("lsgan", "vanilla"):
        return target_loss(kind, fake, True)
    if kind == "hinge":
        return -fake.mean()
    if real is None:
        raise ValueError("the 'ragan' generator loss needs the critic's logits of the real images")
    real = real.float()
    rel_real, rel_fake = real - fake.mean(), fake - real.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(rel_real, torch.zeros_like(rel_real))
                  + F.binary_cross_entropy_with_logits(rel_fake, torch.ones_like(rel_fake)))
