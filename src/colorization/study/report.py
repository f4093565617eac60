"""Summaries of a rating study: per-condition mean rating with a 95% confidence interval."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from colorization.study.db import DB_NAME, REAL_LABEL, StudyDB

__all__ = ["ConditionSummary", "summarize", "summarize_ratings", "format_report", "study_report"]


@dataclass(frozen=True)
class ConditionSummary:
    """Ratings of one condition (a model, or the real photos).

    Attributes:
        model: condition label. count: number of ratings. raters: distinct raters.
        mean: mean rating (1..5) or None without ratings. ci_low / ci_high: 95% confidence
            interval of the mean, ``mean ± t(0.975, n-1) * sd / sqrt(n)`` (Student t, sample sd);
            None when fewer than 2 ratings. sd: sample standard deviation or None.
    """

    model: str
    count: int
    raters: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def summarize_ratings(
    ratings: Sequence[tuple[str, str, int]], conditions: Sequence[str] = ()
) -> list[ConditionSummary]:
    """Summaries from ``(rater, model, rating)`` triples.

    Rows: :data:`REAL_LABEL` first (the reference), then the other conditions sorted by name;
    ``conditions`` lists labels to include even without ratings.
    """
    scores: dict[str, list[int]] = defaultdict(list)
    raters: dict[str, set[str]] = defaultdict(set)
    for rater, model, rating in ratings:
        scores[model].append(int(rating))
        raters[model].add(rater)
    labels = set(scores) | set(conditions)
    ordered = ([REAL_LABEL] if REAL_LABEL in labels else []) + sorted(labels - {REAL_LABEL})
    out = []
    for label in ordered:
        xs = scores.get(label, [])
        n = len(xs)
        mean = sum(xs) / n if n else None
        sd = ci_lo = ci_hi = None
        if n >= 2 and mean is not None:
            sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
            half = _t975(n - 1) * sd / math.sqrt(n)
            ci_lo, ci_hi = mean - half, mean + half
        out.append(ConditionSummary(label, n, len(raters.get(label, ())), mean, sd, ci_lo, ci_hi))
    return out


def summarize(db: StudyDB) -> list[ConditionSummary]:
    """Summaries of every condition of the study in ``db`` (conditions without ratings included)."""
    triples = [(rater, model, rating) for rater, _item, model, rating, _ts in db.ratings()]
    return summarize_ratings(triples, sorted({it.model for it in db.items()}))


def format_report(rows: Sequence[ConditionSummary]) -> str:
    """A plain-text table: condition, mean, 95% CI, ratings, raters (reference row marked)."""
    header = f"{'condition':<24} {'mean':>5}  {'95% CI':<13} {'n':>5} {'raters':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        mean = "–" if r.mean is None else f"{r.mean:.2f}"
        ci = "–" if r.ci_low is None else f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
        label = r.model + (" (reference)" if r.model == REAL_LABEL else "")
        lines.append(f"{label:<24} {mean:>5}  {ci:<13} {r.count:>5} {r.raters:>6}")
    lines.append("Ratings 1 (clearly artificial) .. 5 (looks like a real colour photo).")
    return "\n".join(lines)


def study_report(study_dir: str | Path) -> tuple[list[ConditionSummary], str]:
    """Summaries and their table for the study in ``study_dir``."""
    rows = summarize(StudyDB(Path(study_dir) / DB_NAME))
    return rows, format_report(rows)
