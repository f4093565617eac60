"""Colorize videos: frames in, frames out (:func:`colorize_frames`), or file in, file out
(:func:`colorize_video`), through the same :class:`colorization.Colorizer` pipeline as photos.

Per frame: the working-resolution lightness is prepared (:meth:`Colorizer.prepare`), the motion
from the previous frame is estimated (:class:`~colorization.video.stabilize.TemporalStabilizer`),
colour hints of earlier frames are moved along it, the network runs on small batches of frames,
the predicted chroma is blended with the previous output carried along the flow, and the
full-resolution frame is recombined with the frame's own lightness (:meth:`Colorizer.finish`,
``saturation`` applied there). Only ``batch_size`` frames are held at a time, so memory does not
grow with the video's length.

Reference photos (:class:`_ShotReferences`): one for the whole clip, or one per shot from a frame
index on. Each reference is encoded once; a shot is matched once against the reference in force
at its first frame (frame 0, a reference's start, or a scene cut the stabiliser detects), and the
matched points then follow the flow like colour hints while they stay visible. With
``hinted_reference=True``, a shot whose first frame carries the user's hints and no reference takes
its own colorized first frame as its reference (matched once, at the first frame prepared after it
is colorized).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from colorization import color
from colorization.inference.colorizer import _check_saturation
from colorization.inference.hints import Hint, hint_map
from colorization.inference.reference import (
    GrayReferenceError,
    Reference,
    check_strength,
    merge_hint_maps,
    render_points,
)
from colorization.video.formats import video_format
from colorization.video.hint_tracking import HintTracker
from colorization.video.io import VideoReader, open_writer
from colorization.video.stabilize import StabilizerConfig, TemporalStabilizer, track_points

if TYPE_CHECKING:  # pragma: no cover
    from colorization.inference.colorizer import Colorizer, HintsInput, PreparedImage, ReferenceInput

__all__ = ["FrameHints", "FrameReferences", "LateFrameError", "VideoResult", "colorize_frames", "colorize_video",
           "reference_starts"]


class LateFrameError(ValueError):
    """Hints or a reference for a frame past a video's last one (found when the last frame has been
    read, since many containers do not declare their frame count)."""


FrameHints = Mapping[int, "HintsInput"]
"""Colour hints per frame index (0-based): ``{12: [Hint(x, y, "#c0392b")], ...}``; a
:class:`~colorization.video.hint_tracking.VideoHint` (``hold="shot"``) is kept for the whole shot."""
FrameReferences = Mapping[int, "ReferenceInput"]
"""Reference photos per shot: ``{0: "a.jpg", 412: "b.jpg"}``, each in force from its frame index
(0-based) until the next one's."""


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


class _ShotReferences:
    """The reference in force on each frame and its matched points carried along the flow (module
    docs). Every reference is read and encoded when this is built, so a bad one fails first."""

    def __init__(self, colorizer: Colorizer, references: ReferenceInput | FrameReferences | None,
                 strength: float) -> None:
        self.strength = check_strength(strength)
        given = references if isinstance(references, Mapping) else ({} if references is None else {0: references})
        for key in given:
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
                raise ValueError(f"reference frame indices are integers from 0, got {key!r}")
        self.starts: dict[int, Reference] = {}
        for key in sorted(given):
            name = f"the reference for frame {key}" if isinstance(references, Mapping) else None
            self.starts[int(key)] = colorizer.encode_reference(given[key], name=_ref_name(given[key], name))
        self.own: dict[int, Reference | None] = {}  # shot number -> its hinted first frame, colorized
        self.shot = -1
        self._clear()

    def __bool__(self) -> bool:
        return bool(self.starts)

    def _clear(self) -> None:
        self.xy = np.zeros((0, 2), dtype=np.float32)
        self.ab = torch.zeros(0, 2)
        self.weight = torch.zeros(0)
        self.source: Reference | None = None  # what the shot was matched against
        self.first = True  # the frame of the last step starts a shot

    def in_force(self, index: int) -> Reference | None:
        """The reference of the shot of frame ``index``: the given one with the latest start up to
        ``index``, else the shot's own hinted first frame (once colorized)."""
        starts = [k for k in self.starts if k <= index]
        return self.starts[max(starts)] if starts else self.own.get(self.shot)

    def step(self, colorizer: Colorizer, index: int, motion: Any, prep: PreparedImage) -> Any:
        """Match or track for frame ``index``; returns its ``(3, h, w)`` hint map or None."""
        new_shot = motion is None or motion.cut or index in self.starts
        if new_shot:
            self.shot += 1
            self._clear()
        else:
            self.first = False
            if len(self.xy):
                moved, kept = track_points(self.xy, motion)
                self.xy, self.ab, self.weight = moved[kept], self.ab[torch.from_numpy(kept)], self.weight[kept]
        ref = self.in_force(index)
        if ref is not None and self.strength > 0 and ref is not self.source:  # once per shot and reference
            match = colorizer.match_reference(prep, ref, self.strength)
            if match.fits:
                self.xy, self.ab, self.weight = match.points(prep.work_hw)
            self.source = ref
        if not len(self.xy) or ref is None:
            return None
        return render_points(self.xy, self.ab, self.weight, prep.work_hw, ref.config.radius)

    def adopt(self, colorizer: Colorizer, shot: int, prep: PreparedImage, ab_norm: Any) -> None:
        """The colorized first frame of hinted ``shot`` (its working-size colours, before any
        ``saturation``) becomes its reference; none when it came out gray."""
        if shot in self.own:
            return
        h, w = prep.work_hw
        rgb = color.l_ab_to_rgb(prep.l_work[None, :, :h, :w], ab_norm[None, :, :h, :w].float().cpu())[0]
        try:
            self.own[shot] = colorizer.encode_reference(rgb.permute(1, 2, 0).numpy(), name=f"hinted shot {shot}")
        except GrayReferenceError:
            self.own[shot] = None


def _ref_name(value: Any, name: str | None) -> str | None:
    if isinstance(value, (str, Path)):
        return f"{name}: {value}" if name else str(value)
    return name


def _attach_hints(prep: PreparedImage, points: list[Hint], matched: Any = None) -> None:
    """Set ``prep.hints`` to the padded working-size hint map of ``points`` merged with a
    reference's ``matched`` map (``(3, h, w)``; the points win), None when both are empty."""
    h, w = prep.work_hw
    hmap = hint_map(points, prep.size, prep.l_work[:, :h, :w][None])[0] if points else None
    hmap = merge_hint_maps(hmap, matched)
    if hmap is None:
        prep.hints = None
        return
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
    reference: ReferenceInput | FrameReferences | None = None,
    reference_strength: float = 1.0,
    hinted_reference: bool = False,
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
        reference: a colour photo for the whole clip, or ``{first frame: photo}`` per shot
            (:data:`FrameReferences`; anything :meth:`Colorizer.encode_reference` takes, encoded
            ones too); needs a hint-aware model. See the module docs.
        reference_strength: how sure a match must be to lend its colour, ``[0, 2]`` (0: none).
        hinted_reference: let a hinted first frame of a shot without a reference serve as its
            reference (measured neutral on the synthetic clips, so off by default).

    Yields:
        (H, W, 3) uint8 RGB arrays, one per input frame, in order; each frame's Lab lightness
        equals its input's up to 8-bit rounding.

    Raises:
        ValueError: bad ``saturation``/``batch_size``, malformed hints, hints for a model
            without hint input, a point outside its frame, or hints for a frame past the last
            (:class:`LateFrameError`, raised after the last frame; :func:`colorize_video` then
            writes nothing); the same for a reference (and the errors of
            :meth:`Colorizer.encode_reference`, before any frame).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    saturation = _check_saturation(saturation)
    tracker = HintTracker(hints, on_warning)
    if tracker and not colorizer.accepts_hints:
        raise ValueError(f"the {colorizer.model_name} model does not take colour hints")
    refs = _ShotReferences(colorizer, reference, reference_strength)
    stab = _stabilizer(stabilize)
    flow = stab if stab is not None else (TemporalStabilizer() if tracker or refs else None)  # motion for hints

    def flush(window: list[tuple[int, PreparedImage, Any, list, int | None]]) -> Iterator[np.ndarray]:
        preds = colorizer.predict([prep for _, prep, _, _, _ in window], batch_size)
        for (i, prep, motion, applied, hinted_shot), ab in zip(window, preds):
            if stab is not None:
                ab = stab.blend(motion, ab)
            if applied:
                tracker.observe(i, applied, ab)
            if hinted_shot is not None:
                refs.adopt(colorizer, hinted_shot, prep, ab)
            yield colorizer.finish_array(prep, ab, saturation, refine, bits=8)  # no PIL round trip

    window: list[tuple[int, PreparedImage, Any, list, int | None]] = []
    index = -1
    for index, frame in enumerate(frames):
        prep = colorizer.prepare(_as_image(frame), size)
        h, w = prep.work_hw
        motion = flow.motion(prep.l_work[:, :h, :w]) if flow is not None else None
        applied: list = []
        hinted_shot = None
        if tracker or refs:
            matched = refs.step(colorizer, index, motion, prep)
            points: list = []
            if tracker:
                points, applied = tracker.step(index, motion, prep)
            _attach_hints(prep, points, matched)
            if hinted_reference and refs.first and tracker.given.get(index) and refs.in_force(index) is None:
                hinted_shot = refs.shot  # the hinted first frame of a shot without a reference
        window.append((index, prep, motion, applied, hinted_shot))
        if len(window) >= batch_size:
            yield from flush(window)
            window = []
    if window:
        yield from flush(window)
    late = [i for i in tracker.given if i >= index + 1] if tracker else []
    if late:
        raise LateFrameError(f"hints for frame {min(late)}, but the video has {index + 1} frames (0 to {index})")
    late = [i for i in refs.starts if i >= index + 1]
    if late:
        raise LateFrameError(f"a reference for frame {min(late)}, but the video has {index + 1} frames (0 to {index})")


def reference_starts(references: Mapping[int | str, Any], rate: float | None) -> dict[int, Any]:
    """Keys of per-shot references as frame indices: an ``int`` is one already, a string ``"F"`` is
    frame ``F`` and ``"12.5s"`` the frame at 12.5 seconds (``round(12.5 * rate)``, counted from the
    first frame at the video's average frame rate ``rate``).

    Raises:
        ValueError: a key that is neither, a negative one, a time without a known frame rate, or two
            keys for the same frame.
    """
    out: dict[int, Any] = {}
    for key, value in references.items():
        text = str(key).strip()
        try:
            if isinstance(key, str) and text.endswith("s"):
                if not rate:
                    raise ValueError("the video's frame rate is unknown; give a frame index")
                seconds = float(text[:-1])
                if not math.isfinite(seconds) or seconds < 0:
                    raise ValueError("a time must be >= 0 seconds")
                frame = round(seconds * float(rate))
            else:
                if isinstance(key, bool) or not (isinstance(key, int) or text.isdigit()):
                    raise ValueError("expected a frame index (0, 1, ...) or a time in seconds ('12.5s')")
                frame = int(text)
                if frame < 0:
                    raise ValueError("frame indices start at 0")
        except ValueError as exc:
            raise ValueError(f"reference start {key!r}: {exc}") from None
        if frame in out:
            raise ValueError(f"two references start at frame {frame}")
        out[frame] = value
    return out


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
    reference: ReferenceInput | Mapping[int | str, ReferenceInput] | None = None,
    reference_strength: float = 1.0,
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
        reference: a colour photo for the whole video, or per shot ``{start: photo}`` with starts as
            frame indices or times (``"12.5s"``, :func:`reference_starts`); see :func:`colorize_frames`.
        reference_strength: how sure a match must be to lend its colour, ``[0, 2]``.

    Raises:
        colorization.video.io.VideoError subclasses: not a video, audio only, truncated, no
            frames, unsupported codec, frames over ``colorizer.max_pixels``; ``dst`` is untouched.
        ValueError: bad options, a bad reference or start, a start past the last frame.
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
        if isinstance(reference, Mapping):
            reference = reference_starts(reference, float(info.rate) if info.rate else None)
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
                                      hints=hints, batch_size=batch_size, on_warning=on_warning,
                                      reference=reference, reference_strength=reference_strength)
                for rgb in out:
                    writer.write(rgb, stamps.popleft())
                    bar.update(1)
                    if on_frame is not None:
                        on_frame(writer.frames, total)
                frames = writer.frames
        finally:
            bar.close()
    return VideoResult(Path(dst), frames, time.perf_counter() - start, info.width, info.height)
