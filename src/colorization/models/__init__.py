"""Model registry and the networks of the package (plain PyTorch).

>>> from colorization.models import create_model, list_models
>>> net = create_model("resnet_unet", depth=34, out_channels=2)
>>> net.config, net.model_name, net.stride

See docs/models.md for the list of networks, their papers, sizes and output conventions.
Importing this package registers every built-in network.
The hint map that hint-aware networks read is defined in :mod:`colorization.models.hint_map`.
"""

from __future__ import annotations

# Built-in networks: importing a module registers it (the imports are for that side effect).
from colorization.models import (  # noqa: F401
    attention_unet,
    baseline,
    eccv16,
    effnet_fpn,
    effnet_unet,
    fusion,
    patchgan,
    resnet_unet,
)
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
