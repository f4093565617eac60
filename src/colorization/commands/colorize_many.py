"""``colorization colorize-many --list FILE | --input DIR -o OUTDIR``: colorize very many images
across processes, GPUs and nodes (launch with torchrun), resumably.

Single process::

    colorization colorize-many --input photos/ -o colorized/

Four GPUs on one node (one process each), with torchrun or by spawning locally::

    torchrun --nproc_per_node 4 -m colorization.cli colorize-many --list files.txt -o out/ --device cuda
    colorization colorize-many --list files.txt -o out/ --device cuda --nproc 4

Several nodes: ``torchrun --nnodes N --node_rank R --master_addr HOST --nproc_per_node G ...``.

Each rank takes the entries ``i`` with ``i % world_size == rank``; existing outputs are skipped, so
rerunning the same command after a crash finishes the job. Images that fail are reported by name
and listed in ``OUTDIR/.colorize-many/summary.json``; the exit status is 0 when the job ran to the
end (``--fail-on-error``: 1 when anything failed). ``--hints FILE`` maps file names to colour-hint
points (checked before any image is read); ``--reference PHOTO`` lends every photo and video the
colours of a reference photo where they match it (read and checked before any rank starts).
Videos among the entries are cut into chunks of ``--chunk-seconds`` that the ranks share, and
joined losslessly at the end (:mod:`colorization.batch.video_chunks`). See :mod:`colorization.batch.distributed`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from colorization.batch.hint_files import HintsFileError
from colorization.commands import reference_option
from colorization.commands.colorize import BACKGROUND_HELP, BackendName, Device, OutputFormat, check_background
from colorization.commands.common import check_out_dir

__all__ = ["main"]


def main(
    list_file: Path | None = typer.Option(
        None, "--list", help="Text file with one image path per line (relative to --root)."
    ),
    input_dir: Path | None = typer.Option(None, "--input", help="Folder of images (walked recursively)."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Output folder; input paths are mirrored under it."),
    root: Path | None = typer.Option(
        None, "--root", help="Folder relative list entries refer to and outputs mirror (default: the list's folder)."
    ),
    model: str | None = typer.Option(None, "--model", help="Exported model folder (default: the shipped model)."),
    backend: BackendName = typer.Option(BackendName.torch, "--backend", help="torch or onnx."),
    device: Device | None = typer.Option(
        None, "--device", help="cpu or cuda (rank r uses cuda:LOCAL_RANK). Default: cuda when available."
    ),
    size: int | None = typer.Option(
        None, "--size", min=16, metavar="PX", help="Working resolution (short side, px). Default: the model's own."
    ),
    saturation: float = typer.Option(
        1.0, "--saturation", min=0.0, max=2.0, help=(
            "Chroma multiplier on top of the model's own (0 = gray; the shipped model halves its predicted "
            "chroma, so 2 gives it in full)."
        )
    ),
    refine: bool = typer.Option(False, "--refine", help="Edge-aware (guided filter) colour upsampling."),
    fmt: OutputFormat | None = typer.Option(
        None, "--format", metavar="FORMAT", help="Output format: an image format for photos (png, jpeg, webp; "
        "default: keep each input's), or a video format for videos (mp4, mkv, mov, webm; default mp4).",
    ),
    background: str | None = typer.Option(
        None, "--background", metavar="COLOR", callback=check_background, help=BACKGROUND_HELP
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per network call."),
    workers: int = typer.Option(2, "--workers", min=0, help="Decode processes per rank (DataLoader workers)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs instead of skipping them."),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="Processes to spawn here (instead of torchrun); one per GPU with --device cuda."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, show_default=False, help=(
            "CPU threads of each process (torch; ONNX Runtime too with --backend onnx). Default: one per usable "
            "core, shared out among the --nproc processes."
        ),
    ),
    fail_on_error: bool = typer.Option(
        False, "--fail-on-error", help="Exit with status 1 (on every rank) when any image failed."
    ),
    chunk_seconds: float = typer.Option(
        60.0, "--chunk-seconds", min=0.001, help=(
            "Videos longer than this are cut into chunks of this many seconds that the processes share; "
            "the chunks are joined without re-encoding."
        ),
    ),
    overlap_seconds: float = typer.Option(
        2.0, "--overlap-seconds", min=0.0, help=(
            "Each chunk's stabiliser starts this many seconds early (colorized, not written), so the "
            "colours carry on across chunk boundaries."
        ),
    ),
    hints_file: Path | None = typer.Option(
        None, "--hints", metavar="FILE", help=(
            "JSON object mapping file names (relative to the root, or base names) to lists of colour-hint "
            "points; needs a hint-aware model. See docs/colorize.md."
        ),
    ),
    reference: Path | None = typer.Option(
        None, "--reference", metavar="PHOTO", rich_help_panel=reference_option.PANEL, help=(
            "A colour photo of the same scene or subject whose colours every input takes where it matches "
            "(read and checked before any input); needs a hint-aware model. See docs/colorize.md."
        ),
    ),
    reference_strength: float = typer.Option(
        1.0, "--reference-strength", min=0.0, max=2.0, metavar="S", help=reference_option.STRENGTH_HELP,
        rich_help_panel=reference_option.PANEL,
    ),
) -> None:
    """Colorize a file list or folder across torchrun ranks; resumable (finished files are skipped)."""
    # lazy: torch-free CLI import
    from colorization.batch.distributed import STATE_DIR, DistContext, ManyConfig, colorize_many, launch_local

    if (list_file is None) == (input_dir is None):
        raise typer.BadParameter("give exactly one of --list FILE and --input DIR")
    if list_file is not None and not list_file.is_file():
        raise typer.BadParameter(f"{list_file}: no such file", param_hint="--list")
    if input_dir is not None and not input_dir.is_dir():
        raise typer.BadParameter(f"{input_dir}: no such folder", param_hint="--input")
    check_out_dir(out_dir)
    ref_specs = reference_option.parse_references([str(reference)] if reference is not None else None)
    config = ManyConfig(
        out_dir=str(out_dir),
        list_file=str(list_file) if list_file else None,
        input_dir=str(input_dir) if input_dir else None,
        root=str(root) if root else None,
        model=model,
        backend=backend.value,
        device=device.value if device else None,
        size=size,
        saturation=saturation,
        refine=refine,
        fmt=fmt.value if fmt else None,
        batch_size=batch_size,
        workers=workers,
        force=force,
        hints_file=str(hints_file) if hints_file is not None else None,
        background=background,
        chunk_seconds=chunk_seconds,
        overlap_seconds=overlap_seconds,
        reference=str(reference) if reference is not None else None,
        reference_strength=reference_strength,
        threads=threads,
    )
    from colorization.inference.checkpoint import CheckpointError  # lazy: torch-free CLI import

    ctx = DistContext.from_env()
    if nproc > 1 and ctx.world_size > 1:
        raise typer.BadParameter("--nproc cannot be combined with torchrun (WORLD_SIZE is set)", param_hint="--nproc")
    if ref_specs:  # fail before any rank starts on a reference that cannot be used
        from colorization.inference.colorizer import Colorizer  # lazy: torch-free CLI import

        try:
            checker = Colorizer.from_pretrained(model, device="cpu", backend=backend.value)
        except Exception as exc:  # noqa: BLE001 - any load problem ends the command with its message
            typer.echo(f"error: cannot load the model: {exc}", err=True)
            raise typer.Exit(2) from None
        reference_option.read_references(checker, ref_specs)
        del checker
    try:
        if nproc > 1:
            # lazy: torch-free CLI import
            from colorization.batch.distributed import check_hints_model, resolve_hints
            from colorization.inference.checkpoint import load_exported, resolve_model_dir

            hints = resolve_hints(config)  # fail fast, before spawning, on a bad hints file
            if backend.value == "torch":  # ... and on a model that cannot load
                loaded = load_exported(resolve_model_dir(model), device="cpu")
                check_hints_model(hints, loaded.accepts_hints, loaded.model_name, config.hints_file)
            result = launch_local(config, nproc)
        else:
            result = colorize_many(config, ctx)
    except HintsFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--hints'") from None
    except (CheckpointError, FileNotFoundError) as exc:
        typer.echo(f"error: cannot load the model: {exc}", err=True)
        raise typer.Exit(2) from None
    if ctx.rank == 0:
        if result["failed"]:
            typer.echo(f"the failures are listed in {out_dir / STATE_DIR / 'summary.json'}", err=True)
        typer.echo(json.dumps({k: result[k] for k in ("done", "failed", "skipped", "world_size")}))
        typer.echo(f"{result['done']} colorized, {result['skipped']} skipped, {result['failed']} failed")
    # every rank holds the merged counts, so all exit with the same status
    if fail_on_error and result["failed"]:
        raise typer.Exit(1)
