"""Writing images and files atomically: :func:`save_image` (PIL images, or ``uint8``/``uint16``
arrays: 16 bits per channel in PNG and TIFF) and :func:`encode_image`, and the atomic file helpers
that every writer in the package uses (:func:`atomic_path`, :func:`atomic_write_bytes`,
:func:`atomic_write_text`): a temporary file in the target folder renamed into place, so readers
never see a half-written file."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from PIL import Image

from colorization.image_io.files import IMAGE_EXTENSIONS
from colorization.image_io.formats import FORMAT_ALIASES, OUTPUT_FORMATS, pil_format_for_suffix, portable_exif
from colorization.image_io.read import to_rgb

if TYPE_CHECKING:  # numpy loads on first use
    import numpy as np

__all__ = ["save_image", "encode_image", "atomic_path", "atomic_write_bytes", "atomic_write_text"]


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
        name = FORMAT_ALIASES.get(format.lower(), format.lower())
        if name in OUTPUT_FORMATS:
            return OUTPUT_FORMATS[name].pil_format
        fmt = name.upper()
        if fmt not in Image.SAVE:
            Image.init()
        if fmt not in Image.SAVE:
            raise ValueError(f"{path}: PIL cannot write format {format!r}")
        return fmt
    ext = path.suffix.lower()
    fmt = pil_format_for_suffix(ext)
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
        portable = portable_exif(tags)  # a TIFF's layout tags would describe the source, not this file
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
