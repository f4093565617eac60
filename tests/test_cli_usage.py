"""Issue #31, items 3, 5 and 6: output folders that cannot be made are one usage error before any
work; the command line imports no optional or heavy package it does not use; the help reads at 80
columns, shows no ``[default: None]``; ``--version``; ``--threads``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from colorization import __version__, cli
from colorization.commands.common import check_out_dir

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _flat(text: str) -> str:
    return " ".join(text.replace("\u2502", " ").split())  # undo the usage-error box's wrapping


@pytest.fixture()
def scene(tmp_path: Path) -> dict[str, Path]:
    photos = tmp_path / "gray"
    photos.mkdir()
    for i in range(3):
        Image.new("L", (24, 20), 40 + 50 * i).save(photos / f"g{i}.png")
    text = tmp_path / "text.jpg"
    text.write_bytes(b"a file, not a folder")
    return {"photos": photos, "file": text, "root": tmp_path}


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- item 3: an output folder that cannot be created -----------------------------------------------


def test_colorize_out_below_a_file_is_one_usage_error_before_the_model_loads(scene):
    before = _listing(scene["root"])
    # a model that does not exist: had it been loaded first, the error would be about the model
    result = runner.invoke(cli.app, [
        "colorize", str(scene["photos"]), "-o", f"{scene['file']}/sub/", "--model", str(scene["root"] / "no_model"),
    ])
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "Invalid value for '-o' / '--out'" in text and "is a file, not a folder" in text
    assert "failed" not in text and "cannot load the model" not in text
    assert text.count("Error") == 1
    assert _listing(scene["root"]) == before  # nothing written


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_colorize_out_that_cannot_be_created_is_one_usage_error(scene):
    target = Path("/sys/kernel/colorization_test_out")
    result = runner.invoke(cli.app, ["colorize", str(scene["photos"]), "-o", str(target)])
    assert result.exit_code == 2, result.output
    assert "cannot create or write" in _flat(result.output) and "failed:" not in result.output
    assert not target.exists()


def test_colorize_many_export_and_train_check_their_out_first(scene):
    bad = scene["file"] / "sub"
    many = runner.invoke(cli.app, ["colorize-many", "--input", str(scene["photos"]), "-o", str(bad)])
    assert many.exit_code == 2 and "is a file, not a folder" in _flat(many.output), many.output
    export = runner.invoke(cli.app, ["export", "--model", "default", "--out", str(bad / "m.onnx")])
    assert export.exit_code == 2 and "is a file, not a folder" in _flat(export.output), export.output
    train = runner.invoke(cli.app, [
        "train", "--model", "baseline", "--data", str(scene["photos"]), "--out", str(bad), "--steps", "1",
    ])
    assert train.exit_code == 2 and "is a file, not a folder" in _flat(train.output), train.output
    assert scene["file"].read_bytes() == b"a file, not a folder"


def test_check_out_dir_probes_without_leaving_anything(tmp_path):
    check_out_dir(tmp_path / "new" / "deeper")  # creatable: fine
    check_out_dir(tmp_path)  # exists and writable: fine
    assert list(tmp_path.iterdir()) == []  # the probes are gone
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="exists and is not a folder"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(Exception, match="is a file, not a folder"):
        check_out_dir(tmp_path / "f" / "a" / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# --- item 5: what the command line imports ----------------------------------------------------------


def test_importing_the_command_line_imports_no_optional_or_heavy_package():
    code = (
        "import sys\n"
        "import colorization.cli, colorization.commands.colorize\n"
        "app = colorization.cli.app\n"  # every command registered
        "heavy = ['torch', 'fastapi', 'uvicorn', 'starlette', 'av', 'cv2', 'onnx', 'onnxruntime', 'matplotlib',"
        " 'scipy']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_the_colorize_script_imports_only_its_own_command():
    code = (
        "import sys\n"
        "from colorization.cli import colorize_app\n"
        "sys.argv = ['colorize', '--help']\n"
        "try:\n    colorize_app()\nexcept SystemExit:\n    pass\n"
        "print(','.join(m for m in sys.modules if m.startswith('colorization.commands.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert sorted(out.stdout.strip().splitlines()[-1].split(",")) == [  # (reference_option: its --reference)
        "colorization.commands.colorize", "colorization.commands.common", "colorization.commands.reference_option"
    ]


# --- item 6: help, --version, --threads -------------------------------------------------------------


def test_version(monkeypatch, capsys):
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"colorization {__version__}"
    monkeypatch.setattr(sys, "argv", ["colorize", "--version"])  # before the required PATHS
    with pytest.raises(SystemExit) as info:
        cli.colorize_app()
    assert info.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"colorization {__version__}"


def _commands() -> list[list[str]]:
    """Every command as argv: groups (``data``) by their subcommands."""
    import importlib

    import typer

    out = []
    for name, module, _ in cli.SUBCOMMANDS:
        group = getattr(importlib.import_module(f"colorization.commands.{module}"), "app", None)
        if isinstance(group, typer.Typer):
            out += [[name, info.name or info.callback.__name__] for info in group.registered_commands]
        else:
            out.append([name])
    return out


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_help_shows_no_none_default_and_has_debug(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(cli.app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "[default: None]" not in result.output
    assert "--debug" in result.output


def test_serve_help_says_photos_and_videos(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert "photos and videos" in runner.invoke(cli.app, ["--help"]).output
    assert "photos and videos" in _flat(runner.invoke(cli.app, ["serve", "--help"]).output)


def test_colorize_help_keeps_a_readable_column_at_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(cli.app, ["colorize", "--help"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    # where the descriptions start: the column of "Composite", the first word of --background's help
    (row,) = [line for line in lines if "--background" in line]
    start = row.index("Composite")
    assert 80 - start >= 34, f"the description column is {80 - start} wide:\n{result.output}"
    assert "COLORIZATION_DEBUG=1" in result.output  # not cut with an ellipsis


def test_threads_option_sets_torch_threads(scene, model_dir):
    out = scene["root"] / "out"
    result = runner.invoke(cli.app, ["colorize", str(scene["photos"] / "g0.png"), "-o", str(out), "--model",
                                     str(model_dir), "--threads", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2  # the autouse fixture of conftest.py restores it
    bad = runner.invoke(cli.app, ["colorize", str(scene["photos"]), "-o", str(out), "--threads", "0"])
    assert bad.exit_code == 2 and "--threads" in bad.output


def test_threads_reach_onnx_runtime(tmp_path, model_dir):
    pytest.importorskip("onnxruntime")
    from colorization import Colorizer
    from colorization.inference.checkpoint import load_exported
    from colorization.inference.onnx_export import export_onnx

    path = export_onnx(load_exported(model_dir), tmp_path / "m.onnx")
    colorizer = Colorizer.from_pretrained(path, backend="onnx", threads=1)
    assert colorizer.backend.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads"):
        Colorizer.from_pretrained(path, backend="onnx", threads=0)


def test_colorize_many_threads_are_checked():
    from colorization.batch.distributed import ManyConfig

    assert ManyConfig(out_dir="o", input_dir="i", threads=3).threads == 3
    with pytest.raises(ValueError, match="threads"):
        ManyConfig(out_dir="o", input_dir="i", threads=0)


def test_training_docs_name_every_objective():
    import dataclasses

    from colorization.train.config import TrainConfig
    from colorization.train.objectives import OBJECTIVES

    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    assert f"one of {words[len(OBJECTIVES)]} objectives" in text
    table = re.findall(r"^\| `(\w+)`", text.split("## Objectives", 1)[1].split("\n## ", 1)[0], re.M)
    assert table == list(OBJECTIVES)
    default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}["objective"]
    assert f"`{default}`, the default" in text


def test_colorize_pauses_the_garbage_collector_for_its_start_up_only(scene, model_dir, monkeypatch):
    """#31 start-up: full collections over torch's and the model's objects cost ~0.15 s of a one-photo
    run; colorize collects no cyclic garbage until the model is loaded, then freezes those objects
    and collects as usual; when the command ends the frozen objects go back to the collector."""
    import gc

    from colorization.commands import colorize as colorize_command

    seen = {}
    real = colorize_command.startup_done

    def spy() -> None:
        seen["enabled_before"] = gc.isenabled()
        real()
        seen["enabled_after"], seen["frozen"] = gc.isenabled(), gc.get_freeze_count()

    monkeypatch.setattr(colorize_command, "startup_done", spy)
    frozen_before = gc.get_freeze_count()  # an in-process run of the console script may have left some
    result = runner.invoke(cli.app, ["colorize", str(scene["photos"] / "g0.png"), "-o", str(scene["root"] / "o"),
                                     "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert seen["enabled_before"] is False and seen["enabled_after"] is True and seen["frozen"] > 0
    assert gc.isenabled() and gc.get_freeze_count() <= frozen_before
    failed = runner.invoke(cli.app, ["colorize", str(scene["photos"]), "-o", str(scene["root"] / "o2"),
                                     "--model", str(scene["root"] / "missing")])
    assert failed.exit_code == 2 and gc.isenabled()  # restored when the command ends early too


def test_the_console_script_leaves_its_start_up_frozen_for_the_exit(scene, model_dir, monkeypatch):
    # the process ends with the command: the interpreter's final collection skips the frozen objects
    import gc

    monkeypatch.setattr(sys, "argv", ["colorize", str(scene["photos"] / "g1.png"), "-o", str(scene["root"] / "o"),
                                      "--model", str(model_dir)])
    try:
        with pytest.raises(SystemExit) as info:
            cli.colorize_app()
        assert info.value.code in (0, None)
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process goes on
