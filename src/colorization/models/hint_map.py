"""The hint map a hint-aware network reads, and hints simulated for training.

A hint map is float32 ``(B, 3, H, W)`` holding ``[a_norm * m, b_norm * m, m]``: ``m`` is 1 on hinted
pixels and 0 elsewhere, and ``a_norm``/``b_norm`` are the hinted colour's normalised ab
(:func:`colorization.color.normalize_ab`, ``[-1, 1]``). An all-zero map means automatic colorization.
Users' points render to this map in :func:`colorization.inference.hints.hint_map`.

Training draws hints from the ground truth as Zhang et al. (2017) do: a random number of points
per image (none for a share ``p_none`` of the images, otherwise geometric with mean ``mean_count``,
at most ``max_count``), at uniform positions, each a square patch of random side whose colour is the
patch's mean ab.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["HINT_CHANNELS", "empty_hint_map", "simulate_hints"]

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
