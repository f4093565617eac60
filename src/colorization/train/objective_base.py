"""The base of the training objectives: :class:`Objective` and the batch and loss helpers that
several objectives share (:mod:`.objectives` holds the objectives themselves and their factory;
:mod:`.realism` builds on this module too, which keeps the two free of an import cycle).

Batches are dicts with ``"l"`` (float ``(B, 1, H, W)``, normalised L in ``[-1, 1]``), ``"ab"``
(float ``(B, 2, H, W)``, normalised ab, roughly ``[-1, 1]``) and optionally ``"label"`` (int64
``(B,)``, ``-1`` where the class is unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization import color

__all__ = ["Objective", "check_batch", "masked_class_ce", "soft_ce"]


def check_batch(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """``(batch["l"], batch["ab"])`` after checking their shapes (``KeyError`` / ``ValueError``)."""
    for key in ("l", "ab"):
        if key not in batch:
            raise KeyError(f"objective batch is missing {key!r}; it holds {sorted(batch)}")
    l_norm, ab_norm = batch["l"], batch["ab"]
    if l_norm.dim() != 4 or l_norm.shape[1] != 1:
        raise ValueError(f"batch['l'] must be (B, 1, H, W), got {tuple(l_norm.shape)}")
    if ab_norm.dim() != 4 or ab_norm.shape[1] != 2 or ab_norm.shape[0] != l_norm.shape[0] or (
        ab_norm.shape[2:] != l_norm.shape[2:]
    ):
        raise ValueError(
            f"batch['ab'] must be (B, 2, H, W) matching batch['l'] {tuple(l_norm.shape)}, got {tuple(ab_norm.shape)}"
        )
    return l_norm, ab_norm


def masked_class_ce(class_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the samples whose label is >= 0; 0 (still in the graph) if none.

    Keeping the term in the autograd graph even when no sample has a label means every parameter
    of the auxiliary head takes part in every backward pass, which DistributedDataParallel needs.
    """
    if class_logits.dim() != 2:
        raise ValueError(f"auxiliary class logits must be (B, num_classes), got {tuple(class_logits.shape)}")
    labels = labels.to(device=class_logits.device, dtype=torch.long)
    num_classes = class_logits.shape[1]
    if bool((labels >= num_classes).any()):
        raise ValueError(
            f"batch label {int(labels.max())} is out of range for an auxiliary head with {num_classes} classes; "
            "build the model with a larger num_classes"
        )
    valid = labels >= 0
    per_sample = F.cross_entropy(class_logits.float(), labels.clamp_min(0), reduction="none")
    return (per_sample * valid).sum() / valid.sum().clamp_min(1)


def soft_ce(
    logits: Tensor, ab_norm: Tensor, k: int, sigma: float, class_weights: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of bin logits ``(B, Q, H, W)`` with the soft encoding of the true normalised ab
    ``(B, 2, H, W)`` (Zhang et al. 2016). Returns ``(unweighted mean, detached; loss)``, the loss
    weighted per pixel by ``class_weights`` of the pixel's nearest bin (rebalancing) when given."""
    with torch.no_grad():
        ab = color.denormalize_ab(ab_norm.float())
        target = color.soft_encode(ab, k=k, sigma=sigma)  # (B, Q, H, W)
        weights = class_weights[color.nearest_bin(ab)] if class_weights is not None else None  # (B, H, W)
    ce = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)  # (B, H, W)
    return ce.mean().detach(), (ce * weights).mean() if weights is not None else ce.mean()


class Objective(nn.Module):
    """Base class: holds the generator and the shared auxiliary-classification logic.

    Args:
        generator: a registered generator mapping ``(B, 1, H, W)`` normalised L to ``(B, C, H, W)``.
        aux_weight: weight of the auxiliary image-classification loss, used only when the generator
            has ``forward_with_aux`` (e.g. ``fusion`` with ``num_classes > 0``); 0 disables it.
    """

    head: str = "regression"
    #: options accepted by :meth:`configure` (stage options)
    stage_options: tuple[str, ...] = ("aux_weight",)

    def __init__(self, generator: nn.Module, aux_weight: float = 0.0) -> None:
        super().__init__()
        self.generator = generator
        self.aux_weight = float(aux_weight)
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")

    # --- phases -------------------------------------------------------------------------------
    @property
    def phases(self) -> tuple[str, ...]:
        """Phases run in every training step, in order (one optimizer each)."""
        return ("main",)

    @property
    def all_phases(self) -> tuple[str, ...]:
        """Every phase this objective can ever run (the trainer builds one optimizer per entry)."""
        return ("main",)

    @property
    def find_unused_parameters(self) -> bool:
        """Whether DistributedDataParallel must look for parameters without gradients."""
        return False

    def phase_parameters(self, phase: str) -> list[nn.Parameter]:
        """Trainable parameters updated in ``phase``."""
        if phase != "main":
            raise ValueError(f"unknown phase {phase!r} for {type(self).__name__}; phases: {self.all_phases}")
        return [p for p in self.generator.parameters() if p.requires_grad]

    # --- stage options ------------------------------------------------------------------------
    def configure(self, **options: Any) -> None:
        """Change stage options in place (used by staged schedules); unknown names raise ValueError."""
        unknown = sorted(set(options) - set(self.stage_options))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no stage option(s) {unknown}; valid: {sorted(self.stage_options)}"
            )
        for name, value in options.items():
            self._set_option(name, value)

    def _set_option(self, name: str, value: Any) -> None:
        if name == "aux_weight":
            if float(value) < 0:
                raise ValueError(f"aux_weight must be >= 0, got {value}")
            self.aux_weight = float(value)
        else:  # pragma: no cover - subclasses handle their own names
            raise ValueError(f"unhandled option {name!r}")

    def options(self) -> dict[str, Any]:
        """Current stage options (JSON-serialisable)."""
        return {name: getattr(self, name) for name in self.stage_options}

    # --- generator calls ----------------------------------------------------------------------
    @property
    def uses_aux(self) -> bool:
        """True when the auxiliary class loss is active for this generator."""
        return self.aux_weight > 0 and hasattr(self.generator, "forward_with_aux")

    def _generate(self, batch: Mapping[str, Tensor], l_norm: Tensor) -> tuple[Tensor, Tensor | None]:
        """Run the generator; returns ``(output, aux_loss or None)``."""
        if self.uses_aux:
            out, class_logits = self.generator.forward_with_aux(l_norm)
            labels = batch.get("label")
            if labels is None:
                labels = torch.full((l_norm.shape[0],), -1, dtype=torch.long, device=l_norm.device)
            return out, masked_class_ce(class_logits, labels)
        return self.generator(l_norm), None

    @torch.no_grad()
    def predict(self, l_norm: Tensor, generator: nn.Module | None = None) -> Tensor:
        """Normalised ab ``(B, 2, H, W)`` (float32) for normalised L ``(B, 1, H, W)``: the
        generator's output (regression heads; classification overrides this to decode logits).

        ``generator`` replaces ``self.generator`` for this call (e.g. its EMA copy)."""
        return (self.generator if generator is None else generator)(l_norm).float()


class CriticObjective(Objective):
    """Base of the objectives with a critic (``self.discriminator``, set by the subclass): the two
    phases ``generator`` and ``discriminator``, one optimizer each; which run in a step is the
    subclass's :attr:`phases`."""

    @property
    def all_phases(self) -> tuple[str, ...]:
        return ("discriminator", "generator")

    @property
    def find_unused_parameters(self) -> bool:
        return True

    def phase_parameters(self, phase: str) -> list[nn.Parameter]:
        if phase == "generator":
            return [p for p in self.generator.parameters() if p.requires_grad]
        if phase == "discriminator":
            return [p for p in self.discriminator.parameters() if p.requires_grad]
        raise ValueError(f"unknown phase {phase!r} for {type(self).__name__}; phases: {self.all_phases}")
