"""Tests of the ``colorize`` command (files, folders, globs, overwrite rule, formats, EXIF)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab
from typer.testing import CliRunner

from colorization import cli

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(x * 3 + y * 2 + rng.normal(0, 5, (h, w)), 0, 255).astype(np.uint8)


@pytest.fixture()
def photos(tmp_path) -> Path:
    """A folder with good, broken and non-image files, nested."""
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x013B] = "Ansel"  # Artist
    exif[0x0112] = 6  # orientation: stored sideways, shown rotated by 90 degrees
    Image.fromarray(_gray(20, 36, 1)).convert("RGB").save(root / "photo.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(_gray(33, 21, 2), "L").save(root / "a" / "gray.png")
    Image.fromarray(_gray(17, 40, 3)).convert("RGB").save(root / "a" / "b" / "deep.webp", lossless=True)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, not picked up by the folder scan")
    return root


def run(*args: str):
    return runner.invoke(cli.app, ["colorize", *args])


def test_folder_with_good_and_broken_files(photos, tmp_path, model_dir):
    out = tmp_path / "out"
    result = run(str(photos), "-o", str(out), "--model", str(model_dir))
    assert result.exit_code == 1, result.output
    assert "3 colorized, 0 skipped, 2 failed, 1 not images (left alone)" in result.output
    assert "broken.jpg" in result.output and "empty.png" in result.output
    # nested structure mirrored, names and formats kept, sizes equal (upright)
    expected = {"photo.jpg": ("JPEG", (20, 36)), "a/gray.png": ("PNG", (21, 33)), "a/b/deep.webp": ("WEBP", (40, 17))}
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(expected)
    for rel, (fmt, size) in expected.items():
        with Image.open(out / rel) as im:
            assert im.format == fmt and im.size == size and im.mode == "RGB"
    # EXIF kept, orientation dropped (the pixels are stored upright)
    with Image.open(out / "photo.jpg") as im:
        exif = im.getexif()
        assert exif.get(0x013B) == "Ansel"
        assert exif.get(0x0112, 1) == 1
    # lightness of the lossless (PNG) output equals the input's
    src = np.asarray(Image.open(photos / "a" / "gray.png").convert("RGB"), dtype=np.float64) / 255
    dst = np.asarray(Image.open(out / "a" / "gray.png"), dtype=np.float64) / 255
    assert np.abs(rgb2lab(src)[..., 0] - rgb2lab(dst)[..., 0]).max() < 1.0


def test_never_overwrites_without_force(photos, tmp_path, model_dir):
    out = tmp_path / "out"
    first = run(str(photos / "a"), "-o", str(out), "--model", str(model_dir))
    assert "2 colorized, 0 skipped, 1 failed" in first.output  # empty.png fails
    target = out / "gray.png"
    Image.new("RGB", (21, 33), (255, 0, 0)).save(target)  # a sentinel
    second = run(str(photos / "a"), "-o", str(out), "--model", str(model_dir))
    assert "0 colorized, 2 skipped, 1 failed" in second.output
    assert "gray.png" in second.output and "--force" in second.output
    assert Image.open(target).getpixel((0, 0)) == (255, 0, 0)  # untouched
    third = run(str(photos / "a"), "-o", str(out), "--model", str(model_dir), "--force")
    assert "2 colorized, 0 skipped, 1 failed" in third.output
    assert Image.open(target).getpixel((0, 0)) != (255, 0, 0)


def test_all_good_exits_zero_and_refuses_to_overwrite_inputs(photos, model_dir):
    good = photos / "a" / "b"
    result = run(str(good), "-o", str(good), "--model", str(model_dir), "--force")
    assert result.exit_code == 1
    assert "would overwrite the input" in result.output
    assert "0 colorized" in result.output
    ok = run(str(good / "deep.webp"), "-o", str(photos / "elsewhere"), "--model", str(model_dir))
    assert ok.exit_code == 0, ok.output
    assert "1 colorized, 0 skipped, 0 failed" in ok.output


def test_files_globs_format_and_compare(photos, tmp_path, model_dir):
    out = tmp_path / "out"
    pattern = str(photos / "a" / "**" / "*.webp")
    result = run(
        str(photos / "photo.jpg"), pattern, str(tmp_path / "missing.jpg"),
        "-o", str(out), "--model", str(model_dir), "--format", "png", "--compare", "--saturation", "1.5",
    )
    assert result.exit_code == 1  # the missing file
    assert "missing.jpg" in result.output and "2 colorized, 0 skipped, 1 failed" in result.output
    # a file given directly lands at the top; a glob mirrors below its wildcard-free prefix
    assert (out / "photo.png").is_file()
    assert (out / "b" / "deep.png").is_file()
    cmp = Image.open(out / "b" / "deep_compare.png")
    assert cmp.size == (80, 17)
    left = np.asarray(cmp)[:, :40].astype(int)
    right = np.asarray(cmp)[:, 40:]
    assert (left.max(-1) - left.min(-1)).max() <= 1  # gray half
    assert np.array_equal(right, np.asarray(Image.open(out / "b" / "deep.png")))


def test_no_images_found(tmp_path, model_dir):
    (tmp_path / "empty").mkdir()
    result = run(str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--model", str(model_dir))
    assert result.exit_code == 1
    assert "no images or videos found" in result.output


def test_bad_model_is_a_clear_error(photos, tmp_path):
    result = run(str(photos / "photo.jpg"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "cannot load the model" in result.output


def test_readme_first_command(tmp_path, monkeypatch):
    """`colorize examples/astronaut_gray.jpg -o colorized/` with the shipped default model, through
    the `colorize` console-script entry point."""
    monkeypatch.chdir(tmp_path)
    example = REPO / "examples" / "astronaut_gray.jpg"
    monkeypatch.setattr(sys, "argv", ["colorize", str(example), "-o", "colorized/", "--device", "cpu"])
    with pytest.raises(SystemExit) as exit_info:
        cli.colorize_app()
    assert exit_info.value.code in (0, None)
    out = tmp_path / "colorized" / "astronaut_gray.jpg"
    with Image.open(out) as im, Image.open(example) as src:
        assert im.size == src.size and im.mode == "RGB" and im.format == "JPEG"


def test_precision_option(photos, tmp_path, model_dir):
    """``--precision bf16`` runs (bf16 autocast on CPU); an unknown precision is rejected by name."""
    src = photos / "a" / "gray.png"
    ok = run(str(src), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--device", "cpu",
             "--precision", "bf16", "--no-compile")
    assert ok.exit_code == 0, ok.output
    with Image.open(tmp_path / "out" / "gray.png") as im, Image.open(src) as orig:
        assert im.size == orig.size and im.mode == "RGB"
    bad = run(str(src), "-o", str(tmp_path / "out2"), "--model", str(model_dir), "--precision", "fp64")
    assert bad.exit_code == 2 and "precision" in bad.output
    onnx = run(str(src), "-o", str(tmp_path / "out3"), "--model", str(model_dir), "--backend", "onnx",
               "--precision", "bf16")
    assert onnx.exit_code == 2 and "torch backend only" in onnx.output


@pytest.mark.parametrize(
    "argv", [["colorize", "--help"], ["train", "--help"], ["serve", "--help"], ["evaluate", "--help"]]
)
def test_help_renders_cleanly(argv, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    result = runner.invoke(cli.app, argv)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<bool>" not in text and "{" + "paths}" not in text and "<list" not in text
    if argv[0] == "colorize":
        assert "PATHS..." in text
        flat = " ".join(text.replace("\u2502", " ").split())  # undo rich's wrapping inside the box
        assert "the shipped model: 128" in flat


def test_cli_saturation_limit_is_the_api_rule(photos, tmp_path, model_dir):
    from colorization.inference.colorizer import SATURATION_RANGE

    result = run(str(photos / "photo.jpg"), "-o", str(tmp_path / "o"), "--model", str(model_dir),
                 "--saturation", str(SATURATION_RANGE[1] + 0.5))
    assert result.exit_code == 2 and "saturation" in result.output
    ok = run(str(photos / "photo.jpg"), "-o", str(tmp_path / "o"), "--model", str(model_dir),
             "--saturation", str(SATURATION_RANGE[1]))
    assert ok.exit_code == 0, ok.output


def test_output_folder_inside_the_input_is_not_walked_again(photos, model_dir):
    """#22: a second run took the first run's outputs (and comparisons) for inputs."""
    args = (str(photos / "a"), "-o", str(photos / "a" / "out"), "--model", str(model_dir), "--compare")
    first = run(*args)
    assert "2 colorized, 0 skipped, 1 failed" in first.output  # empty.png fails
    second = run(*args)
    assert "0 colorized, 2 skipped, 1 failed" in second.output, second.output
    written = sorted(str(p.relative_to(photos / "a" / "out")) for p in (photos / "a" / "out").rglob("*"))
    assert written == ["b", "b/deep.webp", "b/deep_compare.webp", "gray.png", "gray_compare.png"]
    # a glob over the input folder leaves it out too; the count of other files as well
    (photos / "a" / "out" / "notes.txt").write_text("beside the outputs")
    third = run(str(photos / "a" / "**" / "*.png"), "-o", str(photos / "a" / "out"), "--model", str(model_dir))
    assert "0 colorized, 1 skipped, 1 failed" in third.output, third.output
    fourth = run(str(photos), "-o", str(photos / "a" / "out"), "--model", str(model_dir))
    assert "3 colorized, 0 skipped, 2 failed, 1 not images (left alone)" in fourth.output, fourth.output


def test_output_naming_an_existing_file_is_a_usage_error(photos, model_dir):
    """#22: -o naming a file printed "skipped ... exists" and exited 0 with nothing written."""
    target = photos / "photo.jpg"
    before = target.read_bytes()
    result = run(str(photos / "a" / "gray.png"), "-o", str(target), "--model", str(model_dir))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the usage-error box wraps lines
    assert "exists and is not a folder" in text and "skipped" not in text and "Usage:" in text
    assert target.read_bytes() == before
    many = runner.invoke(cli.app, ["colorize-many", "--input", str(photos / "a"), "-o", str(target)])
    assert many.exit_code == 2 and "exists and is not a folder" in " ".join(many.output.replace("│", " ").split())
