#!/usr/bin/env python
"""Video colorization: temporal stability of the stabiliser against per-frame colorization, and
end-to-end speed.

Sections (``--sections``, both by default):

``stability``
    Synthetic clips with known colour and motion (:mod:`colorization.video.synthetic`: a pan, a
    slow pan, a zoom, a cut between two photos, an object moving over a background, and two kinds
    whose true colours change: the light dimming and warming during a slow pan, and three coloured
    objects crossing, one changing hue) made from the colour photos of ``--photos`` (default
    ``/work/shared/data/bench/kodak24`` and ``cbsd68``; use ``/work/shared/data/val/imagenet_sample``
    for choosing settings). Each clip is turned gray, encoded (H.264, CRF 18, the way a film would
    arrive), decoded with :class:`colorization.video.VideoReader` and colorized per frame and with
    each stabiliser setting (``--carry`` x ``--preset`` x ``--persistence``). Printed per clip
    kind: mean per-frame PSNR against the colour original, its change against per-frame
    colorization (mean over the clips with a paired 95 % interval, and the worst clip), chroma
    warp error (exact synthetic motion, :func:`colorization.evaluation.video_quality.warp_error`) and CDC
    (:func:`colorization.evaluation.video_quality.cdc`), with the ground truth's own figures as the floor.
    ``--strip FILE`` also writes a frame strip (gray input, per-frame, stabilised, original).
``speed``
    :func:`colorization.video.colorize_video` end to end (decode, colorize, stabilise, encode to
    H.264 MP4) on a ``--speed-frames`` long synthetic clip of each ``--speed-sizes``, with
    ``--threads`` torch threads; also decode + encode alone (the floor) and without the stabiliser.

Usage:
    python benchmarks/bench_video.py                                   # ~5 min on 2 busy cores
    python benchmarks/bench_video.py --sections stability --carry 0.6 0.75 0.85 0.92 \
        --photos /work/shared/data/val/imagenet_sample
    python benchmarks/bench_video.py --sections stability --clips 42 --persistence none 0.8  # before/after #31
    python benchmarks/bench_video.py --sections speed --speed-sizes 640x480 1920x1080 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from common import apply_omp_policy, load_average, machine_lines, markdown_table  # noqa: E402  (before torch)

apply_omp_policy()

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.evaluation.video_quality import cdc, frame_psnr, warp_error  # noqa: E402
from colorization.video import StabilizerConfig, VideoReader, colorize_frames, colorize_video  # noqa: E402
from colorization.video.synthetic import CLIP_KINDS, make_clip  # noqa: E402

DEFAULT_PHOTOS = ["/work/shared/data/bench/kodak24", "/work/shared/data/bench/cbsd68"]


def encode_gray(frames: list[np.ndarray], path: Path, rate: int = 25, crf: int = 18) -> None:
    """Write (H, W) uint8 frames as H.264 (yuv420p) MP4."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.height, s.width = frames[0].shape
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(crf), "preset": "veryfast"}
        for i, g in enumerate(frames):
            f = av.VideoFrame.from_ndarray(g, format="gray").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, rate)
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def photos(folders: list[str], count: int) -> list[np.ndarray]:
    files = sorted(p for f in folders for p in Path(f).iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
    if len(files) < count:
        raise SystemExit(f"need {count} photos in {folders}, found {len(files)}")
    pick = [files[round(i * (len(files) - 1) / max(1, count - 1))] for i in range(count)]
    return [np.asarray(Image.open(p).convert("RGB")) for p in pick]


def stability(args: argparse.Namespace, colorizer: Colorizer) -> None:
    per_kind = max(1, args.clips // len(CLIP_KINDS))
    imgs = photos(args.photos, per_kind * len(CLIP_KINDS) * 2)
    settings: list[tuple[str, object]] = [("per-frame", False)]
    settings += [(f"stabilised (carry {c:g}, {pr}, persistence {'off' if ps is None else f'{ps:g}'})",
                  StabilizerConfig(carry=c, preset=pr, persistence=ps))
                 for pr in args.preset for c in args.carry for ps in args.persistence]
    rows, by_kind = [], {}
    strip_data = None
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        for kind in CLIP_KINDS:
            for _ in range(per_kind):
                clip = make_clip(kind, imgs[k], imgs[k + 1], frames=args.frames, size=tuple(args.size))
                k += 2
                path = Path(tmp) / f"{kind}{k}.mp4"
                encode_gray(clip.gray(), path)
                with VideoReader(path) as r:
                    gray = [y for y, _ in r.frames()]
                truth = (frame_psnr(clip.frames, clip.frames), warp_error(clip.frames, clip.maps),
                         cdc(clip.frames, clip.cuts))
                by_kind.setdefault(kind, {}).setdefault("ground truth", []).append((float("nan"),) + truth[1:])
                outs = {}
                for name, stab in settings:
                    out = list(colorize_frames(colorizer, gray, stabilize=stab, batch_size=4))
                    outs[name] = out
                    m = (float(frame_psnr(out, clip.frames).mean()), warp_error(out, clip.maps), cdc(out, clip.cuts))
                    by_kind[kind].setdefault(name, []).append(m)
                if kind == args.strip_kind and strip_data is None:
                    strip_data = (gray, outs["per-frame"], outs[settings[-1][0]], clip.frames)
                print(f"  {kind} clip done", file=sys.stderr, flush=True)
    names = ["ground truth"] + [n for n, _ in settings]
    for kind, res in list(by_kind.items()) + [("all", _merge(by_kind))]:
        base = np.mean(res["per-frame"], axis=0)
        for name in names:
            m = np.mean(res[name], axis=0)
            ratio = "" if name in ("ground truth", "per-frame") else f"{m[1] / base[1]:.2f} / {m[2] / base[2]:.2f}"
            dpsnr = worst = ""
            if name not in ("ground truth", "per-frame"):
                d = np.array([v[0] - b[0] for v, b in zip(res[name], res["per-frame"])])  # paired per clip
                half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
                dpsnr, worst = f"{d.mean():+.3f} ± {half:.3f}", f"{d.min():+.2f}"
            rows.append([kind, name, len(res[name]), "–" if np.isnan(m[0]) else f"{m[0]:.2f}", dpsnr, worst,
                         f"{m[1]:.3f}", f"{m[2] * 1e3:.3f}", ratio])
    print(markdown_table(["clips", "method", "n", "PSNR dB", "Δ PSNR (95 % CI)", "worst clip Δ", "warp error (ab)",
                          "CDC x1e-3", "warp / CDC vs per-frame"], rows))
    if args.strip and strip_data is not None:
        write_strip(Path(args.strip), *strip_data)


def _merge(by_kind: dict) -> dict:
    out: dict = {}
    for res in by_kind.values():
        for name, vals in res.items():
            out.setdefault(name, []).extend(vals)
    return out


def write_strip(path: Path, gray, per_frame, stable, truth, picks: int = 4) -> None:
    """Rows: gray input, per-frame, stabilised, original; columns: ``picks`` frames."""
    idx = [round(i * (len(gray) - 1) / (picks - 1)) for i in range(picks)]
    rows = [np.concatenate([np.repeat(gray[i][..., None], 3, 2) for i in idx], 1)]
    rows += [np.concatenate([seq[i] for i in idx], 1) for seq in (per_frame, stable, truth)]
    img = Image.fromarray(np.concatenate(rows, 0))
    img.save(path, quality=80)
    print(f"strip: {path} ({path.stat().st_size / 1024:.0f} KiB): rows gray / per-frame / stabilised / original, "
          f"frames {idx}", file=sys.stderr)


def speed(args: argparse.Namespace, colorizer: Colorizer) -> None:
    rows = []
    base = photos(args.photos, 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.speed_sizes:
            w, h = (int(v) for v in text.lower().split("x"))
            clip = make_clip("pan", base, frames=args.speed_frames, size=(w, h))
            src = Path(tmp) / f"in_{w}x{h}.mp4"
            encode_gray(clip.gray(), src)
            del clip
            t0 = time.perf_counter()  # floor: decode + encode the same frames, no colorization
            with VideoReader(src) as r:
                from colorization.video.formats import video_format
                from colorization.video.io import open_writer

                with open_writer(Path(tmp) / "floor.mp4", r, video_format("mp4")) as wr:
                    for y, pts in r.frames(wr):
                        wr.write(np.repeat(y[..., None], 3, 2), pts)
            floor = args.speed_frames / (time.perf_counter() - t0)
            colorize_video(src, Path(tmp) / "warm.mp4", colorizer, stabilize=False, progress=False)  # warm-up
            for stab in (False, True):
                load0 = load_average()[0]
                res = colorize_video(src, Path(tmp) / "out.mp4", colorizer, stabilize=stab, progress=False)
                target = 10 if w * h <= 640 * 480 else 3
                rows.append([f"{w}x{h}", "stabilised" if stab else "per-frame", res.frames, f"{res.seconds:.2f}",
                             f"{res.fps:.2f}", f"{floor:.1f}", f">= {target}", f"{load0:.1f}-{load_average()[0]:.1f}"])
                print(f"  {w}x{h} stabilise={stab}: {res.fps:.2f} frames/s", file=sys.stderr, flush=True)
    print(markdown_table(["frame size", "mode", "frames", "seconds", "frames/s end to end",
                          "decode+encode alone, frames/s", "target", "load 1-min"], rows))


def _persistence(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=["stability", "speed"], choices=["stability", "speed"])
    p.add_argument("--photos", nargs="+", default=DEFAULT_PHOTOS)
    p.add_argument("--clips", type=int, default=len(CLIP_KINDS) * 2, help="clips in all (spread over the kinds)")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--size", type=int, nargs=2, default=[256, 192], metavar=("W", "H"))
    p.add_argument("--carry", type=float, nargs="+", default=[StabilizerConfig().carry])
    p.add_argument("--preset", nargs="+", default=[StabilizerConfig().preset], choices=["ultrafast", "fast", "medium"])
    p.add_argument("--persistence", nargs="+", type=_persistence, default=[StabilizerConfig().persistence],
                   help="StabilizerConfig.persistence values ('none': off, the blend before issue #31)")
    p.add_argument("--strip", default=None, help="write a frame strip image here (JPEG/PNG)")
    p.add_argument("--strip-kind", default="object", choices=CLIP_KINDS)
    p.add_argument("--speed-sizes", nargs="+", default=["640x480", "1920x1080"])
    p.add_argument("--speed-frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default=None, help="exported model folder (default: the shipped model)")
    p.add_argument("--omp-wait-policy", default="passive")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print("\n".join(machine_lines()))
    print(f"torch threads {torch.get_num_threads()}, cv2 threads {cv2.getNumThreads()}")
    colorizer = Colorizer.from_pretrained(args.model, device="cpu")
    if "stability" in args.sections:
        stability(args, colorizer)
    if "speed" in args.sections:
        speed(args, colorizer)


if __name__ == "__main__":
    main()
