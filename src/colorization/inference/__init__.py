"""Inference: from a photo and a trained model to a colour photo (the pipeline every front end uses).

==============================  ===============================================================
:mod:`~.colorizer`              :class:`Colorizer` (the one pipeline of CLI, API, service, batch
                                jobs and video), :func:`prepare_image`, :func:`windows`
:mod:`~.prepared`               :class:`PreparedImage`, the network input of one image
:mod:`~.fullres`                full-resolution L, ab upsampling (guided filter), recombination
:mod:`~.hints`                  users' colour points: :class:`Hint`, parsing, their hint map
:mod:`~.reference`              colour from a reference photo: matching, :class:`Reference`
:mod:`~.backends`               PyTorch / ONNX Runtime backends, precisions, devices
:mod:`~.checkpoint`             the exported-model format (safetensors + JSON), the default model
:mod:`~.onnx_export`            ONNX export, :class:`OnnxBackend`, parity check
==============================  ===============================================================

Imports :mod:`colorization.models` and the base modules (``color``, ``image_io``) only. The names
below load on first use (they import torch).
"""

from __future__ import annotations

from colorization._lazy import lazy_exports

_EXPORTS = {
    "Colorizer": "colorizer",
    "prepare_image": "colorizer",
    "SATURATION_RANGE": "colorizer",
    "PreparedImage": "prepared",
    "RefineConfig": "fullres",
    "Hint": "hints",
    "MAX_HINTS": "hints",
    "parse_hint": "hints",
    "coerce_hints": "hints",
    "Reference": "reference",
    "ReferenceConfig": "reference",
    "GrayReferenceError": "reference",
    "Backend": "backends",
    "TorchBackend": "backends",
    "PRECISIONS": "backends",
    "load_backend": "backends",
    "DEFAULT_MODEL": "checkpoint",
    "CheckpointError": "checkpoint",
    "ColorModel": "checkpoint",
    "save_exported": "checkpoint",
    "load_exported": "checkpoint",
    "resolve_model_dir": "checkpoint",
    "export_onnx": "onnx_export",
    "OnnxBackend": "onnx_export",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
