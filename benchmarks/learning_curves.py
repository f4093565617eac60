"""Learning curves of training runs: gain over gray on seen, held-out and val photos per step.

    python benchmarks/learning_curves.py runs/arms/base runs/arms/frozen_all --out docs/results/arms_curves.png
    python benchmarks/learning_curves.py docs/results/campaign_curve.csv --out docs/results/campaign_curve.png \
        --reference "shipped default=default" --config configs/campaign.yaml

Reads each run's ``log.jsonl`` ``val`` lines (a run trained with ``curve_images`` > 0 logs
``seen/...`` and ``holdout/...`` beside the val metrics), or a ``curve_csv`` file (a long run's
committed curve, one row per 100,000 images: ``val_psnr``, ``holdout_psnr``, ``seen_psnr`` and their
``_gray``), and draws one panel per photo set: PSNR minus the gray image's PSNR against images
seen. Prints the same figures as a markdown table.

``--reference NAME=MODEL_DIR`` (``default`` = the shipped model) measures an exported model with the
run's own val protocol (``--config``: its ``val`` folder, ``val_images``, ``val_crop`` and ``seed``;
the network's full chroma, chroma gain 1, as training validation sees a network) and draws its gain
over gray as a level line on the val panel: where a run has to get to. ``--reference-crop 64``
measures at another crop size (a run's snapshot exported with ``colorization train --resume
--export-now`` against the shipped model at the scale of a low-resolution stage).
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


def reference_val(model_dir: str, config: Path, crop: int | None = None) -> dict[str, float]:
    """PSNR, gray PSNR and colourfulness of an exported model on ``config``'s val photos, measured
    as training validation measures a network (centre crops of ``crop``, default the config's
    ``val_crop``; chroma gain 1)."""
    import contextlib

    import torch
    from torch import nn

    from colorization import data as cdata
    from colorization.inference.checkpoint import load_exported, resolve_model_dir
    from colorization.train.config import load_config_file, resolve_config
    from colorization.train.validation import validate

    cfg = resolve_config(load_config_file(config), source=str(config))
    if cfg.val is None or cfg.val_images <= 0:
        raise SystemExit(f"{config} has no val photos (val, val_images)")

    class _Predict(nn.Module):  # validate() asks an objective to decode; a ColorModel decodes itself
        def predict(self, l_norm: torch.Tensor, generator: nn.Module) -> torch.Tensor:
            return generator(l_norm)

    model = load_exported(resolve_model_dir(None if model_dir == "default" else model_dir))
    model.chroma_gain = 1.0
    ds = cdata.ImageFolderDataset([cfg.val], crop=int(crop or cfg.val_crop or cfg.crop), train=False,
                                  drop_grayscale=cfg.drop_grayscale, max_images=cfg.val_images,
                                  seed=cfg.seed, progress=False)
    return validate(_Predict(), model, ds, device=torch.device("cpu"), batch_size=16, channels_last=False,
                    autocast=contextlib.nullcontext, sample_images=0, sample_path=Path("."))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reference", action="append", default=[], metavar="NAME=MODEL_DIR",
                   help="an exported model drawn as a level line on the val panel ('default': the shipped one)")
    p.add_argument("--config", type=Path, help="the run's training config, whose val protocol --reference uses")
    p.add_argument("--reference-crop", type=int, metavar="PX",
                   help="--reference's crop size instead of the config's val_crop (e.g. a low-resolution stage's)")
    args = p.parse_args()
    refs = []
    for spec in args.reference:
        name, sep, model_dir = spec.partition("=")
        if not sep or not name or not model_dir:
            p.error(f"--reference takes NAME=MODEL_DIR, got {spec!r}")
        if args.config is None:
            p.error("--reference needs --config (the run's val protocol)")
        refs.append((name, reference_val(model_dir, args.config, args.reference_crop)))
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
    for i, (name, r) in enumerate(refs):
        gain = r["psnr"] - r["psnr_gray"]
        axes[-1].axhline(gain, color=f"C{len(args.runs) + i}", ls="--", lw=1,
                         label=f"{name} (colourfulness {r['colorfulness_pred']:.1f})")
        rows.append([f"{name} (colourfulness {r['colorfulness_pred']:.1f} of {r['colorfulness_gt']:.1f}, "
                     f"{r['images']} photos)", "—", "—", "—", "—", f"{gain:+.2f}"])
    axes[0].set_ylabel("PSNR gain over gray (dB)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(markdown_table(["run", "step", "images seen"] + [f"gain {t}" for _, t in SETS], rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
