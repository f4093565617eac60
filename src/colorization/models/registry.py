"""Model registry: names -> (frozen dataclass config, builder, kind).

Every network of the package is registered under a short name together with a frozen dataclass
holding its hyper-parameters:

>>> @register_model("baseline", BaselineConfig, description="...", paper="...")
... class Baseline(nn.Module):
...     def __init__(self, config: BaselineConfig) -> None: ...

``create_model(name, **fields)`` validates the fields against the config class (unknown names
raise ``ValueError`` listing the valid ones), builds the config (its ``__post_init__`` validates
values), calls the builder with it and stamps ``.config`` / ``.model_name`` on the result. JSON
lists are turned back into tuples so that ``create_model(name, **json.loads(json.dumps(
dataclasses.asdict(model.config))))`` rebuilds the same network (that is how exported models are
reloaded).

Conventions for config classes (checked at registration):

* a frozen dataclass whose fields are JSON-serialisable (int, float, str, bool, None, tuples);
* generators have ``out_channels`` (2 = regression of normalised ab, Q = classification logits);
* models with an ImageNet-pretrained part have ``pretrained: bool``;
* a classmethod ``tiny()`` returning a small instance for unit tests (width 8, fast on CPU at
  32-64 px, no pretrained weights); the test suite builds every registered model from it, so a
  config class without one is rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

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

KINDS: tuple[str, ...] = ("generator", "discriminator")

T = TypeVar("T")


@dataclass(frozen=True)
class ModelInfo:
    """Registry entry: what a name builds."""

    name: str
    config_cls: type
    builder: Callable[[Any], nn.Module]
    kind: str
    description: str = ""
    paper: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    config_cls: type,
    *,
    kind: str = "generator",
    description: str = "",
    paper: str = "",
) -> Callable[[T], T]:
    """Decorator registering ``builder`` (an ``nn.Module`` class or a factory) under ``name``.

    Args:
        name: registry name (lower case, unique).
        config_cls: frozen dataclass type; ``builder(config_cls(...))`` must return an ``nn.Module``
            with an integer ``.stride`` attribute.
        kind: ``"generator"`` (input normalised L ``(B,1,H,W)``) or ``"discriminator"``.
        description: one-line description (used in docs/models.md).
        paper: the paper the network follows (used in docs/models.md).

    Raises:
        ValueError: duplicate name, unknown kind, a config class that is not a frozen dataclass, or
            one without a ``tiny()`` classmethod returning an instance of it.
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if not (dataclasses.is_dataclass(config_cls) and isinstance(config_cls, type)):
        raise ValueError(f"config class for model {name!r} must be a dataclass type")
    if not config_cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise ValueError(f"config class {config_cls.__name__} for model {name!r} must be frozen")
    field_names = {f.name for f in dataclasses.fields(config_cls)}
    if kind == "generator" and "out_channels" not in field_names:
        raise ValueError(f"generator config {config_cls.__name__} needs an 'out_channels' field")
    tiny = getattr(config_cls, "tiny", None)
    if not callable(tiny):
        raise ValueError(
            f"config class {config_cls.__name__} for model {name!r} needs a classmethod tiny() returning a small "
            "test config (the test suite builds every registered model from it)"
        )
    if not isinstance(tiny(), config_cls):
        raise ValueError(f"{config_cls.__name__}.tiny() for model {name!r} must return a {config_cls.__name__}")

    def decorator(builder: T) -> T:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, config_cls, builder, kind, description, paper)  # type: ignore[arg-type]
        if isinstance(builder, type):
            builder.model_name = name  # type: ignore[attr-defined]  # the one place a class gets its name
        return builder

    return decorator


def _ensure_builtin() -> None:
    # Importing the package registers the built-in networks; this makes the registry usable when
    # someone imports colorization.models.registry directly.
    # lazy: cycle (colorization.models imports this module)
    import colorization.models  # noqa: F401


def list_models(kind: str | None = None) -> list[str]:
    """Sorted registry names, optionally only those of ``kind`` ("generator"/"discriminator")."""
    _ensure_builtin()
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return sorted(n for n, info in _REGISTRY.items() if kind is None or info.kind == kind)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; ``ValueError`` listing the valid names if unknown."""
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise ValueError(f"unknown model {name!r}; registered models: {valid}") from None


def get_config_class(name: str) -> type:
    """The frozen dataclass type holding ``name``'s hyper-parameters."""
    return model_info(name).config_cls


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def config_from_dict(name: str, fields: Mapping[str, Any]) -> Any:
    """Build ``name``'s config from a mapping (e.g. parsed JSON).

    JSON lists become tuples. Unknown field names raise ``ValueError`` listing the valid fields;
    invalid values raise whatever the config's validation raises (``ValueError``/``TypeError``).
    """
    info = model_info(name)
    valid = [f.name for f in dataclasses.fields(info.config_cls)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown config field(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"valid fields: {', '.join(valid)}"
        )
    return info.config_cls(**{k: _to_tuples(v) for k, v in fields.items()})


def create_model(name: str, **config: Any) -> nn.Module:
    """Build the network registered as ``name`` with the given config fields.

    Returns an ``nn.Module`` with ``.config`` (the frozen dataclass), ``.model_name`` and
    ``.stride`` (input H and W must be multiples of it). Unknown names or fields raise
    ``ValueError`` listing the valid ones.
    """
    info = model_info(name)
    cfg = config_from_dict(name, config)
    model = info.builder(cfg)
    if not isinstance(model, nn.Module):
        raise TypeError(f"builder of model {name!r} returned {type(model).__name__}, not nn.Module")
    if not isinstance(getattr(model, "stride", None), int):
        raise TypeError(f"model {name!r} must define an integer .stride attribute")
    if getattr(model, "config", None) is None:
        model.config = cfg
    model.model_name = name  # a factory's module (a registered class already has it)
    return model
