#!/usr/bin/env python
"""Data-loader throughput: images per second decoded, cropped and batched.

Usage:
    python benchmarks/bench_loader.py ../shared/data/train --workers 0 2 --crop 128 --batches 30

For each worker count it builds ``ImageFolderDataset`` + ``build_loader``, skips the first batch
(worker start-up) and times the next ``--batches`` batches, optionally including the Lab
conversion (``--lab``). Filters are off unless asked for (they score every image once).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from colorization import data


def bench(ds: data.ImageFolderDataset, workers: int, batch_size: int, batches: int, lab: bool) -> dict:
    torch.manual_seed(0)
    loader = data.build_loader(ds, batch_size, workers=workers, shuffle=True, seed=0)
    it = iter(loader)
    t0 = time.perf_counter()
    next(it)  # start-up (forking workers, first decode)
    startup = time.perf_counter() - t0
    n = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        if lab:
            data.batch_to_lab(batch["rgb"], "cpu")
        n += batch["rgb"].shape[0]
    elapsed = time.perf_counter() - t0
    del it, loader
    return {"workers": workers, "images": n, "seconds": elapsed, "startup": startup,
            "rate": n / elapsed if elapsed > 0 else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", nargs="+", help="folders of images")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per setting")
    parser.add_argument("--eval", action="store_true", help="eval transform (resize + centre crop)")
    parser.add_argument("--lab", action="store_true", help="include batch_to_lab on the CPU")
    parser.add_argument("--drop-grayscale", action="store_true")
    parser.add_argument("--min-colorfulness-quantile", type=float, default=None)
    args = parser.parse_args()

    ds = data.ImageFolderDataset(
        args.data_dir,
        crop=args.crop,
        train=not args.eval,
        drop_grayscale=args.drop_grayscale,
        min_colorfulness_quantile=args.min_colorfulness_quantile,
    )
    print(f"dataset: {len(ds)} images from {', '.join(args.data_dir)}; crop {args.crop}, "
          f"batch {args.batch_size}, {'eval' if args.eval else 'train'} transform"
          f"{', + Lab' if args.lab else ''}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__}")
    print()
    print(f"{'workers':>7} | {'images':>6} | {'seconds':>7} | {'start-up s':>10} | {'images/s':>8}")
    print(f"{'-' * 7}-+-{'-' * 6}-+-{'-' * 7}-+-{'-' * 10}-+-{'-' * 8}")
    for w in args.workers:
        r = bench(ds, w, args.batch_size, args.batches, args.lab)
        print(f"{r['workers']:>7} | {r['images']:>6} | {r['seconds']:>7.2f} | {r['startup']:>10.2f} | "
              f"{r['rate']:>8.0f}")


if __name__ == "__main__":
    main()
