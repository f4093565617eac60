"""Snapshots of a run: the model exported every ``snapshot_every`` training images.

A short adversarial phase peaks and then degrades, and where it peaks is found only by measuring
(DeOldify's "NoGAN" stops it there). With ``snapshot_every: N`` the trainer exports the model it
would validate (the EMA weights when on) through the same code as ``OUT/model/`` each time the
images seen cross a multiple of N, into ``OUT/snapshots/img_XXXXXXXX/`` (the images seen at that
step, zero-padded to 8 digits): ``model.safetensors`` + ``config.json``, loadable by
:class:`~colorization.Colorizer` and comparable with ``benchmarks/``.

Resume: a snapshot is exported before the state of its step is saved, and the data order and the
step maths are functions of the seed and the step, so a run resumed from state at step k replays
the steps after k and exports their snapshots again, to the same folders: none is missing or
doubled. Each snapshot is written to ``img_XXXXXXXX.partial/`` and renamed when complete; a
``.partial`` folder left by a killed run is removed on resume.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["SNAPSHOT_DIR", "snapshot_due", "snapshot_path", "export_snapshot", "remove_partial"]

SNAPSHOT_DIR = "snapshots"
_PARTIAL = ".partial"


def snapshot_due(images_before: int, images_after: int, every: int | None) -> bool:
    """True when a step that took the images seen from ``images_before`` to ``images_after``
    crossed (or reached) a multiple of ``every``; never without ``every``."""
    return bool(every) and images_after // every > images_before // every


def snapshot_path(out: Path, images_seen: int) -> Path:
    """``out/snapshots/img_XXXXXXXX``."""
    return Path(out) / SNAPSHOT_DIR / f"img_{images_seen:08d}"


def export_snapshot(out: Path, images_seen: int, export: Callable[[Path], None]) -> Path:
    """Run ``export(folder)`` into a ``.partial`` folder, then put it in place of any earlier
    snapshot of the same image count; returns the snapshot folder."""
    final = snapshot_path(out, images_seen)
    partial = final.with_name(final.name + _PARTIAL)
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    export(partial)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final


def remove_partial(out: Path) -> None:
    """Remove the ``.partial`` snapshot folders a killed run left."""
    folder = Path(out) / SNAPSHOT_DIR
    if folder.is_dir():
        for path in folder.glob(f"img_*{_PARTIAL}"):
            shutil.rmtree(path, ignore_errors=True)
