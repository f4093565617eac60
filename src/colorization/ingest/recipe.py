"""The recipe of a training set: where its photos come from and how they are filtered.

A recipe is a YAML or JSON file holding the fields of :class:`Recipe`; each entry of ``sources``
holds the fields of :class:`SourceSpec`. Relative paths (``folder``, ``against``, ``blocklists``,
``out``) are taken relative to the current directory, as the training configs' are.

```yaml
name: campaign
out: data_cache/campaign
short_side: 128                 # photos larger than this are stored with this short side
min_short_side: 64
against:                        # drop near-duplicates of these folders
  - {path: ../shared/data/val, kind: evaluation}
  - {path: ../shared/data/train, kind: training}
blocklists: [../shared/eval_blocklist/hashes.txt]
sources:
  - group: flowers_more
    repo: someone/flowers       # a git repository, read at a fixed commit
    commit: 05bf18b10cd76b8225e93e93beef1cb94c77cfbb
    include: ["data/flowers/*/*.jpg"]
    exclude: ["**/aug_*"]
    label: "data/flowers/([^/]+)/"
    licence: research use
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SourceSpec", "Against", "Recipe", "load_recipe", "glob_to_regex", "AGAINST_KINDS"]

AGAINST_KINDS = ("evaluation", "training")
"""``evaluation``: photos nothing may be trained on (strict: any hash within ``eval_distance``,
mirror images included, is dropped); ``training``: photos already in training data elsewhere
(dropped as duplicates by the same test as within the set)."""

_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for a path glob: ``*`` and ``?`` stay within one folder level, ``**``
    spans any number of levels (``a/**/b`` also matches ``a/b``), ``[...]`` is a character set.
    Matching is case-sensitive and against the whole ``/``-separated path."""
    i, out = 0, []
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise ValueError(f"unclosed '[' in pattern {pattern!r}")
            body = pattern[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class SourceSpec:
    """One source of photos; its kept photos form one group (a folder of the built set).

    Fields:
        group: the group's name (a folder name: letters, digits, ``_ . -``).
        repo: ``owner/name`` of a git repository read at ``commit`` (a bare clone or a snapshot
            found under the build's ``--repos`` folders).
        commit: the full 40-digit commit the photos are read at (required with ``repo``).
        folder: a local folder instead of a repository.
        include: path globs (relative to the repository or folder) of the files to take.
        exclude: path globs of files to leave out.
        label: a regular expression searched in the source path; its first group is the photo's
            class label (None: no labels).
        licence: the licence or terms of the photos, as the source states them.
        description: what the photos show, for the report.
        max_images: keep at most this many of the source's files (a seeded subset, before the
            filters); None keeps all.
    """

    group: str
    repo: str | None = None
    commit: str | None = None
    folder: str | None = None
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    label: str | None = None
    licence: str = "unknown"
    description: str = ""
    max_images: int | None = None

    def __post_init__(self) -> None:
        where = f"source {self.group!r}"
        if not _GROUP_RE.match(self.group):
            raise ValueError(f"{where}: group must be a folder name (letters, digits, _ . -)")
        if (self.repo is None) == (self.folder is None):
            raise ValueError(f"{where}: give exactly one of repo (with commit) or folder")
        if self.repo is not None:
            if not _REPO_RE.match(self.repo):
                raise ValueError(f"{where}: repo must be 'owner/name', got {self.repo!r}")
            if self.commit is None or not _COMMIT_RE.match(self.commit):
                raise ValueError(f"{where}: repo needs commit, the full 40-digit lower-case hash")
        elif self.commit is not None:
            raise ValueError(f"{where}: commit goes with repo, not folder")
        if not self.include:
            raise ValueError(f"{where}: include needs at least one pattern")
        for pattern in (*self.include, *self.exclude):
            glob_to_regex(pattern)
        if self.label is not None:
            try:
                rx = re.compile(self.label)
            except re.error as exc:
                raise ValueError(f"{where}: label is not a regular expression: {exc}") from None
            if rx.groups < 1:
                raise ValueError(f"{where}: label needs one group, e.g. '/(n\\d{{8}})/'")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"{where}: max_images must be positive")

    @property
    def origin(self) -> str:
        """``owner/name@commit`` or the folder, for reports."""
        return f"{self.repo}@{self.commit}" if self.repo else str(self.folder)


@dataclass(frozen=True)
class Against:
    """A folder whose photos (and their near-duplicates) the built set must not contain."""

    path: str
    kind: str = "evaluation"

    def __post_init__(self) -> None:
        if self.kind not in AGAINST_KINDS:
            raise ValueError(f"against {self.path!r}: kind must be one of {AGAINST_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Recipe:
    """How to build a training set from sources of photos.

    Fields:
        name: the set's name.
        sources: the :class:`SourceSpec` list, in priority order (of two near-duplicates, the
            photo of the earlier source, or the earlier path within a source, is kept).
        out: the default output folder.
        short_side: photos whose short side is larger are downscaled to it (aspect kept).
        min_short_side: photos whose short side is smaller are dropped.
        format: stored format (``webp``, ``jpg`` or ``png``).
        quality: WebP/JPEG quality.
        drop_grayscale: drop photos whose colours are all (nearly) neutral.
        duplicate_distance: difference-hash Hamming distance under which two photos are
            near-duplicates, if their thumbnails also agree within ``duplicate_thumb_diff``.
        duplicate_thumb_diff: mean absolute difference (gray levels, 16x16 thumbnails) under
            which a hash match is confirmed as a duplicate.
        eval_distance: Hamming distance to an evaluation photo (or its mirror image, or a
            blocklist hash) at or under which a photo is dropped, with no confirmation.
        exclude_names: file-name globs dropped from every source (ImageNet validation files).
        against: :class:`Against` folders.
        blocklists: files of hexadecimal difference hashes of evaluation photos kept elsewhere.
        seed: seed of ``max_images`` subsets.
    """

    name: str
    sources: tuple[SourceSpec, ...]
    out: str | None = None
    short_side: int = 128
    min_short_side: int = 64
    format: str = "webp"
    quality: int = 80
    drop_grayscale: bool = True
    duplicate_distance: int = 4
    duplicate_thumb_diff: float = 8.0
    eval_distance: int = 6
    exclude_names: tuple[str, ...] = ("ILSVRC2012_val_*",)
    against: tuple[Against, ...] = ()
    blocklists: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a recipe needs at least one source")
        groups = [s.group for s in self.sources]
        dup = sorted({g for g in groups if groups.count(g) > 1})
        if dup:
            raise ValueError(f"group names must be unique, repeated: {dup}")
        if self.format not in ("webp", "jpg", "png"):
            raise ValueError(f"format must be webp, jpg or png, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError("quality must be in 1..100")
        if not 1 <= self.min_short_side <= self.short_side:
            raise ValueError("need 1 <= min_short_side <= short_side")
        if not 0 <= self.duplicate_distance <= 15 or not 0 <= self.eval_distance <= 15:
            raise ValueError("duplicate_distance and eval_distance must be in 0..15")

    def digest(self, sources: int | None = None) -> str:
        """SHA-256 of the recipe's canonical JSON (``out`` excluded): equal digests build equal sets.

        With ``sources=k``, the digest of the recipe cut to its first ``k`` sources: what the
        first ``k`` groups of the set depend on (sources added at the end leave it unchanged)."""
        data = dataclasses.asdict(self)
        data.pop("out")
        if sources is not None:
            data["sources"] = data["sources"][:sources]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _tuple_fields(raw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = dict(raw)
    for n in names:
        if n in out and out[n] is not None:
            value = out[n]
            out[n] = (value,) if isinstance(value, str) else tuple(value)
    return out


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {sorted(names)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    """A :class:`Recipe` from plain data (as parsed from YAML/JSON); errors name the field."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping at the top level")
    raw = _tuple_fields(raw, ("exclude_names", "blocklists"))
    sources = raw.get("sources") or []
    if not isinstance(sources, list):
        raise ValueError(f"{where}: sources must be a list")
    raw["sources"] = tuple(
        _build(SourceSpec, _tuple_fields(s, ("include", "exclude")) if isinstance(s, dict) else s,
               f"{where}: sources[{i}]")
        for i, s in enumerate(sources)
    )
    against = raw.get("against") or []
    raw["against"] = tuple(
        _build(Against, {"path": a} if isinstance(a, str) else a, f"{where}: against[{i}]")
        for i, a in enumerate(against)
    )
    return _build(Recipe, raw, where)


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe from a ``.yaml``/``.yml`` or ``.json`` file (see the module docstring)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    return recipe_from_dict(raw, str(path))
