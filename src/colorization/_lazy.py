"""Lazy exports for the sub-packages: a package names its public API in one table and each name
loads its module on first use, so that importing a package (the command line imports several)
does not pull torch or FastAPI."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``, a table of
    public name -> submodule (relative to ``package``) that defines it.

    >>> __getattr__, __dir__ = lazy_exports(__name__, {"Colorizer": "colorizer"})  # in an __init__.py
    """

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
