"""Temporal stabilisation of predicted chroma: colours that hold still from frame to frame.

Each frame's predicted ab (at the network's working resolution) is blended with the previous
*output* ab carried along dense optical flow (OpenCV's DIS flow on the working-resolution
lightness), so the colour of a surface follows it through the shot instead of being guessed anew
on every frame:

``out_t = pred_t + carry * conf_t * (1 - s_t) * (warp(out_{t-1}) - pred_t)``

``conf_t`` in ``[0, 1]`` drops where the flow cannot be trusted: a forward-backward check (the
backward flow followed by the forward flow should come back to the start) and a photometric check
(the warped previous lightness should match the current one) both have to pass, and pixels whose
source falls outside the previous frame get none. Occluded and newly revealed regions therefore
take the new prediction. When too few pixels are trusted (a scene cut), the state resets and the
frame is taken as predicted.

``s_t`` in ``[0, 1]`` lets the current prediction through where it *persistently* disagrees with
the carried colour, so that colour from earlier frames does not outweigh the current frames'
where they keep saying something else (the view showed more of the scene, the light changed, the
first frames were guessed worse): the disagreement ``e = pred_t - warp(out_{t-1})`` is averaged
along the flow, ``m_t = b * warp(m_{t-1}) + (1 - b) * e`` and ``v_t = b * warp(v_{t-1}) + (1 - b)
* |e|^2`` with ``b = persistence * conf_t``; its persistence ``rho = |m_t|^2 / v_t`` is near
``rho_0 = (1 - b) / (1 + b)`` for flicker (a disagreement of random sign) and near 1 for a lasting
one, and ``s_t = clip((rho - rho_0) / (1 - rho_0), 0, 1) ** persistence_power``. Flicker is held
still as before. Measured on 42 synthetic clips of ``bench/`` photos (docs/video.md): every clip
kind within 0.1 dB of per-frame colorization's PSNR (without it: up to 0.19 dB below), the worst
clip 0.32 dB below instead of 0.84, at a warp error of 0.34x per-frame colorization's instead of 0.27x.

The work is split in two so that the network can run on batches of frames: :meth:`TemporalStabilizer.motion`
needs only the lightness and can run ahead of the network; :meth:`TemporalStabilizer.blend` needs
the prediction and must see the frames in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["StabilizerConfig", "Motion", "TemporalStabilizer", "track_points"]


@dataclass(frozen=True)
class StabilizerConfig:
    """Settings of :class:`TemporalStabilizer` (defaults chosen on the synthetic clips of
    ``benchmarks/bench_video.py``, docs/video.md).

    Attributes:
        carry: weight of the carried chroma where the flow is fully trusted (0: per-frame
            colorization; closer to 1: steadier colours that adapt more slowly).
        fb_tolerance: forward-backward flow error (working-resolution px) at which the
            confidence falls to ``exp(-1)``.
        photo_tolerance: lightness mismatch after warping (8-bit levels of normalised L) at
            which the confidence falls to ``exp(-1)``.
        cut_fraction: a frame with fewer trusted pixels (confidence > 0.5) than this share
            starts a new shot (scene cut): nothing is carried into it.
        preset: DIS flow preset, ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        persistence: memory ``b`` (per frame, in ``(0, 1)``) of the averaged disagreement between
            the prediction and the carried colour (see the module docstring); None: the carried
            colour is blended by ``carry * conf`` alone, however long the prediction disagrees
            (the stabiliser before issue #31).
        persistence_power: exponent of the persistence share ``s`` (larger: only the most
            lasting disagreements get through).
    """

    carry: float = 0.92
    fb_tolerance: float = 1.0
    photo_tolerance: float = 10.0
    cut_fraction: float = 0.35
    preset: str = "fast"
    persistence: float | None = 0.8
    persistence_power: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.carry < 1.0:
            raise ValueError(f"carry must be in [0, 1), got {self.carry}")
        if not (self.fb_tolerance > 0 and self.photo_tolerance > 0):
            raise ValueError("fb_tolerance and photo_tolerance must be > 0")
        if not 0.0 <= self.cut_fraction <= 1.0:
            raise ValueError(f"cut_fraction must be in [0, 1], got {self.cut_fraction}")
        if self.preset not in _PRESETS:
            raise ValueError(f"preset must be one of {', '.join(_PRESETS)}, got {self.preset!r}")
        if self.persistence is not None and not 0.0 < self.persistence < 1.0:
            raise ValueError(f"persistence must be in (0, 1) or None, got {self.persistence}")
        if not self.persistence_power > 0:
            raise ValueError(f"persistence_power must be > 0, got {self.persistence_power}")


_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass
class Motion:
    """How frame ``t`` relates to frame ``t-1`` at working resolution ``(h, w)``.

    Attributes:
        map_x, map_y: (h, w) float32, where each pixel of frame t lies in frame t-1 (px).
        confidence: (h, w) float32 in ``[0, 1]``; all zero after a scene cut.
        forward: (h, w, 2) float32 flow from frame t-1 to frame t (px), for tracking points.
        cut: whether frame t starts a new shot.
    """

    map_x: np.ndarray
    map_y: np.ndarray
    confidence: np.ndarray
    forward: np.ndarray
    cut: bool


def _to_u8(l_norm: Tensor | np.ndarray) -> np.ndarray:
    """Normalised lightness (h, w) or (1, h, w) in ``[-1, 1]`` -> (h, w) uint8."""
    x = l_norm.detach().cpu().numpy() if isinstance(l_norm, Tensor) else np.asarray(l_norm)
    x = x.reshape(x.shape[-2:])
    return np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


class TemporalStabilizer:
    """Carry chroma along optical flow between consecutive frames (see the module docstring).

    >>> stab = TemporalStabilizer()
    >>> ab_out = stab(l_norm, ab_norm)   # per frame, in order: (1,h,w) L in [-1,1], (2,h,w) ab_norm

    Frames of another working size than the previous one start a new shot.
    """

    def __init__(self, config: StabilizerConfig | None = None) -> None:
        self.config = config or StabilizerConfig()
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[self.config.preset])
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next one is taken as predicted)."""
        self._prev_l: np.ndarray | None = None
        self._prev_ab: np.ndarray | None = None
        self._mean: np.ndarray | None = None  # (h, w, 2) averaged disagreement m
        self._power: np.ndarray | None = None  # (h, w) averaged squared disagreement v

    def motion(self, l_norm: Tensor | np.ndarray) -> Motion | None:
        """Flow and confidence from the previous frame given to :meth:`motion` to this one.

        Args:
            l_norm: (h, w) or (1, h, w) normalised lightness in ``[-1, 1]`` (the network input
                without padding).

        Returns:
            The :class:`Motion`, or None for the first frame (or a change of size).
        """
        cur = _to_u8(l_norm)
        prev, self._prev_l = self._prev_l, cur
        if prev is None or prev.shape != cur.shape:
            return None
        cfg = self.config
        back = self._dis.calc(cur, prev, None)  # pixel of t -> displacement into t-1
        fwd = self._dis.calc(prev, cur, None)
        h, w = cur.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = gx + back[..., 0], gy + back[..., 1]
        fwd_at = cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fb = np.hypot(back[..., 0] + fwd_at[..., 0], back[..., 1] + fwd_at[..., 1])
        warped_l = cv2.remap(prev.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        photo = np.abs(cur.astype(np.float32) - warped_l)
        conf = np.exp(-((fb / cfg.fb_tolerance) ** 2) - (photo / cfg.photo_tolerance) ** 2)
        inside = (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)
        conf = (conf * inside).astype(np.float32)
        cut = float((conf > 0.5).mean()) < cfg.cut_fraction
        if cut:
            conf[:] = 0.0
        return Motion(map_x, map_y, conf, fwd, cut)

    def blend(self, motion: Motion | None, ab_norm: Tensor) -> Tensor:
        """The stabilised chroma of the next frame.

        Args:
            motion: what :meth:`motion` returned for this frame.
            ab_norm: (2, h, w) float predicted normalised ab of this frame.

        Returns:
            (2, h, w) float32 normalised ab on ``ab_norm``'s device.
        """
        pred = ab_norm.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
        cfg = self.config
        if motion is None or motion.cut or self._prev_ab is None or self._prev_ab.shape != pred.shape:
            out = np.ascontiguousarray(pred)
            self._mean, self._power = np.zeros_like(out), np.zeros(out.shape[:2], dtype=np.float32)
        else:
            def warp(x: np.ndarray) -> np.ndarray:
                return cv2.remap(x, motion.map_x, motion.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

            carried = warp(self._prev_ab)
            weight = cfg.carry * motion.confidence
            if cfg.persistence is not None:
                weight = weight * (1.0 - self._persistent_share(pred - carried, motion.confidence, warp))
            out = pred + weight[..., None] * (carried - pred)
        self._prev_ab = np.ascontiguousarray(out, dtype=np.float32)
        return torch.from_numpy(self._prev_ab.copy()).permute(2, 0, 1).to(ab_norm.device)

    def _persistent_share(self, disagreement: np.ndarray, confidence: np.ndarray, warp) -> np.ndarray:
        """``s``: (h, w) float32 in [0, 1], how lasting the disagreement between prediction and carried
        colour is along the flow (0: flicker or none; 1: the prediction keeps saying otherwise)."""
        b = np.float32(self.config.persistence) * confidence
        mean = b[..., None] * warp(self._mean) + (1.0 - b)[..., None] * disagreement
        power = b * warp(self._power) + (1.0 - b) * np.square(disagreement).sum(axis=-1)
        self._mean, self._power = mean.astype(np.float32), power.astype(np.float32)
        rho = np.square(mean).sum(axis=-1) / (power + 1e-6)
        rho0 = (1.0 - self.config.persistence) / (1.0 + self.config.persistence)
        share = np.clip((rho - rho0) / (1.0 - rho0), 0.0, 1.0)
        return (share**self.config.persistence_power).astype(np.float32)

    def __call__(self, l_norm: Tensor | np.ndarray, ab_norm: Tensor) -> Tensor:
        """:meth:`motion` then :meth:`blend` for one frame."""
        return self.blend(self.motion(l_norm), ab_norm)


def track_points(
    points: np.ndarray, motion: Motion, min_confidence: float = 0.5, max_return: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Move points of frame t-1 to frame t along the forward flow.

    Args:
        points: (N, 2) float ``(x, y)`` in working-resolution pixel coordinates of frame t-1.
        motion: the frame-t :class:`Motion`.
        min_confidence: points landing where the confidence is lower are lost (occluded, cut).
        max_return: points whose landing place leads back (backward flow) further than this
            (px) from where they started are lost (covered by something moving over them).

    Returns:
        ``(moved, kept)``: (N, 2) float32 positions in frame t and an (N,) bool mask of the points
        still tracked (inside the frame, trusted and consistent both ways).
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    h, w = motion.confidence.shape
    if len(pts) == 0:
        return pts, np.zeros(0, dtype=bool)
    fx = cv2.remap(motion.forward[..., 0], pts[:, 0:1], pts[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fy = cv2.remap(motion.forward[..., 1], pts[:, 0:1], pts[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = pts + np.concatenate([fx, fy], axis=1)
    inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
    xi = np.clip(np.round(moved[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(moved[:, 1]).astype(int), 0, h - 1)
    # forward-backward at the point itself: the backward flow where it lands must lead back to it
    # (a point covered by something moving over it lands on trusted flow that leads elsewhere)
    bx = cv2.remap(motion.map_x, moved[:, 0:1], moved[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    by = cv2.remap(motion.map_y, moved[:, 0:1], moved[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    back = np.hypot(bx[:, 0] - pts[:, 0], by[:, 0] - pts[:, 1]) <= max_return
    kept = inside & back & (motion.confidence[yi, xi] >= min_confidence) & (not motion.cut)
    return moved.astype(np.float32), kept
