"""Build a training set from a :class:`~colorization.ingest.recipe.Recipe`.

For every file a source selects, in order:

1. decode it (any mode, EXIF orientation applied; see :func:`colorization.image_io.load_image`);
   a file that does not decode is dropped (``undecodable``);
2. drop it if its short side is under ``min_short_side`` (``too_small``) or its colours are all
   neutral (``grayscale``, :data:`colorization.data.GRAY_MAX_SPREAD`);
3. downscale it to ``short_side`` if larger, and re-encode it (``format``, ``quality``);
4. drop it if its difference hash is within ``eval_distance`` of an evaluation photo or its mirror
   image (``evaluation``) or of a blocklist hash (``blocklist``);
5. drop it if it is a near-duplicate (hash within ``duplicate_distance`` and thumbnails within
   ``duplicate_thumb_diff``) of a photo of an ``against: training`` folder
   (``duplicate_training``) or of a photo already kept (``duplicate``).

The set is written to ``OUT.partial/`` and moved to ``OUT`` when complete, with ``manifest.csv``
(one row a photo: group, label, path, source, sizes, colourfulness, hash) and ``report.json``
(the recipe, its digest, per group: files, kept, dropped by reason with examples, sizes,
licence). Each finished source is recorded in ``.build/`` (kept in the finished set), so a build that
is stopped resumes at the first unfinished source, and a set whose recipe gained sources at its end
builds only those (``force``: the finished set is moved back to ``OUT.partial/`` and what still fits
the recipe is kept).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from colorization import data as data_mod
from colorization import image_io
from colorization.ingest.hashing import (
    HashIndex,
    dhash,
    min_distances,
    mirror_dhash,
    read_hash_list,
    thumbnail,
    thumbnails_match,
)
from colorization.ingest.recipe import Recipe, SourceSpec
from colorization.ingest.sources import list_source, read_source

__all__ = ["DROP_REASONS", "GroupReport", "BuildReport", "build_dataset", "report_markdown"]

DROP_REASONS = ("undecodable", "too_small", "grayscale", "evaluation", "blocklist", "duplicate_training", "duplicate")
"""Why a file was not kept, in the order the checks run."""
_EXAMPLES = 20
_NAME_RE = re.compile(r"[^A-Za-z0-9.-]+")
_EXT = {"webp": ".webp", "jpg": ".jpg", "png": ".png"}


@dataclass
class GroupReport:
    """What one source gave: counts, reasons, sizes (short sides in pixels, medians)."""

    group: str
    origin: str
    licence: str
    description: str
    files: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    median_short_side: float | None = None
    median_stored_short_side: float | None = None
    labels: int = 0


@dataclass
class BuildReport:
    """The whole build: the recipe, its digest, the groups, and the totals."""

    name: str
    digest: str
    out: str
    groups: list[GroupReport]
    against: dict[str, int]
    blocklist_hashes: int

    @property
    def kept(self) -> int:
        return sum(g.kept for g in self.groups)

    def to_json(self, recipe: Recipe) -> str:
        return json.dumps({"recipe": dataclasses.asdict(recipe), "digest": self.digest, "name": self.name,
                           "kept": self.kept, "against": self.against, "blocklist_hashes": self.blocklist_hashes,
                           "groups": [dataclasses.asdict(g) for g in self.groups]}, indent=1)


def report_markdown(report: BuildReport) -> str:
    """A markdown table of the report: one row a group, with kept and dropped counts."""
    cols = ["group", "files", "kept", *DROP_REASONS, "short side (orig → stored)", "licence"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for g in report.groups:
        sides = f"{g.median_short_side or 0:.0f} → {g.median_stored_short_side or 0:.0f}"
        lines.append("| " + " | ".join([g.group, f"{g.files:,}", f"{g.kept:,}",
                                         *(f"{g.dropped.get(r, 0):,}" for r in DROP_REASONS), sides, g.licence]) + " |")
    lines.append(f"\n{report.kept:,} photos kept in {len(report.groups)} groups "
                 f"({report.name}, recipe {report.digest[:12]}).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Per-file work (runs in worker processes)
# --------------------------------------------------------------------------------------------


def _process(item: tuple[str, bytes], *, short_side: int, min_short_side: int, fmt: str, quality: int,
             drop_grayscale: bool) -> dict[str, Any]:
    path, raw = item
    try:
        img = image_io.load_image(raw, name=path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means: not a usable photo
        return {"status": "undecodable", "why": f"{type(exc).__name__}: {exc}"[:200]}
    w, h = img.size
    if min(w, h) < min_short_side:
        return {"status": "too_small", "why": f"{w}x{h}"}
    cf, spread = data_mod.score_image(img)
    if drop_grayscale and spread < data_mod.GRAY_MAX_SPREAD:
        return {"status": "grayscale", "why": f"spread {spread:.2f}"}
    if min(w, h) > short_side:
        scale = short_side / min(w, h)
        size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    encoded = image_io.encode_image(img, fmt, quality=quality)
    stored = Image.open(io.BytesIO(encoded))
    stored.load()
    return {"status": "ok", "bytes": encoded, "hash": dhash(stored), "thumb": thumbnail(stored).tobytes(),
            "orig": (w, h), "size": stored.size, "cf": round(cf, 3)}


def _fingerprint(path: str) -> tuple[int, int, bytes]:
    img = image_io.load_image(path)
    return dhash(img), mirror_dhash(img), thumbnail(img).tobytes()


def _pool(workers: int):
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    return ctx.Pool(workers, initializer=data_mod._worker_init, initargs=(0,))


# --------------------------------------------------------------------------------------------
# Reference photos (the `against` folders), fingerprinted once and cached
# --------------------------------------------------------------------------------------------


def _reference_fingerprints(folder: str, workers: int, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hashes, mirror hashes, thumbnails)`` of every image under ``folder`` (cached on disk)."""
    files = [f for f, _ in image_io.find_images([folder])]
    key = hashlib.sha256()
    for f in files:
        st = f.stat()
        key.update(f"{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    cache = data_mod.default_cache_dir() / f"ingest-ref-{key.hexdigest()[:24]}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return z["hashes"], z["mirrors"], z["thumbs"]
        except (OSError, ValueError, KeyError):
            pass
    paths = [str(f) for f in files]
    bar = tqdm(total=len(paths), desc=f"fingerprinting {folder}", unit="img", disable=not progress)
    results = []
    with _pool(workers) as pool:
        for r in pool.imap(_fingerprint, paths, chunksize=64):
            results.append(r)
            bar.update()
    bar.close()
    hashes = np.array([r[0] for r in results], dtype=np.uint64)
    mirrors = np.array([r[1] for r in results], dtype=np.uint64)
    thumbs = np.frombuffer(b"".join(r[2] for r in results), dtype=np.uint8).reshape(len(results), 16, 16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with image_io.atomic_path(cache) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, hashes=hashes, mirrors=mirrors, thumbs=thumbs)
    return hashes, mirrors, thumbs


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def _stored_name(spec: SourceSpec, path: str, label: str | None, taken: set[str], ext: str) -> str:
    stem = _NAME_RE.sub("-", Path(path).stem).strip("-") or "photo"
    if label is not None:
        safe_label = _NAME_RE.sub("-", label)
        rest = stem[len(safe_label):].lstrip("-") if stem.startswith(safe_label) else stem
        name = f"{safe_label}_{rest or 'photo'}"
    else:
        name = stem
    if name + ext in taken:
        name = f"{name}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    return name + ext


class _Checker:
    """The evaluation, blocklist and duplicate checks, and the index of kept photos."""

    def __init__(self, recipe: Recipe, workers: int, progress: bool) -> None:
        self.recipe = recipe
        eval_hashes: list[np.ndarray] = []
        self.against: dict[str, int] = {}
        self.index = HashIndex(recipe.duplicate_distance)
        for a in recipe.against:
            hashes, mirrors, thumbs = _reference_fingerprints(a.path, workers, progress)
            self.against[a.path] = int(hashes.size)
            if a.kind == "evaluation":
                eval_hashes += [hashes, mirrors]
            else:
                for h, t in zip(hashes.tolist(), thumbs, strict=True):
                    self.index.add(int(h), (t, True))
        self.eval_hashes = np.concatenate(eval_hashes) if eval_hashes else np.zeros(0, np.uint64)
        block = [h for path in recipe.blocklists for h in read_hash_list(path)]
        self.blocklist = np.array(block, dtype=np.uint64)

    def reason(self, h: int, thumb: np.ndarray) -> str | None:
        """Why a processed photo must be dropped (None: keep it)."""
        d = self.recipe.eval_distance
        if self.eval_hashes.size and int(min_distances([h], self.eval_hashes)[0]) <= d:
            return "evaluation"
        if self.blocklist.size and int(min_distances([h], self.blocklist)[0]) <= d:
            return "blocklist"
        for _dist, (other, from_against) in self.index.query(h):
            if thumbnails_match(thumb, other, self.recipe.duplicate_thumb_diff):
                return "duplicate_training" if from_against else "duplicate"
        return None

    def keep(self, h: int, thumb: np.ndarray) -> None:
        self.index.add(h, (thumb, False))


def _label(spec: SourceSpec, path: str) -> str | None:
    if spec.label is None:
        return None
    m = re.search(spec.label, path)
    return m.group(1) if m else None


def _build_source(spec: SourceSpec, recipe: Recipe, checker: _Checker, staging: Path, repos: Sequence[str | Path],
                  pool, progress: bool) -> tuple[GroupReport, list[dict[str, Any]]]:
    files = list_source(spec, repos, exclude_names=recipe.exclude_names, seed=recipe.seed)
    report = GroupReport(spec.group, spec.origin, spec.licence, spec.description, files=len(files))
    folder = staging / spec.group
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    work = functools.partial(_process, short_side=recipe.short_side, min_short_side=recipe.min_short_side,
                             fmt=recipe.format, quality=recipe.quality, drop_grayscale=recipe.drop_grayscale)
    dropped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    orig_sides, stored_sides = [], []
    items = ((f.path, raw) for f, raw in read_source(spec, files, repos))
    bar = tqdm(total=len(files), desc=spec.group, unit="img", disable=not progress)
    for f, res in zip(files, pool.imap(work, items, chunksize=16), strict=True):
        bar.update()
        status = res["status"]
        if status == "ok":
            thumb = np.frombuffer(res["thumb"], dtype=np.uint8).reshape(16, 16)
            status = checker.reason(res["hash"], thumb) or "ok"
        if status != "ok":
            dropped[status] += 1
            ex = examples.setdefault(status, [])
            if len(ex) < _EXAMPLES:
                ex.append(f"{f.path}" + (f" ({res['why']})" if "why" in res else ""))
            continue
        checker.keep(res["hash"], thumb)
        label = _label(spec, f.path)
        name = _stored_name(spec, f.path, label, taken, _EXT[recipe.format])
        taken.add(name)
        (folder / name).write_bytes(res["bytes"])
        orig_sides.append(min(res["orig"]))
        stored_sides.append(min(res["size"]))
        rows.append({"group": spec.group, "label": label or "", "path": f"{spec.group}/{name}", "source": f.path,
                     "orig_w": res["orig"][0], "orig_h": res["orig"][1], "w": res["size"][0], "h": res["size"][1],
                     "colorfulness": res["cf"], "dhash": f"{res['hash']:016x}", "thumb": res["thumb"].hex()})
    bar.close()
    report.kept = len(rows)
    report.dropped = {r: dropped[r] for r in DROP_REASONS if dropped[r]}
    report.examples = examples
    report.median_short_side = statistics.median(orig_sides) if orig_sides else None
    report.median_stored_short_side = statistics.median(stored_sides) if stored_sides else None
    report.labels = len({r["label"] for r in rows if r["label"]})
    return report, rows


_MANIFEST_COLUMNS = ["group", "label", "path", "source", "orig_w", "orig_h", "w", "h", "colorfulness", "dhash"]


def build_dataset(recipe: Recipe, out: str | Path | None = None, *, repos: Sequence[str | Path] = (),
                  workers: int = 2, progress: bool = True, force: bool = False) -> BuildReport:
    """Build ``recipe``'s set into ``out`` (default ``recipe.out``); see the module docstring.

    Args:
        recipe: what to build.
        out: the output folder; it must not exist, or hold a set of the same recipe (then nothing
            is done and its report is returned), unless ``force`` replaces it.
        repos: folders holding the sources' git repositories (:func:`~colorization.ingest.sources.find_git_dir`).
        workers: processes that decode and encode photos.
        progress: tqdm bars.

    Returns:
        The :class:`BuildReport` (also written to ``out/report.json``).

    Raises:
        FileExistsError: ``out`` holds something else and ``force`` is off.
        colorization.ingest.sources.SourceError: a source cannot be read.
    """
    if out is None:
        if recipe.out is None:
            raise ValueError("no output folder: give out= or set the recipe's out")
        out = recipe.out
    out = Path(out)
    digest = recipe.digest()
    staging = out.with_name(out.name + ".partial")
    if out.exists():
        previous = out / "report.json"
        if previous.is_file() and not force:
            old = json.loads(previous.read_text(encoding="utf-8"))
            if old.get("digest") == digest:
                return BuildReport(old["name"], digest, str(out), [GroupReport(**g) for g in old["groups"]],
                                   old["against"], old["blocklist_hashes"])
        if not force:
            raise FileExistsError(f"{out} exists and was not built from this recipe; remove it or pass force")
        if staging.exists():
            shutil.rmtree(out)
        else:
            os.replace(out, staging)  # its finished groups are reused where the recipe still builds them
    done_dir = staging / ".build"
    done_dir.mkdir(parents=True, exist_ok=True)
    checker = _Checker(recipe, workers, progress)
    groups: list[GroupReport] = []
    all_rows: list[dict[str, Any]] = []
    with _pool(workers) as pool:
        for i, spec in enumerate(recipe.sources):
            record = done_dir / f"{spec.group}.json"
            saved = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
            key = recipe.digest(i + 1)  # what this group depends on: the recipe up to this source
            if saved is not None and saved.get("digest") == key:
                report, rows = GroupReport(**saved["report"]), saved["rows"]
                for r in rows:
                    thumb = np.frombuffer(bytes.fromhex(r["thumb"]), np.uint8).reshape(16, 16)
                    checker.keep(int(r["dhash"], 16), thumb)
            else:
                report, rows = _build_source(spec, recipe, checker, staging, repos, pool, progress)
                image_io.atomic_write_text(record, json.dumps({"digest": key, "report": dataclasses.asdict(report),
                                                               "rows": rows}))
            groups.append(report)
            all_rows += rows
    result = BuildReport(recipe.name, digest, str(out), groups, checker.against, int(checker.blocklist.size))
    with image_io.atomic_path(staging / "manifest.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_MANIFEST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(all_rows)
    image_io.atomic_write_text(staging / "report.json", result.to_json(recipe))
    wanted = {spec.group for spec in recipe.sources}
    for stale in staging.iterdir():  # groups of an earlier recipe that this one no longer has
        if stale.is_dir() and not stale.name.startswith(".") and stale.name not in wanted:
            shutil.rmtree(stale)
    for record in done_dir.iterdir():
        if record.stem not in wanted:
            record.unlink()
    os.replace(staging, out)
    return result
