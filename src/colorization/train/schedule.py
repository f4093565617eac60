"""The step schedule of a run: the stage table, the learning-rate factor and the crop side.

All three are functions of the config and the step only, so nothing about them is saved: a
resumed run recomputes them (``--resume --steps N`` with a larger ``N`` stretches the cosine decay
and the last stage to the new end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from colorization.train.config import TrainConfig

__all__ = ["Stage", "stage_table", "stage_index", "crop_at", "lr_factor", "stage_groups", "stages_change_problem"]

#: ``(start, end, objective options, lr_scale)`` of one stage; the table covers ``[0, steps)``
Stage = tuple[int, int, dict[str, Any], float]

#: keys of a stage that are not objective options
_STAGE_KEYS = ("steps", "lr_scale", "name", "crop", "groups")


def stage_table(cfg: TrainConfig) -> list[Stage]:
    """``[(start, end, objective options, lr_scale)]`` covering ``[0, steps)``."""
    if not cfg.stages:
        return [(0, cfg.steps, {}, 1.0)]
    table = []
    start = 0
    for i, stage in enumerate(cfg.stages):
        last = i == len(cfg.stages) - 1
        end = cfg.steps if last else start + int(stage["steps"])
        options = {k: v for k, v in stage.items() if k not in _STAGE_KEYS}
        table.append((start, max(end, start), options, float(stage.get("lr_scale", 1.0))))
        start = end
    return table


def stage_index(table: Sequence[Stage], step: int) -> int:
    """Index of the stage that optimisation step ``step`` belongs to."""
    for i, (start, end, _, _) in enumerate(table):
        if start <= step < end:
            return i
    return len(table) - 1


def crop_at(cfg: TrainConfig, table: Sequence[Stage], step: int) -> int:
    """Training crop side at ``step``: the stage's ``crop`` (progressive resolution) or ``cfg.crop``."""
    if not cfg.stages:
        return cfg.crop
    return int(cfg.stages[stage_index(table, step)].get("crop") or cfg.crop)


def stage_groups(cfg: TrainConfig) -> list[tuple[str, ...] | None]:
    """Per stage of :func:`stage_table`, the data groups its photos come from (None: all)."""
    if not cfg.stages:
        return [None]
    return [tuple(stage["groups"]) if stage.get("groups") else None for stage in cfg.stages]


def lr_factor(cfg: TrainConfig, table: Sequence[Stage], step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then the ``schedule``'s decay to
    ``min_lr_ratio`` (``cosine``: over all the remaining steps; ``wsd``: constant, then a cosine
    over the last ``decay_fraction`` of the steps), times the current stage's ``lr_scale``."""
    warm = int(cfg.warmup_steps or 0)
    if step < warm:
        base = (step + 1) / warm
    else:
        if cfg.schedule == "wsd":
            decay_start = max(warm, cfg.steps - int(round(cfg.decay_fraction * cfg.steps)))
        else:
            decay_start = warm
        progress = min(1.0, max(0.0, (step - decay_start) / max(1, cfg.steps - decay_start)))
        base = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base * table[stage_index(table, step)][3]


def stages_change_problem(saved: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], step: int) -> str | None:
    """Why a run saved at ``step`` with stages ``saved`` cannot continue with stages ``new`` (None:
    it can).

    A resumed run may change what has not happened yet: the stages after the one ``step`` is in
    (their number, lengths, crops, groups, options), and the current stage's length, as long as
    it still ends after ``step``. The stages before ``step`` and the current one's other settings
    must be the same, so every step already taken is one the new schedule would have taken too
    (a stage's data order is counted from its own start: see
    :class:`~colorization.train.sampling.StepBatchSampler`).
    """
    saved, new = [dict(x) for x in saved], [dict(x) for x in new]
    if saved == new:
        return None
    if not saved or not new:
        return "stages were added to or removed from a run that has started"
    start = 0
    for i, stage in enumerate(saved):
        last = i == len(saved) - 1
        end = None if last else start + int(stage["steps"])
        if last or step < end:
            break
        start = end
    if len(new) <= i or new[:i] != saved[:i]:
        return f"the stages before step {step} changed"
    without_steps = ({k: v for k, v in x.items() if k != "steps"} for x in (saved[i], new[i]))
    if next(without_steps) != next(without_steps):
        return f"stage {i} (the current one at step {step}) changed other settings than its length"
    if i < len(new) - 1 and start + int(new[i]["steps"]) <= step:
        return f"stage {i} would end at step {start + int(new[i]['steps'])}, before the saved step {step}"
    return None
