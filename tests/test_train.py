"""The trainer: config handling, staged schedules, exact resume, NaN stop, CLI, export."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from colorization import color
from colorization.cli import app
from colorization.inference import checkpoint
from colorization.train import (
    ConfigError,
    NonFiniteLossError,
    TrainConfig,
    _lr_factor,
    _stage_table,
    _StepBatchSampler,
    load_config_file,
    resolve_config,
    train,
)
from colorization.train.objectives import RegressionObjective


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private filter-score cache (one torch thread: the autouse fixture of conftest.py)."""
    monkeypatch.setenv("COLORIZATION_CACHE_DIR", str(tmp_path / "cache"))


def make_images(folder: Path, n: int, seed: int = 0, labels: tuple[str, ...] = ("cat", "dog")) -> Path:
    """``n`` small colourful gradient PNGs named ``<label>_<i>.png``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = 36 + int(rng.integers(0, 12)), 40 + int(rng.integers(0, 12))
        yy, xx = np.mgrid[0:h, 0:w] / 48.0
        c = rng.random((3, 3))
        img = np.stack([c[k, 0] * xx + c[k, 1] * yy + c[k, 2] * (1 - xx) for k in range(3)], -1)
        img = (255 * img / img.max()).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{labels[i % len(labels)]}_{i}.png")
    return folder


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return make_images(root / "train", 12), make_images(root / "val", 4, seed=1)


def base_config(train_dir: Path, out: Path, **kw) -> TrainConfig:
    values = {
        "model": "baseline",
        "model_config": {"width": 8, "depth": 2},
        "data": [str(train_dir)],
        "out": str(out),
        "steps": 6,
        "batch_size": 4,
        "crop": 32,
        "workers": 0,
        "val_every": 1000,
        "save_every": 1000,
        "log_every": 1,
        "lr": 2e-3,
        "warmup_steps": 2,
    }
    values.update(kw)
    return resolve_config(values)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def state_tensors(out: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((out / "state" / "latest.json").read_text())
    d = out / "state" / latest["dir"]
    tensors = {f"objective/{k}": v for k, v in load_file(d / "objective.safetensors").items()}
    for f in sorted(d.glob("optimizer_*.safetensors")) + sorted(d.glob("ema.safetensors")):
        tensors.update({f"{f.stem}/{k}": v for k, v in load_file(f).items()})
    return tensors


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_resolution_file_and_overrides(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        "model: baseline\nmodel_config: {width: 16}\ndata: [a, b]\nout: o\nsteps: 200\n"
        "objective_options: {loss: l1_ssim}\nstages:\n  - {steps: 50, loss: l1}\n  - {loss: mse, lr_scale: 0.5}\n"
    )
    values = load_config_file(cfg_file)
    cfg = resolve_config(values, {"steps": 400, "model_config": {"depth": 2}, "lr": None}, source=str(cfg_file))
    assert cfg.steps == 400 and cfg.data == ("a", "b")
    assert cfg.model_config == {"width": 16, "depth": 2, "out_channels": 2}
    assert cfg.warmup_steps == 20 and cfg.val_crop == cfg.crop  # resolved automatic values
    assert _stage_table(cfg) == [(0, 50, {"loss": "l1"}, 1.0), (50, 400, {"loss": "mse"}, 0.5)]
    # JSON round trip of the resolved config
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # classification fills in Q output channels
    cls = resolve_config({"model": "baseline", "data": ["a"], "out": "o", "objective": "classification"})
    assert cls.model_config["out_channels"] == color.num_ab_bins()
    with pytest.raises(ConfigError, match="unknown field.*'stpes'"):
        resolve_config({"model": "baseline", "data": ["a"], "out": "o", "stpes": 3})
    with pytest.raises(ConfigError, match="'batch_size'"):
        resolve_config({"model": "baseline", "data": ["a"], "out": "o", "batch_size": 0})
    with pytest.raises(ConfigError, match=r"'stages'\[0\] needs 'steps'"):
        resolve_config({"model": "baseline", "data": ["a"], "out": "o", "stages": [{"loss": "l1"}, {"loss": "mse"}]})
    with pytest.raises(ConfigError, match="unknown key"):
        resolve_config({"model": "baseline", "data": ["a"], "out": "o", "stages": [{"gan_loss": "lsgan"}]})
    with pytest.raises(ConfigError, match="regresses ab"):
        resolve_config({"model": "baseline", "data": ["a"], "out": "o", "model_config": {"out_channels": 3}})
    bad = tmp_path / "bad.toml"
    bad.write_text("x")
    with pytest.raises(ConfigError, match="unsupported extension"):
        load_config_file(bad)


def test_lr_schedule_warmup_cosine_and_stage_scale():
    cfg = resolve_config({"model": "baseline", "data": ["a"], "out": "o", "steps": 100, "warmup_steps": 10,
                          "min_lr_ratio": 0.1, "stages": [{"steps": 50}, {"lr_scale": 0.5}]})
    table = _stage_table(cfg)
    assert _lr_factor(cfg, table, 0) == pytest.approx(0.1)
    assert _lr_factor(cfg, table, 9) == pytest.approx(1.0)
    assert _lr_factor(cfg, table, 10) == pytest.approx(1.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 40 / 90))
    assert _lr_factor(cfg, table, 50) == pytest.approx(0.5 * mid)
    assert _lr_factor(cfg, table, 100) == pytest.approx(0.5 * 0.1)


def test_step_sampler_is_a_function_of_seed_and_step():
    full = _StepBatchSampler(n=20, batch_size=3, rank=0, world=1, seed=7, start_step=0, crop_at=lambda step: 8)
    it = iter(full)
    batches = [next(it) for _ in range(14)]  # crosses three epochs (6 steps per epoch)
    later = iter(_StepBatchSampler(n=20, batch_size=3, rank=0, world=1, seed=7, start_step=9, crop_at=lambda step: 8))
    assert [next(later) for _ in range(5)] == batches[9:]
    epoch0 = [i for b in batches[:6] for i, _, _ in b]
    assert {c for b in batches for _, _, c in b} == {8}
    assert len(set(epoch0)) == 18  # no repeats within an epoch
    r0 = iter(_StepBatchSampler(n=20, batch_size=3, rank=0, world=2, seed=7, start_step=0, crop_at=lambda step: 8))
    r1 = iter(_StepBatchSampler(n=20, batch_size=3, rank=1, world=2, seed=7, start_step=0, crop_at=lambda step: 8))
    b0, b1 = next(r0), next(r1)
    assert not {i for i, _, _ in b0} & {i for i, _, _ in b1}  # ranks see different images
    assert len({s for _, s, _ in b0 + b1}) == 6  # and different augmentation seeds
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        _StepBatchSampler(n=5, batch_size=3, rank=0, world=2, seed=0, start_step=0, crop_at=lambda step: 8)


# ---------------------------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------------------------


def test_staged_schedule_switches_loss_at_the_right_step(image_dirs, tmp_path):
    train_dir, _ = image_dirs
    cfg = base_config(
        train_dir, tmp_path / "out", steps=5, objective_options={"loss": "l1_ssim"},
        stages=[{"steps": 2, "loss": "l1"}, {"loss": "mse", "lr_scale": 0.5}],
    )
    result = train(cfg, progress=False)
    assert result.finished and result.step == 5
    log = read_log(tmp_path / "out")
    train_lines = {r["step"]: r for r in log if r["kind"] == "train"}
    table = _stage_table(cfg)
    for step, rec in train_lines.items():  # record at `step` covers optimisation step `step - 1`
        expected = rec["l1"] if step <= 2 else rec["mse"]
        assert rec["loss"] == pytest.approx(expected, rel=1e-6), step
        assert rec["stage"] == (0 if step <= 2 else 1)
        assert rec["lr"] == pytest.approx(cfg.lr * _lr_factor(cfg, table, step - 1), rel=1e-6)
    assert [r["step"] for r in log if r["kind"] == "stage"] == [2]
    assert result.objective.loss == "mse"
    # the exported recipe records the stages
    exported = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert exported["training"]["recipe"]["stages"][1] == {"loss": "mse", "lr_scale": 0.5}


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            {"ema": True, "stages": [{"steps": 3, "loss": "l1"}, {"loss": "mse"}]}, id="regression-staged-ema"
        ),
        pytest.param(
            {"objective": "gan", "discriminator_config": {"width": 8, "n_layers": 2},
             "stages": [{"steps": 2, "adversarial": False}, {"adversarial": True}]},
            id="gan-with-l1-pretraining",
        ),
        pytest.param(  # draws from the global torch RNG in every step (simulated hints)
            {"model": "effnet_fpn", "objective": "hybrid",
             "model_config": {"pretrained": False, "width": 8, "freeze_stages": 0, "hints": True}},
            id="hybrid-with-hints",
        ),
    ],
)
def test_resume_reproduces_uninterrupted_run(image_dirs, tmp_path, kind):
    train_dir, _ = image_dirs
    full = train(base_config(train_dir, tmp_path / "full", **kind), progress=False)
    assert full.finished
    cfg = base_config(train_dir, tmp_path / "split", **kind)
    part = train(cfg, progress=False, stop_after=4)
    assert not part.finished and part.step == 4 and not (tmp_path / "split" / "model").exists()
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, progress=False)  # refuses to overwrite a run
    with pytest.raises(ConfigError, match="differs from the saved run.*lr"):
        train(base_config(train_dir, tmp_path / "split", lr=1e-3, **kind), progress=False, resume=True)
    rest = train(cfg, progress=False, resume=True)
    assert rest.finished and rest.step == 6 and rest.images_seen == full.images_seen
    a, b = state_tensors(tmp_path / "full"), state_tensors(tmp_path / "split")
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k
    wa = load_file(tmp_path / "full" / "model" / "model.safetensors")
    wb = load_file(tmp_path / "split" / "model" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the log of the resumed run continues without duplicated steps
    steps = [r["step"] for r in read_log(tmp_path / "split") if r["kind"] == "train"]
    assert steps == list(range(1, 7))


def test_log_window_spanning_the_switch_to_adversarial_training(image_dirs, tmp_path):
    """A log line averaging steps before (generator phase only) and after (generator and
    discriminator) the switch of a GAN run: each key is averaged over the steps that have it."""
    train_dir, _ = image_dirs
    cfg = base_config(train_dir, tmp_path / "gan", objective="gan", log_every=4,
                      discriminator_config={"width": 8, "n_layers": 2},
                      stages=[{"steps": 2, "adversarial": False}, {"adversarial": True}])
    assert train(cfg, progress=False).finished
    rows = [r for r in read_log(tmp_path / "gan") if r["kind"] == "train"]
    assert [r["step"] for r in rows] == [4, 6]
    assert {"generator/l1", "generator/loss", "discriminator/loss"} <= set(rows[0])
    assert all(math.isfinite(v) for r in rows for k, v in r.items() if k.endswith("loss"))


def test_nan_loss_stops_with_error_and_keeps_last_checkpoint(image_dirs, tmp_path, monkeypatch):
    train_dir, _ = image_dirs
    original = RegressionObjective.forward
    calls = {"n": 0}

    def poisoned(self, batch, phase="main"):
        out = original(self, batch, phase)
        calls["n"] += 1
        if calls["n"] == 5:  # optimisation step index 4 -> reported as step 5
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(RegressionObjective, "forward", poisoned)
    out = tmp_path / "out"
    cfg = base_config(train_dir, out, steps=8, save_every=2, log_every=3)
    with pytest.raises(NonFiniteLossError, match="step 5") as err:
        train(cfg, progress=False)
    assert err.value.step == 5
    latest = json.loads((out / "state" / "latest.json").read_text())
    assert latest["step"] == 4  # saved at step 4; the NaN step never reached a save
    assert all(torch.isfinite(v).all() for v in state_tensors(out).values())
    assert not (out / "model").exists()
    # the same through the CLI: exit code 3 and a message naming the step
    calls["n"] = 0
    res = CliRunner().invoke(app, ["train", "--model", "baseline", "--model-config", "width=8", "--model-config",
                                   "depth=2", "--data", str(train_dir), "--out", str(tmp_path / "cli"), "--steps", "8",
                                   "--batch-size", "4", "--crop", "32", "--workers", "0", "--save-every", "2",
                                   "--no-progress"])
    assert res.exit_code == 3, res.output
    assert "non-finite loss at step 5" in res.output
    assert json.loads((tmp_path / "cli" / "state" / "latest.json").read_text())["step"] == 4


def test_cli_smoke_classification_with_config_file(image_dirs, tmp_path):
    train_dir, val_dir = image_dirs
    out = tmp_path / "run"
    cfg_file = tmp_path / "cls.json"
    cfg_file.write_text(json.dumps({
        "model": "baseline", "model_config": {"width": 8, "depth": 2}, "objective": "classification",
        "objective_options": {"temperature": 0.5}, "steps": 50, "batch_size": 2, "crop": 32, "workers": 0,
    }))
    args = ["train", "--config", str(cfg_file), "--data", str(train_dir), "--val", str(val_dir), "--out", str(out),
            "--steps", "3", "--batch-size", "4", "--val-every", "2", "--val-images", "3", "--ema", "--no-progress"]
    res = CliRunner().invoke(app, args + ["--stop-after", "2"])
    assert res.exit_code == 0, res.output
    assert "stopped at step 2/3" in res.output and not (out / "model").exists()
    # `--out DIR --resume` alone continues from the saved train_config.json
    res = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "resumed from" in res.output and "trained baseline for 3 steps" in res.output
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["steps"] == 3 and saved["batch_size"] == 4 and saved["ema"] is True  # flags beat the file
    assert saved["model_config"]["out_channels"] == color.num_ab_bins()
    model = checkpoint.load_exported(out / "model")
    assert model.head == "classification" and model.temperature == pytest.approx(0.5)
    ab = model(torch.zeros(1, 1, 32, 32))
    assert ab.shape == (1, 2, 32, 32) and torch.isfinite(ab).all()
    conf = model.config
    assert conf["training"]["steps"] == 3 and conf["training"]["images_seen"] == 12
    assert conf["training"]["data"] == [str(train_dir)] and conf["training"]["device"] == "cpu"
    assert conf["training"]["wall_time_s"] > 0
    assert set(conf["metrics"]["val"]) >= {"psnr", "ssim"} and conf["metrics"]["val"]["images"] == 3
    # EMA weights are what got exported
    ema = load_file(sorted((out / "state").glob("step_*"))[0] / "ema.safetensors")
    exported = load_file(out / "model" / "model.safetensors")
    assert all(torch.equal(ema[k], exported[k]) for k in exported)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]
    grid = Image.open(out / "samples" / "step_000003.png")
    assert grid.size == (3 * 32, 3 * 32)  # 3 columns (gt | gray | prediction), 3 val images
    vals = [r for r in read_log(out) if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [2, 3] and all(0 < r["ssim"] <= 1 for r in vals)
    # errors: existing run without --resume, unknown model
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--resume" in res.output
    res = CliRunner().invoke(app, ["train", "--model", "nope", "--data", str(train_dir), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not a registered generator" in res.output


def test_auxiliary_labels_fill_num_classes(image_dirs, tmp_path):
    train_dir, _ = image_dirs
    cfg = base_config(train_dir, tmp_path / "aux", model="fusion", steps=2,
                      model_config={"width": 8, "global_size": 32}, objective_options={"aux_weight": 0.1})
    result = train(cfg, progress=False)
    assert result.finished
    saved = json.loads((tmp_path / "aux" / "train_config.json").read_text())
    assert saved["model_config"]["num_classes"] == 2  # cat, dog
    assert all("aux" in r for r in read_log(tmp_path / "aux") if r["kind"] == "train")
    conf = json.loads((tmp_path / "aux" / "model" / "config.json").read_text())
    assert conf["training"]["class_names"] == ["cat", "dog"]
    with pytest.raises(ConfigError, match="no auxiliary class head"):
        train(base_config(train_dir, tmp_path / "aux2", objective_options={"aux_weight": 0.1}), progress=False)


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


TRAIN_CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.*") if p.relative_to(CONFIG_DIR).parts[0] != "data")


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_example_configs_resolve_and_build(path):
    from colorization.models import create_model
    from colorization.train.objectives import ADVERSARIAL_OBJECTIVES, build_objective

    cfg = resolve_config(load_config_file(path), source=str(path))
    with torch.device("meta"):  # shapes only: cheap even for the paper-sized networks
        model_config = dict(cfg.model_config)
        if "pretrained" in model_config:
            model_config["pretrained"] = False  # weights can't load into meta tensors; shapes only
        if cfg.objective_options.get("aux_weight", 0) > 0:
            model_config.setdefault("num_classes", 10)  # filled in from the data by the trainer
        gen = create_model(cfg.model, **model_config)
        disc = (create_model(cfg.discriminator, **cfg.discriminator_config)
                if cfg.objective in ADVERSARIAL_OBJECTIVES else None)
        obj = build_objective(cfg.objective, gen, disc, **cfg.objective_options)
    assert cfg.crop % gen.stride == 0
    for _, _, options, _ in _stage_table(cfg):
        obj.configure(**options)


def test_export_now_exports_the_saved_state_with_its_working_size(image_dirs, tmp_path):
    from colorization.inference.checkpoint import load_exported, read_config

    train_dir, val_dir = image_dirs
    cfg = base_config(train_dir, tmp_path / "run", val=str(val_dir), val_images=2, working_size=64)
    with pytest.raises(ConfigError, match="no saved training state"):
        train(cfg, progress=False, resume=True, export_now=True)
    part = train(cfg, progress=False, stop_after=3)
    assert not part.finished and not (tmp_path / "run" / "model").exists()
    res = train(cfg, progress=False, resume=True, export_now=True)
    assert res.step == 3 and res.model_dir == tmp_path / "run" / "model"
    config = read_config(res.model_dir)
    assert config["working_size"] == 64
    assert config["training"]["steps"] == 3 and config["training"]["planned_steps"] == 6
    assert config["training"]["stopped_early"] is True
    assert set(config["metrics"]["val"]) >= {"psnr", "ssim"}
    # the exported weights are the saved generator's weights, and they load strictly
    saved = state_tensors(tmp_path / "run")
    model = load_exported(res.model_dir)
    for k, v in model.network.state_dict().items():
        assert torch.equal(saved[f"objective/generator.{k}"], v), k


def test_init_from_starts_from_the_exported_weights(image_dirs, tmp_path, model_dir):
    from colorization.inference.checkpoint import load_exported

    train_dir, _ = image_dirs
    source = dict(load_exported(model_dir).network.named_parameters())
    # lr ~ 0: the run's exported parameters are its initial ones, i.e. the source model's
    # (batch-norm running statistics do move in the training step, so only parameters compare)
    cfg = base_config(train_dir, tmp_path / "ft", steps=1, lr=1e-12, warmup_steps=0, init_from=str(model_dir))
    res = train(cfg, progress=False)
    tuned = dict(load_exported(res.model_dir).network.named_parameters())
    assert tuned.keys() == source.keys()
    for k in source:
        torch.testing.assert_close(tuned[k], source[k], rtol=0, atol=1e-6)


def test_init_from_rejects_other_models_and_shapes(image_dirs, tmp_path, model_dir):
    train_dir, _ = image_dirs
    with pytest.raises(ConfigError, match="init_from.*'baseline' model, not 'resnet_unet'"):
        train(base_config(train_dir, tmp_path / "a", model="resnet_unet", model_config={"depth": 18, "width": 8},
                          init_from=str(model_dir)), progress=False)
    with pytest.raises(ConfigError, match="init_from"):
        train(base_config(train_dir, tmp_path / "b", model_config={"width": 16, "depth": 2},
                          init_from=str(model_dir)), progress=False)
    with pytest.raises(ConfigError, match="init_from.*does not exist"):
        train(base_config(train_dir, tmp_path / "c", init_from=str(tmp_path / "missing")), progress=False)
    # a refused run leaves no empty run folder behind
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def test_keep_best_exports_the_best_validation_and_survives_resume(image_dirs, tmp_path):
    from colorization.inference.checkpoint import load_exported

    train_dir, val_dir = image_dirs
    out = tmp_path / "best"
    cfg = base_config(train_dir, out, steps=6, val=str(val_dir), val_every=2, save_every=2, keep_best=True)
    res = train(cfg, progress=False)
    vals = [r for r in read_log(out) if r["kind"] == "val"]
    bests = [r for r in read_log(out) if r["kind"] == "best"]
    assert [r["step"] for r in vals] == [2, 4, 6]
    # a "best" record exactly where the val PSNR beat every earlier one, the first always
    running, expected = -math.inf, []
    for r in vals:
        if r["psnr"] > running:
            running, expected = r["psnr"], expected + [r["step"]]
    assert [r["step"] for r in bests] == expected
    best_cfg = json.loads((out / "model_best" / "config.json").read_text())
    assert best_cfg["metrics"]["val"]["psnr"] == pytest.approx(running)
    assert best_cfg["training"]["steps"] == expected[-1]
    load_exported(out / "model_best")  # loads strictly
    assert res.model_dir == out / "model"
    # resuming compares against the recorded best: an extension only exports a better validation
    train(resolve_config({**cfg.to_dict(), "steps": 8}), resume=True, progress=False)
    later = [r for r in read_log(out) if r["kind"] in ("val", "best") and r["step"] > 6]
    new_best = [r for r in later if r["kind"] == "best"]
    val8 = next(r for r in later if r["kind"] == "val")
    assert bool(new_best) == (val8["psnr"] > running)


def test_keep_best_is_never_ahead_of_the_saved_state_after_a_kill(image_dirs, tmp_path, monkeypatch):
    """A kill after a best-export but before the state save of that step: the resumed run's
    OUT/model_best/ holds no step later than the state it resumed from."""
    from colorization.train import trainer as trainer_mod

    train_dir, val_dir = image_dirs
    out = tmp_path / "kill"
    cfg = base_config(train_dir, out, steps=6, val=str(val_dir), val_every=1, save_every=2, keep_best=True)
    real_save = trainer_mod.state.save_state

    def killed_at_4(state_dir, step, **kw):
        if step == 4:
            raise KeyboardInterrupt("killed")
        return real_save(state_dir, step, **kw)

    real_validate = trainer_mod.validate
    calls = []

    def ever_better(*args, **kw):  # every validation beats the last, so step 4's is a best
        calls.append(1)
        return {**real_validate(*args, **kw), "psnr": float(len(calls))}

    monkeypatch.setattr(trainer_mod.state, "save_state", killed_at_4)
    monkeypatch.setattr(trainer_mod, "validate", ever_better)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert [r["step"] for r in read_log(out) if r["kind"] == "best"] == [1, 2, 3, 4]
    assert json.loads((out / "model_best.pending" / "config.json").read_text())["training"]["steps"] == 4
    monkeypatch.setattr(trainer_mod.state, "save_state", real_save)
    # stop right after resuming (at step 3, state saved): model_best must not be from step 4
    train(cfg, resume=True, progress=False, stop_after=1)
    best_step = json.loads((out / "model_best" / "config.json").read_text())["training"]["steps"]
    assert best_step == 3
    assert not (out / "model_best.pending").exists()
    train(cfg, resume=True, progress=False)
    vals = {r["step"]: r["psnr"] for r in read_log(out) if r["kind"] == "val"}
    best_cfg = json.loads((out / "model_best" / "config.json").read_text())
    assert best_cfg["metrics"]["val"]["psnr"] == pytest.approx(max(vals.values()))
    assert not (out / "model_best.pending").exists()


def test_holdout_groups_and_learning_curves(tmp_path, image_dirs):
    from colorization import data as cdata
    from colorization.image_io import find_images

    _, val_dir = image_dirs
    root = tmp_path / "train"
    make_images(root / "g1", 40, seed=2)
    make_images(root / "g2", 40, seed=3)
    make_images(root / "unused", 8, seed=4)
    found = cdata.select_files(find_images([root]), groups=["g1", "g2"])
    held = [f for f, r in found if cdata.is_held_out(f, r)]
    assert held  # 3 % of 80 names: the fixture's names do hold some
    out = tmp_path / "curves"
    cfg = base_config(root, out, steps=2, val=str(val_dir), val_every=2, groups=["g1", "g2"], curve_images=4)
    train(cfg, progress=False)
    start = next(r for r in read_log(out) if r["kind"] == "start")
    assert start["train_images"] == 80 - len(held)
    (val,) = [r for r in read_log(out) if r["kind"] == "val"]
    for prefix in ("", "holdout/", "seen/"):
        assert {f"{prefix}psnr", f"{prefix}psnr_gray", f"{prefix}colorfulness_pred"} <= set(val)
    assert val["holdout/images"] == min(4, len(held)) and val["seen/images"] == 4
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["groups"] == ["g1", "g2"] and saved["holdout"] is True
    with pytest.raises(ConfigError, match="groups"):
        base_config(root, out, groups=[])


def test_resuming_a_finished_run_has_nothing_to_do(image_dirs, tmp_path):
    """``train --resume`` with the same steps after a finished run: says so, trains and exports
    nothing (no "0.0 images/s"); a run killed between its last state save and the export is exported."""
    train_dir, _ = image_dirs
    out = tmp_path / "run"
    args = ["train", "--model", "baseline", "--model-config", "width=8", "--model-config", "depth=2", "--data",
            str(train_dir), "--out", str(out), "--steps", "2", "--batch-size", "2", "--crop", "32", "--workers", "0",
            "--no-progress"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0 and "trained baseline for 2 steps" in first.output, first.output
    model_files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "model").iterdir()}
    log_lines = (out / "log.jsonl").read_text().splitlines()
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output and "images/s" not in again.output
    assert "already trained for 2/2 steps" in again.output
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "model").iterdir()} == model_files
    assert (out / "log.jsonl").read_text().splitlines() == log_lines
    res = train(resolve_config({**json.loads((out / "train_config.json").read_text())}), resume=True, progress=False)
    assert res.nothing_to_do and res.finished and res.model_dir == out / "model" and res.step == 2

    shutil.rmtree(out / "model")  # as if killed after the final state save, before the export
    late = CliRunner().invoke(app, [*args, "--resume"])
    assert late.exit_code == 0, late.output
    assert "nothing to do" not in late.output and "images/s" not in late.output
    assert "from the saved state at step 2/2" in late.output and (out / "model" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# bf16 autocast: where "auto" turns it on
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_amp_auto_uses_bf16_only_where_the_hardware_has_it(monkeypatch, native):
    from colorization.train import processes

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert processes.cpu_has_native_bf16() is native
    assert processes.resolve_amp("auto", cpu) is native
    assert processes.resolve_amp("auto", cuda) is True
    assert processes.resolve_amp("bf16", cpu) is True and processes.resolve_amp("off", cuda) is False


def test_amp_bf16_on_an_emulating_cpu_warns_and_amp_may_change_on_resume(image_dirs, tmp_path, monkeypatch, capsys):
    from colorization.train import processes

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    train_dir, _ = image_dirs
    assert not processes.cpu_has_native_bf16()
    part = train(base_config(train_dir, tmp_path / "run", steps=3, amp="bf16"), progress=False, stop_after=2)
    assert part.step == 2
    assert "warning: amp bf16 on a CPU without native bf16" in capsys.readouterr().out
    rest = train(base_config(train_dir, tmp_path / "run", steps=3, amp="auto"), progress=False, resume=True)
    assert rest.finished and rest.step == 3
    assert "warning" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Group weights
# ---------------------------------------------------------------------------------------------


def test_weighted_step_sampler_draws_in_proportion_and_resumes_exactly():
    n, weights = 20, [9.0, 9.0] + [1.0] * 18  # images 0 and 1 carry half the total weight
    full = _StepBatchSampler(n=n, batch_size=4, rank=0, world=1, seed=3, start_step=0,
                             crop_at=lambda step: 8, weights=weights)
    it = iter(full)
    batches = [next(it) for _ in range(2000)]
    drawn = [i for b in batches for i, _, _ in b]
    share = sum(i < 2 for i in drawn) / len(drawn)
    assert share == pytest.approx(0.5, abs=0.02)
    later = iter(_StepBatchSampler(n=n, batch_size=4, rank=0, world=1, seed=3, start_step=37,
                                   crop_at=lambda step: 8, weights=weights))
    assert [next(later) for _ in range(10)] == batches[37:47]
    plain = iter(_StepBatchSampler(n=n, batch_size=4, rank=0, world=1, seed=3, start_step=0, crop_at=lambda s: 8))
    first_epoch = [i for _ in range(5) for i, _, _ in next(plain)]
    assert sorted(first_epoch) == list(range(n))  # no weights: every image once per epoch
    with pytest.raises(ConfigError, match="positive finite"):
        _StepBatchSampler(n=n, batch_size=4, rank=0, world=1, seed=3, start_step=0, crop_at=lambda s: 8,
                          weights=[1.0] * 19 + [0.0])


def test_group_weights_config_and_training(tmp_path, image_dirs):
    _, val_dir = image_dirs
    root = tmp_path / "train"
    make_images(root / "g1", 16, seed=2)
    make_images(root / "g2", 16, seed=3)
    for bad in ({"g1": 0}, {"g1": -1.0}, {"g1": float("inf")}, {}, {"g1": True}, ["g1"]):
        with pytest.raises(ConfigError, match="group_weights"):
            base_config(root, tmp_path / "x", group_weights=bad)
    with pytest.raises(ConfigError, match="leaves out.*g3"):
        base_config(root, tmp_path / "x", groups=["g1", "g2"], group_weights={"g3": 2})
    with pytest.raises(ConfigError, match="does not hold.*g3"):
        train(base_config(root, tmp_path / "y", steps=1, group_weights={"g3": 2}), progress=False)
    out = tmp_path / "weighted"
    cfg = base_config(root, out, steps=2, groups=["g1", "g2"], group_weights={"g1": 3})
    assert cfg.group_weights == {"g1": 3.0}
    assert train(cfg, progress=False).finished
    exported = json.loads((out / "model" / "config.json").read_text())
    assert exported["training"]["train_config"]["group_weights"] == {"g1": 3.0}
