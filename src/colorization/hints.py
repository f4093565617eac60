"""Colour hints: the ``(B, 3, H, W)`` map a hint-aware network reads, and simulated hints for
training.

A hint map holds ``[a_norm * m, b_norm * m, m]``: ``m`` is 1 on hinted pixels and 0 elsewhere, and
``a_norm``/``b_norm`` are the hinted colour's normalised ab (:func:`colorization.color.normalize_ab`).
An all-zero map means automatic colorization.

Training draws hints from the ground truth as Zhang et al. (2017) do: a random number of points
per image (none for a share ``p_none`` of the images, otherwise geometric with mean ``mean_count``,
at most ``max_count``), at uniform positions, each a square patch of random side whose colour is the
patch's mean ab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from colorization import color

__all__ = [
    "HINT_CHANNELS",
    "MAX_HINTS",
    "Hint",
    "parse_hint",
    "coerce_hints",
    "hint_map",
    "empty_hint_map",
    "simulate_hints",
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

HINT_CHANNELS = 3


def empty_hint_map(batch: int, height: int, width: int, *, device=None, dtype=torch.float32) -> Tensor:
    """All-zero hint map ``(batch, 3, height, width)`` (automatic colorization)."""
    return torch.zeros(batch, HINT_CHANNELS, height, width, device=device, dtype=dtype)


def simulate_hints(
    ab_norm: Tensor,
    *,
    p_none: float = 0.5,
    mean_count: float = 8.0,
    max_count: int = 32,
    max_patch: int = 9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hint map sampled from the ground truth.

    Args:
        ab_norm: float ``(B, 2, H, W)`` normalised ab of the ground truth.
        p_none: probability that an image gets no hint at all.
        mean_count: mean number of points of an image that gets hints (geometric, >= 1).
        max_count: cap on the number of points per image.
        max_patch: largest patch side in pixels (sides are uniform in ``1..max_patch``, capped at
            ``H // 8``).
        generator: random source (default: torch's global one).

    Returns:
        float32 ``(B, 3, H, W)`` hint map on ``ab_norm``'s device.
    """
    if ab_norm.dim() != 4 or ab_norm.shape[1] != 2:
        raise ValueError(f"ab_norm must have shape (B, 2, H, W), got {tuple(ab_norm.shape)}")
    if not 0.0 <= p_none <= 1.0 or mean_count < 1.0 or max_count < 1 or max_patch < 1:
        raise ValueError("need 0 <= p_none <= 1, mean_count >= 1, max_count >= 1, max_patch >= 1")
    b, _, h, w = ab_norm.shape
    ab = ab_norm.detach().float().cpu()
    out = torch.zeros(b, HINT_CHANNELS, h, w)
    top = max(1, min(max_patch, min(h, w) // 8))
    u = torch.rand(b, generator=generator)
    # geometric on {1, 2, ...} with mean `mean_count`
    g = torch.rand(b, generator=generator).clamp_min(1e-12)
    p = 1.0 / mean_count
    if p < 1:
        counts = torch.floor(torch.log(g) / torch.log1p(torch.tensor(-p))).long() + 1
    else:
        counts = torch.ones(b, dtype=torch.long)
    counts = counts.clamp(1, max_count)
    counts[u < p_none] = 0
    for i in range(b):
        n = int(counts[i])
        if n == 0:
            continue
        sides = torch.randint(1, top + 1, (n,), generator=generator)
        ys = torch.rand(n, generator=generator)
        xs = torch.rand(n, generator=generator)
        for s, fy, fx in zip(sides.tolist(), ys.tolist(), xs.tolist()):
            y0 = int(fy * (h - s + 1))
            x0 = int(fx * (w - s + 1))
            mean = ab[i, :, y0 : y0 + s, x0 : x0 + s].mean(dim=(1, 2))
            out[i, 0:2, y0 : y0 + s, x0 : x0 + s] = mean[:, None, None]
            out[i, 2, y0 : y0 + s, x0 : x0 + s] = 1.0
    return out.to(ab_norm.device)
