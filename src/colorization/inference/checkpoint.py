"""The exported-model format: a folder with ``model.safetensors`` + ``config.json``.

``config.json`` keys (``FORMAT_VERSION`` 1):

* ``format_version`` (int), ``model`` (registry name), ``model_config`` (dict of config fields),
* ``head``: ``"regression"`` (the network outputs normalised ab) or ``"classification"``
  (Q ab-bin logits, decoded by the annealed mean),
* ``temperature``: annealed-mean temperature (classification; ``null`` for regression),
* ``working_size``: the side the Colorizer resizes the L channel to (multiple of the stride),
* ``chroma_gain``: factor on the decoded ab of photos without colour hints, chosen on validation
  photos (default 1.0; a hinted photo keeps the network's colours),
* ``training`` (recipe, data, budget) and ``metrics``: free-form JSON dicts,
* ``weights_dtype``: ``"float32"`` or ``"float16"`` (storage only; loading restores float32),
* ``package_version``: the ``colorization`` version that wrote it.

Weights are saved from the unwrapped module (no ``module.`` / ``_orig_mod.`` prefixes) and loaded
strictly with safetensors (no pickle). Both files are written atomically (temp file +
``os.replace``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from colorization import color
from colorization._version import __version__
from colorization.image_io import atomic_write_bytes
from colorization.models import create_model, list_models

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "HEADS",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_WORKING_SIZE",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ColorModel",
    "unwrap_model",
    "save_exported",
    "load_exported",
    "read_config",
    "resolve_model_dir",
]

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
HEADS: tuple[str, ...] = ("regression", "classification")
DEFAULT_MODEL = "default"
"""The name that stands for the shipped model wherever a model path is asked for (:func:`resolve_model_dir`)."""
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"
DEFAULT_WORKING_SIZE = 256
"""Working resolution (short side, px) when neither the caller nor the model says otherwise."""
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # config.json is small; refuse anything absurd
_RESERVED_KEYS = ("format_version", "model", "model_config", "head", "weights_dtype", "package_version")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """An exported model folder is invalid (the message names the file and the problem)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The exported model folder or one of its files does not exist."""


# --------------------------------------------------------------------------------------------
# The inference wrapper
# --------------------------------------------------------------------------------------------


class ColorModel(nn.Module):
    """A generator plus its output decoding: ``forward(l_norm) -> ab_norm``.

    Attributes:
        network: the registered generator (``.model_name``, ``.config``, ``.stride``).
        head: "regression" or "classification".
        temperature: annealed-mean temperature (classification), None for regression.
        config: the config.json dict (empty dict when built in memory without one).
        stride: input H and W must be multiples of it.
        working_size: side length the Colorizer resizes inputs to.
        chroma_gain: factor applied to the decoded ab (1.0 = as the network predicts) of photos
            without hints; a photo whose hint map holds any hinted pixel keeps gain 1. A gain chosen
            on validation photos and recorded in config.json ships with the model, so every backend
            (ONNX included: the rule is part of the exported graph) applies the same one.

    ``forward(l_norm (B, 1, H, W) float in [-1, 1], hints (B, 3, H, W) | None) -> ab_norm (B, 2, H, W)
    float32``, normalised ab
    (``color.normalize_ab``) roughly in [-1, 1]. Classification logits are decoded with
    ``color.annealed_mean(logits, temperature)`` then ``color.normalize_ab``.
    """

    def __init__(
        self,
        network: nn.Module,
        head: str,
        temperature: float | None = None,
        config: Mapping[str, Any] | None = None,
        working_size: int = DEFAULT_WORKING_SIZE,
        chroma_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(chroma_gain, bool) or not isinstance(chroma_gain, (int, float)) or not (
            math.isfinite(chroma_gain) and 0 < chroma_gain <= 4
        ):
            raise ValueError(f"chroma_gain must be a number in (0, 4], got {chroma_gain!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        out_channels = _out_channels(network)
        if head == "regression" and out_channels != 2:
            raise ValueError(f"a regression head needs out_channels=2, the network has {out_channels}")
        if head == "classification":
            with torch.device("cpu"):  # keep color's cached gamut tensors off e.g. meta
                q = color.num_ab_bins()
            if out_channels != q:
                raise ValueError(
                    f"a classification head needs out_channels=Q={q} ab bins, the network has {out_channels}"
                )
            if temperature is None:
                temperature = float(color.DEFAULT_TEMPERATURE)
            if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
                raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
            temperature = float(temperature)
        else:
            temperature = None
        stride = int(getattr(network, "stride", 1))
        if isinstance(working_size, bool) or not isinstance(working_size, int) or working_size < stride:
            raise ValueError(f"working_size must be an integer >= the stride {stride}, got {working_size!r}")
        if working_size % stride:
            raise ValueError(f"working_size {working_size} must be a multiple of the model stride {stride}")
        self.network = network
        self.head = head
        self.temperature = temperature
        self.config: dict[str, Any] = dict(config or {})
        self.stride = stride
        self.working_size = working_size
        self.chroma_gain = float(chroma_gain)

    @property
    def model_name(self) -> str:
        return str(getattr(self.network, "model_name", type(self.network).__name__))

    @property
    def accepts_hints(self) -> bool:
        """Whether the network reads a colour-hint map (:mod:`colorization.inference.hints`)."""
        return bool(getattr(self.network, "accepts_hints", False))

    def forward(self, l_norm: Tensor, hints: Tensor | None = None) -> Tensor:
        """``l_norm`` (B,1,H,W), optional hint map (B,3,H,W) -> ab_norm (B,2,H,W).

        Raises:
            ValueError: hints for a network that does not read them.
        """
        if hints is None:
            out = self.network(l_norm)
        elif not self.accepts_hints:
            raise ValueError(f"the {self.model_name} model does not take colour hints (it was trained without them)")
        else:
            out = self.network(l_norm, hints)
        if self.head == "classification":
            assert self.temperature is not None
            out = color.normalize_ab(color.annealed_mean(out, self.temperature))
        if self.chroma_gain == 1.0:
            return out
        if hints is None:
            return out * self.chroma_gain
        # a photo with colour hints (or reference matches, which become hints) keeps the colours the
        # network predicts: the gain hedges automatic colour, and would wash out the user's colours
        hinted = (hints[:, 2:3].abs().flatten(1).amax(1) > 0).to(out.dtype).view(-1, 1, 1, 1)
        return out * (self.chroma_gain + (1.0 - self.chroma_gain) * hinted)

    def extra_repr(self) -> str:
        return (
            f"model={self.model_name!r}, head={self.head!r}, temperature={self.temperature}, "
            f"working_size={self.working_size}, chroma_gain={self.chroma_gain}"
        )


def _out_channels(network: nn.Module) -> int:
    cfg = getattr(network, "config", None)
    oc = getattr(cfg, "out_channels", None)
    if not isinstance(oc, int):
        raise ValueError(
            f"{type(network).__name__} has no integer config.out_channels; build generators with create_model"
        )
    return oc


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel/DataParallel (``.module``), ``torch.compile`` (``._orig_mod``)
    and :class:`ColorModel` wrappers, returning the registered network."""
    seen = 0
    while seen < 16:
        seen += 1
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, ColorModel):
            model = model.network
        else:
            break
    return model


def _strip_key(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key.replace("._orig_mod.", ".")


def _model_config_dict(net: nn.Module) -> dict[str, Any]:
    cfg = getattr(net, "config", None)
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ValueError(f"{type(net).__name__} has no dataclass .config; build it with create_model")
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def save_exported(
    model: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    head: str,
    extra: Mapping[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Export a generator to ``out_dir`` (``model.safetensors`` + ``config.json``).

    Args:
        model: a network built by ``create_model`` (optionally wrapped in DDP/DataParallel,
            ``torch.compile`` or a :class:`ColorModel`; the wrappers are stripped).
        out_dir: folder to write (created if needed; existing files are replaced atomically).
        head: "regression" (out_channels 2) or "classification" (out_channels Q).
        extra: more config.json keys: ``temperature`` (float, classification), ``working_size``
            (int, default 256), ``training`` and ``metrics`` (JSON dicts), or any other
            JSON-serialisable key except the reserved ones (format_version, model, model_config,
            head, weights_dtype, package_version).
        half: store floating point weights as float16 (half the file size; loading restores
            float32). Raises if a weight overflows float16.

    Returns:
        The output folder as a ``Path``.
    """
    net = unwrap_model(model)
    name = getattr(net, "model_name", None)
    if name not in list_models("generator"):
        raise ValueError(
            f"save_exported needs a registered generator (built by create_model), got "
            f"{type(net).__name__} with model_name={name!r}; for an objective pass objective.generator"
        )
    model_config = _model_config_dict(net)
    extra = dict(extra or {})
    reserved = sorted(set(extra) & set(_RESERVED_KEYS))
    if reserved:
        raise ValueError(f"extra must not set reserved config.json key(s): {', '.join(reserved)}")
    temperature = extra.pop("temperature", None)
    working_size = extra.pop("working_size", DEFAULT_WORKING_SIZE)
    chroma_gain = extra.pop("chroma_gain", 1.0)
    # Validates head/out_channels/temperature/working_size/chroma_gain together.
    checked = ColorModel(net, head, temperature=temperature, working_size=working_size, chroma_gain=chroma_gain)

    # Same keys and shapes as a fresh build of the saved config (cheap: built on the meta device).
    pretrained = {"pretrained": False} if "pretrained" in model_config else {}
    with torch.device("meta"):
        ref = create_model(name, **{**model_config, **pretrained}).state_dict()
    tensors: dict[str, Tensor] = {}
    for key, value in net.state_dict().items():
        key = _strip_key(key)
        t = value.detach().to("cpu")
        if half and t.is_floating_point():
            t16 = t.to(torch.float16)
            if not torch.isfinite(t16).all() and torch.isfinite(t).all():
                raise ValueError(f"weight {key!r} overflows float16; export with half=False")
            t = t16
        tensors[key] = t.contiguous().clone()
    _check_state_dict(tensors, ref, strict=True, where=f"model {name!r} (at save)")

    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": name,
        "model_config": model_config,
        "head": head,
        "temperature": checked.temperature,
        "working_size": checked.working_size,
        "chroma_gain": checked.chroma_gain,
        "training": extra.pop("training", {}),
        "metrics": extra.pop("metrics", {}),
        "weights_dtype": "float16" if half else "float32",
        "package_version": __version__,
    }
    config.update(extra)
    try:
        config_text = json.dumps(config, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config.json content is not JSON-serialisable: {exc}") from None

    from safetensors.torch import save as st_save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = st_save(tensors, metadata={"format": "pt", "model": name})
    atomic_write_bytes(out / WEIGHTS_NAME, weights)
    atomic_write_bytes(out / CONFIG_NAME, config_text.encode("utf-8"))
    return out


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _check_state_dict(
    state: Mapping[str, Tensor], ref: Mapping[str, Tensor], *, strict: bool, where: str
) -> None:
    def listing(keys: list[str]) -> str:
        head = ", ".join(keys[:8])
        return head + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    missing = sorted(set(ref) - set(state))
    unexpected = sorted(set(state) - set(ref))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(ref[k].shape)}"
        for k in sorted(set(state) & set(ref))
        if tuple(state[k].shape) != tuple(ref[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch: {listing(mismatched)}")
    if strict and missing:
        problems.append(f"missing keys: {listing(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {listing(unexpected)}")
    if problems:
        raise CheckpointError(f"{where}: weights do not match the network ({'; '.join(problems)})")


def resolve_model_dir(path: str | os.PathLike[str] | None) -> Path:
    """``path`` as a Path; None or ``"default"`` (:data:`DEFAULT_MODEL`): the model shipped inside
    the package (no download).

    Raises:
        FileNotFoundError: the shipped model was asked for and its weights are missing.
    """
    if path is not None and str(path) != DEFAULT_MODEL:
        return Path(path)
    if not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"the shipped default model is missing ({DEFAULT_MODEL_DIR}); reinstall the package or pass "
            "an exported model folder"
        )
    return DEFAULT_MODEL_DIR


def _resolve_dir(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_file() and p.name in (WEIGHTS_NAME, CONFIG_NAME):
        p = p.parent
    if not p.exists():
        raise CheckpointNotFoundError(f"exported model folder {p} does not exist")
    if not p.is_dir():
        raise CheckpointError(
            f"{p} is not an exported model folder (expected a folder with {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    return p


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``config.json`` of an exported model folder (no weights loaded)."""
    folder = _resolve_dir(path)
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointNotFoundError(f"{cfg_path} is missing (not an exported model folder)")
    if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{cfg_path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: unsupported format_version {version!r} (this package reads version {FORMAT_VERSION})"
        )
    for key, typ in (("model", str), ("model_config", dict), ("head", str)):
        if not isinstance(config.get(key), typ):
            raise CheckpointError(f"{cfg_path}: key {key!r} must be a {typ.__name__}, got {config.get(key)!r}")
    if config["head"] not in HEADS:
        raise CheckpointError(f"{cfg_path}: head must be one of {', '.join(HEADS)}, got {config['head']!r}")
    return config


class _SkipRandomInit(TorchFunctionMode):
    """Within (this thread only): the random fills of ``torch.nn.init`` and ``Tensor.uniform_`` /
    ``normal_`` leave their tensor as it is. For building a network whose every parameter is loaded
    next, strictly: the random initialisation would be overwritten, and it is most of the build time
    (~60 % of the shipped model's)."""

    _SKIPPED = frozenset({
        torch.Tensor.uniform_, torch.Tensor.normal_,
        nn.init.uniform_, nn.init.normal_, nn.init.trunc_normal_, nn.init.kaiming_uniform_,
        nn.init.kaiming_normal_, nn.init.xavier_uniform_, nn.init.xavier_normal_, nn.init.orthogonal_,
    })

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in self._SKIPPED:
            return args[0] if args else (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))


def load_exported(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", strict: bool = True
) -> ColorModel:
    """Load an exported model folder (or the path of its config.json / model.safetensors).

    The network is rebuilt with ``create_model(model, **model_config)`` (``pretrained=False`` where
    the config has that field, so no weight packages are needed), its weights are read with
    safetensors, converted to float32 and loaded strictly (``strict=False`` tolerates missing or
    unexpected keys but never shape mismatches). Returns a :class:`ColorModel` in eval mode on
    ``device``.

    Raises:
        CheckpointNotFoundError: the folder, config.json or model.safetensors is missing.
        CheckpointError: bad JSON / format_version / head, unknown model or config field, weights
            that do not match the network, a file that is not safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_config(path)
    folder = _resolve_dir(path)
    cfg_path = folder / CONFIG_NAME
    name = config["model"]
    generators = list_models("generator")
    if name not in generators:
        raise CheckpointError(f"{cfg_path}: unknown model {name!r}; registered generators: {', '.join(generators)}")
    fields = dict(config["model_config"])
    if "pretrained" in fields:
        fields["pretrained"] = False
    try:
        # strictly loaded weights replace every parameter: skip their random initialisation
        with _SkipRandomInit() if strict else contextlib.nullcontext():
            network = create_model(name, **fields)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{cfg_path}: invalid model_config for {name!r}: {exc}") from None

    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CheckpointNotFoundError(f"{weights_path} is missing")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    _check_state_dict(state, network.state_dict(), strict=strict, where=str(weights_path))
    network.load_state_dict(state, strict=strict)

    working_size = config.get("working_size", DEFAULT_WORKING_SIZE)
    temperature = config.get("temperature")
    try:
        model = ColorModel(
            network,
            config["head"],
            temperature=temperature,
            config=config,
            working_size=working_size,
            chroma_gain=config.get("chroma_gain", 1.0),
        )
    except ValueError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    return model.to(device).eval()
