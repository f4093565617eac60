"""Reading images: :func:`open_image` / :func:`load_image` give an upright 8-bit RGB PIL image
whatever the file held (grey, palette, alpha, CMYK, 16-bit, integer or float pixels), with the
alpha channel and the 16-bit pixels on request (:mod:`colorization.image_io.deep`); problems raise a
subclass of :class:`~colorization.image_io.errors.ImageError` that names the file."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from colorization.image_io.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
)
from colorization.image_io.formats import BACKGROUND, DEEP_FORMATS, EXIF_ORIENTATION, portable_exif

if TYPE_CHECKING:  # numpy loads on first use, so that the CLI's --help stays fast
    import numpy as np

__all__ = ["DEFAULT_MAX_PIXELS", "LoadedImage", "Source", "open_image", "load_image", "to_rgb", "has_alpha"]

DEFAULT_MAX_PIXELS = 50_000_000


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An opened image.

    Attributes:
        image: 8-bit ``"RGB"`` PIL image, EXIF orientation already applied; transparency composited
            on the background, or, when ``alpha`` is set, the straight (not composited) colour.
        format: the file's format as PIL names it (``"JPEG"``, ``"PNG"`` ...) or ``None``.
        exif: the file's EXIF block (bytes; without the orientation tag and, for a TIFF, without the
            tags of its own pixel layout) or ``None``.
        source_mode: the PIL mode of the file before conversion (``"L"``, ``"I;16"``, ``"CMYK"`` ...).
        alpha: with ``keep_alpha``, the upright alpha channel of an image that has one: ``(H, W)``
            ``uint8``, or ``uint16`` for a 16-bit file; None otherwise.
        deep: for a 16-bit PNG or TIFF, its upright colour at full precision: ``(H, W, 3)``
            ``uint16`` sRGB (gray repeated; composited like ``image`` unless ``alpha`` is set);
            None for 8-bit files.
    """

    image: Image.Image
    format: str | None
    exif: bytes | None
    source_mode: str
    alpha: np.ndarray | None = None
    deep: np.ndarray | None = None


Source = str | os.PathLike | bytes | bytearray | BinaryIO


def _describe(src: Source, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    return str(getattr(src, "name", "<stream>"))


def has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` has transparency (an alpha channel, or a transparent palette/colour entry)."""
    return img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        img.mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )


def _composite_on_white(img: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _array_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel integer/float array to 0..255 (float64), without clipping data."""
    import numpy as np

    arr = arr.astype(np.float64)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if mode.startswith("I;16"):
        return arr / 257.0  # full 16-bit range -> full 8-bit range
    if mode == "I":
        if lo >= 0 and hi <= 65535:
            return arr / 257.0  # 16-bit data stored as 32-bit integers
        return (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    if mode == "F":
        if lo >= 0 and hi <= 1.0:
            return arr * 255.0
        if lo >= 0 and hi <= 255.0:
            return arr
        if lo >= 0 and hi <= 65535.0:
            return arr / 257.0
        return (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    raise ValueError(mode)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit ``"RGB"``.

    * ``1``, ``L``, ``RGB``, ``YCbCr``, ``CMYK``: PIL's conversion (CMYK without colour management).
    * ``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa`` and ``P`` with transparency: composited on
      ``background`` (white).
    * ``I;16*`` (16-bit): divided by 257, so 0..65535 maps to 0..255 (no clipping).
    * ``I`` (32-bit integer): divided by 257 when the values fit 0..65535 (16-bit data), else
      min-max scaled to 0..255.
    * ``F`` (float): multiplied by 255 when in 0..1, kept when in 0..255, divided by 257 when in
      0..65535, else min-max scaled.

    Raises:
        CorruptImageError: for modes PIL cannot convert (the message names the mode and file).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if has_alpha(img):
        return _composite_on_white(img, background)
    if mode.startswith("I;16") or mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(img)
        if arr.ndim != 2:
            raise CorruptImageError(f"{_filename(img)}: unexpected pixel layout for mode {mode}")
        grey = np.clip(np.rint(_array_to_8bit(arr, mode)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise CorruptImageError(f"{_filename(img)}: cannot convert mode {mode} to RGB ({exc})") from exc


def _filename(img: Image.Image) -> str:
    return str(getattr(img, "filename", "") or "<image>")


def _read_head(fp: BinaryIO | str, n: int = 32) -> bytes:
    """First bytes of the source (for diagnosing files PIL does not recognise)."""
    try:
        if isinstance(fp, str):
            with open(fp, "rb") as fh:
                return fh.read(n)
        fp.seek(0)
        return fp.read(n)
    except (OSError, ValueError):
        return b"?"  # unknown, but not known to be empty


def _sniff(head: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """Recognise an image signature and, where cheap, the header's width and height."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) >= 24 and head[12:16] == b"IHDR":
            return "PNG", struct.unpack(">II", head[16:24])
        return "PNG", None
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", struct.unpack("<HH", head[6:10]) if len(head) >= 10 else None
    if head.startswith(b"BM"):
        if len(head) >= 26 and struct.unpack("<I", head[14:18])[0] >= 40:
            w, h = struct.unpack("<ii", head[18:26])
            return "BMP", (abs(w), abs(h))
        return "BMP", None
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", None
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF", None
    return None, None


def open_image(
    src: Source,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    *,
    name: str | None = None,
    keep_alpha: bool = False,
    background: tuple[int, int, int] = BACKGROUND,
) -> LoadedImage:
    """Open an image file, bytes or binary stream as 8-bit RGB (first frame of animations).

    Args:
        src: path, bytes, or a binary file object.
        max_pixels: refuse images with more pixels (width x height, read from the header before
            decoding); ``None`` leaves only PIL's own decompression-bomb limit.
        name: how to call the source in error messages (default: the path or ``<N bytes>``).
        keep_alpha: give an image with transparency its alpha channel (``LoadedImage.alpha``) and
            its straight colour; otherwise transparency is composited on ``background``.
        background: ``(r, g, b)`` that transparent pixels are composited on (default white).

    Returns:
        :class:`LoadedImage` (RGB image upright by EXIF orientation, format, EXIF, source mode;
        alpha and 16-bit pixels where asked for and present).

    Raises:
        FileNotFoundError / IsADirectoryError: for a missing path or a folder.
        EmptyImageError, NotAnImageError, CorruptImageError, ImageTooLargeError.
    """
    label = _describe(src, name)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"{label}: is a folder, not an image file")
        if not path.exists():
            raise FileNotFoundError(f"{label}: no such file")
        if path.stat().st_size == 0:
            raise EmptyImageError(f"{label}: file is empty (0 bytes)")
        fp: BinaryIO | str = str(path)
    elif isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise EmptyImageError(f"{label}: no data (0 bytes)")
        fp = io.BytesIO(bytes(src))
    elif hasattr(src, "read"):
        fp = src  # type: ignore[assignment]
    else:
        raise TypeError(f"cannot load an image from {type(src).__name__}")

    try:
        with warnings.catch_warnings():
            if max_pixels is not None:
                # our own limit is checked right below; PIL's softer warning would only be noise
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{label}: image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        head = _read_head(fp)
        if not head:
            raise EmptyImageError(f"{label}: no data (0 bytes)") from exc
        fmt_guess, size = _sniff(head)
        if size is not None and (size[0] == 0 or size[1] == 0):
            raise EmptyImageError(f"{label}: {fmt_guess} image has zero size ({size[0]}x{size[1]})") from exc
        if fmt_guess is not None:
            raise CorruptImageError(f"{label}: {fmt_guess} file with an unreadable header") from exc
        raise NotAnImageError(f"{label}: not a readable image (unknown format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(f"{label}: cannot read image header ({exc})") from exc

    try:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise EmptyImageError(f"{label}: image has zero size ({width}x{height})")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(
                f"{label}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                f"{max_pixels:,}"
            )
        source_mode = img.mode
        fmt = img.format
        from colorization.image_io import deep as image_deep  # lazy: numpy and OpenCV only when an image is read

        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            deep_source = fmt in DEEP_FORMATS and image_deep.is_16bit(img)
            img.load()
            exif = img.getexif()
            upright = ImageOps.exif_transpose(img)
            alpha = None
            if keep_alpha and has_alpha(upright):
                rgba = upright.convert("RGBA")
                alpha, rgb = image_deep.channel(rgba, "A"), rgba.convert("RGB")
            else:
                rgb = to_rgb(upright, background)
            if rgb is img:
                rgb = img.copy()
            deep = None
            if deep_source:
                deep, alpha = image_deep.deep_pixels(_read_all(fp), label, int(exif.get(EXIF_ORIENTATION, 1) or 1),
                                                     rgb.size, alpha, background)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{label}: image is too large to decode safely ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
            raise CorruptImageError(f"{label}: image data is truncated or corrupt ({exc})") from exc
        exif_bytes = portable_exif(exif, drop=(EXIF_ORIENTATION,))
        return LoadedImage(image=rgb, format=fmt, exif=exif_bytes, source_mode=source_mode, alpha=alpha, deep=deep)
    finally:
        img.close()


def _read_all(fp: BinaryIO | str) -> bytes:
    if isinstance(fp, str):
        with open(fp, "rb") as fh:
            return fh.read()
    fp.seek(0)
    return fp.read()


def load_image(
    src: Source, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, name: str | None = None
) -> Image.Image:
    """Open an image as an upright 8-bit ``"RGB"`` PIL image (see :func:`open_image`)."""
    return open_image(src, max_pixels, name=name).image
