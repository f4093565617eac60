"""Differentiable image losses for training.

Everything here works on whatever channels it is given (RGB in ``[0, 1]`` or normalised ab in
roughly ``[-1, 1]``), with the value range passed explicitly as ``data_range``; Lab maths lives in
:mod:`colorization.color`.

SSIM is computed by :func:`colorization.evaluation.structural.ssim_map`, the one implementation that the
evaluation metric :func:`colorization.evaluation.metrics.ssim` uses too (Gaussian 11x11, sigma 1.5,
population statistics, valid region: the numbers of scikit-image with ``gaussian_weights=True``).
The image-quality measures (PSNR, SSIM on RGB) are defined in :mod:`colorization.evaluation.metrics`.
"""

from __future__ import annotations

from torch import Tensor

from colorization.evaluation.structural import SSIM_SIGMA, SSIM_WINDOW, ssim_map

__all__ = ["ssim", "ssim_loss"]


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    reduction: str = "mean",
) -> Tensor:
    """Structural similarity of two image batches (Gaussian 11x11, sigma 1.5), with gradients.

    Args:
        x, y: ``(B, C, H, W)``, same shape, ``H, W >= window_size``, any number of channels.
        data_range: value range of the inputs (1.0 for RGB in [0, 1], 2.0 for normalised ab).
        reduction: ``"mean"`` -> scalar mean over batch, channels and pixels; ``"none"`` -> ``(B,)``
            per-image SSIM (mean over channels and pixels, as scikit-image does with
            ``channel_axis``).

    Returns:
        float32 (float64 for float64 inputs) scalar or ``(B,)`` tensor in ``[-1, 1]`` (1 means
        identical).
    """
    m = ssim_map(x, y, data_range=data_range, window_size=window_size, sigma=sigma)
    if reduction == "mean":
        return m.mean()
    if reduction == "none":
        return m.flatten(1).mean(dim=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def ssim_loss(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """``1 - SSIM(x, y)`` as a scalar float32 loss in ``[0, 2]`` (0 for identical inputs)."""
    return 1.0 - ssim(x, y, data_range=data_range)
