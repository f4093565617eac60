"""Temporal stability measures of colorized clips (used by ``benchmarks/bench_video.py``).

* :func:`warp_error` — mean chroma change between consecutive frames after motion compensation:
  ``|ab_t(p) - ab_{t-1}(q(p))|`` (Euclidean, Lab units) over the pixels ``p`` visible in both
  frames, ``q`` the exact correspondence (:mod:`colorization.video.synthetic`).
* :func:`cdc` — colour distribution consistency (as in the NTIRE 2023 video colorization
  challenge): the Jensen-Shannon divergence (natural log) of each frame's 256-bin R, G and B
  histograms against those of frames ``t + 1``, ``t + 2`` and ``t + 4``, averaged over channels,
  frames and the three steps. Lower is steadier. Pairs that span a scene cut are left out.
* :func:`frame_psnr` — PSNR of each frame against its colour original (:func:`colorization.evaluation.metrics.psnr`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from colorization import color
from colorization.evaluation import metrics

__all__ = ["CDC_STEPS", "frame_psnr", "warp_error", "cdc", "chroma"]

CDC_STEPS = (1, 2, 4)


def chroma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB -> (H, W, 2) float32 Lab ab (:func:`colorization.color.rgb_to_lab`)."""
    t = torch.tensor(rgb).permute(2, 0, 1).float() / 255.0
    return color.rgb_to_lab(t)[1:].permute(1, 2, 0).numpy()


def frame_psnr(frames: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> np.ndarray:
    """(T,) float64 PSNR (dB, data range 1) of each (H, W, 3) uint8 frame against its original."""
    out = []
    for f, g in zip(frames, truth, strict=True):
        a = torch.tensor(f).permute(2, 0, 1)[None].float() / 255.0
        b = torch.tensor(g).permute(2, 0, 1)[None].float() / 255.0
        out.append(float(metrics.psnr(a, b).mean()))
    return np.array(out)


def warp_error(frames: Sequence[np.ndarray], maps: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None]) -> float:
    """Mean motion-compensated chroma change between consecutive frames (Lab units).

    Args:
        frames: T (H, W, 3) uint8 sRGB frames.
        maps: T entries, None or ``(map_x, map_y, valid)`` as in
            :attr:`colorization.video.synthetic.SyntheticClip.maps`.

    Returns:
        The mean over all valid pixels of all frame pairs (NaN when there are none).
    """
    total, count = 0.0, 0
    prev = None
    for frame, m in zip(frames, maps, strict=True):
        ab = chroma(frame)
        if m is not None and prev is not None:
            map_x, map_y, valid = m
            warped = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            diff = np.linalg.norm(ab - warped, axis=-1)[valid]
            total += float(diff.sum())
            count += int(diff.size)
        prev = ab
    return total / count if count else float("nan")


def _histograms(frame: np.ndarray) -> np.ndarray:
    """(3, 256) normalised R, G, B histograms of an (H, W, 3) uint8 frame."""
    h = np.stack([np.bincount(frame[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.float64)
    return h / h.sum(axis=1, keepdims=True)


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats) along the last axis."""
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(-1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(-1)
    return 0.5 * (kl_p + kl_q)


def cdc(frames: Sequence[np.ndarray], cuts: Sequence[int] = (), steps: Sequence[int] = CDC_STEPS) -> float:
    """Colour distribution consistency of a clip (lower: steadier; 0 for a still clip).

    Args:
        frames: T (H, W, 3) uint8 sRGB frames.
        cuts: indices of frames that start a new shot; pairs across them are skipped.
        steps: frame distances compared (NTIRE 2023: 1, 2 and 4).

    Returns:
        The mean over ``steps`` of the mean JS divergence over channels and frame pairs.
    """
    hists = [_histograms(f) for f in frames]
    shot = np.zeros(len(frames), dtype=int)
    for c in cuts:
        shot[c:] += 1
    per_step = []
    for k in steps:
        vals = [float(_js(hists[t], hists[t + k]).mean()) for t in range(len(frames) - k) if shot[t] == shot[t + k]]
        if vals:
            per_step.append(float(np.mean(vals)))
    return float(np.mean(per_step)) if per_step else float("nan")
