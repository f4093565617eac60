"""Does any way of reading the network's outputs move the PSNR-colourfulness curve? Decodings and
test-time averaging of an ``effnet_fpn`` model, each compared with the model's own output at equal
colourfulness.

    python benchmarks/decodings.py --model default --val-images 970 --size 256 \\
        --variants blend:0.2 confgain:0.5 confblend:0.5 annchroma:0.25 agree:0.1 flip scales:0.75,1,1.25 \\
        --json docs/results/decodings.json

The photos and the protocol are those of ``benchmarks/generalisation.py --sets val`` (short side to
``--size``, centre crop, :class:`colorization.Colorizer` at the model's working size). The
*reference curve* is the model's regression output at chroma multipliers ``--saturations``. Every
variant changes how the two heads (``forward_heads``: regression ab and 261-bin logits at stride 4)
become ab, in the loaded model only:

* ``blend:B``: ``(1 - B) * regression + B * annealed_mean(logits, T)`` (the model's own decoding at
  config ``blend`` B and ``temperature`` T);
* ``confgain:K``: ``regression * (1 + K * c)``, where ``c = 1 - H(p) / log Q`` is the classifier's
  confidence (``p = softmax(logits)``, ``H`` its entropy), so chroma grows where the classifier is sure;
* ``confblend:K``: ``regression + min(1, K * c) * (annealed - regression)``: the annealed mean where sure;
* ``annchroma:K``: the regression's hue with its chroma moved a share ``K`` towards
  ``max(|regression|, |annealed|)``;
* ``agree:K``: ``regression * (1 + K * max(0, cos))``, ``cos`` the cosine between the two heads' ab;
* ``flip``: the mean of the heads of the image and of its mirror image;
* ``scales:S1,S2,...``: the mean regression of the working image resized by each factor (multiples
  of the stride), plus ``flip`` with ``scales+flip:...``;
* ``size:PX``: another working size.

Each is compared with the reference at *equal mean colourfulness*: the reference curve is
interpolated linearly in the chroma multiplier (per photo, PSNR and colourfulness alike) to the
variant's mean colourfulness, and the paired difference of PSNR is printed with its 95 % interval.
A variant whose colourfulness falls outside the reference curve is reported without a difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import machine_lines, markdown_table  # noqa: E402
from generalisation import build_sets, ci95, ground_truth, measure  # noqa: E402

from colorization import Colorizer, color, image_io  # noqa: E402

Heads = dict[str, torch.Tensor]
KINDS = ("blend", "confgain", "confblend", "annchroma", "agree", "flip", "scales", "scales+flip", "size")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="exported effnet_fpn folder ('default': the shipped one)")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--val-images", type=int, default=970)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--saturations", default="0.9,1.0,1.1,1.2,1.3", help="the reference curve's chroma multipliers")
    p.add_argument("--variants", nargs="+", default=[], metavar="KIND[:VALUE]", help=f"kinds: {', '.join(KINDS)}")
    p.add_argument("--temperature", type=float, default=color.DEFAULT_TEMPERATURE, help="annealed-mean temperature")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the figures and per-photo PSNR here")
    args = p.parse_args(argv)
    for v in args.variants:
        kind, _, value = v.partition(":")
        if kind not in KINDS:
            p.error(f"unknown variant {v!r}; kinds: {', '.join(KINDS)}")
        if kind != "flip" and not value:
            p.error(f"variant {v!r} needs a value ({kind}:VALUE)")
    return args


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """``1 - H(softmax(logits)) / log Q``, (B, 1, h, w) in [0, 1] for logits (B, Q, h, w)."""
    logp = torch.log_softmax(logits.float(), 1)
    entropy = -(logp.exp() * logp).sum(1, keepdim=True)
    return 1.0 - entropy / math.log(logits.shape[1])


def head_decoder(kind: str, k: float, temperature: float) -> Callable[[Heads], torch.Tensor]:
    """A replacement for ``EffNetFPN.decode``: heads -> normalised ab (B, 2, h, w) float32."""

    def decode(heads: Heads) -> torch.Tensor:
        reg = heads["regression"].float()
        logits = heads["logits"].float()
        ann = color.normalize_ab(color.annealed_mean(logits, T=temperature))
        if kind == "confgain":
            return reg * (1.0 + k * confidence(logits))
        if kind == "confblend":
            return reg + (k * confidence(logits)).clamp(max=1.0) * (ann - reg)
        m_reg, m_ann = reg.norm(dim=1, keepdim=True), ann.norm(dim=1, keepdim=True)
        if kind == "annchroma":
            m = (1.0 - k) * m_reg + k * torch.maximum(m_reg, m_ann)
            return reg / m_reg.clamp_min(1e-6) * m
        if kind == "agree":
            cos = (reg * ann).sum(1, keepdim=True) / (m_reg * m_ann).clamp_min(1e-6)
            return reg * (1.0 + k * cos.clamp(min=0.0))
        raise ValueError(kind)

    return decode


def averaged_heads(forward_heads: Callable[..., Heads], scales: list[float], flip: bool, stride: int):
    """A replacement for ``forward_heads`` that averages the regression over resized (and mirrored) inputs."""

    def one(x: torch.Tensor) -> torch.Tensor:
        reg = forward_heads(x, None)["regression"]
        if flip:
            reg = 0.5 * (reg + forward_heads(x.flip(-1), None)["regression"].flip(-1))
        return reg

    def heads(x: torch.Tensor, hints: torch.Tensor | None = None) -> Heads:
        if hints is not None:
            raise ValueError("test-time averaging is measured in automatic mode only")
        H, W = x.shape[-2:]
        regs = []
        for s in scales:
            h, w = (max(stride, round(n * s / stride) * stride) for n in (H, W))
            xs = x if (h, w) == (H, W) else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                                                           antialias=s < 1)
            regs.append(F.interpolate(one(xs), size=(H // 4, W // 4), mode="bilinear", align_corners=False))
        return {"regression": torch.stack(regs).mean(0)}  # read by the regression-only decode below

    return heads


def load(model: str, size: int | None = None) -> Colorizer:
    """A fresh Colorizer of the effnet_fpn ``model`` ('default': the shipped one)."""
    col = Colorizer.from_pretrained(None if model == "default" else model, device="cpu", size=size)
    if not hasattr(col.backend.model.network, "forward_heads"):
        raise SystemExit(f"{model} is not an effnet_fpn model (no forward_heads)")
    return col


def variant_colorizer(model: str, variant: str, temperature: float) -> Colorizer:
    """A fresh Colorizer of ``model`` whose network reads its heads as ``variant`` says."""
    kind, _, value = variant.partition(":")
    col = load(model, int(value) if kind == "size" else None)
    net = col.backend.model.network
    if kind == "blend":
        net.config = dataclasses.replace(net.config, blend=float(value), temperature=temperature)
    elif kind in ("confgain", "confblend", "annchroma", "agree"):
        net.decode = head_decoder(kind, float(value), temperature)
    elif kind in ("flip", "scales", "scales+flip"):
        scales = [1.0] if kind == "flip" else [float(s) for s in value.split(",")]
        net.forward_heads = averaged_heads(net.forward_heads, scales, kind != "scales", int(net.stride))
        net.decode = lambda heads: heads["regression"].float()
    return col


def at_equal_colourfulness(curve: dict[float, dict[str, np.ndarray]], cf: float) -> dict[str, np.ndarray] | None:
    """The reference curve (saturation -> per-photo figures) interpolated to mean colourfulness ``cf``."""
    sats = sorted(curve)
    means = [float(curve[s]["cf"].mean()) for s in sats]
    for (s0, c0), (s1, c1) in zip(zip(sats, means), zip(sats[1:], means[1:])):
        if c0 <= cf <= c1:
            w = (cf - c0) / (c1 - c0) if c1 > c0 else 0.0
            out = {k: (1 - w) * curve[s0][k] + w * curve[s1][k] for k in ("psnr", "cf")}
            return out | {"saturation": s0 + w * (s1 - s0)}
    return None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    sat_list = [float(s) for s in args.saturations.split(",")]
    t0 = time.perf_counter()
    args.sets = ["val"]
    gt, files = ground_truth(build_sets(args)["val"], args.val_images)
    reference = load(args.model)
    curve = {s: measure(reference, gt, args.batch_size, f"reference x{s:g}", s) for s in sat_list}
    results = {f"reference x{s:g}": curve[s] for s in sat_list}
    for v in args.variants:
        results[v] = measure(variant_colorizer(args.model, v, args.temperature), gt, args.batch_size, v)
    wall = time.perf_counter() - t0

    rows, summary = [], {}
    for name, m in results.items():
        gain = m["psnr"] - m["psnr_gray"]
        ref = at_equal_colourfulness(curve, float(m["cf"].mean())) if not name.startswith("reference") else None
        d = m["psnr"] - ref["psnr"] if ref is not None else None
        summary[name] = {"psnr": float(m["psnr"].mean()), "gain": float(gain.mean()), "cf": float(m["cf"].mean()),
                         "delta_equal_cf": None if d is None else float(d.mean()),
                         "delta_ci": None if d is None else ci95(d),
                         "reference_saturation": None if ref is None else float(ref["saturation"])}
        rows.append([name, f"{m['psnr'].mean():.3f}", f"{gain.mean():+.2f} ± {ci95(gain):.2f}", f"{m['cf'].mean():.1f}",
                     "—" if ref is None else f"{ref['saturation']:.3f}",
                     "—" if d is None else f"{d.mean():+.3f} ± {ci95(d):.3f}"])
    print("\n".join(machine_lines()))
    cf_gt = float(curve[sat_list[0]]["cf_gt"].mean())
    print(f"photos: val {len(files)}; {args.size} px; ground-truth colourfulness {cf_gt:.1f}; {wall:.0f} s")
    headers = ["decoding", "PSNR (dB)", "gain over gray", "colourfulness", "reference at equal CF (× chroma)",
               "ΔPSNR at equal CF"]
    print(markdown_table(headers, rows))
    if args.json is not None:
        payload = {"args": json.loads(json.dumps(vars(args), default=str)), "photos": [str(f) for f in files],
                   "wall_s": wall, "summary": summary,
                   "per_photo": {n: {k: [round(float(x), 4) for x in a] for k, a in m.items()}
                                 for n, m in results.items()}}
        image_io.atomic_write_text(args.json, json.dumps(payload, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
