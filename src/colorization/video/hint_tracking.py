"""Colour hints on video: which points are in force on each frame, and where.

A hint is given for one frame (:data:`colorization.video.pipeline.FrameHints`) and carried to the
following frames of its shot:

* **along the motion**: the forward optical flow of the stabiliser moves it where the flow is
  trusted (:func:`colorization.video.stabilize.track_points`);
* **by its neighbourhood**: where the flow is not trusted (fine repeating texture such as window
  louvres, a change of light, a blur), the lightness patch around the point (``2r + 1`` working
  pixels square, kept from the frame it was given on and from the last frame it was found on) is
  looked for near where the motion of its surroundings puts it (normalised cross-correlation,
  the nearest good peak wins, so a repeating texture keeps the hint on the same texture).

A point that is neither followed nor found is dropped (``hold="track"``, the default), or, with
``hold="shot"`` (:class:`VideoHint`), kept for the whole shot: it is looked for again on every
later frame and given to the network wherever it is found. Every point ends with its shot (a
scene cut, a change of frame size, the end of the video).

The user is told, once per point (:class:`HintWarning`, or the ``on_warning`` callback of
:func:`colorization.video.pipeline.colorize_frames`), with the frame and the reason, when a point
is dropped (or, for ``hold="shot"``, first goes missing) before its shot ends, or when the colour
it puts on its pixel fades below half of its peak strength.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from colorization.inference.hints import MAX_HINTS, Hint, coerce_hints
from colorization.video.stabilize import Motion, track_points

__all__ = [
    "HOLDS",
    "VideoHint",
    "HintWarning",
    "HintTracker",
    "coerce_video_hints",
    "find_patch",
]

HOLDS = ("track", "shot")
"""Values of :attr:`VideoHint.hold`: ``"track"`` (kept while it can be followed), ``"shot"``
(kept, and looked for on every frame, until its shot ends)."""

MATCH_SCORE = 0.7
"""Normalised cross-correlation at which a neighbourhood counts as found anywhere it is looked for."""
NEAR_SCORE = 0.4
"""Correlation that suffices within :data:`NEAR_PX` of where the motion of the surroundings puts
the point (fine texture sampled at another sub-pixel phase correlates less with itself)."""
NEAR_PX = 1.5
MIN_TEXTURE = 2.0
"""Standard deviation (8-bit levels) below which a neighbourhood is too flat to be looked for."""
FADE_SHARE = 0.5
"""A point whose colour falls below this share of its peak strength on its pixel is reported."""
MIN_HINT_CHROMA = 0.05
"""Normalised ab magnitude (about 5.5 Lab units) below which a hint is grey: its fading is not measured."""


class HintWarning(UserWarning):
    """A colour hint of a video stopped before its shot ended: dropped, missing or faded."""


@dataclass(frozen=True)
class VideoHint(Hint):
    """A :class:`~colorization.inference.hints.Hint` with a rule for the frames after its own.

    Attributes:
        hold: ``"track"`` (default: kept while the motion or its neighbourhood can follow it) or
            ``"shot"`` (kept until the shot ends: looked for on every frame, given to the network
            wherever it is found). On a photo it changes nothing.

    Raises:
        ValueError: a bad colour or coordinate (as :class:`Hint`), or an unknown ``hold``.
    """

    hold: str = "track"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hold not in HOLDS:
            raise ValueError(f"hold must be one of {', '.join(repr(h) for h in HOLDS)}, got {self.hold!r}")


def _video_point(item: Any) -> Hint:
    """One point: what :func:`coerce_hints` takes, plus a ``"hold"`` key or a trailing ``,HOLD``."""
    if isinstance(item, dict) and "hold" in item:
        rest = {k: v for k, v in item.items() if k != "hold"}
        hold = item["hold"]
        if not isinstance(hold, str):
            raise ValueError(f"hold must be one of {', '.join(repr(h) for h in HOLDS)}, got {hold!r}")
        (base,) = coerce_hints([rest])
        return VideoHint(base.x, base.y, base.color, hold=hold)
    if isinstance(item, str):
        head, _, last = item.rpartition(",")
        if head and last.strip().isalpha():
            (base,) = coerce_hints([head])
            return VideoHint(base.x, base.y, base.color, hold=last.strip())
    (base,) = coerce_hints([item])
    return base


def coerce_video_hints(hints: object) -> list[Hint]:
    """Hints of one video frame -> a list of :class:`Hint` / :class:`VideoHint` (None -> ``[]``).

    Takes what :func:`colorization.inference.hints.coerce_hints` takes, and points with a
    ``hold``: ``{"x": 120, "y": 80, "color": "#c0392b", "hold": "shot"}``, ``"120,80,#c0392b,shot"``,
    ``"120,80,192,57,43,shot"`` or a :class:`VideoHint`.

    Raises:
        ValueError: not a list, more than :data:`MAX_HINTS` points, or a bad point (named by index).
    """
    if hints is None:
        return []
    if isinstance(hints, (str, bytes, dict, Hint)) or not isinstance(hints, (list, tuple)):
        raise ValueError(f"hints must be a list of points, got {type(hints).__name__}")
    if len(hints) > MAX_HINTS:
        raise ValueError(f"at most {MAX_HINTS} hint points per image, got {len(hints)}")
    out = []
    for i, item in enumerate(hints):
        try:
            out.append(_video_point(item))
        except ValueError as exc:
            raise ValueError(f"hint {i}: {str(exc).removeprefix('hint 0: ')}") from None
    return out


def _describe(hint: Hint, frame: int) -> str:
    r, g, b = hint.rgb
    hold = ", hold shot" if getattr(hint, "hold", "track") == "shot" else ""
    return f"hint ({hint.x:g}, {hint.y:g}, #{r:02x}{g:02x}{b:02x}{hold}) of frame {frame}"


# --------------------------------------------------------------------------------------------
# Finding a neighbourhood again
# --------------------------------------------------------------------------------------------


def _patch(lum: np.ndarray, pos: np.ndarray, radius: int) -> np.ndarray:
    """The (2r+1)^2 uint8 patch of ``lum`` around ``pos`` (x, y), borders replicated."""
    h, w = lum.shape
    x, y = int(round(float(pos[0]))), int(round(float(pos[1])))
    xs = np.clip(np.arange(x - radius, x + radius + 1), 0, w - 1)
    ys = np.clip(np.arange(y - radius, y + radius + 1), 0, h - 1)
    return np.ascontiguousarray(lum[np.ix_(ys, xs)])


def _refine(scores: np.ndarray, i: int, at: float, guess: float) -> float:
    """Sub-pixel position along one axis of a correlation peak at index ``i`` (coordinate ``at``):
    the top of the parabola through it and its neighbours; the guess itself where the correlation
    is flat along this axis (stripes along it: the match says nothing about this coordinate)."""
    if not 0 < i < len(scores) - 1:
        return at
    left, mid, right = float(scores[i - 1]), float(scores[i]), float(scores[i + 1])
    den = left - 2.0 * mid + right
    if den > -0.02:
        return guess if abs(guess - at) <= 1.0 else at
    return at + float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))


def find_patch(
    lum: np.ndarray, templates: list[np.ndarray], guess: np.ndarray, search: int, spread: float = 0.02
) -> tuple[np.ndarray, float] | None:
    """Where the neighbourhood ``templates`` show lies in ``lum``, near ``guess``.

    Args:
        lum: (h, w) uint8 lightness of the frame.
        templates: square uint8 patches of one odd size (the same neighbourhood seen on earlier
            frames), in order of preference: the first one that is found wins (the first, the
            look on the frame the hint was given on, keeps a long track from drifting).
        guess: (2,) float ``(x, y)`` where the motion puts the point.
        search: how far from ``guess`` to look (px, each way).
        spread: score taken off per squared pixel from ``guess``, so that of good peaks (a
            repeating texture) the nearest wins unless another scores clearly higher.

    Returns:
        ``((x, y), score)``, the sub-pixel position and its correlation, or None when no position
        scores :data:`MATCH_SCORE` (:data:`NEAR_SCORE` within :data:`NEAR_PX` of ``guess``) or the
        neighbourhood is too flat to be told apart (:data:`MIN_TEXTURE`).
    """
    h, w = lum.shape
    cx, cy = int(round(float(guess[0]))), int(round(float(guess[1])))
    off = np.arange(-search, search + 1, dtype=np.float32)
    dx, dy = off[None, :] + cx - float(guess[0]), off[:, None] + cy - float(guess[1])
    d2 = dx * dx + dy * dy
    for tmpl in templates:
        if float(tmpl.std()) < MIN_TEXTURE:
            continue
        r = tmpl.shape[0] // 2
        xs = np.clip(np.arange(cx - search - r, cx + search + r + 1), 0, w - 1)
        ys = np.clip(np.arange(cy - search - r, cy + search + r + 1), 0, h - 1)
        window = np.ascontiguousarray(lum[np.ix_(ys, xs)])
        score = np.nan_to_num(cv2.matchTemplate(window, tmpl, cv2.TM_CCOEFF_NORMED), nan=-1.0)  # nan: flat window
        good = (score >= MATCH_SCORE) | ((score >= NEAR_SCORE) & (d2 <= NEAR_PX**2))
        if not good.any():
            continue
        ranked = np.where(good, score - spread * d2, -np.inf)
        iy, ix = np.unravel_index(int(np.argmax(ranked)), score.shape)
        best = float(score[iy, ix])
        pos = np.array([_refine(score[iy], ix, cx - search + ix, float(guess[0])),
                        _refine(score[:, ix], iy, cy - search + iy, float(guess[1]))], dtype=np.float32)
        if 0 <= pos[0] <= w - 1 and 0 <= pos[1] <= h - 1:
            return pos, best
    return None


def _surroundings_motion(motion: Motion, pos: np.ndarray, radius: int) -> np.ndarray | None:
    """Median forward flow over the trusted pixels around ``pos`` (or, with too few, the whole
    frame's); None when nothing is trusted."""
    h, w = motion.confidence.shape
    x, y = int(round(float(pos[0]))), int(round(float(pos[1])))
    for r in (radius, max(h, w)):
        y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
        trusted = motion.confidence[y0:y1, x0:x1] >= 0.5
        if trusted.sum() >= max(8, 0.1 * trusted.size):
            return np.median(motion.forward[y0:y1, x0:x1][trusted], axis=0).astype(np.float32)
    return None


# --------------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------------


@dataclass
class _Point:
    """A hint in force: where it is (working pixels of the current frame) and what it looks like."""

    hint: Hint
    label: str
    shot: bool
    pos: np.ndarray
    templates: list[np.ndarray]
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.float32))
    visible: bool = True
    ab: np.ndarray | None = None  # (2,) normalised ab of the hint at its pixel's lightness
    peak: float = 0.0
    warned: bool = False


@dataclass(frozen=True)
class Applied:
    """A point given to the network on one frame: ``x``, ``y`` in working pixels."""

    point: _Point
    x: float
    y: float


class HintTracker:
    """The hints in force on each frame of a video (see the module docstring).

    >>> tracker = HintTracker({0: [VideoHint(120, 80, "#c0392b", hold="shot")]})
    >>> points, applied = tracker.step(index, motion, prep)    # per frame, in order
    >>> tracker.observe(index, applied, ab_out)                 # after the frame's chroma is final

    Args:
        hints: ``{frame index: points}`` (anything :func:`coerce_video_hints` takes).
        on_warning: called with each message; None: :func:`warnings.warn` with :class:`HintWarning`.

    Raises:
        ValueError: a negative frame index or a malformed point.
    """

    def __init__(self, hints: Mapping[int, Any] | None, on_warning: Callable[[str], None] | None = None) -> None:
        self.given = {int(k): coerce_video_hints(v) for k, v in (hints or {}).items()}
        for index in self.given:
            if index < 0:
                raise ValueError(f"hint frame indices start at 0, got {index}")
        self._warn = on_warning or (lambda message: warnings.warn(message, HintWarning, stacklevel=4))
        self.live: list[_Point] = []

    def __bool__(self) -> bool:
        return bool(self.given)

    def warn(self, point: _Point, message: str) -> None:
        """Tell the user about ``point`` (once per point)."""
        if not point.warned:
            point.warned = True
            self._warn(f"{point.label} {message}")

    def step(self, index: int, motion: Motion | None, prep: Any) -> tuple[list[Hint], list[Applied]]:
        """Move the points in force into frame ``index`` and add its own.

        Args:
            index: the frame's index (0-based). motion: the stabiliser's motion from the previous
                frame (None: a new shot). prep: the frame's :class:`~colorization.inference.prepared.PreparedImage`.

        Returns:
            ``(points, applied)``: the frame's hints in its own pixel coordinates (for the
            network's hint map) and the same points in working pixels (for :meth:`observe`).

        Raises:
            ValueError: a new point outside the frame.
        """
        (W, H), (h, w) = prep.size, prep.work_hw
        lum = np.clip((prep.l_work[0, :h, :w].detach().cpu().numpy() + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
        radius, search = max(3, round(0.06 * min(h, w))), max(4, round(0.1 * min(h, w)))
        if motion is None or motion.cut:
            self.live = []  # a new shot: the previous shot's points end with it
        elif self.live:
            self._follow(index, motion, lum, radius, search)
        new = self.given.get(index, [])
        for hint in new:
            if not (0 <= hint.x < W and 0 <= hint.y < H):
                raise ValueError(f"frame {index}: hint at ({hint.x:g}, {hint.y:g}) lies outside the {W}x{H} frame")
        for hint in new:
            pos = np.array([hint.x * w / W, hint.y * h / H], dtype=np.float32)
            pos = np.minimum(pos, np.array([w - 1, h - 1], dtype=np.float32))
            tmpl = _patch(lum, pos, radius)
            self.live.append(_Point(hint, _describe(hint, index), getattr(hint, "hold", "track") == "shot", pos,
                                    [tmpl, tmpl]))
        visible = [p for p in self.live if p.visible]
        for p in visible[:-MAX_HINTS]:
            self.warn(p, f"is not applied from frame {index} on: more than {MAX_HINTS} points are in force")
            self.live.remove(p)
        applied = [Applied(p, float(p.pos[0]), float(p.pos[1])) for p in visible[-MAX_HINTS:]]
        points = [
            Hint(min(W - 1e-3, max(0.0, a.x * W / w)), min(H - 1e-3, max(0.0, a.y * H / h)), a.point.hint.rgb)
            for a in applied
        ]
        return points, applied

    def _follow(self, index: int, motion: Motion, lum: np.ndarray, radius: int, search: int) -> None:
        """Move every live point from the previous frame into this one (or drop it)."""
        h, w = lum.shape
        moved, kept = track_points(np.stack([p.pos for p in self.live]), motion)
        for p, new, ok in zip(list(self.live), moved, kept):
            xi, yi = int(np.clip(round(float(new[0])), 0, w - 1)), int(np.clip(round(float(new[1])), 0, h - 1))
            conf = float(motion.confidence[yi, xi])
            around = _surroundings_motion(motion, p.pos, 2 * radius)
            # where to look: with the trusted motion around the point (its own flow is what fails on
            # fine repeating texture), else with its own flow, else as it last moved
            guess = p.pos + around if around is not None else (new if ok else p.pos + p.velocity)
            matchable = any(float(t.std()) >= MIN_TEXTURE for t in p.templates)
            found = None
            if matchable:  # the neighbourhood confirms (or corrects) the flow, or finds the point where it cannot
                found = find_patch(lum, p.templates, guess, search if p.visible else 2 * search)
            if found is not None:
                pos = found[0]
            elif ok and p.visible:  # followed by the flow (a "shot" point whose look changed, too)
                pos = new
                latest = _patch(lum, pos, radius)
                if _similar(latest, p.templates[0]):  # its latest look, unless something covers it
                    p.templates[1] = latest
            elif p.visible and not matchable and around is not None and _inside(guess, w, h):
                pos = guess  # too flat to be looked for: moved with its surroundings
            else:
                coast = np.clip(p.pos + p.velocity, [0, 0], [w - 1, h - 1]).astype(np.float32)
                if not p.visible:  # a "shot" point still missing: look again on the next frame
                    p.pos = coast  # as it last moved (what covers it may move otherwise)
                    continue
                if not (_inside(guess, w, h) and _inside(new, w, h)):
                    reason = "it left the frame"
                elif not matchable:
                    reason = (f"the motion there cannot be followed (flow confidence {conf:.2f}), and its "
                              "neighbourhood is too flat to be looked for")
                else:
                    reason = (f"the motion there cannot be followed (flow confidence {conf:.2f}) and its "
                              "neighbourhood was not found near it (occluded, or changed)")
                if p.shot:
                    self.warn(p, f"is missing on frame {index}: {reason}; it is looked for on every later "
                                 "frame of the shot and applied wherever it is found")
                    p.pos, p.visible = coast, False
                else:
                    self.warn(p, f"is dropped on frame {index}, before its shot ends: {reason}; give it "
                                 "again on a later frame, or hold it for the whole shot (\"hold\": \"shot\")")
                    self.live.remove(p)
                continue
            p.velocity, p.pos, p.visible = (pos - p.pos).astype(np.float32), pos.astype(np.float32), True

    def observe(self, index: int, applied: list[Applied], ab_norm: Any) -> None:
        """Check the final chroma of frame ``index`` at its points: a point whose colour there falls
        below :data:`FADE_SHARE` of its peak strength is reported.

        Args:
            applied: what :meth:`step` returned for the frame. ab_norm: (2, h, w) normalised ab
                of the frame at working size (tensor or array), after the stabiliser.
        """
        if not applied:
            return
        ab = ab_norm.detach().cpu().numpy() if hasattr(ab_norm, "detach") else np.asarray(ab_norm)
        _, h, w = ab.shape
        for a in applied:
            p = a.point
            if p.ab is None:
                p.ab = _hint_ab(p.hint)
            norm2 = float(p.ab @ p.ab)
            if norm2 < MIN_HINT_CHROMA**2:
                continue
            xi, yi = int(np.clip(round(a.x), 0, w - 1)), int(np.clip(round(a.y), 0, h - 1))
            strength = float(ab[:, yi, xi] @ p.ab) / norm2
            p.peak = max(p.peak, strength)
            if p.peak > 0.2 and strength < FADE_SHARE * p.peak:
                self.warn(p, f"fades below half of its strength on frame {index} (its colour reaches "
                             f"{strength / p.peak:.0%} of its peak on its pixel)")


def _similar(a: np.ndarray, b: np.ndarray, threshold: float = 0.6) -> bool:
    """Whether two patches of one size correlate (normalised) at least ``threshold``."""
    if float(a.std()) < MIN_TEXTURE or float(b.std()) < MIN_TEXTURE:
        return False
    return float(cv2.matchTemplate(a, b, cv2.TM_CCOEFF_NORMED)[0, 0]) >= threshold


def _inside(pos: np.ndarray, w: int, h: int) -> bool:
    return bool(0 <= pos[0] <= w - 1 and 0 <= pos[1] <= h - 1)


def _hint_ab(hint: Hint) -> np.ndarray:
    """(2,) normalised ab of the hint's colour (at its own lightness)."""
    import torch

    from colorization import color

    rgb = torch.tensor(hint.rgb, dtype=torch.float32).view(3, 1, 1) / 255.0
    return color.normalize_ab(color.rgb_to_lab(rgb)[1:, 0, 0]).numpy().astype(np.float32)
