"""``colorization study``: a blind human rating study of colorized photos.

* ``colorization study build --images DIR --model SPEC [--model SPEC ...] --out STUDYDIR``
* ``colorization study serve STUDYDIR [--host 127.0.0.1] [--port 8765]``
* ``colorization study report STUDYDIR`` (same as ``colorization study --report --dir STUDYDIR``)

See docs/evaluation.md.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

__all__ = ["main", "Action"]


class Action(str, Enum):
    build = "build"
    serve = "serve"
    report = "report"


def main(
    action: Action | None = typer.Argument(
        None, help="build: make a study folder; serve: run the rating page; report: print results."
    ),
    study_dir: Path | None = typer.Argument(None, help="The study folder (serve, report)."),
    report: bool = typer.Option(False, "--report", help="Print the report (same as the 'report' action)."),
    dir_: Path | None = typer.Option(None, "--dir", help="The study folder (alternative to the argument)."),
    images: Path | None = typer.Option(None, "--images", help="build: folder of colour photos."),
    model: list[str] | None = typer.Option(
        None, "--model", "-m", help="build: model spec (repeatable): exported folder, 'default', 'gray', NAME=SPEC."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="build: the new study folder."),
    count: int = typer.Option(20, "--count", help="build: photos to sample."),
    size: int = typer.Option(256, "--size", help="build: side of the square study images."),
    seed: int = typer.Option(0, "--seed", help="build: photo sample and rater-order seed."),
    device: str | None = typer.Option(None, "--device", help="build: cpu, cuda, ... (default: auto)."),
    host: str = typer.Option("127.0.0.1", "--host", help="serve: interface to listen on."),
    port: int = typer.Option(8765, "--port", help="serve: TCP port."),
    as_json: bool = typer.Option(False, "--json", help="report: print JSON instead of a table."),
) -> None:
    """Blind rating study: build a study folder, serve the rating page, report mean ratings."""
    from colorization.study.db import StudyError  # lazy: torch-free CLI import (colorization.study loads build)

    if report:
        if action not in (None, Action.report):
            raise typer.BadParameter("--report cannot be combined with another action")
        action = Action.report
    if action is None:
        raise typer.BadParameter("give an action (build, serve, report) or --report")
    folder = study_dir or dir_ or (out if action is Action.build else None)
    try:
        if action is Action.build:
            from colorization.study.build import build_study  # lazy: torch-free CLI import

            if images is None or not model or folder is None:
                raise typer.BadParameter("build needs --images DIR, at least one --model and --out STUDYDIR")
            path = build_study(images, model, folder, count=count, size=size, seed=seed, device=device)
            typer.echo(f"study written to {path}; run: colorization study serve {path}")
        elif action is Action.serve:
            from colorization.study.app import serve_study  # lazy: fastapi (optional extra)

            if folder is None:
                raise typer.BadParameter("serve needs STUDYDIR (or --dir)")
            serve_study(folder, host=host, port=port)
        else:
            from colorization.study.report import study_report  # lazy: torch-free CLI import

            if folder is None:
                raise typer.BadParameter("report needs STUDYDIR (or --dir)")
            rows, text = study_report(folder)
            typer.echo(json.dumps([r.to_dict() for r in rows], indent=2) if as_json else text)
    except (StudyError, FileExistsError, FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
