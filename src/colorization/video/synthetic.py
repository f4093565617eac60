"""Clips with known colour and known motion, made from still colour photos, for measuring temporal
stability (``benchmarks/bench_video.py``, the tests).

A virtual camera moves over a photo: every frame is an affine view of it (bilinear resampling).
Because the motion is generated, the exact correspondence between consecutive frames is known
(:attr:`SyntheticClip.maps`), so the chroma warp error is measured without estimating any flow.

Kinds: ``pan`` (sub-pixel translation, 1.7 and 0.6 px per frame), ``slowpan`` (0.5 and 0.17 px
per frame: most of the view stays in it for the whole clip), ``zoom`` (scale about the centre), ``cut`` (a pan over
one photo, then over another: no correspondence across the cut), ``object`` (a patch of a second
photo moving across a slowly panning background; background pixels it uncovers have no
correspondence), and two whose true colours change over time, so that a stabiliser which holds
colours still is wrong there: ``light`` (a slow pan while the light dims and turns warm, as at
sunset: every pixel's colour and lightness drift) and ``objects`` (three saturated patches of a
second photo crossing a slowly panning background in different directions and at different
speeds, occluding one another, one of them changing its hue as it goes).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CLIP_KINDS", "SyntheticClip", "make_clip"]

CLIP_KINDS = ("pan", "slowpan", "zoom", "cut", "object", "light", "objects")


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
        kind: one of :data:`CLIP_KINDS`.
        photo: (h, w, 3) uint8 RGB, the scene. other: the second photo (``cut``, ``object``,
            ``objects``).

    Raises:
        ValueError: an unknown kind, or no ``other`` photo where one is needed.
    """
    if kind not in CLIP_KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; choose one of {', '.join(CLIP_KINDS)}")
    if kind in ("cut", "object", "objects") and other is None:
        raise ValueError(f"a {kind!r} clip needs a second photo (other=)")
    w, h = size
    out: list[np.ndarray] = []
    maps: list = []
    if kind == "light":
        return _light(photo, frames, size)
    if kind == "objects":
        return _objects(photo, other, frames, size)  # type: ignore[arg-type]
    if kind in ("pan", "slowpan", "cut"):
        shots = [(photo, frames)] if kind != "cut" else [(photo, frames // 2), (other, frames - frames // 2)]
        first = (0.5, 0.5 / 3) if kind == "slowpan" else (1.7, 0.6)
        for shot, (img, n) in enumerate(shots):
            src, mats = _pan(img, n, size, first if shot == 0 else (-1.3, 0.9))
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


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb8(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.clip(s * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _light(photo: np.ndarray, n: int, size: tuple[int, int]) -> SyntheticClip:
    """A slow pan (0.6, 0.2 px per frame) while the light dims to 55 % and turns warm (linear-RGB
    gains from (1, 1, 1) to (1.0, 0.72, 0.42) of that), smoothly over the clip."""
    src, mats = _pan(photo, n, size, (0.6, 0.2))
    out, maps = [], []
    for t, m in enumerate(mats):
        s = t / max(1, n - 1)
        s = s * s * (3 - 2 * s)  # smooth start and end
        gain = (1.0 - 0.45 * s) * (np.array([1.0, 1.0, 1.0]) * (1 - s) + np.array([1.0, 0.72, 0.42]) * s)
        lin = _srgb_to_linear(_render(src, m, size).astype(np.float64) / 255.0)
        out.append(_linear_to_srgb8(lin * gain))
        maps.append(None if t == 0 else _camera_map(m, mats[t - 1], size))
    return SyntheticClip("light", out, maps)


def _saturate(rgb: np.ndarray, factor: float, hue_deg: float = 0.0) -> np.ndarray:
    """(h, w, 3) uint8 with its chroma scaled by ``factor`` and its hue turned by ``hue_deg``
    (OpenCV's 8-bit HSV)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_deg / 2.0) % 180.0
    hsv[..., 1] = np.clip(hsv[..., 1] * factor + 40.0, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _objects(photo: np.ndarray, other: np.ndarray, n: int, size: tuple[int, int]) -> SyntheticClip:
    """Three saturated patches of ``other`` (one turning its hue by 120 degrees over the clip) moving
    over a slow pan of ``photo``: right at 4 px per frame, left at 2.5, down at 1.5 (drawn in that
    order, later ones in front)."""
    w, h = size
    src, mats = _pan(photo, n, size, (0.5, 0.0))
    big = _fit(other, size, 1.0)
    ow, oh = w // 4, h // 3
    crops = [big[: oh, : ow], big[-oh:, -ow:], big[(big.shape[0] - oh) // 2 : (big.shape[0] + oh) // 2, : ow]]
    patches = [_saturate(np.ascontiguousarray(c), 1.6) for c in crops]
    x0 = (w - ow) / 2
    tracks = [
        lambda t: (-ow * 0.5 + 4.0 * t, h * 0.15 + 6 * np.sin(t / 6)),
        lambda t: (w - ow * 0.5 - 2.5 * t, h * 0.55),
        lambda t: (x0 + 10 * np.sin(t / 7), -oh * 0.5 + 1.5 * t),
    ]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    labels, pos, out = [], [], []
    for t, m in enumerate(mats):
        frame = _render(src, m, size)
        label = np.full((h, w), -1, dtype=np.int8)
        here = []
        for k, (patch, track) in enumerate(zip(patches, tracks)):
            ox, oy = track(t)
            here.append((ox, oy))
            if k == 2:  # this one changes colour as it moves
                patch = _saturate(patch, 1.0, hue_deg=120.0 * t / max(1, n - 1))
            shift = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]])
            layer = cv2.warpAffine(patch, shift, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_CONSTANT)
            mask = (gx >= ox) & (gx <= ox + ow - 1) & (gy >= oy) & (gy <= oy + oh - 1)
            frame[mask] = layer[mask]
            label[mask] = k
        out.append(frame)
        labels.append(label)
        pos.append(here)
    maps: list = [None]
    for t in range(1, n):
        qx, qy, _ = _camera_map(mats[t], mats[t - 1], size)
        for k in range(len(patches)):
            on = labels[t] == k
            (ox, oy), (px, py) = pos[t][k], pos[t - 1][k]
            qx = np.where(on, gx - ox + px, qx).astype(np.float32)
            qy = np.where(on, gy - oy + py, qy).astype(np.float32)
        inside = (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        yi, xi = np.clip(np.round(qy).astype(int), 0, h - 1), np.clip(np.round(qx).astype(int), 0, w - 1)
        # visible in both frames as the same layer (objects' edges and uncovered background are unmatched)
        maps.append((qx, qy, inside & (labels[t - 1][yi, xi] == labels[t])))
    return SyntheticClip("objects", out, maps)
