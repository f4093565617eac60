"""Colorize a long video in chunks that separate processes can do, and join them without re-encoding.

A video is cut by time into chunks of ``chunk_seconds`` (:func:`plan_chunks`; the frame with time
stamp ``pts`` belongs to exactly one chunk). :func:`colorize_chunk` colorizes one chunk into its own
video-only file, starting the stabiliser ``overlap_seconds`` earlier: the frames of that warm-up
are decoded and colorized but not written, so the stabiliser enters the chunk with the chroma it
would have carried in a single run (it forgets its start at ``carry ** frames``, and resets at
scene cuts anyway). :func:`join_chunks` copies the chunks' encoded packets one after another into
the output, with the source's audio, without decoding or re-encoding a frame: the joined video
decodes to exactly the frames of its chunks, and keeps the source's frame count, size and time
stamps.

Every chunk starts with a key frame (each is its own encoder run) and all are encoded with the same
settings, so their packets join into one valid stream; :func:`join_chunks` checks that their codec
headers agree.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from colorization import image_io
from colorization.video.formats import VideoFormat, video_format
from colorization.video.io import VideoError, VideoReader, _AudioCopier, open_writer
from colorization.video.pipeline import colorize_frames
from colorization.video.stabilize import StabilizerConfig

if TYPE_CHECKING:  # pragma: no cover
    from colorization.inference.colorizer import Colorizer

__all__ = ["Chunk", "plan_chunks", "colorize_chunk", "join_chunks"]


@dataclass(frozen=True)
class Chunk:
    """Chunk ``index`` of a video: the frames with ``start <= pts < end`` (time-base ticks; ``end``
    None for the last chunk), colorized from ``warmup`` on (``warmup <= start``)."""

    index: int
    start: int
    end: int | None
    warmup: int


def plan_chunks(reader: VideoReader, chunk_seconds: float, overlap_seconds: float = 2.0) -> list[Chunk]:
    """Cut the video of ``reader`` into chunks of ``chunk_seconds`` by its declared duration.

    Returns:
        One chunk for a video no longer than ``chunk_seconds`` or of unknown duration, else
        ``ceil(duration / chunk_seconds)`` chunks (the last one open-ended).

    Raises:
        ValueError: ``chunk_seconds <= 0`` or ``overlap_seconds < 0``.
    """
    if not chunk_seconds > 0 or overlap_seconds < 0:
        raise ValueError(f"chunk_seconds must be > 0 and overlap_seconds >= 0, got {chunk_seconds}, {overlap_seconds}")
    origin = int(reader.stream.start_time or 0)
    duration = reader.info.duration
    count = 1 if not duration else max(1, math.ceil(duration / chunk_seconds - 1e-9))
    tb = reader.time_base
    bounds = [origin + round(Fraction(k) * Fraction(chunk_seconds) / tb) for k in range(count)] + [None]
    overlap = round(Fraction(overlap_seconds) / tb)
    return [
        Chunk(k, bounds[k], bounds[k + 1], max(origin, bounds[k] - overlap) if k else origin)  # type: ignore[arg-type]
        for k in range(count)
    ]


def colorize_chunk(
    src: str | Path,
    dst: str | Path,
    chunk: Chunk,
    colorizer: Colorizer,
    *,
    format: str | None = None,
    stabilize: bool | StabilizerConfig = True,
    saturation: float = 1.0,
    batch_size: int = 4,
    reference: Any = None,
    reference_strength: float = 1.0,
) -> int:
    """Colorize the frames of ``chunk`` into ``dst``, a video-only file (written atomically).
    ``reference``: a colour photo for the whole chunk (matched at its first frame, the warm-up's).

    Returns:
        The number of frames written (0 for a chunk without frames: ``dst`` is then not written).

    Raises:
        colorization.video.io.VideoError subclasses: as for
        :func:`colorization.video.pipeline.colorize_video`; ``dst`` is untouched.
    """
    fmt = video_format(format)
    with VideoReader(src, max_pixels=colorizer.max_pixels) as reader:
        stamps: list[int] = []

        def luma() -> Iterator[Any]:
            for frame, pts in reader.frames_between(chunk.warmup, chunk.end):
                stamps.append(pts)
                yield frame

        out = colorize_frames(colorizer, luma(), stabilize=stabilize, saturation=saturation, batch_size=batch_size,
                              reference=reference, reference_strength=reference_strength)
        first = next(out, None)
        if first is None:
            return 0
        with open_writer(dst, reader, fmt, audio=False) as writer:
            for i, rgb in enumerate(_chain(first, out)):
                if stamps[i] >= chunk.start:
                    writer.write(rgb, stamps[i])
            frames = writer.frames
        if frames == 0:
            Path(dst).unlink()  # only warm-up frames: the chunk holds none of its own
    return frames


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _settings(stream: Any) -> tuple:
    """What must agree between chunks for their packets to form one stream."""
    ctx = stream.codec_context
    return ctx.name, ctx.width, ctx.height, ctx.pix_fmt, ctx.extradata


def _packets(chunks: Sequence[Path], settings: tuple) -> Iterator[av.Packet]:
    """The video packets of ``chunks`` in order (one chunk open at a time)."""
    for i, path in enumerate(chunks):
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            if _settings(stream) != settings:
                raise VideoError(f"{path}: chunk {i} was encoded with other settings than chunk 0; cannot join them")
            for packet in c.demux(stream):
                if packet.dts is not None:
                    yield packet


def _seconds(packet: av.Packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def join_chunks(src: str | Path, chunks: Sequence[str | Path], dst: str | Path, format: str | None = None) -> int:
    """Join the chunk files of :func:`colorize_chunk` (in order) into ``dst`` with the audio of ``src``,
    copying packets (no decoding or re-encoding of the video); written atomically.

    Returns:
        The number of video frames (packets) written.

    Raises:
        VideoError: no chunks, or chunks encoded with different codec settings.
    """
    fmt: VideoFormat = video_format(format)
    paths = [Path(p) for p in chunks]
    if not paths:
        raise VideoError(f"{src}: no chunks to join")
    with av.open(str(paths[0])) as first:
        template = first.streams.video[0]
        settings = _settings(template)
        with VideoReader(src, max_pixels=None) as reader, image_io.atomic_path(dst) as tmp:
            out = av.open(str(tmp), "w", format=fmt.muxer)
            try:
                video = out.add_stream_from_template(template)
                audio = _AudioCopier(out, reader.audio_streams, fmt)
                sound = (p for p in reader.container.demux(reader.audio_streams)) if reader.audio_streams else iter(())
                frames = 0
                for packet in heapq.merge(_packets(paths, settings), sound, key=_seconds):
                    if packet.stream.type == "video":
                        packet.stream = video
                        out.mux(packet)
                        frames += 1
                    else:
                        audio.mux(packet)
                audio.flush()
            except BaseException:
                try:
                    out.close()
                except (av.error.FFmpegError, ValueError, OSError):
                    pass
                raise
            out.close()
    return frames
