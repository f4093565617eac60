"""PIL images to and from float tensors (``(3, H, W)``, ``[0, 1]``); torch loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from colorization.image_io.read import to_rgb

if TYPE_CHECKING:
    import torch

__all__ = ["pil_to_tensor", "tensor_to_pil"]


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode, converted with :func:`to_rgb`) -> float32 ``(3, H, W)`` in ``[0, 1]``."""
    import numpy as np
    import torch

    arr = np.asarray(to_rgb(img), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` (or ``(1, 3, H, W)``) tensor -> PIL ``"RGB"``.

    Float tensors are read as ``[0, 1]`` (clamped, rounded to the nearest 8-bit level); uint8
    tensors are taken as they are.
    """
    import torch

    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        arr = t
    elif t.is_floating_point():
        arr = (t.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    else:
        raise TypeError(f"expected a float or uint8 tensor, got {t.dtype}")
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy())
