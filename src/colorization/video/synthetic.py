"""Clips with known colour and known motion, made from still colour photos, for measuring temporal
stability (``benchmarks/bench_video.py``, the tests).

A virtual camera moves over a photo: every frame is an affine view of it (bilinear resampling).
Because the motion is generated, the exact correspondence between consecutive frames is known
(:attr:`SyntheticClip.maps`), so the chroma warp error is measured without estimating any flow.

Kinds: ``pan`` (sub-pixel translation), ``zoom`` (scale about the centre), ``cut`` (a pan over
one photo, then over another: no correspondence across the cut), ``object`` (a patch of a second
photo moving across a slowly panning background; background pixels it uncovers have no
correspondence).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CLIP_KINDS", "SyntheticClip", "make_clip"]

CLIP_KINDS = ("pan", "zoom", "cut", "object")


@dataclass
class SyntheticClip:
    """A generated clip.

    Attributes:
        kind: one of :data:`CLIP_KINDS`.
        frames: T colour frames, (H, W, 3) uint8 sRGB (the ground truth).
        maps: T entries; ``maps[0]`` and the first frame after a cut are None, the others
            ``(map_x, map_y, valid)``: for each pixel of frame t its exact position in frame
            t-1 ((H, W) float32 px) and whether it is visible there ((H, W) bool).
    """

    kind: str
    frames: list[np.ndarray]
    maps: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]

    @property
    def cuts(self) -> list[int]:
        """Indices t >= 1 of frames that start a new shot."""
        return [t for t in range(1, len(self.maps)) if self.maps[t] is None]

    def gray(self) -> list[np.ndarray]:
        """The frames as (H, W) uint8 luma (BT.601 weights, what a grayscale film would hold)."""
        return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in self.frames]


def _affine(scale: float, tx: float, ty: float) -> np.ndarray:
    """Frame pixel -> source coordinate: ``s = scale * p + t`` as a 2x3 matrix."""
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)


def _render(src: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(src, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)


def _camera_map(
    m_now: np.ndarray, m_prev: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel of the frame seen through ``m_now`` lies in the frame seen through ``m_prev``."""
    w, h = size
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    sx = m_now[0, 0] * gx + m_now[0, 2]
    sy = m_now[1, 1] * gy + m_now[1, 2]
    qx = (sx - m_prev[0, 2]) / m_prev[0, 0]
    qy = (sy - m_prev[1, 2]) / m_prev[1, 1]
    valid = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
    return qx.astype(np.float32), qy.astype(np.float32), valid


def _fit(photo: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """Resize ``photo`` so that it covers ``size`` enlarged by ``margin`` (aspect kept)."""
    w, h = size
    ph, pw = photo.shape[:2]
    s = max(w * margin / pw, h * margin / ph)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(photo, (max(w, round(pw * s)), max(h, round(ph * s))), interpolation=interp)


def _pan(photo: np.ndarray, n: int, size: tuple[int, int], velocity: tuple[float, float]):
    w, h = size
    src = _fit(photo, size, 1.0 + 1.2 * max(abs(velocity[0]) * n / w, abs(velocity[1]) * n / h))
    x0 = (src.shape[1] - w - velocity[0] * (n - 1)) / 2
    y0 = (src.shape[0] - h - velocity[1] * (n - 1)) / 2
    mats = [_affine(1.0, x0 + velocity[0] * t, y0 + velocity[1] * t) for t in range(n)]
    return src, mats


def make_clip(kind: str, photo: np.ndarray, other: np.ndarray | None = None, frames: int = 40,
              size: tuple[int, int] = (256, 192)) -> SyntheticClip:
    """Make a clip of ``frames`` frames of ``size = (width, height)`` from colour photos.

    Args:
        kind: ``"pan"``, ``"zoom"``, ``"cut"`` or ``"object"``.
        photo: (h, w, 3) uint8 RGB, the scene. other: the second photo (``cut``, ``object``).

    Raises:
        ValueError: an unknown kind, or no ``other`` photo where one is needed.
    """
    if kind not in CLIP_KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; choose one of {', '.join(CLIP_KINDS)}")
    if kind in ("cut", "object") and other is None:
        raise ValueError(f"a {kind!r} clip needs a second photo (other=)")
    w, h = size
    out: list[np.ndarray] = []
    maps: list = []
    if kind in ("pan", "cut"):
        shots = [(photo, frames)] if kind == "pan" else [(photo, frames // 2), (other, frames - frames // 2)]
        for shot, (img, n) in enumerate(shots):
            src, mats = _pan(img, n, size, (1.7, 0.6) if shot == 0 else (-1.3, 0.9))
            for t, m in enumerate(mats):
                out.append(_render(src, m, size))
                maps.append(None if t == 0 else _camera_map(m, mats[t - 1], size))
    elif kind == "zoom":
        src = _fit(photo, size, 1.05)
        cx, cy = src.shape[1] / 2, src.shape[0] / 2
        mats = []
        for t in range(frames):
            s = 1.0 * (0.65 / 1.0) ** (t / max(1, frames - 1))  # zoom in to 1/0.65 = 1.54x
            mats.append(_affine(s, cx - s * w / 2, cy - s * h / 2))
        for t, m in enumerate(mats):
            out.append(_render(src, m, size))
            maps.append(None if t == 0 else _camera_map(m, mats[t - 1], size))
    else:  # object
        src, mats = _pan(photo, frames, size, (0.5, 0.0))
        ow, oh = w * 3 // 8, h * 3 // 8
        patch = cv2.resize(_fit(other, (ow, oh), 1.0)[:oh, :ow], (ow, oh))
        # the object enters at the left and crosses at 3.3 px per frame, bobbing up and down
        pos = [(-ow / 2 + (w + ow / 2) * t / max(1, frames - 1) * 0.8 + 8, h / 2 - oh / 2 + 12 * np.sin(t / 5))
               for t in range(frames)]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        masks = []
        for t, m in enumerate(mats):
            frame = _render(src, m, size)
            ox, oy = pos[t]
            shift = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]])
            layer = cv2.warpAffine(patch, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_CONSTANT)
            mask = (gx >= ox) & (gx <= ox + ow - 1) & (gy >= oy) & (gy <= oy + oh - 1)
            frame[mask] = layer[mask]
            out.append(frame)
            masks.append(mask)
        for t in range(frames):
            if t == 0:
                maps.append(None)
                continue
            qx, qy, valid = _camera_map(mats[t], mats[t - 1], size)
            (ox, oy), (px, py) = pos[t], pos[t - 1]
            on = masks[t]
            qx = np.where(on, gx - ox + px, qx).astype(np.float32)
            qy = np.where(on, gy - oy + py, qy).astype(np.float32)
            inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
            yi, xi = np.clip(np.round(qy).astype(int), 0, h - 1), np.clip(np.round(qx).astype(int), 0, w - 1)
            prev_mask = masks[t - 1][yi, xi]
            # background seen now but hidden by the object before, and object edges, are unmatched
            valid = inside & np.where(on, prev_mask, valid & ~prev_mask)
            maps.append((qx, qy, valid))
    return SyntheticClip(kind, out, maps)
