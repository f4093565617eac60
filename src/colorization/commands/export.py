"""``colorization export --model DIR|default --out FILE.onnx``: export a model to ONNX.

The graph maps normalised L ``(B,1,H,W)`` to normalised ab ``(B,2,H,W)`` (network + head decoding)
with dynamic batch, height and width; ``--hints`` adds the hint-map input ``hints`` (B,3,H,W) for a
hint-aware model (without it, ``l_norm`` is the only input). The file is written atomically, then checked against the
PyTorch model with ONNX Runtime at two input sizes (``--no-check`` skips that).
"""

from __future__ import annotations

from pathlib import Path

import typer

from colorization._extras import require
from colorization.commands.common import check_out_file

__all__ = ["main"]

PARITY_TOLERANCE = 1e-3


def main(
    model: str = typer.Option("default", "--model", help="Exported model folder, or 'default' for the shipped model."),
    out: Path = typer.Option(..., "--out", help="Destination .onnx file."),
    opset: int = typer.Option(17, "--opset", min=11, help="ONNX opset version."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch after export."),
    hints: bool = typer.Option(
        False, "--hints/--no-hints",
        help="Give the graph a second, required input 'hints' (B,3,H,W) for colour points (hint-aware models). "
        "Default: 'l_norm' is the only input (automatic colorization).",
    ),
) -> None:
    """Export a model (network + head decoding) to ONNX with dynamic batch/height/width."""
    # before any work: the 'onnx' extra (ONNX Runtime only for the check) and a writable destination
    require("onnx", "colorization export")
    if check:
        require("onnxruntime", "colorization export's check against ONNX Runtime (--no-check skips it)")
    check_out_file(out)
    if out.exists() and not force:
        typer.echo(f"error: {out} exists; pass --force to replace it", err=True)
        raise typer.Exit(2)
    # lazy: torch-free CLI import
    from colorization.inference import checkpoint
    from colorization.inference.onnx_export import export_onnx, onnx_parity

    try:
        color_model = checkpoint.load_exported(checkpoint.resolve_model_dir(model), device="cpu", strict=True)
    except Exception as exc:  # noqa: BLE001 - report any load problem with its message
        typer.echo(f"error: cannot load the model {model!r}: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        path = export_onnx(color_model, out, opset=opset, overwrite=force, hints=hints)
    except FileExistsError as exc:
        typer.echo(f"error: {exc}; pass --force to replace it", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    inputs = "l_norm, hints" if hints else "l_norm"
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {opset}, stride {color_model.stride}, "
        f"inputs {inputs})"
    )
    if check:
        diff = onnx_parity(color_model, path)
        typer.echo(f"ONNX Runtime vs PyTorch: max |difference| = {diff:.2e} (tolerance {PARITY_TOLERANCE:g})")
        if not diff <= PARITY_TOLERANCE:
            typer.echo("error: the ONNX model does not match the PyTorch model", err=True)
            raise typer.Exit(1)
