"""Listing and reading the files of a source: a local folder, or a git repository at a commit.

A repository is read straight from its git directory (a bare clone or any clone) with ``git
ls-tree`` and ``git cat-file --batch``, so its photos are never checked out as files.
"""

from __future__ import annotations

import fnmatch
import random
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from colorization.image_io import IMAGE_EXTENSIONS
from colorization.ingest.recipe import SourceSpec, glob_to_regex

__all__ = ["SourceFile", "SourceError", "find_git_dir", "list_source", "read_source"]


class SourceError(RuntimeError):
    """A source cannot be read (repository or commit missing, git failing, folder missing)."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: ``path`` relative to the repository or folder, ``ref`` the git
    blob id or the absolute file path, ``size`` in bytes."""

    path: str
    ref: str
    size: int


def find_git_dir(repo: str, roots: Sequence[str | Path]) -> Path:
    """The git directory of ``owner/name`` under one of ``roots``.

    Looked for, in each root: ``owner+name/repo``, ``owner+name``, ``owner/name.git``,
    ``owner/name`` and ``name.git``; a folder counts when it is a git directory or holds ``.git``.
    Raises :class:`SourceError` saying where it looked and how to get the repository.
    """
    owner, name = repo.split("/", 1)
    tried: list[str] = []
    for root in roots:
        root = Path(root).expanduser()
        for cand in (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}", root / owner / f"{name}.git",
                     root / owner / name, root / f"{name}.git"):
            tried.append(str(cand))
            if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
                return cand
            if (cand / ".git").exists():
                return cand / ".git"
    where = ", ".join(tried) if tried else "(no --repos folder given)"
    raise SourceError(
        f"repository {repo} not found; looked in {where}. Get it with "
        f"`git clone --bare https://github.com/{repo} REPOS/{owner}+{name}` and pass --repos REPOS"
    )


def _git(git_dir: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise SourceError("git is not installed; it is needed to read repository sources") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        raise SourceError(f"git {' '.join(args[:2])} failed in {git_dir}: {why}")
    return done.stdout


def _selected(paths: list[tuple[str, str, int]], spec: SourceSpec, exclude_names: Sequence[str],
              seed: int) -> list[SourceFile]:
    include = [glob_to_regex(p) for p in spec.include]
    exclude = [glob_to_regex(p) for p in spec.exclude]
    out = []
    for path, ref, size in paths:
        name = PurePosixPath(path).name
        if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if not any(rx.match(path) for rx in include) or any(rx.match(path) for rx in exclude):
            continue
        if any(fnmatch.fnmatchcase(name, pat) for pat in exclude_names):
            continue
        out.append(SourceFile(path, ref, size))
    out.sort(key=lambda f: f.path)
    if spec.max_images is not None and len(out) > spec.max_images:
        keep = sorted(random.Random(f"{seed}/{spec.group}").sample(range(len(out)), spec.max_images))
        out = [out[i] for i in keep]
    return out


def list_source(spec: SourceSpec, repos: Sequence[str | Path] = (), *, exclude_names: Sequence[str] = (),
                seed: int = 0) -> list[SourceFile]:
    """The image files of a source that its ``include``/``exclude`` patterns and ``max_images``
    select (image extensions only, ``exclude_names`` dropped), sorted by path."""
    if spec.folder is not None:
        root = Path(spec.folder).expanduser()
        if not root.is_dir():
            raise SourceError(f"source {spec.group!r}: folder {root} does not exist")
        files = [(p.relative_to(root).as_posix(), str(p.resolve()), p.stat().st_size) for p in root.rglob("*")
                 if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)]
        return _selected(files, spec, exclude_names, seed)
    git_dir = find_git_dir(spec.repo, repos)
    _git(git_dir, "cat-file", "-e", f"{spec.commit}^{{commit}}")
    listing = _git(git_dir, "ls-tree", "-r", "-l", "-z", spec.commit)
    files = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        _mode, kind, ref, size = meta.split()
        if kind != b"blob" or not size.isdigit():  # '-': a submodule; 'BAD': a blob the snapshot lacks
            continue
        files.append((path.decode("utf-8", errors="surrogateescape"), ref.decode(), int(size)))
    return _selected(files, spec, exclude_names, seed)


def read_source(spec: SourceSpec, files: Sequence[SourceFile], repos: Sequence[str | Path] = ()
                ) -> Iterator[tuple[SourceFile, bytes]]:
    """``(file, its bytes)`` for each of ``files`` in order (one ``git cat-file`` process for a
    repository)."""
    if spec.folder is not None:
        for f in files:
            yield f, Path(f.ref).read_bytes()
        return
    git_dir = find_git_dir(spec.repo, repos)
    proc = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for f in files:
            proc.stdin.write(f"{f.ref}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob":
                raise SourceError(f"source {spec.group!r}: git could not read {f.path} ({b' '.join(header).decode()})")
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after the content
            yield f, data
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait()
