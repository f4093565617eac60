"""The exported model of a run: ``OUT/model/`` with the training recipe in its ``config.json``.

``config.json`` (written by :func:`colorization.inference.checkpoint.save_exported`) gets a ``training``
block (the recipe, data, steps, images seen, wall time, device and the full train config),
``metrics.val`` (the last validation), ``working_size`` when the config sets one and, for a
classification head, the annealed-mean ``temperature`` the objective used.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorization import color
from colorization.inference import checkpoint
from colorization.train.config import TrainConfig
from colorization.train.objectives import ADVERSARIAL_OBJECTIVES, Objective

__all__ = ["training_record", "export_model", "best_val_psnr", "settle_best"]


def training_record(
    cfg: TrainConfig,
    *,
    base_options: Mapping[str, Any],
    world_size: int,
    train_images: int,
    class_names: Sequence[str] | None,
    step: int,
    images_seen: int,
    wall_time_s: float,
    device: torch.device,
) -> dict[str, Any]:
    """The ``training`` block of the exported ``config.json``."""
    return {
        "recipe": {
            "objective": cfg.objective,
            "objective_options": base_options,
            "stages": [dict(s) for s in cfg.stages],
            "discriminator": cfg.discriminator if cfg.objective in ADVERSARIAL_OBJECTIVES else None,
            "discriminator_config": dict(cfg.discriminator_config) if cfg.objective in ADVERSARIAL_OBJECTIVES else None,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "world_size": world_size,
            "crop": cfg.crop,
            "ema": cfg.ema,
            "ema_decay": cfg.ema_decay if cfg.ema else None,
            "amp": cfg.amp,
            "seed": cfg.seed,
        },
        "data": list(cfg.data),
        "val": cfg.val,
        "train_images": train_images,
        "class_names": list(class_names) if class_names is not None else None,
        "steps": step,
        "planned_steps": cfg.steps,
        "stopped_early": step < cfg.steps,
        "images_seen": images_seen,
        "wall_time_s": round(wall_time_s, 2),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "train_config": cfg.to_dict(),
    }


def export_model(
    model_dir: Path,
    generator: nn.Module,
    objective: Objective,
    cfg: TrainConfig,
    training: Mapping[str, Any],
    val_metrics: Mapping[str, float],
) -> None:
    """Save ``generator`` (in eval mode) as an exported model with the run's records."""
    extra: dict[str, Any] = {"training": dict(training), "metrics": {"val": dict(val_metrics)}}
    if cfg.working_size is not None:
        extra["working_size"] = int(cfg.working_size)
    if objective.head == "classification":
        extra["temperature"] = getattr(objective, "temperature", color.DEFAULT_TEMPERATURE)
    was_training = generator.training
    generator.eval()
    try:
        checkpoint.save_exported(generator, model_dir, head=objective.head, extra=extra)
    finally:
        generator.train(was_training)


def best_val_psnr(out: Path) -> float:
    """The best val PSNR recorded in ``out/model_best/`` or ``out/model_best.pending/`` (-inf: none)."""
    best = -math.inf
    for folder in (out / "model_best", out / "model_best.pending"):
        if (folder / "config.json").is_file():
            psnr = checkpoint.read_config(folder).get("metrics", {}).get("val", {}).get("psnr", -math.inf)
            best = max(best, float(psnr))
    return best


def settle_best(out: Path, saved_step: int) -> None:
    """Promote ``out/model_best.pending/`` to ``out/model_best/`` once the state of its step is saved.

    A new best is exported to the pending folder first, so a run killed between that export and
    the next state save never leaves ``model_best/`` ahead of the state it resumes from: on
    resume, a pending best from a later step than the saved state is dropped (the replayed steps
    validate it again), one from the saved step or earlier is promoted.
    """
    pending = out / "model_best.pending"
    if not (pending / "config.json").is_file():
        if pending.exists():
            shutil.rmtree(pending)  # an export killed half-way
        return
    pending_step = int(checkpoint.read_config(pending).get("training", {}).get("steps", -1))
    if pending_step > saved_step:
        shutil.rmtree(pending)
        return
    best, old = out / "model_best", out / "model_best.old"
    if old.exists():
        shutil.rmtree(old)
    if best.exists():
        best.rename(old)
    pending.rename(best)
    if old.exists():
        shutil.rmtree(old)
