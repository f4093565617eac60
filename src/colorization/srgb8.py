"""Fast 8-bit sRGB output of Lab colours on the CPU (OpenCV), for photos and video frames.

:func:`lab_to_srgb8` is the twin of :func:`colorization.color.lab_to_rgb_in_gamut` followed by
8-bit rounding, within one level of it and several times faster; :mod:`colorization.color` keeps
every Lab constant and the gamut mapping (:func:`colorization.color.gamut_map8`) it finishes with.
Imported by the full-resolution recombination (:mod:`colorization.inference.fullres`), not by
``import colorization``.
"""

from __future__ import annotations

import cv2
import numpy as np

from colorization import color

__all__ = ["lab_to_srgb8"]


def lab_to_srgb8(L: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
                 defer: list | None = None) -> np.ndarray:
    """Fast 8-bit :func:`~colorization.color.lab_to_rgb_in_gamut`: Lab planes -> gamut-mapped sRGB.

    The bulk goes through OpenCV's float Lab -> sRGB (SIMD, its own D65 white and matrix, which
    differ from :data:`~colorization.color.WHITE_D65` / :data:`~colorization.color.RGB_FROM_XYZ`
    by < 1e-4, and a spline of the sRGB curve): under 0.1 of a level from the exact maths. OpenCV
    clips instead of mapping the gamut, so every colour out of gamut comes back with a channel at
    level 0 or 255: the pixels with a channel there are recomputed by
    :func:`colorization.color.gamut_map8` (the mapping of ``lab_to_rgb_in_gamut``).

    Args:
        L, a, b: float32 ``(n, W)`` arrays of one shape (Lab units; L in ``[0, 100]``).
        out: optional C-contiguous uint8 ``(n, W, 3)`` array to write into.
        defer: a list: those pixels are appended to it as ``(flat pixel indices into out, L, a, b)``
            instead of being recomputed here, for one ``gamut_map8`` call over many strips.

    Returns:
        uint8 ``(n, W, 3)`` sRGB (``out`` when given), within one level of
        ``round(255 * lab_to_rgb_in_gamut(lab))`` (equal for all but ~0.3 % of pixels).
    """
    if any(not isinstance(p, np.ndarray) or p.dtype != np.float32 or p.ndim != 2 for p in (L, a, b)):
        raise TypeError("L, a and b must be 2-D float32 numpy arrays")
    if a.shape != L.shape or b.shape != L.shape:
        raise ValueError(f"L, a and b must have one shape, got {L.shape}, {a.shape} and {b.shape}")
    n, W = L.shape
    out = np.empty((n, W, 3), dtype=np.uint8) if out is None else out
    if out.dtype != np.uint8 or out.shape != (n, W, 3) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 array of shape {(n, W, 3)}")
    if L.size == 0:
        return out
    rgb = cv2.cvtColor(cv2.merge((L, a, b)), cv2.COLOR_Lab2RGB)  # (n, W, 3) float32 in [0, 1]
    cv2.convertScaleAbs(rgb, dst=out, alpha=255.0)  # x 255, rounded, saturated
    inside = cv2.inRange(out, (1, 1, 1), (254, 254, 254))  # 255 where no channel is at 0 or 255
    if cv2.countNonZero(inside) < L.size:
        idx = np.flatnonzero(inside.ravel() == 0)
        lab = [np.ascontiguousarray(p).ravel()[idx] for p in (L, a, b)]
        if defer is None:
            color.gamut_map8(idx, *lab, out.reshape(-1, 3))
        else:
            defer.append((idx, *lab))
    return out
