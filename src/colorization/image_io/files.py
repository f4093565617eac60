"""Finding image files: folders (recursive), glob patterns and single files, in a stable order
(:func:`find_images`, used by ``colorize``; :func:`count_non_images` for its summary line).

Re-exported by the package :mod:`colorization.image_io`, which owns reading and writing the images.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection, Iterable
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "count_non_images", "find_images"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
)
"""The file name endings (lower case) taken for images when a folder or pattern is searched."""


def _is_image_name(p: Path, extensions: Collection[str] = IMAGE_EXTENSIONS) -> bool:
    return p.suffix.lower() in extensions and not p.name.startswith(".")


def _resolved(folders: Iterable[str | os.PathLike]) -> frozenset[Path]:
    return frozenset(Path(f).expanduser().resolve() for f in folders)


def _inside(path: Path, folders: frozenset[Path]) -> bool:
    """Whether ``path`` is one of ``folders`` (resolved) or below one."""
    if not folders:
        return False
    resolved = path.resolve()
    return resolved in folders or any(parent in folders for parent in resolved.parents)


def _walk(
    folder: Path,
    recursive: bool,
    extensions: Collection[str] = IMAGE_EXTENSIONS,
    exclude: frozenset[Path] = frozenset(),
) -> list[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and _is_image_name(p, extensions))
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not _inside(Path(dirpath) / d, exclude)]
        for fn in filenames:
            p = Path(dirpath) / fn
            if _is_image_name(p, extensions) and p.is_file():
                found.append(p)
    return sorted(found)


def count_non_images(
    folder: str | os.PathLike, extensions: Collection[str] = IMAGE_EXTENSIONS, exclude: Iterable[str | os.PathLike] = ()
) -> int:
    """Files under ``folder`` (recursive, hidden files and folders and those below ``exclude``
    skipped) that :func:`find_images` leaves out because their names do not end in ``extensions``."""
    count, skip = 0, _resolved(exclude)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not _inside(Path(dirpath) / d, skip)]
        count += sum(1 for fn in filenames if not fn.startswith(".") and not _is_image_name(Path(fn), extensions))
    return count


def _glob_root(pattern: str) -> Path:
    """The leading part of a glob pattern without wildcards (the folder to mirror from)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    if len(fixed) == len(parts):  # no wildcard at all: its parent
        fixed = fixed[:-1]
    return Path(*fixed) if fixed else Path(".")


def find_images(
    paths: Iterable[str | os.PathLike],
    recursive: bool = True,
    extensions: Collection[str] = IMAGE_EXTENSIONS,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[tuple[Path, Path | None]]:
    """Expand files, folders and glob patterns into image files (or, with ``extensions``, other
    files found by the name ending: the CLI adds :data:`colorization.video.io.VIDEO_EXTENSIONS`).

    * A file is returned as ``(file, None)`` whatever its extension (loading reports non-images).
    * A folder yields its image files (by extension, case-insensitive; hidden files and folders
      skipped), recursively unless ``recursive=False``, sorted, each as ``(file, folder)``.
    * A glob pattern (``*``, ``?``, ``[...]``; ``**`` spans folders) yields matching image files
      sorted, each as ``(file, root)`` where ``root`` is the pattern's wildcard-free prefix.

    * ``exclude``: folders left out of folder walks and glob matches, with everything below them
      (``colorize`` passes its output folder, so outputs inside an input folder are not taken as
      inputs on the next run). A folder named in ``paths`` itself is still walked.

    Callers mirror folder structure with ``file.relative_to(root)``. Duplicates keep their first
    occurrence.

    Raises:
        FileNotFoundError: a path that does not exist, or a pattern that matches nothing.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[tuple[Path, Path | None]] = []
    seen: set[Path] = set()
    skip = _resolved(exclude)

    def add(f: Path, root: Path | None) -> None:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append((f, root))

    for item in paths:
        text = os.path.expanduser(os.fspath(item))
        p = Path(text)
        if p.is_file():
            add(p, None)
        elif p.is_dir():
            for f in _walk(p, recursive, extensions, skip):
                add(f, p)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=recursive))
            if not matches:
                raise FileNotFoundError(f"{text}: pattern matches no files")
            root = _glob_root(text)
            # an excluded folder the pattern starts in (or below) is what was asked for
            gskip = frozenset(e for e in skip if not _inside(root, frozenset({e})))
            for m in matches:
                if _inside(m, gskip):
                    continue
                if m.is_file() and _is_image_name(m, extensions):
                    add(m, root)
                elif m.is_dir():
                    for f in _walk(m, recursive, extensions, gskip):
                        add(f, root)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    return out
