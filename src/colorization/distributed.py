"""``colorize-many``: colorize a list of (millions of) images across processes, GPUs and nodes.

Launch one process per GPU (or several CPU processes) with ``torchrun``; every process (rank)

* streams the input list (a text file with one path per line, or a folder walked in sorted order)
  and takes the entries whose index ``i`` satisfies ``i % world_size == rank`` (deterministic
  sharding; the list is never held in memory),
* skips entries whose output already exists (a rerun after a crash resumes where it stopped),
* decodes and prepares images in DataLoader worker processes, batches equal working shapes
  through the network, and writes every output atomically (temporary file + rename),
* counts ``done`` / ``failed`` / ``skipped`` and writes its summary to
  ``OUTDIR/.colorize-many/rank-<r>.json``; rank 0 gathers all of them (gloo) and writes the merged
  ``OUTDIR/.colorize-many/summary.json``.

Only the network's device depends on the rank (``cuda:LOCAL_RANK`` with ``--device cuda``); the
process group is used for the final summary only, so ranks never wait for each other while
working.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from colorization import io as cio

__all__ = [
    "ManyConfig",
    "RankSummary",
    "DistContext",
    "iter_entries",
    "entry_output",
    "ShardDataset",
    "resolve_hints",
    "check_hints_model",
    "colorize_many",
    "launch_local",
    "read_summary",
    "STATE_DIR",
]

STATE_DIR = ".colorize-many"
"""Folder inside OUTDIR with the per-rank and merged summaries."""
_MAX_FAILURES_LISTED = 10_000
_PENDING_PIXELS = 64_000_000


@dataclass(frozen=True)
class ManyConfig:
    """Settings of one colorize-many job (JSON-serialisable; stored in the summary).

    Attributes:
        out_dir: output folder; input paths are mirrored under it.
        list_file: text file with one image path per line (blank lines and ``#`` comments
            ignored), or None when ``input_dir`` is used.
        input_dir: folder walked recursively in sorted order (image extensions only).
        root: folder that relative list entries are resolved against and that outputs mirror
            (default: the list file's folder, or ``input_dir``).
        model: exported model folder (None: the shipped default); backend "torch" or "onnx".
        device: "cpu", "cuda" (each rank uses ``cuda:LOCAL_RANK``) or None (cuda when available).
        size: working size (None: the model's). saturation: chroma multiplier. refine: guided filter.
        fmt: output format "png"/"jpeg"/"webp" (None: keep each input's).
        batch_size: images per network call. workers: DataLoader decode processes per rank.
        force: overwrite existing outputs instead of skipping them.
        max_pixels: larger images fail with ImageTooLargeError.
        hints_file: JSON object mapping input names (relative to the root, or base names) to
            colour-hint points (:mod:`colorization.hint_files`); needs a hint-aware model.
    """

    out_dir: str
    list_file: str | None = None
    input_dir: str | None = None
    root: str | None = None
    model: str | None = None
    backend: str = "torch"
    device: str | None = None
    size: int | None = None
    saturation: float = 1.0
    refine: bool = False
    fmt: str | None = None
    batch_size: int = 8
    workers: int = 2
    force: bool = False
    max_pixels: int = cio.DEFAULT_MAX_PIXELS
    hints_file: str | None = None

    def __post_init__(self) -> None:
        if (self.list_file is None) == (self.input_dir is None):
            raise ValueError("give exactly one of list_file (--list) and input_dir (--input)")
        if self.fmt not in (None, "png", "jpeg", "webp"):
            raise ValueError(f"fmt must be png, jpeg, webp or None, got {self.fmt!r}")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        if self.backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {self.backend!r}")

    def resolved_root(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        if self.input_dir is not None:
            return Path(self.input_dir)
        return Path(self.list_file).parent  # type: ignore[arg-type]


@dataclass
class RankSummary:
    """Counts of one rank (or, merged, of all ranks)."""

    rank: int
    world_size: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    failures_truncated: bool = False

    def add_failure(self, path: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < _MAX_FAILURES_LISTED:
            self.failures.append((path, reason))
        else:
            self.failures_truncated = True


@dataclass(frozen=True)
class DistContext:
    """Rank / world size / local rank from the torchrun environment (1 process without it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistContext:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )


# --------------------------------------------------------------------------------------------
# The input stream
# --------------------------------------------------------------------------------------------


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` in a deterministic order, streamed (hidden entries skipped)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in cio.IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def iter_entries(config: ManyConfig) -> Iterator[Path]:
    """All input paths in order (every rank sees the same sequence)."""
    if config.input_dir is not None:
        folder = Path(config.input_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        yield from _walk_sorted(folder)
        return
    root = config.resolved_root()
    with open(config.list_file, encoding="utf-8") as fh:  # type: ignore[arg-type]
        for line in fh:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            p = Path(text).expanduser()
            yield p if p.is_absolute() else root / p


def resolve_hints(config: ManyConfig) -> dict[Path, list]:
    """The colour-hint points of ``config.hints_file`` per input entry (``{}`` without one).

    Reads the file and streams the input list once, so a bad file stops the job before any image.

    Raises:
        colorization.hint_files.HintsFileError: a bad file, a list instead of a name -> points
            object, or a name that matches no entry or several.
    """
    if config.hints_file is None:
        return {}
    from colorization.hint_files import HintsFileError, load_hints_file, match_inputs

    loaded = load_hints_file(config.hints_file)
    if not isinstance(loaded, dict):
        raise HintsFileError(
            f"{config.hints_file}: colorize-many needs an object mapping file names to lists of points, "
            'not a list: {"NAME": [points], ...}'
        )
    root = config.resolved_root()
    return match_inputs(loaded, ((path, root) for path in iter_entries(config)), config.hints_file)


def check_hints_model(hints: dict[Path, list], accepts_hints: bool, model_name: str, hints_file: str | None) -> None:
    """Refuse hints (any point at all) for a model without hint input.

    Raises:
        colorization.hint_files.HintsFileError: naming the file and the model.
    """
    if not accepts_hints and any(hints.values()):
        from colorization.hint_files import HintsFileError

        raise HintsFileError(
            f"{hints_file}: the model {model_name} does not take colour hints (it was trained without them); "
            "use --model with a hint-aware model"
        )


def entry_output(path: Path, root: Path, out_dir: Path, fmt: str | None) -> Path:
    """Output path of an input: its path relative to ``root`` mirrored under ``out_dir`` (an
    absolute path outside ``root`` is mirrored whole, without its anchor)."""
    from colorization.commands.colorize import FORMAT_SUFFIX

    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = path.relative_to(path.anchor) if path.is_absolute() else path
    if ".." in rel.parts:
        rel = Path(*[p for p in rel.parts if p != ".."])
    out = out_dir / rel
    return out.with_suffix(FORMAT_SUFFIX[fmt]) if fmt else out


class ShardDataset(IterableDataset):
    """This rank's share of the input stream, split again across DataLoader workers.

    Yields dicts: ``{"status": "skipped" | "failed" | "ready", "index", "src", ...}``; ready items
    carry ``out`` (output path), ``prep`` (:class:`colorization.colorizer.PreparedImage`) and
    ``exif``. Decoding and the Lab conversion happen here, in the worker processes.
    """

    def __init__(
        self, config: ManyConfig, rank: int, world_size: int, size: int, stride: int,
        hints: dict[Path, list] | None = None,
    ) -> None:
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.size = size
        self.stride = stride
        self.hints = hints or {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from colorization.colorizer import prepare_image

        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        cfg = self.config
        root, out_dir = cfg.resolved_root(), Path(cfg.out_dir)
        for index, path in enumerate(iter_entries(cfg)):
            if index % self.world_size != self.rank or (index // self.world_size) % nworkers != wid:
                continue
            out = entry_output(path, root, out_dir, cfg.fmt)
            item: dict[str, Any] = {"index": index, "src": str(path), "out": str(out)}
            if out.exists() and not cfg.force:
                item["status"] = "skipped"
                yield item
                continue
            points = self.hints.get(path)
            try:
                loaded = cio.open_image(path, max_pixels=cfg.max_pixels)
                item["prep"] = prepare_image(loaded.image, self.size, self.stride, cfg.max_pixels, points)
                item["exif"] = loaded.exif
                item["status"] = "ready"
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop a long job
                item["status"] = "failed"
                # a plain ValueError with points: a point outside this image
                hint_error = points and type(exc) is ValueError
                item["error"] = f"{path}: {exc}" if hint_error else _describe_error(exc)
            yield item


def _describe_error(exc: BaseException) -> str:
    """The message of our typed errors (they name the file); type + message for anything else."""
    if isinstance(exc, (cio.ImageError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _report(src: str, reason: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"failed: {reason}" if reason.startswith(src) else f"failed: {src}: {reason}", file=sys.stderr)


def _identity(x: Any) -> Any:
    return x


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _count_entries(config: ManyConfig) -> int | None:
    """Number of list entries (cheap line scan) for the progress bar; None for folders."""
    if config.list_file is None:
        return None
    n = 0
    with open(config.list_file, encoding="utf-8") as fh:
        for line in fh:
            t = line.strip()
            n += bool(t) and not t.startswith("#")
    return n


def _merge(parts: list[dict[str, Any]], config: ManyConfig, world_size: int) -> dict[str, Any]:
    failures = [f for p in parts for f in p["failures"]]
    return {
        "done": sum(p["done"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "skipped": sum(p["skipped"] for p in parts),
        "world_size": world_size,
        "seconds": max((p["seconds"] for p in parts), default=0.0),
        "per_rank": [{k: p[k] for k in ("rank", "done", "failed", "skipped", "seconds")} for p in parts],
        "failures": failures,
        "failures_truncated": any(p["failures_truncated"] for p in parts),
        "config": asdict(config),
    }


def colorize_many(config: ManyConfig, ctx: DistContext | None = None, progress: bool = True) -> dict[str, Any]:
    """Run this rank's share of the job and return the summary merged over all ranks (every rank
    gets the same counts; rank 0 also writes it to ``OUTDIR/.colorize-many/summary.json``).

    Initialises a gloo process group when ``WORLD_SIZE > 1`` (torchrun sets the environment) and
    destroys it at the end.
    """
    import torch.distributed as dist
    from tqdm import tqdm

    from colorization.colorizer import Colorizer

    ctx = ctx or DistContext.from_env()
    own_group = False
    if ctx.world_size > 1 and not dist.is_initialized():
        # gloo carries only the final summary; a long timeout lets ranks finish far apart
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        own_group = True
    try:
        device = config.device
        if device is None:
            device = "cuda" if torch.cuda.is_available() and config.backend == "torch" else "cpu"
        if device == "cuda":
            device = f"cuda:{ctx.local_rank}"
        colorizer = Colorizer.from_pretrained(
            config.model, device=device, backend=config.backend, size=config.size,
            max_pixels=config.max_pixels, refine=config.refine,
        )
        hints = resolve_hints(config)
        check_hints_model(hints, colorizer.accepts_hints, colorizer.model_name, config.hints_file)
        out_dir = Path(config.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = RankSummary(rank=ctx.rank, world_size=ctx.world_size)
        start = time.perf_counter()

        dataset = ShardDataset(config, ctx.rank, ctx.world_size, colorizer.size, colorizer.stride, hints)
        loader = DataLoader(
            dataset, batch_size=None, num_workers=config.workers, collate_fn=_identity,
            prefetch_factor=4 if config.workers > 0 else None, persistent_workers=False,
        )
        total = _count_entries(config)
        shard_total = None if total is None else len(range(ctx.rank, total, ctx.world_size))
        bar = tqdm(
            total=shard_total, unit="img", desc=f"rank {ctx.rank}", file=sys.stderr,
            disable=None if (progress and ctx.rank == 0) else True,
        )

        pending: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        pending_pixels = 0

        def run(items: list[dict[str, Any]]) -> None:
            abs_ = colorizer.predict([it["prep"] for it in items], config.batch_size)
            for it, ab in zip(items, abs_):
                try:
                    img = colorizer.finish(it["prep"], ab, config.saturation)
                    cio.save_image(img, it["out"], overwrite=config.force, format=config.fmt, exif=it["exif"])
                    summary.done += 1
                except FileExistsError:
                    summary.skipped += 1  # another run wrote it meanwhile
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop a long job
                    summary.add_failure(it["src"], _describe_error(exc))
                    _report(it["src"], _describe_error(exc))
                bar.update(1)

        for item in loader:
            status = item["status"]
            if status == "skipped":
                summary.skipped += 1
                bar.update(1)
            elif status == "failed":
                summary.add_failure(item["src"], item["error"])
                _report(item["src"], item["error"])
                bar.update(1)
            else:
                key = tuple(item["prep"].l_work.shape)
                group = pending.setdefault(key, [])
                group.append(item)
                pending_pixels += item["prep"].l_full.numel()
                if len(group) >= config.batch_size:
                    pending_pixels -= sum(it["prep"].l_full.numel() for it in group)
                    run(pending.pop(key))
                elif pending_pixels > _PENDING_PIXELS:
                    for k in list(pending):
                        run(pending.pop(k))
                    pending_pixels = 0
        for k in list(pending):
            run(pending.pop(k))
        bar.close()
        summary.seconds = round(time.perf_counter() - start, 3)

        mine = asdict(summary)
        state = out_dir / STATE_DIR
        _write_json(state / f"rank-{ctx.rank:05d}.json", mine)
        if ctx.world_size > 1 and dist.is_initialized():
            parts: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(parts, mine)
        else:
            parts = [mine]
        merged = _merge(sorted(parts, key=lambda p: p["rank"]), config, ctx.world_size)
        if ctx.rank == 0:
            _write_json(state / "summary.json", merged)
        return merged
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Local multi-process launch without torchrun
# --------------------------------------------------------------------------------------------


def read_summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The merged summary rank 0 wrote to ``OUTDIR/.colorize-many/summary.json``."""
    return json.loads((Path(out_dir) / STATE_DIR / "summary.json").read_text(encoding="utf-8"))


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned(local_rank: int, config: ManyConfig, nprocs: int, port: int, threads: int) -> None:
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(threads)
    colorize_many(config, DistContext.from_env(), progress=local_rank == 0)


def launch_local(config: ManyConfig, nprocs: int) -> dict[str, Any]:
    """Run the job with ``nprocs`` processes on this machine (``torch.multiprocessing.spawn``;
    rank r uses ``cuda:r`` with ``device="cuda"``), like ``torchrun --nproc_per_node nprocs``.
    Returns the merged summary. Torch threads per process: ``cpu_count // nprocs`` unless
    ``OMP_NUM_THREADS`` is set."""
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise RuntimeError("already running under torchrun (WORLD_SIZE > 1); do not also spawn processes")
    if nprocs == 1:
        return colorize_many(config, DistContext())
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // nprocs)
    mp.spawn(_spawned, args=(config, nprocs, _free_port(), threads), nprocs=nprocs, join=True)
    return read_summary(config.out_dir)
