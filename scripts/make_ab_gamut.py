#!/usr/bin/env python
"""Compute the quantised ab gamut and its empirical prior from training photos.

The ab plane is cut into square bins of ``color.AB_BIN_SIZE`` (10) Lab units whose centres are
multiples of 10. A bin is kept when it is reachable by an sRGB colour (every 8-bit RGB triple is
converted to Lab) AND occurs in the training photos; its prior is its share of all training pixels.
Pixels are binned through a 256^3 lookup table (8-bit RGB -> bin), so the photos are read at their
stored resolution without resampling.

Usage:
    python scripts/make_ab_gamut.py ../shared/data/train src/colorization/resources/ab_gamut.json
    python scripts/make_ab_gamut.py DATA_DIR OUT.json --subset 5000 --workers 2
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from colorization import color
from colorization.image_io import atomic_write_text

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
# ab grid: cell (i, j) has centre ((i - HALF_CELLS) * 10, (j - HALF_CELLS) * 10); sRGB ab fits in it
HALF_CELLS = 12
GRID = 2 * HALF_CELLS + 1

_LUT: np.ndarray | None = None  # (256**3,) int16 grid cell of every 8-bit RGB colour


def cell_of_ab(ab: torch.Tensor) -> torch.Tensor:
    """Grid cell index (int64) of ab values (..., 2) in Lab units (nearest multiple of 10)."""
    ij = torch.floor(ab / color.AB_BIN_SIZE + 0.5).long() + HALF_CELLS
    if (ij < 0).any() or (ij >= GRID).any():
        raise ValueError("ab value outside the +-125 grid")
    return ij[..., 0] * GRID + ij[..., 1]


def cell_centres() -> np.ndarray:
    """(GRID*GRID, 2) centres (a, b) in Lab units, cell index order."""
    i, j = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    return (np.stack([i.ravel(), j.ravel()], 1) - HALF_CELLS) * color.AB_BIN_SIZE


def build_lut(chunk: int = 1 << 20) -> np.ndarray:
    """Grid cell of every 8-bit sRGB colour, indexed by ``(r << 16) | (g << 8) | b``."""
    codes = torch.arange(256**3, dtype=torch.int64)
    lut = np.empty(256**3, dtype=np.int16)
    for start in range(0, codes.numel(), chunk):
        c = codes[start : start + chunk]
        rgb = torch.stack(((c >> 16) & 255, (c >> 8) & 255, c & 255), 0).float() / 255.0
        lab = color.rgb_to_lab(rgb.view(3, 1, -1))[:, 0]  # (3, N)
        lut[start : start + chunk] = cell_of_ab(lab[1:].T).numpy().astype(np.int16)
    return lut


def _init_worker(lut: np.ndarray) -> None:
    global _LUT
    _LUT = lut


def count_image(path: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Histogram of grid cells over the pixels of one image (and its size)."""
    assert _LUT is not None
    with Image.open(path) as im:
        im = im.convert("RGB")
        arr = np.asarray(im, dtype=np.int32)
    codes = (arr[..., 0] << 16) | (arr[..., 1] << 8) | arr[..., 2]
    hist = np.bincount(_LUT[codes.ravel()], minlength=GRID * GRID)
    return hist.astype(np.int64), (arr.shape[1], arr.shape[0])


def list_images(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def atomic_write_json(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, separators=(",", ":")) + "\n")


def compute_gamut(
    files: list[Path], workers: int = 2, progress: bool = True
) -> dict:
    """Count bin occupancy over ``files``; return the JSON-ready dict (without provenance)."""
    lut = build_lut()
    in_gamut = np.zeros(GRID * GRID, dtype=bool)
    in_gamut[np.unique(lut)] = True
    counts = np.zeros(GRID * GRID, dtype=np.int64)
    sizes: list[tuple[int, int]] = []
    paths = [str(p) for p in files]
    bar = tqdm(total=len(paths), desc="ab histogram", unit="img", disable=not progress)
    if workers > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(lut,)) as pool:
            for hist, size in pool.imap_unordered(count_image, paths, chunksize=64):
                counts += hist
                sizes.append(size)
                bar.update()
    else:
        _init_worker(lut)
        for p in paths:
            hist, size = count_image(p)
            counts += hist
            sizes.append(size)
            bar.update()
    bar.close()
    keep = in_gamut & (counts > 0)
    centres = cell_centres()[keep]
    kept_counts = counts[keep]
    # cell order is a-major then b, i.e. sorted by (a, b)
    prior = kept_counts / kept_counts.sum()
    short = [min(s) for s in sizes]
    return {
        "bins": [[float(a), float(b)] for a, b in centres],
        "prior": [float(f"{p:.9g}") for p in prior],
        "counts": [int(c) for c in kept_counts],
        "stats": {
            "num_images": len(paths),
            "total_pixels": int(counts.sum()),
            "bins_in_srgb_gamut": int(in_gamut.sum()),
            "bins_kept": int(keep.sum()),
            "short_side_min": int(min(short)) if short else 0,
            "short_side_median": int(np.median(short)) if short else 0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path, help="folder of training photos (searched recursively)")
    parser.add_argument("output", type=Path, help="output JSON path")
    parser.add_argument("--subset", type=int, default=None, help="use a random subset of this many images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset draw")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args(argv)

    files = list_images(args.data_dir)
    if not files:
        parser.error(f"no images found under {args.data_dir}")
    total_found = len(files)
    if args.subset is not None and args.subset < len(files):
        files = sorted(random.Random(args.seed).sample(files, args.subset))
    result = compute_gamut(files, workers=args.workers)
    out = {
        "format_version": 1,
        "description": "ab bin centres (Lab units, D65) on a 10-unit grid that are in the sRGB "
        "gamut and occur in the training photos, with their empirical prior",
        "grid_size": color.AB_BIN_SIZE,
        "num_bins": len(result["bins"]),
        "computed": {
            "script": "scripts/make_ab_gamut.py",
            "data_dir": args.data_dir.name,
            "images_found": total_found,
            "images_used": len(files),
            "subset": args.subset,
            "seed": args.seed,
            "resolution": "stored resolution, no resampling "
            f"(short side min {result['stats']['short_side_min']}, "
            f"median {result['stats']['short_side_median']} px)",
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
            **{k: v for k, v in result["stats"].items() if not k.startswith("short_side")},
        },
        "bins": result["bins"],
        "prior": result["prior"],
        "counts": result["counts"],
    }
    atomic_write_json(out, args.output)
    print(
        f"wrote {args.output}: {out['num_bins']} bins "
        f"({result['stats']['bins_in_srgb_gamut']} in the sRGB gamut) from {len(files)} images, "
        f"{result['stats']['total_pixels']:,} pixels"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
