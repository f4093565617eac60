"""The network input of one image, shared by :mod:`~colorization.inference.inputs` (which makes
it) and :mod:`~colorization.inference.fullres` (which recombines the prediction with it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

__all__ = ["PreparedImage"]


@dataclass
class PreparedImage:
    """An image ready for the network (made by :func:`prepare_image`; cheap to send between processes).

    Attributes:
        l_full: (H, W) float32 Lab lightness of the original image, ``[0, 100]``.
        l_work: (1, h_pad, w_pad) float32 normalised L (``[-1, 1]``) at the working size,
            padded to the network stride.
        work_hw: working ``(h, w)`` before padding.
        hints: (3, h_pad, w_pad) float32 hint map (:mod:`colorization.models.hint_map`; zero in the padding),
            or None for automatic colorization.
        alpha: (H, W) alpha channel kept for the output (uint8, or uint16 for a 16-bit input), or
            None (opaque, or transparency composited on a background).
        bits: bits per channel of the input's samples, 8 or 16 (the output's depth where the
            format allows it).
    """

    l_full: Tensor
    l_work: Tensor
    work_hw: tuple[int, int]
    hints: Tensor | None = None
    alpha: np.ndarray | None = None
    bits: int = 8

    @property
    def size(self) -> tuple[int, int]:
        """Original ``(width, height)``, PIL order."""
        return int(self.l_full.shape[1]), int(self.l_full.shape[0])
