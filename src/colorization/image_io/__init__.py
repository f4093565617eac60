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

==============================  ===============================================================
:mod:`~.errors`                 :class:`ImageError` and its subclasses
:mod:`~.formats`                output formats by name, the formats that keep alpha and 16 bits,
                                the background colour, the EXIF tags carried over
:mod:`~.read`                   :func:`open_image`, :func:`load_image`, :func:`to_rgb`
:mod:`~.write`                  :func:`save_image`, :func:`encode_image`, atomic file writes
:mod:`~.tensors`                PIL images to and from float tensors
:mod:`~.files`                  finding image files in folders and glob patterns
:mod:`~.deep`                   16-bit PNG and TIFF pixels (OpenCV)
==============================  ===============================================================
"""

from __future__ import annotations

from colorization.image_io.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
)
from colorization.image_io.files import IMAGE_EXTENSIONS, count_non_images, find_images
from colorization.image_io.formats import (
    ALPHA_FORMATS,
    BACKGROUND,
    DEEP_FORMATS,
    OUTPUT_FORMATS,
    OutputFormat,
    parse_background,
    pil_format_for_suffix,
)
from colorization.image_io.read import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    Source,
    has_alpha,
    load_image,
    open_image,
    to_rgb,
)
from colorization.image_io.tensors import pil_to_tensor, tensor_to_pil
from colorization.image_io.write import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    encode_image,
    save_image,
)

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
    "Source",
    "load_image",
    "open_image",
    "to_rgb",
    "has_alpha",
    "parse_background",
    "pil_format_for_suffix",
    "ALPHA_FORMATS",
    "BACKGROUND",
    "DEEP_FORMATS",
    "save_image",
    "encode_image",
    "find_images",
    "pil_to_tensor",
    "tensor_to_pil",
]
