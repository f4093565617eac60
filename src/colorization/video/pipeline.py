"""Colorize videos: frames in, frames out (:func:`colorize_frames`), or file in, file out
(:func:`colorize_video`), through the same :class:`colorization.Colorizer` pipeline as photos.

Per frame: the working-resolution lightness is prepared (:meth:`Colorizer.prepare`), the motion
from the previous frame is estimated (:class:`~colorization.video.stabilize.TemporalStabilizer`),
colour hints of earlier frames are moved along it, the network runs on small batches of frames,
the predicted chroma is blended with the previous output carried along the flow, and the
full-resolution frame is recombined with the frame's own lightness (:meth:`Colorizer.finish`,
``saturation`` applied there). Only ``batch_size`` frames are held at a time, so memory does not
grow with the video's length.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.nn.functional as F
from PIL import Image

from colorization.inference.colorizer import _check_saturation
from colorization.inference.hints import Hint, hint_map
from colorization.video.formats import video_format
from colorization.video.hint_tracking import HintTracker
from colorization.video.io import VideoReader, open_writer
from colorization.video.stabilize import StabilizerConfig, TemporalStabilizer

if TYPE_CHECKING:  # pragma: no cover
    from colorization.inference.colorizer import Colorizer, HintsInput, PreparedImage

__all__ = ["FrameHints", "VideoResult", "colorize_frames", "colorize_video"]

FrameHints = Mapping[int, "HintsInput"]
"""Colour hints per frame index (0-based): ``{12: [Hint(x, y, "#c0392b")], ...}``; a
:class:`~colorization.video.hint_tracking.VideoHint` (``hold="shot"``) is kept for the whole shot."""


@dataclass(frozen=True)
class VideoResult:
    """What :func:`colorize_video` did: ``frames`` encoded in ``seconds`` (wall clock), written to
    ``path``."""

    path: Path
    frames: int
    seconds: float
    width: int
    height: int

    @property
    def fps(self) -> float:
        """Frames per second, end to end (decode, colorize, encode)."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _as_image(frame: Any) -> Any:
    """(H, W) uint8 luma -> PIL "L" (the colorizer's fast gray path); anything else unchanged."""
    if isinstance(frame, np.ndarray) and frame.ndim == 2 and frame.dtype == np.uint8:
        return Image.fromarray(frame, mode="L")
    return frame


def _stabilizer(stabilize: bool | StabilizerConfig | TemporalStabilizer) -> TemporalStabilizer | None:
    if isinstance(stabilize, TemporalStabilizer):
        return stabilize
    if isinstance(stabilize, StabilizerConfig):
        return TemporalStabilizer(stabilize)
    return TemporalStabilizer() if stabilize else None


def _attach_hints(prep: PreparedImage, points: list[Hint]) -> None:
    """Set ``prep.hints`` to the padded working-size hint map of ``points`` (None when empty)."""
    if not points:
        prep.hints = None
        return
    h, w = prep.work_hw
    l_norm = prep.l_work[:, :h, :w]
    hmap = hint_map(points, prep.size, l_norm[None])[0]
    prep.hints = F.pad(hmap, (0, prep.l_work.shape[-1] - w, 0, prep.l_work.shape[-2] - h)).contiguous()


def colorize_frames(
    colorizer: Colorizer,
    frames: Iterable[Any],
    *,
    stabilize: bool | StabilizerConfig | TemporalStabilizer = True,
    saturation: float = 1.0,
    size: int | None = None,
    refine: bool | None = None,
    hints: FrameHints | None = None,
    batch_size: int = 4,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[np.ndarray]:
    """Colorize a sequence of frames, yielding each result as soon as its batch is done.

    Args:
        colorizer: the pipeline (its ``max_pixels`` applies per frame).
        frames: (H, W) uint8 luma arrays (what :class:`~colorization.video.io.VideoReader` yields),
            or anything :class:`Colorizer` accepts (colour frames lose their colour). Frames of
            a shot should share one size; a size change starts a new shot.
        stabilize: True (default settings), False (each frame on its own), a
            :class:`StabilizerConfig`, or a :class:`TemporalStabilizer` to continue one.
        saturation: chroma multiplier in ``[0, 2]``. size, refine: as for :class:`Colorizer`.
        hints: colour points per frame index (needs a hint-aware model); each point is carried
            to the following frames of its shot along the optical flow, or found again by its
            neighbourhood where the flow cannot follow it (:mod:`colorization.video.hint_tracking`).
        batch_size: frames per network call (also the frames held in memory).
        on_warning: called with a message, once per point, when a hint is dropped, goes missing or
            fades below half strength before its shot ends; None: :func:`warnings.warn` with
            :class:`~colorization.video.hint_tracking.HintWarning`.

    Yields:
        (H, W, 3) uint8 RGB arrays, one per input frame, in order; each frame's Lab lightness
        equals its input's up to 8-bit rounding.

    Raises:
        ValueError: bad ``saturation``/``batch_size``, malformed hints, hints for a model
            without hint input, a point outside its frame, or hints for a frame past the last
            (raised after the last frame; :func:`colorize_video` then writes nothing).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    saturation = _check_saturation(saturation)
    tracker = HintTracker(hints, on_warning)
    if tracker and not colorizer.accepts_hints:
        raise ValueError(f"the {colorizer.model_name} model does not take colour hints")
    stab = _stabilizer(stabilize)
    flow = stab if stab is not None else (TemporalStabilizer() if tracker else None)  # motion for the hints

    def flush(window: list[tuple[int, PreparedImage, Any, list]]) -> Iterator[np.ndarray]:
        preds = colorizer.predict([prep for _, prep, _, _ in window], batch_size)
        for (i, prep, motion, applied), ab in zip(window, preds):
            if stab is not None:
                ab = stab.blend(motion, ab)
            if applied:
                tracker.observe(i, applied, ab)
            yield colorizer.finish_array(prep, ab, saturation, refine, bits=8)  # no PIL round trip

    window: list[tuple[int, PreparedImage, Any, list]] = []
    index = -1
    for index, frame in enumerate(frames):
        prep = colorizer.prepare(_as_image(frame), size)
        h, w = prep.work_hw
        motion = flow.motion(prep.l_work[:, :h, :w]) if flow is not None else None
        applied: list = []
        if tracker:
            points, applied = tracker.step(index, motion, prep)
            _attach_hints(prep, points)
        window.append((index, prep, motion, applied))
        if len(window) >= batch_size:
            yield from flush(window)
            window = []
    if window:
        yield from flush(window)
    late = [i for i in tracker.given if i >= index + 1] if tracker else []
    if late:
        raise ValueError(f"hints for frame {min(late)}, but the video has {index + 1} frames (0 to {index})")


def colorize_video(
    src: str | Path | bytes,
    dst: str | Path,
    colorizer: Colorizer | None = None,
    *,
    format: str | None = None,
    stabilize: bool | StabilizerConfig = True,
    saturation: float = 1.0,
    hints: FrameHints | None = None,
    batch_size: int = 4,
    on_warning: Callable[[str], None] | None = None,
    progress: bool | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
    max_frames: int | None = None,
    max_duration: float | None = None,
    name: str | None = None,
) -> VideoResult:
    """Colorize a video file into ``dst`` (written atomically: the whole video or nothing).

    Frame count, frame size, time stamps (constant or variable frame rate) and the audio streams
    are kept; the video is encoded as ``format`` (:data:`~colorization.video.io.VIDEO_FORMATS`;
    default H.264 in MP4).

    Args:
        src: a path or the file's bytes (any container/codec FFmpeg decodes).
        dst: the output file (its parent is created).
        colorizer: None: the shipped default model on the CPU.
        format: ``"mp4"``, ``"mov"``, ``"mkv"`` or ``"webm"``; None: mp4.
        stabilize, saturation, hints, batch_size, on_warning: see :func:`colorize_frames`.
        progress: a tqdm bar (frames/s, ETA) on stderr; None: only on a terminal.
        on_frame: called as ``on_frame(done, expected_total_or_None)`` after each frame.
        max_frames, max_duration: reject longer videos (:class:`VideoTooLargeError`).
        name: how errors name the input.

    Raises:
        colorization.video.io.VideoError subclasses: not a video, audio only, truncated, no
            frames, unsupported codec, frames over ``colorizer.max_pixels``; ``dst`` is untouched.
        ValueError: bad options.
    """
    fmt = video_format(format)
    if colorizer is None:
        from colorization.inference.colorizer import Colorizer

        colorizer = Colorizer.from_pretrained(device="cpu")
    from tqdm import tqdm

    start = time.perf_counter()
    with VideoReader(src, name=name, max_pixels=colorizer.max_pixels, max_frames=max_frames,
                     max_duration=max_duration) as reader:
        info = reader.info
        total = info.expected_frames
        bar = tqdm(total=total, unit="frame", desc=Path(reader.name).name[:30], file=sys.stderr,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress, leave=False)
        try:
            with open_writer(dst, reader, fmt) as writer:
                stamps: deque[int] = deque()

                def luma() -> Iterator[np.ndarray]:
                    for frame, pts in reader.frames(writer):
                        stamps.append(pts)
                        yield frame

                out = colorize_frames(colorizer, luma(), stabilize=stabilize, saturation=saturation,
                                      hints=hints, batch_size=batch_size, on_warning=on_warning)
                for rgb in out:
                    writer.write(rgb, stamps.popleft())
                    bar.update(1)
                    if on_frame is not None:
                        on_frame(writer.frames, total)
                frames = writer.frames
        finally:
            bar.close()
    return VideoResult(Path(dst), frames, time.perf_counter() - start, info.width, info.height)
