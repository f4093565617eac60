"""Colour-hint files of the command line (``colorize --hints FILE``, ``colorize-many --hints FILE``).

A hints file is JSON, at most :data:`MAX_HINTS_FILE_BYTES`, and either

* a list of points, for one image: ``[{"x": 120, "y": 340, "color": "#c0392b"}, "10,20,255,0,0"]``,
* or an object mapping file names to lists of points:
  ``{"photo.jpg": [...], "album/scan_01.png": [...]}``; a video's entry may instead map frame
  indices (0-based, as strings) to lists of points: ``{"film.mp4": {"0": [...], "120": [...]}}``
  (a list of points is then frame 0's). Each point is carried forward through its shot
  (docs/video.md); a video's point may say how long: ``"hold": "track"`` (the default: while it
  can be followed) or ``"hold": "shot"`` (until the shot ends, found again on every frame), as a
  key of an object point or a last field of a string point (``"120,80,#c0392b,shot"``).

Points are what :func:`colorization.inference.hints.coerce_hints` takes from JSON: ``{"x", "y", "color"}``
objects (``color`` as ``"#rrggbb"`` or ``[r, g, b]``) or ``"X,Y,#rrggbb"`` / ``"X,Y,R,G,B"``
strings, at most :data:`colorization.inference.hints.MAX_HINTS` per image, in the input image's pixel
coordinates. A file name is the path relative to the folder (or glob prefix) the file was found
in, its base name when that is unambiguous, or the path as given. The whole file is checked before
any image is read (:class:`HintsFileError` names the file, the entry and the point).

This module imports torch only when points are parsed, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from colorization.video.formats import is_video_path

__all__ = [
    "MAX_HINTS_FILE_BYTES",
    "HintsFileError",
    "HintsMap",
    "load_hints_file",
    "parse_points",
    "parse_frames",
    "split_video_hints",
    "input_names",
    "match_inputs",
]

MAX_HINTS_FILE_BYTES = 1 << 20
"""Largest hints file accepted (1 MiB: some 20,000 points)."""

HintsMap = dict[str, tuple[str, "list | dict[int, list]"]]
"""Normalised file name -> (the name as written in the file, its list of Hint, or for a video its
``{frame index: list of Hint}``)."""


class HintsFileError(ValueError):
    """A hints file that cannot be used; the message names the file and, where known, the entry
    and the point."""


def _kind(value: Any) -> str:
    """JSON's name for a parsed value's type."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def _short(item: Any, limit: int = 60) -> str:
    text = json.dumps(item, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_points(items: Any, where: str, video: bool = False) -> list:
    """A JSON list of points -> list of :class:`colorization.inference.hints.Hint`.

    Args:
        video: the points may carry a ``hold`` (:func:`colorization.video.hint_tracking.coerce_video_hints`).

    Raises:
        HintsFileError: not a list, more than ``MAX_HINTS`` points, or a bad point; the message
            starts with ``where`` and names the point by index and value.
    """
    from colorization.inference.hints import (  # lazy: hints imports torch (see the module docstring)
        MAX_HINTS,
        coerce_hints,
    )

    coerce = coerce_hints
    if video:
        from colorization.video.hint_tracking import coerce_video_hints as coerce

    if not isinstance(items, list):
        raise HintsFileError(f"{where}: expected a list of points, got {_kind(items)}")
    if len(items) > MAX_HINTS:
        raise HintsFileError(f"{where}: {len(items)} points; at most {MAX_HINTS} per image")
    points = []
    for i, item in enumerate(items):
        try:
            if not video and isinstance(item, dict) and "hold" in item:
                raise ValueError('"hold" is for the points of a video')
            points.extend(coerce([item]))
        except ValueError as exc:
            reason = str(exc).removeprefix("hint 0: ")
            raise HintsFileError(f"{where}: point {i} {_short(item)}: {reason}") from None
    return points


def parse_frames(items: Any, where: str) -> dict[int, list]:
    """A JSON object of frame index -> list of points (a video's entry) -> ``{index: [Hint]}``.

    Raises:
        HintsFileError: a key that is not an index >= 0, or a bad list of points.
    """
    out: dict[int, list] = {}
    for key, points in items.items():
        text = key.strip()
        if not text.isdigit():
            raise HintsFileError(f"{where}: {key!r} is not a frame index (0, 1, 2, ...)")
        if int(text) in out:
            raise HintsFileError(f"{where}: frame {int(text)} appears twice")
        out[int(text)] = parse_points(points, f"{where}: frame {int(text)}", video=True)
    return out


def _normalise(name: str) -> str:
    """A file name as a key: forward slashes, no ``./`` or doubled separators."""
    return PurePosixPath(name.replace("\\", "/")).as_posix()


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def load_hints_file(path: str | os.PathLike) -> list | HintsMap:
    """Read and check a whole hints file.

    Returns:
        A list of :class:`~colorization.inference.hints.Hint` (the file holds a list), or a dict mapping each
        normalised file name to ``(name as written, list of Hint)`` (the file holds an object).

    Raises:
        HintsFileError: unreadable, larger than :data:`MAX_HINTS_FILE_BYTES`, not UTF-8 JSON,
            neither a list nor an object, a name given twice, or a bad point.
    """
    p = Path(path)
    try:
        if not p.is_file():
            raise HintsFileError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
        size = p.stat().st_size
        if size > MAX_HINTS_FILE_BYTES:
            raise HintsFileError(f"{p}: {size:,} bytes; a hints file may hold at most {MAX_HINTS_FILE_BYTES:,} (1 MiB)")
        with open(p, "rb") as fh:
            raw = fh.read(MAX_HINTS_FILE_BYTES + 1)
    except OSError as exc:
        raise HintsFileError(f"{p}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_HINTS_FILE_BYTES:
        raise HintsFileError(f"{p}: larger than {MAX_HINTS_FILE_BYTES:,} bytes (1 MiB), the most a hints file may hold")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HintsFileError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise HintsFileError(f"{p}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except _Duplicate as exc:
        raise HintsFileError(f"{p}: the name {exc.args[0]!r} appears twice") from None
    except RecursionError:
        raise HintsFileError(f"{p}: nested too deeply") from None
    if isinstance(data, list):  # one input: a photo, or frame 0 of a video (a "hold" means nothing to a photo)
        return parse_points(data, str(p), video=True)
    if not isinstance(data, dict):
        raise HintsFileError(
            f"{p}: expected a list of points or an object mapping file names to lists of points, got {_kind(data)}"
        )
    out: HintsMap = {}
    for name, items in data.items():
        key = _normalise(name)
        if not name.strip() or key == ".":
            raise HintsFileError(f"{p}: {name!r} is not a file name")
        if key in out:
            raise HintsFileError(f"{p}: {out[key][0]!r} and {name!r} are the same file name")
        where = f"{p}: {name!r}"
        out[key] = (name, parse_frames(items, where) if isinstance(items, dict)
                    else parse_points(items, where, video=is_video_path(name)))
    return out


def _relative(file: Path, root: Path | None) -> str | None:
    """``file``'s path relative to ``root`` as outputs mirror it (the base name for a file named
    directly); None when ``file`` is not below ``root``."""
    if root is None:
        return file.name
    try:
        return _normalise(file.relative_to(root).as_posix())
    except ValueError:
        return None


def input_names(file: Path, root: Path | None) -> tuple[set[str], str]:
    """The names a hints file may use for ``file`` found under ``root`` (None: named directly).

    Returns:
        ``(exact, base)``: the path relative to ``root`` (the base name for a file named
        directly), the path as given and the absolute path; and the base name, which counts only
        where no exact name matches.
    """
    file = Path(file)
    exact = {_normalise(file.as_posix())}
    rel = _relative(file, root)
    if rel is not None:
        exact.add(rel)
    exact.add(Path(os.path.abspath(file)).as_posix())  # no file system calls: inputs may be millions
    return exact, file.name


def match_inputs(
    hints: HintsMap, inputs: Iterable[tuple[Path, Path | None]], source: str | os.PathLike
) -> dict[Path, list]:
    """Assign the entries of a name -> points mapping (:func:`load_hints_file`) to ``inputs``,
    ``(file, root)`` pairs as :func:`colorization.image_io.find_images` gives them. The
    inputs are streamed once (memory grows with the names, not the inputs). A name matches a file
    exactly (relative path, path as given, absolute path), or else by base name.

    Returns:
        ``{file: points}`` for every name (points: a list, or a video's ``{frame: list}``).

    Raises:
        HintsFileError: a name that matches no input, one that matches several (a base name shared
            by files in different folders), or two names for the same file.
    """
    keys = set(hints)
    found: dict[str, tuple[list[Path], list[Path]]] = {key: ([], []) for key in keys}
    first: tuple[Path, Path | None] | None = None
    for file, root in inputs:
        file = Path(file)
        if first is None:
            first = (file, root)
        if not keys:
            break
        exact, base = input_names(file, root)
        for key in exact & keys:
            _add(found[key][0], file)
        if base in keys:
            _add(found[base][1], file)
    out: dict[Path, list] = {}
    named_by: dict[Path, str] = {}
    for key, (written, points) in hints.items():
        exact, by_base = found[key]
        files = exact or by_base
        if not files:
            example = ""
            if first is not None:
                rel = _relative(*first)
                example = f", e.g. {rel or first[0].name!r}"
            raise HintsFileError(
                f"{source}: {written!r} names none of the input images (use the path relative to the "
                f"folder given, or the base name{example})"
            )
        if len(files) > 1:
            shown = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
            raise HintsFileError(
                f"{source}: {written!r} matches several input images ({shown}); use the path relative "
                "to the folder given, or the path as given on the command line"
            )
        file = files[0]
        if file in named_by:
            raise HintsFileError(f"{source}: {named_by[file]!r} and {written!r} both name {file}")
        named_by[file] = written
        out[file] = points
    return out


def split_video_hints(
    matched: dict[Path, Any], source: str | os.PathLike
) -> tuple[dict[Path, list], dict[Path, dict[int, list]]]:
    """Split what :func:`match_inputs` found into photos' points and videos' points per frame (a
    video's plain list is frame 0's).

    Raises:
        HintsFileError: frame-indexed points for a photo.
    """
    photos: dict[Path, list] = {}
    videos: dict[Path, dict[int, list]] = {}
    for file, points in matched.items():
        if is_video_path(file):
            videos[file] = points if isinstance(points, dict) else {0: points}
        elif isinstance(points, dict):
            raise HintsFileError(
                f"{source}: {file} is a photo; points per frame index are for videos, a photo takes a list of points"
            )
        else:
            photos[file] = points
    return photos, videos


def _add(files: list[Path], file: Path) -> None:
    """Remember up to 4 distinct files per name (enough to report an ambiguity)."""
    if len(files) < 4 and file not in files:
        files.append(file)
