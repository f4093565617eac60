"""What a run trains: the generator (optionally from an exported model), the discriminator, the
objective around them, and one AdamW optimizer per objective phase.

Random initialisation draws from the torch generator seeded with ``cfg.seed``, in a fixed order
(generator, ``init_from`` model, discriminator), so every rank builds identical weights.
"""

from __future__ import annotations

import torch
from torch import nn

from colorization.inference import checkpoint
from colorization.models import create_model, list_models
from colorization.train.config import ConfigError, TrainConfig
from colorization.train.objectives import ADVERSARIAL_OBJECTIVES, Objective, build_objective

__all__ = ["init_generator", "build_run_objective", "build_optimizers"]


def init_generator(generator: nn.Module, cfg: TrainConfig) -> None:
    """Copy the weights of the exported model ``cfg.init_from`` into ``generator`` (strictly)."""
    try:
        saved = checkpoint.read_config(cfg.init_from)
        if saved["model"] != cfg.model:
            raise ConfigError(
                f"config field 'init_from': {cfg.init_from} holds a {saved['model']!r} model, not {cfg.model!r}"
            )
        source = checkpoint.load_exported(cfg.init_from, device="cpu").network
        generator.load_state_dict(source.state_dict(), strict=True)
    except checkpoint.CheckpointError as exc:
        raise ConfigError(f"config field 'init_from': {exc}") from None
    except RuntimeError as exc:  # same model name, different architecture config
        raise ConfigError(f"config field 'init_from': weights do not fit the configured network ({exc})") from None


def build_run_objective(cfg: TrainConfig, n_classes: int | None = None) -> Objective:
    """The objective of ``cfg`` with freshly seeded (or ``init_from``) networks, on the CPU.

    ``n_classes``: the number of image classes in the training data when the run uses the
    auxiliary class loss (``aux_weight > 0``), else None.
    """
    if cfg.model not in list_models("generator"):
        raise ConfigError(
            f"config field 'model': {cfg.model!r} is not a registered generator; valid: {list_models('generator')}"
        )
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    try:
        generator = create_model(cfg.model, **cfg.model_config)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config field 'model_config': {exc}") from None
    if cfg.init_from is not None:
        init_generator(generator, cfg)
    sizes = [(cfg.crop, "crop"), (cfg.val_crop or cfg.crop, "val_crop")]
    sizes += [(int(st["crop"]), f"stages[{i}].crop") for i, st in enumerate(cfg.stages) if st.get("crop")]
    for size, name in sizes:
        if size % generator.stride:
            raise ConfigError(
                f"config field {name!r}: {size} px is not a multiple of model {cfg.model!r}'s stride {generator.stride}"
            )
    discriminator = None
    if cfg.objective in ADVERSARIAL_OBJECTIVES:
        if cfg.discriminator not in list_models("discriminator"):
            raise ConfigError(
                f"config field 'discriminator': {cfg.discriminator!r} is not a registered discriminator; "
                f"valid: {list_models('discriminator')}"
            )
        try:
            discriminator = create_model(cfg.discriminator, **cfg.discriminator_config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"config field 'discriminator_config': {exc}") from None
    try:
        objective = build_objective(cfg.objective, generator, discriminator, **cfg.objective_options)
    except ValueError as exc:
        raise ConfigError(f"config field 'objective_options': {exc}") from None
    if n_classes is not None:
        if not hasattr(generator, "forward_with_aux"):
            raise ConfigError(
                f"aux_weight > 0 but model {cfg.model!r} has no auxiliary class head (forward_with_aux); "
                "use e.g. 'fusion' with num_classes > 0 or set aux_weight to 0"
            )
        head = getattr(generator.config, "num_classes", None)
        if head is not None and head < n_classes:
            raise ConfigError(
                f"config field 'model_config': num_classes={head} but the training data has {n_classes} "
                "classes (leave num_classes out to have it filled in)"
            )
    return objective


def build_optimizers(objective: Objective, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """AdamW per phase (weight decay on weights, not on biases and norms); ``initial_lr`` of every
    group is the peak rate that the step schedule multiplies."""
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for phase in objective.all_phases:
        params = objective.phase_parameters(phase)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        lr = cfg.d_lr if (phase == "discriminator" and cfg.d_lr is not None) else cfg.lr
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr,
            betas=tuple(cfg.betas),
        )
        for group in opt.param_groups:
            group["initial_lr"] = lr  # the step-based schedule multiplies this
        optimizers[phase] = opt
    return optimizers
