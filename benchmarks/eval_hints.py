"""Colorization with N colour hints sampled from the ground truth, for N = 0, 1, 5, ...

    python benchmarks/eval_hints.py --data ../shared/data/val --model default --out docs/results/hints

Each photo is prepared as ``colorization evaluate`` prepares it (short side -> ``--size``, centre
crop). For every N the same seeded generator places N points uniformly on each photo (the points
for N are the first N of one fixed list, so a larger N adds points); a point's colour is the
ground-truth mean sRGB over a ``(2 * radius + 1)`` square around it, passed as a
:class:`colorization.inference.hints.Hint` in the photo's own pixel coordinates, exactly as a user's hint
would be. PSNR, SSIM, AuC and colourfulness come from :class:`colorization.evaluation.metrics.MetricSuite`.
Writes ``hints.json`` and ``hints.md`` to ``--out``.

``--figure PHOTO --point X,Y`` also writes ``hints_figure.jpg``: the photo in gray, colorized with no
hints, with one red hint and with one blue hint at ``(X, Y)`` (pixel coordinates of PHOTO after the
same resize and crop).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402

from colorization import image_io  # noqa: E402
from colorization.evaluation import metrics as M  # noqa: E402
from colorization.evaluation.evaluate import list_group_images, load_ground_truth, resolve_model  # noqa: E402
from colorization.inference.hints import Hint  # noqa: E402


def sample_points(gt: Image.Image, n: int, rng: np.random.Generator, radius: int) -> list[Hint]:
    """``n`` hints at uniform positions of ``gt``, coloured with the ground truth's mean around them."""
    arr = np.asarray(gt, dtype=np.float64)
    h, w = arr.shape[:2]
    xs = rng.integers(0, w, size=n)
    ys = rng.integers(0, h, size=n)
    out = []
    for x, y in zip(xs.tolist(), ys.tolist()):
        patch = arr[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        rgb = tuple(int(round(c)) for c in patch.reshape(-1, 3).mean(axis=0))
        out.append(Hint(x, y, rgb))
    return out


def evaluate_counts(colorizer, gts, counts, seed: int, radius: int, batch_size: int) -> list[dict]:
    rows = []
    # one fixed list of max(counts) points per photo; N uses its first N
    rngs = [np.random.default_rng([seed, i]) for i in range(len(gts))]
    points = [sample_points(g, max(counts), r, radius) for g, r in zip(gts, rngs)]
    for n in counts:
        suite = M.MetricSuite(device=torch.device("cpu"), use_st_lpips=False, use_fid=False, use_ciede2000=False)
        for s in tqdm(range(0, len(gts), batch_size), desc=f"N={n}", unit="batch", leave=False):
            chunk = gts[s : s + batch_size]
            hints = [p[:n] or None for p in points[s : s + batch_size]]
            outs = colorizer.colorize_batch(chunk, batch_size=batch_size, hints=hints)
            suite.update(torch.stack([image_io.pil_to_tensor(o) for o in outs]),
                         torch.stack([image_io.pil_to_tensor(g) for g in chunk]))
        res = suite.compute()
        row = {"hints": n, **{k: float(res[k]) for k in ("psnr", "ssim", "auc", "cf_pred", "cf_gt")}}
        tqdm.write(f"N={n:>3}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}  AuC {row['auc']:.2f}  "
                   f"CF {row['cf_pred']:.1f} (GT {row['cf_gt']:.1f})")
        rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    base = rows[0]["psnr"] if rows and rows[0]["hints"] == 0 else None
    lines = [
        f"Hints sampled from the ground truth ({meta['images']} {meta['data']} photos at "
        f"{meta['size']}x{meta['size']}, model `{meta['model']}`, seed {meta['seed']}, each point the mean colour "
        f"of a {2 * meta['radius'] + 1}x{2 * meta['radius'] + 1} square).",
        "",
        "| hints N | PSNR (dB) ↑ | Δ vs N=0 | SSIM ↑ | AuC (%) ↑ | CF out | CF GT |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = "–" if base is None else f"{r['psnr'] - base:+.2f}"
        lines.append(f"| {r['hints']} | {r['psnr']:.2f} | {delta} | {r['ssim']:.4f} | {r['auc']:.2f} "
                     f"| {r['cf_pred']:.1f} | {r['cf_gt']:.1f} |")
    return "\n".join(lines) + "\n"


def figure(colorizer, photo: Path, point: tuple[int, int], size: int, out: Path) -> None:
    gt = load_ground_truth(photo, size)
    gray = gt.convert("L").convert("RGB")
    x, y = point
    panels = [("gray input", gray), ("no hints", colorizer(gt))]
    for label, colour in (("one red hint", "#d01818"), ("one blue hint", "#1840d0")):
        img = colorizer(gt, hints=[Hint(x, y, colour)]).copy()
        d = ImageDraw.Draw(img)
        d.ellipse((x - 5, y - 5, x + 5, y + 5), outline="white", width=2)
        d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        panels.append((label, img))
    pad, top = 6, 18
    sheet = Image.new("RGB", (len(panels) * (size + pad) + pad, size + top + pad), "white")
    d = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(panels):
        sheet.paste(img, (pad + i * (size + pad), top))
        d.text((pad + i * (size + pad), 3), label, fill="black")
    with image_io.atomic_path(out) as tmp:
        sheet.save(tmp, format="JPEG", quality=92)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="default", help="exported model folder or 'default'")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--counts", default="0,1,5,10,20,50")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--radius", type=int, default=1, help="half side of the square a point's colour is averaged over")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--figure", type=Path, default=None, help="photo for the red/blue hint figure")
    p.add_argument("--point", default=None, help="X,Y of the figure's hint")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.counts.split(",")]
    colorizer = resolve_model(args.model, torch.device("cpu"), None).colorizer
    if not colorizer.accepts_hints:
        p.error(f"{args.model}: this model does not take colour hints")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.figure is not None:
        if not args.point:
            p.error("--figure needs --point X,Y")
        x, y = (int(v) for v in args.point.split(","))
        figure(colorizer, args.figure, (x, y), args.size, args.out / "hints_figure.jpg")
        print(f"wrote {args.out / 'hints_figure.jpg'}")
    files = list_group_images(args.data, args.limit, args.seed)
    gts = [load_ground_truth(f, args.size) for f in tqdm(files, desc="loading photos", unit="img")]
    rows = evaluate_counts(colorizer, gts, counts, args.seed, args.radius, args.batch_size)
    meta = {"data": Path(args.data).name, "images": len(files), "size": args.size, "model": args.model,
            "seed": args.seed, "radius": args.radius}
    image_io.atomic_write_text(args.out / "hints.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    image_io.atomic_write_text(args.out / "hints.md", markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
