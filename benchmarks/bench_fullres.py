#!/usr/bin/env python
"""A 12 MP photo end to end against decode + encode alone, with the exact and the fast
full-resolution recombination (issue #23, item 4).

The photo is ``--image`` (default: examples/astronaut_gray.jpg, whose black background the model
tints, so ~19 % of its pixels come out of gamut: a hard case) upscaled to ``--width`` x ``--height``
and saved as a grayscale JPEG (q90), so no data is needed; ``--image /work/shared/data/bench/kodak24/kodim01.jpg``
gives a typical photo (< 1 % out of gamut). Stages, as the ``colorize`` command runs them:
decode (:func:`colorization.image_io.open_image`), prepare (:meth:`Colorizer.prepare`), network
(:meth:`Colorizer.predict`), recombine (:meth:`Colorizer.finish`: ab upsampling, Lab -> sRGB with the
gamut mapping, 8-bit output) and encode (:func:`colorization.image_io.save_image`, JPEG). Rows:

* ``decode + encode alone``: the floor, the same file opened and saved with no colorization;
* ``exact recombine``: recombination by the torch path (:func:`colorization.color.lab_to_rgb_in_gamut`
  on every pixel, ``recombine_array(..., exact=True)``), the only path before issue #23;
* ``fast recombine``: the default on the CPU (:func:`colorization.srgb8.lab_to_srgb8`).

Two more rows measure the same photo the plain way (issue #31, item 9):

* ``plain floor: PIL decode + JPEG encode``: ``Image.open(src).load()`` and ``save(dst, "JPEG")``
  with PIL's defaults, nothing else;
* ``plain: Colorizer(src) + the same encode``: ``Colorizer.__call__`` on the file (decode,
  prepare, network, recombine) and the same ``save``.

Also printed: the largest difference between the two outputs in 8-bit levels, the share of pixels
that differ, and the share that the fast path recomputes exactly (a channel at 0 or 255). The
script runs against older checkouts too (``PYTHONPATH=<checkout>/src``), for before/after figures.

    OMP_NUM_THREADS=2 python benchmarks/bench_fullres.py                  # ~1 min on 2 busy cores
    OMP_NUM_THREADS=1 python benchmarks/bench_fullres.py --threads 1 --clock cpu   # the work, on a busy machine
    python benchmarks/bench_fullres.py --image /work/shared/data/bench/kodak24/kodim01.jpg --repeats 7
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from pathlib import Path

from common import (  # noqa: E402  (before torch)
    add_large_photo_args,
    add_omp_arg,
    apply_omp_policy,
    load_average,
    machine_lines,
    make_large_photo,
    markdown_table,
)

apply_omp_policy()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from colorization import Colorizer, image_io  # noqa: E402
from colorization.inference import colorizer as _colorizer_module  # noqa: E402
from colorization.inference import fullres  # noqa: E402

known_gray = getattr(_colorizer_module, "known_gray", None)  # None before issue #31

STAGES = ("decode", "prepare", "network", "recombine", "encode")
clock = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of all threads: the work, whatever the load)


def run_once(colorizer: Colorizer, src: Path, dst: Path, exact: bool) -> tuple[dict[str, float], np.ndarray]:
    """One photo through the staged pipeline; seconds per stage and the 8-bit output."""
    t = {}
    t0 = clock()
    loaded = image_io.open_image(src)
    t1 = clock()
    if known_gray is not None:  # as colorize_files does (issue #31)
        prep = colorizer.prepare(known_gray(loaded, None))
    else:
        prep = colorizer.prepare(loaded.image)
    t2 = clock()
    (ab,) = colorizer.predict([prep])
    t3 = clock()
    if exact:
        arr = fullres.recombine_array(prep, ab, 1.0, None, colorizer.device, exact=True)
        out = Image.fromarray(arr, mode="RGB")
    else:
        out = colorizer.finish(prep, ab)
    t4 = clock()
    image_io.save_image(out, dst, overwrite=True, exif=loaded.exif)
    t5 = clock()
    t.update(decode=t1 - t0, prepare=t2 - t1, network=t3 - t2, recombine=t4 - t3, encode=t5 - t4)
    return t, np.asarray(out)


def run_plain(colorizer: Colorizer | None, src: Path, dst: Path) -> dict[str, float]:
    """The plain floor (``colorizer`` None: PIL decode + JPEG encode) or ``Colorizer(src)`` + that encode."""
    t0 = clock()
    if colorizer is None:
        image = Image.open(src)
        image.load()
    else:
        image = colorizer(src)
    t1 = clock()
    image.save(dst, "JPEG")
    return {"decode": t1 - t0, "encode": clock() - t1} if colorizer is None else \
        {"colorize": t1 - t0, "encode": clock() - t1}


def run_floor(src: Path, dst: Path) -> dict[str, float]:
    t0 = clock()
    loaded = image_io.open_image(src)
    t1 = clock()
    image_io.save_image(loaded.image, dst, overwrite=True, exif=loaded.exif)
    return {"decode": t1 - t0, "encode": clock() - t1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_large_photo_args(ap)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op and OpenCV threads (default 2)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock (default), or CPU seconds of the process: with --threads 1 on a busy "
                         "machine, what the wall clock would read on an idle core")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    add_omp_arg(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    has_exact = "exact" in inspect.signature(fullres.recombine_array).parameters  # False before #23

    colorizer = Colorizer.from_pretrained(args.model, device="cpu")
    tmp = tempfile.TemporaryDirectory()
    src, dst = make_large_photo(args, tmp.name), Path(tmp.name) / "out.jpg"

    load0 = load_average()[0]
    modes = [("exact recombine", True), ("fast recombine", False)] if has_exact else [("this checkout", False)]
    timings: dict[str, list[dict[str, float]]] = {"decode + encode alone": []}
    outputs: dict[str, np.ndarray] = {}
    for name, exact in modes:
        timings[name] = []
        run_once(colorizer, src, dst, exact)  # warm-up
    run_floor(src, dst)
    plain = {"plain floor: PIL decode + JPEG encode": [], "plain: Colorizer(src) + the same encode": []}
    run_plain(None, src, dst)
    run_plain(colorizer, src, dst)
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every row
        timings["decode + encode alone"].append(run_floor(src, dst))
        for name, exact in modes:
            t, outputs[name] = run_once(colorizer, src, dst, exact)
            timings[name].append(t)
        for name, c in zip(plain, (None, colorizer)):
            plain[name].append(run_plain(c, src, dst))
    load1 = load_average()[0]

    med = {name: {s: statistics.median(r[s] for r in runs) for s in runs[0]} for name, runs in timings.items()}
    floor = sum(med["decode + encode alone"].values())
    rows = []
    for name, m in med.items():
        total = sum(m.values())
        cells = [f"{m[s]:.3f}" if s in m else "" for s in STAGES]
        rows.append([name, *cells, f"{total:.3f}", f"{total / floor:.2f}x", ""])
    pmed = {name: {s: statistics.median(r[s] for r in runs) for s in runs[0]} for name, runs in plain.items()}
    pfloor = sum(pmed["plain floor: PIL decode + JPEG encode"].values())
    for name, m in pmed.items():
        total = sum(m.values())
        cells = [f"{m['decode']:.3f}" if "decode" in m else "", "", "",
                 f"{m['colorize']:.3f}" if "colorize" in m else "", f"{m['encode']:.3f}"]
        rows.append([name, *cells, f"{total:.3f}", "", f"{total / pfloor:.2f}x"])
    print(f"{args.width}x{args.height} ({args.width * args.height / 1e6:.1f} MP) from {args.image.name}, "
          f"shipped model on the CPU, {torch.get_num_threads()} torch / {cv2.getNumThreads()} OpenCV threads, "
          f"{args.clock} clock, median of {args.repeats}; "
          f"1-min load {load0:.1f} -> {load1:.1f}")
    for line in machine_lines():
        print(line)
    print()
    print(markdown_table(["run", *(f"{s} s" for s in STAGES), "total s", "x decode+encode", "x plain floor"], rows))
    print("(plain rows: Colorizer(src) in the recombine column stands for decode, prepare, network and recombine)")
    if has_exact:
        fast, ref = outputs["fast recombine"], outputs["exact recombine"]
        diff = np.abs(fast.astype(np.int16) - ref.astype(np.int16))
        redone = ((fast == 0) | (fast == 255)).any(axis=-1).mean()
        print(f"\nfast vs exact: max {int(diff.max())} level(s), {100 * (diff > 0).any(axis=-1).mean():.2f} % of "
              f"pixels differ; {100 * redone:.1f} % of pixels recomputed exactly (a channel at 0 or 255)")


if __name__ == "__main__":
    main()
