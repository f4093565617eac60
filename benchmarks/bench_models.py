#!/usr/bin/env python
"""Inference cost of every registered generator: parameters, FLOPs, throughput, memory.

For each generator at its default (paper-sized) config, plus the network of the shipped default
model (``colorization.inference.checkpoint.DEFAULT_MODEL_DIR/config.json``):

* parameters and GFLOPs per image (``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per
  multiply-add of convolutions and matrix products; counted on the meta device at each size);
* CPU: batch-1 inference (float32, ``torch.inference_mode``, ``--threads`` threads) at each of
  ``--sizes``; median of timed repetitions after one warm-up call; achieved GFLOP/s as a fraction
  of a float32 matrix product measured with the same threads in the same run; peak resident
  memory growth of the measurement (each cell runs in its own forked process);
* CUDA (when available, unless ``--no-gpu``): bf16 autocast + channels_last, eager and
  ``torch.compile``; achieved TFLOP/s as a fraction of a bf16 8192^3 matmul measured in the same
  run; ``torch.cuda.max_memory_allocated``;
* a ratio row: the default model's network vs ``eccv16`` (the classification network of the
  reports).

CPU cells whose warm-up + repetitions would exceed ``--budget-gflop`` are left out (the table
says so); ``--budget-gflop 0`` measures everything.

Usage:
    python benchmarks/bench_models.py                                   # short CPU run (~2-3 min on 2 busy cores)
    python benchmarks/bench_models.py --models resnet_unet eccv16 --sizes 256 512
    python benchmarks/bench_models.py --budget-gflop 0 --reps 10 --gpu-batch 32 --json out.json   # a real machine
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch  # noqa: E402
from common import (  # noqa: E402  (common sets OMP_WAIT_POLICY before torch loads)
    IsolatedError,
    LoadWindow,
    add_omp_arg,
    cuda_peak_mb,
    fmt,
    machine_info,
    machine_lines,
    markdown_table,
    matmul_peak,
    plan_reps,
    run_isolated,
    time_call,
)


@dataclass(frozen=True)
class Spec:
    """A network to measure: a label for the tables, the registry name and config overrides."""

    label: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)


def default_model_spec() -> Spec | None:
    """The network of the shipped default model (its config.json), or None if it is missing."""
    from colorization.inference import checkpoint

    try:
        cfg = checkpoint.read_config(checkpoint.DEFAULT_MODEL_DIR)
    except Exception:  # noqa: BLE001 - the table just goes without the row
        return None
    mc = {k: v for k, v in dict(cfg.get("model_config") or {}).items()}
    if "pretrained" in mc:
        mc["pretrained"] = False
    short = ", ".join(f"{k}={v}" for k, v in mc.items() if k in ("depth", "width", "variant", "base_channels"))
    return Spec(f"default model ({cfg['model']}{', ' + short if short else ''})", cfg["model"], mc)


def registry_specs(names: list[str] | None) -> list[Spec]:
    from colorization.models import get_config_class, list_models

    available = list_models("generator")
    chosen = names or available
    unknown = sorted(set(chosen) - set(available) - {"default"})
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; generators: {available} (or 'default')")
    specs = []
    for name in chosen:
        if name == "default":
            continue
        fields = {f.name for f in dataclasses.fields(get_config_class(name))}
        specs.append(Spec(name, name, {"pretrained": False} if "pretrained" in fields else {}))
    if names is None or "default" in names:
        d = default_model_spec()
        if d is not None:
            specs.append(d)
    return specs


def _build(spec: Spec) -> torch.nn.Module:
    from colorization.models import create_model

    return create_model(spec.name, **spec.config).eval()


def _side(size: int, stride: int) -> int:
    return -(-size // stride) * stride


def count(specs: list[Spec], sizes: list[int]) -> dict[str, dict[str, Any]]:
    """Parameters, stride and GFLOPs per image at each size (meta device: no real compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        with torch.device("meta"):
            model = _build(spec)
            entry: dict[str, Any] = {
                "params": sum(p.numel() for p in model.parameters()),
                "stride": int(model.stride),
                "gflop": {},
                "side": {},
            }
            for size in sizes:
                side = _side(size, model.stride)
                counter = FlopCounterMode(display=False)
                with counter, torch.no_grad():
                    model(torch.empty(1, 1, side, side))
                entry["gflop"][size] = counter.get_total_flops() / 1e9
                entry["side"][size] = side
        out[spec.label] = entry
    return out


# --------------------------------------------------------------------------------------------
# CPU
# --------------------------------------------------------------------------------------------


def cpu_peak(threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    tflops, t, n = matmul_peak("cpu", torch.float32, reps=5)
    return {"gflops": tflops * 1e3, "n": n, "median_s": t.median}


def cpu_cell(spec: Spec, side: int, threads: int, reps: int, warmup: int = 1) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _build(spec)
    x = torch.randn(1, 1, side, side).clamp_(-1, 1)

    def fwd() -> None:
        with torch.inference_mode():
            model(x)

    t = time_call(fwd, warmup=warmup, reps=reps)
    return {"median_s": t.median, "min_s": t.min, "first_s": t.first if warmup else t.times[0],
            "reps": reps, "warmup": warmup}


def run_cpu(args: argparse.Namespace, specs: list[Spec], counts: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    with LoadWindow() as lw:
        peak, _ = run_isolated(cpu_peak, args.threads, isolate=not args.no_isolate)
    peak["load"] = str(lw)
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    ratio = {s.label for s in specs if s.label == "eccv16" or s.label.startswith("default model")}
    jobs = [(s, size) for s in specs for size in args.sizes]
    for spec, size in tqdm(jobs, desc="CPU inference", unit="cell", file=sys.stderr):
        c = counts[spec.label]
        gflop = c["gflop"][size]
        reps, warmup = plan_reps(gflop, args.budget_gflop, args.reps), 1
        if reps == 0 and size in args.ratio_sizes and spec.label in ratio:
            reps, warmup = 1, 0  # the ratio row needs this cell: one call, no warm-up
        if reps == 0:
            cells.setdefault(spec.label, {})[size] = {"skipped": True, "gflop": gflop}
            continue
        with LoadWindow() as lw:
            try:
                res, rss = run_isolated(cpu_cell, spec, c["side"][size], args.threads, reps, warmup,
                                        isolate=not args.no_isolate)
            except IsolatedError as exc:
                print(f"{spec.label} @ {size}: failed\n{exc}", file=sys.stderr)
                cells.setdefault(spec.label, {})[size] = {"failed": True, "gflop": gflop}
                continue
        res.update(gflop=gflop, rss_mib=rss, load=str(lw), img_s=1.0 / res["median_s"])
        res["gflops"] = gflop / res["median_s"]
        res["peak_frac"] = res["gflops"] / peak["gflops"]
        cells.setdefault(spec.label, {})[size] = res
    return {"peak": peak, "cells": cells}


def threads_probe(name: str, config_json: str, side: int, threads: int, reps: int) -> None:
    """Entry point of the threading subprocesses: print one JSON line with the forward timing."""
    import common

    spec = Spec(name, name, json.loads(config_json))
    res = cpu_cell(spec, side, threads, reps)
    res["policy"] = common.OMP_WAIT_POLICY
    print(json.dumps(res))


def run_threads_table(args: argparse.Namespace, spec: Spec, side: int) -> list[dict[str, Any]]:
    """Forward time of ``spec`` at ``side`` px with 1 and 2 threads, OpenMP threads sleeping
    (passive) or spinning (libgomp's default) while they wait; each in a fresh process because the
    wait policy is read when libgomp loads."""
    import os
    import subprocess

    here = str(Path(__file__).resolve().parent)
    rows = []
    for policy in ("passive", "unset"):
        for threads in (1, 2):
            code = (
                f"import bench_models; "
                f"bench_models.threads_probe({spec.name!r}, {json.dumps(spec.config)!r}, {side}, {threads}, "
                f"{args.threads_reps})"
            )
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            with LoadWindow() as lw:
                proc = subprocess.run(
                    [sys.executable, "-c", code, "--omp-wait-policy", policy],
                    capture_output=True, text=True, env=env, timeout=600, check=False, cwd=here,
                )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                rows.append({"threads": threads, "policy": policy, "failed": True, "load": str(lw)})
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res.update(threads=threads, load=str(lw))
            rows.append(res)
    return rows


# --------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------


def gpu_batch(args: argparse.Namespace, size: int) -> int:
    return max(1, round(args.gpu_batch * (256 / size) ** 2))


def _gpu_cell(
    args: argparse.Namespace, spec: Spec, side: int, batch: int, mode: str, dev: torch.device
) -> tuple[Any, float]:
    """Time one (model, size, eager|compile) cell: bf16 autocast, channels_last, inference_mode.
    Returns the timing and the peak memory allocated on the device (MiB; NaN off CUDA)."""
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    model = _build(spec).to(dev).to(memory_format=torch.channels_last)
    net = torch.compile(model, mode=args.compile_mode) if mode == "compile" else model
    x = torch.randn(batch, 1, side, side, device=dev).clamp_(-1, 1).contiguous(memory_format=torch.channels_last)

    def fwd() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            net(x)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    tm = time_call(fwd, warmup=args.gpu_warmup, reps=args.gpu_reps, device=dev)
    return tm, (cuda_peak_mb(dev) if cuda else float("nan"))


def run_gpu(args: argparse.Namespace, specs: list[Spec], counts: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm

    dev = torch.device(args.gpu_device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    with LoadWindow() as lw:
        tflops, t, n = matmul_peak(dev, torch.bfloat16, n=None if cuda else 256, reps=20)
    peak = {"tflops": tflops, "n": n, "median_s": t.median, "load": str(lw)}
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    modes = ["eager"] + (["compile"] if args.compile else [])
    jobs = [(s, size, m) for s in specs for size in args.sizes for m in modes]
    for spec, size, mode in tqdm(jobs, desc="GPU inference", unit="cell", file=sys.stderr):
        c = counts[spec.label]
        batch = gpu_batch(args, size)
        with LoadWindow() as lw:
            try:
                tm, mem = _gpu_cell(args, spec, c["side"][size], batch, mode, dev)
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory, compile failure: report and go on
                print(f"{spec.label} @ {size} ({mode}): failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                cells.setdefault(spec.label, {})[(size, mode)] = {"failed": True}
                continue
            finally:
                if mode == "compile":
                    torch._dynamo.reset()
                if cuda:
                    torch.cuda.empty_cache()
        gflop = c["gflop"][size] * batch
        cells.setdefault(spec.label, {})[(size, mode)] = {
            "batch": batch,
            "median_s": tm.median,
            "first_s": tm.first,
            "img_s": batch / tm.median,
            "tflops": gflop / tm.median / 1e3,
            "peak_frac": gflop / tm.median / 1e3 / tflops,
            "mem_mib": mem,
            "load": str(lw),
        }
    return {"peak": peak, "cells": cells}


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def print_threads_table(spec: Spec, side: int, rows: list[dict[str, Any]]) -> None:
    print()
    print(f"### CPU threads and OpenMP wait policy ({spec.label}, batch 1, {side}x{side})")
    print()
    out = []
    for r in rows:
        policy = "passive (sleep)" if r["policy"].lower().startswith("passive") else "libgomp default (spin)"
        if r.get("failed"):
            out.append([r["threads"], policy, "failed", "-", "-", r["load"]])
            continue
        out.append([r["threads"], policy, fmt(r["median_s"] * 1e3, 0), fmt(r["first_s"] * 1e3, 0),
                    fmt(1 / r["median_s"], 2), r["load"]])
    print(markdown_table(["threads", "OMP_WAIT_POLICY", "median ms", "first ms", "img/s", "load 1-min"], out, "rlrrrr"))


def print_tables(
    args: argparse.Namespace, specs: list[Spec], counts: dict[str, Any], cpu: dict | None, gpu: dict | None
) -> None:
    sizes = args.sizes
    ref = 256 if 256 in sizes else sizes[0]
    print()
    print("## Model size and CPU inference throughput")
    print()
    if cpu is not None:
        p = cpu["peak"]
        print(
            f"CPU float32 matmul peak ({p['n']}x{p['n']}, {args.threads} threads, best of 5): "
            f"{p['gflops']:.1f} GFLOP/s (load {p['load']}). Batch 1, float32, inference_mode; "
            f"median of the timed repetitions after 1 warm-up."
        )
        print()
    headers = ["model", "params (M)", f"GFLOP/img @{ref}"] + [f"img/s @{s}" for s in sizes]
    rows = []
    for spec in specs:
        c = counts[spec.label]
        row: list[Any] = [spec.label, f"{c['params'] / 1e6:.2f}", fmt(c["gflop"][ref], 1)]
        for s in sizes:
            cell = (cpu or {}).get("cells", {}).get(spec.label, {}).get(s)
            if cell is None:
                row.append("-")
            elif cell.get("skipped"):
                row.append(f"skipped ({cell['gflop']:.0f} GFLOP)")
            elif cell.get("failed"):
                row.append("failed")
            else:
                row.append(fmt(cell["img_s"], 2 if cell["img_s"] < 10 else 1))
        rows.append(row)
    print(markdown_table(headers, rows))
    if cpu is not None:
        print()
        print("### CPU detail (one row per measured cell)")
        print()
        headers = ["model", "size", "GFLOP/img", "reps", "median ms", "first ms", "GFLOP/s",
                   "% of matmul peak", "peak RSS growth (MiB)", "load 1-min"]
        rows = []
        for spec in specs:
            for s in sizes:
                cell = cpu["cells"].get(spec.label, {}).get(s)
                if not cell or cell.get("skipped") or cell.get("failed"):
                    continue
                reps = f"{cell['reps']}" if cell["warmup"] else f"{cell['reps']} (no warm-up)"
                rows.append([
                    spec.label, s, fmt(cell["gflop"], 1), reps, fmt(cell["median_s"] * 1e3, 0),
                    fmt(cell["first_s"] * 1e3, 0), fmt(cell["gflops"], 1), f"{100 * cell['peak_frac']:.0f} %",
                    fmt(cell["rss_mib"], 0), cell["load"],
                ])
        print(markdown_table(headers, rows, "lrrrrrrrrr"))

    # ratio row: default model's network vs eccv16
    default = next((s for s in specs if s.label.startswith("default model")), None)
    eccv = next((s for s in specs if s.label == "eccv16"), None)
    if default is not None and eccv is not None:
        print()
        print(f"### {default.label} vs eccv16")
        print()
        cd, ce = counts[default.label], counts[eccv.label]
        headers = ["ratio (default / eccv16)", "params", f"GFLOP @{ref}"] + [f"CPU time @{s}" for s in sizes]
        row = ["default / eccv16", f"{cd['params'] / ce['params']:.2f}x", f"{cd['gflop'][ref] / ce['gflop'][ref]:.2f}x"]
        for s in sizes:
            a = (cpu or {}).get("cells", {}).get(default.label, {}).get(s, {})
            b = (cpu or {}).get("cells", {}).get(eccv.label, {}).get(s, {})
            if "median_s" in a and "median_s" in b:
                row.append(f"{a['median_s'] / b['median_s']:.2f}x")
            else:
                row.append("-")
        print(markdown_table(headers, [row]))
        print()
        print("eccv16 is timed as the raw network (261 logits per pixel); its colours also need "
              "the annealed-mean decoding, which is not included.")

    if gpu is not None:
        p = gpu["peak"]
        print()
        print("## GPU inference (bf16 autocast, channels_last)")
        print()
        print(f"bf16 matmul peak ({p['n']}^3, best of 20): {p['tflops']:.1f} TFLOP/s. "
              f"Median of {args.gpu_reps} repetitions after {args.gpu_warmup} warm-up calls "
              f"('first' includes torch.compile for compiled rows).")
        print()
        headers = ["model", "size", "mode", "batch", "median ms/batch", "first s", "img/s", "TFLOP/s",
                   "% of bf16 matmul peak", "peak mem (MiB)", "load 1-min"]
        rows = []
        for spec in specs:
            for s in sizes:
                for mode in ("eager", "compile"):
                    cell = gpu["cells"].get(spec.label, {}).get((s, mode))
                    if cell is None:
                        continue
                    if cell.get("failed"):
                        rows.append([spec.label, s, mode] + ["failed"] + ["-"] * 7)
                        continue
                    rows.append([
                        spec.label, s, mode, cell["batch"], fmt(cell["median_s"] * 1e3, 2),
                        fmt(cell["first_s"], 1), fmt(cell["img_s"], 1), fmt(cell["tflops"], 1),
                        f"{100 * cell['peak_frac']:.0f} %", fmt(cell["mem_mib"], 0), cell["load"],
                    ])
        print(markdown_table(headers, rows, "lrlrrrrrrrr"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None,
                        help="registry names and/or 'default' (the shipped model's network); "
                             "default: all generators + default")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024], help="square input sides (px)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--reps", type=int, default=3, help="max timed repetitions per CPU cell")
    parser.add_argument("--budget-gflop", type=float, default=300.0,
                        help="CPU compute budget per cell (warm-up + repetitions); 0 = no limit")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU measurements")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA measurements")
    parser.add_argument("--gpu-batch", type=int, default=16,
                        help="GPU batch at 256 px (scaled by pixels for other sizes)")
    parser.add_argument("--gpu-reps", type=int, default=20)
    parser.add_argument("--gpu-device", default="cuda",
                        help="device of the accelerator section (cuda, cuda:1; 'cpu' only to smoke-test that "
                             "code path)")
    parser.add_argument("--gpu-warmup", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile rows")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                        help="torch.compile mode (e.g. default, max-autotune)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="measure CPU cells in this process (no per-cell memory)")
    parser.add_argument("--no-threads-table", dest="threads_table", action="store_false",
                        help="skip the 1 vs 2 threads / OpenMP wait policy comparison")
    parser.add_argument("--threads-size", type=int, default=256, help="input side of the threads comparison")
    parser.add_argument("--threads-reps", type=int, default=2)
    parser.add_argument("--ratio-sizes", nargs="+", type=int, default=[256, 512],
                        help="sizes at which the default model and eccv16 are always measured (ratio row)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    add_omp_arg(parser)
    args = parser.parse_args()

    info = machine_info()
    for line in machine_lines(info):
        print(line)
    specs = registry_specs(args.models)
    counts, _ = run_isolated(count, specs, args.sizes, isolate=not args.no_isolate)
    cpu = None if args.no_cpu else run_cpu(args, specs, counts)
    want_gpu = not args.no_gpu and (torch.cuda.is_available() or args.gpu_device != "cuda")
    gpu = run_gpu(args, specs, counts) if want_gpu else None
    print_tables(args, specs, counts, cpu, gpu)
    threads_rows = None
    if args.threads_table and not args.no_cpu:
        spec = next((s for s in specs if s.label.startswith("default model")), specs[0])
        spec_counts = counts[spec.label]
        side = spec_counts["side"].get(args.threads_size) or _side(args.threads_size, spec_counts["stride"])
        threads_rows = run_threads_table(args, spec, side)
        print_threads_table(spec, side, threads_rows)
    if gpu is None and not args.no_gpu:
        print()
        print("(no CUDA device: GPU rows not measured)")
    if args.json:
        raw = {"machine": info, "args": vars(args) | {"json": str(args.json)}, "counts": counts,
               "cpu": cpu, "gpu": _jsonable(gpu), "threads": threads_rows}
        args.json.write_text(json.dumps(raw, indent=2, default=str) + "\n", encoding="utf-8")


def _jsonable(gpu: dict | None) -> dict | None:
    if gpu is None:
        return None
    cells = {k: {f"{s}/{m}": v for (s, m), v in d.items()} for k, d in gpu["cells"].items()}
    return {"peak": gpu["peak"], "cells": cells}


if __name__ == "__main__":
    main()
