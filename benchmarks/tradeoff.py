"""PSNR against colourfulness on a folder of photos: each model's trade-off curve.

    python benchmarks/tradeoff.py --data ../shared/data/val --out docs/results/tradeoff \\
        --model old=path/to/old_model --saturations 1.0,1.2,1.4,1.6 \\
        --model new=default --decodings 0:0.38,0.25:0.38,0.5:0.38,0.5:1.0 --saturations 1.0

A model's points come from ``--saturations`` (the Colorizer's chroma multiplier) and, for
``effnet_fpn`` models, ``--decodings`` (``BLEND:T`` pairs of the regression/classification blend and
the annealed-mean temperature, set in the loaded model only; nothing is written back). Options
after a ``--model`` apply to that model. The model's own operating point (saturation 1.0 and the
decoding of its config.json) is marked. The gray baseline (ab = 0) is always measured.

Ground truth is prepared as ``colorization evaluate`` does (short side -> ``--size``, centre crop)
and PSNR / colourfulness are computed by the same :class:`colorization.evaluation.metrics.MetricSuite`, so the
points agree with the evaluation tables. Writes ``tradeoff.json`` and ``tradeoff.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from colorization import image_io  # noqa: E402
from colorization.evaluation import metrics as M  # noqa: E402
from colorization.evaluation.evaluate import list_group_images, load_ground_truth, resolve_model  # noqa: E402


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[dict]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of colour photos (e.g. ../shared/data/val)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="at most N photos (seeded subset)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    # everything from the first --model on is per-model
    first = next((i for i, a in enumerate(argv) if a == "--model"), len(argv))
    args = p.parse_args(argv[:first])
    models: list[dict] = []
    i = first
    while i < len(argv):
        flag = argv[i]
        if i + 1 >= len(argv):
            p.error(f"{flag} needs a value")
        value = argv[i + 1]
        if flag == "--model":
            name, _, spec = value.partition("=")
            if not spec:
                name, spec = value, value
            models.append({"name": name, "spec": spec, "saturations": [1.0], "decodings": [None]})
        elif flag == "--saturations":
            models[-1]["saturations"] = [float(s) for s in value.split(",")]
        elif flag == "--decodings":
            models[-1]["decodings"] = [tuple(float(x) for x in d.split(":")) for d in value.split(",")]
        else:
            p.error(f"unknown per-model option {flag}")
        i += 2
    if not models:
        p.error("give at least one --model")
    return args, models


def set_decoding(colorizer, decoding: tuple[float, float] | None) -> tuple[float, float] | None:
    """Set (blend, temperature) on an effnet_fpn network inside ``colorizer``; return the
    previous pair (None for other networks)."""
    net = getattr(getattr(colorizer.backend, "model", None), "network", None)
    cfg = getattr(net, "config", None)
    if cfg is None or not hasattr(cfg, "blend"):
        if decoding is not None:
            raise SystemExit(f"--decodings applies to effnet_fpn models only, not {type(net).__name__}")
        return None
    old = (float(cfg.blend), float(cfg.temperature))
    if decoding is not None:
        net.config = dataclasses.replace(cfg, blend=decoding[0], temperature=decoding[1])
    return old


def measure(colorizer, gts, target_batches, batch_size: int, saturation: float) -> dict:
    suite = M.MetricSuite(device=torch.device("cpu"), use_st_lpips=False, use_fid=False, use_ciede2000=False)
    for start, target in zip(range(0, len(gts), batch_size), target_batches):
        outs = colorizer.colorize_batch(gts[start : start + batch_size], batch_size=batch_size, saturation=saturation)
        suite.update(torch.stack([image_io.pil_to_tensor(o) for o in outs]), target)
    res = suite.compute()
    return {k: float(res[k]) for k in ("psnr", "ssim", "auc", "cf_pred", "cf_gt")}


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    gray = next(p for p in points if p["model"] == "gray")
    cf_gt = gray["cf_gt"]
    ax.axhline(gray["psnr"], color="0.5", lw=1, ls="--", label=f"gray (ab = 0): {gray['psnr']:.2f} dB")
    ax.axvline(cf_gt, color="0.7", lw=1, ls=":", label=f"ground-truth colourfulness {cf_gt:.1f}")
    for name in dict.fromkeys(p["model"] for p in points if p["model"] != "gray"):
        mine = [p for p in points if p["model"] == name]
        series: dict[str, list[dict]] = {}
        saturations = len({q["saturation"] for q in mine})  # one line per saturation sweep or decoding sweep
        for p in mine:
            if p["decoding"] is None or saturations == len(mine):
                key = "saturation"
            else:
                key = "decoding" if saturations == 1 else f"blend {p['decoding'][0]:g}"
            series.setdefault(key, []).append(p)
        for key, ps in series.items():
            ps = sorted(ps, key=lambda p: p["cf_pred"])
            line = ax.plot([p["cf_pred"] for p in ps], [p["psnr"] for p in ps], "o-", ms=4,
                           label=f"{name}" + (f" ({key})" if len(series) > 1 else ""))[0]
            for p in ps:
                tag = f"s{p['saturation']:g}"
                if p["decoding"] is not None:
                    tag = f"b{p['decoding'][0]:g} T{p['decoding'][1]:g} " + tag
                ax.annotate(tag, (p["cf_pred"], p["psnr"]), fontsize=6, xytext=(3, 3), textcoords="offset points",
                            color=line.get_color())
        shipped = [p for p in mine if p["operating_point"]]
        for p in shipped:
            ax.plot([p["cf_pred"]], [p["psnr"]], marker="*", ms=16, color="k", mfc="gold", zorder=5)
    ax.plot([], [], marker="*", ms=12, color="k", mfc="gold", ls="", label="operating point as shipped")
    ax.set_xlabel("mean colourfulness (Hasler & Süsstrunk, 0..255 scale)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with image_io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args, models = parse_args(list(sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    files = list_group_images(args.data, args.limit)
    gts = [load_ground_truth(f, args.size) for f in tqdm(files, desc="loading photos", unit="img")]
    targets = [
        torch.stack([image_io.pil_to_tensor(g) for g in gts[s : s + args.batch_size]])
        for s in range(0, len(gts), args.batch_size)
    ]
    device = torch.device("cpu")
    points = [{"model": "gray", "saturation": 1.0, "decoding": None, "operating_point": True,
               **measure(resolve_model("gray", device, None).colorizer, gts, targets, args.batch_size, 1.0)}]
    settings = [(m, d, s) for m in models for d in m["decodings"] for s in m["saturations"]]
    loaded: dict[str, object] = {}
    for m, decoding, saturation in tqdm(settings, desc="settings", unit="setting"):
        if m["name"] not in loaded:
            loaded[m["name"]] = resolve_model(m["spec"], device, None).colorizer
        col = loaded[m["name"]]
        own = set_decoding(col, None)
        set_decoding(col, decoding)
        res = measure(col, gts, targets, args.batch_size, saturation)
        set_decoding(col, own)
        is_own = saturation == 1.0 and (decoding is None or (own is not None and tuple(decoding) == own))
        points.append({"model": m["name"], "saturation": saturation, "decoding": list(decoding) if decoding else None,
                       "operating_point": is_own, **res})
        tqdm.write(f"{m['name']:>10} dec={decoding} sat={saturation:g}: PSNR {res['psnr']:.2f}  "
                   f"CF {res['cf_pred']:.1f} (GT {res['cf_gt']:.1f})  AuC {res['auc']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"data": Path(args.data).name, "images": len(files), "size": args.size,
            "models": [{k: m[k] for k in ("name", "spec")} for m in models]}
    image_io.atomic_write_text(args.out / "tradeoff.json", json.dumps({"meta": meta, "points": points}, indent=1))
    plot(points, args.out / "tradeoff.png",
         f"PSNR vs colourfulness, {len(files)} {meta['data']} photos at {args.size}x{args.size}")
    print(f"wrote {args.out / 'tradeoff.json'} and {args.out / 'tradeoff.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
