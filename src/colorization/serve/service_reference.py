"""The ``reference`` upload and ``reference_strength`` field of the REST service's ``POST /colorize``:
their OpenAPI descriptions, and reading and checking the reference photo, kept out of
:mod:`colorization.serve.service`.

The reference is a second file part, bounded like the photo (bytes and pixels). Problems are a
:class:`ReferenceProblem` carrying the answer's status, machine-readable code and message:
413 ``reference_too_large``, 415 ``reference_not_an_image``, 422 ``invalid_reference`` (corrupt,
empty or gray), 422 ``reference_not_supported`` (a model without hint input).
"""

from __future__ import annotations

from typing import Any

from colorization import image_io
from colorization.inference.reference import STRENGTH_RANGE, GrayReferenceError
from colorization.serve.service_hints import accepts_hints

__all__ = [
    "REFERENCE_FIELD_DESCRIPTION",
    "VIDEO_REFERENCE_FIELD_DESCRIPTION",
    "STRENGTH_FIELD_DESCRIPTION",
    "ReferenceProblem",
    "accepts_reference",
    "read_reference",
]

_REFERENCE_TEXT = (
    "Optional colour photo of the same scene or subject (any framing, scale or size; bounded like the photo). "
    "Where the photo matches it with confidence it takes its colours; elsewhere, and wholly when it does not "
    "fit, the colours are the automatic ones. Only for a model that takes colour hints (/health reports "
    "accepts_reference)."
)
REFERENCE_FIELD_DESCRIPTION = (
    _REFERENCE_TEXT + " The answer's X-Reference-Used header says whether it fitted (true/false) and "
    "X-Reference-Match the share of the photo it matched."
)
VIDEO_REFERENCE_FIELD_DESCRIPTION = (
    "Optional colour photo of the same scene or subject (any framing, scale or size; bounded like a photo), for "
    "the whole video: each shot is matched against it at its first frame, and where a frame matches it with "
    "confidence it takes its colours, which then follow the motion; elsewhere, and in shots it does not fit, "
    "the colours are the automatic ones. Only for a model that takes colour hints (/health reports "
    "accepts_reference)."
)
STRENGTH_FIELD_DESCRIPTION = (
    f"How much of the reference photo to use, {STRENGTH_RANGE[0]:g} to {STRENGTH_RANGE[1]:g}: 0 ignores it, "
    "1 takes the colours of the matches measured to be safe, less only the surest, more also less sure ones."
)


class ReferenceProblem(Exception):
    """A reference that cannot be used: ``status``, ``code`` and ``detail`` of the error answer."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def accepts_reference(colorizer: Any) -> bool:
    """Whether a colorizer-like object takes reference photos (hint-aware, with ``encode_reference``
    and the pipeline steps ``prepare``, ``add_reference``, ``predict``, ``finish``)."""
    needed = ("encode_reference", "prepare", "add_reference", "predict", "finish")
    return accepts_hints(colorizer) and all(callable(getattr(colorizer, name, None)) for name in needed)


def read_reference(colorizer: Any, data: bytes, filename: str, max_pixels: int) -> Any:
    """Decode (at most ``max_pixels``) and encode an uploaded reference photo.

    Raises:
        ReferenceProblem: it cannot be read, is too large, or has no colour.
    """
    name = f"reference {filename}"
    try:
        loaded = image_io.open_image(data, max_pixels=max_pixels, name=name)
        return colorizer.encode_reference(loaded, name=name)
    except image_io.ImageTooLargeError as exc:
        raise ReferenceProblem(413, "reference_too_large", _named(exc, name)) from None
    except image_io.NotAnImageError as exc:
        raise ReferenceProblem(415, "reference_not_an_image", _named(exc, name)) from None
    except (image_io.ImageError, GrayReferenceError) as exc:
        raise ReferenceProblem(422, "invalid_reference", _named(exc, name)) from None


def _named(exc: Exception, name: str) -> str:
    text = str(exc) or type(exc).__name__
    return text if name in text else f"{name}: {text}"
