"""``colorization evaluate``: compare models on folders of colour photos.

Writes OUT/results.json (one object per model and group), results.csv, results.md (tables with
groups side by side), run.json (options, metric definitions), auc_curves.json/.png and
samples.png (ground truth | gray input | each model). See docs/evaluation.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from colorization.image_io import ImageError

__all__ = ["main", "report_skipped_figures"]


def main(
    model: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        help="Model to evaluate (repeatable): an exported model folder, 'default' (the shipped "
        "model) or 'gray' (ab = 0); optionally NAME=SPEC to set its display name.",
    ),
    data: list[str] = typer.Option(
        ...,
        "--data",
        "-d",
        help="Group of colour photos (repeatable): NAME=DIR, e.g. val=/data/val. Groups are shown "
        "side by side in the given order (put in-domain first).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for results and figures."),
    size: int = typer.Option(
        256,
        "--size",
        help="Ground-truth side: short side resized (bicubic) + centre crop to SIZE x SIZE.",
    ),
    working_size: int | None = typer.Option(
        None,
        "--working-size",
        help="Network input short side for every model (default: each model's own working size, "
        "as `colorize` uses it).",
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="At most N photos per group (a seeded random subset). Default: every photo."
    ),
    native: bool = typer.Option(
        False, "--native", help="Evaluate at native resolution through the Colorizer pipeline."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per batch."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda, cuda:N (default: CUDA when available)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit subset."),
    cf_variant: str = typer.Option("abs", "--cf-variant", help="Colourfulness variant: abs or signed."),
    fid: bool = typer.Option(True, "--fid/--no-fid", help="Compute FID (Inception, slow on CPU)."),
    st_lpips: bool = typer.Option(
        True, "--st-lpips/--no-st-lpips", help="Compute ST-LPIPS (VGG, slow on CPU)."
    ),
    ciede2000: bool = typer.Option(True, "--ciede2000/--no-ciede2000", help="Compute CIEDE2000."),
    samples: int = typer.Option(6, "--samples", help="Photos in the sample figure (0: none)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Evaluate colorization models (PSNR, SSIM, ST-LPIPS, FID, AuC, colourfulness, CIEDE2000)."""
    # lazy: torch-free CLI import
    from colorization.evaluation import evaluate as ev
    from colorization.inference.checkpoint import CheckpointError

    try:
        groups: dict[str, str] = {}
        for item in data:
            name, folder = ev.parse_named(item, "--data")
            if name is None:
                raise ValueError(f"--data {item!r}: expected NAME=DIR")
            if name in groups:
                raise ValueError(f"--data: group name {name!r} given twice")
            groups[name] = folder
        config = ev.EvaluationConfig(
            size=size,
            working_size=working_size,
            native=native,
            limit=limit,
            batch_size=batch_size,
            device=device,
            seed=seed,
            cf_variant=cf_variant,  # type: ignore[arg-type]
            st_lpips=st_lpips,
            fid=fid,
            ciede2000=ciede2000,
            figure_samples=samples,
        )
        rows = ev.evaluate(model, groups, config, out_dir=out, progress=not quiet)
    except (ValueError, FileNotFoundError, ImageError, CheckpointError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(ev.results_markdown(rows, config).split("## All results", 1)[-1].strip().split("\n\n")[0])
    written = sorted(p.name for p in Path(out).iterdir() if p.is_file())
    typer.echo(f"wrote {out}/: {', '.join(written)}")
    report_skipped_figures(out)
    sys.stdout.flush()


def report_skipped_figures(out: Path) -> None:
    """Say which figures an evaluation left out (run.json's ``figures_skipped``: matplotlib, the
    'eval' extra, missing); the tables are written either way."""
    import json

    try:
        skipped = json.loads((Path(out) / "run.json").read_text(encoding="utf-8")).get("figures_skipped") or {}
    except (OSError, ValueError):
        return
    for reason in dict.fromkeys(skipped.values()):
        names = ", ".join(name for name, why in skipped.items() if why == reason)
        typer.echo(f"skipped figures {names}: {reason}", err=True)
