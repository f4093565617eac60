"""The training loop: :func:`train` builds the data, the objective and its optimizers, resumes the
saved state, runs the steps (logging, validating and saving on schedule) and exports the model.

The pieces it puts together live next to it: :mod:`.config` (the config), :mod:`.build` (networks,
objective, optimizers), :mod:`.schedule` (stages, learning rate, crop), :mod:`.sampling` (data
order), :mod:`.state` (saved state), :mod:`.ema`, :mod:`.processes` (ranks and devices),
:mod:`.validation` and :mod:`.export`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader

from colorization import data as cdata
from colorization import image_io
from colorization.models import get_config_class, list_models
from colorization.train import compact, schedule, state
from colorization.train.build import build_optimizers, build_run_objective
from colorization.train.config import RUNTIME_FIELDS, ConfigError, TrainConfig
from colorization.train.ema import EMA
from colorization.train.export import best_val_psnr, export_model, settle_best, training_record
from colorization.train.objectives import Objective
from colorization.train.processes import cpu_has_native_bf16, init_processes, resolve_amp, resolve_channels_last
from colorization.train.sampling import SeededSamples, StepBatchSampler, mix
from colorization.train.schedule import crop_at, lr_factor, stage_groups, stage_index, stage_table
from colorization.train.snapshots import export_snapshot, remove_partial, snapshot_due
from colorization.train.validation import validate

__all__ = ["NonFiniteLossError", "TrainResult", "train"]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stopped, the last saved state is kept."""

    def __init__(self, step: int, values: Mapping[str, float], out: str) -> None:
        self.step = step
        self.values = dict(values)
        shown = ", ".join(f"{k}={v}" for k, v in self.values.items())
        super().__init__(
            f"non-finite loss at step {step} ({shown}); training stopped. The last good state in "
            f"{Path(out) / 'state'} was kept (resume with --resume after lowering the learning rate, "
            "or with --amp off / a smaller grad_clip)"
        )


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    step: int
    finished: bool
    out: Path
    metrics: dict[str, float]
    images_seen: int
    wall_time_s: float
    images_per_s: float
    objective: Objective
    ema_generator: nn.Module | None = None
    model_dir: Path | None = None
    world_size: int = 1
    backend: str | None = None  # torch.distributed backend of a multi-process run
    nothing_to_do: bool = False  # resumed a finished run whose model was already exported: no step, no export


class _Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool, progress: bool) -> None:
        self.cfg = cfg
        self.resume = resume
        self.progress = progress
        self.out = Path(cfg.out)
        self.state_dir = self.out / "state"
        self.dist = init_processes(cfg.device)
        self.device = self.dist.device
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.bf16 = resolve_amp(cfg.amp, self.device)  # bf16 autocast for the steps and validation
        self.restored_at: int | None = None  # the step a compact-state restore started from
        if cfg.amp == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16() and self.dist.is_main:
            print("[train] warning: amp bf16 on a CPU without native bf16 (AVX512-BF16 or AMX) is emulated and "
                  "several times slower than float32; amp: auto uses float32 on this CPU", flush=True)

    # --- setup -----------------------------------------------------------------------------------
    def _check_out_dir(self) -> dict[str, Any] | None:
        """Returns the saved meta.json when resuming from existing state."""
        if (self.state_dir / "latest.json").is_file():
            if not self.resume:
                raise ConfigError(
                    f"{self.out} already holds a training run (state/latest.json); pass --resume to "
                    "continue it or choose another --out"
                )
            return state.read_latest(self.state_dir)
        if self.resume and self.cfg.compact_state and Path(self.cfg.compact_state).is_file():
            return None  # restored from the compact state once the objective is built
        if self.resume and self.dist.is_main:
            print(f"[train] --resume: no saved state in {self.state_dir}, starting from step 0", flush=True)
        return None

    def _check_resume_config(self, saved: Mapping[str, Any], saved_step: int) -> None:
        mine = self.cfg.to_dict()
        # a field added after the run was saved counts as its default there
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
        saved = {k: saved.get(k, defaults.get(k)) for k in mine}
        diffs = [
            f"{k}: saved {saved.get(k)!r}, now {mine.get(k)!r}"
            for k in mine
            if k not in RUNTIME_FIELDS and k not in ("steps", "stages") and saved.get(k) != mine.get(k)
        ]
        why = schedule.stages_change_problem(saved.get("stages") or [], mine["stages"], int(saved_step))
        if why is not None:  # stages that have not started yet may change
            diffs.append(f"stages: {why} (saved {saved.get('stages')!r}, now {mine['stages']!r})")
        if mine["steps"] < int(saved_step):
            diffs.append(f"steps: the saved run is at step {saved_step}, more than the {mine['steps']} asked for")
        if diffs:
            raise ConfigError(
                "--resume with a config that differs from the saved run "
                f"({self.out / 'train_config.json'}): " + "; ".join(diffs)
            )

    def _build_data(self) -> None:
        cfg = self.cfg
        self.with_labels = float(cfg.objective_options.get("aux_weight", 0.0)) > 0 or any(
            float(s.get("aux_weight", 0.0)) > 0 for s in cfg.stages
        )
        score_workers = max(1, min(cfg.workers, os.cpu_count() or 1))
        show = self.progress and self.dist.is_main
        if not self.dist.is_main:
            self.dist.barrier()  # rank 0 scores the images (cached) first; the others then read the cache
        self.train_ds = cdata.ImageFolderDataset(
            list(cfg.data),
            crop=cfg.crop,
            train=True,
            scale_jitter=tuple(cfg.scale_jitter),
            hflip=cfg.hflip,
            min_colorfulness_quantile=cfg.min_colorfulness_quantile,
            drop_grayscale=cfg.drop_grayscale,
            max_images=cfg.max_images,
            with_labels=self.with_labels,
            seed=cfg.seed,
            score_workers=score_workers,
            progress=show,
            groups=cfg.groups,
            holdout="exclude" if cfg.holdout else "include",
        )
        if self.with_labels:
            n_classes = len(self.train_ds.class_names)
            if n_classes == 0:
                raise ConfigError(
                    "aux_weight > 0 but no training file name carries a class label ('<label>_<name>')"
                )
            has_head_field = cfg.model in list_models() and "num_classes" in {
                f.name for f in dataclasses.fields(get_config_class(cfg.model))
            }
            if has_head_field and "num_classes" not in cfg.model_config:
                # fill in the auxiliary head size from the data (recorded in train_config.json)
                self.cfg = cfg = dataclasses.replace(cfg, model_config={**cfg.model_config, "num_classes": n_classes})
        self.val_ds = None
        if cfg.val is not None and cfg.val_images > 0:
            self.val_ds = cdata.ImageFolderDataset(
                [cfg.val],
                crop=int(cfg.val_crop or cfg.crop),
                train=False,
                drop_grayscale=cfg.drop_grayscale,
                max_images=cfg.val_images,
                seed=cfg.seed,
                score_workers=score_workers,
                progress=show,
            )
        self.curve_sets: dict[str, cdata.ImageFolderDataset] = {}
        if cfg.curve_images > 0 and cfg.val is not None and self.dist.is_main:
            self._build_curve_sets(score_workers)
        if self.dist.is_main:
            self.dist.barrier()

    def _build_curve_sets(self, score_workers: int) -> None:
        """Fixed held-out and seen photos for the learning curves (``curve_images``). The held-out
        photos pass the same grayscale and colourfulness filters as the training photos, so the
        two sets differ only in whether the run trains on them."""
        cfg = self.cfg
        crop = int(cfg.val_crop or cfg.crop)
        found = cdata.select_files(image_io.find_images(list(cfg.data)), groups=cfg.groups)
        if cfg.holdout and not any(cdata.is_held_out(f, r) for f, r in found):
            print("[train] curve_images: the training folders hold no held-out photo; no holdout curve", flush=True)
        elif cfg.holdout:
            self.curve_sets["holdout"] = cdata.ImageFolderDataset(
                list(cfg.data), crop=crop, train=False, groups=cfg.groups, holdout="only",
                drop_grayscale=cfg.drop_grayscale, min_colorfulness_quantile=cfg.min_colorfulness_quantile,
                max_images=cfg.curve_images, seed=cfg.seed,
                score_workers=score_workers, progress=False,
            )
        rng = np.random.default_rng(mix(cfg.seed, 3))
        files = self.train_ds.files
        chosen = np.sort(rng.choice(len(files), size=min(cfg.curve_images, len(files)), replace=False))
        self.curve_sets["seen"] = cdata.ImageFolderDataset(
            [files[i] for i in chosen], crop=crop, train=False, drop_grayscale=False, progress=False
        )

    def _build_objective(self) -> None:
        cfg = self.cfg
        n_classes = len(self.train_ds.class_names) if self.with_labels else None
        objective = build_run_objective(cfg, n_classes)
        self.table = stage_table(cfg)
        self.base_options = objective.options()
        for _, _, stage_options, _ in self.table:  # validate every stage's options up front
            try:
                objective.configure(**{**self.base_options, **stage_options})
            except ValueError as exc:
                raise ConfigError(f"config field 'stages': {exc}") from None
        objective.configure(**self.base_options)
        objective.to(self.device)
        if self._channels_last:
            objective.to(memory_format=torch.channels_last)
        self.objective = objective
        self.ema = EMA(objective.generator, cfg.ema_decay) if cfg.ema else None

        self.optimizers = build_optimizers(objective, cfg)

        model: nn.Module = objective
        if self.dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=objective.find_unused_parameters,
            )
        if cfg.compile:
            model = torch.compile(model)
        self.model = model

    # --- state, log ------------------------------------------------------------------------------
    def _save_state(self, step: int, images_seen: int, wall: float, last_val: dict[str, float]) -> None:
        state.save_state(
            self.state_dir, step, procs=self.dist, objective=self.objective,
            ema=self.ema.module if self.ema is not None else None, optimizers=self.optimizers,
            images_seen=images_seen, wall_time_s=wall, last_val=last_val, config=self.cfg.to_dict(),
        )
        if self.dist.is_main:
            settle_best(self.out, step)
            if self.cfg.compact_state:
                compact.save_compact(
                    self.cfg.compact_state, self.objective.generator, self.ema.module if self.ema is not None else None,
                    {"step": step, "images_seen": images_seen, "wall_time_s": wall, "last_val": last_val,
                     "config": self.cfg.to_dict()},
                )

    def _restore_compact(self) -> tuple[int, int, float, dict[str, float]] | None:
        """With --resume, no OUT/state/ and a ``compact_state`` file: load it (see :mod:`.compact`)."""
        path = self.cfg.compact_state
        if not (self.resume and path and Path(path).is_file()):
            return None
        _, meta = compact.read_compact(path)
        step = int(meta["step"])
        self._check_resume_config(meta["config"], step)
        compact.restore_compact(path, self.objective.generator, self.ema.module if self.ema is not None else None)
        torch.manual_seed(mix(self.cfg.seed, self.dist.rank, 3, step))
        random.seed(mix(self.cfg.seed, self.dist.rank, 4, step))
        np.random.seed(mix(self.cfg.seed, self.dist.rank, 5, step) % (2**32))
        self.restored_at = step
        if self.dist.is_main:
            print(f"[train] restored from the compact state {path} at step {step} ({int(meta['images_seen']):,} "
                  f"images seen); optimizer moments start afresh, lr re-warms over {compact.REWARM_STEPS} steps",
                  flush=True)
            self._log({"kind": "restore", "step": step, "from": str(path)})
        return step, int(meta["images_seen"]), float(meta["wall_time_s"]), dict(meta.get("last_val") or {})

    def _load_state(self, meta: Mapping[str, Any]) -> None:
        state.load_state(
            meta, procs=self.dist, objective=self.objective,
            ema=self.ema.module if self.ema is not None else None, optimizers=self.optimizers,
        )

    def _log(self, record: Mapping[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")

    def _sample_weights(self) -> list[float] | None:
        """Per-image sampling weights from ``group_weights`` (None: a permutation per epoch)."""
        weights = self.cfg.group_weights
        if weights is None:
            return None
        present = set(self.train_ds.groups)
        if set(weights) - present:
            raise ConfigError(f"config field 'group_weights' names groups the training data does not hold: "
                              f"{sorted(set(weights) - present)} (it holds {sorted(present)})")
        return [float(weights.get(g, 1.0)) for g in self.train_ds.groups]

    def _segments(self) -> list[tuple[int, list[int]]] | None:
        """Per stage, the training photos of its ``groups`` (None when no stage limits them)."""
        per_stage = stage_groups(self.cfg)
        if all(g is None for g in per_stage):
            return None
        present = set(self.train_ds.groups)
        segments = []
        for (start, _, _, _), groups in zip(self.table, per_stage, strict=True):
            if groups is not None and set(groups) - present:
                raise ConfigError(f"config field 'stages': groups {sorted(set(groups) - present)} are not in the "
                                  f"training data (it holds {sorted(present)})")
            pool = [i for i, g in enumerate(self.train_ds.groups) if groups is None or g in groups]
            segments.append((start, pool))
        return segments

    @property
    def _channels_last(self) -> bool:
        """channels_last memory on CUDA, and on the CPU with bf16 autocast (where it measures faster)."""
        return resolve_channels_last(self.cfg.channels_last, self.bf16, self.device)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _validate(self, step: int) -> dict[str, float]:
        """Metrics on the val photos, plus ``holdout/...`` and ``seen/...`` with ``curve_images``."""
        assert self.val_ds is not None
        generator = self.ema.module if self.ema is not None else self.objective.generator
        common = dict(device=self.device, batch_size=16, channels_last=self._channels_last, autocast=self._autocast)
        result = validate(
            self.objective, generator, self.val_ds, **common,
            sample_images=self.cfg.sample_images, sample_path=self.out / "samples" / f"step_{step:06d}.png",
        )
        for name, ds in self.curve_sets.items():
            curve = validate(self.objective, generator, ds, **common, sample_images=0, sample_path=self.out)
            result.update({f"{name}/{k}": v for k, v in curve.items()})
        return result

    # --- main loop -----------------------------------------------------------------------------------
    def run(self, stop_after: int | None, time_limit: float | None, export_now: bool = False) -> TrainResult:
        saved_meta = self._check_out_dir()
        self._build_data()
        if saved_meta is not None:
            self._check_resume_config(saved_meta["config"], int(saved_meta["step"]))
        self._build_objective()
        cfg = self.cfg  # as completed by _build_data (e.g. num_classes of an auxiliary head)
        # OUT is made only now, once the data and the model are known to be usable: a run refused
        # for a bad config or data folder leaves no empty run folder behind
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()

        step, images_seen, wall_before, last_val = 0, 0, 0.0, {}
        if saved_meta is not None:
            self._load_state(saved_meta)
            step = int(saved_meta["step"])
            images_seen = int(saved_meta["images_seen"])
            wall_before = float(saved_meta["wall_time_s"])
            last_val = dict(saved_meta.get("last_val") or {})
            if self.dist.is_main:
                state.trim_log(self.out / "log.jsonl", step)
                settle_best(self.out, step)
                remove_partial(self.out)
                print(f"[train] resumed from {saved_meta['_dir']} at step {step}", flush=True)
        elif (restored := self._restore_compact()) is not None:
            step, images_seen, wall_before, last_val = restored
        else:
            # each rank draws its own random numbers (dropout, ...) from here on
            torch.manual_seed(mix(cfg.seed, self.dist.rank, 3))
            random.seed(mix(cfg.seed, self.dist.rank, 4))
            np.random.seed(mix(cfg.seed, self.dist.rank, 5) % (2**32))
        if step > 0 and cfg.curve_csv and self.dist.is_main:
            compact.trim_curve(cfg.curve_csv, step)
        if self.dist.is_main:
            image_io.atomic_write_text(self.out / "train_config.json", state.json_dumps(cfg.to_dict()))
            if step == 0:
                self._log({"kind": "start", "step": 0, "world_size": self.dist.world, "device": str(self.device),
                           "train_images": len(self.train_ds), "val_images": len(self.val_ds) if self.val_ds else 0})

        if export_now:
            return self._export_saved(step, images_seen, wall_before, last_val)
        if step >= cfg.steps:
            if self._exported_step() == step:
                return self._nothing_to_do(step, images_seen, wall_before, last_val)
            return self._export_saved(step, images_seen, wall_before, last_val)  # killed before its export

        sampler = StepBatchSampler(
            len(self.train_ds), cfg.batch_size, self.dist.rank, self.dist.world, cfg.seed, step,
            functools.partial(crop_at, cfg, self.table), weights=self._sample_weights(), segments=self._segments(),
        )
        loader = DataLoader(
            SeededSamples(self.train_ds),
            batch_sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if cfg.workers > 0 else None,
            # its own base-seed source: iter() would otherwise draw from the global torch RNG after a
            # resume restored it, shifting every later draw of the steps (e.g. simulated hints)
            generator=torch.Generator().manual_seed(mix(cfg.seed, self.dist.rank, 6)),
        )
        result = self._loop(loader, step, images_seen, wall_before, last_val, stop_after, time_limit)
        return result

    def _loop(
        self,
        loader: DataLoader,
        step: int,
        images_seen: int,
        wall_before: float,
        last_val: dict[str, float],
        stop_after: int | None,
        time_limit: float | None,
    ) -> TrainResult:
        from tqdm.auto import tqdm

        cfg, objective, device = self.cfg, self.objective, self.device
        multi_phase = len(objective.all_phases) > 1
        start_step = step
        t_start = time.perf_counter()
        stage_idx = -1
        pending: list[tuple[int, dict[str, Tensor]]] = []
        window_t, window_images = time.perf_counter(), 0
        images_per_s = 0.0
        bar = tqdm(
            total=cfg.steps,
            initial=step,
            desc=f"train {cfg.model}",
            unit="step",
            disable=not (self.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        objective.train()
        data_iter = iter(loader)
        stopped_early = False

        def sync() -> dict[str, float]:
            """Check the pending losses for NaN/inf (all ranks agree) and return their means."""
            nonlocal pending
            if not pending:
                return {}
            keys = sorted({k for _, rec in pending for k in rec})
            sums = torch.zeros(len(keys) + 1, dtype=torch.float64, device=device)
            counts = torch.zeros(len(keys), dtype=torch.float64, device=device)
            bad_steps = []
            zero = torch.zeros((), dtype=torch.float64, device=device)
            for _, rec in pending:
                vals = torch.stack([rec[k].double() if k in rec else zero for k in keys])
                present = torch.tensor([k in rec for k in keys], dtype=torch.float64, device=device)
                sums[:-1] += vals * present
                counts += present
                bad_steps.append((~torch.isfinite(vals)).any())
            bad = torch.stack(bad_steps)
            first_local = pending[int(bad.nonzero()[0])][0] if bool(bad.any()) else 2**62
            sums[-1] = 0.0
            first = torch.tensor([float(first_local)], dtype=torch.float64, device=device)
            if self.dist.enabled:
                dist.all_reduce(sums)
                dist.all_reduce(counts)
                dist.all_reduce(first, op=dist.ReduceOp.MIN)
            first_bad = int(first.item())
            if first_bad < 2**62:
                rows = [rec for s, rec in pending if s == first_bad]
                values = {k: float(v) for k, v in rows[0].items()} if rows else {}
                pending = []
                raise NonFiniteLossError(first_bad, values, str(self.out))
            means = (sums[:-1] / counts.clamp_min(1)).tolist()
            pending = []
            return {k: float(v) for k, v in zip(keys, means)}

        def agree(flag: bool) -> bool:
            """True on every rank when ``flag`` is true on any rank."""
            if not self.dist.enabled:
                return flag
            t = torch.tensor([1.0 if flag else 0.0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return bool(t.item() > 0)

        try:
            while step < cfg.steps:
                # stage switch
                idx = stage_index(self.table, step)
                if idx != stage_idx:
                    objective.configure(**{**self.base_options, **self.table[idx][2]})
                    if stage_idx != -1 and self.dist.is_main:
                        self._log({"kind": "stage", "step": step, "stage": idx, "options": objective.options()})
                    stage_idx = idx

                batch_cpu = next(data_iter)
                rgb = batch_cpu["rgb"].to(device, non_blocking=True)
                l_norm, ab_norm = cdata.batch_to_lab(rgb, device)
                if self._channels_last:
                    l_norm = l_norm.contiguous(memory_format=torch.channels_last)
                    ab_norm = ab_norm.contiguous(memory_format=torch.channels_last)
                batch: dict[str, Tensor] = {"l": l_norm, "ab": ab_norm}
                if self.with_labels:
                    batch["label"] = torch.as_tensor(batch_cpu["label"]).to(device, non_blocking=True).long()

                factor = lr_factor(cfg, self.table, step)  # a function of the step: nothing to save
                if self.restored_at is not None:  # fresh optimizer moments after a compact restore
                    factor *= min(1.0, (step - self.restored_at + 1) / compact.REWARM_STEPS)
                for opt in self.optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * factor
                record: dict[str, Tensor] = {}
                for phase in objective.phases:
                    opt = self.optimizers[phase]
                    opt.zero_grad(set_to_none=True)
                    with self._autocast():
                        out = self.model(batch, phase)
                    loss = out["loss"]
                    loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(objective.phase_parameters(phase), cfg.grad_clip)
                    opt.step()
                    prefix = f"{phase}/" if multi_phase else ""
                    for k, v in out.items():
                        record[prefix + k] = v.detach()
                step += 1
                if self.ema is not None:
                    self.ema.update(objective.generator, step)
                images_seen += cfg.batch_size * self.dist.world
                window_images += cfg.batch_size * self.dist.world
                if self.dist.is_main and snapshot_due(images_seen - cfg.batch_size * self.dist.world, images_seen,
                                                      cfg.snapshot_every):
                    self._snapshot(step, images_seen, wall_before + time.perf_counter() - t_start)
                pending.append((step, record))
                bar.update(1)

                final = step >= cfg.steps
                elapsed = time.perf_counter() - t_start
                stop_now = stop_after is not None and step - start_step >= stop_after
                if time_limit is not None and not final and not stop_now and step % cfg.log_every == 0:
                    stop_now = agree(elapsed >= time_limit)  # decided together so no rank waits alone
                do_log = step % cfg.log_every == 0 or final or stop_now
                do_val = self.val_ds is not None and (step % cfg.val_every == 0 or final)
                do_save = step % cfg.save_every == 0 or final or stop_now
                if do_log or do_val or do_save:
                    means = sync()
                    images_per_s = window_images / max(time.perf_counter() - window_t, 1e-9)
                    if do_log:
                        lr = self.optimizers[objective.all_phases[-1]].param_groups[0]["lr"]
                        self._log({"kind": "train", "step": step, **means, "lr": lr, "stage": stage_idx,
                                   "images_per_s": round(images_per_s, 2), "images_seen": images_seen,
                                   "wall_time_s": round(wall_before + elapsed, 2)})
                        main_loss = means.get("loss", means.get("generator/loss", float("nan")))
                        bar.set_postfix(loss=f"{main_loss:.4f}", img_s=f"{images_per_s:.1f}")
                    if do_val:
                        if self.dist.is_main:
                            last_val = self._validate(step)
                            self._log({"kind": "val", "step": step, **last_val})
                            if cfg.curve_csv:
                                lr = self.optimizers[objective.all_phases[-1]].param_groups[0]["lr"]
                                compact.append_curve_row(cfg.curve_csv, step, images_seen, wall_before + elapsed,
                                                         {**means, "lr": lr}, last_val)
                            if cfg.keep_best and last_val.get("psnr", -math.inf) > best_val_psnr(self.out):
                                # promoted to OUT/model_best/ by the next state save (settle_best)
                                self._export_to(self.out / "model_best.pending", step, images_seen,
                                                wall_before + elapsed, last_val)
                                self._log({"kind": "best", "step": step, "psnr": last_val["psnr"]})
                        self.dist.barrier()
                    if do_save:
                        self._save_state(step, images_seen, wall_before + elapsed, last_val)
                    # the next throughput window starts after validation and saving
                    window_t, window_images = time.perf_counter(), 0
                if stop_now and not final:
                    stopped_early = True
                    break
        finally:
            bar.close()

        wall = wall_before + (time.perf_counter() - t_start)
        total_rate = (step - start_step) * cfg.batch_size * self.dist.world / max(time.perf_counter() - t_start, 1e-9)
        result = TrainResult(
            step=step,
            finished=not stopped_early and step >= cfg.steps,
            out=self.out,
            metrics=dict(last_val),
            images_seen=images_seen,
            wall_time_s=wall,
            images_per_s=total_rate,
            objective=objective,
            ema_generator=self.ema.module if self.ema is not None else None,
            world_size=self.dist.world,
            backend=self.dist.backend,
        )
        if result.finished:
            result.model_dir = self._export(result)
        elif self.dist.is_main:
            print(f"[train] stopped at step {step}/{cfg.steps}; continue with --resume", flush=True)
        return result

    # --- export --------------------------------------------------------------------------------------
    def _exported_step(self) -> int | None:
        """The step OUT/model/ was exported at (its config.json's training record), None without one."""
        try:
            config = json.loads((self.out / "model" / "config.json").read_text(encoding="utf-8"))
            return int(config["training"]["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _nothing_to_do(self, step: int, images_seen: int, wall: float, last_val: dict[str, float]) -> TrainResult:
        """A resumed run that had already finished and exported: report it, train and export nothing."""
        if self.dist.is_main:
            print(f"[train] nothing to do: the run already finished all {step} steps and exported "
                  f"{self.out / 'model'} (pass a larger --steps to train further)", flush=True)
        return TrainResult(
            step=step, finished=True, out=self.out, metrics=dict(last_val), images_seen=images_seen,
            wall_time_s=wall, images_per_s=0.0, objective=self.objective,
            ema_generator=self.ema.module if self.ema is not None else None, model_dir=self.out / "model",
            world_size=self.dist.world, backend=self.dist.backend, nothing_to_do=True,
        )

    def _export_saved(self, step: int, images_seen: int, wall: float, last_val: dict[str, float]) -> TrainResult:
        """Export the model of the saved state as it is (e.g. after a time-limited run), validating first."""
        if step == 0:
            raise ConfigError(f"export: no saved training state in {self.state_dir}")
        metrics = self._validate(step) if self.val_ds is not None else dict(last_val)
        result = TrainResult(
            step=step,
            finished=step >= self.cfg.steps,
            out=self.out,
            metrics=metrics,
            images_seen=images_seen,
            wall_time_s=wall,
            images_per_s=0.0,
            objective=self.objective,
            ema_generator=self.ema.module if self.ema is not None else None,
            world_size=self.dist.world,
            backend=self.dist.backend,
        )
        result.model_dir = self._export(result)
        return result

    def _export(self, result: TrainResult) -> Path:
        model_dir = self.out / "model"
        if self.dist.is_main:
            self._export_to(model_dir, result.step, result.images_seen, result.wall_time_s, result.metrics)
            print(f"[train] exported {model_dir}", flush=True)
        self.dist.barrier()
        return model_dir

    def _export_to(self, model_dir: Path, step: int, images_seen: int, wall: float, metrics: dict[str, float]) -> None:
        """Export the validated weights (the EMA when on) of ``step`` to ``model_dir`` (main rank)."""
        generator = self.ema.module if self.ema is not None else self.objective.generator
        class_names = (getattr(self.train_ds, "class_names", []) or []) if self.with_labels else None
        training = training_record(
            self.cfg, base_options=self.base_options, world_size=self.dist.world,
            train_images=len(self.train_ds), class_names=class_names, step=step,
            images_seen=images_seen, wall_time_s=wall, device=self.device,
        )
        export_model(model_dir, generator, self.objective, self.cfg, training, metrics)

    def _snapshot(self, step: int, images_seen: int, wall: float) -> None:
        """Export OUT/snapshots/img_XXXXXXXX/ (:mod:`.snapshots`; main rank)."""
        folder = export_snapshot(self.out, images_seen, lambda d: self._export_to(d, step, images_seen, wall, {}))
        self._log({"kind": "snapshot", "step": step, "images_seen": images_seen, "path": str(folder)})

    def close(self) -> None:
        self.dist.close()


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit: float | None = None,
    export_now: bool = False,
) -> TrainResult:
    """Train a model as described by ``config`` (see :mod:`colorization.train` for the outputs).

    Args:
        config: resolved config (see :func:`resolve_config`).
        resume: continue from ``config.out/state`` if it exists (starts at step 0 otherwise).
            Without it, an ``out`` folder that already holds state is refused.
        progress: show the tqdm bar (rank 0 only).
        stop_after: stop (saving state) after this many steps in this invocation.
        time_limit: stop (saving state) once this many seconds have passed in this invocation.
        export_now: with ``resume``, export ``OUT/model/`` from the saved state without training
            further (the exported config records ``steps`` < ``planned_steps``).

    Returns:
        :class:`TrainResult`; ``finished`` is True and ``model_dir`` set when all steps are done.
        Resuming a run that had already done all ``steps`` and exported ``OUT/model/`` trains and
        exports nothing (``nothing_to_do`` True); one killed before that export is exported.

    Raises:
        ConfigError: invalid config, mismatched resume, data or model problems.
        NonFiniteLossError: a loss became NaN/inf (the last saved state is kept).
    """
    trainer = _Trainer(config, resume=resume, progress=progress)
    try:
        return trainer.run(stop_after, time_limit, export_now)
    finally:
        trainer.close()
