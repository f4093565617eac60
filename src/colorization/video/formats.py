"""Video file names and output formats (no PyAV import: the CLI reads these to find videos)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VIDEO_EXTENSIONS", "VIDEO_FORMATS", "DEFAULT_VIDEO_FORMAT", "VideoFormat", "is_video_path", "video_format"]

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .vob .mxf .y4m".split()
)
"""File name endings treated as videos when searching folders (a file named directly is probed)."""


@dataclass(frozen=True)
class VideoFormat:
    """An output format: FFmpeg muxer, video encoder and the audio codecs it can carry unchanged
    (others are re-encoded to ``audio_codec``)."""

    extension: str
    muxer: str
    codec: str
    options: tuple[tuple[str, str], ...]
    audio_codec: str
    audio_copy: frozenset[str] | None  # None: any codec can be copied


_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"})
VIDEO_FORMATS: dict[str, VideoFormat] = {
    "mp4": VideoFormat(".mp4", "mp4", "libx264", (("crf", "18"), ("preset", "veryfast")), "aac", _MP4_AUDIO),
    "mov": VideoFormat(".mov", "mov", "libx264", (("crf", "18"), ("preset", "veryfast")), "aac",
                       _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be"}),
    "mkv": VideoFormat(".mkv", "matroska", "libx264", (("crf", "18"), ("preset", "veryfast")), "aac", None),
    "webm": VideoFormat(".webm", "webm", "libvpx-vp9", (("crf", "32"), ("b", "0"), ("deadline", "realtime"),
                        ("cpu-used", "8"), ("row-mt", "1")), "libopus", frozenset({"opus", "vorbis"})),
}
"""Output formats by name (``--format``): H.264 (CRF 18) in MP4, MOV or Matroska; VP9 in WebM."""
DEFAULT_VIDEO_FORMAT = "mp4"


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether a file name ends like a video (:data:`VIDEO_EXTENSIONS`, case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_format(name: str | None) -> VideoFormat:
    """The :data:`VIDEO_FORMATS` entry (None: MP4). Raises ValueError for an unknown name."""
    key = (name or DEFAULT_VIDEO_FORMAT).lower().lstrip(".")
    if key not in VIDEO_FORMATS:
        raise ValueError(f"unknown video format {name!r}; choose one of {', '.join(VIDEO_FORMATS)}")
    return VIDEO_FORMATS[key]


