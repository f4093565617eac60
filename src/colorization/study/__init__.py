"""Blind human rating study of colorized photos.

* :func:`build_study` — sample photos, colorize them with each model, store everything under
  opaque ids (``colorization study build``).
* :func:`create_app` / :func:`serve_study` — the FastAPI rating page (``colorization study serve``).
* :func:`study_report` — per-condition mean rating with 95% CI (``colorization study report``).
"""

from __future__ import annotations

from colorization.study.build import build_study
from colorization.study.db import REAL_LABEL, DuplicateRatingError, StudyDB, StudyError
from colorization.study.report import ConditionSummary, format_report, study_report, summarize

__all__ = [
    "build_study",
    "create_app",
    "serve_study",
    "study_report",
    "summarize",
    "format_report",
    "ConditionSummary",
    "StudyDB",
    "StudyError",
    "DuplicateRatingError",
    "REAL_LABEL",
]


def __getattr__(name: str):
    # the web app needs FastAPI (optional extra); import it only when asked for
    if name in ("create_app", "serve_study"):
        from colorization.study import app

        return getattr(app, name)
    raise AttributeError(f"module 'colorization.study' has no attribute {name!r}")
