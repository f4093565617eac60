"""What every command shares: one-line errors for missing optional packages (``--debug`` for the
traceback), ``--version``, and the up-front check of an output folder.

:func:`command` wraps a command's ``main`` when ``colorization.cli`` registers it: a
:class:`~colorization._extras.MissingExtraError`, or a ``ModuleNotFoundError`` of a module that an
extra installs (:data:`colorization._extras.EXTRAS`), ends the command with one line naming the extra
and the pip command, exit status 2, no traceback, unless ``--debug`` or ``COLORIZATION_DEBUG=1``
asks for the traceback.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import inspect
import os
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from colorization._extras import DEBUG_ENV, debug_requested, missing_extra
from colorization._version import __version__

__all__ = ["command", "check_out_dir", "check_out_file", "print_version", "startup_done", "process_ends_with_command",
           "VERSION_HELP", "DEBUG_HELP"]

OUT_HINT = "'-o' / '--out'"
VERSION_HELP = "Print the version and exit."
DEBUG_HELP = f"Show the full traceback of an error (also {DEBUG_ENV}=1)."


def print_version(value: bool) -> None:
    """Eager ``--version`` callback: print ``colorization VERSION`` and exit."""
    if value:
        typer.echo(f"colorization {__version__}")
        raise typer.Exit()


@contextlib.contextmanager
def _debug(enabled: bool) -> Iterator[None]:
    """Within the command, ``--debug`` reads as ``COLORIZATION_DEBUG=1`` (child processes too)."""
    if not enabled:
        yield
        return
    before = os.environ.get(DEBUG_ENV)
    os.environ[DEBUG_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = before


_startup = {"paused": False, "frozen": False, "process_ends": False}


def process_ends_with_command() -> None:
    """Called by the console scripts: the process ends when the command does, so the objects frozen
    by :func:`startup_done` stay frozen; the interpreter's final collection then skips them (~0.4 s
    of CPU at the exit of a one-photo ``colorize``; the memory goes back to the system with the
    process). Without it (a command run in-process, as the tests do) they are unfrozen at the end."""
    _startup["process_ends"] = True


def startup_done() -> None:
    """A command's start-up (imports, model loading) is over: the objects it made are frozen (the
    cyclic garbage collector never scans them again) and collection resumes. Without the pause,
    full collections over the few hundred thousand objects of torch and the model cost ~0.15 s of a
    one-photo ``colorize`` (docs/benchmarks.md). No-op unless :func:`command` paused collection."""
    if _startup["paused"]:
        gc.freeze()
        _startup.update(paused=False, frozen=True)
        gc.enable()


@contextlib.contextmanager
def _gc_paused(enabled: bool) -> Iterator[None]:
    """Cyclic garbage collection off until :func:`startup_done` (or the end of the command); the
    frozen objects are handed back to the collector when the command ends, unless the process ends
    with it (:func:`process_ends_with_command`)."""
    if not enabled or not gc.isenabled():
        yield
        return
    gc.disable()
    _startup.update(paused=True, frozen=False)
    try:
        yield
    finally:
        if _startup["frozen"] and not _startup["process_ends"]:
            gc.unfreeze()
        _startup.update(paused=False, frozen=False, process_ends=False)
        gc.enable()


def command(
    func: Callable[..., Any], name: str, *, version: bool = False, pause_gc: bool = False
) -> Callable[..., Any]:
    """``func`` (a typer-annotated ``main``) with a ``--debug`` option (and ``--version`` with
    ``version``), whose missing optional packages end in one line and exit status 2. With
    ``pause_gc`` the garbage collector waits until ``func`` calls :func:`startup_done`."""
    signature = inspect.signature(func, eval_str=True)
    extra = [
        inspect.Parameter(
            "debug", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
            default=typer.Option(False, "--debug", help=DEBUG_HELP),
        )
    ]
    if version:
        extra.append(inspect.Parameter(
            "version", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
            default=typer.Option(False, "--version", callback=print_version, is_eager=True, help=VERSION_HELP),
        ))

    @functools.wraps(func)
    def wrapper(*args: Any, debug: bool = False, version: bool = False, **kwargs: Any) -> Any:
        with _debug(debug), _gc_paused(pause_gc):
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                missing = missing_extra(exc, needed_for=f"colorization {name}")
                if missing is None or debug_requested():
                    raise
                typer.echo(f"error: {missing}", err=True)
                raise typer.Exit(2) from None

    parameters = [_compact_help(p) for p in signature.parameters.values()] + extra
    wrapper._colorization_command = True  # type: ignore[attr-defined]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not p.empty}
    return wrapper


def _compact_help(parameter: inspect.Parameter) -> inspect.Parameter:
    """How an option shows in the help, so that its description keeps a readable column at 80
    columns: no ``[default: None]`` (an option without a default says in its help line what happens
    without it), and ``N`` / ``X`` instead of ``INTEGER RANGE`` / ``FLOAT RANGE`` before a range."""

    def compact(info: typer.models.ParameterInfo, annotation: Any, default: Any) -> typer.models.ParameterInfo:
        info = copy.copy(info)
        if default in (None, ...) and info.show_default is True:
            info.show_default = False
        ranged = isinstance(info, typer.models.OptionInfo) and (info.min is not None or info.max is not None)
        if ranged and info.metavar is None:
            base = {a for a in typing.get_args(annotation) if a is not type(None)} or {annotation}
            info.metavar = "N" if base == {int} else "X" if base == {float} else None
        return info

    info = parameter.default
    if isinstance(info, typer.models.ParameterInfo):  # name: T = typer.Option(default, ...)
        return parameter.replace(default=compact(info, parameter.annotation, info.default))
    if typing.get_origin(parameter.annotation) is typing.Annotated:  # name: Annotated[T, typer.Option(...)] = d
        base, *meta = typing.get_args(parameter.annotation)
        default = ... if parameter.default is parameter.empty else parameter.default
        meta = [compact(m, base, default) if isinstance(m, typer.models.ParameterInfo) else m for m in meta]
        return parameter.replace(annotation=typing.Annotated[(base, *meta)])
    return parameter


def _creatable(folder: Path) -> str | None:
    """Why ``folder`` cannot be made (or written into), or None. Probes by making the missing
    folders (or a temporary folder inside an existing one) and removing them again, so nothing is
    left behind whatever the answer."""
    folder = Path(os.path.abspath(folder.expanduser()))
    missing: list[Path] = []
    probe = folder
    try:
        while not probe.exists():
            if probe.is_symlink():
                return f"{probe} is a broken link"
            missing.append(probe)
            probe = probe.parent
    except OSError as exc:
        return f"cannot look at {probe}: {exc.strerror or exc}"
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    made: list[Path] = []
    try:
        if missing:
            for part in reversed(missing):
                try:
                    part.mkdir()
                except FileExistsError:  # made meanwhile by someone else: fine if it is a folder
                    if not part.is_dir():
                        raise
                else:
                    made.append(part)
        else:
            made.append(Path(tempfile.mkdtemp(prefix=".colorization-probe-", dir=folder)))
    except OSError as exc:
        return f"cannot create or write {folder}: {exc.strerror or exc}"
    finally:
        for part in reversed(made):  # innermost first
            with contextlib.suppress(OSError):
                part.rmdir()
    return None


def check_out_dir(out_dir: Path, param_hint: str = OUT_HINT) -> None:
    """Refuse, before any work, an output folder that exists as something else (a file) or that
    cannot be created or written (a parent that is a file, no permission, a read-only or special
    file system): a usage error, exit status 2. Nothing is left behind.

    Raises:
        typer.BadParameter: ``out_dir`` cannot hold the outputs.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(
            f"{out_dir}: exists and is not a folder; -o names the folder the outputs go to", param_hint=param_hint
        )
    reason = _creatable(out_dir)
    if reason is not None:
        raise typer.BadParameter(f"{out_dir}: {reason}", param_hint=param_hint)


def check_out_file(out: Path, param_hint: str = "'--out'") -> None:
    """Refuse, before any work, an output file whose folder cannot be created or written, or that
    names a folder: a usage error, exit status 2."""
    if out.is_dir():
        raise typer.BadParameter(f"{out}: is a folder; name the file to write", param_hint=param_hint)
    check_out_dir(Path(os.path.abspath(out.expanduser())).parent, param_hint)
