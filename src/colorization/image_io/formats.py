"""The image formats the package writes by name, the formats that keep alpha and 16 bits, the
background colour of transparent pixels, and the EXIF tags carried from an input to its output
(:func:`portable_exif`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from PIL import Image, ImageColor

__all__ = ["OutputFormat", "OUTPUT_FORMATS", "FORMAT_ALIASES", "BACKGROUND", "ALPHA_FORMATS", "DEEP_FORMATS",
           "EXIF_ORIENTATION", "TIFF_LAYOUT_TAGS", "parse_background", "portable_exif", "pil_format_for_suffix"]


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
FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}

BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited on this colour (white) unless another is given."""
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
"""PIL formats whose files :func:`save_image` writes with an alpha channel (RGBA images or arrays)."""
DEEP_FORMATS = frozenset({"PNG", "TIFF"})
"""PIL formats :func:`save_image` writes at 16 bits per channel (``uint16`` arrays); others get 8."""

EXIF_ORIENTATION = 0x0112
TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284, 288, 289,
     290, 291, 292, 293, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 333, 334, 336, 338,
     339, 340, 341, 347, *range(512, 522), 529, 530, 531, 532, 34675}
)
"""TIFF tags that describe how a file's pixels are stored (size, samples, compression, strips,
photometric ..., ICC profile), not the photo: a TIFF's ``getexif()`` holds them beside the real
EXIF; copied into another file they would make it claim the source's layout."""


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


def portable_exif(exif: Image.Exif, drop: Collection[int] = ()) -> bytes | None:
    """``exif`` without :data:`TIFF_LAYOUT_TAGS` (and ``drop``) as bytes; None when nothing is left
    or it cannot be encoded (malformed EXIF is metadata only; the pixels are fine)."""
    for tag in [t for t in exif if t in TIFF_LAYOUT_TAGS or t in drop]:
        del exif[tag]
    if not len(exif):
        return None
    try:
        return exif.tobytes()
    except Exception:  # noqa: BLE001 - see the docstring
        return None


def pil_format_for_suffix(suffix: str) -> str | None:
    """PIL's format name for a file name ending (``".jpg"`` -> ``"JPEG"``), None when PIL knows none.

    Asks the plugins PIL loads first (BMP, GIF, JPEG, PNG, PPM) before loading all of them
    (``Image.registered_extensions``: ~30 ms, the start-up of a one-photo ``colorize``)."""
    ext = suffix.lower()
    Image.preinit()
    return Image.EXTENSION.get(ext) or Image.registered_extensions().get(ext)
