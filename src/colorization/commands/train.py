"""``colorization train``: train a colorization network (single process or under torchrun)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

__all__ = ["main", "parse_mapping"]


def parse_mapping(items: list[str] | None, option: str) -> dict[str, Any] | None:
    """Parse repeated ``--option`` values into one dict.

    Each item is either a JSON object (``'{"width": 16, "depth": 3}'``) or ``key=value`` where the
    value is parsed as JSON when possible (``width=16`` -> 16, ``pretrained=false`` -> False,
    ``loss=l1`` -> "l1").
    """
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"not a JSON object: {exc}", param_hint=option) from None
            if not isinstance(value, dict):
                raise typer.BadParameter("expected a JSON object", param_hint=option)
            out.update(value)
            continue
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE or a JSON object, got {item!r}", param_hint=option)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def main(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered generator name (colorization.list_models(\"generator\"))."),
    data: Optional[list[Path]] = typer.Option(None, "--data", "-d", help="Training image folder (repeatable)."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation image folder (centre crops)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (state/, samples/, log.jsonl, model/)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total optimisation steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Images per step per process."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Training crop side in pixels (multiple of the model stride)."),
    objective: Optional[str] = typer.Option(None, "--objective", help="regression | classification | gan."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="JSON/YAML config file; flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/state (starts fresh if there is none)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (AdamW)."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Regression loss: l1 | mse | l1_ssim | mse_ssim | mse_l1."),
    model_config: Optional[list[str]] = typer.Option(
        None, "--model-config", help="Model config: JSON object or KEY=VALUE (repeatable)."
    ),
    option: Optional[list[str]] = typer.Option(
        None, "--option", help="Objective option, KEY=VALUE or JSON (e.g. ssim_weight=0.001, gan_loss=vanilla, aux_weight=0.1)."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data loader worker processes (per process)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="torch CPU threads of the training process (1 is fastest on a busy CPU)."
    ),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the training step."),
    ema: Optional[bool] = typer.Option(None, "--ema/--no-ema", help="Keep an EMA of the weights (exported when on)."),
    ema_decay: Optional[float] = typer.Option(None, "--ema-decay", help="EMA decay (default 0.999)."),
    amp: Optional[str] = typer.Option(None, "--amp", help="auto (bf16 on GPU) | bf16 | off."),
    val_every: Optional[int] = typer.Option(None, "--val-every", help="Validate every N steps."),
    val_images: Optional[int] = typer.Option(None, "--val-images", help="Validation images used (first N)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Save resumable state every N steps."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Log to log.jsonl every N steps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for weights, data order and augmentation."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Use at most N training images."),
    min_colorfulness_quantile: Optional[float] = typer.Option(
        None, "--min-colorfulness-quantile", help="Drop the least colourful fraction of training images (0-1)."
    ),
    working_size: Optional[int] = typer.Option(
        None, "--working-size", help="Working resolution recorded in the exported model (default 256)."
    ),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="Exported model folder whose weights initialise the network (fine-tuning)."
    ),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps", help="Linear warm-up steps (default min(1000, steps/20))."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Gradient-norm clip (0 = off)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay."),
    stop_after: Optional[int] = typer.Option(
        None, "--stop-after", help="Stop after N steps in this invocation (state saved; continue with --resume)."
    ),
    time_limit: Optional[float] = typer.Option(
        None, "--time-limit", help="Stop after this many seconds in this invocation (state saved)."
    ),
    export_now: bool = typer.Option(
        False, "--export-now", help="With --resume: export OUT/model/ from the saved state without training further."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
) -> None:
    """Train a colorization network; writes OUT/model/ (exported), OUT/log.jsonl, OUT/samples/, OUT/state/."""
    from colorization.train import ConfigError, NonFiniteLossError, load_config_file, resolve_config, train

    overrides: dict[str, Any] = {
        "model": model,
        "data": [str(d) for d in data] if data else None,
        "val": str(val) if val is not None else None,
        "out": str(out) if out is not None else None,
        "steps": steps,
        "batch_size": batch_size,
        "crop": crop,
        "objective": objective,
        "lr": lr,
        "model_config": parse_mapping(model_config, "--model-config"),
        "objective_options": parse_mapping(option, "--option"),
        "workers": workers,
        "device": device,
        "threads": threads,
        "compile": compile,
        "ema": ema,
        "ema_decay": ema_decay,
        "amp": amp,
        "val_every": val_every,
        "val_images": val_images,
        "save_every": save_every,
        "log_every": log_every,
        "seed": seed,
        "max_images": max_images,
        "min_colorfulness_quantile": min_colorfulness_quantile,
        "warmup_steps": warmup_steps,
        "working_size": working_size,
        "init_from": str(init_from) if init_from is not None else None,
        "grad_clip": grad_clip,
        "weight_decay": weight_decay,
    }
    if loss is not None:
        overrides["objective_options"] = {**(overrides["objective_options"] or {}), "loss": loss}
    try:
        file_values = load_config_file(config) if config is not None else None
        saved = Path(out) / "train_config.json" if out is not None else None
        if resume and saved is not None and saved.is_file():
            # `train --out DIR --resume` alone continues a run: its saved config is the base
            file_values = {**load_config_file(saved), **(file_values or {})}
        cfg = resolve_config(file_values, overrides, source=str(config) if config else "command line")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if print_config:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    try:
        result = train(cfg, resume=resume, progress=progress, stop_after=stop_after, time_limit=time_limit,
                       export_now=export_now)
    except NonFiniteLossError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=3) from None
    except (ConfigError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except ValueError as exc:  # data / image errors name the offending file
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if result.model_dir is not None and _is_main_process():
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
        if export_now:
            head = f"exported {cfg.model} from the saved state at step {result.step}/{cfg.steps}"
        else:
            head = (f"trained {cfg.model} for {result.step} steps ({result.images_seen} images, "
                    f"{result.images_per_s:.1f} images/s)")
        typer.echo(f"{head}; model: {result.model_dir}" + (f"; val: {metrics}" if metrics else ""))


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(main))
