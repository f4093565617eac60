"""``colorize --reference [F:]PHOTO`` and ``--reference-strength`` (issue #32), and
``colorize-many --reference``: one reference for a folder of photos, per-shot references for a
video, and the bad-input cases (exit status 2 before any input is read, nothing written)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_video import make_clip as write_clip
from typer.testing import CliRunner

from colorization import Colorizer, cli

skimage_data = pytest.importorskip("skimage.data")
runner = CliRunner()
SIDE = 96


def run(*args: str):
    return runner.invoke(cli.app, list(args), env={"COLUMNS": "400"})


def flat(text: str) -> str:
    return " ".join(text.replace("\u2502", " ").split())


def huge_png_header() -> bytes:
    """A PNG whose header declares 10000x10000 pixels (never decoded: refused from the header)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", 10000, 10000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reference_cli")
    cup = Image.fromarray(skimage_data.coffee()).convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    (folder / "album" / "sub").mkdir(parents=True)
    cup.convert("L").save(folder / "album" / "cup.png")
    cup.convert("L").resize((80, 64)).save(folder / "album" / "sub" / "cup_small.png")
    view = cup.crop((0, 0, 64, SIDE)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((80, 120))
    view.save(folder / "cup_ref.jpg", quality=95)
    cup.convert("L").convert("RGB").save(folder / "gray_ref.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "huge.png").write_bytes(huge_png_header())
    Image.fromarray(skimage_data.rocket()).convert("RGB").resize((SIDE, SIDE)).save(folder / "12:colon.png")
    return {p.name: p for p in folder.iterdir()}


def test_one_reference_serves_a_folder_like_the_api(files, tmp_path) -> None:
    out = tmp_path / "out"
    res = run("colorize", str(files["album"]), "-o", str(out), "--reference", str(files["cup_ref.jpg"]))
    assert res.exit_code == 0, res.output
    assert "2 colorized, 0 skipped, 0 failed" in res.output
    colorizer = Colorizer.from_pretrained(device="cpu")
    ref = colorizer.encode_reference(files["cup_ref.jpg"])
    for rel in ("cup.png", "sub/cup_small.png"):
        got = np.asarray(Image.open(out / rel).convert("RGB"), np.int16)
        expected = np.asarray(colorizer(files["album"] / rel, reference=ref), np.int16)
        assert np.abs(got - expected).max() <= 1, rel
    auto = tmp_path / "auto"
    assert run("colorize", str(files["album"]), "-o", str(auto)).exit_code == 0
    assert np.abs(np.asarray(Image.open(out / "cup.png"), np.int16)
                  - np.asarray(Image.open(auto / "cup.png"), np.int16)).mean() > 2
    off = tmp_path / "off"
    res = run("colorize", str(files["album"] / "cup.png"), "-o", str(off), "--reference", str(files["cup_ref.jpg"]),
              "--reference-strength", "0")
    assert res.exit_code == 0 and np.array_equal(np.asarray(Image.open(off / "cup.png")),
                                                 np.asarray(Image.open(auto / "cup.png")))


def test_a_photo_whose_name_holds_a_colon_is_a_photo(files, tmp_path) -> None:
    res = run("colorize", str(files["album"] / "cup.png"), "-o", str(tmp_path / "o"),
              "--reference", str(files["12:colon.png"]))
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--reference", "GRAY"], ["gray_ref.png", "gray"]),
        (["--reference", "BROKEN"], ["broken.jpg", "not a readable image"]),
        (["--reference", "HUGE"], ["huge.png", "100,000,000 pixels exceeds"]),
        (["--reference", "MISSING"], ["missing.jpg: no such photo"]),
        (["--reference", "3:REF"], ["F:PHOTO references apply to one video", "2 images"]),
        (["--reference", "REF", "--reference", "5:REF"], ["several references need a start"]),
        (["--reference", "REF", "--reference-strength", "2.5"], ["--reference-strength"]),
    ],
)
def test_bad_references_stop_before_any_input(files, tmp_path, args, needles) -> None:
    paths = {"GRAY": files["gray_ref.png"], "BROKEN": files["broken.jpg"], "HUGE": files["huge.png"],
             "MISSING": tmp_path / "missing.jpg", "REF": files["cup_ref.jpg"]}
    for key, path in paths.items():
        args = [a.replace(key, str(path)) for a in args]
    out = tmp_path / "out"
    res = run("colorize", str(files["album"]), "-o", str(out), *args)
    assert res.exit_code == 2, res.output
    for needle in needles:
        assert needle in flat(res.output), (needle, res.output)
    assert not out.exists()


def test_a_model_without_hints_refuses_a_reference(files, tmp_path, model_dir) -> None:
    res = run("colorize", str(files["album"]), "-o", str(tmp_path / "o"), "--model", str(model_dir),
              "--reference", str(files["cup_ref.jpg"]))
    assert res.exit_code == 2 and "does not take colour hints" in flat(res.output)


def test_per_shot_references_for_a_video(files, tmp_path) -> None:
    clip = tmp_path / "clip.mp4"
    write_clip(clip, n=8, w=64, h=48, audio=None)
    ok = run("colorize", str(clip), "-o", str(tmp_path / "v"), "--reference", f"0:{files['cup_ref.jpg']}",
             "--reference", f"0.2s:{files['12:colon.png']}")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "v" / "clip.mp4").exists()
    late = run("colorize", str(clip), "-o", str(tmp_path / "late"), "--reference", f"0:{files['cup_ref.jpg']}",
               "--reference", f"20:{files['cup_ref.jpg']}")
    assert late.exit_code == 1 and "frame 20, but the video has 8 frames" in flat(late.output)
    assert not (tmp_path / "late" / "clip.mp4").exists()


def test_colorize_many_takes_a_reference(files, tmp_path) -> None:
    out = tmp_path / "many"
    res = run("colorize-many", "--input", str(files["album"]), "-o", str(out), "--workers", "0",
              "--reference", str(files["cup_ref.jpg"]), "--device", "cpu")
    assert res.exit_code == 0, res.output
    single = tmp_path / "single"
    ref = str(files["cup_ref.jpg"])
    assert run("colorize", str(files["album"]), "-o", str(single), "--reference", ref).exit_code == 0
    for rel in ("cup.png", "sub/cup_small.png"):
        a, b = (np.asarray(Image.open(folder / rel), np.int16) for folder in (out, single))
        assert np.abs(a - b).max() <= 1
    bad = run("colorize-many", "--input", str(files["album"]), "-o", str(tmp_path / "bad"), "--workers", "0",
              "--reference", str(files["gray_ref.png"]))
    assert bad.exit_code == 2 and "gray" in flat(bad.output) and not (tmp_path / "bad").exists()
