"""Command-line entry points.

``colorization`` is a single typer app (:data:`app`) whose subcommands live in
``colorization.commands.<name>`` (each module exposes a typer-annotated ``main``, registered through
:func:`colorization.commands.common.command`: ``--debug``, and one-line errors for missing extras).
``colorize`` is the main job as its own console script (:func:`colorize_app`). Both take ``--version``.

:data:`app` is built on first use (a module ``__getattr__``), so the ``colorize`` console script
imports its own command only, not the service's, the trainer's or the evaluation's.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# PyTorch's OpenMP threads spin while they wait by default; on a shared or small CPU that makes
# small convolutions many times slower (docs/benchmarks.md). Passive waiting costs nothing
# measurable on large work. Must be set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from colorization.commands.common import VERSION_HELP, command, print_version, process_ends_with_command

__all__ = ["colorize_app", "SUBCOMMANDS"]  # and `app`, built on first use (__getattr__ below)

# (subcommand name, module under colorization.commands, one-line help)
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("colorize", "colorize", "Colorize image files, folders and globs."),
    ("export", "export", "Export a model to ONNX (dynamic batch/height/width)."),
    ("colorize-many", "colorize_many", "Colorize millions of images across processes/GPUs/nodes (torchrun)."),
    ("serve", "serve", "REST service and browser page for colorizing photos and videos."),
    ("train", "train", "Train a colorization network (single process or torchrun)."),
    ("evaluate", "evaluate", "Compare models on folders of photos (metrics, tables, figures)."),
    ("evaluate-merge", "evaluate_merge", "Merge evaluation runs on the same photos into one table."),
    ("study", "study", "Blind human rating study: build, serve, report."),
    ("data", "data", "Build training sets of photos from folders and git repositories."),
]


def _options(
    version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True, help=VERSION_HELP),
) -> None:
    pass


class _ConsoleApp(typer.Typer):
    """A typer app whose call is the console script's: the process ends with the command
    (:func:`colorization.commands.common.process_ends_with_command`). Tests invoke the command
    through ``typer.testing.CliRunner``, which does not call it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        process_ends_with_command()
        return super().__call__(*args, **kwargs)


def _build_app() -> typer.Typer:
    """The ``colorization`` app with every subcommand registered."""
    built = _ConsoleApp(
        name="colorization",
        help="Colorize grayscale photographs: train, evaluate, colorize and serve.",
        no_args_is_help=True,
        add_completion=False,
    )
    built.callback()(_options)
    for name, module, help_text in SUBCOMMANDS:
        mod = importlib.import_module(f"colorization.commands.{module}")
        group = getattr(mod, "app", None)
        if isinstance(group, typer.Typer):  # a group of subcommands: each gets --debug and the one-line errors
            for info in group.registered_commands:
                if not getattr(info.callback, "_colorization_command", False):
                    info.callback = command(info.callback, f"{name} {info.name or info.callback.__name__}")
            built.add_typer(group, name=name, help=help_text)
        else:
            built.command(name=name, help=help_text)(
                command(mod.main, name, version=name == "colorize", pause_gc=name == "colorize")
            )
    return built


def __getattr__(name: str) -> Any:
    if name == "app":  # built once, on first use (the console script `colorization`, tests, __main__)
        globals()["app"] = built = _build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def colorize_app() -> None:
    """Console script ``colorize``: the same command as ``colorization colorize``."""
    mod = importlib.import_module("colorization.commands.colorize")
    single = _ConsoleApp(add_completion=False)
    single.command(help="Colorize image files, folders and globs.")(
        command(mod.main, "colorize", version=True, pause_gc=True)
    )
    single()


if __name__ == "__main__":  # pragma: no cover
    __getattr__("app")()
