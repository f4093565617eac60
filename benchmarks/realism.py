"""Do the colours look real? FID (with a bootstrap interval), colourfulness, ST-LPIPS and PSNR of gray,
the shipped model and candidate models, on the val photos and the held-out slice of train/ (issue #29).

    python benchmarks/realism.py --model realism=runs/realism/model \\
        --saturations 0,0.25,0.5,0.75,1,1.25,1.5 --json docs/results/realism.json

    short: python benchmarks/realism.py --val-images 40 --holdout-images 40 --saturations 0.5,1 \\
        --no-st-lpips --threads 1 --contact-sheet none

Rows, the same photos for all (so every difference is paired):

* ``gray``: the photo's own L with a = b = 0 (``colorization.color.rgb_to_gray``), 8-bit;
* ``shipped``: the shipped default model at saturation 1: the reference of the paired differences;
* ``shipped@S``: the shipped model at chroma multiplier S, one row per ``--saturations`` value
  (the operating curve every candidate must beat at its own colourfulness);
* each ``--model NAME=SPEC``: SPEC is an exported model folder (``model.safetensors`` +
  ``config.json``) or ``default``, optionally followed by ``@saturation=S,blend=B``. ``blend`` is an
  ``effnet_fpn`` model's mix of its two heads, ``(1 - B) * regression + B * annealed_mean(logits)``
  (``EffNetFPNConfig.blend``; the shipped model uses 0): set on the loaded network only, as
  benchmarks/decodings.py does; a model without it refuses the option.

Photo sets (``--sets val,holdout``), exactly those of benchmarks/generalisation.py (``build_sets``):

* ``val``: the first ``--val-images`` photos of ``--val`` (all 970 by default);
* ``holdout``: the fixed held-out slice of the 17 recipe groups of ``--train``
  (``colorization.data.is_held_out``), grayscale photos and the least colourful ``--quantile``
  dropped as ``colorization train`` does (1,093 photos today; ``--holdout-images N``: a seeded
  subset). A model whose training config has no ``holdout: true`` (the shipped default) trained on
  these photos too: its rows are marked †.

Protocol per photo: the short side resized to ``--size`` and a centre square cropped; the model
colorizes it through :class:`colorization.Colorizer` at its working size (the model's config), 8-bit
output. A model folder (and blend) is run once per photo; its saturations are chroma multipliers on
the predicted ab, applied afterwards exactly as ``Colorizer(..., saturation=S)`` does
(:meth:`Colorizer.finish_array`). Printed per set and row:

* FID against the ground-truth crops (:class:`colorization.evaluation.perceptual.InceptionFeatures`,
  the project's FID protocol) with a 95 % bootstrap interval over photos: ``--bootstrap`` resamples
  of the photos with replacement, the truth's and the row's features resampled with the same
  indices, the percentile interval shifted by the bootstrap bias (a resample's FID is biased
  upwards, see :mod:`colorization.evaluation.bootstrap`; ``--fid-interval percentile`` or ``basic``
  for the others); FID / gray's; and
  ΔFID against ``shipped`` with the interval of the paired resampled differences;
* colourfulness (Hasler-Süsstrunk, ``colorization.color.colorfulness``): the mean and its ratio to
  the ground truth's mean;
* ST-LPIPS (vgg) against the ground truth, mean (``--no-st-lpips`` skips it: the slow part on a CPU);
* PSNR mean, and the paired difference against ``shipped`` and against ``gray``: mean ± 1.96 sd/sqrt(n)
  of the per-photo differences.

Per-photo results (Inception features, PSNR, colourfulness, ST-LPIPS) are cached under ``--cache``
(git-ignored ``runs/``), keyed by the model's weights and config (SHA-1), blend, saturation, working
size, ``--size``, set and photo, and by the source text of the code that makes and scores the
outputs (:data:`SCORING_CODE`, :data:`COLORIZING_CODE`), so a candidate added later costs only its
own photos and a code change is never served stale results; ``--cache
none`` computes everything afresh. ``--json`` writes every figure and the per-photo PSNRs;
``--contact-sheet`` saves 24 fixed val photos (chosen by a seed, one from each 24th of the val list):
truth | gray | shipped | candidates (``--sheet-models``), JPEG q90.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path


def _threads_from_argv(argv: list[str], default: int = 2) -> int:
    for i, a in enumerate(argv):
        try:
            if a == "--threads" and i + 1 < len(argv):
                return max(1, int(argv[i + 1]))
            if a.startswith("--threads="):
                return max(1, int(a.split("=", 1)[1]))
        except ValueError:
            return default
    return default


# before NumPy (OpenBLAS: the bootstrap's matrix products) and torch load
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(_threads_from_argv(sys.argv[1:])))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine_info, machine_lines, markdown_table  # noqa: E402
from generalisation import RECIPE_GROUPS, build_sets, ci95  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from tqdm import tqdm  # noqa: E402

from colorization import Colorizer, color, image_io  # noqa: E402
from colorization.evaluation import bootstrap as boot  # noqa: E402
from colorization.evaluation import metrics as M  # noqa: E402
from colorization.inference import checkpoint  # noqa: E402
from colorization.inference.colorizer import SATURATION_RANGE  # noqa: E402

SETS = ("val", "holdout")
RESERVED = ("gray", "shipped", "truth")
CACHE_VERSION = 1
"""Bump when the protocol changes: per-photo results cached by an older version are not reused."""
SCORING_CODE = ("evaluation/metrics.py", "evaluation/perceptual.py", "evaluation/structural.py", "color.py",
                "image_io")
"""Sources (under the ``colorization`` package) that decide every cached row: a change to any of
them makes the cache miss. A model row also depends on :data:`COLORIZING_CODE`."""
COLORIZING_CODE = ("inference", "models", "srgb8.py")


def code_digest(parts: tuple[str, ...]) -> str:
    """SHA-1 (20 hex) of the text of the package's ``parts`` (files, or every ``.py`` under a folder)."""
    import colorization

    root = Path(colorization.__file__).parent
    h = hashlib.sha1()
    for part in parts:
        path = root / part
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:20]
SHEET_PHOTOS = 24


# --------------------------------------------------------------------------------------------
# what is measured
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One row of the tables: gray, or a model folder at a blend and a saturation."""

    name: str
    kind: str  # "gray" | "model"
    path: str = "default"
    blend: float | None = None  # None: the model's own
    saturation: float = 1.0
    sweep: bool = False
    spec: str = ""


def parse_model(spec: str) -> Row:
    """``NAME=FOLDER[@saturation=S,blend=B]`` (a bare number after '@' is a saturation) -> Row."""
    name, eq, rest = spec.partition("=")
    if not eq:
        name, rest = spec, spec
    path, _, options = rest.partition("@")
    if not name or not path:
        raise SystemExit(f"--model {spec!r}: expected NAME=FOLDER[@saturation=S,blend=B]")
    if name in RESERVED:
        raise SystemExit(f"--model {spec!r}: {name!r} is a reserved row name ({', '.join(RESERVED)})")
    row = Row(name, "model", path, spec=rest)
    for part in filter(None, options.split(",")):
        key, eq, value = part.partition("=")
        key, value = (key, value) if eq else ("saturation", key)
        try:
            number = float(value)
        except ValueError:
            raise SystemExit(f"--model {spec!r}: {part!r} after '@' needs a number") from None
        if key == "saturation":
            lo, hi = SATURATION_RANGE
            if not lo <= number <= hi:
                raise SystemExit(f"--model {spec!r}: saturation must be in [{lo:g}, {hi:g}]")
            row.saturation = number
        elif key == "blend":
            if not 0.0 <= number <= 1.0:
                raise SystemExit(f"--model {spec!r}: blend must be in [0, 1]")
            row.blend = number
        else:
            raise SystemExit(f"--model {spec!r}: unknown option {key!r} after '@' (saturation=S, blend=B)")
    return row


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER[@saturation=S,blend=B]",
                   help="a candidate: an exported model folder or 'default' (repeatable)")
    p.add_argument("--saturations", default="", metavar="S1,S2,...",
                   help="add the shipped model at these chroma multipliers (rows shipped@S)")
    p.add_argument("--sets", default="val,holdout", help="comma-separated: val, holdout")
    p.add_argument("--val", default="../shared/data/val")
    p.add_argument("--train", default="../shared/data/train")
    p.add_argument("--groups", nargs="+", default=list(RECIPE_GROUPS), help="groups of the held-out slice")
    p.add_argument("--quantile", type=float, default=0.26, help="colourfulness filter of the held-out slice")
    p.add_argument("--val-images", type=int, default=None, help="the first N val photos (default all)")
    p.add_argument("--holdout-images", type=int, default=None, help="a seeded subset of N held-out photos")
    p.add_argument("--seed", type=int, default=0, help="seed of --holdout-images' subset")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-st-lpips", dest="st_lpips", action="store_false", help="skip ST-LPIPS (slow on a CPU)")
    p.add_argument("--bootstrap", type=int, default=boot.DEFAULT_RESAMPLES, help="FID resamples (B)")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--fid-interval", choices=boot.METHODS, default="shifted")
    p.add_argument("--cache", default="runs/realism_bench_cache", help="per-photo cache folder ('none': off)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--contact-sheet", default="docs/results/realism_contact_sheet.jpg", help="'none': no sheet")
    p.add_argument("--sheet-models", default=None,
                   help="comma-separated rows for the sheet's candidate columns (default: every --model)")
    p.add_argument("--sheet-seed", type=int, default=29)
    p.add_argument("--sheet-cell", type=int, default=160, help="px per photo in the sheet")
    args = p.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    if not args.sets or any(s not in SETS for s in args.sets):
        p.error(f"--sets takes a comma-separated list of {', '.join(SETS)}, got {','.join(args.sets)!r}")
    for name in ("val_images", "holdout_images"):
        if getattr(args, name) is not None and getattr(args, name) < 2:
            p.error(f"--{name.replace('_', '-')} must be >= 2 (FID needs 2 photos)")
    if args.bootstrap < 1 or args.size < 32 or args.batch_size < 1 or args.threads < 1:
        p.error("--bootstrap, --batch-size and --threads must be >= 1 and --size >= 32")
    return args


def build_rows(args: argparse.Namespace) -> list[Row]:
    rows = [Row("gray", "gray"), Row("shipped", "model", "default", spec="default")]
    try:
        sats = [float(s) for s in args.saturations.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--saturations takes comma-separated numbers, got {args.saturations!r}") from None
    lo, hi = SATURATION_RANGE
    for s in sorted(set(sats)):
        if not lo <= s <= hi:
            raise SystemExit(f"--saturations: {s:g} is outside [{lo:g}, {hi:g}]")
        if s != 1.0:
            rows.append(Row(f"shipped@{s:g}", "model", "default", saturation=s, sweep=True,
                            spec=f"default@saturation={s:g}"))
    for spec in args.model:
        rows.append(parse_model(spec))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise SystemExit(f"row names must be unique, got {names}")
    return rows


# --------------------------------------------------------------------------------------------
# models: one per (folder, blend), with an identity for the cache
# --------------------------------------------------------------------------------------------


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass
class Model:
    """A model folder at one blend: the Colorizer is loaded on first use."""

    folder: Path
    blend: float | None
    identity: dict
    trained_on_holdout: bool = True
    _colorizer: Colorizer | None = None

    @property
    def colorizer(self) -> Colorizer:
        if self._colorizer is None:
            col = Colorizer.from_pretrained(str(self.folder), device="cpu")
            if self.blend is not None:
                net = col.backend.model.network
                net.config = dataclasses.replace(net.config, blend=float(self.blend))
            self._colorizer = col
        return self._colorizer


def resolve_models(rows: list[Row]) -> dict[str, Model]:
    """Row name -> Model; rows of the same folder and effective blend share one Model."""
    by_key: dict[tuple, Model] = {}
    out: dict[str, Model] = {}
    for row in rows:
        if row.kind != "model":
            continue
        try:
            folder = checkpoint.resolve_model_dir(None if row.path == "default" else row.path).resolve()
            config = checkpoint.read_config(folder)
        except (FileNotFoundError, checkpoint.CheckpointError) as err:
            raise SystemExit(f"{row.name}: {err}") from None
        own = config.get("model_config", {}).get("blend")
        if row.blend is not None and own is None:
            raise SystemExit(f"{row.name}: {config.get('model')} models have no blend of heads (only effnet_fpn)")
        blend = own if row.blend is None else row.blend
        key = (str(folder), None if blend is None else float(blend))
        if key not in by_key:
            identity = {"weights": _sha1(folder / checkpoint.WEIGHTS_NAME),
                        "config": _sha1(folder / checkpoint.CONFIG_NAME),
                        "blend": key[1], "working_size": config.get("working_size")}
            train = config.get("training", {}).get("train_config", {}) or {}
            by_key[key] = Model(folder, None if row.blend is None or row.blend == own else row.blend, identity,
                                trained_on_holdout=not train.get("holdout", False))
        out[row.name] = by_key[key]
    return out


# --------------------------------------------------------------------------------------------
# the per-photo cache
# --------------------------------------------------------------------------------------------

FEATURE_DIM = 2048


class PhotoCache:
    """Per-photo results of one output (truth, gray, or a model at a blend and saturation) on one
    set: Inception features (float32), PSNR, colourfulness, ST-LPIPS (NaN: not computed), in an
    ``.npz`` written atomically. ``folder`` None: in memory only."""

    def __init__(self, folder: Path | None, key: dict) -> None:
        text = json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True)
        digest = hashlib.sha1(text.encode()).hexdigest()[:20]
        self.path = None if folder is None else folder / f"{key['set']}-{key['kind']}-{digest}.npz"
        self.key_text = text
        self.rows: dict[str, dict[str, np.ndarray | float]] = {}
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    if str(z["key"]) == text:
                        # each z[name] reads the whole array again: read each once (a row view of a
                        # fresh read per photo would keep N copies of the feature matrix alive)
                        feat, psnr, cf, stl = z["feat"], z["psnr"], z["cf"], z["st_lpips"]
                        for i, f in enumerate(z["files"]):
                            self.rows[str(f)] = {"feat": feat[i], "psnr": float(psnr[i]), "cf": float(cf[i]),
                                                 "st_lpips": float(stl[i])}
            except (OSError, KeyError, ValueError) as err:
                print(f"warning: ignoring an unreadable cache file {self.path}: {err}", file=sys.stderr)

    def missing(self, photo: str, what: str) -> bool:
        r = self.rows.get(photo)
        if r is None:
            return True
        if what == "feat":
            return not bool(np.isfinite(r["feat"]).all())
        return not math.isfinite(r[what])  # type: ignore[arg-type]

    def put(self, photo: str, **values) -> None:
        r = self.rows.setdefault(photo, {"feat": np.full(FEATURE_DIM, np.nan, np.float32), "psnr": math.nan,
                                         "cf": math.nan, "st_lpips": math.nan})
        r.update(values)
        self.dirty = True

    def column(self, photos: list[str], what: str) -> np.ndarray:
        if what == "feat":
            return np.stack([self.rows[p]["feat"] for p in photos]).astype(np.float64)
        return np.array([self.rows[p][what] for p in photos], dtype=np.float64)

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        files = sorted(self.rows)
        buf = io.BytesIO()
        np.savez(buf, key=np.array(self.key_text), files=np.array(files),
                 feat=np.stack([self.rows[f]["feat"] for f in files]).astype(np.float32),
                 **{k: np.array([self.rows[f][k] for f in files], dtype=np.float64)
                    for k in ("psnr", "cf", "st_lpips")})
        image_io.atomic_write_bytes(self.path, buf.getvalue())
        self.dirty = False


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


class Clock:
    """Seconds and item counts per part (colorize, Inception, ST-LPIPS...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}

    def add(self, part: str, t0: float, items: int) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0
        self.items[part] = self.items.get(part, 0) + items

    def per_item(self) -> dict[str, dict[str, float]]:
        return {k: {"seconds": round(s, 2), "items": self.items[k],
                    "per_item_s": round(s / self.items[k], 4) if self.items[k] else float("nan")}
                for k, s in self.seconds.items()}


def gray_of(gt: torch.Tensor) -> torch.Tensor:
    """The gray baseline of float crops (B,3,S,S): own L, a = b = 0, quantised to 8 bits."""
    return M.quantize_8bit(color.rgb_to_gray(gt))


def model_outputs(col: Colorizer, gt_u8: torch.Tensor, saturations: list[float], batch_size: int,
                  clock: Clock | None = None) -> dict[float, torch.Tensor]:
    """The colorizer's 8-bit outputs of uint8 crops (B,3,S,S) at each saturation: one network pass,
    then ``Colorizer.finish_array`` per saturation (what ``col(image, saturation=s)`` returns).
    Returns saturation -> float (B,3,S,S) in [0, 1]."""
    t0 = time.perf_counter()
    preps = [col.prepare(image_io.tensor_to_pil(x)) for x in gt_u8]
    abs_ = col.predict(preps, batch_size)
    if clock is not None:
        clock.add("colorize (prepare + network)", t0, len(preps))
    out = {}
    for s in saturations:
        t0 = time.perf_counter()
        arrays = [col.finish_array(p, ab, s, bits=8) for p, ab in zip(preps, abs_)]
        out[s] = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        if clock is not None:
            clock.add("recombine (per saturation)", t0, len(preps))
    return out


@dataclasses.dataclass
class SetData:
    name: str
    dataset: object
    photos: list[str]  # resolved paths, the cache keys
    labels: list[str]  # paths as listed (for the JSON)


def load_sets(args: argparse.Namespace, wanted: list[str]) -> dict[str, SetData]:
    ns = argparse.Namespace(sets=wanted, size=args.size, val=args.val, train=args.train, groups=args.groups,
                            quantile=args.quantile, seen=1, holdout_images=args.holdout_images, seed=args.seed)
    out = {}
    for name, ds in build_sets(ns).items():
        n = len(ds) if name != "val" or args.val_images is None else min(args.val_images, len(ds))
        files = ds.files[:n]
        out[name] = SetData(name, ds, [str(Path(f).resolve()) for f in files], [str(f) for f in files])
    return out


def measure_set(sd: SetData, rows: list[Row], models: dict[str, Model], args: argparse.Namespace,
                cache_dir: Path | None, clock: Clock) -> dict[str, PhotoCache]:
    """Fill the caches of the truth and every output on the photos of ``sd``; return them by row
    name (plus "truth")."""
    common = {"set": sd.name, "size": args.size, "scoring_code": code_digest(SCORING_CODE)}
    colorizing = code_digest(COLORIZING_CODE)
    caches: dict[str, PhotoCache] = {"truth": PhotoCache(cache_dir, {**common, "kind": "truth"}),
                                     "gray": PhotoCache(cache_dir, {**common, "kind": "gray"})}
    variants: dict[tuple[int, float], PhotoCache] = {}
    for row in rows:
        if row.kind == "model":
            m = models[row.name]
            vkey = (id(m), row.saturation)
            if vkey not in variants:
                variants[vkey] = PhotoCache(cache_dir, {**common, "kind": "model", **m.identity,
                                                        "saturation": row.saturation, "colorizing_code": colorizing})
            caches[row.name] = variants[vkey]
    groups: dict[int, tuple[Model, dict[float, PhotoCache]]] = {}
    for (mid, sat), cache in variants.items():
        model = next(m for m in models.values() if id(m) == mid)
        groups.setdefault(mid, (model, {}))[1][sat] = cache
    scored = [caches["gray"], *(c for _, by_sat in groups.values() for c in by_sat.values())]
    needed = ["psnr", "cf", "feat"] + (["st_lpips"] if args.st_lpips else [])

    def missing(cache: PhotoCache, photo: str) -> bool:
        return any(cache.missing(photo, w) for w in needed)

    work = [i for i, p in enumerate(sd.photos)
            if caches["truth"].missing(p, "feat") or any(missing(c, p) for c in scored)]
    if not work:
        return caches
    inception = M.load_inception("cpu")
    lpips = M.load_st_lpips("cpu") if args.st_lpips else None
    last_save = time.perf_counter()

    def score(cache: PhotoCache, idx: list[int], pred: torch.Tensor, gt: torch.Tensor, st_truth) -> None:
        photos = [sd.photos[i] for i in idx]
        psnr = M.psnr(pred, gt).numpy()
        cf = color.colorfulness(pred.double()).numpy()
        want_feat = [j for j, p in enumerate(photos) if cache.missing(p, "feat")]
        feats: dict[int, np.ndarray] = {}
        if want_feat:
            t0 = time.perf_counter()
            f = inception(pred[want_feat])
            clock.add("Inception features", t0, len(want_feat))
            feats = {j: f[k].astype(np.float32) for k, j in enumerate(want_feat)}
        stl: dict[int, float] = {}
        want_st = [j for j, p in enumerate(photos) if lpips is not None and cache.missing(p, "st_lpips")]
        if want_st:
            t0 = time.perf_counter()
            with torch.inference_mode():
                d = lpips.distance(lpips.features(pred[want_st]), [t[want_st] for t in st_truth()])
            clock.add("ST-LPIPS (output side)", t0, len(want_st))
            stl = {j: float(d[k]) for k, j in enumerate(want_st)}
        for j, p in enumerate(photos):
            values = {"psnr": float(psnr[j]), "cf": float(cf[j])}
            if j in feats:
                values["feat"] = feats[j]
            if j in stl:
                values["st_lpips"] = stl[j]
            cache.put(p, **values)

    bar = tqdm(total=len(work), desc=f"{sd.name}: {len(work)} photos to measure", unit="photo",
               disable=not sys.stderr.isatty())
    for start in range(0, len(work), args.batch_size):
        idx = work[start : start + args.batch_size]
        t0 = time.perf_counter()
        gt_u8 = torch.stack([sd.dataset[i]["rgb"] for i in idx])  # type: ignore[index]
        gt = gt_u8.float() / 255.0
        clock.add("load + crop", t0, len(idx))
        truth_feats: list | None = None

        def st_truth(gt=gt):
            nonlocal truth_feats
            if truth_feats is None:
                t0 = time.perf_counter()
                with torch.inference_mode():
                    truth_feats = lpips.features(gt)  # type: ignore[union-attr]
                clock.add("ST-LPIPS (truth side, once per photo)", t0, len(gt))
            return truth_feats

        truth = caches["truth"]
        want = [j for j, i in enumerate(idx) if truth.missing(sd.photos[i], "feat")]
        if want:
            t0 = time.perf_counter()
            f = inception(gt[want])
            clock.add("Inception features", t0, len(want))
            cf = color.colorfulness(gt[want].double()).numpy()
            for k, j in enumerate(want):
                truth.put(sd.photos[idx[j]], feat=f[k].astype(np.float32), cf=float(cf[k]))
        sub = [j for j, i in enumerate(idx) if missing(caches["gray"], sd.photos[i])]
        if sub:
            score(caches["gray"], [idx[j] for j in sub], gray_of(gt[sub]), gt[sub],
                  lambda sub=sub: [t[sub] for t in st_truth()])
        for model, by_sat in groups.values():
            sub = [j for j, i in enumerate(idx) if any(missing(c, sd.photos[i]) for c in by_sat.values())]
            if not sub:
                continue
            outs = model_outputs(model.colorizer, gt_u8[sub], sorted(by_sat), args.batch_size, clock)
            for sat, cache in by_sat.items():
                score(cache, [idx[j] for j in sub], outs[sat], gt[sub], lambda sub=sub: [t[sub] for t in st_truth()])
        bar.update(len(idx))
        if time.perf_counter() - last_save > 120:  # keep the work of a long run if it is stopped
            for c in {id(c): c for c in caches.values()}.values():
                c.save()
            last_save = time.perf_counter()
    bar.close()
    for c in {id(c): c for c in caches.values()}.values():
        c.save()
    return caches


def fid_result(fb: boot.FIDBootstrap, real: np.ndarray, fake: np.ndarray, cache_dir: Path | None,
               args: argparse.Namespace, clock: Clock) -> boot.BootstrapResult:
    """FID with its bootstrap interval; the resampled values are cached by the features' hash."""
    h = hashlib.sha1()
    for a in (real, fake):
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    h.update(f"{args.bootstrap}|{args.bootstrap_seed}|v{CACHE_VERSION}".encode())
    path = None if cache_dir is None else cache_dir / f"fid-boot-{h.hexdigest()[:24]}.npy"
    if path is not None and path.is_file():
        values = np.load(path)
        point, samples = float(values[0]), values[1:]
        return boot.result_from_samples(point, samples, 0.95, args.fid_interval)
    t0 = time.perf_counter()
    r = fb(fake)
    clock.add("FID bootstrap (per row and set)", t0, 1)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, np.concatenate([[r.point], r.samples]))
        image_io.atomic_write_bytes(path, buf.getvalue())
    return r


def summarise(sd: SetData, rows: list[Row], models: dict[str, Model], caches: dict[str, PhotoCache],
              args: argparse.Namespace, cache_dir: Path | None, clock: Clock) -> dict:
    photos = sd.photos
    truth = caches["truth"]
    real = truth.column(photos, "feat")
    cf_truth = truth.column(photos, "cf")
    fb = boot.FIDBootstrap(real, n_boot=args.bootstrap, seed=args.bootstrap_seed, method=args.fid_interval)
    out: dict = {"photos": len(photos), "truth_colourfulness": float(cf_truth.mean()), "rows": {}}
    fids: dict[str, boot.BootstrapResult] = {}
    per_row: dict[str, dict[str, np.ndarray]] = {}
    for row in tqdm(rows, desc=f"{sd.name}: FID bootstrap", disable=not sys.stderr.isatty()):
        c = caches[row.name]
        fids[row.name] = fid_result(fb, real, c.column(photos, "feat"), cache_dir, args, clock)
        per_row[row.name] = {k: c.column(photos, k) for k in ("psnr", "cf", "st_lpips")}
    for row in rows:
        m, f = per_row[row.name], fids[row.name]
        d_ship = m["psnr"] - per_row["shipped"]["psnr"]
        d_gray = m["psnr"] - per_row["gray"]["psnr"]
        dfid = boot.difference(f, fids["shipped"])
        out["rows"][row.name] = {
            "spec": row.spec or row.name, "path": row.path if row.kind == "model" else None,
            "blend": row.blend, "saturation": row.saturation if row.kind == "model" else None, "sweep": row.sweep,
            "trained_on_these_photos": sd.name == "holdout" and row.kind == "model"
            and models[row.name].trained_on_holdout,
            "fid": f.to_dict(), "fid_over_gray": f.point / fids["gray"].point,
            "fid_vs_shipped": dfid.to_dict(),
            "colourfulness": float(m["cf"].mean()), "colourfulness_ratio": float(m["cf"].mean() / cf_truth.mean()),
            "st_lpips": float(m["st_lpips"].mean()) if args.st_lpips else None,
            "psnr": float(m["psnr"].mean()),
            "psnr_vs_shipped": {"mean": float(d_ship.mean()), "ci95": ci95(d_ship)},
            "psnr_vs_gray": {"mean": float(d_gray.mean()), "ci95": ci95(d_gray)},
            "per_photo_psnr": [round(float(x), 3) for x in m["psnr"]],
        }
    return out


def table(summary: dict, rows: list[Row], args: argparse.Namespace) -> str:
    headers = ["row", "FID [95 % CI]", "FID / gray", "ΔFID vs shipped [95 % CI]", "colourfulness (x truth)"]
    headers += ["ST-LPIPS"] if args.st_lpips else []
    headers += ["PSNR (dB)", "ΔPSNR vs shipped", "ΔPSNR vs gray"]
    body = []
    for row in rows:
        r = summary["rows"][row.name]
        f, d = r["fid"], r["fid_vs_shipped"]
        user = row.kind == "model" and not row.sweep and row.name != "shipped"
        cells = [row.name + (f" ({row.spec})" if user else "") + (" †" if r["trained_on_these_photos"] else ""),
                 f"{f['point']:.2f} [{f['low']:.2f}, {f['high']:.2f}]", f"{r['fid_over_gray']:.3f}",
                 "—" if row.name == "shipped" else f"{d['point']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]",
                 f"{r['colourfulness']:.1f} ({r['colourfulness_ratio']:.2f}x)"]
        if args.st_lpips:
            cells.append(f"{r['st_lpips']:.4f}")
        ds, dg = r["psnr_vs_shipped"], r["psnr_vs_gray"]
        cells += [f"{r['psnr']:.2f}",
                  "—" if row.name == "shipped" else f"{ds['mean']:+.3f} ± {ds['ci95']:.3f}",
                  "—" if row.name == "gray" else f"{dg['mean']:+.3f} ± {dg['ci95']:.3f}"]
        body.append(cells)
    return markdown_table(headers, body)


# --------------------------------------------------------------------------------------------
# the contact sheet
# --------------------------------------------------------------------------------------------


def sheet_photos(n: int, count: int, seed: int) -> list[int]:
    """``count`` indices of ``n`` photos, one drawn (seeded) from each ``count``-th of the list."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, n, min(count, n) + 1).astype(int)
    return [int(rng.integers(a, max(a + 1, b))) for a, b in zip(edges[:-1], edges[1:])]


def contact_sheet(path: Path, val: SetData, rows: list[Row], models: dict[str, Model],
                  names: list[str], args: argparse.Namespace) -> None:
    """Truth | gray | shipped | each named row for :data:`SHEET_PHOTOS` fixed val photos, JPEG q90."""
    ds = val.dataset
    pick = sheet_photos(len(ds), SHEET_PHOTOS, args.sheet_seed)  # type: ignore[arg-type]
    gt_u8 = torch.stack([ds[i]["rgb"] for i in pick])  # type: ignore[index]
    gt = gt_u8.float() / 255.0
    by_name = {r.name: r for r in rows}
    columns: list[tuple[str, torch.Tensor]] = [("truth", gt), ("gray", gray_of(gt))]
    done: dict[tuple[int, float], torch.Tensor] = {}
    for name in ["shipped", *(n for n in names if n != "shipped")]:
        row = by_name[name]
        if row.kind == "gray":
            continue
        model = models[name]
        key = (id(model), row.saturation)
        if key not in done:
            done[key] = model_outputs(model.colorizer, gt_u8, [row.saturation], args.batch_size)[row.saturation]
        columns.append((name, done[key]))
    cell, pad, top = args.sheet_cell, 4, 22
    width = len(columns) * (cell + pad) + pad
    height = top + len(pick) * (cell + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for c, (label, images) in enumerate(columns):
        x = pad + c * (cell + pad)
        text = label if draw.textlength(label, font=font) <= cell else label[: max(1, cell // 8)] + "…"
        draw.text((x + 2, 4), text, fill=(0, 0, 0), font=font)
        for r, img in enumerate(images):
            tile = image_io.tensor_to_pil(img).resize((cell, cell), Image.LANCZOS)
            sheet.paste(tile, (x, top + r * (cell + pad)))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=90)
    image_io.atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)  # the 8-bit recombination's strips
    except ImportError:  # pragma: no cover
        pass
    rows = build_rows(args)
    models = resolve_models(rows)
    sheet_names: list[str] = []
    if args.contact_sheet != "none":
        sheet_names = ([n for n in args.sheet_models.split(",") if n] if args.sheet_models is not None
                       else [r.name for r in rows if r.kind == "model" and r.name != "shipped" and not r.sweep])
        unknown = [n for n in sheet_names if n not in {r.name for r in rows}]
        if unknown:
            raise SystemExit(f"--sheet-models: no rows named {unknown}")
    cache_dir = None if args.cache == "none" else Path(args.cache)
    info = machine_info()
    t_start = time.perf_counter()
    want_sets = list(args.sets)
    if args.contact_sheet != "none" and "val" not in want_sets:
        want_sets.append("val")  # the sheet's photos come from val
    sets = load_sets(args, want_sets)
    clock = Clock()
    summaries = {}
    for name in args.sets:
        caches = measure_set(sets[name], rows, models, args, cache_dir, clock)
        summaries[name] = summarise(sets[name], rows, models, caches, args, cache_dir, clock)
    wall = time.perf_counter() - t_start

    print("\n".join(machine_lines(info)))
    print(f"threads: {args.threads}; {args.size} px crops; FID interval: {args.fid_interval}, "
          f"{args.bootstrap} resamples of the photos (seed {args.bootstrap_seed}); {wall:.0f} s")
    for name in args.sets:
        s = summaries[name]
        print(f"\n### {name}: {s['photos']} photos; ground-truth colourfulness {s['truth_colourfulness']:.1f}\n")
        print(table(s, rows, args))
        if any(r["trained_on_these_photos"] for r in s["rows"].values()):
            print("\n† trained on these photos too (its training config has no `holdout: true`): "
                  "not figures of unseen photos")
    timing = clock.per_item()
    if timing:
        print("\ntime per item (this run's new work only; cached photos cost nothing):")
        for part, t in timing.items():
            print(f"  {part}: {t['per_item_s']:.3f} s x {t['items']} = {t['seconds']:.0f} s")
    if args.contact_sheet != "none":
        contact_sheet(Path(args.contact_sheet), sets["val"], rows, models, sheet_names, args)
        print(f"wrote {args.contact_sheet}")
    if args.json is not None:
        payload = {
            "args": json.loads(json.dumps(vars(args), default=str)),
            "machine": info, "wall_s": round(wall, 1), "timing": timing,
            "protocol": {"fid": M.FID_NAME, "fid_protocol": M.FID_PROTOCOL, "st_lpips": M.ST_LPIPS_NAME,
                         "colourfulness": "Hasler-Süsstrunk (colorization.color.colorfulness, 'abs')"},
            "photos": {k: sets[k].labels for k in args.sets},
            "sets": summaries,
        }
        text = json.dumps(payload, indent=1, default=float)
        if len(text.encode()) > 1_000_000:  # keep it small: drop the per-photo PSNRs
            for s in summaries.values():
                for r in s["rows"].values():
                    r.pop("per_photo_psnr", None)
            payload["note"] = "per-photo PSNRs left out to keep the file under 1 MB"
            text = json.dumps(payload, indent=1, default=float)
        image_io.atomic_write_text(args.json, text)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
