"""``colorization serve``: the REST service and browser page (see docs/service.md)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from colorization._extras import require
from colorization.serve.serving import DEFAULT_QUEUE_SIZE, run_app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 = any free port).")] = 8000,
    model: Annotated[
        Path | None,
        typer.Option(help="Exported model folder (model.safetensors + config.json); default: the shipped model."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Torch device, e.g. cpu or cuda:0 (default: automatic).")
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest accepted upload in MiB (413 beyond).")
    ] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest accepted image in pixels, width*height (413 beyond).")
    ] = 16_000_000,
    queue_size: Annotated[
        int, typer.Option(min=0, help="Requests that may wait for a worker; more get 503 + Retry-After.")
    ] = DEFAULT_QUEUE_SIZE,
    workers: Annotated[int, typer.Option(min=1, help="Images colorized at the same time (threads).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve POST /colorize (photos), POST /videos, GET /health, the browser page at / and an API
    reference at /docs."""
    # the 'serve' extra, checked before any work; a missing one ends in one line naming it
    # (colorization.commands.common.command)
    require("uvicorn", "colorization serve")
    from colorization.serve.service import create_app  # lazy: fastapi and torch (the 'serve' extra)
    if model is not None and not model.is_dir():
        raise typer.BadParameter(f"model folder {model} does not exist", param_hint="--model")
    if not _is_loopback(host):
        typer.secho(
            f"warning: listening on {host}, reachable from other machines; the service has no authentication",
            fg=typer.colors.YELLOW,
            err=True,
        )
    app = create_app(
        model=None if model is None else str(model),
        device=device,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_pixels=max_pixels,
        queue_size=queue_size,
        workers=workers,
    )
    def announce(url: str) -> None:
        typer.echo(
            f"colorization serve: model {app.state.model_name} on {app.state.device}; "
            f"page at {url}/, API reference at {url}/docs",
            err=True,
        )

    try:
        run_app(app, host, port, log_level=log_level, announce=announce)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", param_hint="--port"
        ) from None
