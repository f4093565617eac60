"""``colorize PATH... -o OUTDIR``: colorize image and video files, folders (recursive) and glob patterns.

The work is :func:`colorization.batch.jobs.colorize_files` (the job of ``colorize-many`` too). Output names
mirror the inputs (:func:`colorization.batch.jobs.output_path`): a file given directly goes to
``OUTDIR/<name>``; a file found in a folder given as ``IN`` goes to ``OUTDIR/<path relative to IN>``
(``IN/a/b.jpg -> OUTDIR/a/b.jpg``). An ``OUTDIR`` inside an input folder is left out of the search, so a
second run does not take the first run's outputs for inputs.
File names and formats are kept unless ``--format`` is given; EXIF metadata is kept where the
format allows (without the orientation tag, since pixels are stored upright). Existing outputs are
never overwritten without ``--force`` (they are reported as skipped). A file that cannot be read is
reported by name and skipped; the others complete. The last line is
``N colorized, N skipped, N failed`` (plus ``, N not images (left alone)`` when a folder holds other
files); the exit status is 1 when anything failed.

Colour hints (a hint-aware model): ``--hint X,Y,#rrggbb`` (repeatable) for a single image, or
``--hints FILE`` with a JSON list of points (a single image) or an object mapping file names to
lists of points (:mod:`colorization.batch.hint_files`). Both are checked before any image is read
(exit status 2); a point outside its image fails that file like an unreadable image.

Videos (:data:`colorization.video.formats.VIDEO_EXTENSIONS`; a folder may mix them with photos)
follow the same rules and go to ``OUTDIR/<name>.mp4`` (``--format mkv|mov|webm`` picks another;
:func:`colorization.batch.jobs.colorize_videos`). ``--hint F:X,Y,#rrggbb`` puts a hint on frame ``F``
(default 0) of a single video, ``--hints FILE`` may give videos points per frame index; the
stabiliser carries them forward (docs/video.md).

A reference photo (``--reference PHOTO``, ``--reference-strength``; per shot of a single video
``--reference F:PHOTO``) lends its colours where an input matches it
(:mod:`colorization.commands.reference_option`); it is read and checked before any input (exit status 2).
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from colorization import image_io
from colorization._extras import debug_requested, missing_extra
from colorization.batch.hint_files import HintsFileError, load_hints_file, match_inputs, split_video_hints
from colorization.commands import reference_option
from colorization.commands.common import check_out_dir, startup_done
from colorization.video.formats import VIDEO_EXTENSIONS, VIDEO_FORMATS, is_video_path

__all__ = ["main", "OutputFormat", "check_out_dir", "find_inputs"]


def _shipped_working_size() -> str:
    """The shipped model's working size from its config.json (read without importing torch, so
    ``--help`` stays fast); "unknown" if the file is unreadable."""
    path = Path(__file__).resolve().parents[1] / "weights" / "default" / "config.json"
    try:
        return str(int(json.loads(path.read_text(encoding="utf-8"))["working_size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


OutputFormat = Enum(  # type: ignore[misc]
    "OutputFormat", {name: name for name in [*image_io.OUTPUT_FORMATS, *VIDEO_FORMATS]}, type=str
)
_EXTENSIONS = image_io.IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class BackendName(str, Enum):
    torch = "torch"
    onnx = "onnx"


def find_inputs(
    paths: list[str], exclude: Path | None = None
) -> tuple[list[tuple[Path, Path | None]], list[tuple[str, str]]]:
    """Expand each argument with :func:`colorization.image_io.find_images` (files, folders, globs),
    leaving the folder ``exclude`` (the output folder) out of folder walks and glob matches.

    Returns ``(files, problems)``: ``(file, root)`` pairs (a file is listed once even when several
    arguments name it) and ``(argument, reason)`` for arguments that match nothing.
    """
    files: list[tuple[Path, Path | None]] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for arg in paths:
        try:
            found = image_io.find_images(
                [arg], recursive=True, extensions=_EXTENSIONS, exclude=[exclude] if exclude else []
            )
        except FileNotFoundError as exc:
            problems.append((arg, str(exc).removeprefix(f"{arg}: ")))
            continue
        for file, root in found:
            key = Path(file).resolve()
            if key not in seen:
                seen.add(key)
                files.append((Path(file), root))
    return files, problems


def _hints_for_inputs(
    hint: list[str], hints_file: Path | None, inputs: list[tuple[Path, Path | None]]
) -> dict[Path, list]:
    """Check ``--hint`` / ``--hints`` against the inputs before any work; ``{file: points}``.

    Raises:
        typer.BadParameter: a malformed point, a bad hints file, points for several images without
            names, or names that match no input (exit status 2).
    """
    if not hint and hints_file is None:
        return {}
    if hint and hints_file is not None:
        raise typer.BadParameter("give --hint or --hints, not both", param_hint="'--hint'")
    if hint:
        from colorization.inference.hints import MAX_HINTS, parse_hint  # lazy: torch-free CLI import

        if len(hint) > MAX_HINTS:
            raise typer.BadParameter(f"{len(hint)} points; at most {MAX_HINTS} per image", param_hint="'--hint'")
        try:
            points = [parse_hint(text) for text in hint]
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--hint'") from None
        source = "the --hint points apply"
    else:
        try:
            loaded = load_hints_file(hints_file)  # type: ignore[arg-type]
            if isinstance(loaded, dict):
                return split_video_hints(match_inputs(loaded, inputs, hints_file), hints_file)[0]  # type: ignore[arg-type]
        except HintsFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--hints'") from None
        points, source = loaded, f"{hints_file}: a list of points applies"
    if len(inputs) > 1:
        raise typer.BadParameter(
            f"{source} to one image, but the arguments name {len(inputs)} images; for several "
            'images use --hints FILE with an object mapping file names to points: {"NAME": [points], ...}',
            param_hint="'--hint'" if hint else "'--hints'",
        )
    return {Path(inputs[0][0]): points} if inputs else {}


def _hints_file_with_videos(
    hints_file: Path, videos: list, images: list
) -> tuple[dict[Path, list], dict[Path, dict]]:
    """``--hints FILE`` when the inputs hold videos: ``({photo: points}, {video: {frame: points}})``.
    A list of points applies to a single input (frame 0 of a single video).

    Raises:
        typer.BadParameter: a bad file, a list for several inputs, names that match no input, or
            points per frame for a photo.
    """
    try:
        loaded = load_hints_file(hints_file)
        if isinstance(loaded, dict):
            return split_video_hints(match_inputs(loaded, images + videos, hints_file), hints_file)
    except HintsFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--hints'") from None
    if len(videos) + len(images) > 1:
        raise typer.BadParameter(
            f"{hints_file}: a list of points applies to one video, but the arguments name {len(videos)} videos "
            f'and {len(images)} images; use an object mapping file names to points: {{"NAME": ...}}',
            param_hint="'--hints'",
        )
    return {}, {Path(videos[0][0]): {0: loaded}}


def _video_hints(hint: list[str], hints_file: Path | None, videos: list, images: list) -> dict[Path, dict]:
    """``--hint [F:]X,Y,COLOR[,HOLD]`` for a single video: ``{video: {frame: points}}`` (``HOLD``:
    ``track``, the default, or ``shot``, see :class:`colorization.video.VideoHint`).

    Raises:
        typer.BadParameter: a malformed point or frame, --hints with a video, or other inputs.
    """
    if not hint:
        return {}
    if hints_file is not None:
        raise typer.BadParameter("give --hint or --hints, not both", param_hint="'--hint'")
    if len(videos) != 1 or images:
        raise typer.BadParameter(
            f"--hint applies to one video, but the arguments name {len(videos)} videos and {len(images)} images",
            param_hint="'--hint'",
        )
    from colorization.inference.hints import MAX_HINTS  # lazy: torch-free CLI import
    from colorization.video.hint_tracking import coerce_video_hints

    frames: dict[int, list] = {}
    for text in hint:
        frame, sep, point = text.partition(":")
        if not sep:
            frame, point = "0", text
        if not frame.strip().isdigit():
            raise typer.BadParameter(f"{text!r}: the frame before ':' must be an index >= 0", param_hint="'--hint'")
        try:
            (parsed,) = coerce_video_hints([point])  # X,Y,COLOR with an optional last field ,track or ,shot
        except ValueError as exc:
            msg = str(exc).removeprefix("hint 0: ")
            raise typer.BadParameter(f"{text!r}: {msg}", param_hint="'--hint'") from None
        frames.setdefault(int(frame), []).append(parsed)
    if any(len(points) > MAX_HINTS for points in frames.values()):
        raise typer.BadParameter(f"at most {MAX_HINTS} points per frame", param_hint="'--hint'")
    return {Path(videos[0][0]): frames}


def check_background(value: str | None) -> str | None:
    """``--background``: a colour name or #rrggbb (typer.BadParameter otherwise)."""
    try:
        image_io.parse_background(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


BACKGROUND_HELP = (
    "Composite transparent images on this colour (a name such as white, or #rrggbb) before colorizing. "
    "Default: keep the alpha channel in PNG, WebP and TIFF outputs; JPEG outputs are composited on white."
)


def main(
    paths: list[str] = typer.Argument(
        ..., help="Image or video files, folders (searched recursively) or glob patterns."
    ),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Output folder (created if missing)."),
    model: str | None = typer.Option(
        None, "--model", help="Exported model folder (or .onnx file with --backend onnx). Default: the shipped model."
    ),
    size: int | None = typer.Option(
        None, "--size", min=16, metavar="PX", help=(
            "Working resolution (short side, px). Default: the model's own working size "
            f"(the shipped model: {_shipped_working_size()})."
        )
    ),
    # the range is colorizer.SATURATION_RANGE (a test holds them equal; importing it here would load torch)
    saturation: float = typer.Option(
        1.0, "--saturation", min=0.0, max=2.0, metavar="X", help=(
            "Chroma multiplier on top of the model's own (0 = gray; the shipped model halves its predicted "
            "chroma, so 2 gives it in full)."
        )
    ),
    device: Device | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    batch_size: int = typer.Option(
        4, "--batch-size", min=1, metavar="N", help="Images of equal working shape per network call."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    compare: bool = typer.Option(False, "--compare", help="Also write <name>_compare.<ext>: gray | colorized."),
    background: str | None = typer.Option(
        None, "--background", metavar="COLOR", callback=check_background, help=BACKGROUND_HELP
    ),
    fmt: OutputFormat | None = typer.Option(
        None, "--format", metavar="FORMAT", help=(
            "Output format: an image format for photos (png, jpeg, webp; default: keep the input's), or a "
            "video format for videos (mp4, mkv, mov: H.264; webm: VP9; default mp4)."
        ),
    ),
    refine: bool = typer.Option(False, "--refine", help="Edge-aware (guided filter) upsampling of the colour."),
    backend: BackendName = typer.Option(BackendName.torch, "--backend", help="torch or onnx (ONNX Runtime)."),
    precision: Precision = typer.Option(
        Precision.auto, "--precision", metavar="MODE", help=(
            "Network precision (torch): auto, fp32, bf16 or fp16; auto = bf16 on CUDA when supported, else fp32."
        ),
    ),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (torch backend)."),
    no_compile: bool = typer.Option(False, "--no-compile", hidden=True, help="The default: no torch.compile."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, metavar="N", help=(
            "CPU threads for the network and the colour maths (torch; ONNX Runtime too with --backend onnx). "
            "Default: one per usable core."
        ),
    ),
    hint: list[str] | None = typer.Option(
        None, "--hint", metavar="X,Y,COLOR", help=(
            "Colour hint for a single input image: X,Y,#rrggbb or X,Y,R,G,B in the image's pixels "
            "(repeatable; needs a hint-aware model). The '#' is optional; quote the value "
            "('120,340,#c0392b') in zsh or PowerShell, or if it holds spaces. For a single video, "
            "F:X,Y,#rrggbb puts it on frame F (default 0); it is carried to the following frames while it "
            "can be followed, or to the end of its shot with a last field ',shot' (F:X,Y,#rrggbb,shot)."
        ),
    ),
    hints_file: Path | None = typer.Option(
        None, "--hints", metavar="FILE", help=(
            "JSON colour hints: a list of points (single input image, or frame 0 of a single video) or an "
            "object mapping file names (relative to the folder given, or base names) to lists of points; "
            'a video\'s entry may map frame indices to lists of points: {"film.mp4": {"0": [...], "48": [...]}}. '
            "See docs/colorize.md and docs/video.md."
        ),
    ),
    reference: list[str] | None = typer.Option(
        None, "--reference", metavar="[F:]PHOTO", help=reference_option.REFERENCE_HELP,
        rich_help_panel=reference_option.PANEL,
    ),
    reference_strength: float = typer.Option(
        1.0, "--reference-strength", min=0.0, max=2.0, metavar="S", help=reference_option.STRENGTH_HELP,
        rich_help_panel=reference_option.PANEL,
    ),
) -> None:
    """Colorize image and video files, folders and globs into OUTDIR."""
    check_out_dir(out_dir)  # before anything heavy: a bad -o is a usage error at once
    ref_specs = reference_option.parse_references(reference)  # so is a missing reference photo
    # lazy: torch-free CLI import
    from colorization.batch import jobs
    from colorization.inference.colorizer import Colorizer

    found, problems = find_inputs(paths, exclude=out_dir)
    videos = [entry for entry in found if is_video_path(entry[0])]
    inputs = [entry for entry in found if not is_video_path(entry[0])]
    reference_option.check_reference_inputs(ref_specs, videos, inputs)
    if videos and hints_file is not None and not hint:
        hints_for, video_hints = _hints_file_with_videos(hints_file, videos, inputs)
    elif videos:
        video_hints, hints_for = _video_hints(hint or [], hints_file, videos, inputs), {}
    else:
        video_hints, hints_for = {}, _hints_for_inputs(hint or [], hints_file, inputs)
    for arg, reason in problems:
        typer.echo(f"failed: {arg}: {reason}", err=True)
    if not found and not problems:
        typer.echo("no images or videos found in " + ", ".join(paths), err=True)
        typer.echo("0 colorized, 0 skipped, 0 failed")
        raise typer.Exit(1)

    summary, video_summary = jobs.JobSummary(), jobs.JobSummary()
    if found:
        try:
            colorizer = Colorizer.from_pretrained(
                model, device=device.value if device else None, backend=backend.value, size=size, refine=refine,
                precision=precision.value, compile=compile and not no_compile, threads=threads,
            )
        except Exception as exc:  # noqa: BLE001 - any load problem ends the command with its message
            if missing_extra(exc) is not None or debug_requested():
                raise  # one line naming the extra (colorization.commands.common), or the traceback asked for
            typer.echo(f"error: cannot load the model: {exc}", err=True)
            raise typer.Exit(2) from None
        startup_done()
        if (any(hints_for.values()) or video_hints) and not colorizer.accepts_hints:
            raise typer.BadParameter(
                colorizer.no_hints_reason if backend.value == "onnx"
                else f"--model {model or 'default'}: {colorizer.no_hints_reason}",
                param_hint="'--hint'" if hint else "'--hints'",
            )
        refs = reference_option.read_references(colorizer, ref_specs)
        image_fmt = fmt.value if fmt and fmt.value in image_io.OUTPUT_FORMATS else None
        if inputs:
            reporter = jobs.ProgressReporter(total=len(inputs))
            try:
                summary = jobs.colorize_files(
                    colorizer, inputs,
                    jobs.Outputs(out_dir, image_fmt, force, compare, image_io.parse_background(background)),
                    hints=hints_for, saturation=saturation, batch_size=batch_size, unique_outputs=True,
                    progress=reporter, reference=refs, reference_strength=reference_strength,
                )
            finally:
                reporter.close()
        if videos:
            reporter = jobs.ProgressReporter(total=len(videos), desc="videos")
            try:
                video_summary = jobs.colorize_videos(
                    colorizer, videos, out_dir, fmt=fmt.value if fmt and fmt.value in VIDEO_FORMATS else None,
                    force=force, hints=video_hints, saturation=saturation, batch_size=batch_size,
                    progress=reporter, reference=refs, reference_strength=reference_strength,
                )
            finally:
                reporter.close()

    done, skipped = summary.done + video_summary.done, summary.skipped + video_summary.skipped
    failed = summary.failed + video_summary.failed + len(problems)
    others = sum(image_io.count_non_images(p, _EXTENSIONS, [out_dir]) for p in paths if Path(p).is_dir())
    not_images = f", {others} not images (left alone)" if others else ""
    typer.echo(f"{done} colorized, {skipped} skipped, {failed} failed{not_images}")
    if failed:
        raise typer.Exit(1)
