"""Colorize a set of image files into a folder: the one job behind ``colorize`` and ``colorize-many``.

:func:`colorize_files` takes ``(file, root)`` entries (a list, or a stream), keeps those of its
shard (entry ``i`` belongs to rank ``i % world_size``), plans each output (:meth:`Outputs.plan`,
path rule :func:`output_path`), decodes and prepares the images with their colour hints (in
DataLoader workers when ``workers > 0``), runs them through ``Colorizer.predict`` in windows (equal
working shapes share network calls) and writes every output atomically. A file that fails is reported by name
and counted in the :class:`JobSummary`; the others complete. Inputs are never written.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from colorization import image_io
from colorization.inference.colorizer import SATURATION_RANGE, Colorizer, known_gray, prepare_image, windows
from colorization.inference.reference import check_strength
from colorization.video.formats import DEFAULT_VIDEO_FORMAT, video_format

__all__ = ["STATE_DIR", "output_path", "compare_path", "side_by_side", "Outputs", "Task", "JobSummary",
           "FileDataset", "ProgressReporter", "colorize_files", "colorize_videos"]

Entry = tuple[Path, Path | None]
STATE_DIR = ".colorize-many"
"""Folder inside OUTDIR with ``colorize-many``'s per-rank and merged summaries and its video chunks
(:mod:`colorization.batch.distributed`, :mod:`colorization.batch.video_chunks`)."""
MAX_FAILURES_LISTED = 10_000
"""Failures a summary lists by name (it counts them all)."""


def output_path(file: Path, root: Path | None, out_dir: Path, fmt: str | None = None) -> Path:
    """Where the colorized ``file`` goes: ``out_dir/<name>`` for a file named directly (``root``
    None), else its path relative to ``root`` mirrored under ``out_dir`` (a file outside ``root``
    mirrored whole, without its anchor and ``..``); ``fmt`` (:data:`colorization.image_io.OUTPUT_FORMATS`
    or :data:`colorization.video.formats.VIDEO_FORMATS`) sets the suffix."""
    file = Path(file)
    if root is None:
        rel = Path(file.name)
    else:
        try:
            rel = file.relative_to(root)
        except ValueError:
            rel = file.relative_to(file.anchor) if file.is_absolute() else file
    out = Path(out_dir).joinpath(*[part for part in rel.parts if part != ".."])
    if not fmt:
        return out
    return out.with_suffix(image_io.OUTPUT_FORMATS[fmt].suffix if fmt in image_io.OUTPUT_FORMATS
                           else video_format(fmt).extension)


def compare_path(out: Path) -> Path:
    """The ``gray | colour`` picture written beside ``out`` with ``compare``."""
    return out.with_name(f"{out.stem}_compare{out.suffix}")


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """``left | right`` as one RGB picture (transparency composited on white)."""
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    canvas.paste(image_io.to_rgb(left), (0, 0))
    canvas.paste(image_io.to_rgb(right), (left.width, 0))
    return canvas


def describe_error(src: Path | str, exc: BaseException) -> str:
    """A failure reason naming ``src``: the message of our typed errors (ValueError, OSError), type
    and message of anything else."""
    text = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
    return text if text.startswith(str(src)) else f"{src}: {text}"


@dataclass
class Task:
    """One entry on its way: ``status`` "todo" (planned) -> "ready" (``prep``, ``exif`` loaded) ->
    "done", or "skipped" / "failed" with a ``reason`` that names the file."""

    index: int
    src: Path
    out: Path
    status: str = "todo"
    reason: str = ""
    prep: Any = None
    exif: bytes | None = None

    def end(self, status: str, reason: str = "") -> Task:
        self.status, self.reason, self.prep = status, reason, None
        return self


@dataclass(frozen=True)
class Outputs:
    """Where a job writes (:func:`output_path`), what it may overwrite, and how: ``background``
    None keeps an input's alpha channel in outputs of :data:`colorization.image_io.ALPHA_FORMATS`
    (others composite on white), an ``(r, g, b)`` composites every input on it. Outputs keep 16
    bits per channel of a 16-bit input in :data:`colorization.image_io.DEEP_FORMATS`."""

    out_dir: Path
    fmt: str | None = None
    force: bool = False
    compare: bool = False
    background: tuple[int, int, int] | None = None

    def pil_format(self, out: Path) -> str | None:
        """PIL's name of the format ``out`` is written in (None: not an image format PIL writes)."""
        if self.fmt:
            return image_io.OUTPUT_FORMATS[self.fmt].pil_format
        return image_io.pil_format_for_suffix(out.suffix)

    def keeps_alpha(self, out: Path) -> bool:
        return self.background is None and self.pil_format(out) in image_io.ALPHA_FORMATS

    def targets(self, out: Path) -> list[Path]:
        return [compare_path(out), out] if self.compare else [out]

    def plan(self, index: int, file: Path, root: Path | None, claimed: dict[Path, Path] | None = None) -> Task:
        """Todo; skipped when every target exists (without ``force``); failed when a target is the
        input itself or (given ``claimed``: output -> input so far) another entry's output."""
        src = Path(file)
        task = Task(index, src, output_path(src, root, self.out_dir, self.fmt))
        if claimed is not None:
            key = task.out.resolve()
            if key in claimed:
                return task.end("failed", f"{src}: its output {task.out} is also the output of {claimed[key]}")
            claimed[key] = src
        targets = self.targets(task.out)
        if any(_same_file(target, src) for target in targets):
            return task.end("failed", f"{src}: the output would overwrite the input; choose another -o")
        if not self.force and all(target.exists() for target in targets):
            return task.end("skipped", f"{src}: {task.out} exists (use --force to overwrite)")
        return task


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # either is missing: writing a cannot destroy b
        return False


@dataclass
class JobSummary:
    """Counts of a job (or of one rank's share) and the first failures as (file, reason)."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    failures_truncated: bool = False

    def count(self, task: Task) -> None:
        setattr(self, task.status, getattr(self, task.status) + 1)  # done, skipped or failed
        if task.status == "failed":
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append((str(task.src), task.reason))
            else:
                self.failures_truncated = True


class FileDataset(IterableDataset):
    """One rank's share of the entries as planned and prepared :class:`Task` (ready, skipped or
    failed), split again across DataLoader workers: entry ``i`` goes to worker
    ``(i // world_size) % workers``. ``entries`` must be iterable more than once (a list, or an
    object whose ``__iter__`` streams a file) and picklable for worker processes."""

    def __init__(
        self, entries: Iterable[Entry], outputs: Outputs, size: int, stride: int,
        max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS, hints: Mapping[Path, list] | None = None,
        rank: int = 0, world_size: int = 1, unique_outputs: bool = False,
    ) -> None:
        self.entries, self.outputs, self.size, self.stride = entries, outputs, size, stride
        self.max_pixels, self.hints = max_pixels, hints or {}
        self.rank, self.world_size, self.unique_outputs = rank, world_size, unique_outputs

    def __iter__(self) -> Iterator[Task]:
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        claimed: dict[Path, Path] | None = {} if self.unique_outputs else None
        for index, (file, root) in enumerate(self.entries):
            if index % self.world_size != self.rank or (index // self.world_size) % nworkers != wid:
                continue
            task = self.outputs.plan(index, file, root, claimed)
            if task.status == "todo":
                try:
                    keep = self.outputs.keeps_alpha(task.out)
                    loaded = image_io.open_image(task.src, max_pixels=self.max_pixels, keep_alpha=keep,
                                                 background=self.outputs.background or image_io.BACKGROUND)
                    loaded = known_gray(loaded, self.outputs.background)  # a gray file: no R == G == B check
                    points = self.hints.get(task.src)  # ValueError: a point outside the image
                    task.prep = prepare_image(loaded, self.size, self.stride, self.max_pixels, points)
                    task.exif, task.status = loaded.exif, "ready"
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the job
                    task.end("failed", describe_error(task.src, exc))
            yield task


class ProgressReporter:
    """A ``progress`` callback: a tqdm bar on stderr and a line ``failed: <reason>`` per failed
    file (and ``skipped: <reason>`` per skipped one with ``show_skipped``)."""

    def __init__(
        self, total: int | None, desc: str = "colorize", show_skipped: bool = True, disable: bool | None = None
    ) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="img", desc=desc, file=sys.stderr, disable=disable)
        self.show_skipped = show_skipped

    def __call__(self, task: Task) -> None:
        if task.status == "failed" or (task.status == "skipped" and self.show_skipped):
            self.bar.write(f"{task.status}: {task.reason}", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def colorize_files(
    colorizer: Colorizer,
    entries: Iterable[Entry],
    outputs: Outputs,
    *,
    hints: Mapping[Path, list] | None = None,
    saturation: float = 1.0,
    batch_size: int = 8,
    workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    unique_outputs: bool = False,
    progress: Callable[[Task], None] | None = None,
    reference: Any = None,
    reference_strength: float = 1.0,
) -> JobSummary:
    """Colorize this rank's share of ``entries`` (``(file, root)`` pairs) as ``outputs`` says.

    Args:
        hints: colour-hint points per entry file (as the entry names it); needs a hint-aware model.
        saturation: chroma multiplier. batch_size: images per network call (equal working shapes).
        workers: DataLoader processes that decode and prepare (0: this process).
        rank, world_size: the share: entries ``i`` with ``i % world_size == rank``.
        unique_outputs: fail an entry whose output an earlier entry of the share has (remembers
            every output path, so for lists held in memory anyway).
        progress: called with each finished :class:`Task` (done, skipped or failed).
        reference: a colour reference photo for every entry (read and encoded once, before any
            file: :meth:`Colorizer.encode_reference`); matched in this process, after the workers
            prepared each photo. reference_strength: its weight, ``[0, 2]``.

    Returns:
        The counts and failures of the share; errors of single files are counted, not raised.

    Raises:
        ValueError: ``saturation`` outside ``colorizer.SATURATION_RANGE``, or a bad reference (and
            the image errors of reading it), before any file.
    """
    if not SATURATION_RANGE[0] <= saturation <= SATURATION_RANGE[1]:
        raise ValueError(f"saturation must be a number in {list(SATURATION_RANGE)}, got {saturation!r}")
    check_strength(reference_strength)
    if reference is not None:
        reference = colorizer.encode_reference(reference)
    start, summary = time.perf_counter(), JobSummary()
    dataset = FileDataset(
        entries, outputs, colorizer.size, colorizer.stride, colorizer.max_pixels, hints, rank, world_size,
        unique_outputs,
    )
    # batch_size=None: tasks pass through the loader one by one, as they are
    tasks = dataset if workers == 0 else DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4)

    def finish(task: Task) -> None:
        summary.count(task)
        if progress is not None:
            progress(task)

    def run(window: list[Task]) -> None:
        if reference is not None:
            for task in window:
                colorizer.add_reference(task.prep, reference, reference_strength)
        for task, ab in zip(window, colorizer.predict([t.prep for t in window], batch_size)):
            try:
                if _write(colorizer, task, ab, saturation, outputs):
                    task.end("done")
                else:
                    task.end("skipped", f"{task.src}: {task.out} exists (written meanwhile by another run)")
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the job
                task.end("failed", describe_error(task.src, exc))
            finish(task)

    def ready() -> Iterator[Task]:
        for task in tasks:
            if task.status == "ready":
                yield task
            else:
                finish(task)  # skipped or failed while preparing

    for window in windows(ready(), batch_size, lambda task: task.prep.l_full.numel()):
        run(window)
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary


def _write(colorizer: Colorizer, task: Task, ab: Any, saturation: float, outputs: Outputs) -> bool:
    """Finish ``task`` and write its missing targets (all with ``force``); False when another run
    wrote them all since the task was planned."""
    result = colorizer.finish_array(task.prep, ab, saturation)  # 16 bits for a 16-bit input, alpha if kept
    written = False
    try:
        for path in outputs.targets(task.out):
            if outputs.force or not path.exists():
                image: Any = result
                if path != task.out:
                    gray = colorizer.finish(task.prep, ab, 0.0)
                    image = side_by_side(gray, colorizer.finish(task.prep, ab, saturation))
                image_io.save_image(image, path, overwrite=outputs.force, format=outputs.fmt, exif=task.exif)
                written = True
    except FileExistsError:  # appeared between the check and the write
        pass
    return written


def colorize_videos(
    colorizer: Colorizer,
    entries: Iterable[Entry],
    out_dir: Path,
    *,
    fmt: str | None = None,
    force: bool = False,
    hints: Mapping[Path, Mapping[int, list]] | None = None,
    saturation: float = 1.0,
    batch_size: int = 4,
    rank: int = 0,
    world_size: int = 1,
    frame_progress: bool | None = None,
    progress: Callable[[Task], None] | None = None,
    reference: Any = None,
    reference_strength: float = 1.0,
) -> JobSummary:
    """Colorize this rank's share of video ``entries`` into ``out_dir`` with the photos' rules:
    outputs mirror the inputs (:func:`output_path`, suffix of ``fmt``, default MP4), existing
    outputs are skipped without ``force``, a video that fails is counted and reported, the others
    complete (:func:`colorization.video.colorize_video`, atomic, streaming).

    Args:
        hints: per entry file, colour points per frame index. frame_progress: a frame bar per video
            (None: on a terminal). reference: a colour photo for every video, or ``{start: photo}``
            per shot (:func:`colorization.video.colorize_video`); read and encoded once.
            Other arguments as for :func:`colorize_files`.

    A hint that is dropped, goes missing or fades before its shot ends is reported on stderr as
    ``warning: NAME: reason`` (:mod:`colorization.video.hint_tracking`); the video still completes.
    """
    from tqdm import tqdm

    from colorization.video.pipeline import colorize_video  # lazy: PyAV and OpenCV only for videos

    outputs = Outputs(Path(out_dir), fmt or DEFAULT_VIDEO_FORMAT, force)
    summary, start, claimed = JobSummary(), time.perf_counter(), {}
    check_strength(reference_strength)
    if isinstance(reference, Mapping):
        reference = {k: colorizer.encode_reference(v) for k, v in reference.items()}
    elif reference is not None:
        reference = colorizer.encode_reference(reference)
    for index, (file, root) in enumerate(entries):
        if index % world_size != rank:
            continue
        task = outputs.plan(index, file, root, claimed)
        if task.status == "todo":
            try:
                def warn(message: str, src: Path = task.src) -> None:
                    tqdm.write(f"warning: {src}: {message}", file=sys.stderr)

                colorize_video(task.src, task.out, colorizer, format=outputs.fmt, saturation=saturation,
                               hints=(hints or {}).get(Path(file)), batch_size=batch_size, progress=frame_progress,
                               on_warning=warn, reference=reference, reference_strength=reference_strength)
                task.end("done")
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the job
                task.end("failed", describe_error(task.src, exc))
        summary.count(task)
        if progress is not None:
            progress(task)
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary
