"""colorize-many: deterministic sharding across ranks, atomic resumable outputs, merged summary."""

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
from colorization.batch.distributed import STATE_DIR, DistContext, ManyConfig, colorize_many, iter_entries
from colorization.batch.jobs import FileDataset

runner = CliRunner()


@pytest.fixture()
def folder(tmp_path) -> Path:
    """7 good images (two sizes, nested) and 1 broken file."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["a.jpg", "b.png", "c.jpg", "sub/d.png", "sub/e.jpg", "sub/deeper/f.png", "sub/deeper/g.webp"]
    for i, name in enumerate(names):
        h, w = (24, 40) if i % 2 else (30, 30)
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(root / name)
    (root / "sub" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def _outputs(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and STATE_DIR not in p.parts)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "colorization.cli", "colorize-many", *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_write_every_image_once_and_a_rerun_skips_all(folder, model_dir, tmp_path):
    out = tmp_path / "out"
    args = ("--input", str(folder), "-o", str(out), "--model", str(model_dir), "--device", "cpu", "--workers", "0")
    first = _torchrun(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    summary = json.loads((out / STATE_DIR / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"], summary["world_size"]) == (7, 1, 0, 2)
    assert summary["failures"][0][0].endswith("broken.jpg")
    assert "7 colorized, 0 skipped, 1 failed" in first.stdout
    # deterministic shards: entry i goes to rank i % 2, each written by exactly that rank
    entries = list(iter_entries(ManyConfig(out_dir=str(out), input_dir=str(folder))))
    expected_done = [0, 0]
    for i, p in enumerate(entries):
        expected_done[i % 2] += p.name != "broken.jpg"
    assert [r["done"] for r in summary["per_rank"]] == expected_done
    assert sum(r["done"] for r in summary["per_rank"]) == 7  # nothing written twice
    good = sorted(str(p.relative_to(folder)) for p in entries if p.name != "broken.jpg")
    assert _outputs(out) == good  # mirrored, no temporary files left
    for rel in good:
        with Image.open(folder / rel) as src, Image.open(out / rel) as dst:
            assert dst.size == src.size and dst.mode == "RGB"
    for r in (0, 1):
        assert json.loads((out / STATE_DIR / f"rank-{r:05d}.json").read_text())["rank"] == r

    # a rerun (here in one process: resuming does not depend on the world size) skips everything
    mtimes = {rel: (out / rel).stat().st_mtime_ns for rel in good}
    second = runner.invoke(cli.app, ["colorize-many", *args])
    assert second.exit_code == 0, second.output
    summary = json.loads((out / STATE_DIR / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (0, 1, 7)
    assert {rel: (out / rel).stat().st_mtime_ns for rel in good} == mtimes


@pytest.mark.slow
def test_local_spawn_with_nproc(folder, model_dir, tmp_path):
    """``--nproc 2`` spawns two gloo ranks without torchrun; a second run with 2 ranks skips all."""
    out = tmp_path / "out"
    args = ["colorize-many", "--input", str(folder), "-o", str(out), "--model", str(model_dir),
            "--device", "cpu", "--workers", "1", "--nproc", "2"]
    first = runner.invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    assert "7 colorized, 0 skipped, 1 failed" in first.output
    summary = json.loads((out / STATE_DIR / "summary.json").read_text())
    assert summary["world_size"] == 2 and sum(r["done"] for r in summary["per_rank"]) == 7
    second = runner.invoke(cli.app, args)
    assert "0 colorized, 7 skipped, 1 failed" in second.output


def test_list_file_resume_and_format(folder, model_dir, tmp_path):
    listing = tmp_path / "files.txt"
    abs_entry = folder / "sub" / "deeper" / "f.png"
    listing.write_text(
        f"# a comment\n{folder.name}/a.jpg\n\n{folder.name}/b.png\n{abs_entry}\n{folder.name}/missing.png\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(
        cli.app,
        ["colorize-many", "--list", str(listing), "-o", str(out), "--model", str(model_dir),
         "--device", "cpu", "--workers", "0", "--format", "png", "--fail-on-error"],
    )
    assert result.exit_code == 1  # missing.png, with --fail-on-error
    assert "3 colorized, 0 skipped, 1 failed" in result.output
    # relative entries mirror below the list's folder; all outputs are PNG
    assert _outputs(out) == sorted(["in/a.png", "in/b.png", "in/sub/deeper/f.png"])
    (out / "in" / "b.png").unlink()  # as if the job had crashed before writing it
    config = ManyConfig(
        out_dir=str(out), list_file=str(listing), model=str(model_dir), device="cpu", workers=0, fmt="png"
    )
    summary = colorize_many(config, DistContext(), progress=False)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (1, 2, 1)
    assert (out / "in" / "b.png").is_file()


def test_shards_are_disjoint_and_complete(folder, tmp_path):
    config = ManyConfig(out_dir=str(tmp_path / "out"), input_dir=str(folder))
    seen: list[int] = []
    for rank in range(3):
        items = list(FileDataset(config.entries(), config.outputs(), size=32, stride=4, rank=rank, world_size=3))
        assert all(it.index % 3 == rank for it in items)
        seen += [it.index for it in items]
    assert sorted(seen) == list(range(8))


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        ManyConfig(out_dir="o")
    with pytest.raises(ValueError, match="fmt"):
        ManyConfig(out_dir="o", input_dir="i", fmt="gif")
    result = runner.invoke(cli.app, ["colorize-many", "--input", str(tmp_path / "none"), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_output_folder_inside_the_input_is_not_walked(folder, model_dir):
    """#22: an output folder inside --input was taken for input on a rerun."""
    config = ManyConfig(out_dir=str(folder / "sub" / "out"), input_dir=str(folder), model=str(model_dir), workers=0)
    first = colorize_many(config, progress=False)
    assert (first["done"], first["failed"]) == (7, 1)
    assert sorted(str(p) for p in iter_entries(config)) == sorted(
        str(p) for p in folder.rglob("*") if p.is_file() and "out" not in p.relative_to(folder).parts
    )
    second = colorize_many(config, progress=False)
    assert (second["done"], second["skipped"], second["failed"]) == (0, 7, 1)
