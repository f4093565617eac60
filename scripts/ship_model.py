"""Copy an exported model into the package as the shipped default (float16 storage by default).

    python scripts/ship_model.py runs/default/model src/colorization/weights/default

The weights are re-saved through ``checkpoint.save_exported`` (strict, unwrapped, atomic), so the
result loads exactly like any exported model; every config.json key except the ones the format
owns is carried over. Outputs of the float16 copy are compared with the source and the largest
difference is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from colorization.inference import checkpoint

_FORMAT_KEYS = {"format_version", "model", "model_config", "head", "weights_dtype", "package_version"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="exported model folder")
    p.add_argument("dst", type=Path, help="destination folder (replaced file by file, atomically)")
    p.add_argument("--float32", action="store_true", help="keep float32 storage")
    args = p.parse_args(argv)

    model = checkpoint.load_exported(args.src)
    config = checkpoint.read_config(args.src)
    extra = {k: v for k, v in config.items() if k not in _FORMAT_KEYS}
    try:
        checkpoint.save_exported(model, args.dst, head=model.head, extra=extra, half=not args.float32)
    except ValueError as exc:
        if "overflows float16" not in str(exc):
            raise
        raise SystemExit(f"error: {exc} (ship_model.py: pass --float32)") from None
    shipped = checkpoint.load_exported(args.dst)
    x = torch.rand(2, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        diff = (shipped(x) - model(x)).abs().max().item()
    size = (args.dst / checkpoint.WEIGHTS_NAME).stat().st_size / 2**20
    print(f"shipped {args.src} -> {args.dst} ({size:.1f} MiB); max |Δ ab_norm| vs source: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
