"""``colorize-many``: colorize a list of (millions of) images across processes, GPUs and nodes.

Launch one process per GPU (or several CPU processes) with ``torchrun``; every process (rank)

* streams the input list (a text file with one path per line, or a folder walked in sorted order)
  and takes the entries whose index ``i`` satisfies ``i % world_size == rank`` (deterministic
  sharding; the list is never held in memory),
* colorizes them with :func:`colorization.batch.jobs.colorize_files` (the job of ``colorize`` too):
  entries whose output exists are skipped (a rerun after a crash resumes where it stopped),
  images are decoded and prepared in DataLoader worker processes, equal working shapes share
  network calls, and every output is written atomically (temporary file + rename),
* cuts the videos among the entries into chunks of ``chunk_seconds`` that all ranks share
  (:mod:`colorization.batch.video_chunks`); when all ranks are done, rank 0 joins each video's
  chunks losslessly (packets copied, the source's audio kept),
* writes its counts (``done`` / ``failed`` / ``skipped``) to
  ``OUTDIR/.colorize-many/rank-<r>.json``; rank 0 gathers all of them (gloo) and writes the merged
  ``OUTDIR/.colorize-many/summary.json``.

Only the network's device depends on the rank (``cuda:LOCAL_RANK`` with ``--device cuda``); the
process group is used for the final summary only, so ranks never wait for each other while
working (until the videos' chunks are joined at the end).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from colorization import image_io
from colorization.batch import jobs, video_chunks
from colorization.batch.hint_files import HintsFileError, load_hints_file, match_inputs, split_video_hints
from colorization.batch.jobs import STATE_DIR
from colorization.inference.colorizer import Colorizer
from colorization.video.formats import VIDEO_EXTENSIONS, VIDEO_FORMATS, is_video_path

__all__ = [
    "ManyConfig",
    "DistContext",
    "iter_entries",
    "resolve_hints",
    "check_hints_model",
    "colorize_many",
    "launch_local",
    "read_summary",
    "STATE_DIR",
]



@dataclass(frozen=True)
class ManyConfig:
    """Settings of one colorize-many job (JSON-serialisable; stored in the summary).

    Attributes:
        out_dir: output folder; input paths are mirrored under it.
        list_file: text file with one image path per line (blank lines and ``#`` comments
            ignored), or None when ``input_dir`` is used.
        input_dir: folder walked recursively in sorted order (image extensions only).
        root: folder that relative list entries are resolved against and that outputs mirror
            (default: the list file's folder, or ``input_dir``).
        model: exported model folder (None: the shipped default); backend "torch" or "onnx".
        device: "cpu", "cuda" (each rank uses ``cuda:LOCAL_RANK``) or None (cuda when available).
        size: working size (None: the model's). saturation: chroma multiplier. refine: guided filter.
        fmt: output format "png"/"jpeg"/"webp" (None: keep each input's) for photos, or a video
            format (:data:`colorization.video.formats.VIDEO_FORMATS`, None: mp4) for videos.
        batch_size: images per network call. workers: DataLoader decode processes per rank.
        force: overwrite existing outputs instead of skipping them.
        max_pixels: larger images fail with ImageTooLargeError.
        hints_file: JSON object mapping input names (relative to the root, or base names) to
            colour-hint points (:mod:`colorization.batch.hint_files`); needs a hint-aware model.
            Photos only.
        chunk_seconds: videos longer than this are cut into chunks of this length that the
            ranks share (:mod:`colorization.batch.video_chunks`).
        overlap_seconds: each chunk's stabiliser starts this much earlier (frames colorized but
            not written), so the colours carry on across the chunk boundaries.
        background: colour (name or ``#rrggbb``) transparent inputs are composited on; None keeps
            their alpha in PNG, WebP and TIFF outputs (other formats: white).
        reference: a colour photo whose colours every photo and video takes where it matches
            (:meth:`colorization.Colorizer.encode_reference`; read once per rank); needs a
            hint-aware model. reference_strength: ``[0, 2]``.
        threads: CPU threads of each process (torch intra-op, and ONNX Runtime's with the onnx
            backend); None: torch's default in a single process, ``cpu_count // nprocs`` in each
            of ``nprocs`` spawned ones (``OMP_NUM_THREADS`` when set).
    """

    out_dir: str
    list_file: str | None = None
    input_dir: str | None = None
    root: str | None = None
    model: str | None = None
    backend: str = "torch"
    device: str | None = None
    size: int | None = None
    saturation: float = 1.0
    refine: bool = False
    fmt: str | None = None
    batch_size: int = 8
    workers: int = 2
    force: bool = False
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS
    hints_file: str | None = None
    background: str | None = None
    chunk_seconds: float = 60.0
    overlap_seconds: float = 2.0
    reference: str | None = None
    reference_strength: float = 1.0
    threads: int | None = None

    def __post_init__(self) -> None:
        image_io.parse_background(self.background)  # ValueError for a bad colour
        if (self.list_file is None) == (self.input_dir is None):
            raise ValueError("give exactly one of list_file (--list) and input_dir (--input)")
        known = (*image_io.OUTPUT_FORMATS, *VIDEO_FORMATS)
        if self.fmt is not None and self.fmt not in known:
            raise ValueError(f"fmt must be one of {', '.join(known)} or None, got {self.fmt!r}")
        if not self.chunk_seconds > 0 or not self.overlap_seconds >= 0:
            raise ValueError("chunk_seconds must be > 0 and overlap_seconds >= 0")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        if self.backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {self.backend!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")

    def resolved_root(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        if self.input_dir is not None:
            return Path(self.input_dir)
        return Path(self.list_file).parent  # type: ignore[arg-type]

    def entries(self, kind: str = "all") -> _Entries:
        """The ``(path, root)`` entries of the job ("all", "images" or "videos"), streamed afresh
        on every iteration."""
        return _Entries(self, kind)

    def outputs(self) -> jobs.Outputs:
        """Where the photos go (a video format given as ``fmt`` keeps each photo's format)."""
        return jobs.Outputs(Path(self.out_dir), self.fmt if self.fmt in image_io.OUTPUT_FORMATS else None, self.force,
                            background=image_io.parse_background(self.background))

    def video_outputs(self) -> jobs.Outputs:
        """Where the videos go (mp4 unless ``fmt`` is a video format)."""
        fmt = self.fmt if self.fmt in VIDEO_FORMATS else "mp4"
        return jobs.Outputs(Path(self.out_dir), fmt, self.force)


@dataclass(frozen=True)
class DistContext:
    """Rank / world size / local rank from the torchrun environment (1 process without it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistContext:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )


# --------------------------------------------------------------------------------------------
# The input stream
# --------------------------------------------------------------------------------------------


_EXTENSIONS = frozenset(image_io.IMAGE_EXTENSIONS) | frozenset(VIDEO_EXTENSIONS)


def _walk_sorted(folder: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Image and video files under ``folder`` in a deterministic order, streamed (hidden entries and
    the folder ``exclude`` below ``folder``, the output folder, skipped)."""
    skip = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (skip is None or (Path(dirpath) / d).resolve() != skip)
        )
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in _EXTENSIONS:
                yield Path(dirpath) / name


def iter_entries(config: ManyConfig) -> Iterator[Path]:
    """All input paths in order (every rank sees the same sequence)."""
    if config.input_dir is not None:
        folder = Path(config.input_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        yield from _walk_sorted(folder, Path(config.out_dir))
        return
    root = config.resolved_root()
    with open(config.list_file, encoding="utf-8") as fh:  # type: ignore[arg-type]
        for line in fh:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            p = Path(text).expanduser()
            yield p if p.is_absolute() else root / p


@dataclass(frozen=True)
class _Entries:
    """Re-iterable (and picklable, for DataLoader workers) ``(path, root)`` stream of a job."""

    config: ManyConfig
    kind: str = "all"

    def __iter__(self) -> Iterator[tuple[Path, Path]]:
        root = self.config.resolved_root()
        paths = iter_entries(self.config)
        if self.kind != "all":
            videos = self.kind == "videos"
            paths = (p for p in paths if is_video_path(p) == videos)
        return ((path, root) for path in paths)


def resolve_hints(config: ManyConfig) -> dict[Path, list]:
    """The colour-hint points of ``config.hints_file`` per input entry (``{}`` without one).

    Reads the file and streams the input list once, so a bad file stops the job before any image.

    Raises:
        colorization.batch.hint_files.HintsFileError: a bad file, a list instead of a name -> points
            object, or a name that matches no entry or several.
    """
    if config.hints_file is None:
        return {}
    loaded = load_hints_file(config.hints_file)
    if not isinstance(loaded, dict):
        raise HintsFileError(
            f"{config.hints_file}: colorize-many needs an object mapping file names to lists of points, "
            'not a list: {"NAME": [points], ...}'
        )
    photos, videos = split_video_hints(match_inputs(loaded, config.entries(), config.hints_file), config.hints_file)
    for file in videos:
        raise HintsFileError(
            f"{config.hints_file}: {file} is a video; colorize-many takes colour hints for photos only "
            "(give a video's hints to `colorize VIDEO --hints FILE`)"
        )
    return photos


def check_hints_model(
    hints: dict[Path, list], accepts_hints: bool, model_name: str, hints_file: str | None, reason: str | None = None
) -> None:
    """Refuse hints (any point at all) for a model without hint input; ``reason``: why, and what to do
    (:attr:`colorization.Colorizer.no_hints_reason`; default: the model was trained without hints).

    Raises:
        colorization.batch.hint_files.HintsFileError: naming the file and the model.
    """
    if not accepts_hints and any(hints.values()):
        raise HintsFileError(
            f"{hints_file}: "
            + (reason or f"the model {model_name} does not take colour hints (it was trained without them); "
               "use --model with a hint-aware model")
        )


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    image_io.atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _count_entries(config: ManyConfig) -> int | None:
    """Number of list entries for the progress bar; None for folders (not walked twice)."""
    return None if config.list_file is None else sum(1 for _ in config.entries("images"))


def _merge(parts: list[dict[str, Any]], config: ManyConfig, world_size: int) -> dict[str, Any]:
    failures = [f for p in parts for f in p["failures"]]
    return {
        "done": sum(p["done"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "skipped": sum(p["skipped"] for p in parts),
        "world_size": world_size,
        "seconds": max((p["seconds"] for p in parts), default=0.0),
        "per_rank": [{k: p[k] for k in ("rank", "done", "failed", "skipped", "seconds")} for p in parts],
        "failures": failures,
        "failures_truncated": any(p["failures_truncated"] for p in parts),
        "config": asdict(config),
    }


def _add(summary: jobs.JobSummary, other: jobs.JobSummary) -> None:
    """Add ``other``'s counts and failures to ``summary``."""
    summary.done, summary.failed = summary.done + other.done, summary.failed + other.failed
    summary.skipped += other.skipped
    room = jobs.MAX_FAILURES_LISTED - len(summary.failures)
    summary.failures.extend(other.failures[:room])
    summary.failures_truncated |= other.failures_truncated or len(other.failures) > room


def _merge_joined(merged: dict[str, Any], joined: jobs.JobSummary) -> dict[str, Any]:
    """The merged summary with rank 0's joins of chunked videos counted."""
    return {
        **merged,
        "done": merged["done"] + joined.done,
        "failed": merged["failed"] + joined.failed,
        "failures": merged["failures"] + [list(f) for f in joined.failures],
        "joined": {"done": joined.done, "failed": joined.failed},
    }


def colorize_many(config: ManyConfig, ctx: DistContext | None = None, progress: bool = True) -> dict[str, Any]:
    """Run this rank's share of the job and return the summary merged over all ranks (every rank
    gets the same counts; rank 0 also writes it to ``OUTDIR/.colorize-many/summary.json``).

    Initialises a gloo process group when ``WORLD_SIZE > 1`` (torchrun sets the environment) and
    destroys it at the end.
    """
    import torch.distributed as dist

    ctx = ctx or DistContext.from_env()
    own_group = False
    if ctx.world_size > 1 and not dist.is_initialized():
        # gloo carries only the final summary; a long timeout lets ranks finish far apart
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        own_group = True
    try:
        device = config.device
        if device is None:
            device = "cuda" if torch.cuda.is_available() and config.backend == "torch" else "cpu"
        if device == "cuda":
            device = f"cuda:{ctx.local_rank}"
        colorizer = Colorizer.from_pretrained(
            config.model, device=device, backend=config.backend, size=config.size,
            max_pixels=config.max_pixels, refine=config.refine, threads=config.threads,
        )
        hints = resolve_hints(config)
        check_hints_model(hints, colorizer.accepts_hints, colorizer.model_name, config.hints_file,
                          colorizer.no_hints_reason)
        reference = None if config.reference is None else colorizer.encode_reference(config.reference)
        out_dir = Path(config.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        total = _count_entries(config)
        reporter = jobs.ProgressReporter(
            total=None if total is None else len(range(ctx.rank, total, ctx.world_size)),
            desc=f"rank {ctx.rank}", show_skipped=False, disable=None if (progress and ctx.rank == 0) else True,
        )
        try:
            summary = jobs.colorize_files(
                colorizer, config.entries("images"), config.outputs(), hints=hints, saturation=config.saturation,
                batch_size=config.batch_size, workers=config.workers, rank=ctx.rank, world_size=ctx.world_size,
                progress=reporter, reference=reference, reference_strength=config.reference_strength,
            )
        finally:
            reporter.close()
        plans = video_chunks.plan_videos(
            config.entries("videos"), config.video_outputs(), config.chunk_seconds, config.overlap_seconds,
            config.max_pixels,
        )
        video_fmt = config.video_outputs().fmt
        videos, chunk_reports = video_chunks.colorize_chunks(
            colorizer, plans, out_dir, fmt=video_fmt, force=config.force, saturation=config.saturation,
            batch_size=config.batch_size, rank=ctx.rank, world_size=ctx.world_size, reference=reference,
            reference_strength=config.reference_strength,
        )
        _add(summary, videos)
        summary.seconds = round(time.perf_counter() - started, 3)

        mine = {"rank": ctx.rank, "world_size": ctx.world_size, **asdict(summary), "chunks": chunk_reports}
        state = out_dir / STATE_DIR
        _write_json(state / f"rank-{ctx.rank:05d}.json", mine)
        if ctx.world_size > 1 and dist.is_initialized():
            parts: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(parts, mine)
        else:
            parts = [mine]
        merged = _merge(sorted(parts, key=lambda p: p["rank"]), config, ctx.world_size)
        if ctx.rank == 0:  # every rank's chunks are written: join the videos
            joined = video_chunks.join_videos(plans, (r for p in parts for r in p["chunks"]), out_dir, video_fmt)
            merged = _merge_joined(merged, joined)
            _write_json(state / "summary.json", merged)
        if ctx.world_size > 1 and dist.is_initialized():
            box = [merged]
            dist.broadcast_object_list(box, src=0)
            merged = box[0]
        return merged
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Local multi-process launch without torchrun
# --------------------------------------------------------------------------------------------


def read_summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The merged summary rank 0 wrote to ``OUTDIR/.colorize-many/summary.json``."""
    return json.loads((Path(out_dir) / STATE_DIR / "summary.json").read_text(encoding="utf-8"))


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned(local_rank: int, config: ManyConfig, nprocs: int, port: int, threads: int) -> None:
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(threads)
    colorize_many(config, DistContext.from_env(), progress=local_rank == 0)


def launch_local(config: ManyConfig, nprocs: int) -> dict[str, Any]:
    """Run the job with ``nprocs`` processes on this machine (``torch.multiprocessing.spawn``;
    rank r uses ``cuda:r`` with ``device="cuda"``), like ``torchrun --nproc_per_node nprocs``.
    Returns the merged summary. Torch threads per process: ``config.threads``, else
    ``OMP_NUM_THREADS`` when set, else ``cpu_count // nprocs``."""
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise RuntimeError("already running under torchrun (WORLD_SIZE > 1); do not also spawn processes")
    if nprocs == 1:
        return colorize_many(config, DistContext())
    threads = config.threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // nprocs)
    mp.spawn(_spawned, args=(config, nprocs, _free_port(), threads), nprocs=nprocs, join=True)
    return read_summary(config.out_dir)
