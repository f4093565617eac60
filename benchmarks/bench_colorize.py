#!/usr/bin/env python
"""End-to-end colorization cost: where the time goes, how it grows with image size, torch vs ONNX
Runtime, and ``colorize-many`` with 1 and 2 processes.

Sections (``--sections``, all by default):

``folder``
    Colorize a folder (default ``/work/shared/data/bench/kodak24`` when it exists, read only;
    otherwise ``--folder-images`` synthetic photos) the way ``colorization colorize`` does it:
    decode (:func:`colorization.image_io.open_image`), prepare (full-resolution L, resize to the working
    size, pad: :meth:`Colorizer.prepare`), network (:meth:`Colorizer.predict`, ``--batch-size``
    images per call), recombination (ab upsampling + Lab -> sRGB with the original L:
    :meth:`Colorizer.finish`) and encode (:func:`colorization.image_io.save_image`, the input's format).
    The floor is decode + encode of the same files in the same run. The CLI itself is then timed
    on the same folder (wall clock, including interpreter start-up and model loading).
``sizes``
    Synthetic grayscale photos of growing size (``--sizes``, ``WxH``) at the fixed working
    resolution: per-stage time and time per megapixel; peak memory growth per size.
``onnx``
    The default model on a 512x512 photo: network only, ``colorizer(image)`` in memory, and file
    to file, with the PyTorch backend and with ONNX Runtime (exported in the run with
    :func:`colorization.inference.onnx_export.export_onnx`), with 1 and ``--threads`` threads.
``many``
    ``colorization colorize-many`` on ``--many-images`` synthetic 512 px photos with 1 process and
    with ``torchrun --nproc_per_node 2`` (threads per process = cores / processes).

Every measurement runs in its own forked process (CPU) so peak memory can be attributed; the
1-minute load average at its start and end is printed next to it.

Usage:
    python benchmarks/bench_colorize.py                                # short run (~3 min on 2 busy cores)
    python benchmarks/bench_colorize.py --sections sizes --sizes 512x512 4000x3000 --reps 3
    python benchmarks/bench_colorize.py --device cuda --folder /data/photos --many-procs 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
from common import (  # noqa: E402  (common sets OMP_WAIT_POLICY before torch loads)
    LoadWindow,
    add_omp_arg,
    fmt,
    machine_info,
    machine_lines,
    markdown_table,
    run_isolated,
    sync,
)
from PIL import Image  # noqa: E402

DEFAULT_FOLDER = Path("/work/shared/data/bench/kodak24")
STAGES = ("decode", "prepare", "network", "recombine", "encode")


# --------------------------------------------------------------------------------------------
# synthetic photos
# --------------------------------------------------------------------------------------------


def synthetic_photo(width: int, height: int, seed: int = 0, gray: bool = True) -> Image.Image:
    """A photo-like test image: smooth gradients, a few blobs and fine texture, 8-bit.

    ``gray=True`` gives a mode ``L`` image (an old black-and-white photo), else RGB.
    """
    rng = np.random.default_rng(seed)
    # built at low resolution and upsampled: cheap for 12 MP images
    lw, lh = max(8, width // 8), max(8, height // 8)
    y, x = np.mgrid[0:lh, 0:lw].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(x / lw * rng.uniform(2, 6) + rng.uniform(0, 6)) * np.cos(y / lh * rng.uniform(2, 6))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, lw), rng.uniform(0, lh), rng.uniform(0.05, 0.25) * min(lw, lh)
        base += rng.uniform(-0.3, 0.3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    chans = 1 if gray else 3
    low = np.stack([base + rng.uniform(-0.1, 0.1) for _ in range(chans)], axis=-1)
    low = np.clip(low, 0, 1)
    img = Image.fromarray((low * 255).astype(np.uint8).squeeze(-1) if gray else (low * 255).astype(np.uint8))
    img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img).astype(np.int16)
    arr = arr + rng.integers(-6, 7, size=arr.shape, dtype=np.int16)  # film grain
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_synthetic(folder: Path, count: int, width: int, height: int, gray: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"synthetic_{i:04d}.jpg"
        synthetic_photo(width, height, seed=i, gray=gray).save(p, quality=95)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------------------------
# the staged pipeline (same steps as colorization.commands.colorize)
# --------------------------------------------------------------------------------------------


def _colorizer(
    args: argparse.Namespace, backend: str = "torch", onnx_path: Path | None = None, threads: int | None = None
):
    import torch

    from colorization.inference.colorizer import Colorizer

    torch.set_num_threads(threads or args.threads)
    if backend == "onnx":
        from colorization.inference.onnx_export import OnnxBackend

        return Colorizer(OnnxBackend(onnx_path, device="cpu", threads=threads or args.threads))
    return Colorizer.from_pretrained(args.model, device=args.device, backend="torch")


def run_pipeline(colorizer: Any, files: list[Path], out_dir: Path, batch_size: int) -> dict[str, float]:
    """Colorize ``files`` into ``out_dir`` (chunks of ``batch_size`` like the CLI); seconds per stage."""
    from colorization import image_io

    dev = colorizer.device
    t = dict.fromkeys(STAGES, 0.0)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        ready = []
        for f in chunk:
            t0 = time.perf_counter()
            loaded = image_io.open_image(f)
            t1 = time.perf_counter()
            prep = colorizer.prepare(loaded.image)
            t2 = time.perf_counter()
            t["decode"] += t1 - t0
            t["prepare"] += t2 - t1
            ready.append((f, loaded, prep))
        t0 = time.perf_counter()
        abs_ = colorizer.predict([p for _, _, p in ready], batch_size)
        sync(dev)
        t["network"] += time.perf_counter() - t0
        for (f, loaded, prep), ab in zip(ready, abs_):
            t0 = time.perf_counter()
            img = colorizer.finish(prep, ab)
            sync(dev)
            t1 = time.perf_counter()
            image_io.save_image(img, out_dir / f.name, overwrite=True, exif=loaded.exif)
            t["encode"] += time.perf_counter() - t1
            t["recombine"] += t1 - t0
    return t


def run_floor(files: list[Path], out_dir: Path) -> dict[str, float]:
    """Decode + encode alone (the same files, formats and writer)."""
    from colorization import image_io

    t = {"decode": 0.0, "encode": 0.0}
    for f in files:
        t0 = time.perf_counter()
        loaded = image_io.open_image(f)
        t1 = time.perf_counter()
        image_io.save_image(loaded.image, out_dir / f.name, overwrite=True, exif=loaded.exif)
        t["encode"] += time.perf_counter() - t1
        t["decode"] += t1 - t0
    return t


def folder_child(args: argparse.Namespace, files: list[Path], tmp: Path) -> dict[str, Any]:
    colorizer = _colorizer(args)
    out_p, out_f = tmp / "pipeline", tmp / "floor"
    out_p.mkdir(exist_ok=True)
    out_f.mkdir(exist_ok=True)
    run_floor(files[:1], out_f)  # warm-up: file cache, codecs
    run_pipeline(colorizer, files[: args.batch_size], out_p, args.batch_size)  # warm-up: oneDNN primitives
    t0 = time.perf_counter()
    floor = run_floor(files, out_f)
    floor_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    stages = run_pipeline(colorizer, files, out_p, args.batch_size)
    total = time.perf_counter() - t0
    return {"n": len(files), "stages": stages, "total": total, "floor": floor, "floor_total": floor_total,
            "model": colorizer.model_name, "size": colorizer.size, "device": str(colorizer.device)}


def section_folder(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from colorization import image_io

    if args.folder is not None and args.folder.is_dir():
        files = [f for f, _ in image_io.find_images([args.folder])][: args.limit]
        source = str(args.folder)
    else:
        files = write_synthetic(tmp / "folder_in", args.folder_images, 500, 500, gray=False)
        source = f"{len(files)} synthetic 500x500 colour JPEGs"
    sizes = []
    for f in files:
        with Image.open(f) as im:
            sizes.append(im.size)
    with LoadWindow() as lw:
        res, rss = run_isolated(folder_child, args, files, tmp)
    res.update(source=source, load=str(lw), rss_mib=rss, mp=sum(w * h for w, h in sizes) / 1e6)
    if args.cli:
        out = tmp / "cli_out"
        cmd = [sys.executable, "-m", "colorization.cli", "colorize", *map(str, files), "-o", str(out), "--force",
               "--batch-size", str(args.batch_size)]
        if args.device:
            cmd += ["--device", args.device]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        with LoadWindow() as lw:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
        res["cli"] = {"wall": wall, "rc": proc.returncode, "load": str(lw), "cmd": " ".join(cmd[1:4]) + " FILES -o OUT"}
        # start-up alone: the same command on one image, minus one image's in-process time
        with LoadWindow() as lw:
            t0 = time.perf_counter()
            subprocess.run(cmd[:4] + [str(files[0])] + cmd[4 + len(files):], capture_output=True, env=env, check=False)
            res["cli"]["one_image_wall"] = time.perf_counter() - t0
    return res


def print_folder(res: dict[str, Any], args: argparse.Namespace) -> None:
    n, total, st = res["n"], res["total"], res["stages"]
    print()
    print(f"## End-to-end colorize of a folder ({res['source']}: {n} images, {res['mp'] / n:.2f} MP each on average)")
    print()
    print(f"model {res['model']}, working size {res['size']}, device {res['device']}, {args.threads} threads, "
          f"batch size {args.batch_size}; load {res['load']}; peak RSS growth {res['rss_mib']:.0f} MiB")
    print()
    rows = []
    for s in STAGES:
        rows.append([s, fmt(st[s] / n * 1e3, 1), f"{100 * st[s] / total:.0f} %"])
    rows.append(["**total (pipeline)**", fmt(total / n * 1e3, 1), "100 %"])
    floor = res["floor_total"]
    rows.append(["floor: decode + encode alone", fmt(floor / n * 1e3, 1), f"{100 * floor / total:.0f} %"])
    print(markdown_table(["stage", "ms / image", "share of pipeline"], rows))
    print()
    rows = [["colorize pipeline (in process)", fmt(n / total, 2), fmt(res["mp"] / total, 2)],
            ["floor (decode + encode)", fmt(n / floor, 2), fmt(res["mp"] / floor, 2)]]
    if "cli" in res:
        c = res["cli"]
        rows.append([f"`colorization colorize` CLI, wall clock incl. start-up (rc {c['rc']})", fmt(n / c["wall"], 2),
                     fmt(res["mp"] / c["wall"], 2)])
        startup = c["one_image_wall"] - total / n
        print(f"CLI: {c['wall']:.1f} s for {n} images (load {c['load']}); one image: {c['one_image_wall']:.1f} s, "
              f"i.e. about {startup:.1f} s of start-up (interpreter, imports, model load, first-call set-up).")
        print()
    print(markdown_table(["what", "images/s", "MP/s"], rows))


# --------------------------------------------------------------------------------------------
# size scaling
# --------------------------------------------------------------------------------------------


def size_child(args: argparse.Namespace, path: Path, reps: int, tmp: Path) -> dict[str, Any]:
    colorizer = _colorizer(args)
    out = tmp / "sizes_out"
    out.mkdir(exist_ok=True)
    runs = []
    for _ in range(1 + reps):  # the first is the warm-up (new shapes create new oneDNN primitives)
        runs.append(run_pipeline(colorizer, [path], out, 1))
    runs = runs[1:]
    med = {s: statistics.median(r[s] for r in runs) for s in STAGES}
    med["total"] = statistics.median(sum(r.values()) for r in runs)
    prep = colorizer.prepare(path)
    med["work_shape"] = tuple(prep.l_work.shape[-2:])
    return med


def section_sizes(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from tqdm import tqdm

    rows = []
    folder = tmp / "sizes_in"
    folder.mkdir(exist_ok=True)
    for spec in tqdm(args.sizes, desc="sizes", unit="size", file=sys.stderr):
        w, h = (int(v) for v in spec.lower().split("x"))
        path = folder / f"gray_{w}x{h}.jpg"
        synthetic_photo(w, h, seed=w + h, gray=True).save(path, quality=95)
        mp_ = w * h / 1e6
        reps = args.reps if mp_ <= 1.1 else max(1, args.reps // 3)
        with LoadWindow() as lw:
            res, rss = run_isolated(size_child, args, path, reps, tmp)
        res.update(w=w, h=h, mp=mp_, reps=reps, load=str(lw), rss_mib=rss, bytes=path.stat().st_size)
        rows.append(res)
    return rows


def print_sizes(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"## Cost vs image size (grayscale JPEG q95 in, JPEG out, working size fixed; {args.threads} threads)")
    print()
    out = []
    for r in rows:
        full = r["total"] - r["network"]
        out.append([
            f"{r['w']}x{r['h']}", f"{r['mp']:.2f}", "x".join(map(str, r["work_shape"])), r["reps"],
            *(fmt(r[s] * 1e3, 0) for s in STAGES), fmt(r["total"] * 1e3, 0),
            fmt(full / r["mp"] * 1e3, 0), fmt(r["total"] / r["mp"] * 1e3, 0), fmt(r["rss_mib"], 0), r["load"],
        ])
    headers = ["image", "MP", "network input", "reps", *(f"{s} ms" for s in STAGES), "total ms",
               "ms/MP without network", "ms/MP total", "peak RSS growth (MiB)", "load 1-min"]
    print(markdown_table(headers, out, "lrlr" + "r" * 10))


# --------------------------------------------------------------------------------------------
# default model on one 512x512 photo: torch vs ONNX Runtime
# --------------------------------------------------------------------------------------------


def photo_512(tmp: Path, folder: Path | None) -> tuple[Path, str]:
    from colorization import image_io

    if folder is not None and folder.is_dir():
        files = [f for f, _ in image_io.find_images([folder])]
        if files:
            img = image_io.load_image(files[0]).resize((512, 512), Image.Resampling.LANCZOS)
            p = tmp / "photo512.jpg"
            img.save(p, quality=95)
            return p, f"{files[0].name} resized to 512x512 (colour JPEG q95)"
    p = tmp / "photo512.jpg"
    synthetic_photo(512, 512, seed=7, gray=False).save(p, quality=95)
    return p, "synthetic 512x512 colour JPEG q95"


def onnx_child(
    args: argparse.Namespace, photo: Path, onnx_path: Path | None, threads: int, reps: int
) -> dict[str, Any]:
    from common import time_call

    from colorization import image_io

    colorizer = _colorizer(args, "onnx" if onnx_path else "torch", onnx_path, threads)
    image = image_io.load_image(photo)
    prep = colorizer.prepare(image)
    batch = prep.l_work[None]
    net = time_call(lambda: colorizer.backend(batch), warmup=1, reps=reps, device=colorizer.device)
    call = time_call(lambda: colorizer(image), warmup=1, reps=reps, device=colorizer.device)
    out = Path(tempfile.mkdtemp(dir=photo.parent))

    def file_to_file() -> None:
        loaded = image_io.open_image(photo)
        image_io.save_image(colorizer(loaded.image), out / "out.jpg", overwrite=True, exif=loaded.exif)

    f2f = time_call(file_to_file, warmup=1, reps=reps, device=colorizer.device)
    return {"network": net.median, "network_first": net.first, "call": call.median, "file": f2f.median,
            "work_shape": tuple(batch.shape[-2:])}


def section_onnx(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    photo, what = photo_512(tmp, args.folder)
    onnx_path = tmp / "default.onnx"
    export_error = None
    try:
        run_isolated(_export_default, args.model, onnx_path)
    except Exception as exc:  # noqa: BLE001 - the torch rows are still worth printing
        export_error = str(exc).strip().splitlines()[-1]
        onnx_path = None
    rows = []
    threads_list = sorted({1, args.threads})
    for backend in ("torch", "onnx"):
        for threads in threads_list:
            if backend == "onnx" and onnx_path is None:
                continue
            with LoadWindow() as lw:
                res, rss = run_isolated(onnx_child, args, photo, onnx_path if backend == "onnx" else None,
                                        threads, args.reps)
            res.update(backend=backend, threads=threads, load=str(lw), rss_mib=rss)
            rows.append(res)
    device = args.device or ("cuda" if _cuda_available() else "cpu")
    return {"photo": what, "rows": rows, "export_error": export_error, "device": device}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _export_default(model: str | None, out: Path) -> None:
    from colorization.inference import checkpoint
    from colorization.inference.onnx_export import export_onnx

    export_onnx(checkpoint.load_exported(checkpoint.resolve_model_dir(model), device="cpu"), out)


def print_onnx(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"## Default model on one 512x512 photo ({res['photo']}; torch on {res['device']}, ONNX Runtime on cpu)")
    print()
    if res["export_error"]:
        print(f"ONNX export failed: {res['export_error']}")
        print()
    out = []
    for r in res["rows"]:
        out.append([r["backend"], r["threads"], "x".join(map(str, r["work_shape"])), fmt(r["network"] * 1e3, 0),
                    fmt(r["network_first"] * 1e3, 0), fmt(r["call"] * 1e3, 0), fmt(r["file"] * 1e3, 0),
                    fmt(r["rss_mib"], 0), r["load"]])
    headers = ["backend", "threads", "network input", "network ms", "first network call ms",
               "colorizer(image) ms (in memory)", "file to file ms", "peak RSS growth (MiB)", "load 1-min"]
    print(markdown_table(headers, out, "lrlrrrrrr"))


# --------------------------------------------------------------------------------------------
# colorize-many with 1 and 2 processes
# --------------------------------------------------------------------------------------------


def section_many(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    src = tmp / "many_in"
    write_synthetic(src, args.many_images, args.many_size, args.many_size, gray=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows = []
    for procs in args.many_procs:
        out = tmp / f"many_out_{procs}"
        threads = max(1, cores // procs)
        common_args = ["-m", "colorization.cli", "colorize-many", "--input", str(src), "-o", str(out), "--force",
                       "--workers", str(args.many_workers), "--batch-size", str(args.batch_size)]
        if args.device:
            common_args += ["--device", args.device]
        if procs == 1:
            cmd = [sys.executable, *common_args]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
                   *common_args]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        with LoadWindow() as lw:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t0
        summary_file = out / ".colorize-many" / "summary.json"
        if proc.returncode != 0 or not summary_file.is_file():
            print(proc.stderr[-3000:], file=sys.stderr)
            rows.append({"procs": procs, "threads": threads, "failed": True, "load": str(lw), "wall": wall})
            continue
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        rows.append({"procs": procs, "threads": threads, "wall": wall, "work": summary["seconds"],
                     "done": summary["done"], "failed_images": summary["failed"],
                     "per_rank": summary["per_rank"], "load": str(lw)})
    return {"images": args.many_images, "size": args.many_size, "rows": rows, "cores": cores}


def print_many(res: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"## colorize-many scaling ({res['images']} synthetic {res['size']}x{res['size']} grayscale JPEGs, "
          f"{res['cores']} cores, {args.many_workers} decode worker(s) per process)")
    print()
    out = []
    base = None
    for r in res["rows"]:
        if r.get("failed"):
            out.append([r["procs"], r["threads"], "failed", "-", "-", "-", "-", r["load"]])
            continue
        rate = r["done"] / r["work"]
        base = base or rate
        ranks = ", ".join(f"{p['done']}" for p in r["per_rank"])
        out.append([r["procs"], r["threads"], fmt(r["wall"], 1), fmt(r["work"], 1), fmt(rate, 2),
                    fmt(r["done"] / r["wall"], 2), f"{rate / base:.2f}x", ranks, r["load"]])
    headers = ["processes", "threads each", "wall s (incl. start-up)", "work s (slowest rank)", "images/s (work)",
               "images/s (wall)", "speed-up", "images per rank", "load 1-min"]
    out = [row if len(row) == len(headers) else row + ["-"] for row in out]
    print(markdown_table(headers, out, "rrrrrrrlr"))


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["folder", "sizes", "onnx", "many"],
                        choices=["folder", "sizes", "onnx", "many"])
    parser.add_argument("--model", default=None, help="exported model folder (default: the shipped model)")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=4, help="images per network call (the CLI's default)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (a third of it above 1 MP)")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER if DEFAULT_FOLDER.is_dir() else None,
                        help="input folder for the folder section (read only)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images of --folder")
    parser.add_argument("--folder-images", type=int, default=24, help="synthetic images when there is no --folder")
    parser.add_argument("--no-cli", dest="cli", action="store_false", help="skip timing the CLI on the folder")
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1024x1024", "2048x2048", "4000x3000"])
    parser.add_argument("--many-images", type=int, default=48)
    parser.add_argument("--many-size", type=int, default=512)
    parser.add_argument("--many-procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--many-workers", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument(
        "--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp folder)"
    )
    add_omp_arg(parser)
    args = parser.parse_args()

    for line in machine_lines(machine_info()):
        print(line)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench_colorize_"))
    tmp.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    try:
        if "folder" in args.sections:
            results["folder"] = section_folder(args, tmp)
            print_folder(results["folder"], args)
        if "sizes" in args.sections:
            results["sizes"] = section_sizes(args, tmp)
            print_sizes(results["sizes"], args)
        if "onnx" in args.sections:
            results["onnx"] = section_onnx(args, tmp)
            print_onnx(results["onnx"], args)
        if "many" in args.sections:
            results["many"] = section_many(args, tmp)
            print_many(results["many"], args)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
