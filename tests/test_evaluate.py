"""Tests of colorization.evaluation.evaluate and the ``colorization evaluate`` command on tiny generated
photo folders, with the gray baseline and a tiny exported model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from colorization import color, create_model, image_io
from colorization.cli import app
from colorization.evaluation import evaluate as ev
from colorization.evaluation import metrics as M
from colorization.inference import checkpoint


def _photos(folder: Path, n: int, seed: int, sizes=((40, 52), (48, 36))) -> list[Path]:
    """Colourful gradient + noise photos of a few sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w]
        arr = np.stack(
            [x / w * 255, y / h * 255, rng.integers(0, 256, (h, w))], axis=-1
        ).astype(np.uint8)
        p = folder / f"cls{i % 2}_{i:02d}.png"
        Image.fromarray(arr).save(p)
        out.append(p)
    return out


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = create_model("baseline", width=8, depth=2).eval()
    return checkpoint.save_exported(net, tmp_path / "tiny", head="regression", extra={"working_size": 32})


def test_load_ground_truth_resizes_short_side_and_centre_crops(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 20:60] = 255  # a white band exactly in the centre half
    Image.fromarray(arr).save(tmp_path / "band.png")
    img = ev.load_ground_truth(tmp_path / "band.png", 32)
    assert img.size == (32, 32)
    # 40x80 -> 32x64, centre 32 columns are the white band
    assert np.asarray(img)[:, 2:-2].min() >= 250
    assert ev.load_ground_truth(tmp_path / "band.png", None).size == (80, 40)


def test_list_group_images_limit_is_seeded_and_sorted(tmp_path):
    _photos(tmp_path / "g", 7, 0)
    all_files = ev.list_group_images(tmp_path / "g")
    assert len(all_files) == 7 and all_files == sorted(all_files)
    a = ev.list_group_images(tmp_path / "g", limit=3, seed=1)
    assert a == ev.list_group_images(tmp_path / "g", limit=3, seed=1)
    assert len(a) == 3 and a == sorted(a) and set(a) <= set(all_files)
    with pytest.raises(FileNotFoundError, match="no images"):
        (tmp_path / "empty").mkdir()
        ev.list_group_images(tmp_path / "empty")


def test_gray_backend_output_equals_color_gray_baseline(tmp_path):
    files = _photos(tmp_path / "g", 1, 3)
    gt = ev.load_ground_truth(files[0], 32)
    model = ev.resolve_model("gray", torch.device("cpu"), 32)
    out = image_io.pil_to_tensor(model.colorizer(gt))
    expected = M.quantize_8bit(color.rgb_to_gray(image_io.pil_to_tensor(gt)))
    # same L, ab = 0; at most one 8-bit level apart from rounding of L
    assert (out - expected).abs().max() <= 1.0 / 255 + 1e-6


def test_evaluate_function_gray_metrics_match_direct_computation(tmp_path):
    _photos(tmp_path / "g", 3, 1)
    cfg = ev.EvaluationConfig(size=32, fid=False, st_lpips=False, figure_samples=0, device="cpu")
    (row,) = ev.evaluate(["gray"], {"g": tmp_path / "g"}, cfg, progress=False)
    gts = torch.stack([image_io.pil_to_tensor(ev.load_ground_truth(f, 32)) for f in sorted((tmp_path / "g").iterdir())])
    col = ev.resolve_model("gray", torch.device("cpu"), 32).colorizer
    preds = torch.stack([image_io.pil_to_tensor(col(image_io.tensor_to_pil(g))) for g in gts])
    assert row["images"] == 3
    assert row["psnr"] == pytest.approx(M.psnr(preds, gts).mean().item(), rel=1e-6)
    assert row["ssim"] == pytest.approx(M.ssim(preds, gts).mean().item(), rel=1e-6)
    assert row["st_lpips"] is None and row["fid"] is None
    assert row["delta_cf"] == pytest.approx(row["cf_gt"] - row["cf_pred"], abs=1e-9)


def test_cli_end_to_end(tmp_path, tiny_model):
    _photos(tmp_path / "in", 4, 0)
    _photos(tmp_path / "out_dom", 3, 1, sizes=((36, 36),))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "--model", "gray", "--model", f"tiny={tiny_model}",
            "--data", f"in={tmp_path / 'in'}", "--data", f"ood={tmp_path / 'out_dom'}",
            "--out", str(out), "--size", "32", "--batch-size", "3", "--no-fid", "--device", "cpu",
            "--samples", "2", "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("results.json", "results.csv", "results.md", "run.json", "auc_curves.png",
                 "auc_curves.json", "samples.png"):
        assert (out / name).is_file(), name
        assert name in result.output.splitlines()[-1]  # the final "wrote" line names every file
    rows = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["group"]) for r in rows] == [
        ("gray", "in"), ("tiny", "in"), ("gray", "ood"), ("tiny", "ood")
    ]
    for r in rows:
        assert set(ev.RESULT_KEYS) <= set(r)
        assert r["images"] == (4 if r["group"] == "in" else 3)
        assert r["fid"] is None
        assert 0 < r["auc"] <= 100 and 0 < r["auc_rebalanced"] <= 100
        assert -1 <= r["ssim"] <= 1 and r["psnr"] > 0 and r["st_lpips"] >= 0
    gray = [r for r in rows if r["model"] == "gray"]
    tiny = [r for r in rows if r["model"] == "tiny"]
    for g in gray:
        # the gray baseline has no colour: its colourfulness gap is the GT's colourfulness (up to
        # +-1 8-bit level between R, G, B where L -> sRGB with a = b = 0 rounds differently; cf_gt
        # is ~100 on the same 0..255 scale)
        assert g["cf_pred"] < 0.2
        assert g["delta_cf"] == pytest.approx(g["cf_gt"] - g["cf_pred"], abs=1e-9)
        assert g["delta_cf"] == pytest.approx(g["cf_gt"], abs=0.2)
        assert any("gray baseline" in n for n in g["notes"])
    # every model sees the same ground truth
    for g, t in zip(gray, tiny):
        assert g["cf_gt"] == pytest.approx(t["cf_gt"], rel=1e-9)
    # CSV: same rows; markdown: both groups side by side
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["model"], r["group"]) for r in table] == [(r["model"], r["group"]) for r in rows]
    assert float(table[0]["psnr"]) == pytest.approx(rows[0]["psnr"])
    md = (out / "results.md").read_text()
    assert "| model | in | ood |" in md and "short side resized to 32" in md
    curves = json.loads((out / "auc_curves.json").read_text())
    assert len(curves) == 4 and len(curves[0]["raw"]) == M.AUC_MAX_THRESHOLD + 1
    assert M.auc_from_curve(curves[0]["raw"]) == pytest.approx(rows[0]["auc"])
    assert Image.open(out / "samples.png").size[0] > 100


def test_cli_is_deterministic_and_native_protocol_runs(tmp_path, tiny_model):
    _photos(tmp_path / "in", 3, 2)
    args = ["evaluate", "--model", str(tiny_model), "--data", f"in={tmp_path / 'in'}", "--size", "32",
            "--no-fid", "--no-st-lpips", "--device", "cpu", "--samples", "0", "--quiet"]
    runner = CliRunner()
    r1 = runner.invoke(app, args + ["--out", str(tmp_path / "a")])
    r2 = runner.invoke(app, args + ["--out", str(tmp_path / "b")])
    r3 = runner.invoke(app, args + ["--out", str(tmp_path / "c"), "--native"])
    assert r1.exit_code == r2.exit_code == r3.exit_code == 0, r1.output + r3.output
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    c = json.loads((tmp_path / "c" / "results.json").read_text())
    assert a == b
    assert a[0]["model"] == "tiny" and "native resolution" in c[0]["protocol"]
    assert c[0]["cf_gt"] != pytest.approx(a[0]["cf_gt"])  # native GT is not the 32x32 crop


def test_cli_reports_bad_arguments(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--model", "gray", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "NAME=DIR" in res.output
    res = runner.invoke(
        app, ["evaluate", "--model", str(tmp_path / "nope"), "--data", f"x={tmp_path}", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "nope" in res.output


@pytest.mark.slow
def test_cli_with_fid(tmp_path):
    _photos(tmp_path / "in", 3, 4)
    out = tmp_path / "r"
    res = CliRunner().invoke(
        app,
        ["evaluate", "--model", "gray", "--data", f"in={tmp_path / 'in'}", "--out", str(out),
         "--size", "32", "--no-st-lpips", "--device", "cpu", "--quiet"],
    )
    assert res.exit_code == 0, res.output
    (row,) = json.loads((out / "results.json").read_text())
    assert row["fid"] is not None and row["fid"] > 0
    assert any("< 2048" in n for n in row["notes"])


def test_models_run_at_their_own_working_size_unless_told(tmp_path, tiny_model):
    """The default protocol runs each model at its config.json working size (what `colorize`
    does); --working-size overrides it for every model."""
    own = ev.resolve_model(str(tiny_model), torch.device("cpu"), None)
    forced = ev.resolve_model(str(tiny_model), torch.device("cpu"), 64)
    assert own.colorizer.size == 32 and forced.colorizer.size == 64
    assert "each model's own working size" in ev.EvaluationConfig().protocol()
    assert "working short side 64" in ev.EvaluationConfig(working_size=64).protocol()
    with pytest.raises(ValueError, match="working_size"):
        ev.EvaluationConfig(working_size=8)


def test_merge_joins_runs_on_the_same_photos_and_refuses_other_protocols(tmp_path, tiny_model):
    _photos(tmp_path / "in", 3, 4)
    common = ["--data", f"in={tmp_path / 'in'}", "--size", "32", "--no-fid", "--no-st-lpips", "--device", "cpu",
              "--samples", "0", "--quiet"]
    runner = CliRunner()
    for name, models in (("a", ["gray", f"tiny={tiny_model}"]), ("b", ["gray", f"other={tiny_model}"]),
                         ("all", ["gray", f"tiny={tiny_model}", f"other={tiny_model}"])):
        args = ["evaluate", *[x for m in models for x in ("--model", m)], *common, "--out", str(tmp_path / name)]
        assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, ["evaluate-merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    merged = json.loads((tmp_path / "m" / "results.json").read_text())
    together = json.loads((tmp_path / "all" / "results.json").read_text())
    assert merged == together  # rows of separate runs equal those of one run over all models
    curves = json.loads((tmp_path / "m" / "auc_curves.json").read_text())
    assert [c["model"] for c in curves] == ["gray", "tiny", "other"]
    assert (tmp_path / "m" / "auc_curves.png").is_file()
    assert "| other | in |" in (tmp_path / "m" / "results.md").read_text()
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert run["merged_from"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    # another protocol (size) or a conflicting row is refused with the reason
    args = ["evaluate", "--model", "gray", *common, "--size", "36", "--out", str(tmp_path / "c")]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, ["evaluate-merge", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "'size': (32, 36)" in res.output
    with pytest.raises(ValueError, match="not an evaluation output"):
        ev.merge_outputs([tmp_path / "a", tmp_path / "in"], tmp_path / "y")
