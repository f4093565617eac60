"""The trainer: one process, or many under ``torchrun`` (DistributedDataParallel).

``train(config)`` trains any registered generator with one of the objectives of
:mod:`colorization.train.objectives` and writes, under ``config.out``:

* ``train_config.json`` - the resolved :class:`TrainConfig` (what a resume must match);
* ``log.jsonl`` - one JSON object per line: ``{"kind": "train", ...}`` every ``log_every`` steps
  and ``{"kind": "val", ...}`` after each validation;
* ``samples/step_XXXXXX.png`` - validation sample grids (ground truth | gray | prediction);
* ``state/`` - resumable state (safetensors for tensors, JSON for everything else; no pickles);
* ``model/`` - the exported model (:func:`colorization.inference.checkpoint.save_exported`) once all steps
  are done; EMA weights when ``ema`` is on.

Data order and augmentation are functions of ``(seed, step)`` only, so a run stopped at step
``k`` and resumed reproduces the uninterrupted run exactly (single process, ``workers=0`` for
bit-exactness; with workers the order is still deterministic).

One module per part:

==============================  ===============================================================
:mod:`~.config`                 :class:`TrainConfig`, its validation, config files, overrides
:mod:`~.build`                  generator (``init_from``), discriminator, objective, optimizers
:mod:`~.schedule`               stage table, learning-rate factor, crop side per step
:mod:`~.sampling`               deterministic data order and per-sample augmentation seeds
:mod:`~.state`                  ``OUT/state/`` save and load (optimizer, RNG, EMA), log trim
:mod:`~.ema`                    EMA of the generator weights
:mod:`~.processes`              rank, world size, device, process group
:mod:`~.validation`             PSNR/SSIM/colourfulness and sample grids
:mod:`~.objectives`             the objectives (regression, classification, GAN, hybrid)
:mod:`~.losses`                 the SSIM loss (the one SSIM of :mod:`colorization.evaluation.structural`)
:mod:`~.export`                 ``OUT/model/`` and its ``training`` record
:mod:`~.trainer`                the loop: :func:`train`, :class:`TrainResult`
==============================  ===============================================================

:mod:`~.config` does not import torch; the other names load on first use, so importing the
config (the command line does, to build its options) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from colorization.train.config import (
    RUNTIME_FIELDS,
    ConfigError,
    TrainConfig,
    load_config_file,
    resolve_config,
)

if TYPE_CHECKING:  # pragma: no cover
    # For type checkers only: at run time these names are loaded lazily by __getattr__ (_LAZY).
    from colorization.train.sampling import StepBatchSampler as _StepBatchSampler  # noqa: F401
    from colorization.train.schedule import crop_at as _crop_at  # noqa: F401
    from colorization.train.schedule import lr_factor as _lr_factor  # noqa: F401
    from colorization.train.schedule import stage_index as _stage_index  # noqa: F401
    from colorization.train.schedule import stage_table as _stage_table  # noqa: F401
    from colorization.train.state import STATE_FORMAT_VERSION  # noqa: F401
    from colorization.train.trainer import NonFiniteLossError, TrainResult, train

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "load_config_file",
    "resolve_config",
    "train",
    "RUNTIME_FIELDS",
]

# name -> (module, attribute): loaded on first access (they import torch)
_LAZY: dict[str, tuple[str, str]] = {
    "NonFiniteLossError": ("trainer", "NonFiniteLossError"),
    "TrainResult": ("trainer", "TrainResult"),
    "train": ("trainer", "train"),
    "STATE_FORMAT_VERSION": ("state", "STATE_FORMAT_VERSION"),
    # the names these had when the trainer was one module (tests and scripts import them)
    "_stage_table": ("schedule", "stage_table"),
    "_stage_index": ("schedule", "stage_index"),
    "_lr_factor": ("schedule", "lr_factor"),
    "_crop_at": ("schedule", "crop_at"),
    "_StepBatchSampler": ("sampling", "StepBatchSampler"),
    "_SeededSamples": ("sampling", "SeededSamples"),
    "_mix": ("sampling", "mix"),
    "_EMA": ("ema", "EMA"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
