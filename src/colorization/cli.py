"""Command-line entry points.

``colorization`` is a single typer app whose subcommands live in
``colorization.commands.<name>`` (each module exposes a typer-annotated ``main``).
``colorize`` is the main job as its own console script.
"""

from __future__ import annotations

import importlib
import os

# PyTorch's OpenMP threads spin while they wait by default; on a shared or small CPU that makes
# small convolutions many times slower (docs/benchmarks.md). Passive waiting costs nothing
# measurable on large work. Must be set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

app = typer.Typer(
    name="colorization",
    help="Colorize grayscale photographs: train, evaluate, colorize and serve.",
    no_args_is_help=True,
    add_completion=False,
)

# (subcommand name, module under colorization.commands, one-line help)
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("colorize", "colorize", "Colorize image files, folders and globs."),
    ("export", "export", "Export a model to ONNX (dynamic batch/height/width)."),
    ("colorize-many", "colorize_many", "Colorize millions of images across processes/GPUs/nodes (torchrun)."),
    ("serve", "serve", "REST service and browser page for colorizing photos."),
    ("train", "train", "Train a colorization network (single process or torchrun)."),
    ("evaluate", "evaluate", "Compare models on folders of photos (metrics, tables, figures)."),
    ("evaluate-merge", "evaluate_merge", "Merge evaluation runs on the same photos into one table."),
    ("study", "study", "Blind human rating study: build, serve, report."),
    ("data", "data", "Build training sets of photos from folders and git repositories."),
]


def _register() -> None:
    for name, module, help_text in SUBCOMMANDS:
        mod = importlib.import_module(f"colorization.commands.{module}")
        if isinstance(getattr(mod, "app", None), typer.Typer):  # a group of subcommands
            app.add_typer(mod.app, name=name, help=help_text)
        else:
            app.command(name=name, help=help_text)(mod.main)


_register()


def colorize_app() -> None:
    """Console script ``colorize``: the same command as ``colorization colorize``."""
    mod = importlib.import_module("colorization.commands.colorize")
    single = typer.Typer(add_completion=False)
    single.command(help="Colorize image files, folders and globs.")(mod.main)
    single()


if __name__ == "__main__":  # pragma: no cover
    app()
