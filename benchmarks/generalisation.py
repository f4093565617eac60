"""How much better a model does on photos it trained on than on photos it has not seen.

    python benchmarks/generalisation.py --model default=default --model base=runs/arms/base/model \\
        --seen 500 --val-images 970 --json docs/results/generalisation.json

For each model, three sets of photos, the same for every model (so differences are paired):

* ``seen``: ``--seen`` photos drawn (seeded) from the photos the training recipe uses: the ``--groups``
  of ``--train`` (default: the 17 groups every recipe here trains on), the held-out slice left out,
  grayscale and the least colourful ``--quantile`` dropped, exactly as ``colorization train`` filters
  them (``colorization.data.ImageFolderDataset``);
* ``holdout``: the fixed held-out slice of the same groups (``colorization.data.is_held_out``, 3 % of
  each group), which no run with ``holdout: true`` trains on, through the same filters (the
  colourfulness quantile of the slice itself, which is a random sample of the same photos), so
  ``seen`` and ``holdout`` differ only in whether the model trained on them;
* ``val``: the first ``--val-images`` photos of ``--val`` (ImageNet, other photos and other kinds).

Protocol per photo: the short side resized to ``--size`` and a centre ``--size`` square cropped; the
model colorizes it through :class:`colorization.Colorizer` (``Colorizer.from_pretrained(model)`` at its
working size); PSNR against the colour crop minus the PSNR of the gray image (the crop's own L with
a = b = 0) is the gain. Printed per set: the mean gain with its 95 % confidence interval, mean PSNR
and colourfulness (Hasler-Süsstrunk, as everywhere in this project) against the ground truth's; per
model the gaps seen - holdout and seen - val; and the paired difference of PSNR against the first
``--model`` (or ``--reference``) with its 95 % interval. ``--reuse`` adds the models of an earlier
``--json`` measured on the same photos, so a new model is compared without re-measuring the old.
A model trained without the held-out slice left out (the shipped default) has seen the
``holdout`` photos: its row says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine_lines, markdown_table  # noqa: E402
from tqdm import tqdm  # noqa: E402

from colorization import Colorizer, color, image_io  # noqa: E402
from colorization import data as cdata  # noqa: E402
from colorization.evaluation import metrics as M  # noqa: E402

RECIPE_GROUPS = (
    "animals22", "bsds500", "caltech101", "cats_dogs", "faces", "flickr8k", "flowers5", "imagenet_det",
    "imagenette", "imagewoof", "intel_scenes", "pacs", "scene15", "sports100", "sun8a", "sun8b", "weather",
)
"""The 17 groups of ``train/`` that the shipped default and every recipe of configs/arms/ train on."""
SETS = ("seen", "holdout", "val")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH[@SATURATION][,size=PX]",
                   help="exported model folder ('default': the shipped one), optionally at a chroma multiplier "
                        "other than 1 (e.g. new=runs/x/model@1.2, to compare at equal colourfulness) and at "
                        "a working size other than its config's (e.g. big=default@size=144 or "
                        "big=default@0.95,size=144); repeatable; the first is the reference")
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--groups", nargs="+", default=list(RECIPE_GROUPS))
    p.add_argument("--quantile", type=float, default=0.26, help="colourfulness filter of the seen photos")
    p.add_argument("--seen", type=int, default=500, help="photos of the seen set")
    p.add_argument("--holdout-images", type=int, default=None, help="at most N held-out photos (default all)")
    p.add_argument("--val-images", type=int, default=970)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS),
                   help="which sets to measure (default all three; e.g. --sets val for a ship decision)")
    p.add_argument("--json", type=Path, default=None, help="write every figure (and per-photo PSNRs) here")
    p.add_argument("--reuse", type=Path, action="append", default=[],
                   help="an earlier --json of the same photos: its models join the table without being re-measured")
    p.add_argument("--reference", default=None, help="model the paired differences are taken against (default: first)")
    return p.parse_args(argv)


def build_sets(args: argparse.Namespace) -> dict[str, cdata.ImageFolderDataset]:
    common = dict(crop=args.size, train=False, progress=False, drop_grayscale=True)
    if "seen" not in args.sets and "holdout" not in args.sets:
        return {"val": cdata.ImageFolderDataset([args.val], max_images=None, **common)}
    seen_pool = cdata.ImageFolderDataset(
        [args.train], groups=args.groups, holdout="exclude", min_colorfulness_quantile=args.quantile, **common
    )
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(seen_pool), size=min(args.seen, len(seen_pool)), replace=False))
    files = [seen_pool.files[i] for i in pick]
    sets = {
        "seen": cdata.ImageFolderDataset(files, **{**common, "drop_grayscale": False}),
        "holdout": cdata.ImageFolderDataset(
            [args.train], groups=args.groups, holdout="only", min_colorfulness_quantile=args.quantile,
            max_images=args.holdout_images, seed=args.seed, **common
        ),
        "val": cdata.ImageFolderDataset([args.val], max_images=None, **common),
    }
    return {k: v for k, v in sets.items() if k in args.sets}


def ground_truth(ds: cdata.ImageFolderDataset, limit: int | None) -> tuple[torch.Tensor, list[Path]]:
    n = len(ds) if limit is None else min(limit, len(ds))
    rgb = torch.stack([ds[i]["rgb"] for i in range(n)])  # (N, 3, S, S) uint8
    return rgb, ds.files[:n]


def measure(colorizer: Colorizer, gt_u8: torch.Tensor, batch_size: int, desc: str,
            saturation: float = 1.0) -> dict[str, np.ndarray]:
    """Per-photo PSNR, gray PSNR and colourfulness of ``colorizer`` (at chroma multiplier ``saturation``)
    on the crops ``gt_u8`` (N,3,S,S) uint8."""
    gt = gt_u8.float() / 255.0
    images = [image_io.tensor_to_pil(x) for x in gt_u8]
    out = []
    stream = colorizer.colorize_iter(images, batch_size=batch_size, saturation=saturation)
    for pil in tqdm(stream, total=len(images), desc=desc, disable=not sys.stderr.isatty()):
        out.append(torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1))
    pred = torch.stack(out).float() / 255.0
    gray_u8 = (color.rgb_to_gray(gt).clamp(0, 1) * 255.0).round()
    gray = gray_u8 / 255.0
    return {
        "psnr": M.psnr(pred, gt).numpy(),
        "psnr_gray": M.psnr(gray, gt).numpy(),
        "cf": color.colorfulness(pred.double()).numpy(),
        "cf_gt": color.colorfulness(gt.double()).numpy(),
    }


def ci95(x: np.ndarray) -> float:
    """Half-width of the normal 95 % confidence interval of the mean of ``x``."""
    return 1.96 * float(np.std(x, ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else float("nan")


def parse_options(spec: str, options: str) -> tuple[float, int | None]:
    """``SATURATION``, ``size=PX`` or ``SATURATION,size=PX`` (the text after '@' of a ``--model``) ->
    (saturation, working size or None for the model's own)."""
    saturation, size = 1.0, None
    for part in filter(None, options.split(",")):
        key, eq, value = part.partition("=")
        try:
            if not eq:
                saturation = float(key)
            elif key == "size":
                size = int(value)
            else:
                raise SystemExit(f"--model {spec}: unknown option {key!r} after '@' (SATURATION or size=PX)")
        except ValueError:
            raise SystemExit(f"--model {spec}: {part!r} after '@' must be a number (SATURATION or size=PX)") from None
    return saturation, size


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    models = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        path, _, options = (path or name).partition("@")
        models.append((name, path, *parse_options(spec, options)))
    t0 = time.perf_counter()
    sets = build_sets(args)
    gts = {k: ground_truth(ds, args.val_images if k == "val" else None) for k, ds in sets.items()}
    results: dict[str, dict] = {}
    photos = {k: [str(f) for f in v[1]] for k, v in gts.items()}
    for earlier in args.reuse:
        old = json.loads(earlier.read_text(encoding="utf-8"))
        if any(old["photos"].get(k) != v for k, v in photos.items()):
            raise SystemExit(f"{earlier} was measured on other photos (check --seen/--val-images/--seed/--groups)")
        for name, r in old["models"].items():
            sets = {k: {m: np.asarray(a) for m, a in v.items()} for k, v in r["per_photo"].items()}
            results[name] = {"path": r["path"], "saturation": r.get("saturation", 1.0),
                             "working_size": r.get("working_size"),
                             "holdout_left_out": r["holdout_left_out"], "sets": {k: sets[k] for k in photos}}
    loaded: dict[str, Colorizer] = {}
    for name, path, saturation, size in models:
        if (path, size) not in loaded:
            loaded[path, size] = Colorizer.from_pretrained(None if path == "default" else path, device="cpu", size=size)
        colorizer = loaded[path, size]
        train = getattr(colorizer.backend, "config", {}).get("training", {}).get("train_config", {})
        per_set = {k: measure(colorizer, gt, args.batch_size, f"{name} {k}", saturation) for k, (gt, _) in gts.items()}
        results[name] = {"path": path, "saturation": saturation, "working_size": size,
                         "holdout_left_out": bool(train.get("holdout", False)), "sets": per_set}
    wall = time.perf_counter() - t0

    print("\n".join(machine_lines()))
    print("photos: " + ", ".join(f"{k} {len(v[1])}" for k, v in gts.items()) + f"; {args.size} px; {wall:.0f} s")
    if not results:
        raise SystemExit("give at least one --model or --reuse")
    ref = args.reference or next(iter(results))
    if ref not in results:
        raise SystemExit(f"--reference {ref!r} is not among the models {list(results)}")
    sets = [k for k in SETS if k in gts]
    gaps = [(a, b) for a, b in (("seen", "holdout"), ("seen", "val")) if a in gts and b in gts]
    rows = []
    for name in results:
        r = results[name]
        label = name + (f" (saturation {r['saturation']:g})" if r["saturation"] != 1.0 else "")
        label += f" (working size {r['working_size']})" if r.get("working_size") else ""
        row: list = [label + ("" if r["holdout_left_out"] or "holdout" not in gts else " (trained on holdout too)")]
        gains = {}
        for k in sets:
            m = r["sets"][k]
            g = m["psnr"] - m["psnr_gray"]
            gains[k] = float(g.mean())
            row.append(f"{g.mean():+.2f} ± {ci95(g):.2f}")
        for k in sets:
            m = r["sets"][k]
            row.append(f"{m['cf'].mean():.1f} / {m['cf_gt'].mean():.1f}")
        row += [f"{gains[a] - gains[b]:.2f}" for a, b in gaps]
        for k in sets[1:] if "seen" in sets else sets:
            d = r["sets"][k]["psnr"] - results[ref]["sets"][k]["psnr"]
            row.append("—" if name == ref else f"{d.mean():+.3f} ± {ci95(d):.3f}")
        r["summary"] = {
            **{f"gain_{k}": gains[k] for k in sets},
            **{f"gain_ci_{k}": ci95(r["sets"][k]["psnr"] - r["sets"][k]["psnr_gray"]) for k in sets},
            **{f"psnr_{k}": float(r["sets"][k]["psnr"].mean()) for k in sets},
            **{f"cf_{k}": float(r["sets"][k]["cf"].mean()) for k in sets},
            **{f"cf_gt_{k}": float(r["sets"][k]["cf_gt"].mean()) for k in sets},
            **{f"gap_{a}_{b}": gains[a] - gains[b] for a, b in gaps},
        }
        rows.append(row)
    headers = (["model"] + [f"gain {k} (dB)" for k in sets] + [f"CF {k} (pred / gt)" for k in sets]
               + [f"gap {a}-{b}" for a, b in gaps]
               + [f"ΔPSNR {k} vs {ref}" for k in (sets[1:] if "seen" in sets else sets)])
    print(markdown_table(headers, rows))
    if args.json is not None:
        payload = {
            "args": json.loads(json.dumps(vars(args), default=str)),
            "photos": photos,
            "wall_s": wall,
            "models": {
                n: {"path": r["path"], "saturation": r["saturation"], "working_size": r["working_size"],
                    "holdout_left_out": r["holdout_left_out"],
                    "summary": r["summary"],
                    "per_photo": {k: {m: [round(float(x), 4) for x in a] for m, a in s.items()}
                                  for k, s in r["sets"].items()}}
                for n, r in results.items()
            },
        }
        image_io.atomic_write_text(args.json, json.dumps(payload, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
