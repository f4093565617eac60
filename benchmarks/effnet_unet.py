#!/usr/bin/env python
"""Size, FLOPs and CPU latency of ``effnet_unet`` for each EfficientNet-Lite variant.

Prints one table row per variant: parameters (whole network / encoder alone), FLOPs for one
``size x size`` L image (whole network / encoder alone), and the median CPU forward time over
``--repeats`` runs (after ``--warmup`` runs) with ``--threads`` intra-op threads for the variants
named by ``--time``. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on the meta
device (2 FLOPs per multiply-add of convolutions and matrix products; interpolation, norms and
activations are not counted). Weights are random (``pretrained=False``): neither size nor speed
depends on them.

    python benchmarks/effnet_unet.py                       # 256 px, time lite0 with 2 threads
    python benchmarks/effnet_unet.py --time lite0 lite1 lite2 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from colorization.models import create_model
from colorization.models.efficientnet_lite import VARIANTS


def count(variant: str, size: int) -> dict[str, float]:
    with torch.device("meta"):
        net = create_model("effnet_unet", variant=variant, pretrained=False).eval()
        x = torch.empty(1, 1, size, size)
        total, enc = FlopCounterMode(display=False), FlopCounterMode(display=False)
        with torch.no_grad():
            with total:
                net(x)
            with enc:
                net.encoder(x)
    return {
        "params": sum(p.numel() for p in net.parameters()) / 1e6,
        "enc_params": sum(p.numel() for p in net.encoder.parameters()) / 1e6,
        "gflops": total.get_total_flops() / 1e9,
        "enc_gflops": enc.get_total_flops() / 1e9,
    }


def latency_ms(variant: str, size: int, threads: int, warmup: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = create_model("effnet_unet", variant=variant, pretrained=False).eval()
    x = torch.rand(1, 1, size, size) * 2 - 1
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="square input side (multiple of 32)")
    parser.add_argument("--time", nargs="*", default=["lite0"], choices=VARIANTS, help="variants to time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.size}x{args.size}, batch 1, {args.threads} thread(s), median of {args.repeats}")
    print(f"| variant | params (M) | encoder params (M) | GFLOPs @ {args.size} | encoder GFLOPs | CPU ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for variant in VARIANTS:
        c = count(variant, args.size)
        ms = (
            f"{latency_ms(variant, args.size, args.threads, args.warmup, args.repeats):.0f}"
            if variant in args.time
            else "-"
        )
        print(f"| {variant} | {c['params']:.2f} | {c['enc_params']:.2f} | {c['gflops']:.2f} | "
              f"{c['enc_gflops']:.2f} | {ms} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
