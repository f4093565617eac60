"""Colorize grayscale photographs with convolutional networks.

The public API is re-exported lazily so that ``import colorization`` stays cheap:

>>> from colorization import Colorizer, create_model, list_models
"""

from __future__ import annotations

from colorization._version import __version__

__all__ = ["Colorizer", "create_model", "list_models", "__version__"]


def __getattr__(name: str):
    # lazy: these pull torch, and `import colorization` (the CLI included) stays torch-free
    if name == "Colorizer":
        from colorization.inference.colorizer import Colorizer

        return Colorizer
    if name in ("create_model", "list_models"):
        from colorization import models

        return getattr(models, name)
    raise AttributeError(f"module 'colorization' has no attribute {name!r}")
