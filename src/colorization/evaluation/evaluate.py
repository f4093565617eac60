"""Compare colorization models on folders of colour photos: tables, figures, AuC curves.

Protocol (see docs/evaluation.md):

* Every ground-truth (GT) photo of a group is loaded with :func:`colorization.image_io.load_image`.
  Default protocol: its short side is resized to ``size`` with PIL bicubic (antialiased) and the
  centre ``size x size`` square is cropped (no aspect distortion). ``native=True`` keeps the photo
  at its native resolution.
* Every model colorizes that GT image through :class:`colorization.inference.colorizer.Colorizer` — the same
  pipeline users run — which only reads the image's lightness L. The network sees L resized to the
  model's own working size (its config.json ``working_size``, as ``colorize`` uses it; or
  ``working_size`` for every model), and the predicted ab is upsampled onto the L of the evaluated
  image (``size x size``, or native resolution with ``native=True``). The ``gray`` baseline runs
  the same pipeline with ab = 0.
* Outputs are 8-bit sRGB images (as saved); metrics compare them with the 8-bit GT
  (:class:`colorization.evaluation.metrics.MetricSuite`).
* With ``limit``, a random subset of ``limit`` photos per group is drawn with ``seed`` (the same
  subset for every model); the file list is sorted, so results are deterministic.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from colorization import color, image_io
from colorization._extras import MissingExtraError, require
from colorization.evaluation import metrics as M
from colorization.inference.checkpoint import DEFAULT_MODEL, resolve_model_dir
from colorization.inference.colorizer import Colorizer

__all__ = [
    "EvaluationConfig",
    "EvalModel",
    "GrayBackend",
    "RESULT_KEYS",
    "GRAY",
    "DEFAULT",
    "parse_named",
    "resolve_model",
    "list_group_images",
    "load_ground_truth",
    "evaluate",
    "write_outputs",
    "merge_outputs",
]

GRAY = "gray"
DEFAULT = DEFAULT_MODEL
RESULT_KEYS = (
    "model", "group", "images", "psnr", "ssim", "st_lpips", "fid", "auc", "auc_rebalanced",
    "cf_pred", "cf_gt", "delta_cf", "ciede2000", "protocol", "notes",
)
"""Keys of every row of results.json (``None`` where a metric is not computable)."""

# columns of the comparison tables: key, header, format, better
_TABLE_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("psnr", "PSNR (dB)", "{:.2f}", "↑"),
    ("ssim", "SSIM", "{:.4f}", "↑"),
    ("st_lpips", "ST-LPIPS (vgg)", "{:.4f}", "↓"),
    ("fid", "FID", "{:.2f}", "↓"),
    ("auc", "AuC (%)", "{:.2f}", "↑"),
    ("auc_rebalanced", "AuC rebal. (%)", "{:.2f}", "↑"),
    ("ciede2000", "CIEDE2000", "{:.3f}", "↓"),
    ("cf_pred", "CF out", "{:.2f}", ""),
    ("cf_gt", "CF GT", "{:.2f}", ""),
    ("delta_cf", "ΔCF", "{:.2f}", "→0"),
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class EvaluationConfig:
    """Options of :func:`evaluate` (JSON-serialisable with :meth:`to_dict`).

    Attributes:
        size: default protocol: GT side length (short-side resize + centre crop).
        working_size: the Colorizer's working short side (the network's input resolution); None
            uses each model's own ``working_size`` from its config.json, i.e. exactly what users
            get from ``colorize``. The predicted ab is upsampled onto the full-resolution L.
        native: evaluate at native resolution.
        limit: at most this many photos per group (seeded random subset), None = all.
        batch_size: images per network / metric batch.
        device: "cpu", "cuda", "cuda:1"...; None: CUDA when available.
        seed: subset sampling seed (and torch's global seed).
        cf_variant: colourfulness variant ("abs" or "signed").
        st_lpips, fid, ciede2000: compute these (the slow ones can be switched off).
        figure_samples: rows of the sample figure (photos of the first group).
    """

    size: int = 256
    working_size: int | None = None
    native: bool = False
    limit: int | None = None
    batch_size: int = 8
    device: str | None = None
    seed: int = 0
    cf_variant: Literal["abs", "signed"] = "abs"
    st_lpips: bool = True
    fid: bool = True
    ciede2000: bool = True
    figure_samples: int = 6

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"size must be >= 32 (ST-LPIPS and SSIM need it), got {self.size}")
        if self.working_size is not None and self.working_size < 32:
            raise ValueError(f"working_size must be >= 32, got {self.working_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.cf_variant not in ("abs", "signed"):
            raise ValueError(f"cf_variant must be 'abs' or 'signed', got {self.cf_variant!r}")
        if self.figure_samples < 0:
            raise ValueError(f"figure_samples must be >= 0, got {self.figure_samples}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved_device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def protocol(self) -> str:
        working = (
            f"Colorizer working short side {self.working_size}"
            if self.working_size is not None
            else "Colorizer at each model's own working size (config.json)"
        )
        if self.native:
            return f"native resolution; {working}, ab upsampled onto full-resolution L; 8-bit outputs"
        return (
            f"short side resized to {self.size} (PIL bicubic) + centre crop {self.size}x{self.size}; "
            f"colorized from its L by the {working}, ab upsampled onto the {self.size}px L; 8-bit outputs"
        )


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class GrayBackend:
    """A :class:`colorization.inference.backends.Backend` that predicts ab = 0 (the ``gray`` baseline), so
    the baseline runs through exactly the same Colorizer pipeline as real models."""

    name = GRAY
    stride = 1
    working_size: int | None = None
    accepts_hints = False

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.config: dict[str, Any] = {"model": GRAY}

    def __call__(self, l_norm: torch.Tensor) -> torch.Tensor:
        """``l_norm`` (B,1,h,w) -> zeros (B,2,h,w) float32 on ``device``."""
        b, _, h, w = l_norm.shape
        return torch.zeros(b, 2, h, w, dtype=torch.float32, device=self.device)

    def __repr__(self) -> str:
        return f"GrayBackend(device={self.device})"


@dataclass
class EvalModel:
    """A model under evaluation: display name, the spec it came from, its Colorizer, and facts
    about it (registry name, head, where it was loaded from) for the report."""

    name: str
    spec: str
    colorizer: Any
    info: dict[str, Any] = field(default_factory=dict)
    kind: Literal["gray", "default", "folder"] = "folder"


def parse_named(text: str, what: str) -> tuple[str | None, str]:
    """Split ``NAME=VALUE`` (NAME: letters, digits, ``_.+-``); a text without a valid NAME part is
    returned as ``(None, text)``."""
    if "=" in text:
        name, value = text.split("=", 1)
        if _NAME_RE.match(name) and value:
            return name, value
        if not Path(text).exists():
            raise ValueError(
                f"{what} {text!r}: expected NAME=VALUE with NAME made of letters, digits, '_.+-'"
            )
    return None, text


def resolve_model(spec: str, device: torch.device, size: int | None) -> EvalModel:
    """Build the :class:`EvalModel` for ``spec``: ``gray``, ``default`` (the shipped model), or an
    exported model folder, optionally prefixed ``NAME=``.

    Raises:
        FileNotFoundError: the folder (or the shipped default model) does not exist.
        colorization.inference.checkpoint.CheckpointError: the folder is not a valid exported model.
    """
    name, target = parse_named(spec, "--model")
    if target == GRAY:
        col = Colorizer(GrayBackend(device), size=size, max_pixels=image_io.DEFAULT_MAX_PIXELS)
        return EvalModel(name or GRAY, spec, col, {"source": "ab = 0 (gray baseline)"}, GRAY)
    kind: Literal["default", "folder"] = "default" if target == DEFAULT else "folder"
    folder = resolve_model_dir(target)
    if not folder.is_dir():
        raise FileNotFoundError(f"--model {spec!r}: {folder} is not an exported model folder")
    col = Colorizer.from_pretrained(folder, device=device, size=size, precision="fp32")
    label = name or (DEFAULT if kind == "default" else folder.resolve().name or str(folder))
    cfg = dict(getattr(col.backend, "config", {}) or {})
    info = {"source": str(folder), "model": cfg.get("model"), "head": cfg.get("head")}
    return EvalModel(label, spec, col, info, kind)


def _unique_names(models: list[EvalModel]) -> None:
    seen: dict[str, int] = {}
    for m in models:
        if m.name in seen:
            seen[m.name] += 1
            m.name = f"{m.name}-{seen[m.name]}"
        else:
            seen[m.name] = 1


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def list_group_images(folder: str | os.PathLike, limit: int | None = None, seed: int = 0) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); with ``limit``, a sorted random subset of
    that many drawn with ``random.Random(seed)``.

    Raises:
        FileNotFoundError: the folder does not exist or holds no images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    files = sorted({f for f, _ in image_io.find_images([root], recursive=True)})
    if not files:
        raise FileNotFoundError(f"{root}: no images found (extensions {sorted(image_io.IMAGE_EXTENSIONS)})")
    if limit is not None and limit < len(files):
        files = sorted(random.Random(seed).sample(files, limit))
    return files


def load_ground_truth(path: Path, size: int | None) -> Image.Image:
    """Load a GT photo as RGB; with ``size``, short side -> ``size`` (PIL bicubic) and centre crop
    to ``size x size``. Raises :class:`colorization.image_io.ImageError` naming the file."""
    img = image_io.load_image(path)
    if size is None:
        return img
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    rows: list[dict[str, Any]]
    curves: dict[tuple[str, str], tuple[list[float], list[float]]]
    samples: dict[str, list[Image.Image]]  # "ground truth", "gray input", model names
    sample_group: str | None


def _to_batch(images: Sequence[Image.Image]) -> torch.Tensor:
    return torch.stack([image_io.pil_to_tensor(im) for im in images])


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def evaluate(
    models: Sequence[str],
    data: Mapping[str, str | os.PathLike],
    config: EvaluationConfig = EvaluationConfig(),
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate every model on every group; with ``out_dir``, write the report files there
    (see :func:`write_outputs`).

    Args:
        models: specs (``gray``, ``default``, an exported folder, each optionally ``NAME=...``).
        data: group name -> folder of colour photos (in the order the tables should show them).
        config: protocol and options.
        out_dir: output folder or None.
        progress: show tqdm progress bars.

    Returns:
        One dict per (model, group) with :data:`RESULT_KEYS`.
    """
    if not models:
        raise ValueError("no models to evaluate")
    if not data:
        raise ValueError("no data groups to evaluate")
    torch.manual_seed(config.seed)
    device = config.resolved_device()
    evals = [resolve_model(s, device, config.working_size) for s in models]
    _unique_names(evals)
    outcome = _run(evals, data, config, device, progress)
    if out_dir is not None:
        write_outputs(out_dir, outcome.rows, config, evals, outcome)
    return outcome.rows


def _run(
    evals: list[EvalModel],
    data: Mapping[str, str | os.PathLike],
    config: EvaluationConfig,
    device: torch.device,
    progress: bool,
) -> _Outcome:
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    samples: dict[str, list[Image.Image]] = {}
    sample_group: str | None = None
    gt_size = None if config.native else config.size
    for gi, (group, folder) in enumerate(data.items()):
        files = list_group_images(folder, config.limit, config.seed)
        gts = [load_ground_truth(f, gt_size) for f in files]
        if gi == 0 and config.figure_samples:
            sample_group = group
            picked = gts[: config.figure_samples]
            samples["ground truth"] = list(picked)
        # batches outside, models inside: each ground-truth batch's own metric work (Lab,
        # rebalancing weights, ST-LPIPS and Inception features) is done once for all models
        suites = {
            model.name: M.MetricSuite(
                device=device,
                use_st_lpips=config.st_lpips,
                use_fid=config.fid,
                use_ciede2000=config.ciede2000,
                cf_variant=config.cf_variant,
            )
            for model in evals
        }
        bar = tqdm(total=len(gts) * len(evals), desc=f"{group} ({len(evals)} models)", unit="img", disable=not progress)
        for start in range(0, len(gts), config.batch_size):
            chunk = gts[start : start + config.batch_size]
            target = None if config.native else _to_batch(chunk)
            caches: list[dict[str, Any]] = [{} for _ in chunk] if config.native else [{}]
            for model in evals:
                outs = model.colorizer.colorize_batch(chunk, batch_size=config.batch_size)
                if gi == 0 and start < config.figure_samples:
                    samples.setdefault(model.name, []).extend(outs[: config.figure_samples - start])
                suite = suites[model.name]
                if config.native:
                    for o, g, cache in zip(outs, chunk, caches):
                        suite.update(_to_batch([o]), _to_batch([g]), cache=cache)
                else:
                    suite.update(_to_batch(outs), target, cache=caches[0])
                bar.update(len(chunk))
        bar.close()
        for model in evals:
            suite = suites[model.name]
            res = suite.compute()
            c = suite.auc.curves()
            if c is not None:
                curves[(model.name, group)] = (c[0].tolist(), c[1].tolist())
            notes = list(res.pop("notes"))
            if model.kind == GRAY:
                notes.insert(0, "gray baseline: ab = 0 (the input's L only)")
            row = {"model": model.name, "group": group}
            row.update({k: _json_number(v) for k, v in res.items()})
            row["protocol"] = config.protocol()
            row["notes"] = notes
            rows.append({k: row.get(k) for k in RESULT_KEYS})
    if sample_group is not None:
        gray = samples.get("ground truth", [])
        samples["gray input"] = [_gray_of(im) for im in gray]
    return _Outcome(rows, curves, samples, sample_group)


def _gray_of(img: Image.Image) -> Image.Image:
    t = image_io.pil_to_tensor(img)
    return image_io.tensor_to_pil(color.rgb_to_gray(t))


# --------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        return "–"
    return spec.format(v)


def results_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The long table: one row per (model, group), notes joined with '; '."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_KEYS)
    for r in rows:
        out = []
        for k in RESULT_KEYS:
            v = r.get(k)
            if k == "notes":
                v = "; ".join(v or [])
            out.append("" if v is None else v)
        w.writerow(out)
    return buf.getvalue()


def results_markdown(
    rows: Sequence[Mapping[str, Any]], config: EvaluationConfig, evals: Sequence[EvalModel] = ()
) -> str:
    """results.md: protocol, the long table, and per-metric tables with groups side by side."""
    groups = list(dict.fromkeys(r["group"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["group"]): r for r in rows}
    lines = ["# Colorization evaluation", ""]
    lines.append(f"Protocol: {config.protocol()}.")
    lines.append("")
    lines.append(
        f"Metrics on 8-bit sRGB (data range 1): PSNR; SSIM (Gaussian 11x11, σ=1.5); "
        f"{M.ST_LPIPS_NAME}; {M.FID_NAME}, {M.FID_PROTOCOL}; raw-accuracy AuC over ab-error "
        f"thresholds 0..{M.AUC_MAX_THRESHOLD} (Zhang et al. 2016) and its class-rebalanced variant "
        f"(pixels weighted by 1/prior of their GT ab bin); CIEDE2000; colourfulness "
        f"(Hasler & Süsstrunk, variant '{config.cf_variant}') of outputs and GT, "
        f"ΔCF = CF(GT) − CF(output). '–' = not computable (see notes)."
    )
    lines.append("")
    if evals:
        lines.append("Models:")
        lines.append("")
        for e in evals:
            facts = ", ".join(f"{k}: {v}" for k, v in e.info.items() if v)
            lines.append(f"- **{e.name}** (`{e.spec}`) — {facts}")
        lines.append("")
    lines.append("Options: " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    lines.append("")
    lines.append("## All results")
    lines.append("")
    head = ["model", "group", "images"] + [f"{h} {b}".strip() for _, h, _, b in _TABLE_COLUMNS]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(_TABLE_COLUMNS)) + "|")
    for r in rows:
        cells = [str(r["model"]), str(r["group"]), str(r["images"])]
        cells += [_fmt(r.get(k), f) for k, _, f, _ in _TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if len(groups) > 1:
        lines.append("## Groups side by side")
        lines.append("")
        for key, header, f, better in _TABLE_COLUMNS:
            if key in ("cf_pred", "cf_gt"):
                continue
            lines.append(f"**{header}** {better}".rstrip())
            lines.append("")
            lines.append("| model | " + " | ".join(groups) + " |")
            lines.append("|---|" + "|".join(["---:"] * len(groups)) + "|")
            for m in models:
                cells = [_fmt(by.get((m, g), {}).get(key), f) for g in groups]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    notes = [(r["model"], r["group"], n) for r in rows for n in (r.get("notes") or [])]
    if notes:
        lines.append("## Notes")
        lines.append("")
        for m, g, n in notes:
            lines.append(f"- {m} / {g}: {n}")
        lines.append("")
    return "\n".join(lines)


def _savefig_atomic(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    image_io.atomic_write_bytes(path, buf.getvalue())


def plot_auc_curves(
    curves: Mapping[tuple[str, str], tuple[Sequence[float], Sequence[float]]], path: Path
) -> None:
    """Accuracy vs ab-error threshold, raw and rebalanced panels, one line per (model, group)."""
    matplotlib = require("matplotlib", "drawing the figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for (model, group), (raw, reb) in curves.items():
        t = np.arange(len(raw))
        label = f"{model} / {group} ({M.auc_from_curve(raw):.1f}%)"
        axes[0].plot(t, np.asarray(raw) * 100, label=label)
        axes[1].plot(t, np.asarray(reb) * 100, label=f"{model} / {group} ({M.auc_from_curve(reb):.1f}%)")
    for ax, title in zip(axes, ("raw accuracy", "class-rebalanced accuracy")):
        ax.set_title(title)
        ax.set_xlabel("ab error threshold (Lab units)")
        ax.set_xlim(0, M.AUC_MAX_THRESHOLD)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("% pixels within threshold")
    _savefig_atomic(fig, path)
    plt.close(fig)


def plot_samples(samples: Mapping[str, Sequence[Image.Image]], columns: Sequence[str], path: Path) -> None:
    """A grid: one row per sample photo, columns in ``columns`` order (missing ones skipped)."""
    matplotlib = require("matplotlib", "drawing the figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in columns if samples.get(c)]
    n = min(len(samples[c]) for c in cols) if cols else 0
    if n == 0:
        return
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.2 * n), squeeze=False)
    for j, c in enumerate(cols):
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(np.asarray(samples[c][i]))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(c, fontsize=9)
    fig.tight_layout()
    _savefig_atomic(fig, path)
    plt.close(fig)


def write_outputs(
    out_dir: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    config: EvaluationConfig,
    evals: Sequence[EvalModel] = (),
    outcome: _Outcome | None = None,
) -> dict[str, Path]:
    """Write results.json, results.csv, results.md, run.json and (given ``outcome``)
    auc_curves.json, auc_curves.png and samples.png into ``out_dir``; returns the paths written.

    The figures need matplotlib (the ``eval`` extra); without it they are left out, and run.json's
    ``figures_skipped`` maps each one to the reason."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results.json": out / "results.json",
        "results.csv": out / "results.csv",
        "results.md": out / "results.md",
        "run.json": out / "run.json",
    }
    results_json = json.dumps(list(rows), indent=2, allow_nan=False) + "\n"
    image_io.atomic_write_bytes(paths["results.json"], results_json.encode())
    image_io.atomic_write_bytes(paths["results.csv"], results_csv(rows).encode())
    image_io.atomic_write_bytes(paths["results.md"], results_markdown(rows, config, evals).encode())
    run = {
        "config": config.to_dict(),
        "protocol": config.protocol(),
        "models": [{"name": e.name, "spec": e.spec, **e.info} for e in evals],
        "metrics": {
            "st_lpips": M.ST_LPIPS_NAME,
            "fid": M.FID_NAME,
            "fid_protocol": M.FID_PROTOCOL,
            "auc_thresholds": f"0..{M.AUC_MAX_THRESHOLD} step 1, trapezoidal, normalised to 100%",
            "ssim": "Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1",
            "psnr": f"data range 1, MSE floor {M.PSNR_MSE_FLOOR}",
            "colorfulness": config.cf_variant,
        },
    }
    skipped: dict[str, str] = {}

    def figure(name: str, plot: Any, *args: Any) -> None:
        # the tables are the result; a figure that needs a missing extra is left out and said so
        try:
            plot(*args, out / name)
        except MissingExtraError as exc:
            skipped[name] = str(exc)
        else:
            paths[name] = out / name

    if outcome is not None:
        if outcome.curves:
            paths["auc_curves.json"] = out / "auc_curves.json"
            payload = [
                {"model": m, "group": g, "raw": raw, "rebalanced": reb}
                for (m, g), (raw, reb) in outcome.curves.items()
            ]
            image_io.atomic_write_bytes(paths["auc_curves.json"], json.dumps(payload).encode())
            figure("auc_curves.png", plot_auc_curves, outcome.curves)
        if outcome.samples:
            names = [e.name for e in evals if e.kind != GRAY]
            figure("samples.png", plot_samples, outcome.samples, ["ground truth", "gray input", *names])
    if skipped:
        run["figures_skipped"] = skipped
    image_io.atomic_write_bytes(paths["run.json"], (json.dumps(run, indent=2) + "\n").encode())
    return paths


#: options that must agree for rows of separate runs to be comparable
MERGE_PROTOCOL_KEYS = ("size", "working_size", "native", "limit", "seed", "cf_variant")


def merge_outputs(folders: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Merge the output folders of several :func:`evaluate` runs into one set of tables and plots.

    For models of one comparison evaluated in separate runs (e.g. as each training finished) on
    the same photos with the same protocol: every metric of a row depends only on that model's
    outputs and the ground truth (FID's real statistics come from the same photos), so such rows
    can share a table. Rows keep the order of ``folders``; a (model, group) row present in several
    runs must be identical there. Writes results.json/.csv/.md, run.json (with ``merged_from``) and
    auc_curves.json/.png into ``out_dir``; sample grids are not merged.

    Raises:
        ValueError: a folder is not an evaluation output, the runs' protocols differ
            (:data:`MERGE_PROTOCOL_KEYS`), or two runs disagree on a shared row.
    """
    if not folders:
        raise ValueError("no evaluation folders to merge")
    runs = []
    for folder in map(Path, folders):
        try:
            run = json.loads((folder / "run.json").read_text())
            rows = json.loads((folder / "results.json").read_text())
        except FileNotFoundError as exc:
            missing = Path(exc.filename).name
            raise ValueError(f"{folder} is not an evaluation output folder ({missing} missing)") from None
        curves_path = folder / "auc_curves.json"
        runs.append((folder, run, rows, json.loads(curves_path.read_text()) if curves_path.exists() else []))
    first_folder, first = runs[0][0], runs[0][1]["config"]
    for folder, run, _, _ in runs[1:]:
        other = run["config"]
        diff = {k: (first.get(k), other.get(k)) for k in MERGE_PROTOCOL_KEYS if first.get(k) != other.get(k)}
        if diff:
            raise ValueError(f"{folder} was evaluated with other options than {first_folder}: {diff}")
    rows_by: dict[tuple[str, str], dict[str, Any]] = {}
    curves: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    models: dict[str, dict[str, Any]] = {}
    for folder, run, rows, run_curves in runs:
        for row in rows:
            key = (row["model"], row["group"])
            if key in rows_by and rows_by[key] != row:
                raise ValueError(f"{folder} disagrees with an earlier run on model {key[0]!r}, group {key[1]!r}")
            rows_by.setdefault(key, row)
        for c in run_curves:
            curves.setdefault((c["model"], c["group"]), (c["raw"], c["rebalanced"]))
        for m in run["models"]:
            models.setdefault(m["name"], m)
    groups = list(dict.fromkeys(g for _, g in rows_by))
    keys = [(m, g) for g in groups for m in models if (m, g) in rows_by]
    config = EvaluationConfig(**{k: v for k, v in first.items() if k in EvaluationConfig.__dataclass_fields__})
    evals = [
        SimpleNamespace(name=m["name"], spec=m["spec"], info={k: v for k, v in m.items() if k not in ("name", "spec")})
        for m in models.values()
    ]
    merged_rows = [rows_by[k] for k in keys]
    outcome = _Outcome(merged_rows, {k: curves[k] for k in keys if k in curves}, {}, None)
    paths = write_outputs(out_dir, merged_rows, config, evals, outcome)  # type: ignore[arg-type]
    merged = json.loads(paths["run.json"].read_text())
    merged["merged_from"] = [str(f) for f, _, _, _ in runs]
    image_io.atomic_write_text(paths["run.json"], json.dumps(merged, indent=2) + "\n")
    return paths
