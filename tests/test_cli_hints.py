"""Colour hints on the command line: ``colorize --hint`` and ``--hints FILE`` (issue #14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from colorization import cli
from colorization.batch.hint_files import MAX_HINTS_FILE_BYTES
from colorization.inference.hints import MAX_HINTS

runner = CliRunner()


def _save_gray(path: Path, w: int, h: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.clip(60 + x * 2 + y + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").save(path)
    return path


@pytest.fixture()
def album(tmp_path) -> Path:
    """in/a.png (48x40), in/sub/b.png (40x32), in/sub/c.png (40x32); lossless, so outputs compare."""
    root = tmp_path / "in"
    _save_gray(root / "a.png", 48, 40, 0)
    _save_gray(root / "sub" / "b.png", 40, 32, 1)
    _save_gray(root / "sub" / "c.png", 40, 32, 2)
    return root


def run(*args: str):
    # wide, so that rich does not wrap error messages inside its box
    return runner.invoke(cli.app, ["colorize", *args], env={"COLUMNS": "400"})


def flat(text: str) -> str:
    return " ".join(text.replace("\u2502", " ").split())


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_hint_options_change_the_output_and_agree_with_a_list_file(album, tmp_path, hint_model_dir):
    src = str(album / "a.png")
    base = ("--model", str(hint_model_dir), "--device", "cpu")
    auto = run(src, "-o", str(tmp_path / "auto"), *base)
    assert auto.exit_code == 0, auto.output
    # '#' after a comma (no shell involved here) and the R,G,B form
    hinted = run(src, "-o", str(tmp_path / "hinted"), *base, "--hint", "10,12,#d02020", "--hint", "30.5,20,20,200,20")
    assert hinted.exit_code == 0, hinted.output
    assert "1 colorized, 0 skipped, 0 failed" in hinted.output
    a, h = pixels(tmp_path / "auto" / "a.png"), pixels(tmp_path / "hinted" / "a.png")
    assert a.shape == h.shape == (40, 48, 3)
    assert np.abs(a - h).max() > 0
    # the same points from a JSON list (both point forms) give the same image
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"x": 10, "y": 12, "color": "#d02020"}, "30.5,20,20,200,20"]))
    listed = run(src, "-o", str(tmp_path / "listed"), *base, "--hints", str(points))
    assert listed.exit_code == 0, listed.output
    assert np.array_equal(pixels(tmp_path / "listed" / "a.png"), h)


def test_hints_file_maps_names_to_the_right_files(album, tmp_path, hint_model_dir):
    base = ("--model", str(hint_model_dir), "--device", "cpu")
    auto = run(str(album), "-o", str(tmp_path / "auto"), *base)
    assert auto.exit_code == 0, auto.output
    mapping = tmp_path / "hints.json"
    mapping.write_text(json.dumps({
        "a.png": ["5,5,#2040e0", {"x": 40, "y": 30, "color": [230, 200, 20]}],  # relative to the folder
        "b.png": [{"x": 20, "y": 16, "color": "#20c040"}],  # base name of sub/b.png
        "sub/c.png": [],  # no points: automatic
    }))
    hinted = run(str(album), "-o", str(tmp_path / "hinted"), *base, "--hints", str(mapping))
    assert hinted.exit_code == 0, hinted.output
    assert "3 colorized, 0 skipped, 0 failed" in hinted.output
    for rel, changed in (("a.png", True), ("sub/b.png", True), ("sub/c.png", False)):
        diff = np.abs(pixels(tmp_path / "auto" / rel) - pixels(tmp_path / "hinted" / rel)).max()
        assert (diff > 0) == changed, rel


def test_a_point_outside_one_image_fails_that_file_only(album, tmp_path, hint_model_dir):
    mapping = tmp_path / "hints.json"
    mapping.write_text(json.dumps({"a.png": ["47,39,#ff0000"], "sub/b.png": ["45,10,#ff0000"]}))  # b is 40 wide
    out = tmp_path / "out"
    result = run(str(album), "-o", str(out), "--model", str(hint_model_dir), "--device", "cpu", "--hints", str(mapping))
    assert result.exit_code == 1, result.output
    text = flat(result.output)
    assert "2 colorized, 0 skipped, 1 failed" in text
    assert f"failed: {album / 'sub' / 'b.png'}: hint at (45, 10) lies outside the 40x32 image" in text
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a.png", "sub/c.png"]


def _write(tmp_path: Path, content: str | bytes) -> str:
    path = tmp_path / "hints.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{\"a.png\": [\"1,2,#ff0000\",]}", "not valid JSON: Expecting value (line 1, column 26)"),
        ('{"a.png": ["1,2,#ff0000"], "sub/b.png": ["3,4,#00ff00", "5,6,red"]}',
         "'sub/b.png': point 1 \"5,6,red\": hint '5,6,red': hint colour 'red' is not '#rrggbb'"),
        ('{"a.png": [{"x": 1, "y": 2}]}', "'a.png': point 0 {\"x\": 1, \"y\": 2}: needs exactly the keys x, y, color"),
        ('{"a.png": "1,2,#ff0000"}', "'a.png': expected a list of points, got a string"),
        ('{"missing.png": ["1,2,#ff0000"]}', "'missing.png' names none of the input images"),
        ('{"a.png": [], "./a.png": []}', "'a.png' and './a.png' are the same file name"),
        ('{"a.png": [], "a.png": []}', "the name 'a.png' appears twice"),
        ('{"sub/b.png": [], "b.png": []}', "'sub/b.png' and 'b.png' both name"),
        ('"1,2,#ff0000"', "expected a list of points or an object mapping file names"),
        ('["1,2,#ff0000"]', "a list of points applies to one image, but the arguments name 3 images"),
        ("{\"a.png\": [" + ",".join(['"1,1,#000000"'] * (MAX_HINTS + 1)) + "]}", f"at most {MAX_HINTS} per image"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b" " * (MAX_HINTS_FILE_BYTES + 1), "at most 1,048,576 (1 MiB)"),
    ],
)
def test_bad_hints_files_stop_before_any_work(album, tmp_path, model_dir, content, message):
    path = _write(tmp_path, content)
    out = tmp_path / "out"
    result = run(str(album), "-o", str(out), "--model", str(model_dir), "--hints", path)
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "Invalid value for '--hints'" in text and path in text
    assert message in text
    assert not out.exists()


def test_ambiguous_base_name(tmp_path, model_dir):
    root = tmp_path / "in"
    _save_gray(root / "x" / "p.png", 20, 20, 0)
    _save_gray(root / "y" / "p.png", 20, 20, 1)
    path = _write(tmp_path, '{"p.png": ["1,1,#ff0000"]}')
    result = run(str(root), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--hints", path)
    assert result.exit_code == 2
    assert "'p.png' matches several input images" in flat(result.output)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hint", "1,2,red"], "Invalid value for '--hint': hint '1,2,red': hint colour 'red' is not '#rrggbb'"),
        (["--hint", "1,2"], "expected 'X,Y,#rrggbb' or 'X,Y,R,G,B'"),
        (["--hint", "1,2,#ff0000", "--hints", "h.json"], "give --hint or --hints, not both"),
    ],
)
def test_bad_hint_option(album, tmp_path, model_dir, extra, message):
    result = run(str(album / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model_dir), *extra)
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)


def test_hint_option_needs_a_single_image(album, tmp_path, hint_model_dir):
    args = ("-o", str(tmp_path / "out"), "--model", str(hint_model_dir))
    result = run(str(album / "sub"), *args, "--hint", "1,2,#ff0000")
    assert result.exit_code == 2
    assert "the --hint points apply to one image, but the arguments name 2 images" in flat(result.output)
    # one image found in a folder is fine; the '#' is optional
    (album / "sub" / "c.png").unlink()
    ok = run(str(album / "sub"), *args, "--hint", "1,2,ff0000")
    assert ok.exit_code == 0, ok.output


def test_a_model_without_hint_input_is_refused_before_any_image(album, tmp_path, model_dir):
    out = tmp_path / "out"
    result = run(str(album / "a.png"), "-o", str(out), "--model", str(model_dir), "--hint", "1,2,#ff0000")
    assert result.exit_code == 2
    text = flat(result.output)
    assert "Invalid value for '--hint'" in text and "does not take colour hints" in text
    assert not list(out.rglob("*.png"))
    # empty lists ask for nothing, so any model will do
    path = _write(tmp_path, '{"a.png": []}')
    ok = run(str(album / "a.png"), "-o", str(out), "--model", str(model_dir), "--hints", path)
    assert ok.exit_code == 0, ok.output


def test_help_lists_the_hint_options(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(cli.app, ["colorize", "--help"])
    assert result.exit_code == 0
    text = flat(result.output)
    assert "--hint X,Y,COLOR" in text and "--hints FILE" in text and "zsh" in text


# --- colorize-many --hints ------------------------------------------------------------------


def many(*args: str):
    return runner.invoke(cli.app, ["colorize-many", "--workers", "0", "--device", "cpu", *args], env={"COLUMNS": "400"})


def test_colorize_many_hints_file(album, tmp_path, hint_model_dir):
    from colorization.batch.distributed import STATE_DIR

    auto = many("--input", str(album), "-o", str(tmp_path / "auto"), "--model", str(hint_model_dir))
    assert auto.exit_code == 0, auto.output
    mapping = tmp_path / "hints.json"
    mapping.write_text(json.dumps({"sub/b.png": ["20,16,#20c040"], "c.png": ["45,1,#ff0000"]}))  # c is 40 wide
    out = tmp_path / "hinted"
    result = many("--input", str(album), "-o", str(out), "--model", str(hint_model_dir), "--hints", str(mapping))
    assert result.exit_code == 0, result.output
    assert "2 colorized, 0 skipped, 1 failed" in result.output
    summary = json.loads((out / STATE_DIR / "summary.json").read_text())
    c = album / "sub" / "c.png"
    assert summary["failures"] == [[str(c), f"{c}: hint at (45, 1) lies outside the 40x32 image"]]
    assert summary["config"]["hints_file"] == str(mapping)
    assert np.array_equal(pixels(tmp_path / "auto" / "a.png"), pixels(out / "a.png"))
    assert np.abs(pixels(tmp_path / "auto" / "sub" / "b.png") - pixels(out / "sub" / "b.png")).max() > 0


@pytest.mark.parametrize(
    "content, use_plain_model, message",
    [
        ('["1,1,#ff0000"]', False, "colorize-many needs an object mapping file names to lists of points"),
        ('{"nope.png": []}', False, "'nope.png' names none of the input images"),
        ('{"a.png": ["1,1,#ff0000"]}', True, "does not take colour hints"),
    ],
)
def test_colorize_many_bad_hints(album, tmp_path, model_dir, hint_model_dir, content, use_plain_model, message):
    path = _write(tmp_path, content)
    model = model_dir if use_plain_model else hint_model_dir
    out = tmp_path / "out"
    result = many("--input", str(album), "-o", str(out), "--model", str(model), "--hints", path)
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "Invalid value for '--hints'" in text and message in text
    assert not out.exists()
