#!/usr/bin/env python
"""Training throughput per model, and whether the data loader keeps the device busy.

Sections (``--sections``, all by default):

``models``
    For every registered generator (default configs; plus the shipped default model's network) at
    each ``--crops`` size: training steps exactly as the trainer does them (``data.batch_to_lab``,
    the objective's forward, backward, gradient clipping, AdamW step) on a synthetic uint8 batch;
    images/s from the median step time after one warm-up step; peak memory (CPU: RSS growth of
    the forked measurement process; CUDA: ``max_memory_allocated``). ``eccv16`` trains with the
    classification objective (its default head), the others with L1 regression. CPU cells whose
    estimated cost (3 x forward FLOPs x batch x (warm-up + steps)) exceeds ``--budget-gflop`` are
    left out; ``--budget-gflop 0`` runs everything. On CUDA: bf16 autocast + channels_last as in
    the trainer, optionally ``--compile``.
``loader``
    The default model trained on a real :class:`colorization.data.ImageFolderDataset` (default
    ``/work/shared/data/train``, ``--max-images`` 2000, grayscale filter off unless ``--filters``)
    through :func:`colorization.data.build_loader`: per step, the time blocked waiting for the next
    batch vs the compute time; plus the loader alone and compute alone.
``recipes``
    Whole training recipes side by side (``--recipes``, training config files, default: the old
    and the new default-model recipes): each recipe's network, objective (with its options: the
    hybrid objective's simulated hints included), autocast (``amp: bf16`` also on the CPU),
    channels_last and frozen stages, at each of the recipe's crop sizes (``stages``), batch
    ``--recipe-batch``, on a synthetic batch; the encoder weights are not loaded (same cost).
``trainer``
    :func:`colorization.train.train` itself for a few steps on the same data (its own
    ``images_per_s`` log), as a cross-check of the hand-written loop.
``realism``
    The realism recipe (``--realism-recipe``, default ``configs/realism.yaml``; the ``realism``
    objective) at its crop, batch ``--recipe-batch``, with its autocast and channels_last, on a
    synthetic batch (generator weights not loaded: same cost; the perceptual network's are): the
    guard-only step of the same generator (the ``hybrid`` objective: what the shipped model
    trained with), the realism **generator step** (guard + perceptual + adversarial, backward,
    AdamW), the **critic step** of the joint phase (on that step's generated ab) and of critic
    pre-training (which runs the frozen generator too), and the **perceptual loss** alone (the
    truth's forward, the prediction's forward and backward to the input). Each critic of
    ``--critic-widths`` x ``--critic-sn`` and each perceptual network of ``--perceptual-nets``
    is measured the same way.

Usage:
    python benchmarks/bench_train.py                                   # short CPU run (~2-3 min on 2 busy cores)
    python benchmarks/bench_train.py --sections models --models resnet_unet --crops 128 256 --batch-size 8
    python benchmarks/bench_train.py --sections recipes loader --loader-recipe configs/default.yaml \
        --loader-batch 32 --loader-crop 128          # old vs new recipe; does the loader keep up?
    python benchmarks/bench_train.py --device cuda --batch-size 64 --steps 30 --budget-gflop 0 --compile --workers 8
    python benchmarks/bench_train.py --sections realism --critic-widths 16 32 64 --critic-sn on off \
        --perceptual-nets lite0 lite2 stlpips      # the realism stage's step costs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch  # noqa: E402
from bench_models import Spec, count, registry_specs  # noqa: E402
from common import (  # noqa: E402  (common sets OMP_WAIT_POLICY before torch loads)
    IsolatedError,
    LoadWindow,
    add_omp_arg,
    cuda_peak_mb,
    fmt,
    machine_info,
    machine_lines,
    markdown_table,
    plan_reps,
    run_isolated,
    sync,
)

DEFAULT_DATA = Path("/work/shared/data/train")


def _device(args: argparse.Namespace) -> torch.device:
    if args.device:
        return torch.device(args.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _objective(spec: Spec) -> Any:
    from colorization.models import create_model
    from colorization.train.objectives import build_objective

    gen = create_model(spec.name, **spec.config)
    kind = "regression" if getattr(gen.config, "out_channels", 2) == 2 else "classification"
    return build_objective(kind, gen), kind


def _recipe_objective(path: Path) -> tuple[Any, dict[str, Any]]:
    """The objective of a training config file (encoder weights not loaded) and its recipe facts."""
    from colorization.models import create_model
    from colorization.train import load_config_file
    from colorization.train.objectives import build_objective

    raw = load_config_file(path)
    mc = dict(raw.get("model_config") or {})
    if "pretrained" in mc:
        mc["pretrained"] = False
    gen = create_model(raw["model"], **mc)
    objective = build_objective(raw.get("objective", "regression"), gen, **dict(raw.get("objective_options") or {}))
    crops = [int(st["crop"]) for st in raw.get("stages") or [] if "crop" in st] or [int(raw.get("crop", 128))]
    facts = {"model": raw["model"], "objective": raw.get("objective", "regression"), "amp": raw.get("amp") or "auto",
             "channels_last": bool(raw.get("channels_last")), "freeze_stages": mc.get("freeze_stages", 0),
             "crops": sorted(set(crops))}
    return objective, facts


class Stepper:
    """One training step as ``colorization.train`` does it (single phase objectives)."""

    def __init__(self, objective: Any, device: torch.device, amp: bool, channels_last: bool, compile_: bool) -> None:
        self.objective = objective.to(device).train()
        if channels_last:
            self.objective.to(memory_format=torch.channels_last)
        self.model = torch.compile(self.objective) if compile_ else self.objective
        params = self.objective.phase_parameters("main")
        self.opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
        self.params = params
        self.device = device
        self.amp = amp
        self.channels_last = channels_last

    def __call__(self, rgb_u8: torch.Tensor) -> float:
        from colorization import data as cdata

        l_norm, ab_norm = cdata.batch_to_lab(rgb_u8.to(self.device, non_blocking=True), self.device)
        if self.channels_last:
            l_norm = l_norm.contiguous(memory_format=torch.channels_last)
            ab_norm = ab_norm.contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model({"l": l_norm, "ab": ab_norm}, "main")
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return 0.0


def _synthetic_batch(batch: int, crop: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    low = torch.randint(0, 256, (batch, 3, max(2, crop // 16), max(2, crop // 16)), generator=g).float()
    img = torch.nn.functional.interpolate(low, size=(crop, crop), mode="bilinear", align_corners=False)
    return img.round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def model_cell(args: argparse.Namespace, spec: Spec, crop: int, steps: int) -> dict[str, Any]:
    dev = _device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    objective, kind = _objective(spec)
    cuda = dev.type == "cuda"
    step = Stepper(objective, dev, amp=cuda and not args.no_amp, channels_last=cuda, compile_=args.compile)
    rgb = _synthetic_batch(args.batch_size, crop)
    if cuda:
        rgb = rgb.pin_memory()
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    first = float("nan")
    for i in range(args.warmup + steps):
        sync(dev)
        t0 = time.perf_counter()
        step(rgb)
        sync(dev)
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
        if i >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    return {"kind": kind, "median_s": med, "first_s": first, "steps": steps, "img_s": args.batch_size / med,
            "mem_mib": cuda_peak_mb(dev) if cuda else None}


def section_models(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    specs = registry_specs(args.models)
    counts, _ = run_isolated(count, specs, args.crops)
    dev = _device(args)
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    jobs = [(s, c) for s in specs for c in args.crops]
    for spec, crop in tqdm(jobs, desc="training steps", unit="cell", file=sys.stderr):
        gflop_step = 3 * counts[spec.label]["gflop"][crop] * args.batch_size
        steps = args.steps if dev.type == "cuda" else plan_reps(gflop_step, args.budget_gflop, args.steps, args.warmup)
        if crop % counts[spec.label]["stride"]:
            note = f"crop not a multiple of stride {counts[spec.label]['stride']}"
            cells.setdefault(spec.label, {})[crop] = {"note": note}
            continue
        if steps == 0:
            cells.setdefault(spec.label, {})[crop] = {"note": f"skipped (~{gflop_step:.0f} GFLOP/step)"}
            continue
        with LoadWindow() as lw:
            try:
                # CUDA cells run in this process (a forked child cannot use CUDA after the parent did)
                res, rss = run_isolated(model_cell, args, spec, crop, steps, isolate=dev.type != "cuda")
            except (IsolatedError, RuntimeError) as exc:
                print(f"{spec.label} @ {crop}: failed: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
                cells.setdefault(spec.label, {})[crop] = {"note": "failed"}
                continue
        res.update(load=str(lw), rss_mib=rss, gflop_step=gflop_step)
        res["gflops"] = gflop_step / res["median_s"]
        cells.setdefault(spec.label, {})[crop] = res
    return {"specs": [s.label for s in specs], "counts": counts, "cells": cells, "device": str(dev)}


def print_models(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    dev = res["device"]
    how = "bf16 autocast, channels_last" if dev.startswith("cuda") and not args.no_amp else "float32"
    print(f"## Training throughput per model ({dev}, {how}, batch {args.batch_size}"
          f"{', torch.compile' if args.compile else ''}; {args.threads} CPU threads)")
    print()
    headers = ["model", "objective", "crop", "steps", "median s/step", "first step s", "images/s",
               "GFLOP/s (3x fwd)", "peak memory (MiB)", "load 1-min"]
    rows = []
    for label in res["specs"]:
        for crop in args.crops:
            cell = res["cells"].get(label, {}).get(crop)
            if cell is None:
                continue
            if "note" in cell:
                rows.append([label, "-", crop, "-", cell["note"], "-", "-", "-", "-", "-"])
                continue
            mem = cell["mem_mib"] if cell["mem_mib"] is not None else cell["rss_mib"]
            rows.append([label, cell["kind"], crop, cell["steps"], fmt(cell["median_s"], 3), fmt(cell["first_s"], 2),
                         fmt(cell["img_s"], 2), fmt(cell["gflops"], 1), fmt(mem, 0), cell["load"]])
    print(markdown_table(headers, rows, "llrrrrrrrr"))
    if not dev.startswith("cuda"):
        print()
        print("CPU peak memory = RSS growth of the measurement process (weights, gradients, AdamW state, "
              "activations, allocator caches).")


# --------------------------------------------------------------------------------------------
# recipes side by side
def _resolved(facts: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    """The recipe's autocast as the trainer resolves it on ``dev`` ("bf16" or "fp32"), and
    channels_last where the trainer uses it (CUDA, or the CPU under bf16)."""
    from colorization.train.processes import resolve_amp, resolve_channels_last

    bf16 = resolve_amp(facts["amp"], dev)
    return {**facts, "amp": "bf16" if bf16 else "fp32",
            "channels_last": resolve_channels_last(facts["channels_last"], bf16, dev)}


# --------------------------------------------------------------------------------------------


def recipe_cell(args: argparse.Namespace, path: Path, crop: int) -> dict[str, Any]:
    dev = _device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    objective, facts = _recipe_objective(path)
    facts = _resolved(facts, dev)
    step = Stepper(objective, dev, amp=facts["amp"] == "bf16", channels_last=facts["channels_last"], compile_=False)
    rgb = _synthetic_batch(args.recipe_batch, crop)
    times = []
    for i in range(args.warmup + args.steps):
        sync(dev)
        t0 = time.perf_counter()
        step(rgb)
        sync(dev)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {**facts, "crop": crop, "median_s": med, "img_s": args.recipe_batch / med, "steps": len(times)}


def section_recipes(args: argparse.Namespace) -> dict[str, Any]:
    cells = []
    for path in args.recipes:
        facts, _ = run_isolated(_recipe_facts, path)
        for crop in args.recipe_crops or facts["crops"]:
            with LoadWindow() as lw:
                res, rss = run_isolated(recipe_cell, args, path, crop, isolate=_device(args).type != "cuda")
            res.update(recipe=str(path), load=str(lw), rss_mib=rss)
            cells.append(res)
            print(f"{path} @ {crop}: {res['img_s']:.1f} img/s", file=sys.stderr)
    return {"cells": cells, "device": str(_device(args))}


def _recipe_facts(path: Path) -> dict[str, Any]:
    return _recipe_objective(path)[1]


def print_recipes(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"## Training recipes side by side ({res['device']}, batch {args.recipe_batch}, synthetic batch, "
          f"forward + backward + AdamW, median of {args.steps} steps; {args.threads} CPU threads)")
    print()
    headers = ["recipe", "model", "objective", "autocast", "channels_last", "frozen stages", "crop",
               "median s/step", "images/s", "vs first recipe", "peak RSS growth (MiB)", "load 1-min"]
    base: dict[int, float] = {}
    rows = []
    for c in res["cells"]:
        base.setdefault(c["crop"], c["img_s"])
        rows.append([c["recipe"], c["model"], c["objective"], c["amp"], "yes" if c["channels_last"] else "no",
                     c["freeze_stages"], c["crop"], fmt(c["median_s"], 3), fmt(c["img_s"], 1),
                     f"{c['img_s'] / base[c['crop']]:.2f}x", fmt(c["rss_mib"], 0), c["load"]])
    print(markdown_table(headers, rows, "llllllrrrrrl"))


# --------------------------------------------------------------------------------------------
# loader vs compute
# --------------------------------------------------------------------------------------------


def _dataset(args: argparse.Namespace) -> Any:
    from colorization import data as cdata

    return cdata.ImageFolderDataset(
        [str(d) for d in args.data], crop=args.loader_crop, train=True, max_images=args.max_images,
        drop_grayscale=args.filters, min_colorfulness_quantile=0.26 if args.filters else None,
        progress=False,
    )


def loader_child(args: argparse.Namespace) -> dict[str, Any]:
    from colorization import data as cdata

    dev = _device(args)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ds = _dataset(args)
    index_s = time.perf_counter() - t0
    bs = args.loader_batch
    cuda = dev.type == "cuda"

    # 1) loader alone
    loader = cdata.build_loader(ds, bs, workers=args.workers, shuffle=True, seed=0, pin_memory=cuda)
    it = iter(loader)
    t0 = time.perf_counter()
    next(it)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for _ in range(args.loader_steps):
        n += next(it)["rgb"].shape[0]
    loader_rate = n / (time.perf_counter() - t0)
    del it, loader

    # 2) training on the loader: wait vs compute per step (loader created before the model, as in the trainer)
    loader = cdata.build_loader(ds, bs, workers=args.workers, shuffle=True, seed=1, pin_memory=cuda)
    it = iter(loader)
    torch.manual_seed(0)
    if args.loader_recipe is not None:
        objective, facts = _recipe_objective(args.loader_recipe)
        facts = _resolved(facts, dev)
        label = f"{args.loader_recipe} ({facts['model']}, {facts['objective']}, {facts['amp']})"
        step = Stepper(objective, dev, amp=facts["amp"] == "bf16", channels_last=facts["channels_last"], compile_=False)
    else:
        spec = next(s for s in registry_specs(["default"]))
        objective, _ = _objective(spec)
        label = spec.label
        step = Stepper(objective, dev, amp=cuda and not args.no_amp, channels_last=cuda, compile_=args.compile)
    step(next(it)["rgb"])  # warm-up (and worker start-up)
    sync(dev)
    waits, computes = [], []
    for _ in range(args.loader_steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        step(batch["rgb"])
        sync(dev)
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        computes.append(t2 - t1)
    del it, loader
    # 3) compute alone on one fixed batch
    fixed = _synthetic_batch(bs, args.loader_crop)
    alone = []
    for _ in range(max(2, args.loader_steps // 2)):
        sync(dev)
        t0 = time.perf_counter()
        step(fixed)
        sync(dev)
        alone.append(time.perf_counter() - t0)
    return {
        "images": len(ds), "index_s": index_s, "startup_s": startup, "loader_img_s": loader_rate,
        "wait_ms": 1e3 * statistics.mean(waits), "compute_ms": 1e3 * statistics.mean(computes),
        "wait_max_ms": 1e3 * max(waits), "step_img_s": bs * len(waits) / (sum(waits) + sum(computes)),
        "compute_alone_img_s": bs / statistics.median(alone), "model": label,
        "computes_ms": [round(1e3 * c) for c in computes], "alone_ms": [round(1e3 * a) for a in alone],
        "mem_mib": cuda_peak_mb(dev) if cuda else None,
    }


def section_loader(args: argparse.Namespace) -> dict[str, Any]:
    with LoadWindow() as lw:
        res, rss = run_isolated(loader_child, args, isolate=_device(args).type != "cuda")
    res.update(load=str(lw), rss_mib=rss)
    return res


def print_loader(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"## Does the data loader keep the device busy? ({res['model']}, {res['images']} images of "
          f"{', '.join(map(str, args.data))}, crop {args.loader_crop}, batch {args.loader_batch}, "
          f"{args.workers} worker(s), {args.threads} threads)")
    print()
    total = res["wait_ms"] + res["compute_ms"]
    rows = [
        ["dataset indexing (find files, subset)", fmt(res["index_s"], 1) + " s", "-"],
        ["loader start-up (first batch)", fmt(res["startup_s"], 2) + " s", "-"],
        ["loader alone", "-", fmt(res["loader_img_s"], 1)],
        ["compute alone (fixed batch)", "-", fmt(res["compute_alone_img_s"], 2)],
        ["training on the loader", f"{fmt(total, 0)} ms/step", fmt(res["step_img_s"], 2)],
        ["  of which waiting for data", f"{fmt(res['wait_ms'], 1)} ms/step ({100 * res['wait_ms'] / total:.1f} %; "
         f"max {fmt(res['wait_max_ms'], 0)} ms)", "-"],
        ["  of which compute", f"{fmt(res['compute_ms'], 0)} ms/step", "-"],
    ]
    print(markdown_table(["what", "time", "images/s"], rows, "lrr"))
    mem = res["mem_mib"] if res["mem_mib"] is not None else res["rss_mib"]
    print()
    print(f"load {res['load']}; peak memory {mem:.0f} MiB"
          f"{' (RSS growth of the measurement process, workers not included)' if res['mem_mib'] is None else ''}")


# --------------------------------------------------------------------------------------------
# the trainer itself
# --------------------------------------------------------------------------------------------


def trainer_child(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from colorization.inference import checkpoint
    from colorization.train import resolve_config, train

    cfg = checkpoint.read_config(checkpoint.DEFAULT_MODEL_DIR)
    mc = dict(cfg.get("model_config") or {})
    steps = args.trainer_steps
    log_every = max(1, steps // 3)
    raw = dict(model=cfg["model"], model_config=mc, data=[str(d) for d in args.data], out=str(out),
               steps=steps, batch_size=args.loader_batch, crop=args.loader_crop, workers=args.workers,
               threads=args.threads, max_images=args.max_images, drop_grayscale=args.filters,
               log_every=log_every, save_every=10**6, val_every=10**6, device=args.device or "auto",
               warmup_steps=0, compile=args.compile)
    config = resolve_config(raw)
    t0 = time.perf_counter()
    result = train(config, progress=False)
    wall = time.perf_counter() - t0
    windows = []
    for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            windows.append(rec["images_per_s"])
    return {"wall": wall, "windows": windows, "overall": result.images_per_s, "steps": steps, "log_every": log_every}


def section_trainer(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="bench_train_")) / "run"
    with LoadWindow() as lw:
        res, rss = run_isolated(trainer_child, args, out, isolate=_device(args).type != "cuda")
    res.update(load=str(lw), rss_mib=rss)
    import shutil

    shutil.rmtree(out.parent, ignore_errors=True)
    return res


def print_trainer(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"## colorization.train.train() itself (default model's network, {res['steps']} steps, batch "
          f"{args.loader_batch}, crop {args.loader_crop}, {args.workers} worker(s), {args.threads} threads)")
    print()
    w = res["windows"]
    steady = w[1:] if len(w) > 1 else w
    rows = [[f"images/s per logging window (every {res['log_every']} steps)", ", ".join(fmt(x, 2) for x in w)],
            ["steady state (windows after the first)", fmt(statistics.median(steady), 2) if steady else "-"],
            ["whole call, wall clock (data indexing, start-up, export)", f"{res['wall']:.1f} s"]]
    print(markdown_table(["what", "value"], rows, "lr"))
    print()
    print(f"load {res['load']}; peak RSS growth {res['rss_mib']:.0f} MiB")


# --------------------------------------------------------------------------------------------
# the realism recipe: generator step, critic step, perceptual loss
# --------------------------------------------------------------------------------------------


def _realism_parts(path: Path, critic: dict[str, Any] | None, perceptual: str | None) -> tuple[Any, Any, dict]:
    """The recipe's realism objective (critic config overridden by ``critic``, perceptual network
    by ``perceptual``), a hybrid objective on the same generator, and the recipe's facts."""
    from colorization.models import create_model
    from colorization.train import load_config_file
    from colorization.train.objectives import build_objective

    raw = load_config_file(path)
    if raw.get("objective") != "realism":
        raise SystemExit(f"--realism-recipe {path}: objective is {raw.get('objective')!r}, not 'realism'")
    mc = dict(raw.get("model_config") or {})
    if "pretrained" in mc:
        mc["pretrained"] = False
    gen = create_model(raw["model"], **mc)
    dc = {**(raw.get("discriminator_config") or {}), **(critic or {})}
    disc = create_model(raw.get("discriminator", "patchgan"), **dc)
    options = dict(raw.get("objective_options") or {})
    if perceptual is not None:
        options["perceptual"] = perceptual
        if perceptual == "stlpips":
            options["logit_weight"] = 0.0
    objective = build_objective("realism", gen, disc, **options)
    guard = build_objective("hybrid", gen, **{k: options[k] for k in ("ce_weight", "hint_p_none", "hint_mean_count")
                                              if k in options})
    crops = [int(st["crop"]) for st in raw.get("stages") or [] if "crop" in st] or [int(raw.get("crop", 128))]
    facts = {"model": raw["model"], "objective": "realism", "amp": raw.get("amp") or "auto",
             "channels_last": bool(raw.get("channels_last")), "freeze_stages": mc.get("freeze_stages", 0),
             "crops": sorted(set(crops)), "critic": dc, "perceptual": options.get("perceptual", "lite2"),
             "perceptual_layers": options.get("perceptual_layers"), "logit_weight": options.get("logit_weight", 0.0),
             "critic_params": sum(p.numel() for p in disc.parameters())}
    return objective, guard, facts


def _timed(fn: Any, dev: torch.device) -> tuple[float, float]:
    """Wall-clock and CPU seconds (``time.process_time``: every thread of this process) of ``fn()``.
    On a CPU shared with other jobs the wall time grows with their load; the CPU time much less."""
    sync(dev)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(dev)
    return time.perf_counter() - w0, time.process_time() - c0


def _median_time(fn: Any, dev: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``steps`` calls after ``warmup`` calls."""
    times = [_timed(fn, dev) for _ in range(warmup + steps)][warmup:]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def realism_cell(args: argparse.Namespace, path: Path, critic: dict[str, Any] | None, perceptual: str | None,
                 parts: tuple[str, ...]) -> dict[str, Any]:
    from colorization import color
    from colorization import data as cdata

    dev = _device(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    objective, guard, facts = _realism_parts(path, critic, perceptual)
    facts = _resolved(facts, dev)
    amp, cl = facts["amp"] == "bf16", facts["channels_last"]
    crop = facts["crops"][-1]
    objective = objective.to(dev).train()
    if cl:
        objective.to(memory_format=torch.channels_last)
    l_norm, ab_norm = cdata.batch_to_lab(_synthetic_batch(args.recipe_batch, crop).to(dev), dev)
    if cl:
        l_norm = l_norm.contiguous(memory_format=torch.channels_last)
        ab_norm = ab_norm.contiguous(memory_format=torch.channels_last)
    batch = {"l": l_norm, "ab": ab_norm}
    opts = {ph: torch.optim.AdamW(objective.phase_parameters(ph), lr=1e-5) for ph in objective.all_phases}

    def phase_step(phase: str) -> None:
        opts[phase].zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = objective(batch, phase)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(objective.phase_parameters(phase), 1.0)
        opts[phase].step()

    res: dict[str, Any] = {**facts, "crop": crop, "batch": args.recipe_batch}
    w, n = args.warmup, args.steps
    if "guard" in parts:
        step = Stepper(guard, dev, amp=amp, channels_last=cl, compile_=False)
        rgb = _synthetic_batch(args.recipe_batch, crop)
        res["guard_s"], res["guard_cpu"] = _median_time(lambda: step(rgb), dev, w, n)
    if "joint" in parts:
        objective.configure(train_generator=True, adversarial=True)
        pairs = [(_timed(lambda: phase_step("generator"), dev), _timed(lambda: phase_step("discriminator"), dev))
                 for _ in range(w + n)][w:]
        res["generator_s"] = statistics.median(g[0] for g, _ in pairs)
        res["generator_cpu"] = statistics.median(g[1] for g, _ in pairs)
        res["critic_s"] = statistics.median(c[0] for _, c in pairs)
        res["critic_cpu"] = statistics.median(c[1] for _, c in pairs)
    if "pretrain" in parts:
        objective.configure(train_generator=False, adversarial=True)
        res["critic_pretrain_s"], res["critic_pretrain_cpu"] = _median_time(
            lambda: phase_step("discriminator"), dev, w, n)
        objective.configure(train_generator=True)
    if "perceptual" in parts:
        net = objective.perceptual_net
        logits = float(facts["logit_weight"] or 0) > 0
        real = color.l_ab_to_rgb(l_norm.float(), objective.real_ab(ab_norm))
        pred_ab = (ab_norm.float() * 0.5).detach()

        def perceptual_call() -> None:
            ab = pred_ab.clone().requires_grad_(True)
            rgb = color.l_ab_to_rgb(l_norm.float(), ab)  # float32, as the objective does
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                d = net(rgb, real, logits=logits)
                total = d["features"] + d.get("logits", 0.0)
            total.backward()

        res["perceptual_s"], res["perceptual_cpu"] = _median_time(perceptual_call, dev, w, n)
    return res


def section_realism(args: argparse.Namespace) -> dict[str, Any]:
    path = args.realism_recipe
    cells = []
    isolate = _device(args).type != "cuda"

    def run(critic: dict[str, Any] | None, perceptual: str | None, parts: tuple[str, ...], label: str) -> None:
        with LoadWindow() as lw:
            try:
                res, rss = run_isolated(realism_cell, args, path, critic, perceptual, parts, isolate=isolate)
            except IsolatedError as exc:
                print(f"realism {label}: failed: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
                return
        res.update(label=label, parts=parts, load=str(lw), rss_mib=rss)
        cells.append(res)
        print(f"realism {label}: " + ", ".join(f"{k}={res[k]:.3f}" for k in res if k.endswith(("_s", "_cpu"))),
              file=sys.stderr)

    run(None, None, ("guard", "joint", "pretrain", "perceptual"), "recipe")
    for width in args.critic_widths or []:
        for sn in args.critic_sn:
            run({"width": width, "spectral_norm": sn == "on"}, None, ("joint", "pretrain"), f"critic w{width} sn {sn}")
    for net in args.perceptual_nets or []:
        run(None, net, ("perceptual",), f"perceptual {net}")
    return {"cells": cells, "device": str(_device(args)), "recipe": str(path)}


def print_realism(res: dict[str, Any], args: argparse.Namespace) -> None:
    cells = res["cells"]
    if not cells:
        print("\n(realism section: every measurement failed)")
        return
    base = cells[0]
    print()
    print(f"## The realism recipe's step costs ({res['recipe']}; {res['device']}, {base['amp']} autocast, "
          f"channels_last {'on' if base['channels_last'] else 'off'}, batch {base['batch']}, crop {base['crop']}, "
          f"synthetic batch, median of {args.steps} after {args.warmup} warm-up; {args.threads} CPU threads)")
    print()
    print("Wall = seconds on the clock (grows with other jobs' load); CPU = seconds of CPU time of all the "
          "process's threads (what the step costs; ratios use it).")
    print()
    b = args.recipe_batch
    gen_cpu = base.get("generator_cpu")
    rows = []

    def row(what: str, key: str, note: str = "") -> None:
        if key not in base:
            return
        wall, cpu = base[key + "_s"] if key + "_s" in base else base[key], base.get(key + "_cpu")
        rows.append([what, fmt(wall, 3), fmt(b / wall, 1), fmt(cpu, 3) if cpu is not None else "-",
                     f"{cpu / gen_cpu:.2f}x" if cpu is not None and gen_cpu else "-", note])

    c = base["critic"]
    critic_desc = (f"patchgan width {c.get('width')}, {c.get('n_layers', 3)} layers, norm {c.get('norm', 'batch')}, "
                   f"spectral norm {'on' if c.get('spectral_norm') else 'off'}, {base['critic_params'] / 1e6:.2f} M")
    if "generator_s" in base and "critic_s" in base:
        base["joint_s"] = base["generator_s"] + base["critic_s"]
        base["joint_cpu"] = base["generator_cpu"] + base["critic_cpu"]
    for key in ("guard", "generator", "critic", "critic_pretrain", "perceptual", "joint"):
        base.setdefault(key, None)
    row("guard only (hybrid objective: the shipped recipe's step)", "guard")
    row("realism generator step (guard + perceptual + adversarial)", "generator")
    row("critic step, joint phase (on the generator step's ab)", "critic", critic_desc)
    row("critic step, pre-training (frozen generator forward + critic)", "critic_pretrain")
    row(f"perceptual loss alone ({base['perceptual']}, layers {base['perceptual_layers']}, "
        f"logits {'on' if base['logit_weight'] else 'off'})", "perceptual")
    row("joint step (generator + critic)", "joint")
    rows = [r for r in rows if r[1] != "-"]
    print(markdown_table(["what", "wall s/step", "images/s (wall)", "CPU s/step", "CPU vs generator step", "note"],
                         rows, "lrrrrl"))
    print()
    print(f"load {base['load']}; peak RSS growth {base['rss_mib']:.0f} MiB")
    critics = [c for c in cells[1:] if "critic_s" in c]
    if critics:
        print()
        print("Critic sizes (each cell its own generator + critic steps; the generator step changes with the critic "
              "it back-propagates through):")
        print()
        crow = []
        for cell in critics:
            cc = cell["critic"]
            crow.append([cc.get("width"), "on" if cc.get("spectral_norm") else "off",
                         f"{cell['critic_params'] / 1e6:.2f}", fmt(cell["generator_cpu"], 3),
                         fmt(cell["critic_cpu"], 3), f"{cell['critic_cpu'] / cell['generator_cpu']:.2f}x",
                         fmt(cell["critic_pretrain_cpu"], 3), fmt(cell["generator_s"] + cell["critic_s"], 2),
                         cell["load"]])
        print(markdown_table(["width", "spectral norm", "params (M)", "generator CPU s", "critic CPU s",
                              "critic / generator (CPU)", "critic pre-training CPU s", "joint wall s",
                              "load 1-min"], crow, "rlrrrrrrl"))
    percs = [c for c in cells[1:] if "perceptual_s" in c]
    if percs:
        print()
        print("Perceptual networks (the loss alone: truth forward, prediction forward + backward to the input):")
        print()
        prow = [[c["perceptual"], "on" if c["logit_weight"] else "off", fmt(c["perceptual_cpu"], 3),
                 f"{c['perceptual_cpu'] / gen_cpu:.2f}x" if gen_cpu else "-", fmt(c["perceptual_s"], 3), c["load"]]
                for c in percs]
        print(markdown_table(["network", "logit term", "CPU s/step", "vs the recipe's generator step (CPU)",
                              "wall s/step", "load 1-min"], prow, "llrrrl"))


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", type=Path,
                        default=[Path("configs/effnet_unet_l1.yaml"), Path("configs/default.yaml")],
                        help="training config files for the recipes section")
    parser.add_argument("--recipe-batch", type=int, default=32)
    parser.add_argument("--recipe-crops", nargs="+", type=int, default=None,
                        help="crop sizes of the recipes section (default: each recipe's own stage crops)")
    parser.add_argument("--loader-recipe", type=Path, default=None,
                        help="train this config's recipe in the loader section "
                             "(default: the shipped model's network, L1)")
    parser.add_argument("--sections", nargs="+", default=["models", "loader", "trainer"],
                        choices=["models", "recipes", "loader", "trainer", "realism"])
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--models", nargs="+", default=None, help="registry names and/or 'default'")
    parser.add_argument("--crops", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=2, help="batch of the per-model measurement")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model cell (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget-gflop", type=float, default=300.0,
                        help="CPU budget per model cell (estimated training GFLOP incl. warm-up); 0 = no limit")
    parser.add_argument("--compile", action="store_true", help="torch.compile the objective")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA (default: bf16 autocast)")
    parser.add_argument("--data", nargs="+", type=Path, default=[DEFAULT_DATA],
                        help="training folders (loader, trainer)")
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--filters", action="store_true",
                        help="grayscale + colourfulness filters (scores every image once; cached)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--loader-batch", type=int, default=8)
    parser.add_argument("--loader-crop", type=int, default=128)
    parser.add_argument("--loader-steps", type=int, default=8)
    parser.add_argument("--trainer-steps", type=int, default=12)
    parser.add_argument("--realism-recipe", type=Path, default=Path("configs/realism.yaml"),
                        help="training config of the realism section (objective: realism)")
    parser.add_argument("--critic-widths", nargs="+", type=int, default=None,
                        help="realism section: also measure these critic widths (patchgan, the recipe's other fields)")
    parser.add_argument("--critic-sn", nargs="+", choices=["on", "off"], default=["on"],
                        help="realism section: spectral norm of the --critic-widths critics")
    parser.add_argument("--perceptual-nets", nargs="+", default=None,
                        choices=["lite0", "lite1", "lite2", "stlpips"],
                        help="realism section: also measure these perceptual networks (the loss alone)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    add_omp_arg(parser)
    args = parser.parse_args()

    for line in machine_lines(machine_info()):
        print(line)
    results: dict[str, Any] = {}
    if "models" in args.sections:
        results["models"] = section_models(args)
        print_models(results["models"], args)
    if "recipes" in args.sections:
        results["recipes"] = section_recipes(args)
        print_recipes(results["recipes"], args)
    if "realism" in args.sections:
        results["realism"] = section_realism(args)
        print_realism(results["realism"], args)
    have_data = all(d.is_dir() for d in args.data)
    if not have_data and ({"loader", "trainer"} & set(args.sections)):
        print(f"\n(no data folder {', '.join(map(str, args.data))}: loader and trainer sections skipped)")
    if have_data and "loader" in args.sections:
        results["loader"] = section_loader(args)
        print_loader(results["loader"], args)
    if have_data and "trainer" in args.sections:
        results["trainer"] = section_trainer(args)
        print_trainer(results["trainer"], args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
