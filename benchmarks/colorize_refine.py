"""Does the guided-filter ab upsampling (``Colorizer(refine=True)``) reduce colour bleeding?

Oracle experiment that isolates the upsampling step: for each real colour photo, the ground-truth
ab is downsampled to the working size (what a perfect network would predict there), then brought
back to full resolution either bilinearly (default) or with the fast guided filter guided by the
full-resolution L, and recombined with the original L exactly as the Colorizer does
(``colorization.inference.colorizer.recombine``). Reported: mean ab error (Lab units, Euclidean in the ab
plane) over all pixels and over colour-edge pixels (top 10 % of the ground-truth ab gradient, where
bleeding shows), and mean CIEDE2000. ``--blur S`` smears the oracle ab with a Gaussian of S
working-size pixels first, to emulate a network whose colours bleed across edges.

    python benchmarks/colorize_refine.py --folder ../shared/data/val --max-images 200 --factor 4
    python benchmarks/colorize_refine.py --folder ../shared/data/bench --factor 4 --factor 8

Use the validation set to choose settings; the bench set only to report them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import deltaE_ciede2000, rgb2lab
from tqdm import tqdm

from colorization import color, image_io
from colorization.inference.fullres import RefineConfig, recombine
from colorization.inference.inputs import prepare_image

SETTINGS: list[tuple[str, RefineConfig | None]] = [
    ("bilinear (default)", None),
    ("guided r=1 eps=1e-4", RefineConfig(1, 1e-4)),
    ("guided r=1 eps=1e-3", RefineConfig(1, 1e-3)),
    ("guided r=2 eps=1e-4", RefineConfig(2, 1e-4)),
    ("guided r=2 eps=1e-3", RefineConfig(2, 1e-3)),
    ("guided r=2 eps=1e-2", RefineConfig(2, 1e-2)),
    ("guided r=4 eps=1e-3", RefineConfig(4, 1e-3)),
    ("guided r=4 eps=1e-2", RefineConfig(4, 1e-2)),
]


def edge_mask(ab: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """Pixels whose ground-truth ab gradient magnitude is in the top (1 - quantile)."""
    gy = np.abs(np.diff(ab, axis=0, append=ab[-1:])).sum(-1)
    gx = np.abs(np.diff(ab, axis=1, append=ab[:, -1:])).sum(-1)
    g = gx + gy
    return g >= np.quantile(g, quantile)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C,h,w) with reflect padding (sigma in pixels; 0: unchanged)."""
    if sigma <= 0:
        return x
    r = max(1, int(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return y[0]


def evaluate(files: list[Path], factor: float, blur: float = 0.0) -> dict[str, list[tuple[float, float, float]]]:
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in SETTINGS}
    for path in tqdm(files, desc=f"factor {factor:g}", file=sys.stderr):
        rgb = np.asarray(image_io.load_image(path))
        h_full, w_full = rgb.shape[:2]
        size = max(8, round(min(h_full, w_full) / factor))
        prep = prepare_image(rgb, size=size, stride=1)
        t = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
        ab_gt = color.rgb_to_lab(t)[1:]
        ab_low = F.interpolate(ab_gt[None], size=prep.work_hw, mode="bilinear", antialias=True, align_corners=False)[0]
        ab_low = gaussian_blur(ab_low, blur)  # emulate a network whose colours bleed across edges
        lab_gt = rgb2lab(rgb / 255.0)
        mask = edge_mask(lab_gt[..., 1:])
        for name, cfg in SETTINGS:
            out = np.asarray(recombine(prep, color.normalize_ab(ab_low), 1.0, cfg, torch.device("cpu")))
            lab_out = rgb2lab(out / 255.0)
            err = np.linalg.norm(lab_out[..., 1:] - lab_gt[..., 1:], axis=-1)
            de = deltaE_ciede2000(lab_gt, lab_out)
            results[name].append((float(err.mean()), float(err[mask].mean()), float(de.mean())))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True, help="folder of colour photos (searched recursively)")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--factor", type=float, action="append", help="full size / working size (repeatable)")
    ap.add_argument("--blur", type=float, default=0.0,
                    help="Gaussian sigma (working-size px) applied to the oracle ab: simulated bleeding")
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = [f for f, _ in image_io.find_images([args.folder])]
    files = files[: args.max_images] if args.max_images else files
    for factor in args.factor or [4.0]:
        start = time.perf_counter()
        res = evaluate(files, factor, args.blur)
        print(f"\n{len(files)} photos from {args.folder}, upsampling factor {factor:g}, ab blur {args.blur:g} "
              f"({time.perf_counter() - start:.0f} s)")
        print("| setting | mean ab error | ab error at colour edges | CIEDE2000 | edge error vs bilinear |")
        print("|---|---|---|---|---|")
        base = np.array(res[SETTINGS[0][0]])
        for name, _ in SETTINGS:
            arr = np.array(res[name])
            rel = (arr[:, 1] - base[:, 1]).mean()
            print(f"| {name} | {arr[:, 0].mean():.3f} | {arr[:, 1].mean():.3f} | {arr[:, 2].mean():.3f} | {rel:+.3f} |")


if __name__ == "__main__":
    main()
