"""From any input to the network's input (steps 1-2 of :mod:`~colorization.inference.colorizer`):
:func:`prepare_image` makes a :class:`~colorization.inference.prepared.PreparedImage`, for the
:class:`~colorization.inference.colorizer.Colorizer`, batch jobs and video."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from colorization import color, image_io
from colorization.inference.checkpoint import DEFAULT_WORKING_SIZE
from colorization.inference.fullres import full_res_l, gray_to_l, pil_gray_levels
from colorization.inference.hints import Hint, coerce_hints, hint_map
from colorization.inference.prepared import PreparedImage

__all__ = [
    "ImageInput",
    "Background",
    "HintsInput",
    "MAX_ASPECT",
    "MAX_WORKING_SIZE",
    "PENDING_PIXELS",
    "working_shape",
    "image_to_rgb_array",
    "decode_input",
    "known_gray",
    "prepare_image",
    "windows",
]

ImageInput = Image.Image | str | os.PathLike | bytes | np.ndarray | image_io.LoadedImage
"""What :class:`Colorizer` accepts: a PIL image, a file path, encoded bytes, a numpy array, or an
already opened :class:`colorization.image_io.LoadedImage` (its alpha and 16-bit pixels are used)."""
Background = str | tuple[int, int, int] | None
"""What transparency becomes: None keeps the alpha channel (the output is RGBA where the input has
transparency), a colour (``"white"``, ``"#rrggbb"``, ``(r, g, b)``) composites the input on it."""
HintsInput = Sequence[Hint | Mapping[str, Any] | str] | None
"""Colour hints for one image (:func:`colorization.inference.hints.coerce_hints`); None: automatic."""
MAX_ASPECT = 4
"""The working image's long side is at most ``MAX_ASPECT * size`` (panoramas get a shorter short side)."""
MAX_WORKING_SIZE = 2048
"""Largest accepted working size (short side, px); bounds the network's input."""
T = TypeVar("T")
PENDING_PIXELS = 64_000_000
"""Full-resolution pixels prepared ahead at most before a window is run (see :func:`windows`)."""



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

# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _check_pixels(height: int, width: int, max_pixels: int | None, name: str) -> None:
    if height < 1 or width < 1:
        raise image_io.EmptyImageError(f"{name}: image has no pixels ({width}x{height})")
    if max_pixels is not None and height * width > max_pixels:
        raise image_io.ImageTooLargeError(
            f"{name}: {width}x{height} = {height * width:,} pixels exceeds the limit of "
            f"{max_pixels:,} pixels (max_pixels)"
        )


def _array_to_rgb(
    arr: np.ndarray, max_pixels: int | None, background: tuple[int, int, int] | None = image_io.BACKGROUND
) -> tuple[np.ndarray, np.ndarray | None]:
    """numpy image -> ((H,W,3) uint8, or float32 in [0,1] for deeper inputs; the alpha of an
    (H,W,4) array when ``background`` is None (uint8, uint16 for uint16, uint8 for float), else None)."""
    name = f"numpy array {arr.shape} {arr.dtype}"
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise image_io.ImageError(f"{name}: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    _check_pixels(arr.shape[0], arr.shape[1], max_pixels, name)
    if arr.dtype == np.uint8:
        if arr.shape[2] == 3:
            return np.ascontiguousarray(arr), None
        if arr.shape[2] == 4 and background is None:
            return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3])
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise image_io.ImageError(f"{name}: contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise image_io.ImageError(f"{name}: float images must be in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        x = np.clip(x, 0.0, 1.0)
    else:
        raise image_io.ImageError(f"{name}: unsupported dtype (use uint8, uint16 or float in [0, 1])")
    kept = None
    if x.shape[2] == 4 and background is None:
        kept = arr[:, :, 3] if arr.dtype == np.uint16 else np.rint(x[:, :, 3] * 255).astype(np.uint8)
        x = x[:, :, :3]
    elif x.shape[2] == 4:  # composite on the background, like image_io.to_rgb does for RGBA
        alpha = x[:, :, 3:4]
        x = x[:, :, :3] * alpha + np.asarray(background, np.float32) / 255.0 * (1.0 - alpha)
    elif x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x, dtype=np.float32), None if kept is None else np.ascontiguousarray(kept)


def image_to_rgb_array(image: ImageInput, max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported input -> sRGB array ``(H, W, 3)``: uint8, or float32 in ``[0, 1]``.

    PIL images go through :func:`colorization.image_io.to_rgb` (every mode, transparency on white),
    paths and bytes through :func:`colorization.image_io.load_image` (EXIF orientation applied), numpy
    arrays (``HxW``, ``HxWx1/3/4``; uint8, uint16 or float in ``[0, 1]``) are converted directly,
    keeping 16-bit precision.

    Raises:
        colorization.image_io.ImageTooLargeError: more than ``max_pixels`` pixels.
        colorization.image_io.ImageError: unreadable input (the message names it).
        TypeError: an unsupported input type.
    """
    return decode_input(image, max_pixels, image_io.BACKGROUND)[0]


def decode_input(
    image: ImageInput, max_pixels: int | None, background: tuple[int, int, int] | None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(rgb, alpha, bits)``: the sRGB of any supported input as :func:`image_to_rgb_array` gives it,
    the (H, W) alpha (uint8, or uint16 for 16-bit inputs) when ``background`` is None and the input
    has transparency (else composited on ``background``), and 16 for 16-bit inputs (uint16 arrays,
    ``I;16`` images, 16-bit PNG/TIFF files: ``rgb`` is then float32), else 8."""
    if isinstance(image, Image.Image):
        _check_pixels(image.height, image.width, max_pixels, f"PIL image ({image.mode})")
        if background is None and image_io.has_alpha(image):
            rgba = image.convert("RGBA")
            return np.asarray(rgba.convert("RGB")), np.array(rgba.getchannel("A")), 8
        if image.mode.startswith("I;16"):
            gray = np.asarray(image).astype(np.float32) / 65535.0
            return np.repeat(gray[:, :, None], 3, axis=2), None, 16
        return np.asarray(image_io.to_rgb(image, background or image_io.BACKGROUND)), None, 8
    if isinstance(image, np.ndarray):
        rgb, alpha = _array_to_rgb(image, max_pixels, background)
        return rgb, alpha, 16 if image.dtype == np.uint16 else 8
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        src = bytes(image) if isinstance(image, bytearray) else image
        image = image_io.open_image(src, max_pixels=max_pixels, keep_alpha=background is None,
                                    background=background or image_io.BACKGROUND)
    if isinstance(image, image_io.LoadedImage):
        if image.deep is not None:
            return image.deep.astype(np.float32) / 65535.0, image.alpha, 16
        return np.asarray(image.image), image.alpha, 8
    raise TypeError(
        f"cannot colorize a {type(image).__name__}: pass a PIL image, a path, bytes or a numpy array"
    )


GRAY_SOURCE_MODES = ("1", "L", "LA", "La")
"""PIL modes of files whose pixels are gray levels (with or without transparency)."""


def known_gray(loaded: image_io.LoadedImage, background: tuple[int, int, int] | None) -> image_io.LoadedImage:
    """``loaded`` with its image as its ``"L"`` gray levels when they are known without looking at
    every pixel: an 8-bit gray file (:data:`GRAY_SOURCE_MODES`) whose transparency, if any, was
    kept (``alpha``) or composited on the neutral ``background`` it was opened with (None: white);
    ``loaded`` itself otherwise. :func:`prepare_image` then skips its R == G == B check (about 40 ms
    for a 12 MP photo)."""
    bg = background or image_io.BACKGROUND
    neutral = loaded.alpha is not None or bg[0] == bg[1] == bg[2]
    if loaded.deep is None and loaded.source_mode in GRAY_SOURCE_MODES and loaded.image.mode == "RGB" and neutral:
        return dataclasses.replace(loaded, image=loaded.image.getchannel(0))
    return loaded


def prepare_image(
    image: ImageInput,
    size: int = DEFAULT_WORKING_SIZE,
    stride: int = 1,
    max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
    hints: Sequence[Hint | Mapping[str, Any] | str] | None = None,
    background: Background = None,
) -> PreparedImage:
    """Decode/convert ``image`` and build the network input (CPU only; safe in DataLoader workers).

    Args:
        image: see :func:`image_to_rgb_array`.
        size: working short side in pixels. stride: network stride (pad multiple).
        max_pixels: pixel limit (None: unlimited).
        hints: colour points in the input image's pixel coordinates (see
            :func:`colorization.inference.hints.coerce_hints`); None or empty: automatic.
        background: see :data:`Background`; None (default, as in :class:`Colorizer`) keeps the alpha
            channel for the output, a colour composites on it. A :class:`colorization.image_io.LoadedImage`
            was opened with its own choice: its ``alpha`` is kept whatever this says.

    Raises:
        ValueError: a malformed hint, a point outside the image, or a bad ``background``.
    """
    points = coerce_hints(hints)
    bg = image_io.parse_background(background)
    alpha, bits = None, 8
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):  # opened here, as decode_input would
        src = bytes(image) if isinstance(image, bytearray) else image
        image = known_gray(image_io.open_image(src, max_pixels=max_pixels, keep_alpha=bg is None,
                                               background=bg or image_io.BACKGROUND), bg)
    gray = None
    if isinstance(image, image_io.LoadedImage) and image.deep is None:  # its gray levels, when it has them
        pil = image.image
        _check_pixels(pil.height, pil.width, max_pixels, f"image ({image.source_mode})")
        gray = np.asarray(pil) if pil.mode == "L" else pil_gray_levels(pil)
        alpha = image.alpha if gray is not None else None
    elif isinstance(image, Image.Image) and image.mode in ("L", "RGB") and not image_io.has_alpha(image):
        _check_pixels(image.height, image.width, max_pixels, f"PIL image ({image.mode})")
        gray = pil_gray_levels(image)
    if gray is not None:
        # the common case, an 8-bit grayscale image (also stored as RGB): no RGB array
        H, W = gray.shape
        l_full = gray_to_l(gray)
        del gray
    else:
        rgb, alpha, bits = decode_input(image, max_pixels, bg)
        H, W = rgb.shape[:2]
        l_full = full_res_l(rgb)
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
    return PreparedImage(l_full=l_full, l_work=l_work, work_hw=(h, w), hints=hint_work, alpha=alpha, bits=bits)


# --------------------------------------------------------------------------------------------
# Colorizer
# --------------------------------------------------------------------------------------------

def windows(items: Iterable[T], batch_size: int, pixels: Callable[[T], int]) -> Iterator[list[T]]:
    """Group a stream of prepared images into windows for :meth:`Colorizer.predict`.

    A window closes at ``4 * batch_size`` items or once its items' full-resolution pixels
    (``pixels(item)``) reach :data:`PENDING_PIXELS`, so memory stays bounded while images of equal
    working shape within a window share network calls. The last, partial window is yielded too.
    """
    window: list[T] = []
    total = 0
    for item in items:
        window.append(item)
        total += pixels(item)
        if len(window) >= 4 * batch_size or total >= PENDING_PIXELS:
            yield window
            window, total = [], 0
    if window:
        yield window
