"""ONNX export of exported models and the ONNX Runtime backend of :class:`~colorization.Colorizer`.

The ONNX graph is the :class:`~colorization.inference.checkpoint.ColorModel`: the network plus its head
decoding (classification logits -> ab by the annealed mean). Input ``l_norm`` float32
``(B, 1, H, W)`` in ``[-1, 1]``; output ``ab_norm`` float32 ``(B, 2, H, W)`` (ab / 110). The batch,
height and width axes are dynamic (H and W must be multiples of the model's stride). By default
``l_norm`` is the only input, so automatic colorization needs nothing else; ``export_onnx(...,
hints=True)`` (``colorization export --hints``) of a hint-aware model adds a second, required input
``hints`` float32 ``(B, 3, H, W)`` (:mod:`colorization.inference.hints`; all zeros for automatic
colorization). No Lab pre/post-processing is in the graph: :class:`~colorization.Colorizer` does
that around it.

The model's stride, working size and ``config.json`` travel in the ONNX metadata
(``colorization.stride``, ``colorization.working_size``, ``colorization.config``), so a ``.onnx``
file is self-contained.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from colorization._extras import require
from colorization.image_io import atomic_path

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "HINTS_NAME",
    "OUTPUT_NAME",
    "export_onnx",
    "OnnxBackend",
    "onnx_parity",
]

DEFAULT_OPSET = 17
INPUT_NAME = "l_norm"
HINTS_NAME = "hints"
OUTPUT_NAME = "ab_norm"
_META_STRIDE = "colorization.stride"
_META_WORKING_SIZE = "colorization.working_size"
_META_CONFIG = "colorization.config"


def _example_side(stride: int) -> int:
    """A trace size that is a multiple of the stride and not tiny (>= 64)."""
    return stride * max(1, -(-64 // stride))


def export_onnx(
    model: torch.nn.Module,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = True,
    hints: bool = False,
) -> Path:
    """Export a ColorModel (normalised L in, normalised ab out) to ONNX, atomically.

    Args:
        model: a :class:`colorization.inference.checkpoint.ColorModel` (``.stride``, ``.config``,
            ``forward(l_norm (B,1,H,W)) -> ab_norm (B,2,H,W)``). Exported in float32 on CPU; the
            caller's model is not modified.
        out: destination ``.onnx`` file (parent folders are created). Written to a temporary file
            in the same folder and moved into place, so a crash never leaves a partial file.
        opset: ONNX opset version.
        overwrite: replace an existing file (False: FileExistsError).
        hints: give the graph the second input ``hints`` (B, 3, H, W), required by ONNX Runtime
            (zeros: no points). Default False: ``l_norm`` is the only input, and the graph
            colorizes as the model does with no hints.

    Returns:
        The written path.

    Raises:
        ValueError: ``out`` not ending in ``.onnx``, or ``hints=True`` for a model without a hint input.
    """
    import copy

    onnx = require("onnx", "ONNX export")

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"{out}: the output file must end in .onnx")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists")
    if hints and not getattr(model, "accepts_hints", False):
        raise ValueError("this model does not take colour hints: export it without the hint input")
    stride = int(getattr(model, "stride", 1) or 1)
    working_size = getattr(model, "working_size", None)
    config = dict(getattr(model, "config", {}) or {})

    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    side = _example_side(stride)
    example = torch.zeros(1, 1, side, side + stride)
    dyn = {0: "batch", 2: "height", 3: "width"}
    args: tuple[Tensor, ...] = (example,)
    names = [INPUT_NAME]
    if hints:
        args = (example, torch.zeros(1, 3, side, side + stride))
        names.append(HINTS_NAME)

    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            # the TorchScript-based exporter is deprecated in favour of the dynamo one, which
            # needs the optional onnxscript package; the graphs are equivalent for these CNNs
            warnings.simplefilter("ignore")
            torch.onnx.export(
                m,
                args,
                str(tmp),
                dynamo=False,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes={**{name: dyn for name in names}, OUTPUT_NAME: dyn},
                opset_version=opset,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        meta = {
            _META_STRIDE: str(stride),
            _META_WORKING_SIZE: str(int(working_size)) if working_size else "",
            _META_CONFIG: json.dumps(config, sort_keys=True),
        }
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        proto.producer_name = "colorization"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return out


class OnnxBackend:
    """The network run by ONNX Runtime (no torch forward): a :class:`colorization.inference.backends.Backend`.

    Args:
        path: a ``.onnx`` file written by :func:`export_onnx`.
        device: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (needs onnxruntime-gpu's
            CUDAExecutionProvider; a clear error otherwise, never a silent CPU fallback).
        threads: intra-op threads (None: ONNX Runtime's default).
    """

    name = "onnx"

    def __init__(
        self, path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None
    ) -> None:
        ort = require("onnxruntime", "the ONNX backend (ONNX Runtime)")

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        dev = torch.device(device)
        if dev.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError(
                    "device='cuda' needs onnxruntime-gpu (CUDAExecutionProvider is not available); "
                    "use device='cpu' or backend='torch'"
                )
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": dev.index or 0})]
        elif dev.type == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ValueError(f"unsupported device for the ONNX backend: {device!r}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if _META_STRIDE not in meta:
            raise ValueError(
                f"{self.path}: no colorization metadata; export it with `colorization export`"
            )
        self.stride = int(meta[_META_STRIDE])
        self.working_size = int(meta[_META_WORKING_SIZE]) if meta.get(_META_WORKING_SIZE) else None
        self.config: dict[str, Any] = json.loads(meta.get(_META_CONFIG) or "{}")
        self.device = torch.device("cpu")  # pre/post-processing stays on the CPU
        names = [i.name for i in self.session.get_inputs()]
        if names not in ([INPUT_NAME], [INPUT_NAME, HINTS_NAME]):
            raise ValueError(f"{self.path}: expected the inputs {INPUT_NAME!r} (and {HINTS_NAME!r}), got {names}")
        self.accepts_hints = len(names) == 2

    def __call__(self, l_norm: Tensor, hints: Tensor | None = None) -> Tensor:
        """float32 ``(B,1,H,W)`` in ``[-1,1]``, optional hint map ``(B,3,H,W)`` -> float32 ab_norm
        ``(B,2,H,W)`` (CPU tensor).

        Raises:
            ValueError: hints for a model exported without a hint input.
        """
        x = np.ascontiguousarray(l_norm.detach().to("cpu", torch.float32).numpy())
        feed = {INPUT_NAME: x}
        if hints is not None and not self.accepts_hints:
            raise ValueError(f"{self.path}: this model does not take colour hints")
        if self.accepts_hints:
            h = torch.zeros(x.shape[0], 3, *x.shape[2:]) if hints is None else hints
            feed[HINTS_NAME] = np.ascontiguousarray(h.detach().to("cpu", torch.float32).numpy())
        (ab,) = self.session.run([OUTPUT_NAME], feed)
        return torch.from_numpy(np.asarray(ab, dtype=np.float32))

    def __repr__(self) -> str:
        return f"OnnxBackend({self.path}, providers={self.session.get_providers()})"


def onnx_parity(
    model: torch.nn.Module,
    onnx_path: str | os.PathLike,
    sizes: tuple[tuple[int, int], ...] = ((64, 96), (96, 64)),
    batch: int = 2,
    seed: int = 0,
) -> float:
    """Largest absolute difference between the PyTorch model and its ONNX export on random
    normalised-L inputs of the given (H, W) sizes (multiples of the stride are used)."""
    backend = OnnxBackend(onnx_path)
    stride = backend.stride
    g = torch.Generator().manual_seed(seed)
    m = model.to("cpu", torch.float32).eval()
    worst = 0.0
    for h, w in sizes:
        h, w = -(-h // stride) * stride, -(-w // stride) * stride
        x = torch.rand(batch, 1, h, w, generator=g) * 2 - 1
        with torch.inference_mode():
            ref = m(x)
        worst = max(worst, float((backend(x) - ref).abs().max()))
        if backend.accepts_hints:
            hints = torch.zeros(batch, 3, h, w)
            hints[:, :2, h // 4 : h // 2, w // 4 : w // 2] = torch.rand(batch, 2, 1, 1, generator=g) - 0.5
            hints[:, 2, h // 4 : h // 2, w // 4 : w // 2] = 1.0
            with torch.inference_mode():
                ref = m(x, hints)
            worst = max(worst, float((backend(x, hints) - ref).abs().max()))
    return worst
