"""The trainer: one process, or many under ``torchrun`` (DistributedDataParallel).

``train(config)`` trains any registered generator with one of the objectives of
:mod:`colorization.objectives` and writes, under ``config.out``:

* ``train_config.json`` - the resolved :class:`TrainConfig` (what a resume must match);
* ``log.jsonl`` - one JSON object per line: ``{"kind": "train", ...}`` every ``log_every`` steps
  and ``{"kind": "val", ...}`` after each validation;
* ``samples/step_XXXXXX.png`` - validation sample grids (ground truth | gray | prediction);
* ``state/`` - resumable state (safetensors for tensors, JSON for everything else; no pickles);
* ``model/`` - the exported model (:func:`colorization.checkpoint.save_exported`) once all steps
  are done; EMA weights when ``ema`` is on.

Data order and augmentation are functions of ``(seed, step)`` only, so a run stopped at step
``k`` and resumed reproduces the uninterrupted run exactly (single process, ``workers=0`` for
bit-exactness; with workers the order is still deterministic).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from colorization import checkpoint, color
from colorization import data as cdata
from colorization import io as cio
from colorization.models import create_model, list_models
from colorization.objectives import OBJECTIVES, Objective, build_objective, objective_option_names

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

STATE_FORMAT_VERSION = 1


class ConfigError(ValueError):
    """Invalid training configuration; the message names the field (and file, if any)."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stopped, the last saved state is kept."""

    def __init__(self, step: int, values: Mapping[str, float], out: str) -> None:
        self.step = step
        self.values = dict(values)
        shown = ", ".join(f"{k}={v}" for k, v in self.values.items())
        super().__init__(
            f"non-finite loss at step {step} ({shown}); training stopped. The last good state in "
            f"{Path(out) / 'state'} was kept (resume with --resume after lowering the learning rate, "
            "or with --amp off / a smaller grad_clip)"
        )


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------

#: fields that may differ between a run and its resumption (they do not change the maths)
RUNTIME_FIELDS = frozenset(
    {"out", "device", "workers", "threads", "compile", "val_every", "save_every", "log_every", "val_images",
     "sample_images", "working_size"}
)

_AMP_MODES = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (serialised to ``OUT/train_config.json``).

    ``batch_size`` is per process: a ``torchrun`` job with N processes sees ``N * batch_size``
    images per step.  ``stages`` is a list of dicts, each ``{"steps": n, <objective stage
    options>..., "lr_scale": s}`` (see :meth:`Objective.configure`); stages run in order and the
    last one continues to the end of training.  ``warmup_steps`` and ``val_crop`` of ``None`` are
    resolved by :func:`resolve_config` (``min(1000, steps // 20)`` and ``crop``).
    """

    model: str
    data: tuple[str, ...]
    out: str
    val: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    objective: str = "regression"
    objective_options: dict[str, Any] = field(default_factory=dict)
    stages: tuple[dict[str, Any], ...] = ()
    discriminator: str = "patchgan"
    discriminator_config: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 16
    crop: int = 128
    lr: float = 2e-4
    d_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    workers: int = 2
    threads: int | None = None
    seed: int = 0
    val_every: int = 500
    val_images: int = 64
    val_crop: int | None = None
    sample_images: int = 8
    save_every: int = 500
    log_every: int = 25
    max_images: int | None = None
    min_colorfulness_quantile: float | None = None
    drop_grayscale: bool = True
    scale_jitter: tuple[float, float] = (0.75, 1.0)
    hflip: bool = True
    #: working resolution recorded in the exported model (the side the Colorizer resizes to);
    #: None keeps the checkpoint default. Ship a model at the scale it was trained for.
    working_size: int | None = None
    #: exported model folder (model.safetensors + config.json) whose weights initialise the
    #: generator (fine-tuning, e.g. at a larger crop); its model and model_config must match.
    init_from: str | None = None

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"config field {name!r}: {why} (got {getattr(self, name)!r})")

        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "must be a registered model name")
        if not self.data or not all(isinstance(d, str) and d for d in self.data):
            raise bad("data", "must list at least one training folder")
        if not isinstance(self.out, str) or not self.out:
            raise bad("out", "must be an output folder")
        if self.objective not in OBJECTIVES:
            raise bad("objective", f"must be one of {list(OBJECTIVES)}")
        for name in ("model_config", "objective_options", "discriminator_config"):
            if not isinstance(getattr(self, name), dict):
                raise bad(name, "must be a mapping")
        for name in ("steps", "batch_size", "crop", "val_every", "save_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "must be a positive integer")
        for name in ("workers", "val_images", "sample_images", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "must be a non-negative integer")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise bad("warmup_steps", "must be a non-negative integer or null")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise bad("threads", "must be a positive integer or null (torch's default)")
        if self.val_crop is not None and (not isinstance(self.val_crop, int) or self.val_crop < 1):
            raise bad("val_crop", "must be a positive integer or null")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise bad("init_from", "must be an exported model folder or null")
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise bad("max_images", "must be a positive integer or null")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise bad("lr", "must be > 0")
        if self.d_lr is not None and not (isinstance(self.d_lr, (int, float)) and self.d_lr > 0):
            raise bad("d_lr", "must be > 0 or null")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if self.grad_clip < 0:
            raise bad("grad_clip", "must be >= 0 (0 disables clipping)")
        if not 0 < self.ema_decay < 1:
            raise bad("ema_decay", "must be in (0, 1)")
        if self.amp not in _AMP_MODES:
            raise bad("amp", f"must be one of {list(_AMP_MODES)}")
        if self.min_colorfulness_quantile is not None and not 0 <= self.min_colorfulness_quantile < 1:
            raise bad("min_colorfulness_quantile", "must be in [0, 1) or null")
        if len(self.scale_jitter) != 2 or not 0 < self.scale_jitter[0] <= self.scale_jitter[1] <= 1:
            raise bad("scale_jitter", "must be (lo, hi) with 0 < lo <= hi <= 1")
        stage_keys = set(objective_option_names(self.objective)) | {"steps", "lr_scale", "name", "crop"}
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, dict):
                raise ConfigError(f"config field 'stages'[{i}] must be a mapping, got {stage!r}")
            unknown = sorted(set(stage) - stage_keys)
            if unknown:
                raise ConfigError(
                    f"config field 'stages'[{i}] has unknown key(s) {unknown}; valid: {sorted(stage_keys)}"
                )
            steps = stage.get("steps")
            if steps is None and i != len(self.stages) - 1:
                raise ConfigError(f"config field 'stages'[{i}] needs 'steps' (only the last stage may omit it)")
            if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
                raise ConfigError(f"config field 'stages'[{i}]['steps'] must be a positive integer, got {steps!r}")
            crop = stage.get("crop")
            if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
                raise ConfigError(f"config field 'stages'[{i}]['crop'] must be a positive integer, got {crop!r}")
            if "lr_scale" in stage and not (isinstance(stage["lr_scale"], (int, float)) and stage["lr_scale"] > 0):
                raise ConfigError(f"config field 'stages'[{i}]['lr_scale'] must be > 0, got {stage['lr_scale']!r}")

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping (parsed JSON/YAML); unknown keys raise :class:`ConfigError`."""
        valid = cls.field_names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; valid fields: {valid}")
        missing = [n for n in ("model", "data", "out") if values.get(n) in (None, "", [], ())]
        if missing:
            raise ConfigError(f"{source}: missing required field(s) {missing}")
        kw = dict(values)
        data = kw["data"]
        kw["data"] = (str(data),) if isinstance(data, (str, Path)) else tuple(str(d) for d in data)
        kw["out"] = str(kw["out"])
        if kw.get("val") is not None:
            kw["val"] = str(kw["val"])
        for name in ("betas", "scale_jitter"):
            if name in kw:
                kw[name] = tuple(float(v) for v in kw[name])
        if "stages" in kw:
            stages = kw["stages"] or ()
            if not isinstance(stages, (list, tuple)):
                raise ConfigError(f"{source}: field 'stages' must be a list of mappings")
            kw["stages"] = tuple(dict(s) if isinstance(s, Mapping) else s for s in stages)
        for name in ("model_config", "objective_options", "discriminator_config"):
            if name in kw:
                kw[name] = {} if kw[name] is None else dict(kw[name]) if isinstance(kw[name], Mapping) else kw[name]
        for name in ("lr", "d_lr", "weight_decay", "min_lr_ratio", "grad_clip", "ema_decay", "min_colorfulness_quantile"):
            if isinstance(kw.get(name), int) and not isinstance(kw.get(name), bool):
                kw[name] = float(kw[name])
        try:
            return cls(**kw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``) training config into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            values = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path}: unsupported extension {suffix!r} (use .json, .yaml or .yml)")
    except (json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return values


def resolve_config(
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "config",
) -> TrainConfig:
    """Merge a config file's values with overrides (CLI flags win; ``None`` overrides are ignored),
    fill in automatic values (``warmup_steps``, ``val_crop``, classification ``out_channels``)
    and validate.

    ``objective_options``/``model_config``/``discriminator_config`` overrides are merged key by key
    into the file's mappings.
    """
    merged: dict[str, Any] = dict(file_values or {})
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in ("objective_options", "model_config", "discriminator_config"):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    cfg = TrainConfig.from_dict(merged, source=source)
    updates: dict[str, Any] = {}
    if cfg.warmup_steps is None:
        updates["warmup_steps"] = min(1000, cfg.steps // 20)
    if cfg.val_crop is None:
        updates["val_crop"] = cfg.crop
    if cfg.objective == "classification":
        q = color.num_ab_bins()
        out_ch = cfg.model_config.get("out_channels")
        if out_ch is None:
            updates["model_config"] = {**cfg.model_config, "out_channels": q}
        elif out_ch != q:
            raise ConfigError(
                f"{source}: model_config.out_channels={out_ch} but the classification objective needs "
                f"Q={q} (color.num_ab_bins()); leave it out to have it filled in"
            )
    else:
        out_ch = cfg.model_config.get("out_channels")
        if out_ch is None:
            updates["model_config"] = {**cfg.model_config, "out_channels": 2}
        elif out_ch != 2:
            raise ConfigError(
                f"{source}: model_config.out_channels={out_ch} but the {cfg.objective} objective regresses ab (2)"
            )
    return dataclasses.replace(cfg, **updates) if updates else cfg


# ------------------------------------------------------------------------------------------------
# Small helpers: atomic files, distributed info, schedules
# ------------------------------------------------------------------------------------------------


def _atomic_save_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    with cio.atomic_path(path) as tmp:
        # clone: safetensors refuses tensors that share storage
        save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(tmp))


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n"


@dataclass(frozen=True)
class _Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    enabled: bool
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"config field 'device': {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config field 'device' is {name!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def _init_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = _resolve_device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return _Dist(rank, world, local_rank, device, world > 1, False)
    if world <= 1:
        return _Dist(0, 1, 0, _resolve_device(device_name, 0), False, False)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return _Dist(rank, world, local_rank, device, True, True)


def _init_generator(generator: nn.Module, cfg: TrainConfig) -> None:
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


def _stage_table(cfg: TrainConfig) -> list[tuple[int, int, dict[str, Any], float]]:
    """``[(start, end, objective options, lr_scale)]`` covering ``[0, steps)``."""
    if not cfg.stages:
        return [(0, cfg.steps, {}, 1.0)]
    table = []
    start = 0
    for i, stage in enumerate(cfg.stages):
        last = i == len(cfg.stages) - 1
        end = cfg.steps if last else start + int(stage["steps"])
        options = {k: v for k, v in stage.items() if k not in ("steps", "lr_scale", "name", "crop")}
        table.append((start, max(end, start), options, float(stage.get("lr_scale", 1.0))))
        start = end
    return table


def _stage_index(table: Sequence[tuple[int, int, dict[str, Any], float]], step: int) -> int:
    for i, (start, end, _, _) in enumerate(table):
        if start <= step < end:
            return i
    return len(table) - 1


def _crop_at(cfg: TrainConfig, table: Sequence[tuple[int, int, dict[str, Any], float]], step: int) -> int:
    """Training crop side at ``step``: the stage's ``crop`` (progressive resolution) or ``cfg.crop``."""
    if not cfg.stages:
        return cfg.crop
    return int(cfg.stages[_stage_index(table, step)].get("crop") or cfg.crop)


def _lr_factor(cfg: TrainConfig, table: Sequence[tuple[int, int, dict[str, Any], float]], step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, cosine decay to ``min_lr_ratio``,
    times the current stage's ``lr_scale``."""
    warm = int(cfg.warmup_steps or 0)
    if step < warm:
        base = (step + 1) / warm
    else:
        progress = min(1.0, (step - warm) / max(1, cfg.steps - warm))
        base = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base * table[_stage_index(table, step)][3]


# ------------------------------------------------------------------------------------------------
# Data: deterministic order and augmentation
# ------------------------------------------------------------------------------------------------


def _mix(*values: int) -> int:
    """Deterministic 63-bit hash of integers (SplitMix64 steps)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x = z ^ (z >> 31)
    return x & 0x7FFFFFFFFFFFFFFF


class _SeededSamples(Dataset):
    """Wraps a dataset so that ``ds[(index, seed)]`` draws its random augmentation from ``seed``.

    The torch, NumPy and ``random`` global generators are seeded for the duration of the call and
    restored afterwards, so the sample depends only on ``(index, seed)`` - in the main process or
    in any worker.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, seed, crop = key
        py_state = random.getstate()
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (2**32))
            saved_crop = self.dataset.crop
            self.dataset.crop = crop
            try:
                return self.dataset[index]
            finally:
                self.dataset.crop = saved_crop
                random.setstate(py_state)
                np.random.set_state(np_state)


class _StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``(index, sample_seed)`` whose content depends only on ``(seed, step)``.

    Each global step consumes ``batch_size * world`` indices of a per-epoch permutation (seeded by
    ``seed`` and the epoch); rank ``r`` takes its contiguous slice.  Iteration starts at
    ``start_step`` so a resumed run continues the same sequence.
    """

    def __init__(
        self, n: int, batch_size: int, rank: int, world: int, seed: int, start_step: int, crop_at: Any
    ) -> None:
        self.crop_at = crop_at
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world
        self.seed, self.start_step = seed, start_step
        self.per_step = batch_size * world
        if n < self.per_step:
            raise ConfigError(
                f"the training data holds {n} images, fewer than one global batch "
                f"({batch_size} x {world} processes); lower batch_size or add data"
            )
        self.steps_per_epoch = n // self.per_step

    def __len__(self) -> int:  # pragma: no cover - endless; DataLoader only needs it for len()
        return 2**62

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        epoch, perm = -1, None
        while True:
            e, within = divmod(step, self.steps_per_epoch)
            if e != epoch:
                gen = torch.Generator().manual_seed(_mix(self.seed, e, 1))
                perm = torch.randperm(self.n, generator=gen).tolist()
                epoch = e
            assert perm is not None
            lo = within * self.per_step + self.rank * self.batch_size
            crop = int(self.crop_at(step))
            yield [
                (perm[lo + j], _mix(self.seed, step, self.rank * self.batch_size + j, 2), crop)
                for j in range(self.batch_size)
            ]
            step += 1


# ------------------------------------------------------------------------------------------------
# State (safetensors + JSON)
# ------------------------------------------------------------------------------------------------


def _flatten_optimizer(sd: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                extra.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "non_tensor_state": extra}


def _unflatten_optimizer(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("non_tensor_state", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    np_state = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py = random.getstate()
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        states = list(tensors["cuda"].unbind(0))
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


class _EMA:
    """Exponential moving average of a generator's weights (buffers are copied).

    The effective decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        d = min(self.decay, (1 + num_updates) / (10 + num_updates))
        for ema_p, p in zip(self.module.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), model.buffers()):
            ema_b.copy_(b)


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def _quality(pred_rgb: Tensor, gt_rgb: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image PSNR and SSIM of RGB in [0, 1] (colorization.metrics when available)."""
    try:
        from colorization import metrics as _metrics  # written by the evaluation engineer

        return _metrics.psnr(pred_rgb, gt_rgb), _metrics.ssim(pred_rgb, gt_rgb)
    except (ImportError, AttributeError):
        from colorization.losses import psnr, ssim

        return psnr(pred_rgb, gt_rgb), ssim(pred_rgb, gt_rgb, reduction="none")


# ------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    step: int
    finished: bool
    out: Path
    metrics: dict[str, float]
    images_seen: int
    wall_time_s: float
    images_per_s: float
    objective: Objective
    ema_generator: nn.Module | None = None
    model_dir: Path | None = None
    world_size: int = 1
    backend: str | None = None  # torch.distributed backend of a multi-process run


class _Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool, progress: bool) -> None:
        self.cfg = cfg
        self.resume = resume
        self.progress = progress
        self.out = Path(cfg.out)
        self.state_dir = self.out / "state"
        self.dist = _init_distributed(cfg.device)
        self.device = self.dist.device
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)

    # --- setup -----------------------------------------------------------------------------------
    def _check_out_dir(self) -> dict[str, Any] | None:
        """Returns the saved meta.json when resuming from existing state."""
        latest = self.state_dir / "latest.json"
        if latest.is_file():
            if not self.resume:
                raise ConfigError(
                    f"{self.out} already holds a training run (state/latest.json); pass --resume to "
                    "continue it or choose another --out"
                )
            pointer = json.loads(latest.read_text(encoding="utf-8"))
            step_dir = self.state_dir / pointer["dir"]
            meta = json.loads((step_dir / "meta.json").read_text(encoding="utf-8"))
            meta["_dir"] = str(step_dir)
            return meta
        if self.resume and self.dist.is_main:
            print(f"[train] --resume: no saved state in {self.state_dir}, starting from step 0", flush=True)
        return None

    def _check_resume_config(self, saved: Mapping[str, Any], saved_step: int) -> None:
        mine = self.cfg.to_dict()
        diffs = [
            f"{k}: saved {saved.get(k)!r}, now {mine.get(k)!r}"
            for k in mine
            if k not in RUNTIME_FIELDS and k != "steps" and saved.get(k) != mine.get(k)
        ]
        if mine["steps"] < int(saved_step):
            diffs.append(f"steps: the saved run is at step {saved_step}, more than the {mine['steps']} asked for")
        if diffs:
            raise ConfigError(
                "--resume with a config that differs from the saved run "
                f"({self.out / 'train_config.json'}): " + "; ".join(diffs)
            )

    def _build_data(self) -> None:
        cfg = self.cfg
        self.with_labels = float(cfg.objective_options.get("aux_weight", 0.0)) > 0 or any(
            float(s.get("aux_weight", 0.0)) > 0 for s in cfg.stages
        )
        score_workers = max(1, min(cfg.workers, os.cpu_count() or 1))
        show = self.progress and self.dist.is_main
        if not self.dist.is_main:
            self.dist.barrier()  # rank 0 scores the images (cached) first; the others then read the cache
        self.train_ds = cdata.ImageFolderDataset(
            list(cfg.data),
            crop=cfg.crop,
            train=True,
            scale_jitter=tuple(cfg.scale_jitter),
            hflip=cfg.hflip,
            min_colorfulness_quantile=cfg.min_colorfulness_quantile,
            drop_grayscale=cfg.drop_grayscale,
            max_images=cfg.max_images,
            with_labels=self.with_labels,
            seed=cfg.seed,
            score_workers=score_workers,
            progress=show,
        )
        if self.with_labels:
            n_classes = len(self.train_ds.class_names)
            if n_classes == 0:
                raise ConfigError(
                    "aux_weight > 0 but no training file name carries a class label ('<label>_<name>')"
                )
            from colorization.models import get_config_class, list_models

            has_head_field = cfg.model in list_models() and "num_classes" in {
                f.name for f in dataclasses.fields(get_config_class(cfg.model))
            }
            if has_head_field and "num_classes" not in cfg.model_config:
                # fill in the auxiliary head size from the data (recorded in train_config.json)
                self.cfg = cfg = dataclasses.replace(cfg, model_config={**cfg.model_config, "num_classes": n_classes})
        self.val_ds = None
        if cfg.val is not None and cfg.val_images > 0:
            self.val_ds = cdata.ImageFolderDataset(
                [cfg.val],
                crop=int(cfg.val_crop or cfg.crop),
                train=False,
                drop_grayscale=cfg.drop_grayscale,
                max_images=cfg.val_images,
                seed=cfg.seed,
                score_workers=score_workers,
                progress=show,
            )
        if self.dist.is_main:
            self.dist.barrier()

    def _build_objective(self) -> None:
        cfg = self.cfg
        if cfg.model not in list_models("generator"):
            raise ConfigError(f"config field 'model': {cfg.model!r} is not a registered generator; valid: {list_models('generator')}")
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        try:
            generator = create_model(cfg.model, **cfg.model_config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"config field 'model_config': {exc}") from None
        if cfg.init_from is not None:
            _init_generator(generator, cfg)
        sizes = [(cfg.crop, "crop"), (cfg.val_crop or cfg.crop, "val_crop")]
        sizes += [(int(st["crop"]), f"stages[{i}].crop") for i, st in enumerate(cfg.stages) if st.get("crop")]
        for size, name in sizes:
            if size % generator.stride:
                raise ConfigError(
                    f"config field {name!r}: {size} px is not a multiple of model {cfg.model!r}'s stride {generator.stride}"
                )
        discriminator = None
        if cfg.objective == "gan":
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
        if self.with_labels:
            if not hasattr(generator, "forward_with_aux"):
                raise ConfigError(
                    f"aux_weight > 0 but model {cfg.model!r} has no auxiliary class head (forward_with_aux); "
                    "use e.g. 'fusion' with num_classes > 0 or set aux_weight to 0"
                )
            n_classes = len(self.train_ds.class_names)
            head = getattr(generator.config, "num_classes", None)
            if head is not None and head < n_classes:
                raise ConfigError(
                    f"config field 'model_config': num_classes={head} but the training data has {n_classes} "
                    "classes (leave num_classes out to have it filled in)"
                )
        self.table = _stage_table(cfg)
        self.base_options = objective.options()
        for _, _, stage_options, _ in self.table:  # validate every stage's options up front
            try:
                objective.configure(**{**self.base_options, **stage_options})
            except ValueError as exc:
                raise ConfigError(f"config field 'stages': {exc}") from None
        objective.configure(**self.base_options)
        objective.to(self.device)
        if self._channels_last:
            objective.to(memory_format=torch.channels_last)
        self.objective = objective
        self.ema = _EMA(objective.generator, cfg.ema_decay) if cfg.ema else None

        self.optimizers: dict[str, torch.optim.Optimizer] = {}
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
            self.optimizers[phase] = opt

        model: nn.Module = objective
        if self.dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=objective.find_unused_parameters,
            )
        if cfg.compile:
            model = torch.compile(model)
        self.model = model

    # --- state ---------------------------------------------------------------------------------------
    def _save_state(self, step: int, images_seen: int, wall: float, last_val: dict[str, float]) -> None:
        step_name = f"step_{step:08d}"
        step_dir = self.state_dir / step_name
        if self.dist.is_main and step_dir.exists():
            shutil.rmtree(step_dir)
        self.dist.barrier()
        step_dir.mkdir(parents=True, exist_ok=True)  # every rank: nodes may not share a filesystem
        rng_t, rng_meta = _rng_state()
        _atomic_save_tensors(step_dir / f"rng_rank{self.dist.rank}.safetensors", rng_t)
        cio.atomic_write_text(step_dir / f"rng_rank{self.dist.rank}.json", _json_dumps(rng_meta))
        if self.dist.is_main:
            _atomic_save_tensors(step_dir / "objective.safetensors", self.objective.state_dict())
            if self.ema is not None:
                _atomic_save_tensors(step_dir / "ema.safetensors", self.ema.module.state_dict())
            opt_meta = {}
            for phase, opt in self.optimizers.items():
                tensors, meta = _flatten_optimizer(opt.state_dict())
                _atomic_save_tensors(step_dir / f"optimizer_{phase}.safetensors", tensors)
                opt_meta[phase] = meta
            meta = {
                "format_version": STATE_FORMAT_VERSION,
                "step": step,
                "images_seen": images_seen,
                "wall_time_s": wall,
                "world_size": self.dist.world,
                "optimizers": opt_meta,
                "last_val": last_val,
                "config": self.cfg.to_dict(),
            }
            cio.atomic_write_text(step_dir / "meta.json", _json_dumps(meta))
        self.dist.barrier()
        if self.dist.is_main:
            cio.atomic_write_text(self.state_dir / "latest.json", _json_dumps({"step": step, "dir": step_name}))
            for old in self.state_dir.glob("step_*"):
                if old.name != step_name and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        self.dist.barrier()

    def _load_state(self, meta: Mapping[str, Any]) -> None:
        step_dir = Path(meta["_dir"])
        if meta.get("format_version") != STATE_FORMAT_VERSION:
            raise ConfigError(f"{step_dir}/meta.json: unsupported state format {meta.get('format_version')!r}")
        sd = load_file(step_dir / "objective.safetensors", device=str(self.device))
        self.objective.load_state_dict(sd, strict=True)
        if self.ema is not None:
            ema_path = step_dir / "ema.safetensors"
            if not ema_path.is_file():
                raise ConfigError(f"{ema_path} is missing although the run uses EMA")
            self.ema.module.load_state_dict(load_file(ema_path, device=str(self.device)), strict=True)
        for phase, opt in self.optimizers.items():
            tensors = load_file(step_dir / f"optimizer_{phase}.safetensors")
            opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizers"][phase]))
        rng_path = step_dir / f"rng_rank{self.dist.rank}.safetensors"
        if rng_path.is_file():
            rng_meta = json.loads((step_dir / f"rng_rank{self.dist.rank}.json").read_text(encoding="utf-8"))
            _set_rng_state(load_file(rng_path), rng_meta)
        else:
            warnings.warn(
                f"{rng_path} missing (the run had {meta.get('world_size')} processes, now {self.dist.world}); "
                "this rank's random state starts fresh",
                stacklevel=2,
            )

    def _trim_log(self, step: int) -> None:
        """Drop log lines written after the resumed step (they will be written again)."""
        log = self.out / "log.jsonl"
        if not log.is_file():
            return
        kept = []
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        cio.atomic_write_text(log, "".join(line + "\n" for line in kept))

    def _log(self, record: Mapping[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")

    @property
    def _channels_last(self) -> bool:
        """channels_last memory on CUDA, and on the CPU with bf16 autocast (where it measures faster)."""
        return self.cfg.channels_last and (self.device.type == "cuda" or self.cfg.amp == "bf16")

    # --- validation --------------------------------------------------------------------------------
    def _autocast(self):
        cfg = self.cfg
        enabled = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    @torch.no_grad()
    def _validate(self, step: int) -> dict[str, float]:
        assert self.val_ds is not None
        generator = self.ema.module if self.ema is not None else self.objective.generator
        was_training = self.objective.training
        self.objective.eval()
        psnrs, ssims, cf_pred, cf_gt = [], [], [], []
        rows: list[Tensor] = []
        loader = DataLoader(self.val_ds, batch_size=min(16, self.cfg.val_images), shuffle=False, num_workers=0)
        try:
            for batch in loader:
                rgb_u8 = batch["rgb"].to(self.device)
                l_norm, _ = cdata.batch_to_lab(rgb_u8, self.device)
                if self._channels_last:
                    l_norm = l_norm.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    ab_pred = self.objective.predict(l_norm, generator=generator)
                pred = color.l_ab_to_rgb(l_norm.float(), ab_pred.float())
                gt = rgb_u8.float() / 255.0
                p, s = _quality(pred, gt)
                psnrs.append(p.cpu())
                ssims.append(s.cpu())
                cf_pred.append(color.colorfulness(pred).cpu())
                cf_gt.append(color.colorfulness(gt).cpu())
                if sum(r.shape[0] for r in rows) < self.cfg.sample_images:
                    gray = color.l_ab_to_rgb(l_norm.float(), torch.zeros_like(ab_pred))
                    rows.append(torch.cat([gt, gray, pred], dim=3).cpu())
        finally:
            self.objective.train(was_training)
        metrics = {
            "psnr": float(torch.cat(psnrs).mean()),
            "ssim": float(torch.cat(ssims).mean()),
            "colorfulness_pred": float(torch.cat(cf_pred).mean()),
            "colorfulness_gt": float(torch.cat(cf_gt).mean()),
            "images": int(torch.cat(psnrs).numel()),
        }
        if rows and self.cfg.sample_images > 0:
            grid = torch.cat(rows, dim=0)[: self.cfg.sample_images]  # (N, 3, H, 3W)
            grid = torch.cat(list(grid), dim=1).clamp(0, 1)  # (3, N*H, 3W)
            cio.save_image(cio.tensor_to_pil(grid), self.out / "samples" / f"step_{step:06d}.png", overwrite=True)
        return metrics

    # --- main loop -----------------------------------------------------------------------------------
    def run(self, stop_after: int | None, time_limit: float | None, export_now: bool = False) -> TrainResult:
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        saved_meta = self._check_out_dir()
        self._build_data()
        if saved_meta is not None:
            self._check_resume_config(saved_meta["config"], int(saved_meta["step"]))
        self._build_objective()
        cfg = self.cfg  # as completed by _build_data (e.g. num_classes of an auxiliary head)

        step, images_seen, wall_before, last_val = 0, 0, 0.0, {}
        if saved_meta is not None:
            self._load_state(saved_meta)
            step = int(saved_meta["step"])
            images_seen = int(saved_meta["images_seen"])
            wall_before = float(saved_meta["wall_time_s"])
            last_val = dict(saved_meta.get("last_val") or {})
            if self.dist.is_main:
                self._trim_log(step)
                print(f"[train] resumed from {saved_meta['_dir']} at step {step}", flush=True)
        else:
            # each rank draws its own random numbers (dropout, ...) from here on
            torch.manual_seed(_mix(cfg.seed, self.dist.rank, 3))
            random.seed(_mix(cfg.seed, self.dist.rank, 4))
            np.random.seed(_mix(cfg.seed, self.dist.rank, 5) % (2**32))
        if self.dist.is_main:
            cio.atomic_write_text(self.out / "train_config.json", _json_dumps(cfg.to_dict()))
            if step == 0:
                self._log({"kind": "start", "step": 0, "world_size": self.dist.world, "device": str(self.device),
                           "train_images": len(self.train_ds), "val_images": len(self.val_ds) if self.val_ds else 0})

        if export_now:
            return self._export_saved(step, images_seen, wall_before, last_val)

        sampler = _StepBatchSampler(
            len(self.train_ds), cfg.batch_size, self.dist.rank, self.dist.world, cfg.seed, step,
            functools.partial(_crop_at, cfg, self.table),
        )
        loader = DataLoader(
            _SeededSamples(self.train_ds),
            batch_sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if cfg.workers > 0 else None,
        )
        result = self._loop(loader, step, images_seen, wall_before, last_val, stop_after, time_limit)
        return result

    def _loop(
        self,
        loader: DataLoader,
        step: int,
        images_seen: int,
        wall_before: float,
        last_val: dict[str, float],
        stop_after: int | None,
        time_limit: float | None,
    ) -> TrainResult:
        from tqdm.auto import tqdm

        cfg, objective, device = self.cfg, self.objective, self.device
        multi_phase = len(objective.all_phases) > 1
        start_step = step
        t_start = time.perf_counter()
        stage_idx = -1
        pending: list[tuple[int, dict[str, Tensor]]] = []
        window_t, window_images = time.perf_counter(), 0
        images_per_s = 0.0
        bar = tqdm(
            total=cfg.steps,
            initial=step,
            desc=f"train {cfg.model}",
            unit="step",
            disable=not (self.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        objective.train()
        data_iter = iter(loader)
        stopped_early = False

        def sync() -> dict[str, float]:
            """Check the pending losses for NaN/inf (all ranks agree) and return their means."""
            nonlocal pending
            if not pending:
                return {}
            keys = sorted({k for _, rec in pending for k in rec})
            sums = torch.zeros(len(keys) + 1, dtype=torch.float64, device=device)
            counts = torch.zeros(len(keys), dtype=torch.float64, device=device)
            bad_steps = []
            for s, rec in pending:
                vals = torch.stack([rec[k].double() if k in rec else torch.zeros((), dtype=torch.float64, device=device) for k in keys])
                present = torch.tensor([k in rec for k in keys], dtype=torch.float64, device=device)
                sums[:-1] += vals * present
                counts += present
                bad_steps.append((~torch.isfinite(vals)).any())
            bad = torch.stack(bad_steps)
            first_local = pending[int(bad.nonzero()[0])][0] if bool(bad.any()) else 2**62
            sums[-1] = 0.0
            first = torch.tensor([float(first_local)], dtype=torch.float64, device=device)
            if self.dist.enabled:
                dist.all_reduce(sums)
                dist.all_reduce(counts)
                dist.all_reduce(first, op=dist.ReduceOp.MIN)
            first_bad = int(first.item())
            if first_bad < 2**62:
                rows = [rec for s, rec in pending if s == first_bad]
                values = {k: float(v) for k, v in rows[0].items()} if rows else {}
                pending = []
                raise NonFiniteLossError(first_bad, values, str(self.out))
            means = (sums[:-1] / counts.clamp_min(1)).tolist()
            pending = []
            return {k: float(v) for k, v in zip(keys, means)}

        def agree(flag: bool) -> bool:
            """True on every rank when ``flag`` is true on any rank."""
            if not self.dist.enabled:
                return flag
            t = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return bool(t.item() > 0)

        try:
            while step < cfg.steps:
                # stage switch
                idx = _stage_index(self.table, step)
                if idx != stage_idx:
                    objective.configure(**{**self.base_options, **self.table[idx][2]})
                    if stage_idx != -1 and self.dist.is_main:
                        self._log({"kind": "stage", "step": step, "stage": idx, "options": objective.options()})
                    stage_idx = idx

                batch_cpu = next(data_iter)
                rgb = batch_cpu["rgb"].to(device, non_blocking=True)
                l_norm, ab_norm = cdata.batch_to_lab(rgb, device)
                if self._channels_last:
                    l_norm = l_norm.contiguous(memory_format=torch.channels_last)
                    ab_norm = ab_norm.contiguous(memory_format=torch.channels_last)
                batch: dict[str, Tensor] = {"l": l_norm, "ab": ab_norm}
                if self.with_labels:
                    batch["label"] = torch.as_tensor(batch_cpu["label"]).to(device, non_blocking=True).long()

                factor = _lr_factor(cfg, self.table, step)  # a function of the step: nothing to save
                for opt in self.optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * factor
                record: dict[str, Tensor] = {}
                for phase in objective.phases:
                    opt = self.optimizers[phase]
                    opt.zero_grad(set_to_none=True)
                    with self._autocast():
                        out = self.model(batch, phase)
                    loss = out["loss"]
                    loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(objective.phase_parameters(phase), cfg.grad_clip)
                    opt.step()
                    prefix = f"{phase}/" if multi_phase else ""
                    for k, v in out.items():
                        record[prefix + k] = v.detach()
                step += 1
                if self.ema is not None:
                    self.ema.update(objective.generator, step)
                images_seen += cfg.batch_size * self.dist.world
                window_images += cfg.batch_size * self.dist.world
                pending.append((step, record))
                bar.update(1)

                final = step >= cfg.steps
                elapsed = time.perf_counter() - t_start
                stop_now = stop_after is not None and step - start_step >= stop_after
                if time_limit is not None and not final and not stop_now and step % cfg.log_every == 0:
                    stop_now = agree(elapsed >= time_limit)  # decided together so no rank waits alone
                do_log = step % cfg.log_every == 0 or final or stop_now
                do_val = self.val_ds is not None and (step % cfg.val_every == 0 or final)
                do_save = step % cfg.save_every == 0 or final or stop_now
                if do_log or do_val or do_save:
                    means = sync()
                    images_per_s = window_images / max(time.perf_counter() - window_t, 1e-9)
                    if do_log:
                        lr = self.optimizers[objective.all_phases[-1]].param_groups[0]["lr"]
                        self._log({"kind": "train", "step": step, **means, "lr": lr, "stage": stage_idx,
                                   "images_per_s": round(images_per_s, 2), "images_seen": images_seen,
                                   "wall_time_s": round(wall_before + elapsed, 2)})
                        main_loss = means.get("loss", means.get("generator/loss", float("nan")))
                        bar.set_postfix(loss=f"{main_loss:.4f}", img_s=f"{images_per_s:.1f}")
                    if do_val:
                        if self.dist.is_main:
                            last_val = self._validate(step)
                            self._log({"kind": "val", "step": step, **last_val})
                        self.dist.barrier()
                    if do_save:
                        self._save_state(step, images_seen, wall_before + elapsed, last_val)
                    # the next throughput window starts after validation and saving
                    window_t, window_images = time.perf_counter(), 0
                if stop_now and not final:
                    stopped_early = True
                    break
        finally:
            bar.close()

        wall = wall_before + (time.perf_counter() - t_start)
        total_rate = (step - start_step) * cfg.batch_size * self.dist.world / max(time.perf_counter() - t_start, 1e-9)
        result = TrainResult(
            step=step,
            finished=not stopped_early and step >= cfg.steps,
            out=self.out,
            metrics=dict(last_val),
            images_seen=images_seen,
            wall_time_s=wall,
            images_per_s=total_rate,
            objective=objective,
            ema_generator=self.ema.module if self.ema is not None else None,
            world_size=self.dist.world,
            backend=dist.get_backend() if self.dist.enabled else None,
        )
        if result.finished:
            result.model_dir = self._export(result)
        elif self.dist.is_main:
            print(f"[train] stopped at step {step}/{cfg.steps}; continue with --resume", flush=True)
        return result

    def _export_saved(self, step: int, images_seen: int, wall: float, last_val: dict[str, float]) -> TrainResult:
        """Export the model of the saved state as it is (e.g. after a time-limited run), validating first."""
        if step == 0:
            raise ConfigError(f"export: no saved training state in {self.state_dir}")
        metrics = self._validate(step) if self.val_ds is not None else dict(last_val)
        result = TrainResult(
            step=step,
            finished=step >= self.cfg.steps,
            out=self.out,
            metrics=metrics,
            images_seen=images_seen,
            wall_time_s=wall,
            images_per_s=0.0,
            objective=self.objective,
            ema_generator=self.ema.module if self.ema is not None else None,
            world_size=self.dist.world,
            backend=dist.get_backend() if self.dist.enabled else None,
        )
        result.model_dir = self._export(result)
        return result

    def _export(self, result: TrainResult) -> Path:
        model_dir = self.out / "model"
        if self.dist.is_main:
            generator = self.ema.module if self.ema is not None else self.objective.generator
            cfg = self.cfg
            training = {
                "recipe": {
                    "objective": cfg.objective,
                    "objective_options": self.base_options,
                    "stages": [dict(s) for s in cfg.stages],
                    "discriminator": cfg.discriminator if cfg.objective == "gan" else None,
                    "lr": cfg.lr,
                    "batch_size": cfg.batch_size,
                    "world_size": self.dist.world,
                    "crop": cfg.crop,
                    "ema": cfg.ema,
                    "ema_decay": cfg.ema_decay if cfg.ema else None,
                    "amp": cfg.amp,
                    "seed": cfg.seed,
                },
                "data": list(cfg.data),
                "val": cfg.val,
                "train_images": len(self.train_ds),
                "class_names": list(getattr(self.train_ds, "class_names", []) or []) if self.with_labels else None,
                "steps": result.step,
                "planned_steps": cfg.steps,
                "stopped_early": result.step < cfg.steps,
                "images_seen": result.images_seen,
                "wall_time_s": round(result.wall_time_s, 2),
                "device": str(self.device) if self.device.type != "cuda" else torch.cuda.get_device_name(self.device),
                "train_config": cfg.to_dict(),
            }
            extra: dict[str, Any] = {"training": training, "metrics": {"val": dict(result.metrics)}}
            if cfg.working_size is not None:
                extra["working_size"] = int(cfg.working_size)
            if self.objective.head == "classification":
                extra["temperature"] = getattr(self.objective, "temperature", 0.38)
            was_training = generator.training
            generator.eval()
            try:
                checkpoint.save_exported(generator, model_dir, head=self.objective.head, extra=extra)
            finally:
                generator.train(was_training)
            print(f"[train] exported {model_dir}", flush=True)
        self.dist.barrier()
        return model_dir

    def close(self) -> None:
        if self.dist.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit: float | None = None,
    export_now: bool = False,
) -> TrainResult:
    """Train a model as described by ``config`` (see the module docstring for the outputs).

    Args:
        config: resolved config (see :func:`resolve_config`).
        resume: continue from ``config.out/state`` if it exists (starts at step 0 otherwise).
            Without it, an ``out`` folder that already holds state is refused.
        progress: show the tqdm bar (rank 0 only).
        stop_after: stop (saving state) after this many steps in this invocation.
        time_limit: stop (saving state) once this many seconds have passed in this invocation.
        export_now: with ``resume``, export ``OUT/model/`` from the saved state without training
            further (the exported config records ``steps`` < ``planned_steps``).

    Returns:
        :class:`TrainResult`; ``finished`` is True and ``model_dir`` set when all steps are done.

    Raises:
        ConfigError: invalid config, mismatched resume, data or model problems.
        NonFiniteLossError: a loss became NaN/inf (the last saved state is kept).
    """
    trainer = _Trainer(config, resume=resume, progress=progress)
    try:
        return trainer.run(stop_after, time_limit, export_now)
    finally:
        trainer.close()
