"""Long runs across machines: wsd schedule, stage groups, compact state, curve CSV."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from safetensors import safe_open
from test_train import base_config, make_images, read_log

from colorization.train import ConfigError, compact, resolve_config, train
from colorization.train.sampling import StepBatchSampler
from colorization.train.schedule import lr_factor, stage_table


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZATION_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """A data folder with two groups (small, large) and a val folder."""
    root = tmp_path_factory.mktemp("grouped")
    make_images(root / "train" / "small", 10, seed=2)
    make_images(root / "train" / "large", 10, seed=3)
    make_images(root / "val", 4, seed=4)
    return root / "train", root / "val"


def test_wsd_schedule_is_flat_then_decays():
    cfg = resolve_config({"model": "baseline", "data": ["x"], "out": "o", "steps": 100, "warmup_steps": 10,
                          "schedule": "wsd", "decay_fraction": 0.2, "min_lr_ratio": 0.1})
    table = stage_table(cfg)
    f = [lr_factor(cfg, table, s) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in f[10:80])  # stable
    assert f[90] < f[85] < 1.0 and f[99] == pytest.approx(0.1, abs=0.01)  # decay over the last 20 steps
    # extending the run keeps the factor of the stable steps already done
    longer = resolve_config({**cfg.to_dict(), "steps": 200})
    assert [lr_factor(longer, stage_table(longer), s) for s in range(10, 80)] == f[10:80]


def test_schedule_and_stage_group_validation():
    with pytest.raises(ConfigError, match="schedule"):
        resolve_config({"model": "baseline", "data": ["x"], "out": "o", "schedule": "linear"})
    with pytest.raises(ConfigError, match="decay_fraction"):
        resolve_config({"model": "baseline", "data": ["x"], "out": "o", "decay_fraction": 0})
    with pytest.raises(ConfigError, match="leaves out"):
        resolve_config({"model": "baseline", "data": ["x"], "out": "o", "groups": ["a"],
                        "stages": [{"steps": 2, "groups": ["b"]}, {}]})


def test_segments_draw_each_stage_from_its_pool():
    pools = [(0, [0, 1, 2, 3]), (5, list(range(4, 12)))]
    sampler = StepBatchSampler(12, 2, 0, 1, seed=0, start_step=0, crop_at=lambda s: 32, segments=pools)
    it = iter(sampler)
    batches = [next(it) for _ in range(12)]
    assert all(i < 4 for b in batches[:5] for i, _, _ in b)
    assert all(i >= 4 for b in batches[5:] for i, _, _ in b)
    # epochs of a pool are permutations of it
    assert sorted(i for b in batches[:2] for i, _, _ in b) == [0, 1, 2, 3]
    # a sampler started later yields the same batches (resume)
    later = iter(StepBatchSampler(12, 2, 0, 1, seed=0, start_step=7, crop_at=lambda s: 32, segments=pools))
    assert next(later) == batches[7]
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        StepBatchSampler(12, 2, 0, 1, seed=0, start_step=0, crop_at=lambda s: 32, segments=[(0, [1])])


def test_stage_groups_limit_the_photos(grouped, tmp_path):
    train_dir, _ = grouped
    cfg = base_config(train_dir, tmp_path / "run", steps=4, batch_size=2,
                      stages=[{"steps": 2, "groups": ["small"]}, {}])
    result = train(cfg, progress=False)
    assert result.finished
    with pytest.raises(ConfigError, match="not in the training data"):
        train(base_config(train_dir, tmp_path / "run2", steps=4, batch_size=2,
                          stages=[{"steps": 2, "groups": ["nowhere"]}, {}]), progress=False)


def test_compact_state_restores_a_run_without_its_folder(grouped, tmp_path):
    train_dir, val_dir = grouped
    packed = tmp_path / "keep" / "run.safetensors"
    curve = tmp_path / "keep" / "curve.csv"
    kw = dict(val=str(val_dir), val_every=2, save_every=2, ema=True, compact_state=str(packed), curve_csv=str(curve),
              schedule="wsd", steps=6)
    cfg = base_config(train_dir, tmp_path / "run", **kw)
    first = train(cfg, progress=False, stop_after=4)
    assert not first.finished and packed.is_file()

    tensors, meta = compact.read_compact(packed)
    assert meta["step"] == 4 and meta["images_seen"] == 16 and meta["config"]["steps"] == 6
    assert all(v.dtype == torch.bfloat16 for v in tensors.values() if v.is_floating_point())
    assert {k for k in tensors if k.startswith("ema.")} and {k for k in tensors if k.startswith("gen.")}
    with safe_open(str(packed), framework="pt") as fh:
        assert fh.metadata()["format"] == compact.COMPACT_FORMAT
    rows = list(csv.DictReader(curve.open()))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert float(rows[-1]["val_psnr"]) > 0 and int(rows[-1]["images_seen"]) == 16

    shutil.rmtree(tmp_path / "run")  # the machine was replaced: the run folder is gone
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.finished and resumed.step == 6 and resumed.images_seen == 24
    log = read_log(tmp_path / "run")
    assert any(r["kind"] == "restore" and r["step"] == 4 for r in log)
    first_lr = next(r["lr"] for r in log if r["kind"] == "train")
    assert first_lr < cfg.lr * 0.1  # re-warming after the restore
    assert [int(r["step"]) for r in csv.DictReader(curve.open())] == [2, 4, 6]
    weights = resumed.ema_generator.state_dict()
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_resume_may_change_the_stages_that_have_not_started(grouped, tmp_path):
    from test_train import state_tensors

    train_dir, _ = grouped
    planned = [{"name": "low", "steps": 6, "crop": 16, "groups": ["small"]}, {"name": "high", "crop": 32}]
    shorter = [{"name": "low", "steps": 4, "crop": 16, "groups": ["small"]}, {"name": "high", "crop": 24}]
    kw = dict(steps=8, batch_size=2, save_every=1000)
    direct = train(base_config(train_dir, tmp_path / "direct", stages=shorter, **kw), progress=False)
    assert direct.finished
    first = train(base_config(train_dir, tmp_path / "run", stages=planned, **kw), progress=False, stop_after=3)
    assert first.step == 3
    for bad, why in [
        ([{**planned[0], "crop": 24}, planned[1]], "changed other settings than its length"),
        ([{**planned[0], "steps": 3}, planned[1]], "would end at step 3, before the saved step 3"),
        ([{**planned[0], "groups": ["large"]}, planned[1]], "changed other settings than its length"),
    ]:
        with pytest.raises(ConfigError, match=why):
            train(base_config(train_dir, tmp_path / "run", stages=bad, **kw), progress=False, resume=True)
    # the first stage ends earlier and the second changes its crop: the resumed run is the one that
    # had this schedule from the start
    rest = train(base_config(train_dir, tmp_path / "run", stages=shorter, **kw), progress=False, resume=True)
    assert rest.finished and rest.step == 8
    a, b = state_tensors(tmp_path / "direct"), state_tensors(tmp_path / "run")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ConfigError, match="stages before step"):
        from colorization.train.schedule import stages_change_problem

        raise ConfigError(stages_change_problem(planned, [{**planned[0], "crop": 8}, planned[1]], 7))


def test_compact_state_keeps_the_ema_weights(tmp_path):
    from colorization.models import create_model
    from colorization.train.ema import EMA

    def fresh():
        torch.manual_seed(0)
        return create_model("effnet_fpn", pretrained=False, width=8, freeze_stages=2, hints=False)

    gen = fresh()
    ema = EMA(gen, decay=0.9)
    with torch.no_grad():
        for p in gen.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))  # the generator moved on; its EMA lags behind
    ema.update(gen, 100)
    path = tmp_path / "c.safetensors"
    compact.save_compact(path, gen, ema.module, {"step": 1})
    gen2 = fresh()
    ema2 = EMA(gen2, decay=0.9)
    compact.restore_compact(path, gen2, ema2.module)
    trainable = [n for n, p in gen.named_parameters() if p.requires_grad]
    frozen = [n for n, p in gen.named_parameters() if not p.requires_grad]
    assert trainable and frozen
    for a, b, name in ((ema.module, ema2.module, "ema"), (gen, gen2, "gen")):
        sa, sb = a.state_dict(), b.state_dict()
        for n in trainable:
            torch.testing.assert_close(sb[n], sa[n].bfloat16().float(), msg=f"{name}.{n}")
    diff = max(float((ema2.module.state_dict()[n] - gen2.state_dict()[n]).abs().max()) for n in trainable)
    assert diff > 0.1  # the EMA is not the generator

    # a file written before the EMA's weights were kept (its buffers only): they come from the generator
    tensors, meta = compact.read_compact(path)
    buffers = {n for n, _ in gen.named_buffers()}
    old = {k: v for k, v in tensors.items() if k.startswith("gen.") or k[len("ema."):] in buffers}
    from safetensors.torch import save_file
    save_file(old, str(tmp_path / "old.safetensors"), metadata={"format": compact.COMPACT_FORMAT, "meta": "{}"})
    gen3 = fresh()
    ema3 = EMA(gen3, decay=0.9)
    compact.restore_compact(tmp_path / "old.safetensors", gen3, ema3.module)
    for n in trainable:
        torch.testing.assert_close(ema3.module.state_dict()[n], gen3.state_dict()[n])


def test_compact_state_refuses_another_config(grouped, tmp_path):
    train_dir, _ = grouped
    packed = tmp_path / "run.safetensors"
    train(base_config(train_dir, tmp_path / "a", compact_state=str(packed), save_every=2, steps=2), progress=False)
    other = base_config(train_dir, tmp_path / "b", compact_state=str(packed), lr=1e-2, steps=4)
    with pytest.raises(ConfigError, match="lr"):
        train(other, resume=True, progress=False)
    packed.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="cannot read"):
        compact.read_compact(packed)


def test_curve_trim_drops_replayed_rows(tmp_path):
    path = tmp_path / "c.csv"
    for step in (2, 4, 6):
        compact.append_curve_row(path, step, step * 4, 1.0, {"loss": 0.5, "lr": 1e-3}, {"psnr": 20.0})
    compact.trim_curve(path, 4)
    assert [int(r["step"]) for r in csv.DictReader(path.open())] == [2, 4]
    assert json.loads(json.dumps(list(csv.DictReader(path.open()))))[0]["loss"] == "0.5"
