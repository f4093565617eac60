"""16-bit colour pixels, which Pillow reads as 8-bit and cannot write: decoding 16-bit PNG and TIFF
files with OpenCV, and encoding ``uint16`` arrays as 16-bit PNG (OpenCV, EXIF added as an ``eXIf``
chunk) and 16-bit TIFF (uncompressed, written here with Pillow's tag writer, EXIF included).

Arrays are ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (straight alpha), ``uint16``,
RGB order (OpenCV's BGR is swapped here). :mod:`colorization.image_io` is the way in and out:
:func:`is_16bit` and :func:`deep_pixels` serve its ``open_image``, :func:`encode_array` its
``save_image``.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, TiffImagePlugin

__all__ = ["decode_16bit", "orient", "encode_png16", "encode_tiff16", "is_16bit", "channel", "deep_pixels",
           "to_8bit", "encode_array"]

_EXIF_SUB_IFDS = (0x8769, 0x8825)  # the Exif and GPS sub-IFDs


def _swap_rb(arr: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A); gray unchanged."""
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return arr[:, :, [2, 1, 0, *([3] if arr.shape[2] == 4 else [])]]
    return arr


def decode_16bit(data: bytes) -> np.ndarray | None:
    """A 16-bit PNG or TIFF file's pixels: ``uint16`` (H, W) / (H, W, 3) / (H, W, 4), RGB order, as
    stored (EXIF orientation not applied); None when OpenCV cannot decode it or it is not 16-bit."""
    import cv2  # lazy: OpenCV only for 16-bit files

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        return None
    return np.ascontiguousarray(_swap_rb(arr))


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``arr`` (H, W[, C]) upright as EXIF ``orientation`` (1-8) says, as ``ImageOps.exif_transpose``."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation))
    return np.ascontiguousarray(op(arr)) if op else arr


def _check(arr: np.ndarray) -> None:
    if arr.dtype != np.uint16 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"expected a uint16 (H, W), (H, W, 3) or (H, W, 4) array, got {arr.dtype} {arr.shape}")


def encode_png16(arr: np.ndarray, exif: bytes | None = None) -> bytes:
    """``arr`` (uint16) as a 16-bit PNG file, with ``exif`` (EXIF bytes, ``Exif\\0\\0`` prefix
    optional) in an ``eXIf`` chunk after the header."""
    import cv2  # lazy: OpenCV only for 16-bit files

    _check(arr)
    ok, buf = cv2.imencode(".png", _swap_rb(arr))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape} 16-bit PNG")
    png = buf.tobytes()
    if not exif:
        return png
    body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def encode_tiff16(arr: np.ndarray, exif: bytes | None = None) -> bytes:
    """``arr`` (uint16) as an uncompressed 16-bit TIFF (one strip, little-endian; RGBA with
    unassociated alpha), ``exif``'s tags (EXIF bytes) in its IFD and Exif/GPS sub-IFDs."""
    _check(arr)
    height, width = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    pixels = np.ascontiguousarray(arr, dtype="<u2").tobytes()
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        for tag, value in tags.items():
            if tag not in _EXIF_SUB_IFDS:
                ifd[tag] = value
        for tag in _EXIF_SUB_IFDS:
            if tags.get_ifd(tag):
                ifd[tag] = tags.get_ifd(tag)
    layout = {256: width, 257: height, 258: (16,) * channels, 259: 1, 262: 2 if channels >= 3 else 1,
              277: channels, 278: height, 279: len(pixels), 284: 1}
    for tag, value in layout.items():
        ifd[tag] = value
    if channels == 4:
        ifd[338] = (2,)  # ExtraSamples: unassociated (straight) alpha
    ifd.tagtype[273] = ifd.tagtype[279] = 4  # LONG
    head = b"II*\x00" + struct.pack("<I", 8)
    # Pillow's writer moves StripOffsets past the IFD's out-of-line values itself: measure by how much
    ifd[273] = 0
    probe = head + ifd.tobytes(8)
    with Image.open(io.BytesIO(probe + pixels)) as img:
        shift = img.tag_v2[273]
    shift = shift[0] if isinstance(shift, tuple) else shift
    ifd[273] = len(probe) - int(shift)
    return head + ifd.tobytes(8) + pixels


def is_16bit(img: Image.Image) -> bool:
    """Whether PIL reads ``img`` (opened, not yet loaded) from 16-bit samples; for 16-bit colour
    it gives 8-bit ``RGB``/``RGBA``, so the file's own precision needs :func:`decode_16bit`."""
    if img.mode.startswith("I;16"):
        return True
    args = img.tile[0].args if img.tile else None
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return isinstance(rawmode, str) and ";16" in rawmode


def channel(img: Image.Image, band: str) -> np.ndarray:
    """One band of a PIL image as an (H, W) uint8 array (a copy)."""
    return np.array(img.getchannel(band), dtype=np.uint8)


def deep_pixels(
    data: bytes, label: str, orientation: int, size: tuple[int, int], alpha: np.ndarray | None,
    background: tuple[int, int, int],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A 16-bit file's upright colour ``(H, W, 3)`` uint16 (gray repeated) and alpha.

    ``alpha`` is the 8-bit alpha the caller kept, or None: with it, a 16-bit alpha channel replaces
    it and the colour stays straight; without it, the colour is composited on ``background``
    (``(r, g, b)``, 0-255). ``(None, alpha)`` with a warning when OpenCV cannot decode the file or
    disagrees with PIL on its size (the caller's 8-bit pixels are then used).
    """
    arr = decode_16bit(data)
    if arr is not None:
        arr = orient(arr, orientation)
    if arr is None or (arr.shape[1], arr.shape[0]) != tuple(size):
        warnings.warn(f"{label}: cannot read its 16-bit pixels; using 8 bits per channel", stacklevel=3)
        return None, alpha
    planes = arr.reshape(arr.shape[0], arr.shape[1], -1)
    if planes.shape[2] <= 2:  # gray, gray + alpha
        planes = np.concatenate([np.repeat(planes[..., :1], 3, axis=2), planes[..., 1:]], axis=2)
    rgb = np.ascontiguousarray(planes[..., :3])
    if planes.shape[2] == 3:
        return rgb, alpha
    a = np.ascontiguousarray(planes[..., 3])
    if alpha is not None:
        return rgb, a
    w = a[..., None].astype(np.float32) / 65535.0
    bg = np.asarray(background, np.float32) * 257.0
    return np.clip(np.rint(rgb * w + bg * (1.0 - w)), 0, 65535).astype(np.uint16), None


def to_8bit(arr: np.ndarray) -> np.ndarray:
    """``uint16`` -> ``uint8`` by the nearest level (``x / 257``); ``uint8`` unchanged."""
    if arr.dtype == np.uint8:
        return arr
    return np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)


def encode_array(arr: np.ndarray, fmt: str, exif: bytes | None) -> bytes | Image.Image:
    """``arr`` ((H, W), (H, W, 3) or (H, W, 4); uint8 or uint16) for PIL format ``fmt``: the encoded
    16-bit file for a uint16 array and PNG or TIFF, else a PIL image (8-bit; uint16 rounded) that
    the caller encodes as usual."""
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image array, got {arr.dtype}")
    if arr.dtype == np.uint16 and fmt == "PNG":
        return encode_png16(arr, exif)
    if arr.dtype == np.uint16 and fmt == "TIFF":
        return encode_tiff16(arr, exif)
    small = np.ascontiguousarray(to_8bit(arr))
    if not (small.ndim == 2 or (small.ndim == 3 and small.shape[2] in (3, 4))):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got {arr.shape}")
    return Image.fromarray(small, "L" if small.ndim == 2 else ("RGB" if small.shape[2] == 3 else "RGBA"))
