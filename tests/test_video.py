"""Video in, video out: streaming decode/encode, kept time stamps and audio, atomic output, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from colorization import Colorizer
from colorization.inference.hints import Hint
from colorization.video import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    UnsupportedVideoError,
    VideoReader,
    VideoTooLargeError,
    colorize_frames,
    colorize_video,
    is_video_path,
)


def make_clip(path: Path, n: int = 24, w: int = 64, h: int = 48, *, audio: str | None = "aac", vfr: bool = False,
              fmt: str | None = None) -> list[int]:
    """Write a tiny H.264 clip of a moving gradient (1 ms time base); returns the frame pts."""
    c = av.open(str(path), "w", format=fmt)
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = w, h, "yuv444p" if w % 2 or h % 2 else "yuv420p"
    s.codec_context.time_base = Fraction(1, 1000)
    a = None
    if audio:
        a = c.add_stream(audio, rate=16000)
        a.layout = "mono"
    stamps, pts = [], 0
    y, x = np.mgrid[0:h, 0:w]
    for i in range(n):
        g = ((x * 3 + y * 2 + i * 2) % 200 + 30).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.repeat(g[..., None], 3, 2), format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        stamps.append(pts)
        pts += (25 if i % 2 else 65) if vfr else 40
        c.mux(s.encode(frame))
    c.mux(s.encode(None))
    if a is not None:
        fmt_name = "s16" if audio.startswith("pcm") else "fltp"
        for k in range(n * 40 * 16 // 1024):
            samples = (np.sin(np.arange(1024) / 7) * 0.3).astype(np.float32)[None]
            if fmt_name == "s16":
                samples = (samples * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(samples, format=fmt_name, layout="mono")
            af.sample_rate, af.pts = 16000, k * 1024
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    c.close()
    return stamps


def read(path: Path) -> tuple[list[np.ndarray], list[float], VideoReader]:
    with VideoReader(path) as r:
        frames = list(r.frames())
    return [f for f, _ in frames], [float(p * r.time_base) for _, p in frames], r


def streams(path: Path) -> tuple[list[str], list[str]]:
    with av.open(str(path)) as c:
        return [s.codec_context.name for s in c.streams.video], [s.codec_context.name for s in c.streams.audio]


@pytest.fixture(scope="module")
def colorizer(model_dir):
    return Colorizer.from_pretrained(model_dir, device="cpu")


def test_round_trip_keeps_frames_size_time_and_audio(tmp_path, colorizer):
    src, dst = tmp_path / "clip.mp4", tmp_path / "out" / "clip.mp4"
    stamps = make_clip(src)
    res = colorize_video(src, dst, colorizer, progress=False)
    assert (res.frames, res.width, res.height) == (24, 64, 48) and res.fps > 0
    luma_in, t_in, _ = read(src)
    luma_out, t_out, r = read(dst)
    assert len(luma_out) == 24 and luma_out[0].shape == (48, 64)
    assert t_out == pytest.approx([p / 1000 for p in stamps])
    assert t_in == pytest.approx(t_out)
    assert streams(dst) == (["h264"], ["aac"])
    # the output's lightness is the input's (up to the codec's rounding)
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(luma_in, luma_out)]) < 3
    assert not list(dst.parent.glob(".*.tmp"))


def test_variable_frame_rate_and_other_formats(tmp_path, colorizer):
    src = tmp_path / "vfr.mkv"
    stamps = make_clip(src, n=12, vfr=True, fmt="matroska")
    for fmt, codec in (("mp4", "h264"), ("mkv", "h264"), ("webm", "vp9")):
        dst = tmp_path / f"out.{fmt}"
        colorize_video(src, dst, colorizer, format=fmt, progress=False)
        _, t_out, _ = read(dst)
        assert t_out == pytest.approx([p / 1000 for p in stamps], abs=1e-3), fmt
        assert streams(dst)[0] == [codec]
        assert streams(dst)[1] == ["opus" if fmt == "webm" else "aac"]


def test_pcm_audio_is_reencoded_for_mp4_and_odd_sizes_kept(tmp_path, colorizer):
    src, dst = tmp_path / "pcm.mkv", tmp_path / "pcm.mp4"
    make_clip(src, n=10, w=63, h=47, audio="pcm_s16le", fmt="matroska")
    colorize_video(src, dst, colorizer, progress=False)
    luma, _, r = read(dst)
    assert (len(luma), r.info.width, r.info.height) == (10, 63, 47)
    assert streams(dst)[1] == ["aac"]


def test_video_only_input(tmp_path, colorizer):
    src, dst = tmp_path / "mute.mp4", tmp_path / "mute_out.mp4"
    make_clip(src, n=6, audio=None)
    colorize_video(src, dst, colorizer, progress=False)
    assert streams(dst) == (["h264"], [])


def _silence(c: av.container.OutputContainer) -> None:
    """Add a mono AAC stream with 4 frames of silence to ``c``."""
    a = c.add_stream("aac", rate=16000)
    a.layout = "mono"
    for k in range(4):
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, k * 1024
        c.mux(a.encode(af))
    c.mux(a.encode(None))


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        _silence(c)


def _no_frames(path: Path) -> None:
    """A video stream without a frame beside an audio stream with samples."""
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        _silence(c)


def _unknown_codec(path: Path) -> None:
    """A Matroska clip whose codec ID is patched to one FFmpeg does not know (same length)."""
    make_clip(path, n=5, fmt="matroska", audio=None)
    data = path.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_UNKNOWNCODEC1"))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda p: p.write_bytes(b""), EmptyVideoError, "empty"),
        (_unknown_codec, UnsupportedVideoError, "unsupported video codec .a codec unknown to this FFmpeg build"),
        (lambda p: p.write_bytes(b"not a video at all, just text" * 20), NotAVideoError, "not a readable video"),
        (_audio_only, NotAVideoError, "audio only"),
        (_no_frames, EmptyVideoError, "no frame"),
    ],
    ids=["empty", "unsupported-codec", "text", "audio-only", "zero-frames"],
)
def test_bad_inputs_raise_and_write_nothing(tmp_path, colorizer, make, error, match):
    src, dst = tmp_path / "bad.mp4", tmp_path / "out" / "bad.mp4"
    make(src)
    with pytest.raises(error, match=match):
        colorize_video(src, dst, colorizer, progress=False)
    assert not dst.exists()
    assert not dst.parent.exists() or not list(dst.parent.iterdir())


def _faststart(src: Path, dst: Path) -> None:
    """Remux ``src`` into an MP4 whose index (moov) comes first, as streaming sites write them."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as o:
        outs = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is not None:
                packet.stream = outs[packet.stream.index]
                o.mux(packet)


@pytest.mark.parametrize(
    "kind, keep, match",
    [
        ("mkv", 1 / 3, "truncated video, its frames end at 0.[0-9]+ s of the 1.60 s it declares"),
        ("mkv", 0.75, "truncated video, its frames end at 1.[0-9]+ s of the 1.60 s it declares"),
        ("mp4", 0.5, "truncated or damaged MP4/MOV, its index .the moov box. is missing or cut"),
        ("mp4", 0.95, "truncated or damaged MP4/MOV, its index .the moov box. is missing or cut"),
        ("faststart", 0.6, "truncated video, [0-9]+ of the 40 frames it declares|damaged video, decoding failed"),
    ],
    ids=["mkv-third", "mkv-three-quarters", "mp4-half", "mp4-tail", "faststart-mp4"],
)
def test_truncated_file_leaves_the_old_output_untouched(tmp_path, colorizer, kind, keep, match):
    whole = tmp_path / f"whole.{'mkv' if kind == 'mkv' else 'mp4'}"
    make_clip(whole, n=40, fmt="matroska" if kind == "mkv" else None)
    if kind == "faststart":
        whole, plain = tmp_path / "fast.mp4", whole
        _faststart(plain, whole)
        with av.open(str(whole)) as c:
            assert c.streams.video[0].frames == 40
    data = whole.read_bytes()
    cut = tmp_path / f"cut{whole.suffix}"
    cut.write_bytes(data[: round(len(data) * keep)])
    dst = tmp_path / "out" / "cut.mp4"
    dst.parent.mkdir()
    dst.write_bytes(b"old")
    with pytest.raises(CorruptVideoError, match=match):
        colorize_video(cut, dst, colorizer, progress=False)
    assert dst.read_bytes() == b"old" and sorted(dst.parent.iterdir()) == [dst]  # no temporary file left
    colorize_video(whole, tmp_path / "whole_out.mp4", colorizer, progress=False)  # the whole file is fine


def test_enormous_frames_are_refused_before_decoding(tmp_path, colorizer):
    """A header declaring 9000x6000 frames (54 MP) with almost no data: refused on opening, by the
    frame size, before a frame is allocated or decoded."""
    src = tmp_path / "huge.y4m"
    src.write_bytes(b"YUV4MPEG2 W9000 H6000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    dst = tmp_path / "out" / "huge.mp4"
    with pytest.raises(VideoTooLargeError, match="9000x6000 = 54,000,000 pixels per frame exceeds the limit of 50,0"):
        colorize_video(src, dst, colorizer, progress=False)
    assert not dst.parent.exists()


def test_limits(tmp_path, model_dir):
    src = tmp_path / "clip.mp4"
    make_clip(src, n=10)
    small = Colorizer.from_pretrained(model_dir, device="cpu", max_pixels=1000)
    with pytest.raises(VideoTooLargeError, match="pixels per frame"):
        colorize_video(src, tmp_path / "o.mp4", small, progress=False)
    big = Colorizer.from_pretrained(model_dir, device="cpu")
    with pytest.raises(VideoTooLargeError, match="frames"):
        colorize_video(src, tmp_path / "o.mp4", big, max_frames=5, progress=False)
    with pytest.raises(VideoTooLargeError, match="s long"):
        colorize_video(src.read_bytes(), tmp_path / "o.mp4", big, max_duration=0.1, progress=False)
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(ValueError, match="unknown video format"):
        colorize_video(src, tmp_path / "o.avi", big, format="avi")


def test_colorize_frames_api(colorizer):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (30, 40), dtype=np.uint8) for _ in range(5)]
    out = list(colorize_frames(colorizer, frames, batch_size=2))
    assert len(out) == 5 and all(o.shape == (30, 40, 3) and o.dtype == np.uint8 for o in out)
    gray = list(colorize_frames(colorizer, iter(frames), saturation=0.0))
    assert all(np.abs(g.astype(int) - f[..., None]).max() <= 1 for g, f in zip(gray, frames))
    rgb = [np.repeat(f[..., None], 3, 2) for f in frames]  # colour frames work too (their colour is dropped)
    same = list(colorize_frames(colorizer, rgb, stabilize=False))
    plain = list(colorize_frames(colorizer, frames, stabilize=False))
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(same, plain))
    with pytest.raises(ValueError, match="saturation"):
        list(colorize_frames(colorizer, frames, saturation=3))
    with pytest.raises(ValueError, match="hints"):
        list(colorize_frames(colorizer, frames, hints={0: [Hint(1, 1, "#ff0000")]}))


def test_hints_are_carried_to_later_frames(hint_model_dir):
    c = Colorizer.from_pretrained(hint_model_dir, device="cpu")
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (80, 120)).astype(np.float32), (0, 0), 3)
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 200 + 30).astype(np.uint8)
    frames = [tex[10:58, 2 * i : 2 * i + 64].copy() for i in range(6)]  # a pan, 2 px per frame
    frames += [np.full((48, 64), 128, np.uint8)] * 2  # a cut to a flat shot: the point is lost
    hint = {0: [Hint(30, 20, "#ff0000")]}
    plain = list(colorize_frames(c, frames, stabilize=False))
    hinted = list(colorize_frames(c, frames, stabilize=False, hints=hint))
    changed = [int(np.abs(a.astype(int) - b).max()) for a, b in zip(plain, hinted)]
    # without the stabiliser, later frames change only because the point was tracked to them
    assert all(d > 0 for d in changed[:6]) and changed[6:] == [0, 0], changed
    # with it (the default), the hinted colour is also carried along the flow; the cut resets both
    plain = list(colorize_frames(c, frames))
    hinted = list(colorize_frames(c, frames, hints=hint))
    changed = [float(np.abs(a.astype(int) - b).mean()) for a, b in zip(plain, hinted)]
    assert all(d > 0.05 for d in changed[:6]) and changed[6:] == [0, 0], changed
    with pytest.raises(ValueError, match="outside"):
        list(colorize_frames(c, frames, hints={2: [Hint(64, 1, "#ff0000")]}))
    with pytest.raises(ValueError, match="hints for frame 8, but the video has 8 frames"):
        list(colorize_frames(c, frames, hints={8: [Hint(1, 1, "#ff0000")]}))


def test_is_video_path():
    assert is_video_path("a/B.MP4") and is_video_path("x.mkv") and not is_video_path("x.jpg")
