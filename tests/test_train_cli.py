"""``colorization train``'s options come from the TrainConfig fields: help, defaults, --set."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from colorization.cli import app
from colorization.train import TrainConfig
from colorization.train.config import REQUIRED_FIELDS, field_docs

runner = CliRunner()


def flat_help(monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0, res.output
    return " ".join(res.output.replace("\u2502", " ").split())  # undo rich's box and wrapping


def print_config(*args: str) -> dict:
    res = runner.invoke(app, ["train", *args, "--print-config"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_every_field_has_a_documented_option(monkeypatch):
    docs = field_docs()
    assert set(docs) == set(TrainConfig.field_names())
    assert all(docs.values())
    text = flat_help(monkeypatch)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert f" {flag} " in text or f" {flag}," in text, flag
        assert docs[f.name].split(";")[0].split(" (")[0] in text, f.name


def test_help_shows_the_real_defaults_and_marks_required_fields(monkeypatch):
    text = flat_help(monkeypatch)
    assert "[default: None]" not in text
    for f in dataclasses.fields(TrainConfig):
        if f.name in REQUIRED_FIELDS:
            continue
        default = f.default
        if isinstance(default, bool):
            shown = ("" if default else "no-") + f.name.replace("_", "-")
        elif isinstance(default, (int, float, str)):
            shown = str(default)
        else:
            continue
        assert f"[default: {shown}]" in text, f.name
    assert "Total optimisation steps. [default: 1000]" in text
    assert "Peak learning rate (AdamW). [default: 0.0002]" in text
    assert "[default: 0.9 0.999]" in text  # betas
    assert "Linear warm-up steps. [default: min(1000, steps // 20)]" in text
    assert "Discriminator learning rate. [default: lr]" in text
    assert text.count("[required unless in --config]") == len(REQUIRED_FIELDS)
    for flag in ("--model", "--data", "--out"):
        after = text.split(f" {flag} ", 1)[1]
        assert after.index("[required unless in --config]") < after.index("--"), flag
    # the run options and the generic setter
    for flag in ("--config", "--resume", "--set", "--stop-after", "--time-limit", "--export-now", "--print-config"):
        assert f" {flag} " in text, flag


def test_generated_options_and_set_override_the_config_file(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        "model: baseline\ndata: [a]\nout: o\nval: v\nsteps: 200\nthreads: 2\n"
        "objective_options: {loss: l1_ssim, ssim_weight: 0.5}\n"
    )
    cfg = print_config(
        "--config", str(cfg_file), "-b", "4", "--no-hflip", "--ema", "--d-lr", "1e-3",
        "--scale-jitter", "0.5", "0.9", "--model-config", "width=8", "--option", "loss=mse",
        "--set", "stages=[{steps: 50, loss: l1}, {lr_scale: 0.5}]",
        "--set", "betas=[0.5, 0.6]",
        "--set", "val=null",  # --set applies to the file's values: null clears a field
        "--set", "threads=null",
        "--set", "objective_options.ssim_weight=0.01",
        "--set", "max-images=7",  # dashes work too
        "--set", "lr=1e-3",
    )
    assert cfg["batch_size"] == 4 and cfg["hflip"] is False and cfg["ema"] is True and cfg["d_lr"] == 1e-3
    assert cfg["scale_jitter"] == [0.5, 0.9] and cfg["betas"] == [0.5, 0.6]
    assert cfg["model_config"] == {"width": 8, "out_channels": 2}
    assert cfg["objective_options"] == {"loss": "mse", "ssim_weight": 0.01}
    assert cfg["stages"] == [{"steps": 50, "loss": "l1"}, {"lr_scale": 0.5}]
    assert cfg["val"] is None and cfg["threads"] is None and cfg["max_images"] == 7 and cfg["lr"] == 1e-3
    assert cfg["steps"] == 200  # from the file
    # every field without a file: required ones as options, the rest through --set
    cfg = print_config("-m", "baseline", "-d", "imgs/", "-o", "out", "--set", "warmup_steps=3",
                       "--set", "init_from=models/x", "--stages", "[{steps: 2}, {}]")
    assert cfg["data"] == ["imgs"] and cfg["warmup_steps"] == 3 and cfg["init_from"] == "models/x"
    assert cfg["stages"] == [{"steps": 2}, {}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "stpes=3"], "unknown field 'stpes' (did you mean 'steps' or 'stages'?)"),
        (["--set", "batchsize=3"], "did you mean 'batch_size'?"),
        (["--set", "steps"], "expected FIELD=VALUE"),
        (["--set", "crop.x=1"], "'crop' is not one"),
        (["--steps", "3", "--set", "steps=4"], "given twice"),
        (["--set", "batch_size=0"], "config field 'batch_size': must be a positive integer"),
        (["--stpes", "3"], "No such option: --stpes"),
    ],
)
def test_bad_fields_are_refused_with_a_clear_message(args, message, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    res = runner.invoke(app, ["train", "-m", "baseline", "-d", "a", "-o", "o", *args, "--print-config"])
    assert res.exit_code == 2
    assert message in " ".join(res.output.replace("\u2502", " ").split()), res.output


def test_a_config_file_typo_names_the_close_field(tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"model": "baseline", "data": ["a"], "out": "o", "warmup_step": 3}))
    res = runner.invoke(app, ["train", "--config", str(cfg_file), "--print-config"])
    assert res.exit_code == 2
    assert "unknown field 'warmup_step' (did you mean 'warmup_steps'?)" in res.output


def test_the_command_line_does_not_import_torch():
    code = "import sys, colorization.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
