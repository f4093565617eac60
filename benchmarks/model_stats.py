"""Parameters and FLOPs of every registered network at its default (paper-sized) config.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` for one 256x256 image
(generators: 1-channel L; discriminators: 3-channel L+ab). That counter counts 2 FLOPs per
multiply-add of convolutions, transposed convolutions and matrix products (interpolation,
normalisation and activations are not counted). Networks are built on the meta device, so no
memory or compute is spent on real tensors; models with a ``pretrained`` field are built with
``pretrained=False`` (the size does not depend on it).

Usage:
    python benchmarks/model_stats.py            # print the table
    python benchmarks/model_stats.py --write    # also update the table in docs/models.md
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from colorization.image_io import atomic_write_text
from colorization.models import create_model, get_config_class, list_models, model_info

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"
START = "<!-- model-stats:start -->"
END = "<!-- model-stats:end -->"
SIZE = 256


def measure(name: str, size: int = SIZE) -> dict[str, object]:
    info = model_info(name)
    fields = {f.name for f in dataclasses.fields(get_config_class(name))}
    kwargs = {"pretrained": False} if "pretrained" in fields else {}
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        channels = getattr(model.config, "in_channels", 3) if info.kind == "discriminator" else 1
        x = torch.empty(1, channels, size, size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            y = model(x)
    return {
        "name": name,
        "kind": info.kind,
        "description": info.description,
        "paper": info.paper,
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9,
        "out_shape": tuple(y.shape),
        "config": dataclasses.asdict(model.config),
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        f"| model | kind | what it is | paper | params (M) | GFLOPs @ {SIZE}x{SIZE} | output @ {SIZE} |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        shape = "x".join(str(d) for d in r["out_shape"][1:])  # type: ignore[index]
        lines.append(
            f"| `{r['name']}` | {r['kind']} | {r['description']} | {r['paper']} | "
            f"{r['params'] / 1e6:.2f} | {r['gflops']:.1f} | {shape} |"
        )
    return "\n".join(lines)


def write_doc(text: str, path: Path = DOC) -> None:
    doc = path.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        raise SystemExit(f"{path}: markers {START} / {END} not found")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{text}\n{END}{tail}"
    atomic_write_text(path, new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update the table in {DOC}")
    args = parser.parse_args(argv)
    rows = [measure(name) for name in list_models()]
    text = table(rows)
    print(text)
    for r in rows:
        print(f"{r['name']}: {r['config']}", file=sys.stderr)
    if args.write:
        write_doc(text)
        print(f"updated {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
