"""The SSIM computation shared by the evaluation metric and the training loss.

SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, constants
``K1 = 0.01``, ``K2 = 0.03``, population (not sample) statistics, and only the "valid" part of
the image (no padding).  This is what ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` computes, which the tests use as
the golden reference.

:func:`ssim_map` is the one implementation; it is differentiable and takes any number of channels
and any value range. Its two users add their own contract on top:

* :func:`colorization.evaluation.metrics.ssim` — the evaluation metric: RGB ``(B, 3, H, W)`` in ``[0, 1]``,
  float64, per image;
* :func:`colorization.train.losses.ssim` / :func:`colorization.train.losses.ssim_loss` — the training loss
  (``1 - SSIM``): any channels (RGB, or normalised ab with data range 2), float32, with gradients.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "SSIM_K1",
    "SSIM_K2",
    "gaussian_window",
    "ssim_map",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


@functools.lru_cache(maxsize=8)
def _window_values(size: int, sigma: float) -> tuple[float, ...]:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return tuple((g / g.sum()).tolist())


def _window_1d(
    size: int, sigma: float, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Normalised 1-D Gaussian, a fresh tensor per call (only the numbers are cached, so a window
    first built under ``torch.inference_mode`` never leaks into autograd)."""
    return torch.tensor(_window_values(size, sigma), dtype=dtype, device=device)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """Normalised 2-D Gaussian window.

    Returns:
        float32 tensor ``(size, size)`` with non-negative entries summing to 1.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"SSIM window size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"SSIM window sigma must be positive, got {sigma}")
    g = _window_1d(size, float(sigma))
    return torch.outer(g, g)


def _check_pair(x: Tensor, y: Tensor, window: int) -> None:
    if x.shape != y.shape:
        raise ValueError(f"SSIM inputs must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"SSIM inputs must be (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-1] < window or x.shape[-2] < window:
        raise ValueError(
            f"SSIM needs images of at least {window}x{window} pixels, got {x.shape[-2]}x{x.shape[-1]}"
        )


def _filter(x: Tensor, win1d: Tensor) -> Tensor:
    """Separable valid Gaussian filtering of every channel. x: (N, C, H, W)."""
    c = x.shape[1]
    kh = win1d.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = win1d.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim_map(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> Tensor:
    """Per-pixel SSIM map (valid region only).

    Args:
        x, y: ``(B, C, H, W)`` tensors of the same shape and any real value range; ``H, W >=
            window_size``. Computed in float32 (float64 for float64 inputs; lower precision is
            upcast).
        data_range: the dynamic range of the values (1.0 for RGB in [0, 1], 2.0 for normalised ab).

    Returns:
        float32 (or float64) ``(B, C, H - window_size + 1, W - window_size + 1)``, in ``[-1, 1]``.
        Differentiable with respect to both inputs.
    """
    _check_pair(x, y, window_size)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    y = y.to(dtype)
    win = _window_1d(window_size, float(sigma), dtype, x.device)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    # One batched filtering pass over the five statistics.
    stats = _filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), win)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.chunk(5, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den
