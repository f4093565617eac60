"""Users' colour hints: :class:`Hint` points, their parsing and checks, and the hint map they
render to for a network input.

The map's encoding (``(B, 3, H, W)``, ``[a_norm * m, b_norm * m, m]``) and the hints simulated for
training belong to the networks: :mod:`colorization.models.hint_map`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from colorization import color
from colorization.models.hint_map import HINT_CHANNELS

__all__ = [
    "MAX_HINTS",
    "Hint",
    "parse_hint",
    "coerce_hints",
    "hint_map",
]

MAX_HINTS = 256
"""Most hint points accepted for one image (the API, the CLI and the REST service)."""

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclass(frozen=True)
class Hint:
    """A user's colour point: ``(x, y)`` in the input image's pixel coordinates (0 at the left/top
    edge; any resolution), ``color`` as ``"#rrggbb"`` or an ``(r, g, b)`` tuple of 0..255 integers.

    Raises:
        ValueError: a colour that is neither, or non-finite / negative coordinates.
    """

    x: float
    y: float
    color: str | tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value or value < 0:
                raise ValueError(f"hint {name} must be a number >= 0, got {value!r}")
        object.__setattr__(self, "color", _parse_color(self.color))

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as 0..255 integers."""
        return self.color  # type: ignore[return-value]


def _parse_color(value: object) -> tuple[int, int, int]:
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if not m:
            raise ValueError(f"hint colour {value!r} is not '#rrggbb'")
        h = m.group(1)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if isinstance(value, (tuple, list)) and len(value) == 3 and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ValueError(f"hint colour {value!r} must be '#rrggbb' or three integers 0..255")


def parse_hint(text: str) -> Hint:
    """``"X,Y,#rrggbb"`` or ``"X,Y,R,G,B"`` (the CLI's ``--hint``) -> :class:`Hint`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) == 3:
            return Hint(float(parts[0]), float(parts[1]), parts[2])
        if len(parts) == 5:
            return Hint(float(parts[0]), float(parts[1]), tuple(int(p) for p in parts[2:]))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"hint {text!r}: {exc}") from None
    raise ValueError(f"hint {text!r}: expected 'X,Y,#rrggbb' or 'X,Y,R,G,B'")


def coerce_hints(hints: object) -> list[Hint]:
    """Hints given as a list of :class:`Hint`, ``{"x": .., "y": .., "color": ..}`` objects (JSON) or
    ``"X,Y,#rrggbb"`` strings -> a list of :class:`Hint` (None -> ``[]``).

    Raises:
        ValueError: anything else, naming the bad item, or more than :data:`MAX_HINTS` points.
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
            if isinstance(item, Hint):
                out.append(item)
            elif isinstance(item, str):
                out.append(parse_hint(item))
            elif isinstance(item, dict):
                extra = set(item) - {"x", "y", "color"}
                missing = {"x", "y", "color"} - set(item)
                if extra or missing:
                    raise ValueError(
                        f"needs exactly the keys x, y, color (missing {sorted(missing)}, unknown {sorted(extra)})"
                    )
                c = item["color"]
                out.append(Hint(item["x"], item["y"], tuple(c) if isinstance(c, list) else c))
            else:
                raise ValueError(
                    f"expected a Hint, an {{x, y, color}} object or 'X,Y,#rrggbb', got {type(item).__name__}"
                )
        except ValueError as exc:
            raise ValueError(f"hint {i}: {exc}") from None
    return out


def _ab_at_lightness(rgb: Tensor, L: Tensor) -> Tensor:
    """ab of colours ``rgb`` (N, 3) in [0, 1] moved to lightness ``L`` (N,): the colour's hue and
    chroma, the chroma reduced where (L, a, b) lies outside sRGB (:func:`color.lab_to_rgb_in_gamut`).
    Returns (N, 2) Lab units."""
    ab = color.rgb_to_lab(rgb.T[:, :, None])[1:]  # (2, N, 1)
    inside = color.lab_to_rgb_in_gamut(torch.cat((L[None, :, None], ab), dim=0))
    return color.rgb_to_lab(inside)[1:, :, 0].T


def hint_map(hints: list[Hint], image_size: tuple[int, int], l_norm: Tensor, radius: int = 1) -> Tensor:
    """The ``(1, 3, h, w)`` hint map of ``hints`` for a network input ``l_norm`` ``(1, 1, h, w)``.

    Args:
        hints: points in the coordinates of an image of ``image_size = (width, height)`` pixels.
        image_size: the input image's size (the points are scaled to the working size).
        l_norm: normalised L at the working size; each colour is moved to its pixel's lightness.
        radius: each point covers a ``(2 * radius + 1)`` square at the working size.

    Raises:
        ValueError: a point outside the image.
    """
    if l_norm.dim() != 4 or l_norm.shape[:2] != (1, 1):
        raise ValueError(f"l_norm must have shape (1, 1, h, w), got {tuple(l_norm.shape)}")
    width, height = image_size
    h, w = l_norm.shape[-2:]
    out = torch.zeros(1, HINT_CHANNELS, h, w)
    if not hints:
        return out
    for hint in hints:
        if not (0 <= hint.x < width and 0 <= hint.y < height):
            raise ValueError(f"hint at ({hint.x:g}, {hint.y:g}) lies outside the {width}x{height} image")
    cols = [min(w - 1, int(hint.x * w / width)) for hint in hints]
    rows = [min(h - 1, int(hint.y * h / height)) for hint in hints]
    L = color.denormalize_l(l_norm[0, 0, rows, cols].float().cpu())
    rgb = torch.tensor([hint.rgb for hint in hints], dtype=torch.float32) / 255.0
    ab = color.normalize_ab(_ab_at_lightness(rgb, L))
    for (r, c), v in zip(zip(rows, cols), ab):
        y0, y1, x0, x1 = max(0, r - radius), min(h, r + radius + 1), max(0, c - radius), min(w, c + radius + 1)
        out[0, 0:2, y0:y1, x0:x1] = v[:, None, None]
        out[0, 2, y0:y1, x0:x1] = 1.0
    return out
