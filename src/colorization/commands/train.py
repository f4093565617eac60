"""``colorization train``: train a colorization network (single process or under torchrun).

The options that set the training config are generated from the fields of
:class:`colorization.train.TrainConfig`: one option per field (``batch_size`` -> ``--batch-size``,
booleans as ``--ema/--no-ema``, mappings as repeatable ``KEY=VALUE``), with the field's help line
from the class docstring and its real default. ``--set FIELD=VALUE`` sets any field too.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typer

from colorization.commands.common import check_out_dir
from colorization.train.config import (
    MAPPING_FIELDS,
    REQUIRED_FIELDS,
    ConfigError,
    TrainConfig,
    field_docs,
    unknown_field_message,
)

__all__ = ["main", "parse_mapping", "parse_value", "parse_set", "field_options"]

#: short or extra names of some field options (``--option`` is the historical name of
#: ``--objective-options``)
_ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("-m",),
    "data": ("-d",),
    "out": ("-o",),
    "batch_size": ("-b",),
    "objective_options": ("--option",),
}
#: fields given as paths on the command line (normalised the way pathlib writes them)
_PATH_FIELDS = ("data", "val", "out", "init_from")

_RUN_PANEL = "Run"
_FIELD_PANEL = "Training config (TrainConfig fields; each overrides --config)"


def parse_value(text: str) -> Any:
    """A command-line value: JSON (``16``, ``1e-3``, ``[0.9, 0.99]``, ``null``), else YAML
    (``{steps: 50, loss: l1}``), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_mapping(items: list[str] | None, option: str) -> dict[str, Any] | None:
    """Parse repeated ``--option`` values into one dict.

    Each item is either a JSON object (``'{"width": 16, "depth": 3}'``) or ``key=value`` where the
    value is parsed as JSON when possible (``width=16`` -> 16, ``pretrained=false`` -> False,
    ``loss=l1`` -> "l1").
    """
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(f"not a JSON object: {exc}", param_hint=option) from None
            if not isinstance(value, dict):
                raise typer.BadParameter("expected a JSON object", param_hint=option)
            out.update(value)
            continue
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE or a JSON object, got {item!r}", param_hint=option)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated ``--set FIELD=VALUE`` (or ``FIELD.KEY=VALUE`` for a mapping field) into
    ``{field: value}``; values are read by :func:`parse_value`. An unknown field is refused with
    the closest field names."""
    out: dict[str, Any] = {}
    names = TrainConfig.field_names()
    for item in items or []:
        target, sep, raw = item.partition("=")
        target = target.strip()
        if not sep or not target:
            raise typer.BadParameter(f"expected FIELD=VALUE, got {item!r}", param_hint="--set")
        name, _, key = target.partition(".")
        name = name.replace("-", "_")
        if name not in names:
            raise typer.BadParameter(unknown_field_message([name]), param_hint="--set")
        value = parse_value(raw)
        if key:
            if name not in MAPPING_FIELDS:
                raise typer.BadParameter(
                    f"{target!r}: FIELD.KEY=VALUE sets a key of {', '.join(MAPPING_FIELDS)}; {name!r} is not one",
                    param_hint="--set",
                )
            value = {key: value}
        if name in MAPPING_FIELDS and isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = {**out[name], **value}
        else:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------------------
# Options generated from the TrainConfig fields
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _FieldOption:
    name: str  # the TrainConfig field (and the parameter name)
    kind: str  # "flag" | "scalar" | "list" | "mapping" | "pair" | "yaml"
    parameter: inspect.Parameter

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and value and not isinstance(value[0], dict):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, (tuple, list, dict)):
        return json.dumps(value)
    return str(value)


def _option_help(f: dataclasses.Field, doc: str) -> str:
    """The field's help line plus ``[default: ...]`` (the real default) or ``[required]``."""
    if f.name in REQUIRED_FIELDS:
        return f"{doc} [required unless in --config]"
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    if default is None:
        match = re.match(r"^(.*); none: (.*?)\.?$", doc)
        if match:  # "...; none: min(1000, steps // 20)." -> [default: min(1000, steps // 20)]
            return f"{match.group(1)}. [default: {match.group(2)}]"
        return f"{doc} [default: none]"
    if isinstance(default, bool):
        return f"{doc} [default: {'' if default else 'no-'}{f.name.replace('_', '-')}]"
    return f"{doc} [default: {_shown(default)}]"


def field_options() -> list[_FieldOption]:
    """One typer option per :class:`TrainConfig` field, in field order."""
    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs()
    options = []
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
            (base,) = [a for a in typing.get_args(hint) if a is not type(None)]
        else:
            base = hint
        origin = typing.get_origin(base)
        decls = [f"--{f.name.replace('_', '-')}"]
        metavar = None
        if base is bool:
            kind, annotation = "flag", bool | None
            decls = [f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}"]
        elif base in (int, float, str):
            kind, annotation = "scalar", base | None
            if f.name in _PATH_FIELDS:
                annotation = Path | None
        elif origin is tuple and typing.get_args(base)[-1] is Ellipsis and typing.get_args(base)[0] is str:
            kind, annotation = "list", (list[Path] if f.name in _PATH_FIELDS else list[str]) | None
        elif origin is dict:
            kind, annotation, metavar = "mapping", list[str] | None, "KEY=VALUE"
        elif origin is tuple and all(a in (int, float) for a in typing.get_args(base)):
            kind, annotation = "pair", base | None
            metavar = " ".join(["NUMBER"] * len(typing.get_args(base)))
        else:
            kind, annotation, metavar = "yaml", str | None, "YAML"
        doc = docs.get(f.name)
        if doc is None:  # pragma: no cover - guarded by a test
            raise RuntimeError(f"TrainConfig's docstring does not describe field {f.name!r}")
        info = typer.Option(
            None, *decls, *_ALIASES.get(f.name, ()), help=_option_help(f, doc), show_default=False,
            metavar=metavar, rich_help_panel=_FIELD_PANEL,
        )
        parameter = inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)
        options.append(_FieldOption(f.name, kind, parameter))
    return options


def _overrides(options: list[_FieldOption], values: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig values given by the field options (None: not given)."""
    out: dict[str, Any] = {}
    for opt in options:
        value = values.get(opt.name)
        if value is None:
            out[opt.name] = None
        elif opt.kind == "list":
            out[opt.name] = [str(v) for v in value] if value else None
        elif opt.kind == "mapping":
            out[opt.name] = parse_mapping(value, opt.flag)
        elif opt.kind == "yaml":
            out[opt.name] = parse_value(value)
        elif opt.kind == "pair":
            out[opt.name] = list(value)
        elif isinstance(value, Path):
            out[opt.name] = str(value)
        else:
            out[opt.name] = value
    return out


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def _run_parameters() -> list[inspect.Parameter]:
    def opt(name: str, annotation: Any, default: Any, *decls: str, help: str, **kw: Any) -> inspect.Parameter:
        info = typer.Option(default, *decls, help=help, rich_help_panel=_RUN_PANEL, **kw)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)

    return [
        opt("config", Path | None, None, "--config", "-c", show_default=False,
            help="JSON/YAML config file holding TrainConfig fields; options override it."),
        opt("resume", bool, False, "--resume",
            help="Continue from OUT/state (starts fresh if there is none); with only --out, the saved "
                 "OUT/train_config.json is the config."),
        opt("set_values", list[str] | None, None, "--set", metavar="FIELD=VALUE", show_default=False,
            help="Set any config field (repeatable). VALUE is JSON or YAML (stages=[{steps: 500, loss: l1}, "
                 "{loss: mse}], betas=[0.9,0.99], val=null); FIELD.KEY=VALUE sets one key of a mapping "
                 "field (objective_options.loss=l1)."),
        opt("loss", str | None, None, "--loss", show_default=False,
            help="Shortcut for --option loss=LOSS (regression: l1 | mse | l1_ssim | mse_ssim | mse_l1)."),
        opt("stop_after", int | None, None, "--stop-after", show_default=False,
            help="Stop after N steps in this invocation (state saved; continue with --resume)."),
        opt("time_limit", float | None, None, "--time-limit", show_default=False,
            help="Stop after this many seconds in this invocation (state saved; checked every log_every steps)."),
        opt("export_now", bool, False, "--export-now",
            help="With --resume: export OUT/model/ from the saved state without training further."),
        opt("progress", bool, True, "--progress/--no-progress", help="Show the progress bar."),
        opt("print_config", bool, False, "--print-config", help="Print the resolved config and exit."),
    ]


_FIELD_OPTIONS = field_options()
_RUN_NAMES = [p.name for p in _run_parameters()]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def main(**values: Any) -> None:
    """Train a colorization network; writes OUT/model/ (exported), OUT/log.jsonl, OUT/samples/, OUT/state/."""
    # lazy: torch-free CLI import
    from colorization.train import NonFiniteLossError, load_config_file, resolve_config, train

    run = {name: values.pop(name) for name in _RUN_NAMES}
    overrides = _overrides(_FIELD_OPTIONS, values)
    set_values = parse_set(run["set_values"])
    twice = [n for n in set_values if n not in MAPPING_FIELDS and overrides.get(n) is not None]
    if twice:
        flags = ", ".join(f"--{n.replace('_', '-')} and --set {n}=..." for n in twice)
        raise typer.BadParameter(f"a field given twice: {flags}", param_hint="--set")
    if run["loss"] is not None:
        overrides["objective_options"] = {**(overrides["objective_options"] or {}), "loss": run["loss"]}
    config, resume = run["config"], run["resume"]
    try:
        file_values = load_config_file(config) if config is not None else None
        out = overrides.get("out") or set_values.get("out")
        saved = Path(out) / "train_config.json" if out is not None else None
        if resume and saved is not None and saved.is_file():
            # `train --out DIR --resume` alone continues a run: its saved config is the base
            file_values = {**load_config_file(saved), **(file_values or {})}
        # --set applies to the file's values (so `--set FIELD=null` clears a field), mappings key by key
        base = dict(file_values or {})
        for name, value in set_values.items():
            if name in MAPPING_FIELDS and isinstance(value, dict):
                base[name] = {**(base.get(name) or {}), **value}
            else:
                base[name] = value
        cfg = resolve_config(base, overrides, source=str(config) if config else "command line")
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if run["print_config"]:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    if _is_main_process():  # before any work (one process probes: ranks would race on the folder)
        check_out_dir(Path(cfg.out), "'--out' / '-o'")
    export_now = run["export_now"]
    try:
        result = train(cfg, resume=resume, progress=run["progress"], stop_after=run["stop_after"],
                       time_limit=run["time_limit"], export_now=export_now)
    except NonFiniteLossError as exc:
        raise _fail(str(exc), code=3) from None
    except (ConfigError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:  # data / image errors name the offending file
        raise _fail(str(exc)) from None
    if result.model_dir is not None and _is_main_process():
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
        if result.nothing_to_do:
            head = f"nothing to do: {cfg.model} already trained for {result.step}/{cfg.steps} steps"
        elif export_now or result.images_per_s == 0.0:  # 0.0: a finished state exported without a step
            head = f"exported {cfg.model} from the saved state at step {result.step}/{cfg.steps}"
        else:
            head = (f"trained {cfg.model} for {result.step} steps ({result.images_seen} images, "
                    f"{result.images_per_s:.1f} images/s)")
        typer.echo(f"{head}; model: {result.model_dir}" + (f"; val: {metrics}" if metrics else ""))


# typer reads the options from the signature: the run options, then one per TrainConfig field
main.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    _run_parameters() + [opt.parameter for opt in _FIELD_OPTIONS], return_annotation=None
)


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(main))
