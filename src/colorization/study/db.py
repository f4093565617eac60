"""SQLite storage of a blind rating study (``STUDYDIR/study.db``).

Tables:

* ``meta(key, value)`` — study settings (seed, question, creation time).
* ``items(id, model, source, file)`` — one image shown to raters: ``id`` is an opaque random token
  (32 hex digits) that is also the image's file name stem; ``model`` is the condition (a model
  name or :data:`REAL_LABEL`); ``source`` the photo it was made from. Only ``id`` ever reaches
  the browser.
* ``ratings(id, rater, item, model, rating, created_at)`` — one score 1..5, ``UNIQUE(rater, item)``
  so that a rater cannot rate an item twice.

Every call opens its own connection (safe from FastAPI's worker threads); the database lives on
disk, so ratings survive restarts.
"""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "DB_NAME",
    "REAL_LABEL",
    "RATER_RE",
    "ITEM_RE",
    "StudyError",
    "DuplicateRatingError",
    "UnknownItemError",
    "Item",
    "StudyDB",
    "rater_order",
]

DB_NAME = "study.db"
REAL_LABEL = "real photo"
"""Condition label of the control items (unmodified colour photos)."""
RATER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ITEM_RE = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    source TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    item TEXT NOT NULL REFERENCES items(id),
    model TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    created_at TEXT NOT NULL,
    UNIQUE (rater, item)
);
"""


class StudyError(ValueError):
    """Invalid study input (rater id, item, rating, study folder)."""


class DuplicateRatingError(StudyError):
    """The rater has already rated this item."""


class UnknownItemError(StudyError):
    """No item with this id."""


@dataclass(frozen=True)
class Item:
    id: str
    model: str
    source: str
    file: str


def check_rater(rater: str) -> str:
    if not isinstance(rater, str) or not RATER_RE.match(rater):
        raise StudyError("rater id must be 1-64 letters, digits, '_' or '-'")
    return rater


def rater_order(item_ids: Sequence[str], rater: str, seed: int = 0) -> list[str]:
    """The order in which ``rater`` sees the items: a shuffle of the sorted ids seeded by
    ``sha256(f"{seed}:{rater}")`` (independent per rater, reproducible)."""
    digest = hashlib.sha256(f"{seed}:{rater}".encode()).digest()
    order = sorted(item_ids)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


class StudyDB:
    """Access to ``study.db``.

    Args:
        path: the database file (created with the schema if missing and ``create``).
        create: allow creating a new database.
    """

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            if not create:
                raise StudyError(f"{self.path}: no study database (run 'colorization study build')")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            con.execute("PRAGMA journal_mode = WAL")
            yield con
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.close()

    # -- meta ------------------------------------------------------------------------------

    def set_meta(self, **values: str | int) -> None:
        with self.connect() as con:
            con.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, str(v)) for k, v in values.items()],
            )

    def meta(self) -> dict[str, str]:
        with self.connect() as con:
            return dict(con.execute("SELECT key, value FROM meta").fetchall())

    def seed(self) -> int:
        return int(self.meta().get("seed", "0"))

    # -- items -----------------------------------------------------------------------------

    def add_items(self, items: Sequence[Item]) -> None:
        for it in items:
            if not ITEM_RE.match(it.id):
                raise StudyError(f"item id {it.id!r} is not 32 hex digits")
        with self.connect() as con:
            con.executemany(
                "INSERT INTO items(id, model, source, file) VALUES (?, ?, ?, ?)",
                [(it.id, it.model, it.source, it.file) for it in items],
            )

    def items(self) -> list[Item]:
        with self.connect() as con:
            rows = con.execute("SELECT id, model, source, file FROM items ORDER BY id").fetchall()
        return [Item(*r) for r in rows]

    def item(self, item_id: str) -> Item:
        if not isinstance(item_id, str) or not ITEM_RE.match(item_id):
            raise UnknownItemError(f"no item {item_id!r}")
        with self.connect() as con:
            row = con.execute(
                "SELECT id, model, source, file FROM items WHERE id = ?", (item_id,)
            ).fetchone()
        if row is None:
            raise UnknownItemError(f"no item {item_id!r}")
        return Item(*row)

    # -- ratings ---------------------------------------------------------------------------

    def add_rating(self, rater: str, item_id: str, rating: int) -> None:
        """Store a rating (1..5) with the current UTC time.

        Raises:
            StudyError: bad rater id or rating. UnknownItemError: no such item.
            DuplicateRatingError: this rater already rated this item.
        """
        check_rater(rater)
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise StudyError(f"rating must be an integer 1..5, got {rating!r}")
        it = self.item(item_id)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with self.connect() as con:
                con.execute(
                    "INSERT INTO ratings(rater, item, model, rating, created_at) VALUES (?, ?, ?, ?, ?)",
                    (rater, it.id, it.model, rating, now),
                )
        except sqlite3.IntegrityError as err:
            if "UNIQUE" in str(err):
                raise DuplicateRatingError(f"rater {rater!r} has already rated item {item_id}") from None
            raise

    def rated_items(self, rater: str) -> set[str]:
        check_rater(rater)
        with self.connect() as con:
            return {r[0] for r in con.execute("SELECT item FROM ratings WHERE rater = ?", (rater,))}

    def ratings(self) -> list[tuple[str, str, str, int, str]]:
        """All ratings as ``(rater, item, model, rating, created_at)``, oldest first."""
        with self.connect() as con:
            return con.execute(
                "SELECT rater, item, model, rating, created_at FROM ratings ORDER BY id"
            ).fetchall()

    def next_item(self, rater: str) -> tuple[Item | None, int, int]:
        """``(next unrated item or None, number already rated, total)`` for ``rater``."""
        check_rater(rater)
        items = self.items()
        by_id = {it.id: it for it in items}
        done = self.rated_items(rater)
        for item_id in rater_order(list(by_id), rater, self.seed()):
            if item_id not in done:
                return by_id[item_id], len(done), len(items)
        return None, len(done), len(items)
