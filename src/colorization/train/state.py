"""Resumable training state under ``OUT/state/`` (safetensors for tensors, JSON for the rest; no pickles).

Layout (``STATE_FORMAT_VERSION`` 1)::

    state/latest.json                    {"step": k, "dir": "step_XXXXXXXX"}, written last
    state/step_XXXXXXXX/objective.safetensors       the objective's state dict (generator, ...)
    state/step_XXXXXXXX/ema.safetensors             EMA weights (runs with ema on)
    state/step_XXXXXXXX/optimizer_<phase>.safetensors   tensor state, keyed "<param id>.<name>"
    state/step_XXXXXXXX/rng_rank<r>.safetensors      torch (and CUDA) RNG state, NumPy's key
    state/step_XXXXXXXX/rng_rank<r>.json             the rest of NumPy's and Python's RNG state
    state/step_XXXXXXXX/meta.json                    format_version, step, images_seen,
        wall_time_s, world_size, optimizers (param groups + non-tensor state), last_val, config

Every file is written atomically; the previous ``step_*`` folder is removed only after
``latest.json`` points at the new one.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from colorization import image_io
from colorization.train.config import ConfigError
from colorization.train.processes import Processes

__all__ = [
    "STATE_FORMAT_VERSION",
    "json_dumps",
    "save_tensors",
    "flatten_optimizer",
    "unflatten_optimizer",
    "rng_state",
    "set_rng_state",
    "read_latest",
    "save_state",
    "load_state",
    "trim_log",
]

STATE_FORMAT_VERSION = 1


def save_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Write ``tensors`` to a safetensors file atomically (on the CPU, contiguous)."""
    with image_io.atomic_path(path) as tmp:
        # clone: safetensors refuses tensors that share storage
        save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(tmp))


def json_dumps(obj: Any) -> str:
    """The JSON text of the run's files (``train_config.json``, ``meta.json``, ...)."""
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n"


# --- optimizer state -----------------------------------------------------------------------------


def flatten_optimizer(sd: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer state dict as ``({"<param id>.<name>": tensor}, JSON-able rest)``."""
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


def unflatten_optimizer(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`."""
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


# --- random state --------------------------------------------------------------------------------


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """This process's torch, CUDA, NumPy and Python random state as ``(tensors, JSON-able rest)``."""
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


def set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        states = list(tensors["cuda"].unbind(0))
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# --- the state folder ----------------------------------------------------------------------------


def read_latest(state_dir: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of the latest saved state (its folder under ``"_dir"``), or None."""
    latest = state_dir / "latest.json"
    if not latest.is_file():
        return None
    pointer = json.loads(latest.read_text(encoding="utf-8"))
    step_dir = state_dir / pointer["dir"]
    meta = json.loads((step_dir / "meta.json").read_text(encoding="utf-8"))
    meta["_dir"] = str(step_dir)
    return meta


def save_state(
    state_dir: Path,
    step: int,
    *,
    procs: Processes,
    objective: nn.Module,
    ema: nn.Module | None,
    optimizers: Mapping[str, torch.optim.Optimizer],
    images_seen: int,
    wall_time_s: float,
    last_val: Mapping[str, float],
    config: Mapping[str, Any],
) -> None:
    """Save the state at ``step`` (every rank its random state, rank 0 the rest), then point
    ``latest.json`` at it and remove older states. All ranks must call it."""
    step_name = f"step_{step:08d}"
    step_dir = state_dir / step_name
    if procs.is_main and step_dir.exists():
        shutil.rmtree(step_dir)
    procs.barrier()
    step_dir.mkdir(parents=True, exist_ok=True)  # every rank: nodes may not share a filesystem
    rng_t, rng_meta = rng_state()
    save_tensors(step_dir / f"rng_rank{procs.rank}.safetensors", rng_t)
    image_io.atomic_write_text(step_dir / f"rng_rank{procs.rank}.json", json_dumps(rng_meta))
    if procs.is_main:
        save_tensors(step_dir / "objective.safetensors", objective.state_dict())
        if ema is not None:
            save_tensors(step_dir / "ema.safetensors", ema.state_dict())
        opt_meta = {}
        for phase, opt in optimizers.items():
            tensors, meta = flatten_optimizer(opt.state_dict())
            save_tensors(step_dir / f"optimizer_{phase}.safetensors", tensors)
            opt_meta[phase] = meta
        meta = {
            "format_version": STATE_FORMAT_VERSION,
            "step": step,
            "images_seen": images_seen,
            "wall_time_s": wall_time_s,
            "world_size": procs.world,
            "optimizers": opt_meta,
            "last_val": last_val,
            "config": config,
        }
        image_io.atomic_write_text(step_dir / "meta.json", json_dumps(meta))
    procs.barrier()
    if procs.is_main:
        image_io.atomic_write_text(state_dir / "latest.json", json_dumps({"step": step, "dir": step_name}))
        for old in state_dir.glob("step_*"):
            if old.name != step_name and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    procs.barrier()


def load_state(
    meta: Mapping[str, Any],
    *,
    procs: Processes,
    objective: nn.Module,
    ema: nn.Module | None,
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> None:
    """Load the state that :func:`read_latest` found into the objective, EMA, optimizers and RNGs."""
    step_dir = Path(meta["_dir"])
    device = str(procs.device)
    if meta.get("format_version") != STATE_FORMAT_VERSION:
        raise ConfigError(f"{step_dir}/meta.json: unsupported state format {meta.get('format_version')!r}")
    sd = load_file(step_dir / "objective.safetensors", device=device)
    objective.load_state_dict(sd, strict=True)
    if ema is not None:
        ema_path = step_dir / "ema.safetensors"
        if not ema_path.is_file():
            raise ConfigError(f"{ema_path} is missing although the run uses EMA")
        ema.load_state_dict(load_file(ema_path, device=device), strict=True)
    for phase, opt in optimizers.items():
        tensors = load_file(step_dir / f"optimizer_{phase}.safetensors")
        opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizers"][phase]))
    rng_path = step_dir / f"rng_rank{procs.rank}.safetensors"
    if rng_path.is_file():
        rng_meta = json.loads((step_dir / f"rng_rank{procs.rank}.json").read_text(encoding="utf-8"))
        set_rng_state(load_file(rng_path), rng_meta)
    else:
        warnings.warn(
            f"{rng_path} missing (the run had {meta.get('world_size')} processes, now {procs.world}); "
            "this rank's random state starts fresh",
            stacklevel=3,
        )


def trim_log(log: Path, step: int) -> None:
    """Drop ``log.jsonl`` lines written after the resumed ``step`` (they will be written again)."""
    if not log.is_file():
        return
    kept = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    image_io.atomic_write_text(log, "".join(line + "\n" for line in kept))
