"""Batch: colorizing many files with one :class:`~colorization.inference.Colorizer`.

==============================  ===============================================================
:mod:`~.jobs`                   ``colorize`` on files and folders: output paths, side-by-side
                                comparisons, DataLoader decoding, progress, :func:`colorize_files`
:mod:`~.hint_files`             hint files (JSON, one list of points per input) and their matching
:mod:`~.distributed`            ``colorize-many``: a resumable job sharded over ``torchrun`` ranks
==============================  ===============================================================

:mod:`~.hint_files` does not import torch (the command line reads hint files before loading a
model); the names below load on first use.
"""

from __future__ import annotations

from colorization._lazy import lazy_exports

_EXPORTS = {
    "colorize_files": "jobs",
    "JobSummary": "jobs",
    "Outputs": "jobs",
    "HintsFileError": "hint_files",
    "load_hints_file": "hint_files",
    "match_inputs": "hint_files",
    "ManyConfig": "distributed",
    "DistContext": "distributed",
    "colorize_many": "distributed",
    "launch_local": "distributed",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
