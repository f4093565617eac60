"""``colorization evaluate-merge``: one table from several ``evaluate`` runs on the same photos."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

__all__ = ["main"]


def main(
    folders: list[Path] = typer.Argument(..., help="Output folders of `colorization evaluate`, in table order."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged results and AuC plot."),
) -> None:
    """Merge evaluation runs made with the same protocol (size, photo subset, seed) into one
    results.json/.csv/.md and AuC plot (see colorization.evaluation.evaluate.merge_outputs)."""
    from colorization.commands.evaluate import report_skipped_figures
    from colorization.evaluation.evaluate import merge_outputs  # lazy: torch-free CLI import

    try:
        paths = merge_outputs(folders, out)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("wrote " + ", ".join(p.name for p in paths.values()) + f" in {out}")
    report_skipped_figures(out)
    sys.stdout.flush()
