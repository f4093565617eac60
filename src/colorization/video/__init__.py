"""Video colorization with temporally stable colours.

>>> from colorization.video import colorize_video
>>> colorize_video("film.mp4", "out/film.mp4")           # the shipped model, H.264 in MP4

>>> from colorization import Colorizer
>>> from colorization.video import VideoReader, colorize_frames
>>> with VideoReader("film.mkv") as reader:              # bring your own I/O: frames in, frames out
...     for rgb in colorize_frames(Colorizer.from_pretrained(), (y for y, _ in reader.frames())):
...         ...                                          # (H, W, 3) uint8

:mod:`colorization.video.io` decodes and encodes with PyAV, :mod:`colorization.video.stabilize`
carries chroma along optical flow, :mod:`colorization.video.hint_tracking` carries colour hints
through a shot, :mod:`colorization.video.pipeline` joins them to
:class:`colorization.Colorizer` (:mod:`colorization.evaluation.video_quality` measures temporal stability)
and :mod:`colorization.video.synthetic` makes clips with known colour and motion.
"""

from __future__ import annotations

from colorization._lazy import lazy_exports

# lazy, like the other sub-packages: ``colorization.video.formats`` (file names, output formats) is
# read by the CLI without loading PyAV or torch
_HOMES = {
    "formats": ("DEFAULT_VIDEO_FORMAT", "VIDEO_EXTENSIONS", "VIDEO_FORMATS", "VideoFormat", "is_video_path",
                "video_format"),
    "io": ("CorruptVideoError", "EmptyVideoError", "NotAVideoError", "UnsupportedVideoError", "VideoError",
           "VideoInfo", "VideoReader", "VideoTooLargeError", "VideoWriter", "open_writer"),
    "hint_tracking": ("HintWarning", "VideoHint"),
    "pipeline": ("FrameHints", "LateFrameError", "VideoResult", "colorize_frames", "colorize_video"),
    "stabilize": ("StabilizerConfig", "TemporalStabilizer"),
}
__getattr__, __dir__ = lazy_exports(__name__, {name: module for module, names in _HOMES.items() for name in names})

__all__ = [
    "DEFAULT_VIDEO_FORMAT",
    "VIDEO_EXTENSIONS",
    "VIDEO_FORMATS",
    "CorruptVideoError",
    "EmptyVideoError",
    "FrameHints",
    "HintWarning",
    "LateFrameError",
    "NotAVideoError",
    "StabilizerConfig",
    "TemporalStabilizer",
    "UnsupportedVideoError",
    "VideoError",
    "VideoFormat",
    "VideoHint",
    "VideoInfo",
    "VideoReader",
    "VideoResult",
    "VideoTooLargeError",
    "VideoWriter",
    "colorize_frames",
    "colorize_video",
    "is_video_path",
    "open_writer",
    "video_format",
]

