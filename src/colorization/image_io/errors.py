"""The errors of image loading: one base class, :class:`ImageError` (a ``ValueError``) whose
message names the file, and a subclass per kind of problem."""

from __future__ import annotations

__all__ = ["ImageError", "NotAnImageError", "CorruptImageError", "EmptyImageError", "ImageTooLargeError"]


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
