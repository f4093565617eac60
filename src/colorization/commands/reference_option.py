"""``--reference [F:]PHOTO`` and ``--reference-strength`` of ``colorize`` (and ``--reference`` of
``colorize-many``): parsing, the checks made before any input is read, and reading the photos.

One ``--reference PHOTO`` serves every photo and video given. For a single video, each
``--reference F:PHOTO`` (repeatable) starts PHOTO's shot at frame ``F``, or at ``T`` seconds with
``12.5s:PHOTO``. Every problem is a :class:`typer.BadParameter` (exit status 2) raised before any
input is read: a malformed start, per-shot references for photos or several inputs, a photo that is
missing, unreadable, gray or over the pixel limit, or a model without hint input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

__all__ = ["PANEL", "REFERENCE_HELP", "STRENGTH_HELP", "ReferenceSpec", "parse_references", "check_reference_inputs",
           "read_references"]

REFERENCE_HELP = (
    "A colour photo of the same scene or subject whose colours the inputs take where they match it "
    "(elsewhere, and when it does not fit, the colours stay automatic); one serves every input. For a "
    "single video, F:PHOTO (repeatable; 12.5s:PHOTO for a time) starts PHOTO's shot at frame F. "
    "Needs a hint-aware model (the shipped one is)."
)
PANEL = "Reference photo"
"""The help panel of the two options (their own table, so the long option name does not narrow
the description column of the others)."""
STRENGTH_HELP = (
    "How much of the reference photo to use: 0 = ignore it, 1 = the matches measured to be safe, lower = only "
    "the surest, up to 2 = less sure ones too."
)
_START = re.compile(r"^(\d+|\d+(\.\d*)?s)$")
_PARAM = "'--reference'"

ReferenceSpec = tuple[str | None, Path]
"""``(start, photo)``: start None (the whole input), a frame index ``"412"`` or a time ``"12.5s"``."""


def parse_references(values: list[str] | None) -> list[ReferenceSpec]:
    """``--reference`` values -> ``(start, photo)``. A value naming an existing file is a photo
    even if it holds a colon; otherwise ``F:`` or ``T s:`` before the first colon is a start.

    Raises:
        typer.BadParameter: several references of which one has no start, a start given twice, or a
            photo that does not exist.
    """
    specs: list[ReferenceSpec] = []
    for text in values or []:
        start, sep, rest = text.partition(":")
        if not Path(text).is_file() and sep and _START.match(start.strip()) and rest:
            spec: ReferenceSpec = (start.strip(), Path(rest))
        else:
            spec = (None, Path(text))
        if not spec[1].is_file():
            raise typer.BadParameter(f"{spec[1]}: no such photo", param_hint=_PARAM)
        specs.append(spec)
    if len(specs) > 1 and any(start is None for start, _ in specs):
        raise typer.BadParameter(
            "several references need a start each (F:PHOTO for frame F of a single video); one PHOTO alone "
            "serves every input", param_hint=_PARAM,
        )
    starts = [start for start, _ in specs]
    if len(set(starts)) != len(starts):
        raise typer.BadParameter("two references start at the same frame", param_hint=_PARAM)
    return specs


def check_reference_inputs(specs: list[ReferenceSpec], videos: list, images: list) -> None:
    """Per-shot references (with a start) apply to exactly one video and nothing else.

    Raises:
        typer.BadParameter: otherwise.
    """
    if any(start is not None for start, _ in specs) and (len(videos) != 1 or images):
        raise typer.BadParameter(
            f"F:PHOTO references apply to one video, but the arguments name {len(videos)} videos and "
            f"{len(images)} images; give one PHOTO (no start) for several inputs", param_hint=_PARAM,
        )


def read_references(colorizer: Any, specs: list[ReferenceSpec]) -> Any:
    """Read and encode the references once: None (none given), one encoded reference for every
    input, or ``{start: encoded reference}`` for a single video.

    Raises:
        typer.BadParameter: a model without hint input, or a photo that cannot be used (unreadable,
            gray, over the pixel limit), naming it.
    """
    if not specs:
        return None
    if not colorizer.accepts_hints:
        raise typer.BadParameter(
            f"the model {colorizer.model_name} does not take colour hints, through which a reference photo "
            "colours; use the shipped model or another hint-aware one", param_hint=_PARAM,
        )
    encoded = {}
    for start, photo in specs:
        try:
            encoded[start] = colorizer.encode_reference(photo, name=str(photo))
        except (ValueError, OSError) as exc:  # image_io errors, a gray photo
            message = str(exc) if str(photo) in str(exc) else f"{photo}: {exc}"
            raise typer.BadParameter(message, param_hint=_PARAM) from None
    if list(encoded) == [None]:
        return encoded[None]
    return {start if start.endswith("s") else int(start): ref for start, ref in encoded.items()}  # type: ignore[union-attr]
