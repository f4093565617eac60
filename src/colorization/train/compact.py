"""State for runs that outlive their machine: the compact state file and the curve CSV.

A long run (days, across machines whose run folders are lost) keeps two small files that can be
committed to a repository:

* the *compact state* (``compact_state``): one safetensors file, rewritten at every state save,
  holding the generator's trainable weights and buffers and their EMA in bfloat16, with the step,
  images seen, wall time, last validation and the run's config in its metadata. ``--resume``
  restores a run from it when ``OUT/state/`` is missing. What it leaves out is rebuilt: frozen
  weights come from the model's own initialisation (pretrained encoder, ``init_from``), the
  optimizer moments start from zero (the learning rate then re-warms over
  :data:`REWARM_STEPS` steps), and the random states are re-seeded from the step, so a restored
  run continues the same data order but is not bit-identical to an uninterrupted one.
* the *curve CSV* (``curve_csv``): one row per validation (images seen, training loss, val and
  held-out PSNR and colourfulness, ...).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

from colorization import image_io
from colorization.train.config import ConfigError

__all__ = [
    "COMPACT_FORMAT",
    "REWARM_STEPS",
    "CURVE_COLUMNS",
    "compact_tensors",
    "save_compact",
    "read_compact",
    "restore_compact",
    "append_curve_row",
    "trim_curve",
]

COMPACT_FORMAT = "colorization-compact-state/1"
REWARM_STEPS = 200
"""Steps over which the learning rate ramps up again after a restore from the compact state (the
optimizer's moments start from zero there)."""
CURVE_COLUMNS = (
    "step", "images_seen", "wall_time_s", "loss", "lr",
    "val_psnr", "val_psnr_gray", "val_colorfulness", "val_colorfulness_gt",
    "holdout_psnr", "holdout_psnr_gray", "holdout_colorfulness", "holdout_colorfulness_gt",
    "seen_psnr", "seen_psnr_gray",
)


def compact_tensors(module: nn.Module) -> dict[str, Tensor]:
    """The entries of ``module``'s state dict that training changes: trainable parameters and
    every buffer (frozen parameters are left out)."""
    frozen = {name for name, p in module.named_parameters() if not p.requires_grad}
    return {k: v for k, v in module.state_dict().items() if k not in frozen}


def save_compact(path: str | Path, generator: nn.Module, ema: nn.Module | None, meta: Mapping[str, Any]) -> int:
    """Write the compact state atomically; returns its size in bytes.

    Args:
        generator: the trained network (``gen.`` keys).
        ema: its EMA copy (``ema.`` keys), or None.
        meta: JSON-serialisable facts (step, images_seen, wall_time_s, last_val, config).
    """
    tensors: dict[str, Tensor] = {}
    keys = compact_tensors(generator).keys()  # the EMA copy's parameters are all frozen: take the generator's
    for prefix, module in (("gen.", generator), ("ema.", ema)):
        if module is None:
            continue
        sd = module.state_dict()
        for k in keys:
            v = sd[k].detach().to("cpu")
            tensors[prefix + k] = (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous().clone()
    data = save_bytes(tensors, metadata={"format": COMPACT_FORMAT, "meta": json.dumps(dict(meta), allow_nan=True)})
    image_io.atomic_write_bytes(path, data)
    return len(data)


def read_compact(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a compact state file; a file of another format raises ConfigError."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ConfigError(f"compact state {path}: cannot read it ({exc})") from None
    if metadata.get("format") != COMPACT_FORMAT:
        raise ConfigError(f"compact state {path}: not a {COMPACT_FORMAT} file (format {metadata.get('format')!r})")
    return tensors, json.loads(metadata["meta"])


def _load_into(module: nn.Module, tensors: Mapping[str, Tensor], prefix: str, path: Path,
               expected: set[str], fallback: str | None = None) -> None:
    """Copy the ``prefix`` entries into ``module``; with ``fallback``, an expected entry missing under
    ``prefix`` is taken from the ``fallback`` prefix instead."""
    got = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if fallback is not None:
        for k in expected - set(got):
            if fallback + k in tensors:
                got[k] = tensors[fallback + k]
    missing, extra = sorted(expected - set(got)), sorted(set(got) - expected)
    if missing or extra:
        raise ConfigError(f"compact state {path} does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        sd = module.state_dict()
        for k, v in got.items():
            if sd[k].shape != v.shape:
                raise ConfigError(f"compact state {path}: {k} has shape {tuple(v.shape)}, "
                                  f"the model {tuple(sd[k].shape)}")
            sd[k].copy_(v.to(sd[k].dtype))


def restore_compact(path: str | Path, generator: nn.Module, ema: nn.Module | None) -> dict[str, Any]:
    """Load a compact state into ``generator`` (and ``ema``, from its EMA entries; an entry the file
    lacks, as in files written before the EMA's weights were kept, comes from the generator's);
    returns its meta."""
    path = Path(path)
    tensors, meta = read_compact(path)
    expected = set(compact_tensors(generator))
    _load_into(generator, tensors, "gen.", path, expected)
    if ema is not None:
        _load_into(ema, tensors, "ema.", path, expected, fallback="gen.")
    return meta


def _row(step: int, images_seen: int, wall: float, train: Mapping[str, float], val: Mapping[str, float]) -> dict:
    row: dict[str, Any] = {"step": step, "images_seen": images_seen, "wall_time_s": round(wall, 1),
                           "loss": train.get("loss", train.get("generator/loss")), "lr": train.get("lr")}
    for prefix, name in (("", "val"), ("holdout/", "holdout"), ("seen/", "seen")):
        for key, column in (("psnr", "psnr"), ("psnr_gray", "psnr_gray"), ("colorfulness_pred", "colorfulness"),
                            ("colorfulness_gt", "colorfulness_gt")):
            if f"{name}_{column}" in CURVE_COLUMNS:
                row[f"{name}_{column}"] = val.get(prefix + key)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def append_curve_row(path: str | Path, step: int, images_seen: int, wall: float, train: Mapping[str, float],
                     val: Mapping[str, float]) -> None:
    """Append one row (header first in a new file), rewriting the file atomically."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CURVE_COLUMNS), lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow(_row(step, images_seen, wall, train, val))
    image_io.atomic_write_text(path, old + buf.getvalue())


def trim_curve(path: str | Path, step: int) -> None:
    """Drop the rows after ``step`` (a resumed run replays those steps)."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",", 1)[0]) <= step]
    if len(kept) != len(lines):
        image_io.atomic_write_text(path, "".join(kept))
