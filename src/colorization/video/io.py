"""Streaming video decode and encode with PyAV (FFmpeg's libraries, no ``ffmpeg`` process).

:class:`VideoReader` opens anything FFmpeg demuxes and decodes, checks it before any frame is
decoded (a video stream, a decoder, a bounded frame size) and yields the frames one at a time as
8-bit luma arrays with their presentation time stamps, muxing the audio packets into a
:class:`VideoWriter` as they pass. :class:`VideoWriter` encodes RGB frames (H.264 in MP4 by default,
:data:`VIDEO_FORMATS`) at the time stamps given, so the frame count, size, frame rate (variable rate
too) and the audio are kept. The output is written to a temporary file beside the destination and
renamed over it only when the whole video has been encoded (:func:`colorization.image_io.atomic_path`).

Errors are typed subclasses of :class:`colorization.image_io.ImageError` (the message names the file),
so everything that reports unreadable photos reports unreadable videos the same way.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from colorization import image_io
from colorization.video.formats import VideoFormat

__all__ = [
    "VideoError",
    "NotAVideoError",
    "CorruptVideoError",
    "EmptyVideoError",
    "UnsupportedVideoError",
    "VideoTooLargeError",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "open_writer",
]

class VideoError(image_io.ImageError):
    """Base class of video errors; the message names the file."""


class NotAVideoError(VideoError, image_io.NotAnImageError):
    """Not a container FFmpeg can read, or one without a video stream (audio only)."""


class CorruptVideoError(VideoError, image_io.CorruptImageError):
    """Truncated or damaged: decoding failed, or fewer frames than the container declares."""


class EmptyVideoError(VideoError, image_io.EmptyImageError):
    """The file is empty or its video stream holds no frame."""


class UnsupportedVideoError(VideoError):
    """A video stream whose codec this FFmpeg build cannot decode."""


class VideoTooLargeError(VideoError, image_io.ImageTooLargeError):
    """A frame larger than ``max_pixels``, or a video longer than the frame/duration bounds."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (before decoding).

    Attributes:
        width, height: frame size in pixels.
        frames: frame count the container declares, or None when it does not say.
        rate: average frame rate (frames/s), or None.
        duration: seconds, or None.
        codec: decoder name. audio: codec names of the audio streams (kept in the output).
    """

    width: int
    height: int
    frames: int | None
    rate: Fraction | None
    duration: float | None
    codec: str
    audio: tuple[str, ...]

    @property
    def expected_frames(self) -> int | None:
        """Declared frame count, else duration x rate (an estimate for progress bars), else None."""
        if self.frames:
            return self.frames
        if self.duration and self.rate:
            return max(1, round(self.duration * float(self.rate)))
        return None


Source = str | os.PathLike | bytes | BinaryIO


class VideoReader:
    """Open and check a video; iterate its frames as luma arrays.

    Args:
        src: a path, the file's bytes, or a binary file object.
        name: how messages name the input (default: the path, or ``<upload>``).
        max_pixels: frames with more pixels raise :class:`VideoTooLargeError` (None: unlimited).
        max_frames, max_duration: bounds on the declared length and on the frames decoded
            (None: unlimited); the REST service uses them.

    Raises:
        EmptyVideoError, NotAVideoError, UnsupportedVideoError, VideoTooLargeError: on opening.
    """

    def __init__(
        self,
        src: Source,
        *,
        name: str | None = None,
        max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
        max_frames: int | None = None,
        max_duration: float | None = None,
    ) -> None:
        if isinstance(src, (bytes, bytearray)):
            self.name = name or "<upload>"
            if not src:
                raise EmptyVideoError(f"{self.name}: the file is empty (0 bytes)")
            target: Any = io.BytesIO(bytes(src))
        elif isinstance(src, (str, os.PathLike)):
            self.name = name or str(src)
            try:
                size = os.path.getsize(src)
            except OSError as exc:
                raise FileNotFoundError(f"{self.name}: {exc.strerror or exc}") from None
            if size == 0:
                raise EmptyVideoError(f"{self.name}: the file is empty (0 bytes)")
            target = str(src)
        else:
            self.name = name or getattr(src, "name", None) or "<stream>"
            target = src
        self.max_frames, self.max_duration = max_frames, max_duration
        try:
            self.container = av.open(target, "r")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            if _iso_media(target):  # MP4/MOV/3GP: their index (moov) usually comes last, a cut loses it
                raise CorruptVideoError(
                    f"{self.name}: truncated or damaged MP4/MOV, its index (the moov box) is missing or cut "
                    f"({_reason(exc)})"
                ) from None
            if isinstance(exc, av.error.EOFError):
                raise EmptyVideoError(
                    f"{self.name}: no frame, the file ends before its first frame (empty or truncated)"
                ) from None
            raise NotAVideoError(f"{self.name}: not a readable video ({_reason(exc)})") from None
        try:
            self._check(max_pixels)
        except BaseException:
            self.container.close()
            raise

    def _check(self, max_pixels: int | None) -> None:
        c = self.container
        if not c.streams.video:
            kinds = "audio only" if c.streams.audio else "no video stream"
            raise NotAVideoError(f"{self.name}: not a video ({kinds})")
        self.stream = c.streams.video[0]
        ctx = self.stream.codec_context
        if ctx is None or not ctx.codec.is_decoder:
            if ctx is None:
                what = "a codec unknown to this FFmpeg build"
            else:
                what = f"{ctx.name}, which this FFmpeg cannot decode"
            raise UnsupportedVideoError(f"{self.name}: unsupported video codec ({what})")
        width, height = int(ctx.width), int(ctx.height)
        if width < 1 or height < 1:
            raise CorruptVideoError(f"{self.name}: the video stream has no frame size ({width}x{height})")
        if max_pixels is not None and width * height > max_pixels:
            raise VideoTooLargeError(
                f"{self.name}: {width}x{height} = {width * height:,} pixels per frame exceeds the limit of "
                f"{max_pixels:,} pixels (max_pixels)"
            )
        self.stream.thread_type = "AUTO"
        # read once while the file is open: PyAV 18 refuses stream attributes after close()
        self._time_base = Fraction(self.stream.time_base) if self.stream.time_base else Fraction(1, 90000)
        rate = self.stream.average_rate or self.stream.guessed_rate
        duration = self._stream_duration()
        self._video_duration = duration  # the video stream's own length, for the truncation check
        if duration is None and c.duration:
            duration = c.duration / av.time_base
        self.audio_streams = list(c.streams.audio)
        self.info = VideoInfo(
            width=width,
            height=height,
            frames=int(self.stream.frames) or None,
            rate=Fraction(rate) if rate else None,
            duration=duration,
            codec=ctx.codec.name,
            audio=tuple(s.codec_context.codec.name if s.codec_context else "unknown" for s in self.audio_streams),
        )
        if self.max_frames is not None and (self.info.frames or 0) > self.max_frames:
            raise VideoTooLargeError(f"{self.name}: {self.info.frames:,} frames; at most {self.max_frames:,} allowed")
        if self.max_duration is not None and duration is not None and duration > self.max_duration:
            raise VideoTooLargeError(f"{self.name}: {duration:.1f} s long; at most {self.max_duration:g} s allowed")

    def _stream_duration(self) -> float | None:
        """The video stream's own duration in seconds (its header, or Matroska's DURATION tag)."""
        if self.stream.duration and self.stream.time_base:
            return float(self.stream.duration * self.stream.time_base)
        tag = self.stream.metadata.get("DURATION")
        if tag:
            try:
                h, m, sec = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(sec)
            except ValueError:
                return None
        return None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    @property
    def time_base(self) -> Fraction:
        """Time base of the frames' ``pts`` (seconds per tick)."""
        return self._time_base

    def frames(self, writer: VideoWriter | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """Decode the frames in presentation order: ``(luma, pts)`` with luma a (H, W) uint8 array
        (full range 0-255) and ``pts`` in :attr:`time_base` ticks, strictly increasing.

        Audio packets met while demuxing go to ``writer`` (when given) unchanged or re-encoded.

        Raises:
            CorruptVideoError: a decoding error, a frame of another size, or fewer frames than the
                container declares (a truncated file).
            EmptyVideoError: no frame at all. VideoTooLargeError: past ``max_frames``/``max_duration``.
        """
        streams = [self.stream] + (self.audio_streams if writer is not None else [])
        count, first_pts, last_pts = 0, None, None
        step = _pts_step(self.info.rate, self.time_base)
        try:
            for packet in self.container.demux(streams):
                if packet.stream is not self.stream:
                    if writer is not None:
                        try:
                            writer.audio(packet)
                        except av.error.FFmpegError as exc:
                            raise VideoError(f"{self.name}: cannot write its audio stream ({_reason(exc)})") from None
                    continue
                for frame in packet.decode():
                    luma, last_pts = self._luma(frame, count, last_pts, step)
                    first_pts = last_pts if first_pts is None else first_pts
                    count += 1
                    yield luma, last_pts
        except (av.error.FFmpegError, ValueError) as exc:
            if isinstance(exc, image_io.ImageError):
                raise
            raise CorruptVideoError(f"{self.name}: damaged video, decoding failed after {count} frames "
                                    f"({_reason(exc)})") from None
        if count == 0:
            raise EmptyVideoError(f"{self.name}: the video stream holds no frame")
        # a little slack for containers whose counts and durations are not exact, but at most about
        # a second of frames, so a long film cannot lose minutes unnoticed
        declared, rate = self.info.frames, float(self.info.rate or 25)
        if declared and count < declared - 1 - min(0.02 * declared, rate):
            raise CorruptVideoError(f"{self.name}: truncated video, {count} of the {declared} frames it declares")
        span = float((last_pts - first_pts) * self.time_base) + 1 / rate
        length = self._video_duration
        if not declared and length and span < length - 2 / rate - min(0.05 * length, 1.0):
            raise CorruptVideoError(f"{self.name}: truncated video, its frames end at {span:.2f} s of the "
                                    f"{length:.2f} s it declares")

    def frames_between(self, start: int, end: int | None) -> Iterator[tuple[np.ndarray, int]]:
        """Decode only the frames with ``start <= pts < end`` (:attr:`time_base` ticks; ``end``
        None: to the end), seeking to the key frame before ``start`` first: ``(luma, pts)`` as
        :meth:`frames` yields them. No audio; the whole-file length checks of :meth:`frames` are
        not made (a chunk cannot tell a truncated file from a short one).

        Raises:
            CorruptVideoError: a decoding error, a frame of another size, or a frame without a
                time stamp (such a video cannot be split by time).
        """
        if start > (self.stream.start_time or 0):
            self.container.seek(start, stream=self.stream, backward=True, any_frame=False)
        count, last_pts = 0, None
        try:
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():
                    if frame.pts is None:
                        raise CorruptVideoError(f"{self.name}: frames without time stamps cannot be split into chunks")
                    if frame.pts < start:
                        continue
                    if end is not None and frame.pts >= end:
                        return
                    luma, last_pts = self._luma(frame, count, last_pts, 1)
                    count += 1
                    yield luma, last_pts
        except (av.error.FFmpegError, ValueError) as exc:
            if isinstance(exc, image_io.ImageError):
                raise
            raise CorruptVideoError(
                f"{self.name}: damaged video, decoding failed after {count} frames of a chunk ({_reason(exc)})"
            ) from None

    def _luma(self, frame: av.VideoFrame, count: int, last_pts: int | None, step: int) -> tuple[np.ndarray, int]:
        if frame.width != self.info.width or frame.height != self.info.height:
            raise CorruptVideoError(
                f"{self.name}: frame {count} is {frame.width}x{frame.height}, the video {self.info.width}x"
                f"{self.info.height} (size changes mid-stream are not supported)"
            )
        if self.max_frames is not None and count >= self.max_frames:
            raise VideoTooLargeError(f"{self.name}: more than {self.max_frames:,} frames")
        pts = frame.pts if frame.pts is not None else (0 if last_pts is None else last_pts + step)
        if last_pts is not None and pts <= last_pts:
            pts = last_pts + 1  # broken time stamps: keep them strictly increasing for the encoder
        if self.max_duration is not None and float(pts * self.time_base) > self.max_duration + 1:
            raise VideoTooLargeError(f"{self.name}: longer than {self.max_duration:g} s")
        return frame.to_ndarray(format="gray"), pts


def _iso_media(target: Any) -> bool:
    """Whether ``target`` (a path or a BytesIO) starts like an ISO base media file (``ftyp`` box)."""
    try:
        if isinstance(target, io.BytesIO):
            head = target.getvalue()[:8]
        elif isinstance(target, str):
            with open(target, "rb") as fh:
                head = fh.read(8)
        else:
            return False
    except OSError:
        return False
    return head[4:8] == b"ftyp"


def _pts_step(rate: Fraction | None, time_base: Fraction) -> int:
    """Ticks per frame at ``rate`` (for frames without time stamps)."""
    return max(1, round(1 / (float(rate or 25) * time_base)))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '", 1)[0].strip() or type(exc).__name__


class _AudioCopier:
    """The source's audio streams in an output container: copied where ``fmt`` takes their codec,
    else decoded, resampled and re-encoded (``fmt.audio_codec``; more than 2 channels downmixed)."""

    def __init__(self, container: Any, streams: list, fmt: VideoFormat) -> None:
        self.container = container
        self.streams: dict[int, tuple[Any, Any]] = {}
        for src in streams:
            name = src.codec_context.codec.name if src.codec_context else ""
            if fmt.audio_copy is None or name in fmt.audio_copy:
                self.streams[src.index] = (container.add_stream_from_template(src), None)
            else:
                rate = src.codec_context.sample_rate or 48000
                out = container.add_stream(fmt.audio_codec, rate=48000 if fmt.audio_codec == "libopus" else rate)
                out.layout = "mono" if src.codec_context.channels == 1 else "stereo"
                resampler = av.AudioResampler(format=out.format.name, layout=out.layout, rate=out.rate)
                self.streams[src.index] = (out, resampler)

    def mux(self, packet: av.Packet) -> None:
        """Mux one audio packet of the source (ignored when its stream is not kept)."""
        entry = self.streams.get(packet.stream.index)
        if entry is None:
            return
        out, resampler = entry
        if resampler is None:
            if packet.dts is None:
                return
            packet.stream = out
            self.container.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for chunk in resampler.resample(frame):
                self.container.mux(out.encode(chunk))

    def flush(self) -> None:
        """Flush the re-encoders (before the container is closed)."""
        for out, resampler in self.streams.values():
            if resampler is not None:
                for chunk in resampler.resample(None):
                    self.container.mux(out.encode(chunk))
                self.container.mux(out.encode(None))


class VideoWriter:
    """Encode RGB frames into ``path``'s temporary sibling; :meth:`commit` renames it over ``path``.

    Use :func:`open_writer` as a context manager: it commits on success and removes the temporary
    file on any error, so ``path`` is either the whole new video or untouched.

    Args:
        tmp: the file to write (a temporary path). reader: the source (size, rate, time base,
            audio streams to keep). fmt: the output format. audio: False: the video stream alone
            (a chunk of :mod:`colorization.video.chunks`).
    """

    def __init__(self, tmp: Path, reader: VideoReader, fmt: VideoFormat, audio: bool = True) -> None:
        self.container = av.open(str(tmp), "w", format=fmt.muxer)
        info = reader.info
        self.time_base = reader.time_base
        stream = self.container.add_stream(fmt.codec, rate=info.rate or Fraction(25))
        stream.width, stream.height = info.width, info.height
        odd = info.width % 2 or info.height % 2
        # 4:2:0 needs even sides; odd frame sizes are kept exactly with 4:4:4
        stream.pix_fmt = "yuv444p" if odd else "yuv420p"
        stream.codec_context.time_base = self.time_base
        stream.time_base = self.time_base
        stream.options = dict(fmt.options)
        stream.thread_count = 0
        cs = av.video.reformatter
        hd = info.height >= 720
        for attr, value in (("colorspace", cs.Colorspace.ITU709 if hd else cs.Colorspace.ITU601),
                            ("color_range", cs.ColorRange.MPEG)):
            setattr(stream.codec_context, attr, int(value))
        self._space = cs.Colorspace.ITU709 if hd else cs.Colorspace.ITU601
        self.stream = stream
        self._audio = _AudioCopier(self.container, reader.audio_streams if audio else [], fmt)
        self.frames = 0

    def audio(self, packet: av.Packet) -> None:
        """Mux one audio packet of the source (copied, or decoded and re-encoded)."""
        self._audio.mux(packet)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one (H, W, 3) uint8 RGB frame shown at ``pts`` (source time base ticks)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format=self.stream.pix_fmt, dst_colorspace=self._space)
        frame.pts = int(pts)
        frame.time_base = self.time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        self.container.mux(self.stream.encode(None))
        self._audio.flush()
        self.container.close()

    def abort(self) -> None:
        """Close without finishing (the temporary file is removed by :func:`open_writer`)."""
        try:
            self.container.close()
        except (av.error.FFmpegError, ValueError, OSError):
            pass


@contextlib.contextmanager
def open_writer(
    dst: str | os.PathLike, reader: VideoReader, fmt: VideoFormat, audio: bool = True
) -> Iterator[VideoWriter]:
    """A :class:`VideoWriter` on a temporary file beside ``dst``, renamed over ``dst`` when the body
    returns; on any error nothing is left behind and ``dst`` is untouched."""
    with image_io.atomic_path(dst) as tmp:
        writer = VideoWriter(tmp, reader, fmt, audio)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()
