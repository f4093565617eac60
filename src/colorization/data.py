"""Datasets and loaders of colour photographs for training and validation.

* :class:`ImageFolderDataset` reads every image under one or more folders (recursively), with
  random crop / scale jitter / horizontal flip for training or a deterministic resize + centre crop
  for evaluation, and optional filters that drop grayscale and the least colourful photos.
* :func:`build_loader` wraps it in a :class:`torch.utils.data.DataLoader` whose worker processes
  decode the images (with a ``DistributedSampler`` under ``torchrun``).
* :func:`batch_to_lab` turns a uint8 RGB batch into the network's normalised L and ab on the
  training device, in one batched conversion.
* :func:`group_of` and :func:`is_held_out` define the data's groups (the first folder level under a
  root, e.g. ``train/flowers5``) and the fixed held-out slice of every training folder
  (:data:`HOLDOUT_SHARE` of each group, chosen by a hash of ``group/file name``) that training
  leaves out by default, so that every model can be checked on photos of its own kinds that it has
  not seen (``benchmarks/generalisation.py``).

Colourfulness and grayscale scores are computed once per photo on small thumbnails and cached by
the photo's content in ``~/.cache/colorization`` (or ``$COLORIZATION_CACHE_DIR``, or
``$XDG_CACHE_HOME/colorization``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import json
import math
import multiprocessing as mp
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from tqdm import tqdm

from colorization import color, image_io

__all__ = [
    "ImageFolderDataset",
    "build_loader",
    "batch_to_lab",
    "compute_image_scores",
    "score_image",
    "label_from_name",
    "default_cache_dir",
    "THUMBNAIL_SIZE",
    "GRAY_MAX_SPREAD",
    "COLORFULNESS_VARIANT",
    "HOLDOUT_SHARE",
    "HOLDOUT_MODES",
    "group_of",
    "is_held_out",
    "select_files",
]

THUMBNAIL_SIZE = 64
"""Filters score images on thumbnails whose longer side is at most this many pixels."""
GRAY_MAX_SPREAD = 2.0
"""An image counts as grayscale when the mean over its pixels of max(R,G,B) - min(R,G,B)
(0..255 scale, on the thumbnail) is below this."""
COLORFULNESS_VARIANT = "abs"
"""Variant of :func:`colorization.color.colorfulness` used by the colourfulness filter."""
HOLDOUT_SHARE = 0.03
"""Share of each group's photos in the held-out slice (about 2,100 of the 70,603 in ``train/``)."""
HOLDOUT_MODES = ("include", "exclude", "only")
"""``include``: every photo; ``exclude``: all but the held-out slice (training); ``only``: the slice."""
_SCORES_VERSION = 2
_RESAMPLE = Image.Resampling.BICUBIC
_MANIFEST = "manifest.csv"


# --------------------------------------------------------------------------------------------
# Scores (colourfulness, grayscale) with an on-disk cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$COLORIZATION_CACHE_DIR``, else ``$XDG_CACHE_HOME/colorization``, else ``~/.cache/colorization``."""
    env = os.environ.get("COLORIZATION_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "colorization"


def score_image(img: Image.Image) -> tuple[float, float]:
    """(colourfulness on the 0..255 scale, grayscale spread, see :data:`GRAY_MAX_SPREAD`) of an
    RGB PIL image, measured on a thumbnail whose longer side is at most :data:`THUMBNAIL_SIZE`."""
    img = img.copy()
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    spread = float((arr.max(axis=2) - arr.min(axis=2)).mean())
    rgb = torch.from_numpy(arr).permute(2, 0, 1) / 255.0
    cf = float(color.colorfulness(rgb, variant=COLORFULNESS_VARIANT))
    return cf, spread


def _score_one(path: str) -> tuple[float, float]:
    """(colourfulness, grayscale spread) of one image file (:func:`score_image`)."""
    return score_image(image_io.load_image(path))


def _content_key(path: str | Path) -> str:
    """Hex BLAKE2b-128 digest of a file's bytes: what the score cache is keyed by, so that a
    copied, moved or re-materialised data folder (new paths and modification times, same photos)
    is still served from the cache."""
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=16).hexdigest()


def _scores_cache_file(cache_dir: str | Path | None) -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / f"image-scores-v{_SCORES_VERSION}-thumb{THUMBNAIL_SIZE}-{COLORFULNESS_VARIANT}.json"


def _load_scores(cache_file: Path) -> dict[str, list[float]]:
    """The cache's ``{content key: [colourfulness, spread]}``; empty when missing or unreadable."""
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        scores = data["scores"]
        if data.get("version") != _SCORES_VERSION or not isinstance(scores, dict):
            return {}
        return scores
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # missing or unreadable cache: recompute what is needed and overwrite it


def compute_image_scores(
    files: Sequence[Path],
    *,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Colourfulness and grayscale spread of each file, computed once per photo and cached.

    The cache is one JSON file in ``cache_dir`` keyed by each file's content digest (not its path
    or modification time): photos already scored anywhere are not scored again, so a data folder
    that is copied or restored elsewhere, or that grows, costs only one read of each file plus
    the new photos' scoring.

    Args:
        files: image paths (the order of the result follows it).
        cache_dir: where the JSON cache lives (default :func:`default_cache_dir`).
        workers: processes that decode thumbnails (1 = in this process).
        progress: show a tqdm bar.

    Returns:
        ``(colorfulness (N,) float64 on the 0..255 scale, spread (N,) float64)``, see
        :data:`GRAY_MAX_SPREAD`. Unreadable files raise :class:`colorization.image_io.ImageError`.
    """
    paths = [str(f) for f in files]
    cache_file = _scores_cache_file(cache_dir)
    scores = _load_scores(cache_file)
    try:
        keys = [_content_key(p) for p in paths]
    except OSError as e:
        raise image_io.ImageError(f"cannot read {e.filename}: {e.strerror}") from e
    todo = sorted({k: p for k, p in zip(keys, paths) if k not in scores}.items())
    if todo:
        todo_paths = [p for _, p in todo]
        results: list[tuple[float, float]] = []
        with contextlib.ExitStack() as stack:
            if workers > 1 and len(todo) > 64:
                ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
                pool = stack.enter_context(ctx.Pool(workers, initializer=_worker_init, initargs=(0,)))
                scored = pool.imap(_score_one, todo_paths, chunksize=32)
            else:
                scored = map(_score_one, todo_paths)
            for r in tqdm(scored, total=len(todo), desc="scoring images", unit="img", disable=not progress):
                results.append(r)
        for (k, _), (cf_k, spread_k) in zip(todo, results):
            scores[k] = [round(float(cf_k), 4), round(float(spread_k), 4)]
        payload = {
            "version": _SCORES_VERSION,
            "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "thumbnail": THUMBNAIL_SIZE,
            "colorfulness_variant": COLORFULNESS_VARIANT,
            "scores": scores,
        }
        image_io.atomic_write_text(cache_file, json.dumps(payload, separators=(",", ":")))
    cf = np.array([scores[k][0] for k in keys], dtype=np.float64)
    spread = np.array([scores[k][1] for k in keys], dtype=np.float64)
    return cf, spread


# --------------------------------------------------------------------------------------------
# Groups and the held-out slice
# --------------------------------------------------------------------------------------------


def group_of(path: str | Path, root: str | Path | None) -> str:
    """The group of ``path`` under ``root``: its first folder level (``train/flowers5/x.webp`` under
    ``train`` -> ``"flowers5"``); ``""`` for a file directly in ``root`` or given without a root."""
    if root is None:
        return ""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return ""
    return parts[0] if len(parts) > 1 else ""


def is_held_out(path: str | Path, root: str | Path | None) -> bool:
    """Whether ``path`` belongs to the fixed held-out slice of its training folder.

    A photo is held out when the SHA-256 of ``"<group>/<file name>"`` falls in the lowest
    :data:`HOLDOUT_SHARE` of the hash range. The choice depends only on the photo's group and
    name, so it does not move when photos are added, removed or the data folder is moved, and
    every group contributes the same share in expectation (stratified by group).
    """
    key = f"{group_of(path, root)}/{Path(path).name}".encode()
    value = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64
    return value < HOLDOUT_SHARE


def select_files(
    found: Sequence[tuple[Path, Path | None]],
    *,
    groups: Sequence[str] | None = None,
    holdout: str = "include",
) -> list[tuple[Path, Path | None]]:
    """Keep the files of the chosen groups and holdout side (see :func:`group_of`, :func:`is_held_out`).

    Args:
        found: ``(file, root)`` pairs as :func:`colorization.image_io.find_images` returns them.
        groups: group names to keep (None: all). A name that no root holds raises ``ValueError``
            listing the groups there are.
        holdout: one of :data:`HOLDOUT_MODES`.

    Returns:
        The kept pairs, in the given order.
    """
    if holdout not in HOLDOUT_MODES:
        raise ValueError(f"holdout must be one of {HOLDOUT_MODES}, got {holdout!r}")
    out = list(found)
    if groups is not None:
        wanted = set(groups)
        present = {group_of(f, r) for f, r in out}
        missing = sorted(wanted - present)
        if missing:
            raise ValueError(
                f"unknown data group(s) {missing}; the data folders hold {sorted(g for g in present if g)}"
            )
        out = [(f, r) for f, r in out if group_of(f, r) in wanted]
    if holdout != "include":
        want = holdout == "only"
        out = [(f, r) for f, r in out if is_held_out(f, r) == want]
    return out


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def label_from_name(path: str | Path) -> str | None:
    """Class label from a file name ``<label>_<name>.<ext>``: the part before the first ``_``;
    ``None`` when the name has no ``_``."""
    stem = Path(path).name
    if "_" not in stem:
        return None
    label = stem.split("_", 1)[0]
    return label or None


def _find_manifest(root: Path) -> Path | None:
    for folder in (root, *root.resolve().parents[:3]):
        cand = folder / _MANIFEST
        if cand.is_file():
            return cand
    return None


def _manifest_labels(manifest: Path) -> dict[Path, str]:
    """``{resolved file path: label}`` from a CSV with ``path`` and ``label`` columns."""
    out: dict[Path, str] = {}
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            return out
        base = manifest.parent.resolve()
        for row in reader:
            out[base / row["path"]] = row["label"]
    return out


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """Colour photographs under one or more folders, as square uint8 RGB crops.

    Args:
        roots: folders (searched recursively, hidden files skipped), files or glob patterns.
        crop: output side in pixels.
        train: random crop with scale jitter and horizontal flips (True) or a deterministic
            resize-short-side + centre crop (False).
        scale_jitter: ``(lo, hi)`` range of the crop side as a fraction of the image's short side
            (training only); the crop is then resized to ``crop``.
        hflip: random horizontal flips (training only).
        min_colorfulness_quantile: drop this fraction (0..1) of the least colourful images (by
            :func:`colorization.color.colorfulness`, variant :data:`COLORFULNESS_VARIANT`, on
            thumbnails); ``0.26`` keeps the top 74%. ``None`` keeps all.
        drop_grayscale: drop images whose colours are all (nearly) neutral (:data:`GRAY_MAX_SPREAD`).
        max_images: keep at most this many files (a seeded random subset, drawn after the filters;
            with filters, only a random pool of about ``max_images / kept share`` files is scored).
        with_labels: return class labels. Labels come from a ``manifest.csv`` (columns ``path``
            relative to the manifest and ``label``) found in a root or up to 3 folders above it;
            otherwise from the file-name prefix (:func:`label_from_name`). Unknown: ``-1``.
        seed: seed of the ``max_images`` subset.
        cache_dir: cache of filter scores (default :func:`default_cache_dir`).
        score_workers: processes used to compute filter scores the first time.
        max_pixels: per-image pixel limit passed to :func:`colorization.image_io.load_image`.
        groups: keep only these groups (first folder level under a root, :func:`group_of`);
            None: all.
        holdout: ``"include"`` (default), ``"exclude"`` (leave out the held-out slice, as training
            does) or ``"only"`` (the slice alone), see :func:`is_held_out`.

    Items are dicts: ``rgb`` uint8 ``(3, crop, crop)``, ``label`` int (``-1`` if unknown or
    ``with_labels=False``), ``index`` int (position in :attr:`files`).

    Attributes:
        files: the kept image paths (sorted per root, roots in the given order).
        class_names: sorted label names (``[]`` without labels); ``label`` indexes into it.
        labels: per-file label index (``-1`` where unknown).
        filter_stats: how many files each stage kept.
        groups: per-file group name (:func:`group_of`), parallel to :attr:`files`.
    """

    def __init__(
        self,
        roots: Sequence[str | Path] | str | Path,
        crop: int = 128,
        train: bool = True,
        scale_jitter: tuple[float, float] = (0.75, 1.0),
        hflip: bool = True,
        min_colorfulness_quantile: float | None = None,
        drop_grayscale: bool = True,
        max_images: int | None = None,
        with_labels: bool = False,
        seed: int = 0,
        *,
        cache_dir: str | Path | None = None,
        score_workers: int = 2,
        max_pixels: int | None = image_io.DEFAULT_MAX_PIXELS,
        progress: bool = True,
        groups: Sequence[str] | None = None,
        holdout: str = "include",
    ) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        if crop <= 0:
            raise ValueError(f"crop must be positive, got {crop}")
        lo, hi = scale_jitter
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale_jitter must satisfy 0 < lo <= hi <= 1, got {scale_jitter}")
        if min_colorfulness_quantile is not None and not 0 <= min_colorfulness_quantile < 1:
            raise ValueError(
                f"min_colorfulness_quantile must be in [0, 1), got {min_colorfulness_quantile}"
            )
        if max_images is not None and max_images <= 0:
            raise ValueError(f"max_images must be positive, got {max_images}")
        self.crop = int(crop)
        self.train = bool(train)
        self.scale_jitter = (float(lo), float(hi))
        self.hflip = bool(hflip)
        self.max_pixels = max_pixels
        self.roots = [Path(r) for r in roots]

        found = all_found = image_io.find_images(roots)
        if not found:
            raise FileNotFoundError(f"no images found under {', '.join(map(str, roots))}")
        stats: dict[str, int] = {"found": len(found)}
        if groups is not None or holdout != "include":
            found = select_files(found, groups=groups, holdout=holdout)
            stats["after_groups_holdout"] = len(found)
        files = [f for f, _ in found]
        if not files:
            raise ValueError(f"no images left under {', '.join(map(str, roots))} after groups/holdout ({stats})")
        group_by_file = {f: group_of(f, r) for f, r in found}

        if max_images is not None and (drop_grayscale or min_colorfulness_quantile):
            # score only a random candidate pool big enough for the cap after the filters, not every
            # file (the quantile is then that of the pool, an unbiased sample of the folder)
            keep_share = (1.0 - (min_colorfulness_quantile or 0.0)) * (0.9 if drop_grayscale else 1.0)
            pool = min(len(files), int(math.ceil(max_images / keep_share * 1.1)) + 16)
            if pool < len(files):
                rng = np.random.default_rng(seed + 1)
                files = [files[i] for i in np.sort(rng.choice(len(files), size=pool, replace=False))]
                stats["scored_pool"] = pool
        if drop_grayscale or min_colorfulness_quantile:
            cf, spread = compute_image_scores(
                files, cache_dir=cache_dir, workers=score_workers, progress=progress
            )
            keep = np.ones(len(files), dtype=bool)
            if drop_grayscale:
                keep &= spread >= GRAY_MAX_SPREAD
                stats["after_grayscale"] = int(keep.sum())
            if min_colorfulness_quantile:
                idx = np.flatnonzero(keep)
                order = idx[np.argsort(cf[idx], kind="stable")]
                n_drop = int(math.floor(min_colorfulness_quantile * len(idx)))
                keep[order[:n_drop]] = False
                stats["after_colorfulness"] = int(keep.sum())
            files = [f for f, k in zip(files, keep) if k]
        if max_images is not None and len(files) > max_images:
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.choice(len(files), size=max_images, replace=False))
            files = [files[i] for i in chosen]
        stats["kept"] = len(files)
        if not files:
            raise ValueError(f"all {stats['found']} images under {roots} were filtered out ({stats})")
        self.files: list[Path] = files
        self.groups: list[str] = [group_by_file[f] for f in files]
        self.filter_stats = stats

        self.class_names: list[str] = []
        self.labels: list[int] = [-1] * len(files)
        if with_labels:
            self._assign_labels([f for f, _ in all_found])

    def _assign_labels(self, all_files: list[Path]) -> None:
        lookup: dict[Path, str] = {}
        for root in self.roots:
            manifest = _find_manifest(root) if root.is_dir() else None
            if manifest is not None:
                lookup.update(_manifest_labels(manifest))

        def label_of(f: Path) -> str | None:
            if lookup:
                name = lookup.get(f.resolve())
                if name is not None:
                    return name or None
            return label_from_name(f)

        # class names from all files found (before filters), so ids do not depend on filtering
        names = sorted({n for n in map(label_of, all_files) if n is not None})
        index = {n: i for i, n in enumerate(names)}
        self.class_names = names
        self.labels = [index[n] if (n := label_of(f)) is not None else -1 for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def _crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        short = min(width, height)
        if self.train:
            lo, hi = self.scale_jitter
            side = short * (lo + (hi - lo) * float(torch.rand(())))
            x0 = (width - side) * float(torch.rand(()))
            y0 = (height - side) * float(torch.rand(()))
        else:
            side = float(short)
            x0 = (width - side) / 2.0
            y0 = (height - side) / 2.0
        return (x0, y0, x0 + side, y0 + side)

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        path = self.files[index]
        img = image_io.load_image(path, max_pixels=self.max_pixels)
        box = self._crop_box(*img.size)
        out = img.resize((self.crop, self.crop), _RESAMPLE, box=box)
        if self.train and self.hflip and float(torch.rand(())) < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # HWC -> CHW in numpy: torch's parallel copy is slow for small tensors on busy machines
        rgb = torch.from_numpy(np.ascontiguousarray(np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)))
        return {"rgb": rgb, "label": int(self.labels[index]), "index": int(index)}

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({len(self)} images, crop={self.crop}, train={self.train}, "
            f"classes={len(self.class_names)}, stats={self.filter_stats})"
        )


# --------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers only decode; keep them from oversubscribing the cores


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    workers: int = 2,
    shuffle: bool = True,
    distributed: bool = False,
    drop_last: bool = True,
    seed: int = 0,
    prefetch_factor: int | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader whose worker processes decode and crop the images.

    Args:
        dataset: e.g. :class:`ImageFolderDataset`.
        batch_size: per process.
        workers: decoding processes (0 = in the main process); kept alive across epochs.
        shuffle: reshuffle every epoch (seeded by ``seed``).
        distributed: shard with a ``DistributedSampler`` (requires an initialised process group);
            call ``loader.sampler.set_epoch(epoch)`` every epoch to reshuffle.
        drop_last: drop the last incomplete batch.
        seed: shuffling seed (augmentation randomness follows ``torch.manual_seed``).
        prefetch_factor: batches prefetched per worker (default PyTorch's 2).
        pin_memory: default: when CUDA is available.

    Returns:
        DataLoader yielding dicts of batched ``rgb`` uint8 ``(B, 3, crop, crop)``, ``label`` int64
        ``(B,)``, ``index`` int64 ``(B,)``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    kwargs: dict[str, object] = {}
    if workers > 0:
        kwargs["persistent_workers"] = True
        kwargs["worker_init_fn"] = _worker_init
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        **kwargs,
    )


def batch_to_lab(rgb: Tensor, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Move an RGB batch to ``device`` and convert it to the network's inputs and targets.

    Args:
        rgb: uint8 ``(B, 3, H, W)`` in 0..255 (or float in ``[0, 1]``), on any device.
        device: where the conversion runs (default: ``rgb``'s device).

    Returns:
        ``(l_norm (B, 1, H, W), ab_norm (B, 2, H, W))`` float32 on ``device``, see
        :func:`colorization.color.rgb_to_l_ab`.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must have shape (B, 3, H, W), got {tuple(rgb.shape)}")
    x = rgb.to(device, non_blocking=True) if device is not None else rgb
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif x.is_floating_point():
        x = x.float()
    else:
        raise TypeError(f"rgb must be uint8 or floating point, got {x.dtype}")
    return color.rgb_to_l_ab(x)

