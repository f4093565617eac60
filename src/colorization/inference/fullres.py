"""The full-resolution steps of :class:`colorization.Colorizer`, computed in row strips of at most
``STRIP_PIXELS`` pixels so that memory stays bounded on large photos:

* step 1: the lightness ``L`` of the input (:func:`full_res_l`, :func:`gray_to_l`);
* steps 4-5: ab upsampled to full resolution (bilinear, or the fast guided filter of He & Sun 2015
  guided by the full-resolution ``L``) and recombined with the original ``L`` (:func:`recombine`).
  On the CPU the 8-bit output comes from :func:`colorization.srgb8.lab_to_srgb8` (NumPy/OpenCV,
  within one level of the exact :func:`colorization.color.lab_to_rgb_in_gamut`, which other devices use):
  upsampling and conversion per strip, the strips shared by OpenCV's number of threads, and the
  few out-of-gamut pixels mapped in one call at the end (:func:`colorization.color.gamut_map8`).

All Lab maths goes through :mod:`colorization.color`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageChops
from torch import Tensor

from colorization import color
from colorization.inference.prepared import PreparedImage

__all__ = [
    "STRIP_PIXELS",
    "RefineConfig",
    "bilinear_upsample",
    "guided_filter_coefficients",
    "full_res_l",
    "gray_to_l",
    "pil_gray_levels",
    "recombine",
    "recombine_array",
]

STRIP_PIXELS = 1 << 19
"""Pixels per strip for the full-resolution steps (bounds peak memory on large photos)."""


# --------------------------------------------------------------------------------------------
# Upsampling and the guided filter
# --------------------------------------------------------------------------------------------


def _axis_weights(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights of bilinear resampling ``n_in -> n_out`` along one axis, the same
    as ``F.interpolate(mode="bilinear", align_corners=False)``."""
    scale = n_in / n_out
    src = ((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = (src - i0).to(torch.float32)
    return i0, i1, w1


class _RowUpsampler:
    """Bilinear upsampling of a small map (C,h,w) to (C,H,W), produced one row strip at a time.

    The horizontal pass is done once (C,h,W); each strip then only interpolates rows, so the
    full-resolution result never has to exist at once.
    """

    def __init__(self, src: Tensor, out_hw: tuple[int, int]) -> None:
        _, h, w = src.shape
        H, W = out_hw
        dev = src.device
        x0, x1, wx = _axis_weights(w, W, dev)
        self._rows = src[:, :, x0] * (1 - wx) + src[:, :, x1] * wx  # (C, h, W)
        self._y0, self._y1, self._wy = _axis_weights(h, H, dev)

    def rows(self, start: int, stop: int) -> Tensor:
        """Upsampled rows ``[start, stop)``: (C, stop-start, W)."""
        y0, y1 = self._y0[start:stop], self._y1[start:stop]
        wy = self._wy[start:stop].view(1, -1, 1)
        return self._rows[:, y0] * (1 - wy) + self._rows[:, y1] * wy

    def rows_numpy(self, start: int, stop: int) -> np.ndarray:
        """:meth:`rows` on the CPU as a float32 numpy array (C, stop-start, W), without gathers: the
        rows between two source rows are ``r0 + w * (r1 - r0)``, one broadcast per source row."""
        if not hasattr(self, "_np"):
            r = self._rows.cpu().numpy()
            self._np = (r, np.concatenate((r[:, 1:] - r[:, :-1], np.zeros_like(r[:, :1])), axis=1))
            self._np_y = (self._y0.cpu().numpy(), (self._y1 > self._y0).cpu().numpy(), self._wy.cpu().numpy())
        (r, dr), (y0, step, wy) = self._np, self._np_y
        out = np.empty((r.shape[0], stop - start, r.shape[2]), dtype=np.float32)
        y = start
        while y < stop:  # a run of output rows between the same two source rows
            end = y + int(np.searchsorted(y0[y:stop], y0[y], side="right"))
            blk, src = out[:, y - start : end - start], int(y0[y])
            if step[y]:
                np.multiply(wy[y:end, None], dr[:, src, None, :], out=blk)
                blk += r[:, src, None, :]
            else:  # clamped at the border: the row itself
                blk[...] = r[:, src, None, :]
            y = end
        return out


def bilinear_upsample(src: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``src`` (C,h,w) to (C,H,W); identical to
    ``F.interpolate(src[None], out_hw, mode="bilinear", align_corners=False)[0]``."""
    return _RowUpsampler(src, out_hw).rows(0, out_hw[0])


def _box(x: Tensor, radius: int) -> Tensor:
    """Mean over a (2r+1)^2 window, shrinking at the borders; x (C,h,w)."""
    k = 2 * radius + 1
    return F.avg_pool2d(x.unsqueeze(0), k, stride=1, padding=radius, count_include_pad=False).squeeze(0)


def guided_filter_coefficients(guide: Tensor, src: Tensor, radius: int, eps: float) -> tuple[Tensor, Tensor]:
    """Linear coefficients of the guided filter (He, Sun & Tang 2013) at low resolution.

    The filtered output is ``A * guide + B``; in the *fast* guided filter (He & Sun 2015) ``A``
    and ``B`` are computed at low resolution and upsampled, then applied to the full-resolution
    guide, so colour edges snap to the full-resolution lightness edges.

    Args:
        guide: (1,h,w) float, the low-resolution guide (normalised L, ``[-1, 1]``).
        src: (C,h,w) float, the map to filter (ab).
        radius: window radius in low-resolution pixels. eps: regulariser (guide units squared).

    Returns:
        ``(A, B)``, each (C,h,w) float32.
    """
    mean_i = _box(guide, radius)
    mean_p = _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius), _box(b, radius)


# --------------------------------------------------------------------------------------------
# Full-resolution lightness (step 1)
# --------------------------------------------------------------------------------------------


def _rgb_strip_to_l(rgb: np.ndarray) -> Tensor:
    """(n,W,3) uint8/float32 sRGB -> (n,W) float32 Lab L."""
    t = torch.tensor(rgb).permute(2, 0, 1)  # copy: numpy views of PIL images are read-only
    t = t.to(torch.float32) / 255.0 if rgb.dtype == np.uint8 else t.to(torch.float32)
    return color.rgb_to_lab(t)[0]


_GRAY_LUT: Tensor | None = None


def _gray_l_lut() -> Tensor:
    """Lab L of the 256 neutral 8-bit grays (256,) float32."""
    global _GRAY_LUT
    if _GRAY_LUT is None:
        levels = torch.arange(256, dtype=torch.float32) / 255.0
        _GRAY_LUT = color.rgb_to_lab(levels.view(1, 1, 256).expand(3, 1, 256))[0, 0].clone()
    return _GRAY_LUT


def _is_neutral(rgb: np.ndarray, rows: int) -> bool:
    """Whether an (H,W,3) uint8 image has R == G == B everywhere (checked in strips)."""
    import cv2  # lazy, as in colorization.color
    for y in range(0, rgb.shape[0], rows):
        r, g, b = cv2.split(rgb[y : y + rows])
        if cv2.norm(r, g, cv2.NORM_INF) or cv2.norm(r, b, cv2.NORM_INF):
            return False
    return True


def pil_gray_levels(image: Image.Image) -> np.ndarray | None:
    """The (H, W) uint8 gray levels of an ``"L"`` image, or of an ``"RGB"`` one with R == G == B
    everywhere (compared by PIL, without making an RGB array); None for any other image."""
    if image.mode == "L":
        return np.asarray(image)
    if image.mode != "RGB":
        return None
    r = image.getchannel(0)
    for c in (1, 2):
        if ImageChops.difference(r, image.getchannel(c)).getbbox() is not None:
            return None
    return np.asarray(r)


def full_res_l(rgb: np.ndarray) -> Tensor:
    """(H,W,3) uint8/float32 sRGB -> (H,W) float32 Lab L, in strips (bounded memory).

    8-bit neutral images (R == G == B everywhere: grayscale photos, also when stored as RGB) use
    a 256-entry table of :func:`colorization.color.rgb_to_lab` values instead of the full conversion.
    """
    H, W = rgb.shape[:2]
    rows = max(1, STRIP_PIXELS // W)
    if rgb.dtype == np.uint8 and _is_neutral(rgb, rows):
        return gray_to_l(rgb[:, :, 0])
    l_full = torch.empty(H, W, dtype=torch.float32)
    for y in range(0, H, rows):
        l_full[y : y + rows] = _rgb_strip_to_l(rgb[y : y + rows])
    return l_full


def gray_to_l(gray: np.ndarray) -> Tensor:
    """(H,W) uint8 neutral gray levels -> (H,W) float32 Lab L via the 256-entry table (``cv2.LUT``)."""
    import cv2

    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"gray must be a 2-D uint8 array, got {gray.shape} {gray.dtype}")
    if 0 in gray.shape:
        return torch.empty(gray.shape, dtype=torch.float32)
    return torch.from_numpy(cv2.LUT(np.ascontiguousarray(gray), _gray_l_lut().numpy()))


# --------------------------------------------------------------------------------------------
# Recombination (steps 4-5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefineConfig:
    """Edge-aware upsampling of ab (fast guided filter guided by the full-resolution L).

    Attributes:
        radius: window radius in working-resolution pixels.
        eps: regulariser in normalised-L units squared (larger: closer to plain bilinear).
    """

    radius: int = 1
    eps: float = 1e-4

    def __post_init__(self) -> None:
        if self.radius < 1:
            raise ValueError(f"RefineConfig.radius must be >= 1, got {self.radius}")
        if not self.eps > 0:
            raise ValueError(f"RefineConfig.eps must be > 0, got {self.eps}")


def recombine(
    prep: PreparedImage,
    ab_norm: Tensor,
    saturation: float,
    refine: RefineConfig | None,
    device: torch.device,
    exact: bool = False,
) -> Image.Image:
    """Upsample predicted ab and recombine it with the full-resolution L (steps 4-5).

    Args:
        prep: the prepared image (its ``l_full`` is the lightness kept in the output).
        ab_norm: (2, h, w) normalised ab at the working size ``prep.work_hw`` (padding cropped).
        saturation: chroma multiplier >= 0.
        refine: guided-filter settings, or None for plain bilinear upsampling.
        device: where to compute.
        exact: on the CPU too, use :func:`colorization.color.lab_to_rgb_in_gamut` (torch, several
            times slower) instead of :func:`colorization.srgb8.lab_to_srgb8` (within one level of it).

    Returns:
        RGB PIL image of the original size; its Lab L equals ``prep.l_full`` up to 8-bit rounding.
        (No alpha: :meth:`colorization.Colorizer.finish` adds ``prep.alpha``.)
    """
    return Image.fromarray(recombine_array(prep, ab_norm, saturation, refine, device, exact=exact), mode="RGB")


def recombine_array(
    prep: PreparedImage,
    ab_norm: Tensor,
    saturation: float,
    refine: RefineConfig | None,
    device: torch.device,
    bits: int = 8,
    exact: bool = False,
) -> np.ndarray:
    """:func:`recombine` as an (H, W, 3) sRGB array quantised to ``bits`` (8: uint8, 16: uint16).

    8 bits on the CPU use the fast :func:`colorization.srgb8.lab_to_srgb8` unless ``exact``; 16 bits
    and other devices always use :func:`colorization.color.lab_to_rgb_in_gamut`."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    levels, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    H, W = prep.l_full.shape
    h, w = prep.work_hw
    ab = color.denormalize_ab(ab_norm.to(device=device, dtype=torch.float32)) * saturation
    if refine is not None:
        guide = prep.l_work[:, :h, :w].to(device)
        a_coef, b_coef = guided_filter_coefficients(guide, ab, refine.radius, refine.eps)
        up = _RowUpsampler(torch.cat((a_coef, b_coef)), (H, W))
    else:
        up = _RowUpsampler(ab, (H, W))
    out = np.empty((H, W, 3), dtype=dtype)
    rows = max(1, STRIP_PIXELS // W)
    if device.type == "cpu" and bits == 8 and not exact:  # the fast 8-bit path
        _recombine8(prep.l_full.to(torch.float32).contiguous().numpy(), up, refine is not None, out)
        return out
    for y in range(0, H, rows):
        stop = min(H, y + rows)
        L = prep.l_full[y:stop].to(device)
        coef = up.rows(y, stop)
        if refine is not None:
            ab_full = coef[:2] * color.normalize_l(L)[None] + coef[2:]
        else:
            ab_full = coef
        rgb = color.lab_to_rgb_in_gamut(torch.cat((L[None], ab_full), dim=0))
        rgb = rgb.mul_(levels).round_().permute(1, 2, 0)
        out[y:stop] = (rgb.to(torch.uint8) if bits == 8 else rgb.to(torch.int32)).cpu().numpy()
    return out


def _workers(strips: int) -> int:
    """Threads for ``strips`` strips: OpenCV's thread count (``cv2.setNumThreads``), at most the CPUs."""
    import cv2

    return max(1, min(strips, cv2.getNumThreads(), os.cpu_count() or 1))


_GAMUT_BATCH = 1 << 14
"""Out-of-gamut pixels of one strip from which they are mapped at once rather than collected."""


def _recombine8(l_np: np.ndarray, up: _RowUpsampler, refined: bool, out: np.ndarray) -> None:
    """The fast 8-bit CPU recombination into ``out`` ((H, W, 3) uint8) of the full-resolution L
    ``l_np`` ((H, W) float32) and the upsampled ab (or guided-filter coefficients when ``refined``):
    per strip of :data:`STRIP_PIXELS`, ab rows upsampled (:meth:`_RowUpsampler.rows_numpy`) and
    converted (:func:`colorization.srgb8.lab_to_srgb8`), the strips shared by :func:`_workers`
    threads (NumPy and OpenCV release the GIL). The pixels out of gamut go through
    :func:`colorization.color.gamut_map8`: in their strip's thread where a strip has many, else (a
    typical photo: ~0.2 % of its pixels) collected and mapped in one call at the end, since a
    call per strip costs more than its few pixels."""
    from colorization import srgb8  # lazy: OpenCV

    H, W = l_np.shape
    rows = max(1, STRIP_PIXELS // max(1, W))
    starts = range(0, H, rows)
    if H:
        up.rows_numpy(0, 1)  # builds its tables once, before threads share it
    deferred: list[tuple[np.ndarray, ...]] = []

    def strip(y: int) -> None:
        stop = min(H, y + rows)
        L, coef = l_np[y:stop], up.rows_numpy(y, stop)
        if refined:
            ab_full = coef[:2]
            ab_full *= color.normalize_l(L)[None]
            ab_full += coef[2:]
        else:
            ab_full = coef
        found: list[tuple[np.ndarray, ...]] = []
        srgb8.lab_to_srgb8(L, ab_full[0], ab_full[1], out=out[y:stop], defer=found)
        for idx, *lab in found:
            if len(idx) >= _GAMUT_BATCH:  # many (a tinted black or white area): mapped here, in this thread
                color.gamut_map8(idx, *lab, out[y:stop].reshape(-1, 3))
            else:
                deferred.append((idx + y * W, *lab))  # strip -> image pixel indices

    workers = _workers(len(starts))
    if workers == 1:
        for y in starts:
            strip(y)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(strip, starts):  # re-raises a strip's error
                pass
    if deferred:
        idx, L, a, b = (np.concatenate(parts) for parts in zip(*deferred))
        color.gamut_map8(idx, L, a, b, out.reshape(-1, 3))
