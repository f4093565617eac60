"""The videos of a ``colorize-many`` job, cut into chunks that all ranks share.

Every rank plans every video the same way (:func:`plan_videos`: the output it mirrors to, skipped
when it exists, and its chunks of ``chunk_seconds``, :func:`colorization.video.chunks.plan_chunks`).
The work units are the chunks of all videos in order (a video of one chunk is one unit, colorized
straight to its output); unit ``j`` goes to rank ``j % world_size``. A chunk is written atomically
to ``OUTDIR/.colorize-many/chunks/<output path>/<k>.<ext>`` (an existing one is kept: a rerun
resumes). When every rank is done, rank 0 joins each video whose chunks are all there
(:func:`join_videos`, packets copied, the source's audio added) and removes its chunks; a video
with a failed chunk is reported failed and its other chunks are kept for the rerun.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colorization.batch import jobs
from colorization.video.chunks import Chunk, colorize_chunk, join_chunks, plan_chunks
from colorization.video.formats import DEFAULT_VIDEO_FORMAT, video_format
from colorization.video.io import VideoReader

__all__ = ["CHUNKS_DIR", "VideoPlan", "plan_videos", "colorize_chunks", "join_videos"]

CHUNKS_DIR = "chunks"
"""Folder inside ``OUTDIR/.colorize-many`` holding the chunks of videos not yet joined."""


@dataclass
class VideoPlan:
    """One video of the job: ``task`` as :meth:`colorization.batch.jobs.Outputs.plan` planned it
    (todo, skipped or failed) and its chunks (empty unless todo)."""

    task: jobs.Task
    chunks: list[Chunk] = field(default_factory=list)


def plan_videos(
    entries: Iterable[jobs.Entry], outputs: jobs.Outputs, chunk_seconds: float, overlap_seconds: float,
    max_pixels: int | None,
) -> list[VideoPlan]:
    """Plan every video entry (opens each one's header; decodes nothing). Deterministic, so all
    ranks get the same plan."""
    plans, claimed = [], {}
    for index, (file, root) in enumerate(entries):
        task = outputs.plan(index, Path(file), root, claimed)
        plan = VideoPlan(task)
        if task.status == "todo":
            try:
                with VideoReader(task.src, max_pixels=max_pixels) as reader:
                    plan.chunks = plan_chunks(reader, chunk_seconds, overlap_seconds)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the job
                task.end("failed", jobs.describe_error(task.src, exc))
        plans.append(plan)
    return plans


def chunk_path(out_dir: Path, plan: VideoPlan, k: int) -> Path:
    """Where chunk ``k`` of ``plan``'s video is kept until the join."""
    rel = plan.task.out.relative_to(out_dir)
    return out_dir / jobs.STATE_DIR / CHUNKS_DIR / rel / f"{k:05d}{plan.task.out.suffix}"


def colorize_chunks(
    colorizer: Any, plans: list[VideoPlan], out_dir: Path, *, fmt: str | None, force: bool, saturation: float,
    batch_size: int, rank: int = 0, world_size: int = 1, reference: Any = None, reference_strength: float = 1.0,
) -> tuple[jobs.JobSummary, list[tuple[int, int, int, str]]]:
    """Colorize this rank's chunks (``reference``: an encoded colour photo for every video, matched at
    each chunk's first frame).

    Returns:
        The rank's counts of the videos it owns outright (one chunk, or skipped/failed when
        planned; video ``i`` is owned by rank ``i % world_size``), and for each chunk of a longer
        video it worked on ``(video, chunk, frames, reason)``: frames -1 with a reason on failure.
    """
    from colorization.video.pipeline import colorize_video  # lazy like jobs.colorize_videos

    summary, reports, unit = jobs.JobSummary(), [], 0
    name = fmt or DEFAULT_VIDEO_FORMAT
    for v, plan in enumerate(plans):
        task = plan.task
        if task.status != "todo" or len(plan.chunks) == 1:
            mine = unit % world_size == rank
            unit += 1
            if not mine:
                continue
            if task.status == "todo":
                try:
                    colorize_video(task.src, task.out, colorizer, format=name, saturation=saturation,
                                   batch_size=batch_size, progress=False, reference=reference,
                                   reference_strength=reference_strength)
                    task.end("done")
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the job
                    task.end("failed", jobs.describe_error(task.src, exc))
            summary.count(task)
            continue
        for chunk in plan.chunks:
            mine = unit % world_size == rank
            unit += 1
            if not mine:
                continue
            dst = chunk_path(out_dir, plan, chunk.index)
            if dst.exists() and not force:
                reports.append((v, chunk.index, 0, "kept"))
                continue
            try:
                frames = colorize_chunk(task.src, dst, chunk, colorizer, format=name, saturation=saturation,
                                        batch_size=batch_size, reference=reference,
                                        reference_strength=reference_strength)
                reports.append((v, chunk.index, frames, ""))
            except Exception as exc:  # noqa: BLE001 - one bad chunk fails its video, not the job
                reports.append((v, chunk.index, -1, jobs.describe_error(task.src, exc)))
    return summary, reports


def join_videos(
    plans: list[VideoPlan], reports: Iterable[tuple[int, int, int, str]], out_dir: Path, fmt: str | None,
) -> jobs.JobSummary:
    """Join every video of several chunks whose chunks all succeeded (rank 0, after all ranks);
    remove the joined videos' chunks. ``reports``: every rank's from :func:`colorize_chunks`."""
    name = fmt or DEFAULT_VIDEO_FORMAT
    video_format(name)
    failed: dict[int, str] = {}
    for v, _k, frames, reason in reports:
        if frames < 0 and v not in failed:
            failed[v] = reason
    summary = jobs.JobSummary()
    for v, plan in enumerate(plans):
        task = plan.task
        if task.status != "todo" or len(plan.chunks) == 1:
            continue
        if v in failed:
            summary.count(task.end("failed", failed[v]))
            continue
        paths = [chunk_path(out_dir, plan, c.index) for c in plan.chunks]
        try:
            join_chunks(task.src, [p for p in paths if p.exists()], task.out, name)
            task.end("done")
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the job
            task.end("failed", jobs.describe_error(task.src, exc))
        summary.count(task)
        if task.status == "done":
            shutil.rmtree(paths[0].parent, ignore_errors=True)
            _remove_empty(paths[0].parent.parent, out_dir)
    return summary


def _remove_empty(folder: Path, out_dir: Path) -> None:
    """Remove ``folder`` and its parents up to ``OUTDIR/.colorize-many`` while they are empty."""
    stop = out_dir.resolve()
    folder = folder.resolve()
    while folder != stop and folder.parent != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
