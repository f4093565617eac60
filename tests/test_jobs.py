"""The file job shared by ``colorize`` and ``colorize-many``: output-path rule, planning, writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorization.batch import jobs
from colorization.inference.colorizer import Colorizer


def test_output_path_rule(tmp_path):
    out = Path("out")
    assert jobs.output_path(Path("in/a/b.jpg"), None, out) == out / "b.jpg"  # named directly
    assert jobs.output_path(Path("in/a/b.jpg"), Path("in"), out) == out / "a" / "b.jpg"  # mirrored
    assert jobs.output_path(Path("in/a/b.jpg"), Path("in"), out, "jpeg") == out / "a" / "b.jpg"
    assert jobs.output_path(Path("in/a/b.jpeg"), Path("in"), out, "webp") == out / "a" / "b.webp"
    # outside the root: mirrored whole, never above out_dir
    assert jobs.output_path(Path("/data/x/c.png"), Path("in"), out) == out / "data" / "x" / "c.png"
    assert jobs.output_path(Path("../up/d.png"), Path("in"), out) == out / "up" / "d.png"
    assert jobs.compare_path(out / "e.png") == out / "e_compare.png"


def _gray(path: Path, seed: int = 0, size=(24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8), "L").save(path)
    return path


def test_plan_never_targets_the_input_and_claims_each_output_once(tmp_path):
    a, b = _gray(tmp_path / "in" / "a.png"), _gray(tmp_path / "in" / "a.jpg")
    root = tmp_path / "in"
    same = jobs.Outputs(root, force=True)
    assert same.plan(0, a, root).status == "failed"  # even with force
    assert "would overwrite the input" in same.plan(0, a, root).reason
    claimed: dict = {}
    to_png = jobs.Outputs(tmp_path / "out", fmt="png")
    assert to_png.plan(0, a, root, claimed).status == "todo"
    clash = to_png.plan(1, b, root, claimed)
    assert clash.status == "failed" and str(a) in clash.reason and clash.reason.startswith(str(b))
    _gray(tmp_path / "out" / "a.png")
    assert to_png.plan(0, a, root).status == "skipped"
    # with compare, an output without its comparison is still to do
    assert jobs.Outputs(tmp_path / "out", fmt="png", compare=True).plan(0, a, root).status == "todo"


def test_colorize_files_counts_reports_and_resumes(tmp_path, model_dir):
    root = tmp_path / "in"
    files = [_gray(root / f"{i}.png", i, (24 + 8 * (i % 2), 32)) for i in range(5)]
    (root / "bad.png").write_bytes(b"not an image")
    entries = [(f, root) for f in [*files, root / "bad.png"]]
    colorizer = Colorizer.from_pretrained(model_dir, device="cpu")
    seen: list[jobs.Task] = []
    outputs = jobs.Outputs(tmp_path / "out", compare=True)
    summary = jobs.colorize_files(colorizer, entries, outputs, batch_size=2, progress=seen.append)
    assert (summary.done, summary.skipped, summary.failed) == (5, 0, 1)
    assert summary.failures[0][0] == str(root / "bad.png") and summary.failures[0][1].startswith(str(root / "bad.png"))
    assert sorted(t.index for t in seen) == list(range(6))
    for f in files:
        assert (tmp_path / "out" / f.name).is_file() and (tmp_path / "out" / f"{f.stem}_compare.png").is_file()
    again = jobs.colorize_files(colorizer, entries, outputs)
    assert (again.done, again.skipped, again.failed) == (0, 5, 1)
    with pytest.raises(ValueError, match="saturation"):
        jobs.colorize_files(colorizer, entries, outputs, saturation=3.0)
