"""Choose an exported model's ``chroma_gain`` on validation photos.

A regressor trained with L1/L2 predicts something close to the conditional median/mean of ab, so
its colours come out duller than real photos. The exported-model format has a ``chroma_gain``
(config.json) that scales the decoded ab for every backend. This script measures, on validation
photos under the evaluation protocol (short side -> SIZE, centre crop, colorized through the
Colorizer at the model's working size), PSNR, raw-accuracy AuC and the mean colourfulness of the
output relative to the ground truth for several gains, against the ``gray`` baseline on the same
photos; with ``--write`` it records the chosen gain in the model's config.json (atomically).

Rule (``--write auto``): the largest gain whose PSNR stays at least ``--min-psnr-gain`` dB above
gray's, among the gains whose mean colourfulness does not exceed the ground truth's.

    python scripts/calibrate_chroma_gain.py runs/default/model --data ../shared/data/val --limit 300
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from colorization import color, image_io
from colorization.evaluation import metrics
from colorization.evaluation.evaluate import load_ground_truth
from colorization.inference.checkpoint import CONFIG_NAME, read_config
from colorization.inference.colorizer import Colorizer


def measure(model_dir: Path, files: list[Path], size: int, gains: list[float]) -> list[dict]:
    colorizer = Colorizer.from_pretrained(model_dir, device="cpu")
    base_gain = float(getattr(getattr(colorizer.backend, "model", None), "chroma_gain", 1.0))
    sums = {g: {"psnr": 0.0, "cf": 0.0, "err": []} for g in [0.0, *gains]}
    cf_gt_sum = 0.0
    gt_abs = []
    for f in tqdm(files, desc="calibrating", unit="img"):
        gt = load_ground_truth(f, size)
        gt_t = image_io.pil_to_tensor(gt).unsqueeze(0)
        cf_gt_sum += float(color.colorfulness(gt_t)[0])
        gt_ab = color.rgb_to_lab(gt_t)[:, 1:]
        gt_abs.append(gt_ab)
        prep = colorizer.prepare(gt)
        (ab,) = colorizer.predict([prep])
        for g in sums:
            # the saturation factor multiplies on top of the gain already in the model
            out = colorizer.finish(prep, ab, saturation=g / base_gain if base_gain else g)
            out_t = image_io.pil_to_tensor(out).unsqueeze(0)
            sums[g]["psnr"] += float(metrics.psnr(out_t, gt_t)[0])
            sums[g]["cf"] += float(color.colorfulness(out_t)[0])
            sums[g]["err"].append(metrics.ab_error(color.rgb_to_lab(out_t)[:, 1:], gt_ab))
    n = len(files)
    rows = []
    for g, s in sums.items():
        curve = metrics.accuracy_curve(torch.cat([e.flatten() for e in s["err"]]), None)
        rows.append(
            {
                "gain": g,
                "psnr": s["psnr"] / n,
                "auc": metrics.auc_from_curve(curve),
                "cf_pred": s["cf"] / n,
                "cf_gt": cf_gt_sum / n,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="exported model folder")
    p.add_argument("--data", type=Path, required=True, help="validation photo folder (never bench/)")
    p.add_argument("--limit", type=int, default=300, help="photos (seeded random subset)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--gains", type=float, nargs="+", default=[1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    p.add_argument("--min-psnr-gain", type=float, default=1.0, help="dB above gray that must be kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", default=None, help="'auto' or a gain to record in config.json")
    args = p.parse_args(argv)

    files = [f for f, _ in image_io.find_images([args.data])]
    if not files:
        p.error(f"no images under {args.data}")
    g = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(files), generator=g)[: args.limit].tolist()
    files = [files[i] for i in sorted(pick)]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = measure(args.model, files, args.size, args.gains)
    gray = next(r for r in rows if r["gain"] == 0.0)
    print(f"{len(files)} photos from {args.data}, {args.size}px protocol; gain 0 = gray")
    print("| gain | PSNR | PSNR - gray | AuC | AuC - gray | CF out / CF gt |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['gain']:.2f} | {r['psnr']:.2f} | {r['psnr'] - gray['psnr']:+.2f} | {r['auc']:.2f} | "
            f"{r['auc'] - gray['auc']:+.2f} | {r['cf_pred'] / r['cf_gt']:.3f} |"
        )
    if args.write is None:
        return 0
    if args.write == "auto":
        ok = [
            r for r in rows
            if r["gain"] > 0 and r["psnr"] - gray["psnr"] >= args.min_psnr_gain and r["cf_pred"] <= r["cf_gt"]
        ]
        if not ok:
            print("no gain keeps PSNR that far above gray; config.json left unchanged", file=sys.stderr)
            return 1
        chosen = max(r["gain"] for r in ok)
    else:
        chosen = float(args.write)
    config = read_config(args.model)
    config["chroma_gain"] = chosen
    config.setdefault("metrics", {})["chroma_gain_calibration"] = {
        "data": str(args.data), "photos": len(files), "size": args.size, "rule": (
            f"largest gain with PSNR >= gray + {args.min_psnr_gain} dB and mean colourfulness <= ground truth"
            if args.write == "auto" else "given"
        ), "table": rows,
    }
    image_io.atomic_write_text(args.model / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    print(f"chroma_gain = {chosen} written to {args.model / CONFIG_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
