#!/usr/bin/env python
"""Start-up cost of ``colorize``: one 512x512 gray JPEG end to end, as a process, against
``python -c "import torch"`` alone, timed in the same run.

Both commands run ``--reps`` times, interleaved (torch, colorize, torch, colorize, ...) so that a
change in the machine's load hits both alike; the table gives the median and the fastest run of
each and the difference of the medians, in wall-clock seconds and in CPU seconds (user + system,
of the process and its threads: far less sensitive than the wall clock to other work on a shared
machine). The target (issue #31) is a difference of at most 0.5 s.
``colorize`` is started the way its console script starts it (``colorization.cli.colorize_app``),
with ``--force`` so that every run writes its output.

A second table splits one ``colorize`` run into its stages, measured inside one process (with the
garbage collector paused until the model is loaded, as the command does): the command line's
imports (typer and the ``colorize`` command), torch, the colorizing modules, loading the shipped
model, the first photo (file to file, with the one-off costs: first convolutions,
lookup tables, image plugins) and a second photo (the same file again: the steady state). It also
lists which optional or heavy modules (FastAPI, PyAV, OpenCV, ONNX, matplotlib, SciPy) a one-photo
run imports: OpenCV only (the fast Lab -> sRGB of every photo).

``--baseline-src DIR`` also times the ``colorize`` of another checkout (its ``src`` folder, e.g. a
``git archive`` of an older commit) in the same interleaved loop: before and after in one run.

Usage:
    python benchmarks/bench_startup.py              # 7 repetitions each (~40 s on 2 busy cores)
    python benchmarks/bench_startup.py --reps 15 --json startup.json
    mkdir /tmp/before && git archive 654d0b0 src | tar -x -C /tmp/before && \
        python benchmarks/bench_startup.py --baseline-src /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import LoadWindow, add_omp_arg, machine_lines, markdown_table  # noqa: E402  (sets OMP_WAIT_POLICY)

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5
HEAVY = ("fastapi", "uvicorn", "av", "cv2", "onnx", "onnxruntime", "matplotlib", "scipy")

COLORIZE = "import sys; from colorization.cli import colorize_app; sys.argv[0] = 'colorize'; sys.exit(colorize_app())"

STAGES = r"""
import gc, json, shutil, sys, time
from pathlib import Path
clock = time.perf_counter
marks = {}
gc.disable()  # as the command does until its model is loaded (colorization.commands.common.startup_done)
t = clock()
import typer  # noqa: F401
import colorization.commands.colorize  # noqa: F401
marks["command line (typer, the colorize command)"] = clock() - t; t = clock()
import torch  # noqa: F401
marks["import torch"] = clock() - t; t = clock()
from colorization.batch import jobs
from colorization.inference.colorizer import Colorizer
marks["colorizing modules"] = clock() - t; t = clock()
colorizer = Colorizer.from_pretrained(None)
gc.freeze()
gc.enable()
marks["load the shipped model"] = clock() - t
photo, out = Path(sys.argv[1]), Path(sys.argv[2])
for label in ("first photo, file to file", "second photo (steady state)"):
    shutil.rmtree(out, ignore_errors=True)
    t = clock()
    summary = jobs.colorize_files(colorizer, [(photo, None)], jobs.Outputs(out), unique_outputs=True)
    marks[label] = clock() - t
    assert summary.done == 1, summary
print(json.dumps({"marks": marks, "heavy": sorted(m for m in sys.argv[3].split(",") if m in sys.modules)}))
"""


def _run(cmd: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one run of ``cmd``; its CPU seconds (user + system) appended to ``cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--baseline-src", type=Path, help="also time the colorize of this src folder (a checkout)")
    add_omp_arg(parser)
    args = parser.parse_args()

    from PIL import Image

    def env_for(src: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
        return env

    env = env_for(ROOT / "src")
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        photo = Path(tmp) / "one.jpg"
        gray = Image.open(ROOT / "examples" / "astronaut_gray.jpg").convert("L").resize((512, 512))
        gray.save(photo, quality=90)
        out = Path(tmp) / "out"
        torch_cmd = [sys.executable, "-c", "import torch"]
        colorize_cmd = [sys.executable, "-c", COLORIZE, str(photo), "-o", str(out), "--force"]
        runs = {"torch": (torch_cmd, env), "colorize": (colorize_cmd, env)}
        if args.baseline_src:
            runs["baseline"] = (colorize_cmd, env_for(args.baseline_src.resolve()))
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        _run(torch_cmd, env)  # page the libraries in once
        with LoadWindow() as window:
            for _ in range(args.reps):
                for key, (cmd, cmd_env) in runs.items():
                    times[key].append(_run(cmd, cmd_env, cpu[key]))
        stage_run = subprocess.run(
            [sys.executable, "-c", STAGES, str(photo), str(Path(tmp) / "stages"), ",".join(HEAVY)],
            env=env, capture_output=True, text=True, check=True,
        )
    stages = json.loads(stage_run.stdout.strip().splitlines()[-1])

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    delta = med["colorize"] - med["torch"]
    print("\n".join(machine_lines()))
    print(f"1-minute load average over the runs: {window}")
    print()
    labels = {"torch": 'python -c "import torch"', "colorize": "colorize one.jpg -o out/ (512x512)",
              "baseline": f"the same, {args.baseline_src}"}
    print(markdown_table(
        ["command", "median (s)", "fastest (s)", "median - import torch (s)", "CPU s (median)",
         "CPU - import torch (s)", "runs"],
        [[labels[k], f"{med[k]:.2f}", f"{min(v):.2f}", f"{med[k] - med['torch']:+.2f}", f"{med_cpu[k]:.2f}",
          f"{med_cpu[k] - med_cpu['torch']:+.2f}", len(v)] for k, v in times.items()],
    ))
    verdict = "met" if delta <= TARGET_S else "missed"
    print(f"\ncolorize - import torch: {delta:.2f} s (medians; target <= {TARGET_S} s: {verdict})\n")
    print(markdown_table(["stage (one process)", "s"], [[k, f"{v:.3f}"] for k, v in stages["marks"].items()]))
    print(f"\noptional or heavy modules imported by a one-photo run: {', '.join(stages['heavy']) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({
            "times": times, "cpu": cpu, "median": med, "median_cpu": med_cpu, "difference": delta,
            "target": TARGET_S,
            "stages": stages["marks"], "heavy_imported": stages["heavy"],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
