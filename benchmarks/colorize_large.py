"""Time and peak memory of colorizing one large photo (default 4000x3000) with the Colorizer.

The photo is made by upscaling ``--image`` (default: examples/astronaut_gray.jpg) to the target
size and saving it as a JPEG (q90), so the benchmark needs no data; it is colorized from that
file. Prints the time of each pipeline step (prepare = JPEG decode +
full-resolution L + resize; predict = network at the working size; recombine = ab upsampling,
gamut mapping and 8-bit output at full resolution) and the process's peak resident memory.

    python benchmarks/colorize_large.py                       # 4000x3000 on CPU, default model
    python benchmarks/colorize_large.py --width 6000 --height 4000 --refine --threads 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch
from common import add_large_photo_args, make_large_photo

from colorization import Colorizer


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_large_photo_args(ap)
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--refine", action="store_true")
    ap.add_argument("--saturation", type=float, default=1.0,
                    help="chroma multiplier (the untrained placeholder's colours are all out of gamut; "
                         "0.2 gives a typical in-gamut case)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base_rss = rss_mib()
    colorizer = Colorizer.from_pretrained(args.model, device=args.device, backend=args.backend, size=args.size)
    tmp = tempfile.TemporaryDirectory()
    photo = make_large_photo(args, tmp.name)
    model_rss = rss_mib()
    rows = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        prep = colorizer.prepare(photo)
        t1 = time.perf_counter()
        (ab,) = colorizer.predict([prep])
        t2 = time.perf_counter()
        out = colorizer.finish(prep, ab, saturation=args.saturation, refine=args.refine)
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
        assert out.size == (args.width, args.height)
    best = np.min(np.array(rows), axis=0)
    print(f"{args.width}x{args.height} ({args.width * args.height / 1e6:.1f} MP), {colorizer!r}, "
          f"refine={args.refine}, saturation={args.saturation:g}, "
          f"working {prep.work_hw[1]}x{prep.work_hw[0]}, torch threads {torch.get_num_threads()}")
    print(f"| step | best of {args.repeats} (s) |")
    print("|---|---|")
    for name, value in zip(("prepare", "predict", "recombine", "total"), best):
        print(f"| {name} | {value:.2f} |")
    print(f"peak RSS: {rss_mib():.0f} MiB (python + torch + model: {model_rss:.0f} MiB, at start {base_rss:.0f} MiB)")


if __name__ == "__main__":
    main()
