"""``colorize`` with videos: mixed folders, output names, --format, skip/--force, errors, --hint F:..."""

from __future__ import annotations

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
