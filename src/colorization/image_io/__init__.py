"""Robust image loading and atomic writing.

Every image that enters the package goes through :func:`load_image` / :func:`open_image`, which
return an 8-bit RGB :class:`PIL.Image.Image` whatever the file held (JPEG, PNG, WebP, TIFF, BMP,
GIF; grey, palette, alpha, CMYK, 16-bit, integer or float pixels), rotated upright by its EXIF
orientation. :func:`open_image` also gives, on request, the alpha channel (instead of compositing
on a background) and, for 16-bit PNG and TIFF files, the 16-bit pixels
(:mod:`colorization.image_io.deep`). Problems raise a subclass of :class:`ImageError` whose message
names the file.

Every image that leaves it goes through :func:`save_image` (PIL images, or ``uint8``/``uint16``
arrays: 16 bits per channel in PNG and TIFF), which writes a temporary file in the target folder
and renames it into place, so readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import struct
import tempfile
import warnings
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from colorization.image_io.files import IMAGE_EXTENSIONS, count_non_images, find_images

if TYPE_CHECKING:  # numpy and torch load on first use, so that the CLI's --help stays fast
    import numpy as np
    import torch

__all__ = [
    "atomic_path",
    "count_non_images",
    "atomic_write_bytes",
    "atomic_write_text",
    "ImageError",
    "NotAnImageError",
    "CorruptImageError",
    "EmptyImageError",
    "ImageTooLargeError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "OutputFormat",
    "OUTPUT_FORMATS",
    "LoadedImage",
    "load_image",
    "open_image",
    "to_rgb",
    "has_alpha",
    "parse_background",
    "ALPHA_FORMATS",
    "DEEP_FORMATS",
    "save_image",
    "encode_image",
    "find_images",
    "pil_to_tensor",
    "tensor_to_pil",
]

DEFAULT_MAX_PIXELS = 50_000_000


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """A format images are written in by name (``colorize --format``, the service's ``format``).

    Attributes:
        name: the name users give (``"png"``, ``"jpeg"``, ``"webp"``).
        pil_format: PIL's name for it. suffix: the file extension. media_type: the MIME type.
        save_options: keyword arguments :func:`save_image` gives PIL's writer.
    """

    name: str
    pil_format: str
    suffix: str
    media_type: str
    save_options: Mapping[str, object] = dataclasses.field(default_factory=dict)


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("png", "PNG", ".png", "image/png"),
        OutputFormat("jpeg", "JPEG", ".jpg", "image/jpeg", {"quality": 95, "subsampling": 0}),
        OutputFormat("webp", "WEBP", ".webp", "image/webp", {"quality": 95}),
    )
}
"""The output formats by name: the one table the CLI, the batch jobs and the service use."""
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}

BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited on this colour (white) unless another is given."""
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
"""PIL formats whose files :func:`save_image` writes with an alpha channel (RGBA images or arrays)."""
DEEP_FORMATS = frozenset({"PNG", "TIFF"})
"""PIL formats :func:`save_image` writes at 16 bits per channel (``uint16`` arrays); others get 8."""

_EXIF_ORIENTATION = 0x0112
_TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284, 288, 289,
     290, 291, 292, 293, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 333, 334, 336, 338,
     339, 340, 341, 347, *range(512, 522), 529, 530, 531, 532, 34675}
)
"""TIFF tags that describe how a file's pixels are stored (size, samples, compression, strips,
photometric ..., ICC profile), not the photo: a TIFF's ``getexif()`` holds them beside the real
EXIF; copied into another file they would make it claim the source's layout."""


class ImageError(ValueError):
    """Base class of image loading errors; the message names the file."""


class NotAnImageError(ImageError):
    """The data is not in any image format that can be read."""


class CorruptImageError(ImageError):
    """The file is an image but truncated or damaged, or its pixels cannot be converted."""


class EmptyImageError(ImageError):
    """The file is empty (0 bytes) or the image has zero width or height."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed (checked from the header, before decoding)."""


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


# --------------------------------------------------------------------------------------------
# Mode conversion
# --------------------------------------------------------------------------------------------


def parse_background(value: str | tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """A background colour: a CSS name (``"white"``) or ``"#rrggbb"`` / an ``(r, g, b)`` of 0-255
    integers -> ``(r, g, b)``; None stays None (keep transparency). ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value.strip())
        except ValueError:
            raise ValueError(f"background {value!r}: expected a colour name or #rrggbb") from None
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    rgb = tuple(value)
    if len(rgb) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"background {value!r}: expected (r, g, b) with integers 0-255")
    return rgb  # type: ignore[return-value]


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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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
                deep, alpha = image_deep.deep_pixels(_read_all(fp), label, int(exif.get(_EXIF_ORIENTATION, 1) or 1),
                                                     rgb.size, alpha, background)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{label}: image is too large to decode safely ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
            raise CorruptImageError(f"{label}: image data is truncated or corrupt ({exc})") from exc
        exif_bytes = _portable_exif(exif, drop=(_EXIF_ORIENTATION,))
        return LoadedImage(image=rgb, format=fmt, exif=exif_bytes, source_mode=source_mode, alpha=alpha, deep=deep)
    finally:
        img.close()


def _read_all(fp: BinaryIO | str) -> bytes:
    if isinstance(fp, str):
        with open(fp, "rb") as fh:
            return fh.read()
    fp.seek(0)
    return fp.read()


def _portable_exif(exif: Image.Exif, drop: Collection[int] = ()) -> bytes | None:
    """``exif`` without :data:`_TIFF_LAYOUT_TAGS` (and ``drop``) as bytes; None when nothing is left
    or it cannot be encoded (malformed EXIF is metadata only; the pixels are fine)."""
    for tag in [t for t in exif if t in _TIFF_LAYOUT_TAGS or t in drop]:
        del exif[tag]
    if not len(exif):
        return None
    try:
        return exif.tobytes()
    except Exception:  # noqa: BLE001 - see the docstring
        return None


def load_image(
    src: Source, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, name: str | None = None
) -> Image.Image:
    """Open an image as an upright 8-bit ``"RGB"`` PIL image (see :func:`open_image`)."""
    return open_image(src, max_pixels, name=name).image


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------

# modes each writer takes as they are; anything else is converted with to_rgb first
_SAVE_MODES: dict[str, frozenset[str]] = {
    "JPEG": frozenset({"RGB", "L", "CMYK"}),
    "PNG": frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
    "TIFF": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"}),
    "BMP": frozenset({"1", "L", "P", "RGB"}),
    "GIF": frozenset({"1", "L", "P", "RGB"}),
}
_EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})


def _format_for(path: Path, format: str | None) -> str:
    if format is not None:
        name = _FORMAT_ALIASES.get(format.lower(), format.lower())
        if name in OUTPUT_FORMATS:
            return OUTPUT_FORMATS[name].pil_format
        fmt = name.upper()
        if fmt not in Image.SAVE:
            Image.init()
        if fmt not in Image.SAVE:
            raise ValueError(f"{path}: PIL cannot write format {format!r}")
        return fmt
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(
            f"{path}: cannot tell the image format from extension {ext or '(none)'!r}; "
            f"use one of {sorted(IMAGE_EXTENSIONS)} or pass format="
        )
    return fmt


def _prepare_for_format(img: Image.Image, fmt: str) -> Image.Image:
    allowed = _SAVE_MODES.get(fmt)
    if allowed is None or img.mode in allowed:
        return img
    has_alpha = img.mode in ("LA", "PA", "La", "RGBa") or "transparency" in img.info
    if fmt in ("PNG", "WEBP", "TIFF") and has_alpha:
        return img.convert("RGBA")  # keep transparency where the format can store it
    if fmt == "WEBP" and img.mode in ("L", "1"):
        return img.convert("RGB")
    return to_rgb(img)  # e.g. RGBA -> JPEG composited on white, 16-bit -> 8-bit


def _write_encoded(
    fh: BinaryIO, img: Image.Image | np.ndarray, fmt: str, *, exif: bytes | Image.Exif | None, quality: int | None
) -> None:
    """Encode ``img`` (PIL image, or uint8/uint16 array: see :func:`save_image`) as PIL format
    ``fmt`` into ``fh`` with the format's save options."""
    portable = None
    if exif is not None and fmt in _EXIF_FORMATS:
        tags = Image.Exif()  # a copy: the caller's Exif stays as it is
        tags.load(exif.tobytes() if isinstance(exif, Image.Exif) else bytes(exif))
        portable = _portable_exif(tags)  # a TIFF's layout tags would describe the source, not this file
    if not isinstance(img, Image.Image):
        from colorization.image_io import deep as image_deep  # lazy: numpy

        encoded = image_deep.encode_array(img, fmt, portable)
        if isinstance(encoded, bytes):
            fh.write(encoded)
            return
        img = encoded
    out = _prepare_for_format(img, fmt)
    spec = next((f for f in OUTPUT_FORMATS.values() if f.pil_format == fmt), None)
    params: dict[str, object] = dict(spec.save_options) if spec else {}
    if quality is not None and "quality" in params:
        params["quality"] = int(quality)
        params["subsampling"] = 0 if quality >= 90 else 2
    if fmt != "JPEG" or out.mode != "RGB":
        params.pop("subsampling", None)
    if portable is not None:
        params["exif"] = portable
    out.save(fh, format=fmt, **params)


def encode_image(img: Image.Image, format: str, *, quality: int | None = None) -> bytes:
    """``img`` encoded in memory exactly as :func:`save_image` writes it to a file.

    Args:
        img: PIL image of any mode (converted as the format needs).
        format: a name of :data:`OUTPUT_FORMATS` ("jpg" too) or a PIL format name.
        quality: JPEG/WebP quality (default: the format's ``save_options``).

    Returns:
        The encoded file's bytes.
    """
    buf = io.BytesIO()
    _write_encoded(buf, img, _format_for(Path("image"), format), exif=None, quality=quality)
    return buf.getvalue()


def save_image(
    img: Image.Image | np.ndarray,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    format: str | None = None,
    exif: bytes | Image.Exif | None = None,
    quality: int | None = None,
) -> Path:
    """Write ``img`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    Args:
        img: PIL image of any mode; converted as the format needs (e.g. RGBA -> RGB composited on
            white for JPEG, 16-bit -> 8-bit for WebP). Or a numpy array (H, W), (H, W, 3) RGB or
            (H, W, 4) RGBA (straight alpha) of ``uint8``, or ``uint16``: written at 16 bits per
            channel in PNG and TIFF (:data:`DEEP_FORMATS`), rounded to 8 bits in other formats.
        path: target file; missing parent folders are created.
        overwrite: replace an existing file; otherwise an existing ``path`` raises
            ``FileExistsError`` (checked atomically where the filesystem supports hard links).
        format: a name of :data:`OUTPUT_FORMATS` ("jpg" too) or a PIL format name; default from
            the extension.
        exif: EXIF bytes (or ``PIL.Image.Exif``) to embed where the format supports it
            (JPEG, PNG, WebP, TIFF); ignored for other formats. TIFF layout tags in it (size,
            samples, compression, photometric ...: what a TIFF's ``getexif()`` holds besides the
            EXIF) are left out.
        quality: JPEG/WebP quality (default: the format's ``save_options``, 95).

    Returns:
        The written path.
    """
    target = Path(path).expanduser()
    fmt = _format_for(target, format)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: already exists (pass overwrite=True to replace it)")
    if target.is_dir():
        raise IsADirectoryError(f"{target}: is a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_encoded(fh, img, fmt, exif=exif, quality=quality)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails atomically if target appeared meanwhile
            except FileExistsError:
                raise FileExistsError(
                    f"{target}: already exists (pass overwrite=True to replace it)"
                ) from None
            except OSError:
                if target.exists():
                    raise FileExistsError(
                        f"{target}: already exists (pass overwrite=True to replace it)"
                    ) from None
                os.replace(tmp, target)  # filesystem without hard links
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode, converted with :func:`to_rgb`) -> float32 ``(3, H, W)`` in ``[0, 1]``."""
    import numpy as np
    import torch

    arr = np.asarray(to_rgb(img), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` (or ``(1, 3, H, W)``) tensor -> PIL ``"RGB"``.

    Float tensors are read as ``[0, 1]`` (clamped, rounded to the nearest 8-bit level); uint8
    tensors are taken as they are.
    """
    import torch

    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        arr = t
    elif t.is_floating_point():
        arr = (t.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    else:
        raise TypeError(f"expected a float or uint8 tensor, got {t.dtype}")
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy())


# ------------------------------------------------------------------------------------------------
# Atomic files (used by every writer in the package: checkpoints, training state, reports)
# ------------------------------------------------------------------------------------------------


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Whatever the body writes to the temporary path appears at ``path`` all at once (``os.replace``)
    with the usual permissions (``0o666`` less the umask), or not at all if the body raises, so a
    crash never leaves a half-written file behind. The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
