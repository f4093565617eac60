"""All CIELAB maths and constants of the package.

Every other module goes through this one for colour conversions, the normalisation of the
network's input (L) and output (ab), the quantised ab gamut used by classification heads and the
colourfulness metric. Nothing else in the package hard-codes the Lab scale factors.

Conventions
-----------
* RGB: float tensors ``(..., 3, H, W)``, gamma-encoded sRGB in ``[0, 1]``.
* Lab: float tensors ``(..., 3, H, W)``, CIELAB relative to the D65 white of the CIE 1931 2°
  observer; ``L`` in ``[0, 100]``, ``a``/``b`` roughly in ``[-110, 110]``. The matrices and white
  point are those of scikit-image, so ``rgb_to_lab`` agrees with ``skimage.color.rgb2lab``; the
  companding function uses the exact CIE constants (``eps = (6/29)^3``, ``kappa = 24389/27``),
  which differ from scikit-image's rounded ``0.008856``/``7.787`` by less than 1e-4 in L.
* Normalised L (network input): ``L / 50 - 1`` in ``[-1, 1]``.
* Normalised ab (regression target/output): ``ab / 110``, roughly ``[-1, 1]``.
* The ab gamut: centres of 10x10 bins of the ab plane (``AB_BIN_SIZE``) reachable by some sRGB
  colour and present in the training photos, with their empirical prior. Stored in
  ``resources/ab_gamut.json`` (made by ``scripts/make_ab_gamut.py``).

All conversions accept any floating dtype; half precision inputs are computed in float32 and the
result is returned in the input dtype. They run on whatever device the input lives on and are
differentiable everywhere, including at black (no NaN gradients).
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "L_RANGE", "max_chroma_table", "lab_to_rgb_in_gamut", "L_SCALE", "AB_SCALE",
    "AB_BIN_SIZE", "WHITE_D65", "XYZ_FROM_RGB", "RGB_FROM_XYZ", "DEFAULT_SIGMA", "DEFAULT_K",
    "DEFAULT_TEMPERATURE", "DEFAULT_REBALANCE_LAMBDA", "AB_GAMUT_RESOURCE", "rgb_to_lab",
    "lab_to_rgb", "ab_spread", "normalize_l", "denormalize_l", "normalize_ab", "denormalize_ab", "rgb_to_l_ab",
    "l_ab_to_rgb", "rgb_to_gray", "load_ab_gamut", "ab_gamut_info", "ab_bins", "ab_prior",
    "num_ab_bins", "soft_encode", "nearest_bin", "rebalance_weights", "annealed_mean",
    "colorfulness", "gamut_map8",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

L_RANGE: float = 100.0
"""Lab lightness spans ``[0, L_RANGE]``."""
L_SCALE: float = L_RANGE / 2.0
"""``normalize_l(L) = L / L_SCALE - 1`` maps ``[0, 100]`` to ``[-1, 1]``."""
AB_SCALE: float = 110.0
"""``normalize_ab(ab) = ab / AB_SCALE``; sRGB ab values lie within about +-110."""
AB_BIN_SIZE: float = 10.0
"""Side of the square ab bins (Lab units); bin centres are multiples of it."""

DEFAULT_K: int = 5
DEFAULT_SIGMA: float = 5.0
DEFAULT_TEMPERATURE: float = 0.38
DEFAULT_REBALANCE_LAMBDA: float = 0.5

WHITE_D65: tuple[float, float, float] = (0.95047, 1.0, 1.08883)
"""Reference white (X, Y, Z) of illuminant D65, CIE 1931 2° observer."""

XYZ_FROM_RGB: tuple[tuple[float, float, float], ...] = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
"""Linear sRGB -> XYZ (D65) matrix (the one scikit-image uses)."""


def _inverse3(m: tuple[tuple[float, float, float], ...]) -> tuple[tuple[float, float, float], ...]:
    inv = torch.linalg.inv(torch.tensor(m, dtype=torch.float64))
    return tuple(tuple(float(v) for v in row) for row in inv.tolist())  # type: ignore[return-value]


RGB_FROM_XYZ: tuple[tuple[float, float, float], ...] = _inverse3(XYZ_FROM_RGB)
"""XYZ (D65) -> linear sRGB, the exact inverse of ``XYZ_FROM_RGB``."""

# sRGB transfer function (IEC 61966-2-1).
_SRGB_DECODE_THRESHOLD = 0.04045
_SRGB_ENCODE_THRESHOLD = 0.0031308
# CIE companding: f(t) = t^(1/3) above eps, t * kappa/116 + 16/116 below.
_DELTA = 6.0 / 29.0
_EPS = _DELTA**3  # 0.008856...
_LIN_SLOPE = 1.0 / (3.0 * _DELTA**2)  # 7.787...
_LIN_OFFSET = 4.0 / 29.0  # 16/116

AB_GAMUT_RESOURCE = "ab_gamut.json"

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_image(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (..., 3, H, W), got {tuple(x.shape)}")


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Compute in float32 at least (float64 stays float64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _matmul_channels(m: tuple[tuple[float, float, float], ...], x: Tensor) -> Tensor:
    """Apply a 3x3 matrix to the channel axis of ``x`` (..., 3, H, W)."""
    mat = torch.tensor(m, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", mat, x)


def _srgb_to_linear(c: Tensor) -> Tensor:
    # clamp inside the power branch so that its gradient stays finite where it is not selected
    high = ((c.clamp(min=_SRGB_DECODE_THRESHOLD) + 0.055) / 1.055) ** 2.4
    return torch.where(c > _SRGB_DECODE_THRESHOLD, high, c / 12.92)


def _linear_to_srgb(c: Tensor) -> Tensor:
    high = 1.055 * c.clamp(min=_SRGB_ENCODE_THRESHOLD) ** (1.0 / 2.4) - 0.055
    return torch.where(c > _SRGB_ENCODE_THRESHOLD, high, c * 12.92)


def _lab_f(t: Tensor) -> Tensor:
    high = t.clamp(min=_EPS) ** (1.0 / 3.0)
    return torch.where(t > _EPS, high, t * _LIN_SLOPE + _LIN_OFFSET)


def _lab_f_inv(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA, t**3, (t - _LIN_OFFSET) / _LIN_SLOPE)


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """Convert sRGB to CIELAB (D65, 2°).

    Args:
        rgb: float tensor ``(..., 3, H, W)``, sRGB in ``[0, 1]`` (values outside are extrapolated,
            not clipped).

    Returns:
        Lab tensor of the same shape and dtype: L in ``[0, 100]``, a/b roughly ``[-110, 110]``.
        Differentiable; gradients are finite everywhere including black.
    """
    _check_image(rgb, "rgb")
    out_dtype = rgb.dtype
    x = rgb.to(_work_dtype(out_dtype))
    xyz = _matmul_channels(XYZ_FROM_RGB, _srgb_to_linear(x))
    white = torch.tensor(WHITE_D65, dtype=x.dtype, device=x.device).view(3, 1, 1)
    f = _lab_f(xyz / white)
    fx, fy, fz = f.unbind(dim=-3)
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack((L, a, b), dim=-3).to(out_dtype)


def lab_to_rgb(lab: Tensor, clip: bool = True) -> Tensor:
    """Convert CIELAB (D65, 2°) to sRGB.

    Args:
        lab: float tensor ``(..., 3, H, W)``; L in ``[0, 100]``, a/b in Lab units.
        clip: clamp the result to ``[0, 1]`` (out-of-gamut Lab colours give values outside it).

    Returns:
        sRGB tensor of the same shape and dtype, in ``[0, 1]`` when ``clip``. Differentiable.
    """
    _check_image(lab, "lab")
    out_dtype = lab.dtype
    x = lab.to(_work_dtype(out_dtype))
    L, a, b = x.unbind(dim=-3)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    # like scikit-image, clamp f(Z) at 0 (only reached by very out-of-gamut, large positive b)
    fz = (fy - b / 200.0).clamp(min=0.0)
    white = torch.tensor(WHITE_D65, dtype=x.dtype, device=x.device).view(3, 1, 1)
    xyz = _lab_f_inv(torch.stack((fx, fy, fz), dim=-3)) * white
    rgb = _linear_to_srgb(_matmul_channels(RGB_FROM_XYZ, xyz))
    if clip:
        rgb = rgb.clamp(0.0, 1.0)
    return rgb.to(out_dtype)


def normalize_l(L: Tensor) -> Tensor:
    """Lab lightness ``[0, 100]`` -> network input ``[-1, 1]`` (``L / 50 - 1``); any shape."""
    return L / L_SCALE - 1.0


def denormalize_l(x: Tensor) -> Tensor:
    """Inverse of :func:`normalize_l`: ``[-1, 1]`` -> ``[0, 100]``; any shape."""
    return (x + 1.0) * L_SCALE


def normalize_ab(ab: Tensor) -> Tensor:
    """ab in Lab units -> ``ab / 110`` (roughly ``[-1, 1]``); any shape."""
    return ab / AB_SCALE


def denormalize_ab(x: Tensor) -> Tensor:
    """Inverse of :func:`normalize_ab`: normalised ab -> Lab units; any shape."""
    return x * AB_SCALE


def rgb_to_l_ab(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """sRGB ``(..., 3, H, W)`` in ``[0, 1]`` -> ``(l_norm (..., 1, H, W), ab_norm (..., 2, H, W))``.

    ``l_norm`` is :func:`normalize_l` of L (``[-1, 1]``), ``ab_norm`` is :func:`normalize_ab` of ab.
    Same dtype as the input.
    """
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., 0:1, :, :]), normalize_ab(lab[..., 1:3, :, :])


def l_ab_to_rgb(l_norm: Tensor, ab_norm: Tensor, clip: bool = True) -> Tensor:
    """Normalised L ``(..., 1, H, W)`` and normalised ab ``(..., 2, H, W)`` -> sRGB ``(..., 3, H, W)``.

    The result is in ``[0, 1]`` when ``clip`` (default). ``ab_norm`` is cast to ``l_norm``'s dtype
    and device.
    """
    if l_norm.dim() < 3 or l_norm.shape[-3] != 1:
        raise ValueError(f"l_norm must have shape (..., 1, H, W), got {tuple(l_norm.shape)}")
    if ab_norm.dim() < 3 or ab_norm.shape[-3] != 2:
        raise ValueError(f"ab_norm must have shape (..., 2, H, W), got {tuple(ab_norm.shape)}")
    if l_norm.shape[-2:] != ab_norm.shape[-2:]:
        raise ValueError(
            f"l_norm and ab_norm must have the same H, W, got {tuple(l_norm.shape)} "
            f"and {tuple(ab_norm.shape)}"
        )
    ab_norm = ab_norm.to(dtype=l_norm.dtype, device=l_norm.device)
    lab = torch.cat((denormalize_l(l_norm), denormalize_ab(ab_norm)), dim=-3)
    return lab_to_rgb(lab, clip=clip)


def rgb_to_gray(rgb: Tensor) -> Tensor:
    """The ``gray`` baseline: keep L, set a = b = 0.

    Args:
        rgb: float ``(..., 3, H, W)`` sRGB in ``[0, 1]``.

    Returns:
        sRGB ``(..., 3, H, W)`` in ``[0, 1]``, neutral grey with the input's lightness.
    """
    lab = rgb_to_lab(rgb)
    lab = torch.cat((lab[..., 0:1, :, :], torch.zeros_like(lab[..., 1:3, :, :])), dim=-3)
    return lab_to_rgb(lab, clip=True)


# --------------------------------------------------------------------------------------------
# Quantised ab gamut
# --------------------------------------------------------------------------------------------


def load_ab_gamut(path: str | Path | None = None) -> dict[str, Any]:
    """Read an ab-gamut JSON (default: the packaged ``resources/ab_gamut.json``).

    Returns the parsed dict with at least ``bins`` (Q x 2 list, Lab units) and ``prior`` (Q list,
    sums to 1). Raises ``FileNotFoundError`` naming the file when it is missing and ``ValueError``
    when it is malformed.
    """
    if path is None:
        ref = resources.files("colorization") / "resources" / AB_GAMUT_RESOURCE
        where = str(ref)
        try:
            text = ref.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{where} is missing; create it with scripts/make_ab_gamut.py"
            ) from None
    else:
        where = str(path)
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        bins = data["bins"]
        prior = data["prior"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: not a valid ab gamut file ({exc})") from None
    if not bins or len(bins) != len(prior) or any(len(c) != 2 for c in bins):
        raise ValueError(f"{where}: 'bins' must be a non-empty Q x 2 list matching 'prior'")
    total = float(sum(prior))
    if not math.isfinite(total) or abs(total - 1.0) > 1e-3 or min(prior) < 0:
        raise ValueError(f"{where}: 'prior' must be non-negative and sum to 1 (sum={total})")
    return data


# The cached tensors are built with inference mode switched off, so that a first call made under
# torch.inference_mode() (evaluation) cannot cache inference tensors that autograd later refuses,
# and on the CPU explicitly, so that a first call under a default-device context (``with
# torch.device("meta")``, used to build networks for their shapes) cannot cache meta tensors.
@functools.lru_cache(maxsize=1)
def _gamut_tensors() -> tuple[Tensor, Tensor]:
    data = load_ab_gamut()
    with torch.inference_mode(False):
        bins = torch.tensor(data["bins"], dtype=torch.float32, device="cpu")
        prior = torch.tensor(data["prior"], dtype=torch.float64, device="cpu")
        prior = (prior / prior.sum()).to(torch.float32)
    return bins, prior


@functools.lru_cache(maxsize=16)
def _bins_on(device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):
        return _gamut_tensors()[0].to(device=device, dtype=dtype)


def ab_gamut_info() -> dict[str, Any]:
    """Metadata of the packaged gamut file (how it was computed), without the arrays."""
    data = load_ab_gamut()
    return {k: v for k, v in data.items() if k not in ("bins", "prior", "counts")}


def ab_bins() -> Tensor:
    """Bin centres ``(Q, 2)`` float32 in Lab units (a, b), from ``resources/ab_gamut.json``."""
    return _gamut_tensors()[0].clone()


def ab_prior() -> Tensor:
    """Empirical probability of each bin in the training photos, ``(Q,)`` float32, sums to 1."""
    return _gamut_tensors()[1].clone()


def num_ab_bins() -> int:
    """Number of ab bins ``Q`` (the channel count of classification logits)."""
    return int(_gamut_tensors()[0].shape[0])


def _check_ab(ab: Tensor) -> None:
    if not isinstance(ab, Tensor) or not ab.is_floating_point():
        raise TypeError("ab must be a floating point torch.Tensor")
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must have shape (B, 2, H, W), got {tuple(ab.shape)}")


# pixels per chunk of the pixel-to-bin distance computation (chunk x Q floats, ~40 MB for Q=313)
_CHUNK = 32768


def _knn_bins(ab: Tensor, k: int, bins: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """k nearest bin centres for every pixel of ``ab`` (B,2,H,W) in Lab units.

    Returns ``(sq_dist (B,k,H,W) float32, index (B,k,H,W) int64)``, nearest first.
    """
    B, _, H, W = ab.shape
    pts = ab.detach().to(torch.float32).permute(0, 2, 3, 1).reshape(-1, 2)
    centres = _bins_on(ab.device, torch.float32) if bins is None else bins
    if k > centres.shape[0]:
        raise ValueError(f"k={k} exceeds the number of ab bins ({centres.shape[0]})")
    idx_chunks = []
    d_chunks = []
    c_sq = (centres * centres).sum(1)
    for start in range(0, pts.shape[0], _CHUNK):
        p = pts[start : start + _CHUNK]
        # |p - c|^2 = |p|^2 - 2 p.c + |c|^2 (one matmul); exact distances recomputed below
        d = c_sq.unsqueeze(0) - 2.0 * (p @ centres.T)
        _, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
        exact = ((p.unsqueeze(1) - centres[idx]) ** 2).sum(-1)
        idx_chunks.append(idx)
        d_chunks.append(exact)
    idx = torch.cat(idx_chunks).view(B, H, W, k).permute(0, 3, 1, 2)
    dist = torch.cat(d_chunks).view(B, H, W, k).permute(0, 3, 1, 2)
    return dist, idx


def nearest_bin(ab: Tensor) -> Tensor:
    """Index of the nearest bin centre for each pixel.

    Args:
        ab: float ``(B, 2, H, W)`` in Lab units (not normalised).

    Returns:
        int64 ``(B, H, W)`` in ``[0, Q)``.
    """
    _check_ab(ab)
    _, idx = _knn_bins(ab, 1)
    return idx[:, 0]


def soft_encode(ab: Tensor, k: int = DEFAULT_K, sigma: float = DEFAULT_SIGMA) -> Tensor:
    """Soft-encode ab values over the bins (Zhang et al. 2016): the ``k`` nearest bin centres get
    Gaussian weights ``exp(-d^2 / (2 sigma^2))``, normalised to sum to 1; all other bins get 0.

    Args:
        ab: float ``(B, 2, H, W)`` in Lab units (use ``denormalize_ab`` on normalised values).
        k: number of nearest bins. sigma: Gaussian width in Lab units.

    Returns:
        float32 ``(B, Q, H, W)`` on ``ab``'s device, non-negative, summing to 1 over Q. Not
        differentiable (a target). Peak extra memory is one chunk of distances plus the output.
    """
    _check_ab(ab)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    B, _, H, W = ab.shape
    dist, idx = _knn_bins(ab, k)
    weights = torch.softmax(-dist / (2.0 * sigma * sigma), dim=1)  # normalised Gaussian weights
    out = torch.zeros(B, num_ab_bins(), H, W, dtype=torch.float32, device=ab.device)
    out.scatter_(1, idx, weights)
    return out


def rebalance_weights(
    prior: Tensor | None = None, lam: float = DEFAULT_REBALANCE_LAMBDA
) -> Tensor:
    """Class-rebalancing weights (Zhang et al. 2016, eq. 4).

    ``w ∝ 1 / ((1 - lam) * prior + lam / Q)``, scaled so that ``sum(prior * w) == 1``.

    Args:
        prior: ``(Q,)`` probabilities (default :func:`ab_prior`); renormalised to sum to 1.
        lam: mixing weight of the uniform distribution, in ``[0, 1]``.

    Returns:
        float32 ``(Q,)`` positive weights on ``prior``'s device.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    p = ab_prior() if prior is None else prior
    p = p.to(torch.float64)
    if p.dim() != 1 or (p < 0).any() or p.sum() <= 0:
        raise ValueError("prior must be a non-negative 1-D tensor with a positive sum")
    p = p / p.sum()
    q = p.shape[0]
    mixed = (1.0 - lam) * p + lam / q
    if (mixed <= 0).any():
        raise ValueError("lam=0 needs a prior without zero entries")
    w = 1.0 / mixed
    w = w / (p * w).sum()
    return w.to(torch.float32)


def annealed_mean(logits: Tensor, T: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Decode bin logits to ab by the annealed mean (Zhang et al. 2016, eq. 5).

    ``p = softmax(logits / T)`` over Q, ``ab = sum_q p_q * centre_q``. ``T = 1`` is the mean of
    the predicted distribution, ``T -> 0`` its mode (``T = 0`` takes the argmax exactly).

    Args:
        logits: float ``(B, Q, H, W)``. T: temperature >= 0.

    Returns:
        ab ``(B, 2, H, W)`` in Lab units, float32 (float64 for float64 logits), differentiable.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must have shape (B, Q, H, W), got {tuple(logits.shape)}")
    q = num_ab_bins()
    if logits.shape[1] != q:
        raise ValueError(f"logits have {logits.shape[1]} channels, expected Q={q} ab bins")
    if T < 0:
        raise ValueError(f"temperature must be >= 0, got {T}")
    dtype = _work_dtype(logits.dtype)
    centres = _bins_on(logits.device, dtype)
    x = logits.to(dtype)
    if T == 0:
        idx = x.argmax(dim=1)  # (B,H,W)
        return centres[idx].permute(0, 3, 1, 2).contiguous()
    p = torch.softmax(x / T, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, centres)


def ab_spread(logits: Tensor) -> Tensor:
    """Variance of the ab distribution that bin logits predict: ``sum_q p_q |c_q - mean|^2`` with
    ``p = softmax(logits)`` (temperature 1) and ``c_q`` the bin centres, in Lab units squared.

    Args:
        logits: float ``(B, Q, H, W)``.

    Returns:
        ``(B, 1, H, W)`` float32 (float64 for float64 logits), >= 0: near 0 where one colour is
        certain, hundreds to thousands where the network hesitates between distant colours.
    """
    if logits.dim() != 4 or logits.shape[1] != num_ab_bins():
        raise ValueError(f"logits must have shape (B, Q={num_ab_bins()}, H, W), got {tuple(logits.shape)}")
    dtype = _work_dtype(logits.dtype)
    centres = _bins_on(logits.device, dtype)
    p = torch.softmax(logits.to(dtype), dim=1)
    mean = torch.einsum("bqhw,qc->bchw", p, centres)
    second = torch.einsum("bqhw,q->bhw", p, (centres * centres).sum(1)).unsqueeze(1)
    return (second - (mean * mean).sum(1, keepdim=True)).clamp_min(0.0)


def colorfulness(rgb: Tensor, variant: Literal["abs", "signed"] = "abs", eps: float = 0.0) -> Tensor:
    """Hasler & Süsstrunk (2003) colourfulness M, on the 0..255 scale.

    With ``rg = R - G`` and ``yb = (R + G) / 2 - B`` over the pixels of each image (0..255):

    * ``"signed"`` — the paper's definition:
      ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)``.
    * ``"abs"`` — the variant colorization papers report (the widely copied reference code takes
      absolute values first): ``rg = |R - G|``, ``yb = |(R + G)/2 - B|``, then the same formula, so
      both the standard deviations and the means are of the absolute opponent values.

    Standard deviations are population ones (ddof 0).

    Args:
        rgb: float ``(..., 3, H, W)`` sRGB in ``[0, 1]``.
        variant: ``"abs"`` (default) or ``"signed"``.
        eps: added under both square roots (e.g. 1e-6 for a loss: their gradient is then finite for
            a grey image too); 0 gives the exact measure.

    Returns:
        float tensor ``(...)`` (one value per image), >= 0; 0 for grey images.
    """
    _check_image(rgb, "rgb")
    if variant not in ("abs", "signed"):
        raise ValueError(f"variant must be 'abs' or 'signed', got {variant!r}")
    x = rgb.to(_work_dtype(rgb.dtype)) * 255.0
    r, g, b = x.unbind(dim=-3)
    rg = (r - g).flatten(-2)
    yb = (0.5 * (r + g) - b).flatten(-2)
    if variant == "abs":
        rg = rg.abs()
        yb = yb.abs()
    var_rg = rg.var(dim=-1, correction=0)
    var_yb = yb.var(dim=-1, correction=0)
    mu_rg = rg.mean(dim=-1)
    mu_yb = yb.mean(dim=-1)
    sigma = torch.sqrt(var_rg + var_yb + eps)
    mu = torch.sqrt(mu_rg**2 + mu_yb**2 + eps)
    return sigma + 0.3 * mu


# --------------------------------------------------------------------------------------------
# Gamut mapping: bring Lab colours into sRGB at constant L and hue
# --------------------------------------------------------------------------------------------

_GAMUT_BISECT_STEPS = 8
"""Bisection steps for the colours the chroma table leaves out of gamut (rare)."""
_GAMUT_TOL = 1.0 / 255.0
"""sRGB overshoot left to the final clip (changes L by well under one unit)."""
_CHROMA_LUT_L = 201  # lightness samples over [0, L_RANGE] (0.5 L apart)
_CHROMA_LUT_HUES = 360  # hue samples (1 degree apart)
_CHROMA_LUT: dict[torch.device, Tensor] = {}


def _in_gamut(rgb: Tensor, tol: float) -> Tensor:
    """(3, ...) sRGB -> bool (...): every channel within [-tol, 1 + tol]."""
    return ((rgb >= -tol) & (rgb <= 1 + tol)).all(dim=0)


def max_chroma_table(device: torch.device | str = "cpu") -> Tensor:
    """Largest in-gamut sRGB chroma for each (L, hue): float32 ``(201, 360)`` in Lab units.

    Row ``i`` is ``L = i * L_RANGE / 200``, column ``j`` is the hue angle ``j`` degrees
    (``atan2(b, a)``). Computed once by bisection on the *linear* sRGB of :func:`lab_to_rgb`'s maths
    (the transfer curve keeps 0 and 1, so ``[0, 1]`` is the same test; a third of the time) and
    cached per device.
    """
    dev = torch.device(device)
    if dev not in _CHROMA_LUT:
        L = torch.linspace(0.0, L_RANGE, _CHROMA_LUT_L, dtype=torch.float32)
        hue = torch.arange(_CHROMA_LUT_HUES, dtype=torch.float32) * (2 * math.pi / _CHROMA_LUT_HUES)
        LL, HH = torch.meshgrid(L, hue, indexing="ij")
        cos, sin, fy = HH.cos(), HH.sin(), (LL + 16.0) / 116.0
        Y = _lab_f_inv(fy) * WHITE_D65[1]  # the lightness fixes Y
        lo, hi = torch.zeros_like(LL), torch.full_like(LL, 2.0 * AB_SCALE)  # hi: beyond any sRGB chroma
        for _ in range(16):  # 220 / 2^16: 0.003 Lab units
            mid = (lo + hi) / 2
            X = _lab_f_inv(fy + mid * cos / 500.0) * WHITE_D65[0]
            Z = _lab_f_inv((fy - mid * sin / 200.0).clamp(min=0.0)) * WHITE_D65[2]  # as lab_to_rgb clamps f(Z)
            linear = torch.stack([r[0] * X + r[1] * Y + r[2] * Z for r in RGB_FROM_XYZ])
            ok = ((linear >= 0.0) & (linear <= 1.0)).all(dim=0)
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        _CHROMA_LUT[dev] = lo.to(device=dev, dtype=torch.float32)
    return _CHROMA_LUT[dev]


def _lookup_max_chroma(L: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Bilinear lookup of :func:`max_chroma_table` for (N,) L, a, b."""
    table = max_chroma_table(L.device)
    li = (L / L_RANGE * (_CHROMA_LUT_L - 1)).clamp(0, _CHROMA_LUT_L - 1)
    l0 = li.floor().long().clamp(max=_CHROMA_LUT_L - 2)
    wl = li - l0
    hj = torch.atan2(b, a).remainder(2 * math.pi) * (_CHROMA_LUT_HUES / (2 * math.pi))
    h0 = hj.floor().long().clamp(max=_CHROMA_LUT_HUES - 1)
    wh = hj - h0
    h1 = (h0 + 1) % _CHROMA_LUT_HUES
    top = table[l0, h0] * (1 - wh) + table[l0, h1] * wh
    bottom = table[l0 + 1, h0] * (1 - wh) + table[l0 + 1, h1] * wh
    return top * (1 - wl) + bottom * wl


def _bisect_chroma(L: Tensor, ab: Tensor, hi: Tensor) -> Tensor:
    """sRGB (3,N) of the largest chroma scale in ``[0, hi]`` that is in gamut, for (N,) L and
    (2,N) ab (``a = b = 0`` is always inside)."""
    lo = torch.zeros_like(L)
    for _ in range(_GAMUT_BISECT_STEPS):
        mid = (lo + hi) / 2
        rgb = lab_to_rgb(torch.cat((L[None], ab * mid), dim=0)[:, None, :], clip=False)[:, 0, :]
        ok = _in_gamut(rgb, _GAMUT_TOL)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return lab_to_rgb(torch.cat((L[None], ab * lo), dim=0)[:, None, :], clip=False)[:, 0, :]


def lab_to_rgb_in_gamut(lab: Tensor) -> Tensor:
    """Lab (3,n,W) -> sRGB (3,n,W) in [0,1]; out-of-gamut colours are brought into the gamut by
    reducing their chroma at constant L and hue, so L is preserved.

    The chroma limit comes from :func:`max_chroma_table`; the few colours its interpolation leaves
    outside are finished by bisection on the chroma scale. In-gamut colours are not changed.
    """
    rgb = lab_to_rgb(lab, clip=False)
    oob = ~_in_gamut(rgb, _GAMUT_TOL)
    n_oob = int(oob.sum())
    if n_oob == 0:
        return rgb.clamp_(0.0, 1.0)
    if n_oob > oob.numel() // 8:  # many: work on the whole strip (cheaper than gathering)
        L, a, b = lab.unbind(0)
        limit = _lookup_max_chroma(L, a, b) / torch.hypot(a, b).clamp_min(1e-6)
        scale = torch.where(oob, limit.clamp_(max=1.0), torch.ones_like(limit))
        rgb = lab_to_rgb(torch.cat((L[None], lab[1:] * scale), dim=0), clip=False)
        rest = ~_in_gamut(rgb, _GAMUT_TOL)
        if bool(rest.any()):
            rgb[:, rest] = _bisect_chroma(L[rest], lab[1:, rest], scale[rest])
        return rgb.clamp_(0.0, 1.0)
    L = lab[0][oob]  # (N,)
    ab = lab[1:, oob]  # (2,N)
    scale = (_lookup_max_chroma(L, ab[0], ab[1]) / torch.hypot(ab[0], ab[1]).clamp_min(1e-6)).clamp_(max=1.0)
    fixed = lab_to_rgb(torch.cat((L[None], ab * scale), dim=0)[:, None, :], clip=False)[:, 0, :]
    rest = ~_in_gamut(fixed, _GAMUT_TOL)
    if bool(rest.any()):
        fixed[:, rest] = _bisect_chroma(L[rest], ab[:, rest], scale[rest])
    rgb[:, oob] = fixed
    return rgb.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The gamut mapping of 8-bit output made by OpenCV (colorization.srgb8.lab_to_srgb8)
# --------------------------------------------------------------------------------------------


_LIN_LO = -_GAMUT_TOL / 12.92  # linear-RGB bounds of _in_gamut(srgb, _GAMUT_TOL)
_LIN_HI = ((1.0 + _GAMUT_TOL + 0.055) / 1.055) ** 2.4
_EDGE_LIN = 1e-5  # margin of the gamut test left to the exact path (its float32 maths differ by < 1e-6)
_LIN_FROM_XYZ = np.array(RGB_FROM_XYZ) * np.array(WHITE_D65)  # f^-1 of (fx, fy, fz) -> linear sRGB


def _np_f_inv(t: np.ndarray) -> np.ndarray:
    return np.where(t > _DELTA, t * t * t, (t - np.float32(_LIN_OFFSET)) * np.float32(1.0 / _LIN_SLOPE))


def _np_gamut_margin(L: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) float32 Lab -> (N,) how far inside the bounds of :func:`_in_gamut` with ``_GAMUT_TOL``
    its linear sRGB lies (:func:`lab_to_rgb`'s maths, unclipped, in float32), negative outside."""
    fy = (L + np.float32(16.0)) * np.float32(1.0 / 116.0)
    fz = np.maximum(fy - b * np.float32(1.0 / 200.0), 0)
    f = (_np_f_inv(fy + a * np.float32(1.0 / 500.0)), _np_f_inv(fy), _np_f_inv(fz))
    lin = [r[0] * f[0] + r[1] * f[1] + r[2] * f[2] for r in _LIN_FROM_XYZ.astype(np.float32)]
    return np.minimum.reduce([np.minimum(c - np.float32(_LIN_LO), np.float32(_LIN_HI) - c) for c in lin])


def gamut_map8(idx: np.ndarray, L: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """Write ``out[idx]`` ((N, 3) uint8) for (N,) float32 Lab as :func:`lab_to_rgb_in_gamut` maps them
    (the pixels :func:`colorization.srgb8.lab_to_srgb8` finds clipped by OpenCV, ``out`` their clipped
    value): in-gamut colours keep ``out``; the others get the chroma scale of :func:`max_chroma_table` (and
    bisection for what it leaves outside). In gamut or not decides between a clamp and a chroma
    cut, levels apart near L = 0 and 100, so the exact path decides within ``_EDGE_LIN`` of the edge."""
    import cv2

    margin = _np_gamut_margin(L, a, b)
    edge, oob = np.abs(margin) <= _EDGE_LIN, margin < -_EDGE_LIN
    if edge.any():
        lab = torch.from_numpy(np.stack((L[edge], a[edge], b[edge]))[:, None, :])
        out[idx[edge]] = lab_to_rgb_in_gamut(lab).mul_(255.0).round_()[:, 0, :].T.to(torch.uint8).numpy()
    idx, L, a, b = idx[oob], L[oob], a[oob], b[oob]
    tl, ta, tb = (torch.from_numpy(x) for x in (L, a, b))
    scale = (_lookup_max_chroma(tl, ta, tb) / torch.hypot(ta, tb).clamp_min(1e-6)).clamp_(max=1.0)
    a2, b2 = a * scale.numpy(), b * scale.numpy()
    ok = _np_gamut_margin(L, a2, b2) >= 0.0  # a close call here costs < 1 level
    if ok.any():  # inside now: OpenCV's clip is the clamp
        lab = cv2.merge((L[ok][None], a2[ok][None], b2[ok][None]))
        out[idx[ok]] = cv2.convertScaleAbs(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), alpha=255.0).reshape(-1, 3)
    rest = torch.from_numpy(np.flatnonzero(~ok))
    if rest.numel():  # what the table leaves outside: bisection, as lab_to_rgb_in_gamut does
        rgb = _bisect_chroma(tl[rest], torch.stack((ta[rest], tb[rest])), scale[rest])
        out[idx[rest.numpy()]] = rgb.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).T.numpy()
