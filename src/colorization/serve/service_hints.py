"""The ``hints`` form field of the REST service's ``POST /colorize``: its OpenAPI description and
its parsing and checking, kept out of :mod:`colorization.serve.service`.

The field is a JSON string holding a list of points ``{"x": .., "y": .., "color": ..}`` in the
uploaded image's pixel coordinates (after its EXIF orientation is applied, i.e. as a browser shows
it); ``color`` is ``"#rrggbb"`` or ``[r, g, b]`` (see :func:`colorization.inference.hints.coerce_hints`). Every
problem is a :class:`ValueError` whose message the service answers with 422.
"""

from __future__ import annotations

import json
import math
from typing import Any

from colorization.inference.hints import MAX_HINTS, Hint, coerce_hints

__all__ = [
    "HINTS_EXAMPLE",
    "HINTS_FIELD_DESCRIPTION",
    "MAX_HINTS_FIELD_CHARS",
    "VIDEO_HINTS_FIELD_DESCRIPTION",
    "accepts_hints",
    "check_hints_inside",
    "parse_hints_field",
    "parse_video_hints_field",
]

MAX_HINTS_FIELD_CHARS = 32 * 1024
"""Longest accepted ``hints`` field (characters); :data:`MAX_HINTS` points take well under half."""

HINTS_EXAMPLE = '[{"x": 120, "y": 80, "color": "#c0392b"}, {"x": 40.5, "y": 200, "color": [46, 134, 193]}]'

HINTS_FIELD_DESCRIPTION = (
    "Colour hints (only for a model that takes them: /health reports accepts_hints). A JSON list "
    "of points {\"x\", \"y\", \"color\"}: x and y in the uploaded image's pixel coordinates "
    "(0,0 = top-left pixel, after the EXIF orientation is applied; 0 <= x < width, "
    "0 <= y < height), color as \"#rrggbb\" or [r, g, b]. Each colour is applied at its pixel's "
    f"own lightness. At most {MAX_HINTS} points. Empty or [] = automatic colorization. "
    f"Example: {HINTS_EXAMPLE}"
)


VIDEO_HINTS_FIELD_DESCRIPTION = (
    "Colour hints for the video (only for a model that takes them: /health reports accepts_hints). "
    "A JSON list of points for frame 0, or an object mapping frame indices (0-based) to lists of "
    "points: {\"0\": [...], \"48\": [...]}. Points as for POST /colorize, in the frame's pixels; a "
    "point may add \"hold\": \"shot\" to be kept (looked for on every frame) until its shot ends, "
    "instead of only while the motion can be followed (\"track\", the default). "
    f"At most {MAX_HINTS} points per frame."
)


def accepts_hints(colorizer: Any) -> bool:
    """Whether a colorizer-like object takes ``hints=`` (its ``accepts_hints``; False if absent)."""
    try:
        return bool(getattr(colorizer, "accepts_hints", False))
    except Exception:  # a property that fails: treat as no hint input
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_hints_field(text: str | None) -> list[Hint]:
    """The ``hints`` form field -> points (None, empty or ``[]`` -> ``[]``).

    Raises:
        ValueError: too long, not JSON, not a list of points, a bad point or colour, non-finite
            coordinates, or more than :data:`MAX_HINTS` points; the message says which.
    """
    if text is None or not text.strip():
        return []
    return _check_finite(coerce_hints(_load_json(text)))


def parse_video_hints_field(text: str | None) -> dict[int, list[Hint]]:
    """``POST /videos``' ``hints`` field -> ``{frame index: points}`` (None, empty, ``[]`` or ``{}``
    -> ``{}``); a list is frame 0's. Read as a video's entry of a hints file
    (:func:`colorization.batch.hint_files.parse_frames`): points may carry ``"hold"``.

    Raises:
        ValueError: as :func:`parse_hints_field`, or a key that is not a frame index.
    """
    from colorization.batch.hint_files import HintsFileError, parse_frames, parse_points

    if text is None or not text.strip():
        return {}
    value = _load_json(text, "a list of points or an object {\"FRAME\": [points], ...}")
    if isinstance(value, dict) and {"x", "y", "color"} & set(value):
        raise ValueError("expected a list of points or an object mapping frame indices to lists, "
                         "got a single point (put it in a list)")
    try:
        if isinstance(value, dict):
            frames = parse_frames(value, "hints")
        else:
            frames = {0: parse_points(value, "hints", video=True)} if value != [] else {}
    except HintsFileError as exc:
        raise ValueError(str(exc).removeprefix("hints: ")) from None
    return {frame: _check_finite(points) for frame, points in frames.items()}


def _load_json(text: str, expected: str = f"a list like {HINTS_EXAMPLE}") -> Any:
    if len(text) > MAX_HINTS_FIELD_CHARS:
        raise ValueError(f"the field is {len(text)} characters long; at most {MAX_HINTS_FIELD_CHARS} are accepted")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise ValueError(f"not valid JSON ({exc}); expected {expected}") from None


def _check_finite(points: list[Hint]) -> list[Hint]:
    for i, point in enumerate(points):
        for name in ("x", "y"):
            try:
                finite = math.isfinite(float(getattr(point, name)))
            except OverflowError:
                finite = False
            if not finite:
                raise ValueError(f"hint {i}: {name} must be a finite number")
    return points


def check_hints_inside(points: list[Hint], size: tuple[int, int]) -> None:
    """Raise ValueError naming the first point outside an image of ``size = (width, height)``."""
    width, height = size
    for i, point in enumerate(points):
        if not (0 <= point.x < width and 0 <= point.y < height):
            raise ValueError(
                f"hint {i} at ({float(point.x):g}, {float(point.y):g}) lies outside the {width}x{height} image "
                f"(x must be in [0, {width}), y in [0, {height}))"
            )
