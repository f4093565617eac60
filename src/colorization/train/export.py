"""The exported model of a run: ``OUT/model/`` with the training recipe in its ``config.json``.

``config.json`` (written by :func:`colorization.inference.checkpoint.save_exported`) gets a ``training``
block (the recipe, data, steps, images seen, wall time, device and the full train config),
``metrics.val`` (the last validation), ``working_size`` when the config sets one and, for a
classification head, the annealed-mean ``temperature`` the objective used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorization import color
from colorization.inference import checkpoint
from colorization.train.config import TrainConfig
from colorization.train.objectives import ADVERSARIAL_OBJECTIVES, Objective

__all__ = ["training_record", "export_model"]


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
