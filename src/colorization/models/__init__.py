"""Model registry and the networks of the package (plain PyTorch).

>>> from colorization.models import create_model, list_models
>>> net = create_model("resnet_unet", depth=34, out_channels=2)
>>> net.config, net.model_name, net.stride

See docs/models.md for the list of networks, their papers, sizes and output conventions.
Importing this package registers every built-in network.
"""

from __future__ import annotations

import importlib
import importlib.util

from colorization.models.registry import (
    KINDS,
    ModelInfo,
    config_from_dict,
    create_model,
    get_config_class,
    list_models,
    model_info,
    register_model,
)

__all__ = [
    "KINDS",
    "ModelInfo",
    "register_model",
    "create_model",
    "list_models",
    "get_config_class",
    "model_info",
    "config_from_dict",
]

# Built-in networks; importing a module registers it. A module listed here that is not (yet)
# present in the source tree is skipped, but one that exists and fails to import raises.
_BUILTIN_MODULES = (
    "baseline",
    "resnet_unet",
    "effnet_unet",
    "effnet_fpn",
    "eccv16",
    "attention_unet",
    "fusion",
    "patchgan",
)

for _name in _BUILTIN_MODULES:
    _full = f"{__name__}.{_name}"
    if importlib.util.find_spec(_full) is not None:
        importlib.import_module(_full)
del _name, _full
