"""The training configuration: :class:`TrainConfig`, its validation, config files and overrides.

This module imports no torch (the objectives and colour tables are imported when a config is
validated), so the command line can build its options from the dataclass fields cheaply.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "TrainConfig",
    "RUNTIME_FIELDS",
    "REQUIRED_FIELDS",
    "MAPPING_FIELDS",
    "field_docs",
    "unknown_field_message",
    "load_config_file",
    "resolve_config",
]


class ConfigError(ValueError):
    """Invalid training configuration; the message names the field (and file, if any)."""


#: fields that may differ between a run and its resumption (they do not change the maths)
RUNTIME_FIELDS = frozenset(
    {"out", "device", "amp", "workers", "threads", "compile", "val_every", "save_every", "log_every", "val_images",
     "sample_images", "working_size", "keep_best", "curve_images", "compact_state", "curve_csv",
     "snapshot_every"}
)

#: fields without a default: a config file, the command line or a resumed run must give them
REQUIRED_FIELDS = ("model", "data", "out")

#: mapping fields: overrides are merged key by key into the file's mapping
MAPPING_FIELDS = ("model_config", "objective_options", "discriminator_config")

_AMP_MODES = ("auto", "bf16", "off")
_SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (serialised to ``OUT/train_config.json``).

    ``batch_size`` is per process: a ``torchrun`` job with N processes sees ``N * batch_size``
    images per step.  ``stages`` is a list of dicts, each ``{"steps": n, <objective stage
    options>..., "lr_scale": s}`` (see :meth:`Objective.configure`); stages run in order and the
    last one continues to the end of training.  ``warmup_steps`` and ``val_crop`` of ``None`` are
    resolved by :func:`resolve_config` (``min(1000, steps // 20)`` and ``crop``).

    Fields (each one is a ``colorization train`` option, ``--set FIELD=VALUE`` sets any):

    model: Registered generator name (colorization.list_models("generator")).
    data: Training image folder (repeatable).
    out: Output folder (train_config.json, log.jsonl, samples/, state/, model/).
    val: Validation image folder (deterministic centre crops); none: no validation.
    model_config: Network config fields, KEY=VALUE or a JSON object (repeatable; merged key by
        key into the config file's).
    objective: regression | classification | gan | hybrid | realism.
    objective_options: Objective options, KEY=VALUE or a JSON object (repeatable; e.g. loss=l1,
        ssim_weight=0.001, gan_loss=vanilla, aux_weight=0.1).
    stages: Staged schedule, a list of {steps, objective options..., lr_scale, crop, groups}
        (YAML or JSON); the last stage runs to the end of training. A stage's groups limits its
        photos to those data groups (e.g. the small photos at a small crop first).
    discriminator: Registered discriminator (critic) of the gan and realism objectives.
    discriminator_config: Discriminator config fields, KEY=VALUE or a JSON object (repeatable).
    steps: Total optimisation steps.
    batch_size: Images per step per process.
    crop: Training crop side in pixels (a multiple of the model stride).
    lr: Peak learning rate (AdamW).
    d_lr: Discriminator learning rate; none: lr.
    betas: AdamW betas.
    weight_decay: AdamW weight decay (not on biases and norms).
    warmup_steps: Linear warm-up steps; none: min(1000, steps // 20).
    min_lr_ratio: The decay ends at min_lr_ratio x lr.
    schedule: Learning-rate shape after the warm-up: cosine (decay over the whole run) | wsd
        (warm-up, stable, decay: constant lr, then a cosine decay over the last decay_fraction
        of the steps, so a run can be extended with --resume --steps N without a decayed middle).
    decay_fraction: Share of the steps the wsd schedule decays over (0-1).
    grad_clip: Gradient-norm clip; 0: off.
    ema: Keep an EMA of the generator weights (validated and exported when on).
    ema_decay: EMA decay (warms up as min(decay, (1 + n) / (10 + n))).
    amp: auto (bf16 autocast on GPU, and on a CPU with native bf16: AVX512-BF16 or AMX) | bf16 | off.
    channels_last: channels_last memory on CUDA (and on the CPU under bf16 autocast).
    compile: torch.compile the training step.
    device: auto | cpu | cuda | cuda:N.
    workers: Data loader worker processes (per process).
    threads: torch CPU threads of the training process (1 is fastest on a busy CPU); none:
        torch's default.
    seed: Seed for weights, data order and augmentation.
    val_every: Validate every N steps.
    val_images: Validation images used (the first N).
    val_crop: Validation crop side; none: crop.
    sample_images: Validation images drawn in each samples/ grid.
    save_every: Save resumable state every N steps.
    log_every: Log to log.jsonl every N steps (a time limit is checked then too).
    max_images: Use at most N training images; none: all.
    groups: Training data groups to use (first folder level under each data folder, e.g.
        flowers5); none: every group. List them explicitly so that new groups added to a data
        folder enter a run only when its config names them.
    group_weights: Sampling weight of each group's photos, e.g. {faces: 0.5, imagenette: 2}: a
        photo of a group of weight w is drawn w times as often as one of weight 1 (groups not
        named: 1). Each epoch then draws its images with replacement by these weights instead of
        a permutation; none: every photo once per epoch.
    holdout: Leave out the fixed held-out slice of the training folders (3 % of each group,
        colorization.data.is_held_out) so that benchmarks/generalisation.py can measure the model
        on unseen photos of the kinds it trained on.
    min_colorfulness_quantile: Drop the least colourful fraction of the training images (0-1);
        none: keep all.
    drop_grayscale: Drop grayscale training images.
    scale_jitter: Random crop scale range (lo, hi), 0 < lo <= hi <= 1.
    hflip: Random horizontal flips.
    working_size: Working resolution recorded in the exported model (the side the Colorizer
        resizes to; ship a model at the scale it was trained for); none: the checkpoint default (256).
    init_from: Exported model folder whose weights initialise the generator (fine-tuning, e.g.
        at a larger crop); its model and model_config must match.
    curve_images: At each validation also measure this many held-out training photos (holdout)
        and this many photos the run trains on (seen), logged as holdout/... and seen/... in
        log.jsonl: the learning curves of the generalisation gap; 0: off.
    keep_best: Also export the validated weights to OUT/model_best/ whenever a validation beats
        the best val PSNR so far (OUT/model/ stays the final weights).
    compact_state: A file that holds the run's compact state (generator and EMA weights in
        bfloat16, the step, images seen, last validation), rewritten at every state save; --resume
        restores the run from it when OUT/state/ is missing (e.g. on another machine), so a
        long run survives losing its folder when the file is kept (committed); none: off.
    curve_csv: A CSV file that gets one row at every validation (images seen, loss, val and
        held-out PSNR and colourfulness); rows past the resumed step are dropped on resume;
        none: off.
    snapshot_every: Export the model (the EMA weights when on, as OUT/model/) every N training
        images into OUT/snapshots/img_XXXXXXXX/ (the images seen), so that the stopping point can
        be chosen afterwards by measurement; none: no snapshots.
    """

    model: str
    data: tuple[str, ...]
    out: str
    val: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    objective: str = "regression"
    objective_options: dict[str, Any] = field(default_factory=dict)
    stages: tuple[dict[str, Any], ...] = ()
    discriminator: str = "patchgan"
    discriminator_config: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 16
    crop: int = 128
    lr: float = 2e-4
    d_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    workers: int = 2
    threads: int | None = None
    seed: int = 0
    val_every: int = 500
    val_images: int = 64
    val_crop: int | None = None
    sample_images: int = 8
    save_every: int = 500
    log_every: int = 25
    max_images: int | None = None
    groups: tuple[str, ...] | None = None
    group_weights: dict[str, float] | None = None
    holdout: bool = True
    min_colorfulness_quantile: float | None = None
    drop_grayscale: bool = True
    scale_jitter: tuple[float, float] = (0.75, 1.0)
    hflip: bool = True
    working_size: int | None = None
    init_from: str | None = None
    keep_best: bool = False
    curve_images: int = 0
    schedule: str = "cosine"
    decay_fraction: float = 0.2
    compact_state: str | None = None
    curve_csv: str | None = None
    snapshot_every: int | None = None

    def __post_init__(self) -> None:
        from colorization.train.objectives import OBJECTIVES, objective_option_names  # lazy: torch-free CLI import

        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"config field {name!r}: {why} (got {getattr(self, name)!r})")

        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "must be a registered model name")
        if not self.data or not all(isinstance(d, str) and d for d in self.data):
            raise bad("data", "must list at least one training folder")
        if not isinstance(self.out, str) or not self.out:
            raise bad("out", "must be an output folder")
        if self.objective not in OBJECTIVES:
            raise bad("objective", f"must be one of {list(OBJECTIVES)}")
        for name in MAPPING_FIELDS:
            if not isinstance(getattr(self, name), dict):
                raise bad(name, "must be a mapping")
        for name in ("steps", "batch_size", "crop", "val_every", "save_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "must be a positive integer")
        for name in ("workers", "val_images", "sample_images", "seed", "curve_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(name, "must be a non-negative integer")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise bad("warmup_steps", "must be a non-negative integer or null")
        threads = self.threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise bad("threads", "must be a positive integer or null (torch's default)")
        if self.val_crop is not None and (not isinstance(self.val_crop, int) or self.val_crop < 1):
            raise bad("val_crop", "must be a positive integer or null")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise bad("init_from", "must be an exported model folder or null")
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise bad("max_images", "must be a positive integer or null")
        snap = self.snapshot_every
        if snap is not None and (isinstance(snap, bool) or not isinstance(snap, int) or snap < 1):
            raise bad("snapshot_every", "must be a positive number of images or null")
        def group_names(names: Iterable[Any]) -> bool:
            return all(isinstance(g, str) and g and "/" not in g for g in names)

        if self.groups is not None and (not self.groups or not group_names(self.groups)):
            raise bad("groups", "must be null or a non-empty list of group (sub-folder) names")
        weights = self.group_weights
        if weights is not None and (
            not isinstance(weights, dict) or not weights or not group_names(weights)
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < math.inf
                       for w in weights.values())
        ):
            raise bad("group_weights", "must be null or a mapping of group names to positive finite weights")
        if weights is not None and self.groups is not None and set(weights) - set(self.groups):
            left_out = sorted(set(weights) - set(self.groups))
            raise bad("group_weights", f"names groups that 'groups' leaves out: {left_out}")
        if not isinstance(self.holdout, bool):
            raise bad("holdout", "must be true or false")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise bad("lr", "must be > 0")
        if self.d_lr is not None and not (isinstance(self.d_lr, (int, float)) and self.d_lr > 0):
            raise bad("d_lr", "must be > 0 or null")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if self.grad_clip < 0:
            raise bad("grad_clip", "must be >= 0 (0 disables clipping)")
        if not 0 < self.ema_decay < 1:
            raise bad("ema_decay", "must be in (0, 1)")
        if self.amp not in _AMP_MODES:
            raise bad("amp", f"must be one of {list(_AMP_MODES)}")
        if self.schedule not in _SCHEDULES:
            raise bad("schedule", f"must be one of {list(_SCHEDULES)}")
        if not isinstance(self.decay_fraction, (int, float)) or not 0 < self.decay_fraction <= 1:
            raise bad("decay_fraction", "must be in (0, 1]")
        for name in ("compact_state", "curve_csv"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise bad(name, "must be a file path or null")
        if self.min_colorfulness_quantile is not None and not 0 <= self.min_colorfulness_quantile < 1:
            raise bad("min_colorfulness_quantile", "must be in [0, 1) or null")
        if len(self.scale_jitter) != 2 or not 0 < self.scale_jitter[0] <= self.scale_jitter[1] <= 1:
            raise bad("scale_jitter", "must be (lo, hi) with 0 < lo <= hi <= 1")
        stage_keys = set(objective_option_names(self.objective)) | {"steps", "lr_scale", "name", "crop", "groups"}
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, dict):
                raise ConfigError(f"config field 'stages'[{i}] must be a mapping, got {stage!r}")
            unknown = sorted(set(stage) - stage_keys)
            if unknown:
                raise ConfigError(
                    f"config field 'stages'[{i}] has unknown key(s) {unknown}; valid: {sorted(stage_keys)}"
                )
            steps = stage.get("steps")
            if steps is None and i != len(self.stages) - 1:
                raise ConfigError(f"config field 'stages'[{i}] needs 'steps' (only the last stage may omit it)")
            if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
                raise ConfigError(f"config field 'stages'[{i}]['steps'] must be a positive integer, got {steps!r}")
            crop = stage.get("crop")
            if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
                raise ConfigError(f"config field 'stages'[{i}]['crop'] must be a positive integer, got {crop!r}")
            if "lr_scale" in stage and not (isinstance(stage["lr_scale"], (int, float)) and stage["lr_scale"] > 0):
                raise ConfigError(f"config field 'stages'[{i}]['lr_scale'] must be > 0, got {stage['lr_scale']!r}")
            if "groups" in stage:
                sg = stage["groups"]
                if not isinstance(sg, (list, tuple)) or not sg or not group_names(sg):
                    raise ConfigError(f"config field 'stages'[{i}]['groups'] must be a non-empty list of group names")
                if self.groups is not None and set(sg) - set(self.groups):
                    raise ConfigError(f"config field 'stages'[{i}]['groups'] names groups that 'groups' leaves out: "
                                      f"{sorted(set(sg) - set(self.groups))}")

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping (parsed JSON/YAML); unknown keys raise :class:`ConfigError`."""
        valid = cls.field_names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigError(f"{source}: {unknown_field_message(unknown)}")
        missing = [n for n in REQUIRED_FIELDS if values.get(n) in (None, "", [], ())]
        if missing:
            raise ConfigError(f"{source}: missing required field(s) {missing}")
        kw = dict(values)
        data = kw["data"]
        kw["data"] = (str(data),) if isinstance(data, (str, Path)) else tuple(str(d) for d in data)
        kw["out"] = str(kw["out"])
        if kw.get("val") is not None:
            kw["val"] = str(kw["val"])
        for name in ("betas", "scale_jitter"):
            if name in kw:
                kw[name] = tuple(float(v) for v in kw[name])
        if kw.get("groups") is not None:
            groups = kw["groups"]
            kw["groups"] = (groups,) if isinstance(groups, str) else tuple(str(g) for g in groups)
        if isinstance(kw.get("group_weights"), Mapping):
            kw["group_weights"] = {str(g): float(w) if isinstance(w, int) and not isinstance(w, bool) else w
                                   for g, w in kw["group_weights"].items()}
        if "stages" in kw:
            stages = kw["stages"] or ()
            if not isinstance(stages, (list, tuple)):
                raise ConfigError(f"{source}: field 'stages' must be a list of mappings")
            kw["stages"] = tuple(dict(s) if isinstance(s, Mapping) else s for s in stages)
        for name in MAPPING_FIELDS:
            if name in kw:
                kw[name] = {} if kw[name] is None else dict(kw[name]) if isinstance(kw[name], Mapping) else kw[name]
        for name in (
            "lr", "d_lr", "weight_decay", "min_lr_ratio", "grad_clip", "ema_decay", "min_colorfulness_quantile",
            "decay_fraction",
        ):
            if isinstance(kw.get(name), int) and not isinstance(kw.get(name), bool):
                kw[name] = float(kw[name])
        try:
            return cls(**kw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None


_FIELD_LINE = re.compile(r"^    ([a-z_][a-z0-9_]*): (.*)$")


def field_docs() -> dict[str, str]:
    """One line of help per :class:`TrainConfig` field, read from the class docstring."""
    docs: dict[str, str] = {}
    current: str | None = None
    in_fields = False
    for line in (TrainConfig.__doc__ or "").splitlines():
        if line.strip().startswith("Fields"):
            in_fields = True
            continue
        if not in_fields:
            continue
        match = _FIELD_LINE.match(line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current is not None and line.startswith("        ") and line.strip():
            docs[current] += " " + line.strip()
        elif line.strip():
            current = None
    return docs


def unknown_field_message(names: Iterable[str]) -> str:
    """``unknown field 'stpes' (did you mean 'steps' or 'stages'?); valid fields: [...]``."""
    valid = TrainConfig.field_names()
    names = sorted(names)
    close = list(dict.fromkeys(m for n in names for m in difflib.get_close_matches(n, valid, n=3, cutoff=0.6)))
    hint = ""
    if close:
        shown = [repr(m) for m in close]
        options = " or ".join(shown) if len(shown) < 3 else ", ".join(shown[:-1]) + " or " + shown[-1]
        hint = f" (did you mean {options}?)"
    what = f"unknown field {names[0]!r}" if len(names) == 1 else f"unknown fields {names}"
    return f"{what}{hint}; valid fields: {valid}"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``) training config into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            values = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path}: unsupported extension {suffix!r} (use .json, .yaml or .yml)")
    except (json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return values


def resolve_config(
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "config",
) -> TrainConfig:
    """Merge a config file's values with overrides (CLI flags win; ``None`` overrides are ignored),
    fill in automatic values (``warmup_steps``, ``val_crop``, classification ``out_channels``)
    and validate.

    ``objective_options``/``model_config``/``discriminator_config`` overrides are merged key by key
    into the file's mappings.
    """
    from colorization import color  # lazy: torch-free CLI import

    merged: dict[str, Any] = dict(file_values or {})
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in MAPPING_FIELDS:
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    cfg = TrainConfig.from_dict(merged, source=source)
    updates: dict[str, Any] = {}
    if cfg.warmup_steps is None:
        updates["warmup_steps"] = min(1000, cfg.steps // 20)
    if cfg.val_crop is None:
        updates["val_crop"] = cfg.crop
    if cfg.objective == "classification":
        q = color.num_ab_bins()
        out_ch = cfg.model_config.get("out_channels")
        if out_ch is None:
            updates["model_config"] = {**cfg.model_config, "out_channels": q}
        elif out_ch != q:
            raise ConfigError(
                f"{source}: model_config.out_channels={out_ch} but the classification objective needs "
                f"Q={q} (color.num_ab_bins()); leave it out to have it filled in"
            )
    else:
        out_ch = cfg.model_config.get("out_channels")
        if out_ch is None:
            updates["model_config"] = {**cfg.model_config, "out_channels": 2}
        elif out_ch != 2:
            raise ConfigError(
                f"{source}: model_config.out_channels={out_ch} but the {cfg.objective} objective regresses ab (2)"
            )
    return dataclasses.replace(cfg, **updates) if updates else cfg
