"""Backends of :class:`colorization.Colorizer`: anything that maps normalised L ``(B,1,h,w)`` to
normalised ab ``(B,2,h,w)``.

:class:`Backend` is the protocol, :class:`TorchBackend` runs a
:class:`~colorization.inference.checkpoint.ColorModel` with PyTorch (precision, channels-last,
``torch.compile``), :class:`colorization.inference.onnx_export.OnnxBackend` runs an exported ``.onnx`` file
with ONNX Runtime, and :func:`load_backend` builds either from a model path and the options of
:meth:`colorization.Colorizer.from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from colorization.inference import checkpoint
from colorization.inference.checkpoint import ColorModel
from colorization.inference.onnx_export import OnnxBackend

__all__ = ["Backend", "TorchBackend", "PRECISIONS", "default_device", "load_backend", "no_hints_reason"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Accepted ``precision`` values of :class:`TorchBackend` (``auto``: bf16 on CUDA when supported, else fp32)."""
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@runtime_checkable
class Backend(Protocol):
    """The network seen by :class:`colorization.Colorizer`.

    Attributes:
        name: ``"torch"`` or ``"onnx"``.
        stride: H and W of the input must be multiples of it.
        working_size: the model's preferred working size (short side) or None.
        device: where the pre/post-processing tensors live for this backend.
        config: the model's config.json dict (``"model"``: its registry name).
        accepts_hints: whether the network reads a colour-hint map.
    """

    name: str
    stride: int
    working_size: int | None
    device: torch.device
    config: dict[str, Any]
    accepts_hints: bool

    def __call__(self, l_norm: Tensor, hints: Tensor | None = None) -> Tensor:
        """``l_norm`` float32 ``(B,1,h,w)`` in ``[-1,1]`` and, for a hint-aware network, an optional
        hint map float32 ``(B,3,h,w)`` (None: no hints) -> float32 ab_norm ``(B,2,h,w)`` on ``device``."""
        ...


def no_hints_reason(backend: Backend, model_name: str) -> str:
    """Why ``backend`` takes no colour hints, and what to do, in one sentence (every refusal of hints
    says it): an ONNX file exported without its hint input from a model trained with hints needs
    ``colorization export --hints``; any other model was trained without hints."""
    model_config = (getattr(backend, "config", None) or {}).get("model_config") or {}
    if getattr(backend, "name", "") == "onnx" and model_config.get("hints"):
        path = getattr(backend, "path", "the ONNX file")
        return (
            f"{path} does not take colour hints: it was exported without its hint input, although the "
            f"{model_name} model was trained with hints; re-export it with "
            "`colorization export --model MODEL --out FILE.onnx --hints`"
        )
    return (
        f"the {model_name} model does not take colour hints (it was trained without them); use a hint-aware "
        "model (the shipped default model is one)"
    )


def default_device() -> str:
    """``"cuda"`` when available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` option -> ``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``device``.

    Raises:
        ValueError: an unknown value, or bf16 asked for on a CUDA device without bf16 support.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if cuda_bf16 else "fp32"
    if precision == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise ValueError(f"precision='bf16': {device} does not support bfloat16; use precision='fp16' or 'fp32'")
    return precision


class TorchBackend:
    """Runs a :class:`colorization.inference.checkpoint.ColorModel` with PyTorch on CPU or CUDA.

    Args:
        model: the network, mapping normalised L ``(B,1,h,w)`` to normalised ab ``(B,2,h,w)``.
        device: where it runs.
        precision: ``"auto"`` (bf16 autocast on CUDA when the GPU supports it, else fp32),
            ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast around the network call only; the
            output is cast back to float32 before any Lab maths).
        channels_last: NHWC memory format for the network and its input; None: on for CUDA.
        compile: wrap the network in ``torch.compile`` (dynamic shapes, since working sizes vary;
            mode ``max-autotune-no-cudagraphs`` on CUDA, the default mode elsewhere). The first
            call of each new shape pays the compilation.

    Raises:
        ValueError: an unknown ``precision`` (see :func:`_resolve_precision`).
        RuntimeError: ``compile=True`` where ``torch.compile`` is unavailable.
    """

    name = "torch"

    def __init__(
        self,
        model: ColorModel | torch.nn.Module,
        device: str | torch.device = "cpu",
        *,
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.channels_last = (self.device.type == "cuda") if channels_last is None else bool(channels_last)
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.stride = int(getattr(model, "stride", 1) or 1)
        self.accepts_hints = bool(getattr(model, "accepts_hints", False))
        ws = getattr(model, "working_size", None)
        self.working_size = int(ws) if ws else None
        config = getattr(model, "config", None)
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            config = dataclasses.asdict(config)  # a raw registry network: its architecture config
        self.config = dict(config) if isinstance(config, Mapping) else {}
        try:
            self._dtype = next(model.parameters()).dtype
        except StopIteration:
            self._dtype = torch.float32
        self.compiled = bool(compile)
        self._forward: Any = self.model
        if self.compiled:
            self._forward = _compile(self.model, self.device)

    def _to_device(self, t: Tensor) -> Tensor:
        x = t.to(dtype=self._dtype)
        if self.device.type == "cuda" and x.device.type == "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def __call__(self, l_norm: Tensor, hints: Tensor | None = None) -> Tensor:
        """``l_norm`` float32 ``(B,1,h,w)`` in ``[-1,1]``, optional hint map ``(B,3,h,w)`` ->
        float32 ab_norm ``(B,2,h,w)`` on ``device``.

        Raises:
            ValueError: hints for a network that does not read them.
        """
        if hints is not None and not self.accepts_hints:
            raise ValueError("this model does not take colour hints (it was trained without them)")
        x = self._to_device(l_norm)
        args = (x,) if hints is None else (x, self._to_device(hints))
        amp = _AUTOCAST_DTYPES.get(self.precision)
        ctx = torch.autocast(device_type=self.device.type, dtype=amp) if amp is not None else nullcontext()
        with ctx:
            out = self._forward(*args)
        return out.to(torch.float32).contiguous()

    def __repr__(self) -> str:
        name = self.config.get("model", type(self.model).__name__)
        extra = f", precision={self.precision}"
        if self.channels_last:
            extra += ", channels_last"
        if self.compiled:
            extra += ", compiled"
        return f"TorchBackend({name}, device={self.device}{extra})"


def _compile(model: torch.nn.Module, device: torch.device) -> Any:
    """``torch.compile(model)`` with dynamic shapes, or a RuntimeError saying why it cannot be."""
    fn = getattr(torch, "compile", None)
    if fn is None:
        raise RuntimeError(
            f"compile=True needs torch.compile, which this PyTorch ({torch.__version__}) lacks; use compile=False"
        )
    mode = "max-autotune-no-cudagraphs" if device.type == "cuda" else None
    try:
        return fn(model, mode=mode, dynamic=True)
    except Exception as exc:  # re-raised with the option named
        raise RuntimeError(f"compile=True: torch.compile is unavailable here ({exc}); use compile=False") from exc


def load_backend(
    path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    backend: str = "torch",
    *,
    precision: str = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
    threads: int | None = None,
) -> Backend:
    """The backend for a model path and the options of :meth:`colorization.Colorizer.from_pretrained`
    (which documents them).

    Raises:
        ValueError: an unknown ``backend`` or ``precision``, ``threads`` below 1, or a torch-only option
            (bf16/fp16, ``channels_last=True``, ``compile=True``) with ``backend="onnx"``.
        FileNotFoundError: no model at ``path``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        torch.set_num_threads(threads)  # process-wide: the network and the Lab maths around it
    if backend == "torch":
        dev = torch.device(device or default_device())
        model = checkpoint.load_exported(checkpoint.resolve_model_dir(path), device=dev, strict=True)
        return TorchBackend(model, dev, precision=precision, channels_last=channels_last, compile=compile)
    if backend != "onnx":
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    torch_only = {
        "precision": precision if precision in ("bf16", "fp16") else None,
        "channels_last": True if channels_last else None,
        "compile": True if compile else None,
    }
    for option, value in torch_only.items():
        if value is not None:
            raise ValueError(f"{option}={value!r} applies to the torch backend only, not backend='onnx'")
    return OnnxBackend(_onnx_file(checkpoint.resolve_model_dir(path)), device=device or "cpu", threads=threads)


def _onnx_file(p: Path) -> Path:
    """``p`` itself when it is a file, else the one ``.onnx`` file in the folder ``p``."""
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "model.onnx").is_file():
            return p / "model.onnx"
        found = sorted(p.glob("*.onnx"))
        if len(found) == 1:
            return found[0]
        what = "no .onnx file" if not found else f"several .onnx files ({', '.join(f.name for f in found)})"
        raise FileNotFoundError(
            f"{p}: {what}; create one with `colorization export --model {p} --out {p / 'model.onnx'}`"
        )
    raise FileNotFoundError(f"{p}: no such ONNX file or folder")
