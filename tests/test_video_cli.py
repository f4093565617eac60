"""``colorize`` with videos: mixed folders, output names, --format, skip/--force, errors, --hint F:..."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_video import make_clip
from typer.testing import CliRunner

from colorization import cli
from colorization.video import VideoReader

runner = CliRunner()


@pytest.fixture()
def mixed(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    make_clip(root / "clip.mp4", n=8)
    make_clip(root / "sub" / "other.mkv", n=6, fmt="matroska", audio=None)
    Image.fromarray(np.full((20, 30), 90, np.uint8), "L").save(root / "photo.png")
    (root / "broken.avi").write_bytes(b"RIFF....AVI not really")
    (root / "notes.txt").write_text("left alone")
    return root


def test_folder_mixing_photos_and_videos(mixed, tmp_path, model_dir):
    out = tmp_path / "out"
    res = runner.invoke(cli.app, ["colorize", str(mixed), "-o", str(out), "--model", str(model_dir)])
    assert res.exit_code == 1, res.output  # the broken video fails, the others complete
    assert "3 colorized, 0 skipped, 1 failed, 1 not images (left alone)" in res.output
    assert "broken.avi: not a" in res.output
    assert (out / "photo.png").exists() and (out / "clip.mp4").exists() and (out / "sub" / "other.mp4").exists()
    assert not (out / "broken.mp4").exists()
    with VideoReader(out / "clip.mp4") as r:
        assert (r.info.width, r.info.height, len(list(r.frames()))) == (64, 48, 8)
    again = runner.invoke(cli.app, ["colorize", str(mixed / "clip.mp4"), "-o", str(out), "--model", str(model_dir)])
    assert again.exit_code == 0 and "0 colorized, 1 skipped, 0 failed" in again.output
    forced = runner.invoke(cli.app, ["colorize", str(mixed / "clip.mp4"), "-o", str(out), "--model", str(model_dir),
                                     "--force", "--format", "mkv", "--saturation", "0.5"])
    assert forced.exit_code == 0 and (out / "clip.mkv").exists()


def test_hint_on_a_video_frame(mixed, tmp_path, hint_model_dir, model_dir):
    clip = str(mixed / "clip.mp4")
    ok = runner.invoke(cli.app, ["colorize", clip, "-o", str(tmp_path / "h"), "--model", str(hint_model_dir),
                                 "--hint", "2:10,10,#ff0000", "--hint", "5,5,#00ff00"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli.app, ["colorize", clip, "-o", str(tmp_path / "h2"), "--model", str(hint_model_dir),
                                  "--hint", "x:10,10,#ff0000"])
    assert bad.exit_code == 2 and "frame before ':'" in bad.output
    several = runner.invoke(cli.app, ["colorize", str(mixed), "-o", str(tmp_path / "h3"), "--model",
                                      str(hint_model_dir), "--hint", "1,1,#ff0000"])
    assert several.exit_code == 2 and "one video" in several.output
    no_hints = runner.invoke(cli.app, ["colorize", clip, "-o", str(tmp_path / "h4"), "--model", str(model_dir),
                                       "--hint", "1,1,#ff0000"])
    assert no_hints.exit_code == 2 and "does not take colour" in no_hints.output



def test_video_hint_hold_field() -> None:
    import typer

    from colorization.commands.colorize import _video_hints
    from colorization.video import VideoHint

    video = [(Path("film.mp4"), None)]
    frames = _video_hints(["3:10,20,#ff0000,shot", "10,20,#00ff00", "3:1,2,0,0,255,track"], None, video, [])
    points = frames[Path("film.mp4")]
    assert sorted(points) == [0, 3]
    assert points[3][0] == VideoHint(10, 20, (255, 0, 0), hold="shot")
    assert getattr(points[0][0], "hold", "track") == "track" and points[0][0].rgb == (0, 255, 0)
    assert points[3][1].hold == "track" and points[3][1].rgb == (0, 0, 255)
    with pytest.raises(typer.BadParameter, match=r"'0:1,2,#ff0000,forever': hold must be one of"):
        _video_hints(["0:1,2,#ff0000,forever"], None, video, [])
    with pytest.raises(typer.BadParameter, match="#rrggbb"):
        _video_hints(["0:1,2,#ff00"], None, video, [])


def test_hints_file_with_videos(mixed, tmp_path, hint_model_dir, monkeypatch):
    """The points reach the video pipeline per frame (test_video.py shows they are carried forward)."""
    import json

    from colorization.video import pipeline

    seen: dict[str, dict] = {}
    real = pipeline.colorize_video

    def spy(src, dst, *args, **kw):
        seen[Path(src).name] = {k: [(h.x, h.y, h.rgb) for h in v] for k, v in (kw.get("hints") or {}).items()}
        return real(src, dst, *args, **kw)

    monkeypatch.setattr(pipeline, "colorize_video", spy)
    monkeypatch.setenv("COLUMNS", "400")  # one line per message
    model = ["--model", str(hint_model_dir)]
    by_frame = tmp_path / "frames.json"  # a folder of photos and videos: one video's points per frame
    by_frame.write_text(json.dumps({"clip.mp4": {"3": ["20,20,#ff0000"], "0": ["1,2,#00ff00"]},
                                    "photo.png": ["1,1,#0000ff"]}))
    res = runner.invoke(cli.app, ["colorize", str(mixed), "-o", str(tmp_path / "f"), *model, "--hints", str(by_frame)])
    assert res.exit_code == 1 and "3 colorized, 0 skipped, 1 failed" in res.output, res.output  # broken.avi
    assert seen["clip.mp4"] == {3: [(20, 20, (255, 0, 0))], 0: [(1, 2, (0, 255, 0))]} and seen["other.mkv"] == {}

    one = tmp_path / "list.json"  # a list of points for a single video: its frame 0
    one.write_text(json.dumps([{"x": 20, "y": 20, "color": "#ff0000"}]))
    res = runner.invoke(cli.app, ["colorize", str(mixed / "clip.mp4"), "-o", str(tmp_path / "l"), *model,
                                  "--hints", str(one)])
    assert res.exit_code == 0 and seen["clip.mp4"] == {0: [(20, 20, (255, 0, 0))]}, res.output

    for content, message in [
        ({"photo.png": {"0": ["1,1,#ff0000"]}}, "is a photo; points per frame index are for videos"),
        ({"clip.mp4": {"first": ["1,1,#ff0000"]}}, "'first' is not a frame index"),
        ({"clip.mp4": {"2": ["1,1"]}}, "frame 2: point 0"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(content))
        res = runner.invoke(cli.app, ["colorize", str(mixed), "-o", str(tmp_path / "bad"), *model, "--hints", str(bad)])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(cli.app, ["colorize", str(mixed), "-o", str(tmp_path / "bad"), *model, "--hints", str(one)])
    assert res.exit_code == 2 and "applies to one video" in res.output, res.output
    late = tmp_path / "late.json"
    late.write_text(json.dumps({"clip.mp4": {"20": ["1,1,#ff0000"]}}))
    res = runner.invoke(cli.app, ["colorize", str(mixed / "clip.mp4"), "-o", str(tmp_path / "late"), *model,
                                  "--hints", str(late)])
    assert res.exit_code == 1 and "hints for frame 20, but the video has 8 frames" in res.output, res.output
    assert not (tmp_path / "late" / "clip.mp4").exists()


def test_each_bad_video_is_reported_by_name_and_nothing_is_written(tmp_path, model_dir, monkeypatch):
    from test_video import _audio_only, _no_frames, _unknown_codec

    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "in"
    root.mkdir()
    make_clip(root / "good.mp4", n=6)
    make_clip(root / "whole.mp4", n=30)
    data = (root / "whole.mp4").read_bytes()
    (root / "whole.mp4").unlink()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    _no_frames(root / "empty.mkv")
    _audio_only(root / "sound.mp4")
    _unknown_codec(root / "codec.mkv")
    (root / "huge.y4m").write_bytes(b"YUV4MPEG2 W9000 H6000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(100))
    out = tmp_path / "out"
    res = runner.invoke(cli.app, ["colorize", str(root), "-o", str(out), "--model", str(model_dir)])
    assert res.exit_code == 1 and "1 colorized, 0 skipped, 5 failed" in res.output, res.output
    for name, reason in [
        ("cut.mp4", "truncated or damaged MP4/MOV"),
        ("empty.mkv", "the video stream holds no frame"),
        ("sound.mp4", "not a video (audio only)"),
        ("codec.mkv", "unsupported video codec"),
        ("huge.y4m", "9000x6000 = 54,000,000 pixels per frame exceeds"),
    ]:
        assert any(name in line and reason in line for line in res.output.splitlines()), (name, res.output)
    assert sorted(p.name for p in out.rglob("*")) == ["good.mp4"]  # nothing half-written, no temporary file
