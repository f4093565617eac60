"""The inference pipeline: one :class:`Colorizer` used by the CLI, the Python API, the REST service
and batch jobs.

How an image is colorized
-------------------------
1. The input (PIL image, path, bytes or numpy array; any mode, any size) becomes sRGB, and its full
   resolution lightness ``L`` (Lab, ``[0, 100]``) is computed in horizontal strips so that memory
   stays bounded on large photos. A colour input is treated like a grayscale one: only its ``L``
   is used.
2. ``L`` is resized (antialiased bilinear) to the *working size* (short side ``size`` px, aspect
   kept, long side capped at ``MAX_ASPECT * size``), normalised to ``[-1, 1]`` and reflect-padded
   to a multiple of the network stride. Images of the same working shape are batched.
3. The network predicts normalised ab at the working size; the padding is cropped off.
4. ab is scaled by ``saturation`` and upsampled to full resolution (bilinear), or, with
   ``refine=True``, by a fast guided filter (He & Sun 2015) guided by the full-resolution ``L``.
5. The ORIGINAL full-resolution ``L`` is recombined with the ab; colours outside the sRGB gamut are
   brought inside by reducing their chroma at constant L and hue (a max-chroma table per L and
   hue, finished by bisection), then the result is
   clipped to ``[0, 1]`` and quantised to 8 bits. The output's lightness therefore equals the
   input's up to 8-bit rounding; no detail is lost to the working resolution.

All Lab maths goes through :mod:`colorization.color`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from colorization import color
from colorization import io as cio
from colorization.hints import HINT_CHANNELS, Hint, coerce_hints, hint_map

if TYPE_CHECKING:  # pragma: no cover
    from colorization.checkpoint import ColorModel

__all__ = [
    "Colorizer",
    "SATURATION_RANGE",
    "RefineConfig",
    "PreparedImage",
    "TorchBackend",
    "PRECISIONS",
    "ImageInput",
    "HintsInput",
    "DEFAULT_SIZE",
    "MAX_ASPECT",
    "MAX_WORKING_SIZE",
    "prepare_image",
    "image_to_rgb_array",
    "working_shape",
    "bilinear_upsample",
    "guided_filter_coefficients",
    "recombine",
]

ImageInput = Union[Image.Image, str, os.PathLike, bytes, np.ndarray]
"""What :class:`Colorizer` accepts: a PIL image, a file path, encoded bytes or a numpy array."""
HintsInput = Union[Sequence[Union[Hint, Mapping[str, Any], str]], None]
"""Colour hints for one image (:func:`colorization.hints.coerce_hints`); None: automatic."""

DEFAULT_SIZE = 256
"""Working resolution (short side, px) when neither the caller nor the model says otherwise."""
SATURATION_RANGE: tuple[float, float] = (0.0, 2.0)
"""Allowed chroma multipliers (0 = gray, 1 = as predicted, 2 = doubled): the same rule for the
API, the CLI and the web service."""
MAX_ASPECT = 4
MAX_WORKING_SIZE = 2048
"""Largest accepted working size (short side, px); bounds the network's input."""
"""The working image's long side is at most ``MAX_ASPECT * size`` (panoramas get a shorter short side)."""
STRIP_PIXELS = 1 << 19
"""Pixels per strip for the full-resolution steps (bounds peak memory on large photos)."""
_MISSING = object()
_PENDING_PIXELS = 64_000_000
"""colorize_batch: flush the pending window once its full-resolution pixels exceed this."""


# --------------------------------------------------------------------------------------------
# Backends: anything that maps normalised L (B,1,h,w) to normalised ab (B,2,h,w)
# --------------------------------------------------------------------------------------------


class Backend(Protocol):
    """The network seen by :class:`Colorizer`.

    Attributes:
        name: ``"torch"`` or ``"onnx"``.
        stride: H and W of the input must be multiples of it.
        working_size: the model's preferred working size (short side) or None.
        device: where the pre/post-processing tensors live for this backend.
        accepts_hints: whether the network reads a colour-hint map.
    """

    name: str
    stride: int
    working_size: int | None
    device: torch.device
    config: dict[str, Any]
    accepts_hints: bool

    def __call__(self, l_norm: Tensor, hints: Tensor | None = None) -> Tensor:
        """``l_norm`` float32 ``(B,1,h,w)`` in ``[-1,1]`` and, for a hint-aware network, an optional
        hint map float32 ``(B,3,h,w)`` (None: no hints) -> float32 ab_norm ``(B,2,h,w)`` on ``device``."""
        ...


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Accepted ``precision`` values of :class:`TorchBackend` (``auto``: bf16 on CUDA when supported, else fp32)."""
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` option -> ``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``device``.

    Raises:
        ValueError: an unknown value, or bf16 asked for on a CUDA device without bf16 support.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if precision == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise ValueError(f"precision='bf16': {device} does not support bfloat16; use precision='fp16' or 'fp32'")
    return precision


class TorchBackend:
    """Runs a :class:`colorization.checkpoint.ColorModel` with PyTorch on CPU or CUDA.

    Args:
        model: the network, mapping normalised L ``(B,1,h,w)`` to normalised ab ``(B,2,h,w)``.
        device: where it runs.
        precision: ``"auto"`` (bf16 autocast on CUDA when the GPU supports it, else fp32),
            ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast around the network call only; the
            output is cast back to float32 before any Lab maths).
        channels_last: NHWC memory format for the network and its input; None: on for CUDA.
        compile: wrap the network in ``torch.compile`` (dynamic shapes, since working sizes vary;
            mode ``max-autotune-no-cudagraphs`` on CUDA, the default mode elsewhere). The first
            call of each new shape pays the compilation.

    Raises:
        ValueError: an unknown ``precision`` (see :func:`_resolve_precision`).
        RuntimeError: ``compile=True`` where ``torch.compile`` is unavailable.
    """

    name = "torch"

    def __init__(
        self,
        model: ColorModel | torch.nn.Module,
        device: str | torch.device = "cpu",
        *,
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.channels_last = (self.device.type == "cuda") if channels_last is None else bool(channels_last)
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.stride = int(getattr(model, "stride", 1) or 1)
        self.accepts_hints = bool(getattr(model, "accepts_hints", False))
        ws = getattr(model, "working_size", None)
        self.working_size = int(ws) if ws else None
        config = getattr(model, "config", None)
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)  # a raw registry network: its architecture config
        self.config = dict(config) if isinstance(config, Mapping) else {}
        try:
            self._dtype = next(model.parameters()).dtype
        except StopIteration:
            self._dtype = torch.float32
        self.compiled = bool(compile)
        self._forward: Any = self.model
        if self.compiled:
            self._forward = _compile(self.model, self.device)

    def _to_device(self, t: Tensor) -> Tensor:
        x = t.to(dtype=self._dtype)
        if self.device.type == "cuda" and x.device.type == "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def __call__(self, l_norm: Tensor, hints: Tensor | None = None) -> Tensor:
        """``l_norm`` float32 ``(B,1,h,w)`` in ``[-1,1]``, optional hint map ``(B,3,h,w)`` ->
        float32 ab_norm ``(B,2,h,w)`` on ``device``.

        Raises:
            ValueError: hints for a network that does not read them.
        """
        if hints is not None and not self.accepts_hints:
            raise ValueError("this model does not take colour hints (it was trained without them)")
        x = self._to_device(l_norm)
        args = (x,) if hints is None else (x, self._to_device(hints))
        amp = _AUTOCAST_DTYPES.get(self.precision)
        ctx = torch.autocast(device_type=self.device.type, dtype=amp) if amp is not None else nullcontext()
        with ctx:
            out = self._forward(*args)
        return out.to(torch.float32).contiguous()

    def __repr__(self) -> str:
        name = self.config.get("model", type(self.model).__name__)
        extra = f", precision={self.precision}"
        if self.channels_last:
            extra += ", channels_last"
        if self.compiled:
            extra += ", compiled"
        return f"TorchBackend({name}, device={self.device}{extra})"


def _compile(model: torch.nn.Module, device: torch.device) -> Any:
    """``torch.compile(model)`` with dynamic shapes, or a RuntimeError saying why it cannot be."""
    fn = getattr(torch, "compile", None)
    if fn is None:
        raise RuntimeError(
            f"compile=True needs torch.compile, which this PyTorch ({torch.__version__}) lacks; use compile=False"
        )
    mode = "max-autotune-no-cudagraphs" if device.type == "cuda" else None
    try:
        return fn(model, mode=mode, dynamic=True)
    except Exception as exc:  # re-raised with the option named
        raise RuntimeError(f"compile=True: torch.compile is unavailable here ({exc}); use compile=False") from exc


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def working_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Working resolution ``(h, w)`` for an image of ``height x width``.

    The short side becomes ``size`` (up- or down-scaling), the aspect ratio is kept and the long
    side is capped at ``MAX_ASPECT * size``. Both sides are at least 1.
    """
    if not 1 <= size <= MAX_WORKING_SIZE:
        raise ValueError(f"size (working resolution) must be between 1 and {MAX_WORKING_SIZE} px, got {size}")
    scale = size / min(height, width)
    if max(height, width) * scale > MAX_ASPECT * size:
        scale = MAX_ASPECT * size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """Pad ``x`` (C,h,w) at the bottom/right to multiples of ``stride`` (reflect; replicate when
    a side is too short to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x.unsqueeze(0), (0, pw, 0, ph), mode=mode).squeeze(0)


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
# Input handling
# --------------------------------------------------------------------------------------------


def _check_pixels(height: int, width: int, max_pixels: int | None, name: str) -> None:
    if height < 1 or width < 1:
        raise cio.EmptyImageError(f"{name}: image has no pixels ({width}x{height})")
    if max_pixels is not None and height * width > max_pixels:
        raise cio.ImageTooLargeError(
            f"{name}: {width}x{height} = {height * width:,} pixels exceeds the limit of "
            f"{max_pixels:,} pixels (max_pixels)"
        )


def _array_to_rgb(arr: np.ndarray, max_pixels: int | None) -> np.ndarray:
    """numpy image -> (H,W,3) uint8, or float32 in [0,1] for deeper inputs."""
    name = f"numpy array {arr.shape} {arr.dtype}"
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise cio.ImageError(f"{name}: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    _check_pixels(arr.shape[0], arr.shape[1], max_pixels, name)
    if arr.dtype == np.uint8:
        if arr.shape[2] == 3:
            return np.ascontiguousarray(arr)
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise cio.ImageError(f"{name}: contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise cio.ImageError(f"{name}: float images must be in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        x = np.clip(x, 0.0, 1.0)
    else:
        raise cio.ImageError(f"{name}: unsupported dtype (use uint8, uint16 or float in [0, 1])")
    if x.shape[2] == 4:  # composite on white, like io.to_rgb does for RGBA
        alpha = x[:, :, 3:4]
        x = x[:, :, :3] * alpha + (1.0 - alpha)
    elif x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x, dtype=np.float32)


def image_to_rgb_array(image: ImageInput, max_pixels: int | None = cio.DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported input -> sRGB array ``(H, W, 3)``: uint8, or float32 in ``[0, 1]``.

    PIL images go through :func:`colorization.io.to_rgb` (every mode, transparency on white),
    paths and bytes through :func:`colorization.io.load_image` (EXIF orientation applied), numpy
    arrays (``HxW``, ``HxWx1/3/4``; uint8, uint16 or float in ``[0, 1]``) are converted directly,
    keeping 16-bit precision.

    Raises:
        colorization.io.ImageTooLargeError: more than ``max_pixels`` pixels.
        colorization.io.ImageError: unreadable input (the message names it).
        TypeError: an unsupported input type.
    """
    if isinstance(image, Image.Image):
        _check_pixels(image.height, image.width, max_pixels, f"PIL image ({image.mode})")
        return np.asarray(cio.to_rgb(image))
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, max_pixels)
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        src = bytes(image) if isinstance(image, bytearray) else image
        return np.asarray(cio.load_image(src, max_pixels=max_pixels))
    raise TypeError(
        f"cannot colorize a {type(image).__name__}: pass a PIL image, a path, bytes or a numpy array"
    )


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


def _full_res_l(rgb: np.ndarray) -> Tensor:
    """(H,W,3) uint8/float32 sRGB -> (H,W) float32 Lab L, in strips (bounded memory).

    8-bit neutral images (R == G == B everywhere: grayscale photos, also when stored as RGB) use
    a 256-entry table of :func:`colorization.color.rgb_to_lab` values instead of the full conversion.
    """
    H, W = rgb.shape[:2]
    rows = max(1, STRIP_PIXELS // W)
    if rgb.dtype == np.uint8:
        gray = all(
            np.array_equal(rgb[y : y + rows, :, 0], rgb[y : y + rows, :, c])
            for y in range(0, H, rows)
            for c in (1, 2)
        )
    else:
        gray = False
    if gray:
        return _gray_to_l(rgb[:, :, 0])
    l_full = torch.empty(H, W, dtype=torch.float32)
    for y in range(0, H, rows):
        l_full[y : y + rows] = _rgb_strip_to_l(rgb[y : y + rows])
    return l_full


def _gray_to_l(gray: np.ndarray) -> Tensor:
    """(H,W) uint8 neutral gray levels -> (H,W) float32 Lab L via the 256-entry table, in strips."""
    H, W = gray.shape
    rows = max(1, STRIP_PIXELS // W)
    lut = _gray_l_lut()
    l_full = torch.empty(H, W, dtype=torch.float32)
    for y in range(0, H, rows):
        l_full[y : y + rows] = lut[torch.tensor(gray[y : y + rows], dtype=torch.long)]
    return l_full


@dataclass
class PreparedImage:
    """An image ready for the network (made by :func:`prepare_image`; cheap to send between processes).

    Attributes:
        l_full: (H, W) float32 Lab lightness of the original image, ``[0, 100]``.
        l_work: (1, h_pad, w_pad) float32 normalised L (``[-1, 1]``) at the working size,
            padded to the network stride.
        work_hw: working ``(h, w)`` before padding.
        hints: (3, h_pad, w_pad) float32 hint map (:mod:`colorization.hints`; zero in the padding),
            or None for automatic colorization.
    """

    l_full: Tensor
    l_work: Tensor
    work_hw: tuple[int, int]
    hints: Tensor | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Original ``(width, height)``, PIL order."""
        return int(self.l_full.shape[1]), int(self.l_full.shape[0])


def prepare_image(
    image: ImageInput,
    size: int = DEFAULT_SIZE,
    stride: int = 1,
    max_pixels: int | None = cio.DEFAULT_MAX_PIXELS,
    hints: Sequence[Hint | Mapping[str, Any] | str] | None = None,
) -> PreparedImage:
    """Decode/convert ``image`` and build the network input (CPU only; safe in DataLoader workers).

    Args:
        image: see :func:`image_to_rgb_array`.
        size: working short side in pixels. stride: network stride (pad multiple).
        max_pixels: pixel limit (None: unlimited).
        hints: colour points in the input image's pixel coordinates (see
            :func:`colorization.hints.coerce_hints`); None or empty: automatic.

    Raises:
        ValueError: a malformed hint or a point outside the image.
    """
    points = coerce_hints(hints)
    if isinstance(image, Image.Image) and image.mode == "L" and "transparency" not in image.info:
        # the common case, an 8-bit grayscale image: no RGB copy
        _check_pixels(image.height, image.width, max_pixels, "PIL image (L)")
        gray = np.asarray(image)
        H, W = gray.shape
        l_full = _gray_to_l(gray)
        del gray
    else:
        rgb = image_to_rgb_array(image, max_pixels)
        H, W = rgb.shape[:2]
        l_full = _full_res_l(rgb)
        del rgb
    h, w = working_shape(H, W, size)
    l_small = F.interpolate(
        l_full[None, None], size=(h, w), mode="bilinear", align_corners=False, antialias=(h < H or w < W)
    )[0]
    l_norm = color.normalize_l(l_small)
    l_work = _pad_to_stride(l_norm, stride).contiguous()
    hint_work = None
    if points:
        hmap = hint_map(points, (W, H), l_norm[None])[0]
        hint_work = F.pad(hmap, (0, l_work.shape[-1] - w, 0, l_work.shape[-2] - h)).contiguous()
    return PreparedImage(l_full=l_full, l_work=l_work, work_hw=(h, w), hints=hint_work)


# --------------------------------------------------------------------------------------------
# Full-resolution recombination
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
) -> Image.Image:
    """Upsample predicted ab and recombine it with the full-resolution L (steps 4-5).

    Args:
        prep: the prepared image (its ``l_full`` is the lightness kept in the output).
        ab_norm: (2, h, w) normalised ab at the working size ``prep.work_hw`` (padding cropped).
        saturation: chroma multiplier >= 0.
        refine: guided-filter settings, or None for plain bilinear upsampling.
        device: where to compute.

    Returns:
        RGB PIL image of the original size; its Lab L equals ``prep.l_full`` up to 8-bit rounding.
    """
    H, W = prep.l_full.shape
    h, w = prep.work_hw
    ab = color.denormalize_ab(ab_norm.to(device=device, dtype=torch.float32)) * saturation
    if refine is not None:
        guide = prep.l_work[:, :h, :w].to(device)
        a_coef, b_coef = guided_filter_coefficients(guide, ab, refine.radius, refine.eps)
        up = _RowUpsampler(torch.cat((a_coef, b_coef)), (H, W))
    else:
        up = _RowUpsampler(ab, (H, W))
    out = np.empty((H, W, 3), dtype=np.uint8)
    rows = max(1, STRIP_PIXELS // W)
    for y in range(0, H, rows):
        stop = min(H, y + rows)
        L = prep.l_full[y:stop].to(device)
        coef = up.rows(y, stop)
        if refine is not None:
            ab_full = coef[:2] * color.normalize_l(L)[None] + coef[2:]
        else:
            ab_full = coef
        rgb = color.lab_to_rgb_in_gamut(torch.cat((L[None], ab_full), dim=0))
        out[y:stop] = rgb.mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(out, mode="RGB")


# --------------------------------------------------------------------------------------------
# Colorizer
# --------------------------------------------------------------------------------------------


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Colorizer:
    """Colorize photos of any size and mode with an exported model.

    >>> colorizer = Colorizer.from_pretrained()           # the shipped default model
    >>> rgb = colorizer("old_photo.jpg", saturation=1.1)  # PIL RGB, same size as the input

    Args:
        backend: the network (:class:`TorchBackend` or :class:`colorization.onnx_export.OnnxBackend`).
        size: working short side in px; None: the model's ``working_size`` or ``DEFAULT_SIZE``.
        max_pixels: inputs with more pixels raise :class:`colorization.io.ImageTooLargeError`
            (None: unlimited).
        refine: default for the edge-aware ab upsampling (guided filter); off by default because
            it did not reduce colour error on our measurement (docs/colorize.md).
        refine_config: its radius/eps.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        size: int | None = None,
        max_pixels: int | None = cio.DEFAULT_MAX_PIXELS,
        refine: bool = False,
        refine_config: RefineConfig = RefineConfig(),
    ) -> None:
        self.backend = backend
        self.size = int(size or backend.working_size or DEFAULT_SIZE)
        working_shape(self.size, self.size, self.size)  # validates the range
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
        self.max_pixels = max_pixels
        self.refine = bool(refine)
        self.refine_config = refine_config

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        backend: str = "torch",
        size: int | None = None,
        max_pixels: int | None = cio.DEFAULT_MAX_PIXELS,
        refine: bool = False,
        *,
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> Colorizer:
        """Load an exported model.

        Args:
            path: an exported model folder (``model.safetensors`` + ``config.json``), ``None`` or
                ``"default"`` for the model shipped inside the package (no download). For
                ``backend="onnx"``: a ``.onnx`` file, or a folder holding one (``model.onnx``).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available (torch) /
                CPU (onnx).
            backend: ``"torch"`` (weights loaded strictly with safetensors) or ``"onnx"``
                (ONNX Runtime only; torch is used for the Lab pre/post-processing, not the network).
            size: working short side in px; None: the model's ``working_size`` (config.json),
                else 256.
            max_pixels: pixel limit for inputs (None: unlimited).
            refine: use the guided-filter ab upsampling by default.
            precision: torch backend: ``"auto"`` (bf16 autocast on CUDA when supported, fp32 on
                CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"``. The onnx backend runs fp32 only.
            channels_last: torch backend: NHWC network and input; None: on for CUDA.
            compile: torch backend: ``torch.compile`` the network (dynamic shapes).

        Raises:
            ValueError: an unknown ``backend`` or ``precision``, or a torch-only option
                (bf16/fp16, ``channels_last=True``, ``compile=True``) with ``backend="onnx"``.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        if backend == "torch":
            from colorization import checkpoint

            folder = _resolve_model_dir(path)
            dev = torch.device(device or _default_device())
            model = checkpoint.load_exported(folder, device=dev, strict=True)
            be: Backend = TorchBackend(model, dev, precision=precision, channels_last=channels_last, compile=compile)
        elif backend == "onnx":
            torch_only = {
                "precision": precision if precision in ("bf16", "fp16") else None,
                "channels_last": True if channels_last else None,
                "compile": True if compile else None,
            }
            for option, value in torch_only.items():
                if value is not None:
                    raise ValueError(f"{option}={value!r} applies to the torch backend only, not backend='onnx'")
            from colorization.onnx_export import OnnxBackend

            be = OnnxBackend(_resolve_onnx_file(path), device=device or "cpu")
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        return cls(be, size=size, max_pixels=max_pixels, refine=refine)

    @property
    def device(self) -> torch.device:
        """Where the network and the full-resolution post-processing run."""
        return self.backend.device

    @property
    def stride(self) -> int:
        """The network stride (working images are padded to multiples of it)."""
        return self.backend.stride

    @property
    def model_name(self) -> str:
        """Registry name of the model (from its config.json), or the backend name."""
        return str(self.backend.config.get("model") or self.backend.name)

    def __repr__(self) -> str:
        return f"Colorizer({self.backend!r}, size={self.size}, refine={self.refine})"

    # -- the pipeline --------------------------------------------------------------------------

    @property
    def accepts_hints(self) -> bool:
        """Whether the model takes colour hints (``hints=`` of :meth:`__call__`)."""
        return bool(getattr(self.backend, "accepts_hints", False))

    def prepare(self, image: ImageInput, size: int | None = None, hints: HintsInput = None) -> PreparedImage:
        """Step 1-2 for one image (see :func:`prepare_image`).

        Raises:
            ValueError: hints for a model that does not take them, or malformed hints.
        """
        if hints and not self.accepts_hints:
            raise ValueError(
                f"the {self.model_name} model does not take colour hints; use a model trained with "
                "hints (configs/effnet_fpn_hints.yaml trains one)"
            )
        return prepare_image(image, int(size or self.size), self.stride, self.max_pixels, hints)

    def predict(self, prepared: Sequence[PreparedImage], batch_size: int = 8) -> list[Tensor]:
        """Run the network on prepared images, batching those of equal working shape.

        Returns:
            One float32 ab_norm tensor (2, h, w) per image (padding cropped), in input order,
            on ``self.device``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(tuple(p.l_work.shape), []).append(i)
        results: list[Tensor | None] = [None] * len(prepared)
        for idx in groups.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                batch = torch.stack([prepared[i].l_work for i in chunk])
                hint_batch = None
                if any(prepared[i].hints is not None for i in chunk):
                    zeros = torch.zeros(HINT_CHANNELS, *batch.shape[2:])
                    hint_batch = torch.stack(
                        [zeros if prepared[i].hints is None else prepared[i].hints for i in chunk]  # type: ignore[misc]
                    )
                ab = self.backend(batch) if hint_batch is None else self.backend(batch, hint_batch)
                if ab.shape[0] != len(chunk) or ab.shape[1] != 2 or ab.shape[2:] != batch.shape[2:]:
                    raise RuntimeError(
                        f"the model returned {tuple(ab.shape)} for input {tuple(batch.shape)}; "
                        "expected (B, 2, H, W)"
                    )
                for j, i in enumerate(chunk):
                    h, w = prepared[i].work_hw
                    results[i] = ab[j, :, :h, :w]
        return results  # type: ignore[return-value]

    def finish(
        self,
        prepared: PreparedImage,
        ab_norm: Tensor,
        saturation: float = 1.0,
        refine: bool | None = None,
    ) -> Image.Image:
        """Steps 4-5: upsample ``ab_norm`` (2,h,w) and recombine with the full-resolution L."""
        saturation = _check_saturation(saturation)
        use_refine = self.refine if refine is None else refine
        return recombine(prepared, ab_norm, saturation, self.refine_config if use_refine else None, self.device)

    def __call__(
        self,
        image: ImageInput,
        size: int | None = None,
        saturation: float = 1.0,
        refine: bool | None = None,
        hints: HintsInput = None,
    ) -> Image.Image:
        """Colorize one image.

        Args:
            image: PIL image (any mode), path, encoded bytes, or numpy array (HxW or HxWxC with
                C in 1/3/4; uint8, uint16, or float in ``[0, 1]``). Colour inputs lose their colour.
            size: working short side (px) for this call; None: ``self.size``.
            saturation: chroma multiplier (0: gray, 1: as predicted, >1: more colourful).
            refine: guided-filter ab upsampling for this call; None: ``self.refine``.
            hints: colour points ``[Hint(x, y, "#c0392b"), ...]`` in the input's pixel coordinates
                (``{"x", "y", "color"}`` dicts and ``"X,Y,#rrggbb"`` strings work too); each colour
                is taken at its pixel's own lightness. Needs a hint-aware model
                (:attr:`accepts_hints`).

        Returns:
            RGB PIL image with the input's width and height.

        Raises:
            colorization.io.ImageTooLargeError: the input has more than ``max_pixels`` pixels.
            colorization.io.ImageError: the input cannot be read.
            ValueError: a bad ``saturation``, a malformed hint, a point outside the image, or
                hints for a model without hint input.
        """
        saturation = _check_saturation(saturation)
        prep = self.prepare(image, size, hints)
        (ab,) = self.predict([prep], batch_size=1)
        return self.finish(prep, ab, saturation, refine)

    def colorize_iter(
        self,
        images: Iterable[ImageInput],
        batch_size: int = 8,
        size: int | None = None,
        saturation: float = 1.0,
        refine: bool | None = None,
        hints: Iterable[HintsInput] | None = None,
    ) -> Iterator[Image.Image]:
        """Colorize a stream of images, yielding results in input order.

        Images are prepared in windows of up to ``4 * batch_size`` (fewer for very large photos);
        within a window images of the same working shape share network calls of up to
        ``batch_size``. ``hints``, when given, holds one entry (a list of points or None) per image.
        """
        saturation = _check_saturation(saturation)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        window: list[PreparedImage] = []
        pixels = 0
        per_image: Iterator[Any] = iter(hints) if hints is not None else itertools.repeat(None)
        for image in images:
            points = next(per_image, _MISSING)
            if points is _MISSING:
                raise ValueError("hints ran out before the images: give one entry (points or None) per image")
            prep = self.prepare(image, size, points)
            window.append(prep)
            pixels += prep.l_full.numel()
            if len(window) >= 4 * batch_size or pixels >= _PENDING_PIXELS:
                yield from self._flush(window, batch_size, saturation, refine)
                window, pixels = [], 0
        if window:
            yield from self._flush(window, batch_size, saturation, refine)

    def _flush(
        self, window: list[PreparedImage], batch_size: int, saturation: float, refine: bool | None
    ) -> Iterator[Image.Image]:
        abs_ = self.predict(window, batch_size)
        for prep, ab in zip(window, abs_):
            yield self.finish(prep, ab, saturation, refine)

    def colorize_batch(
        self,
        images: Sequence[ImageInput],
        batch_size: int = 8,
        size: int | None = None,
        saturation: float = 1.0,
        refine: bool | None = None,
        hints: Sequence[HintsInput] | None = None,
    ) -> list[Image.Image]:
        """Colorize several images (any sizes); same results as calling the colorizer on each.

        Images whose working shape is equal are batched into one network call of up to
        ``batch_size``. ``hints``: None, or one entry (points or None) per image. Returns RGB PIL
        images in input order.
        """
        if hints is not None and len(hints) != len(images):
            raise ValueError(f"hints needs one entry per image: {len(hints)} for {len(images)} images")
        return list(self.colorize_iter(images, batch_size, size, saturation, refine, hints))


def _check_saturation(saturation: float) -> float:
    s = float(saturation)
    lo, hi = SATURATION_RANGE
    if not math.isfinite(s) or not lo <= s <= hi:
        raise ValueError(f"saturation must be a number in [{lo:g}, {hi:g}], got {saturation!r}")
    return s


def _resolve_model_dir(path: str | os.PathLike | None) -> Path:
    from colorization import checkpoint

    if path is None or str(path) == "default":
        folder = Path(checkpoint.DEFAULT_MODEL_DIR)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the shipped default model is missing ({folder}); reinstall the package or pass "
                "path= an exported model folder"
            )
        return folder
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not an exported model folder (model.safetensors + config.json)")
    return folder


def _resolve_onnx_file(path: str | os.PathLike | None) -> Path:
    if path is None or str(path) == "default":
        from colorization import checkpoint

        path = checkpoint.DEFAULT_MODEL_DIR
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "model.onnx").is_file():
            return p / "model.onnx"
        found = sorted(p.glob("*.onnx"))
        if len(found) == 1:
            return found[0]
        what = "no .onnx file" if not found else f"several .onnx files ({', '.join(f.name for f in found)})"
        raise FileNotFoundError(
            f"{p}: {what}; create one with `colorization export --model {p} --out {p / 'model.onnx'}`"
        )
    raise FileNotFoundError(f"{p}: no such ONNX file or folder")
