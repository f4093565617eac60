#!/usr/bin/env python
"""Colorization from a reference photo (issue #32): accuracy against automatic colorization and
against gray, for three kinds of reference, on photos and on synthetic clips; and its speed.

    python benchmarks/bench_reference.py --data /work/shared/data/val --out docs/results/reference
    python benchmarks/bench_reference.py --data /work/shared/data/val --limit 150 --sections photos \\
        --variant default --variant m192:match_size=192            # compare matching settings

Sections (``--sections``, all by default):

``photos``
    Every photo of ``--data`` (``--limit``: a seeded subset) as ``colorization evaluate`` prepares it
    (short side ``--size``, centre square) is the *target*; it is colorized from its L alone
    (automatic, the shipped default), and from its L plus a reference of each kind:

    * ``related``: another crop of the same colour photo (the stored file, not the resized one),
      overlapping the target by 40-60 % of the target's area, rescaled by 0.7-1.4 and mirrored
      with probability 1/2;
    * ``similar``: a photo of the same ImageNet class from ``--train`` (class = the WordNet id that
      starts the file names of ``val``, and of the train groups imagenette, imagewoof,
      tiny_imagenet, mini_imagenet and imagenet_det); among that class's photos of the largest
      stored size, one drawn at random; targets whose class has no train photo are left out of
      this kind (only references are taken from ``train``, nothing is trained);
    * ``unrelated``: another photo of ``--data``, drawn at random.

    Every draw is seeded by ``(--seed, photo index)``, so variants see the same references.
    Printed per variant and kind: mean PSNR and CIEDE2000 of the reference result, the paired
    differences against automatic and against gray with 95 % intervals (normal approximation over
    photos), colourfulness, and the share of targets the reference was used for (it fitted).
``video``
    ``--clips`` synthetic clips (:mod:`colorization.video.synthetic`, its kinds taken in turn;
    ``--frames`` frames of ``--clip-size``) made from photos of ``--data``, colorized with the
    stabiliser, without a reference and with one: ``frame0`` (the clip's first frame in colour; a
    ``cut`` clip gets its second shot's first frame as the reference of that shot), and ``crop``
    (another crop of the source photo as above, for the whole clip). Also ``--hint-points`` colour
    hints on frame 0 (each the ground truth's mean colour of a 3x3 square at a seeded position, as
    ``benchmarks/eval_hints.py`` draws them) with the hinted first frame serving as its shot's
    reference (``hints0+ref``, ``hinted_reference=True``) and without (``hints0``, the default). Per
    clip the mean per-frame PSNR and CIEDE2000; paired differences over clips as above.
``speed``
    Matching plus colorizing a ``--speed-size`` square photo against a reference of the same size
    on ``--threads`` threads, by step (median of ``--repeats``), against colorizing it alone.
``figure``
    ``--figure FILE``: rows target | reference | automatic | from the reference for the
    ``--figure-photos`` val files (related references), a small PNG.

``--json FILE`` keeps the per-photo figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict, fields, replace
from pathlib import Path

from common import apply_omp_policy, load_average, machine_lines, markdown_table  # noqa: E402  (before torch)

apply_omp_policy()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402

from colorization import Colorizer, color, image_io  # noqa: E402
from colorization.evaluation import metrics as M  # noqa: E402
from colorization.evaluation.evaluate import list_group_images, load_ground_truth  # noqa: E402
from colorization.inference.hints import Hint  # noqa: E402
from colorization.inference.reference import ReferenceConfig  # noqa: E402

KINDS = ("related", "similar", "unrelated")
WNID = re.compile(r"^(n\d{8})_")


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


def target_box(width: int, height: int, size: int) -> tuple[float, float, float, float]:
    """The target square of ``load_ground_truth(path, size)`` in the stored photo's pixels (x, y, w, h)."""
    s = size / min(width, height)
    nw, nh = max(size, round(width * s)), max(size, round(height * s))
    return (nw - size) // 2 / s, (nh - size) // 2 / s, size / s, size / s


def related_reference(photo: Image.Image, size: int, rng: np.random.Generator) -> tuple[Image.Image, float]:
    """Another crop of ``photo`` overlapping the target square by 40-60 % of its area (the draw
    closest to half when none of 2,000 does), rescaled by 0.7-1.4 relative to the target's scale,
    mirrored with probability 1/2. Returns (reference, overlap share)."""
    W, H = photo.size
    tx, ty, tw, th = target_box(W, H, size)
    best = None
    for _ in range(2000):
        rw, rh = rng.uniform(0.45, 1.0) * W, rng.uniform(0.45, 1.0) * H
        rx, ry = rng.uniform(0, W - rw), rng.uniform(0, H - rh)
        ox = max(0.0, min(tx + tw, rx + rw) - max(tx, rx))
        oy = max(0.0, min(ty + th, ry + rh) - max(ty, ry))
        share = ox * oy / (tw * th)
        if best is None or abs(share - 0.5) < abs(best[0] - 0.5):
            best = (share, rx, ry, rw, rh)
        if 0.4 <= share <= 0.6:
            break
    share, rx, ry, rw, rh = best
    crop = photo.crop((round(rx), round(ry), round(rx + rw), round(ry + rh)))
    scale = rng.uniform(0.7, 1.4) * size / min(W, H)
    crop = crop.resize((max(8, round(crop.width * scale)), max(8, round(crop.height * scale))),
                       Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop, share


def train_by_class(train: Path, manifest: Path | None) -> dict[str, list[tuple[int, Path]]]:
    """WordNet id -> [(stored short side, path)] of the train photos whose file name starts with one
    (from ``manifest.csv`` when given, else by walking ``train``)."""
    out: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    if manifest is not None and manifest.is_file():
        root = manifest.parent
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                m = WNID.match(Path(row["path"]).name)
                if row["split"] == "train" and m:
                    out[m.group(1)].append((min(int(row["w"]), int(row["h"])), root / row["path"]))
        return out
    for path, _ in image_io.find_images([train], recursive=True):
        m = WNID.match(Path(path).name)
        if m:
            with Image.open(path) as im:
                out[m.group(1)].append((min(im.size), Path(path)))
    return out


def draw_references(files: list[Path], index: int, size: int, classes: dict, seed: int) -> dict[str, Image.Image]:
    """The three references of target ``files[index]`` (module docs), seeded by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    photo = image_io.load_image(files[index])
    refs = {"related": related_reference(photo, size, rng)[0]}
    m = WNID.match(files[index].name)
    candidates = classes.get(m.group(1), []) if m else []
    if candidates:
        top = max(c[0] for c in candidates)
        largest = sorted(p for s, p in candidates if s == top)
        refs["similar"] = image_io.load_image(largest[int(rng.integers(len(largest)))])
    other = (index + 1 + int(rng.integers(len(files) - 1))) % len(files)
    refs["unrelated"] = image_io.load_image(files[other])
    return refs


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _t(img: Image.Image | np.ndarray) -> torch.Tensor:
    if isinstance(img, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
    return image_io.pil_to_tensor(img.convert("RGB"))[None]


def scores(out, gt) -> tuple[float, float, float]:
    """PSNR (dB), mean CIEDE2000 and colourfulness of ``out`` against ``gt`` (8-bit RGB)."""
    a, b = _t(out), _t(gt)
    de = M.ciede2000(color.rgb_to_lab(a), color.rgb_to_lab(b)).mean()
    return float(M.psnr(a, b)[0]), float(de), float(color.colorfulness(a.double())[0])


def ci95(x) -> float:
    """Half-width of the normal 95 % interval of the mean of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    return 1.96 * float(np.std(x, ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else float("nan")


def pm(x, digits: int = 2) -> str:
    return f"{np.mean(x):+.{digits}f} ± {ci95(x):.{digits}f}"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def parse_variant(text: str) -> tuple[str, ReferenceConfig, float]:
    """``NAME[:key=value,...]`` -> (name, ReferenceConfig with those fields, strength); ``strength``
    is a key too."""
    name, _, spec = text.partition(":")
    known = {f.name: f.type for f in fields(ReferenceConfig)}
    config, strength, changes = ReferenceConfig(), 1.0, {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if key == "strength":
            strength = float(value)
        elif key == "stage_weights":
            changes[key] = tuple(float(v) for v in value.split("/"))
        elif key in known:
            default = getattr(config, key)
            changes[key] = type(default)(value) if not isinstance(default, bool) else value == "true"
        else:
            raise SystemExit(f"--variant {text}: unknown key {key!r} (ReferenceConfig fields, strength)")
    return name, replace(config, **changes), strength


def photos(args, colorizer: Colorizer, variants) -> dict:
    files = list_group_images(args.data, args.limit, args.seed)
    every = list_group_images(args.data)  # unrelated references come from all of --data
    classes = train_by_class(Path(args.train), Path(args.manifest) if args.manifest else None)
    rows: list[dict] = []
    for path in tqdm(files, desc="photos", unit="photo", file=sys.stderr):
        index = every.index(path)
        gt = load_ground_truth(path, args.size)
        target = gt.convert("L")
        refs = draw_references(every, index, args.size, classes, args.seed)
        row: dict = {"photo": path.name, "auto": scores(colorizer(target), gt),
                     "gray": scores(target.convert("RGB"), gt), "truth_cf": scores(gt, gt)[2]}
        for name, config, strength in variants:
            colorizer.reference_config = config
            for kind, ref in refs.items():
                encoded = colorizer.encode_reference(ref)
                prep = colorizer.prepare(target)
                match = colorizer.add_reference(prep, encoded, strength)
                (ab,) = colorizer.predict([prep], 1)
                out = colorizer.finish(prep, ab)
                row[f"{name}/{kind}"] = (*scores(out, gt), float(match.share), bool(match.fits))
        rows.append(row)
    table = []
    for name, _, _ in variants:
        for kind in KINDS:
            got = [r for r in rows if f"{name}/{kind}" in r]
            if not got:
                continue
            ref = np.array([r[f"{name}/{kind}"][:4] for r in got])
            auto = np.array([r["auto"] for r in got])
            gray = np.array([r["gray"] for r in got])
            used = np.mean([r[f"{name}/{kind}"][4] for r in got])
            table.append([name, kind, len(got), f"{ref[:, 0].mean():.2f}", pm(ref[:, 0] - auto[:, 0]),
                          pm(ref[:, 0] - gray[:, 0]), f"{ref[:, 1].mean():.2f}", pm(ref[:, 1] - auto[:, 1]),
                          pm(ref[:, 1] - gray[:, 1]), f"{ref[:, 2].mean():.1f}", f"{100 * used:.0f} %"])
    auto = np.array([r["auto"] for r in rows])
    gray = np.array([r["gray"] for r in rows])
    print(f"\n{len(rows)} photos of {args.data} at {args.size}x{args.size}; automatic: PSNR {auto[:, 0].mean():.2f} "
          f"dB, CIEDE2000 {auto[:, 1].mean():.2f}, colourfulness {auto[:, 2].mean():.1f}; gray: PSNR "
          f"{gray[:, 0].mean():.2f}, CIEDE2000 {gray[:, 1].mean():.2f}; ground truth colourfulness "
          f"{np.mean([r['truth_cf'] for r in rows]):.1f}\n")
    print(markdown_table(["variant", "reference", "photos", "PSNR", "Δ PSNR vs automatic", "Δ PSNR vs gray",
                          "CIEDE2000", "Δ CIEDE vs automatic", "Δ CIEDE vs gray", "colourfulness", "used"], table))
    return {"rows": rows, "variants": [[n, asdict(c), s] for n, c, s in variants]}


def video(args, colorizer: Colorizer, variants) -> dict:
    from colorization.evaluation.video_quality import frame_psnr
    from colorization.video import colorize_frames
    from colorization.video.synthetic import CLIP_KINDS, make_clip

    files = list_group_images(args.data, args.clips * 2, args.seed + 1)
    rows = []
    for k in tqdm(range(args.clips), desc="clips", unit="clip", file=sys.stderr):
        kind = CLIP_KINDS[k % len(CLIP_KINDS)]
        a, b = (np.asarray(image_io.load_image(f)) for f in files[2 * k : 2 * k + 2])
        clip = make_clip(kind, a, b, frames=args.frames, size=tuple(args.clip_size))
        gray = clip.gray()
        truth = clip.frames

        def clip_scores(out, truth=truth) -> tuple[float, float]:
            de = [scores(o, t)[1] for o, t in zip(out, truth)]
            return float(frame_psnr(out, truth).mean()), float(np.mean(de))

        row = {"kind": kind, "photos": [f.name for f in files[2 * k : 2 * k + 2]],
               "auto": clip_scores(list(colorize_frames(colorizer, gray))),
               "gray": clip_scores([np.repeat(g[..., None], 3, 2) for g in gray])}
        rng = np.random.default_rng([args.seed, 10_000 + k])
        frame0 = {0: truth[0], **{t: truth[t] for t in clip.cuts}}
        crop = related_reference(Image.fromarray(a), min(args.clip_size), rng)[0]
        h, w = truth[0].shape[:2]
        points = [Hint(int(x), int(y), tuple(int(v) for v in truth[0][max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
                                           .reshape(-1, 3).mean(0).round()))
                  for x, y in zip(rng.integers(0, w, args.hint_points), rng.integers(0, h, args.hint_points))]
        for name, config, strength in variants:
            colorizer.reference_config = config
            for ref_kind, ref in (("frame0", frame0), ("crop", crop)):
                t0 = time.perf_counter()
                out = list(colorize_frames(colorizer, gray, reference=ref, reference_strength=strength))
                row[f"{name}/{ref_kind}"] = (*clip_scores(out), time.perf_counter() - t0)
            for ref_kind, adopt in (("hints0", False), ("hints0+ref", True)):
                out = list(colorize_frames(colorizer, gray, hints={0: points}, hinted_reference=adopt,
                                           reference_strength=strength))
                row[f"{name}/{ref_kind}"] = clip_scores(out)
        rows.append(row)
    table = []
    for name, _, _ in variants:
        for ref_kind in ("frame0", "crop", "hints0", "hints0+ref"):
            for kind in (*CLIP_KINDS, "all"):
                got = [r for r in rows if kind in ("all", r["kind"])]
                ref = np.array([r[f"{name}/{ref_kind}"][:2] for r in got])
                auto = np.array([r["auto"] for r in got])
                gray = np.array([r["gray"] for r in got])
                table.append([name, ref_kind, kind, len(got), f"{auto[:, 0].mean():.2f}", f"{ref[:, 0].mean():.2f}",
                              pm(ref[:, 0] - auto[:, 0]), pm(ref[:, 0] - gray[:, 0]), f"{ref[:, 1].mean():.2f}",
                              pm(ref[:, 1] - auto[:, 1])])
    print(f"\n{args.clips} synthetic clips of {args.frames} frames at {args.clip_size[0]}x{args.clip_size[1]} from "
          f"{args.data} photos, stabilised; per clip the mean over frames\n")
    print(markdown_table(["variant", "reference", "clips", "n", "PSNR automatic", "PSNR reference",
                          "Δ PSNR vs automatic", "Δ PSNR vs gray", "CIEDE2000", "Δ CIEDE vs automatic"], table))
    return {"rows": rows}


def speed(args, colorizer: Colorizer) -> dict:
    torch.set_num_threads(args.threads)
    size = args.speed_size
    files = list_group_images(args.data, 2, args.seed)
    photo = image_io.load_image(files[0]).resize((size, size), Image.Resampling.BICUBIC)
    target = image_io.encode_image(photo.convert("L").convert("RGB"), "jpeg")  # both read from JPEG bytes
    reference = image_io.encode_image(photo, "jpeg")
    steps: dict[str, list[float]] = defaultdict(list)
    for rep in range(args.repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        colorizer(target)
        t1 = time.perf_counter()
        encoded = colorizer.encode_reference(reference)
        t2 = time.perf_counter()
        prep = colorizer.prepare(target)
        t3 = time.perf_counter()
        match = colorizer.add_reference(prep, encoded)
        t4 = time.perf_counter()
        (ab,) = colorizer.predict([prep], 1)
        colorizer.finish(prep, ab)
        t5 = time.perf_counter()
        if rep:
            for key, value in (("automatic (colorize alone)", t1 - t0), ("read + encode the reference", t2 - t1),
                               ("read + prepare the photo", t3 - t2), ("match + hint map", t4 - t3),
                               ("network + recombine", t5 - t4), ("total with the reference", t5 - t1)):
                steps[key].append(value)
    rows = [[k, f"{statistics.median(v) * 1000:.0f} ms", f"{min(v) * 1000:.0f} ms"] for k, v in steps.items()]
    print(f"\n{size}x{size} JPEG photo against a {size}x{size} JPEG reference (the same photo in colour, fits: "
          f"{match.fits}), {torch.get_num_threads()} threads, median and best of {args.repeats}; "
          f"load {load_average()[0]:.1f}\n")
    print(markdown_table(["step", "median", "best"], rows))
    return {k: v for k, v in steps.items()}


def figure(args, colorizer: Colorizer, path: Path) -> None:
    """Rows target (gray) | reference | automatic | from the reference, 128 px panels, a 256-colour
    PNG. A row is ``PHOTO`` (its related reference, drawn as in ``photos``) or ``PHOTO:OTHER``
    (another photo of ``--data`` as the reference)."""
    every = list_group_images(args.data)
    names = [p.name for p in every]
    side, pad, top = 128, 4, 16
    rows = [r.strip() for r in args.figure_photos.split(",") if r.strip()]
    sheet = Image.new("RGB", (4 * side + 5 * pad, len(rows) * (side + pad) + top + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(("target (gray input)", "reference", "automatic", "from the reference")):
        draw.text((pad + c * (side + pad), 2), label, fill="black")
    for r, row in enumerate(rows):
        name, _, other = row.partition(":")
        index = names.index(name)
        gt = load_ground_truth(every[index], args.size)
        target = gt.convert("L")
        if other:
            ref = image_io.load_image(every[names.index(other)])
        else:
            ref = related_reference(image_io.load_image(every[index]), args.size,
                                    np.random.default_rng([args.seed, index]))[0]
        shown = ref.copy()
        shown.thumbnail((side, side))
        panels = [target.convert("RGB"), shown, colorizer(target), colorizer(target, reference=ref)]
        for c, im in enumerate(panels):
            im = im if im is shown else im.resize((side, side), Image.Resampling.BICUBIC)
            x = pad + c * (side + pad) + (side - im.width) // 2
            sheet.paste(im, (x, top + r * (side + pad) + (side - im.height) // 2))
    with image_io.atomic_path(path) as tmp:
        sheet.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(tmp, format="PNG", optimize=True)
    print(f"figure: {path} ({path.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data/val")
    p.add_argument("--train", default="/work/shared/data/train")
    p.add_argument("--manifest", default="/work/shared/data/manifest.csv",
                   help="manifest.csv of the data (read for the train photos' classes and sizes); '' walks --train")
    p.add_argument("--sections", nargs="*", default=["photos", "video", "speed"], choices=["photos", "video", "speed"],
                   help="the sections to run (none: only --figure)")
    p.add_argument("--model", default=None, help="exported model folder (default: the shipped model)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="a seeded subset of this many photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", action="append", default=None,
                   help="NAME[:key=value,...] ReferenceConfig fields and strength (repeatable; default: default)")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--clip-size", type=int, nargs=2, default=[256, 192], metavar=("W", "H"))
    p.add_argument("--hint-points", type=int, default=5, help="colour hints on frame 0 (video section)")
    p.add_argument("--speed-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the speed section")
    p.add_argument("--figure", type=Path, default=None, help="write the figure PNG here")
    p.add_argument("--figure-photos", help="rows of the figure: PHOTO (its related reference) or PHOTO:OTHER",
                   default="n01818515_macaw.jpg,n04487081_trolleybus.jpg,n02007558_flamingo.jpg,"
                           "n01820546_lorikeet.jpg:n04146614_school_bus.jpg")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--omp-wait-policy", default="passive")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # the accuracy sections: one thread (a shared machine); speed sets its own
    print("\n".join(machine_lines()))
    variants = [parse_variant(v) for v in (args.variant or ["default"])]
    colorizer = Colorizer.from_pretrained(args.model, device="cpu")
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.figure is not None:
        figure(args, colorizer, args.figure)
    if "photos" in args.sections:
        results["photos"] = photos(args, colorizer, variants)
    if "video" in args.sections:
        results["video"] = video(args, colorizer, variants)
    if "speed" in args.sections:
        colorizer.reference_config = variants[0][1]
        results["speed"] = speed(args, colorizer)
    if args.json is not None:
        image_io.atomic_write_text(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
