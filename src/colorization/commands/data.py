"""``colorization data build RECIPE``: build a training set from folders and git repositories.

See :mod:`colorization.ingest` and docs/training.md ("Building a training set").
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(help="Build training sets of photos (decode, filter, resize, deduplicate).", no_args_is_help=True,
                  add_completion=False)


@app.command("build")
def build(
    recipe: Path = typer.Argument(..., help="Recipe file (.yaml/.json): sources, filters, evaluation folders."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: the recipe's 'out')."),
    repos: list[Path] = typer.Option(
        [], "--repos", help="Folder holding the sources' git repositories (OWNER+NAME/ or OWNER/NAME.git); repeatable."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes that decode and encode photos."),
    force: bool = typer.Option(False, "--force", help="Replace an output folder built from another recipe."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Build the training set a recipe describes; prints the per-group report."""
    from colorization.ingest import SourceError, build_dataset, load_recipe, report_markdown

    try:
        spec = load_recipe(recipe)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    target = out if out is not None else spec.out
    if target is None:
        typer.echo("error: no output folder: pass --out or set 'out' in the recipe", err=True)
        raise typer.Exit(2)
    try:
        report = build_dataset(spec, target, repos=repos, workers=workers, progress=progress, force=force)
    except FileExistsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report_markdown(report))
    typer.echo(f"wrote {target} (manifest.csv, report.json)")
