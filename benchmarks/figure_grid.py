"""A figure grid of strongly coloured photos: gray input, each model's output, ground truth.

    python benchmarks/figure_grid.py --data ../shared/data/val --out docs/results/grid.jpg \\
        --model old=path/to/old_model --model new=default --per-hue 2

Photos are picked from ``--data`` by the ground truth alone, before any model runs: for each of
red, green and blue, the ``--per-hue`` photos with the largest share of strongly saturated pixels
(Lab chroma > 40) of that hue family (red: hue -30..40 deg, green: 100..170, blue: 220..290), no
photo twice. ``--extra`` adds named files (e.g. a Kodak photo) as further rows.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402

from colorization import color, image_io  # noqa: E402
from colorization.evaluation.evaluate import list_group_images, load_ground_truth, resolve_model  # noqa: E402

HUES = {"red": (-30.0, 40.0), "green": (100.0, 170.0), "blue": (220.0, 290.0)}


def hue_shares(img: Image.Image) -> dict[str, float]:
    """Share of pixels with chroma > 40 in each hue family of :data:`HUES`."""
    lab = color.rgb_to_lab(image_io.pil_to_tensor(img)[None].float())[0]
    a, b = lab[1], lab[2]
    chroma = torch.sqrt(a * a + b * b)
    hue = torch.rad2deg(torch.atan2(b, a))  # -180..180
    strong = chroma > 40
    out = {}
    for name, (lo, hi) in HUES.items():
        inside = torch.remainder(hue - lo, 360.0) < (hi - lo)
        out[name] = float((strong & inside).float().mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", action="append", required=True, help="NAME=SPEC (exported folder, 'default')")
    p.add_argument("--per-hue", type=int, default=2)
    p.add_argument("--extra", action="append", default=[], type=Path, help="more photos, as extra rows")
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = list_group_images(args.data)
    scored = []
    for f in tqdm(files, desc="scoring hues", unit="img"):
        gt = load_ground_truth(f, args.size)
        scored.append((f, hue_shares(gt)))
    picked: list[tuple[str, Path]] = []
    for hue in HUES:
        ranked = sorted(scored, key=lambda fs: -fs[1][hue])
        n = 0
        for f, _ in ranked:
            if n >= args.per_hue:
                break
            if any(f == q for _, q in picked):
                continue
            picked.append((hue, f))
            n += 1
    picked += [("extra", f) for f in args.extra]
    models = []
    for spec in args.model:
        name, _, target = spec.partition("=")
        models.append((name, resolve_model(target or name, torch.device("cpu"), None).colorizer))
    cols = ["gray input", *[n for n, _ in models], "ground truth"]
    s, pad, top, left = args.size, 4, 18, 0
    sheet = Image.new("RGB", (len(cols) * (s + pad) + pad, len(picked) * (s + pad) + top), "white")
    d = ImageDraw.Draw(sheet)
    for j, c in enumerate(cols):
        d.text((pad + j * (s + pad) + 2, 3), c, fill="black")
    for i, (_hue, f) in enumerate(tqdm(picked, desc="colorizing", unit="photo")):
        gt = load_ground_truth(f, s)
        row = [gt.convert("L").convert("RGB"), *[col(gt) for _, col in models], gt]
        for j, im in enumerate(row):
            sheet.paste(im, (left + pad + j * (s + pad), top + i * (s + pad)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with image_io.atomic_path(args.out) as tmp:  # the format follows the suffix of --out
        sheet.save(tmp, format=Image.registered_extensions()[args.out.suffix.lower()], quality=90)
    print(f"wrote {args.out}: rows " + ", ".join(f"{h}:{f.name}" for h, f in picked))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
