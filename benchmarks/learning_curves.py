"""Learning curves of training runs: gain over gray on seen, held-out and val photos per step.

    python benchmarks/learning_curves.py runs/arms/base runs/arms/frozen_all --out docs/results/arms_curves.png
    python benchmarks/learning_curves.py docs/results/campaign_curve.csv --out docs/results/campaign_curve.png

Reads each run's ``log.jsonl`` ``val`` lines (a run trained with ``curve_images`` > 0 logs
``seen/...`` and ``holdout/...`` beside the val metrics), or a ``curve_csv`` file (a long run's
committed curve, one row per 100,000 images: ``val_psnr``, ``holdout_psnr``, ``seen_psnr`` and their
``_gray``), and draws one panel per photo set: PSNR minus the gray image's PSNR against images
seen. Prints the same figures as a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import markdown_table  # noqa: E402

SETS = (("seen/", "seen"), ("holdout/", "held-out slice"), ("", "val"))


def read_curve_csv(path: Path) -> list[dict]:
    """The rows of a ``curve_csv`` file, keyed as ``log.jsonl``'s ``val`` lines (``psnr``, ``holdout/psnr``, ...)."""
    import csv

    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            r: dict = {"step": int(row["step"]), "images_seen": int(row["images_seen"])}
            for csv_prefix, prefix in (("val_", ""), ("holdout_", "holdout/"), ("seen_", "seen/")):
                for key in ("psnr", "psnr_gray"):
                    if row.get(csv_prefix + key):
                        r[prefix + key] = float(row[csv_prefix + key])
            out.append(r)
    return out


def read_curves(run: Path) -> list[dict]:
    """The ``val`` lines of ``run/log.jsonl``, each with the step's images seen (or a ``curve_csv`` file's rows)."""
    if run.suffix == ".csv":
        return read_curve_csv(run)
    seen_at: dict[int, int] = {}
    vals = []
    for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("kind") == "train":
            seen_at[r["step"]] = r["images_seen"]
        elif r.get("kind") == "val":
            vals.append(r)
    batch = json.loads((run / "train_config.json").read_text(encoding="utf-8"))["batch_size"]
    for r in vals:
        r["images_seen"] = seen_at.get(r["step"], r["step"] * batch)
    return vals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    fig, axes = plt.subplots(1, len(SETS), figsize=(4.2 * len(SETS), 3.4), sharey=True)
    rows = []
    for run in args.runs:
        curves = read_curves(run)
        for ax, (prefix, title) in zip(axes, SETS):
            pts = [(r["images_seen"] / 1000, r[f"{prefix}psnr"] - r[f"{prefix}psnr_gray"])
                   for r in curves if f"{prefix}psnr_gray" in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=run.stem)
            ax.set_title(title)
            ax.set_xlabel("images seen (thousands)")
            ax.grid(alpha=0.3)
        for r in curves:
            rows.append([run.stem, r["step"], r["images_seen"]] + [
                f"{r[f'{p}psnr'] - r[f'{p}psnr_gray']:+.2f}" if f"{p}psnr_gray" in r else "—" for p, _ in SETS])
    axes[0].set_ylabel("PSNR gain over gray (dB)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(markdown_table(["run", "step", "images seen"] + [f"gain {t}" for _, t in SETS], rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
