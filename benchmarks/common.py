"""Shared helpers of the benchmark scripts (``bench_models.py``, ``bench_colorize.py``, ``bench_train.py``).

* :func:`time_call` - warm-up calls, then the median (and min) of timed repetitions; CUDA work is
  synchronised before the clock is read.
* :func:`plan_reps` - how many repetitions fit into a compute budget (GFLOP), so the default runs
  stay short on a small CPU and ``--budget-gflop 0`` (no limit) measures everything on a big machine.
* :func:`run_isolated` - run a measurement in a forked child process, so its peak resident memory
  (``resource.getrusage``) belongs to that measurement alone. The parent must not have run
  multi-threaded torch work before forking (an OpenMP thread pool does not survive ``fork``; the
  child would hang), so the scripts do all CPU compute inside children.
* :func:`load_average`, :func:`machine_info`, :func:`matmul_peak` - the context every figure needs:
  how busy the machine was, what it is, and what its matrix units reach in the same run.
* :func:`markdown_table` - the tables the scripts print (pasted into docs/benchmarks.md).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------
# OpenMP wait policy: must be decided before torch (and with it libgomp) is loaded
# --------------------------------------------------------------------------------------------

OMP_POLICIES = ("passive", "active", "unset")


def _omp_policy_from_argv(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--omp-wait-policy" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--omp-wait-policy="):
            return arg.split("=", 1)[1]
    return "passive"


def apply_omp_policy(argv: Sequence[str] | None = None) -> str:
    """Set ``OMP_WAIT_POLICY`` from ``--omp-wait-policy`` (default ``passive``) before torch loads.

    On a CPU shared with other busy processes, libgomp's default (spin before sleeping) makes
    every parallel region wait for a descheduled sibling thread: small convolutions became ~50x
    slower with 2 threads than with 1 on the development machine. ``passive`` threads sleep
    instead. An ``OMP_WAIT_POLICY`` already in the environment wins unless the flag is given;
    ``unset`` leaves the environment alone. Returns the policy in effect (``OMP_WAIT_POLICY`` or
    ``"unset (libgomp default)"``).
    """
    argv = sys.argv[1:] if argv is None else argv
    explicit = any(a == "--omp-wait-policy" or a.startswith("--omp-wait-policy=") for a in argv)
    policy = _omp_policy_from_argv(argv).lower()
    if policy not in OMP_POLICIES:
        raise SystemExit(f"--omp-wait-policy must be one of {OMP_POLICIES}, got {policy!r}")
    if "torch" in sys.modules and explicit:
        print("warning: torch was imported before --omp-wait-policy was applied; it has no effect", file=sys.stderr)
    if policy != "unset" and (explicit or "OMP_WAIT_POLICY" not in os.environ):
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    return os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default)")


OMP_WAIT_POLICY = apply_omp_policy()

import torch  # noqa: E402 - after the OpenMP policy on purpose


def add_omp_arg(parser: Any) -> None:
    """Register ``--omp-wait-policy`` (already applied when this module was imported)."""
    parser.add_argument(
        "--omp-wait-policy", choices=OMP_POLICIES, default="passive",
        help="OMP_WAIT_POLICY for torch's CPU threads (applied before torch loads; default passive)",
    )

__all__ = [
    "OMP_WAIT_POLICY",
    "apply_omp_policy",
    "add_omp_arg",
    "Timing",
    "time_call",
    "plan_reps",
    "run_isolated",
    "IsolatedError",
    "load_average",
    "load_str",
    "LoadWindow",
    "peak_rss_mb",
    "current_rss_mb",
    "cuda_peak_mb",
    "machine_info",
    "machine_lines",
    "matmul_peak",
    "markdown_table",
    "fmt",
    "sync",
    "add_large_photo_args",
    "make_large_photo",
]


# --------------------------------------------------------------------------------------------
# the large photo of colorize_large.py and bench_fullres.py
# --------------------------------------------------------------------------------------------


def add_large_photo_args(parser: Any) -> None:
    """``--image`` (default examples/astronaut_gray.jpg), ``--width``, ``--height``, ``--model``."""
    from pathlib import Path

    default = Path(__file__).resolve().parents[1] / "examples" / "astronaut_gray.jpg"
    parser.add_argument("--image", type=Path, default=default)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--model", default=None, help="exported model folder (default: shipped model)")


def make_large_photo(args: Any, folder: Any) -> Any:
    """``args.image`` upscaled (bicubic) to ``args.width`` x ``args.height`` and saved as a grayscale
    JPEG (q90) ``folder/photo.jpg``, so the benchmarks need no data; returns its path."""
    from pathlib import Path

    from PIL import Image

    photo = Path(folder) / "photo.jpg"
    with Image.open(args.image) as im:
        im.convert("L").resize((args.width, args.height), Image.BICUBIC).save(photo, quality=90)
    return photo


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def sync(device: torch.device | str | None) -> None:
    """Wait for queued work on ``device`` (CUDA only; a no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of one call: ``median`` and ``min`` over ``reps`` timed calls, after
    ``warmup`` untimed ones (``first`` is the first warm-up call, which includes one-off costs
    such as oneDNN primitive creation or ``torch.compile``)."""

    median: float
    min: float
    reps: int
    warmup: int
    first: float
    times: tuple[float, ...]


def time_call(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    reps: int = 5,
    device: torch.device | str | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``reps`` timed ones.

    Args:
        fn: the work; its return value is ignored.
        warmup: untimed calls first (>= 0).
        reps: timed calls (>= 1).
        device: CUDA device to synchronise before each clock read (None / CPU: no sync).
    """
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps must be >= 1 and warmup >= 0, got reps={reps}, warmup={warmup}")
    first = float("nan")
    for i in range(warmup):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), min(times), reps, warmup, first, tuple(times))


def plan_reps(gflop_per_call: float, budget_gflop: float, max_reps: int, warmup: int = 1) -> int:
    """Timed repetitions that fit into ``budget_gflop`` (warm-up calls included).

    Returns 0 when not even one warm-up plus one timed call fits (the caller skips the cell and
    says so); ``budget_gflop <= 0`` means no limit (``max_reps``).
    """
    if budget_gflop <= 0 or gflop_per_call <= 0:
        return max_reps
    fits = math.floor(budget_gflop / gflop_per_call) - warmup
    return max(0, min(max_reps, fits))


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports ru_maxrss in KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if platform.system() == "Darwin" else r / 1024


def current_rss_mb() -> float:
    """Current resident set size (MiB) from /proc/self/statm (Linux; falls back to the peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def cuda_peak_mb(device: torch.device | str) -> float:
    """Peak memory allocated by tensors on ``device`` since the last reset (MiB)."""
    return torch.cuda.max_memory_allocated(device) / 2**20


class IsolatedError(RuntimeError):
    """A measurement failed in its child process (the message carries the child's traceback)."""


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        start = peak_rss_mb()
        result = fn(*args, **kwargs)
        conn.send(("ok", result, start, peak_rss_mb()))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent
        conn.send(("error", traceback.format_exc(), 0.0, 0.0))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], *args: Any, isolate: bool = True, **kwargs: Any) -> tuple[Any, float]:
    """Run ``fn(*args, **kwargs)`` in a forked child; return ``(result, peak_rss_growth_mib)``.

    The growth is the child's peak RSS minus its RSS when it started (a forked child starts at
    its parent's resident size), i.e. the memory the measurement itself needed: weights,
    activations, allocator and library workspaces. With ``isolate=False`` (or on platforms
    without ``fork``) the call runs in this process and the growth is measured the same way
    (only meaningful when the peak grows).

    Raises:
        IsolatedError: ``fn`` raised in the child (its traceback is in the message) or the child died.
    """
    if not isolate or "fork" not in mp.get_all_start_methods():
        start = peak_rss_mb()
        result = fn(*args, **kwargs)
        return result, max(0.0, peak_rss_mb() - start)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs))
    proc.start()
    child.close()
    try:
        status, payload, start, peak = parent.recv()
    except EOFError:
        proc.join()
        raise IsolatedError(f"the measurement process died (exit code {proc.exitcode})") from None
    finally:
        parent.close()
    proc.join()
    if status != "ok":
        raise IsolatedError(payload)
    return payload, max(0.0, peak - start)


# --------------------------------------------------------------------------------------------
# machine context
# --------------------------------------------------------------------------------------------


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15-minute load averages (runnable processes; compare with the core count)."""
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux/macOS
        return (float("nan"),) * 3


def load_str(before: float, after: float) -> str:
    """``"5.1→6.0"``: 1-minute load average at the start and end of a measurement."""
    return f"{before:.1f}→{after:.1f}"


class LoadWindow:
    """Records the 1-minute load average when entered and when left (``str()``: "a→b")."""

    def __enter__(self) -> LoadWindow:
        self.before = load_average()[0]
        self.after = self.before
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = load_average()[0]

    def __str__(self) -> str:
        return load_str(self.before, self.after)


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.strip().lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model and cores, memory, torch, GPU (if any)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count() or 1
    mem_gib = float("nan")
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [],
        "load_average": tuple(round(x, 2) for x in load_average()),
        "omp_wait_policy": OMP_WAIT_POLICY,
    }
    if torch.cuda.is_available():
        info["gpus"] = _gpu_names()
    return info


def _gpu_names() -> list[str]:
    """GPU names from nvidia-smi: asking torch would initialise CUDA in this process, after which
    forked measurement processes could no longer use it."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout
        names = [line.strip() for line in out.splitlines() if line.strip()]
        if names:
            return names
    except (OSError, subprocess.SubprocessError):
        pass
    return [f"{torch.cuda.device_count()} CUDA device(s)"]


def machine_lines(info: dict[str, Any] | None = None) -> list[str]:
    """Human-readable machine description, one fact per line (printed above each table)."""
    info = info or machine_info()
    gpus = ", ".join(info["gpus"]) if info["gpus"] else "none"
    la = info["load_average"]
    return [
        f"machine: {info['cpu']}, {info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs, "
        f"{info['memory_gib']} GiB RAM; GPU: {gpus}",
        f"software: Python {info['python']}, torch {info['torch']}"
        + (f" (CUDA {info['cuda']})" if info["cuda"] else "")
        + f"; OMP_WAIT_POLICY={info['omp_wait_policy']}",
        f"load average at start (1/5/15 min): {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}",
    ]


def matmul_peak(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    n: int | None = None,
    reps: int = 5,
) -> tuple[float, Timing, int]:
    """Achieved TFLOP/s of one big square matrix product, best of ``reps`` (the device's reference "peak").

    Args:
        device: where to multiply. dtype: float32 on CPU, bfloat16 on GPUs (tensor cores).
        n: matrix side (default 2048 on CPU, 8192 on CUDA).
        reps: timed repetitions after two warm-up products; the fastest one counts (on a shared
            machine the best repetition is the closest to what the hardware can do).

    Returns:
        ``(tflops, timing, n)`` with ``2 n^3`` FLOPs per product.
    """
    dev = torch.device(device)
    n = n or (8192 if dev.type == "cuda" else 2048)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)
    t = time_call(lambda: torch.mm(a, b), warmup=2, reps=reps, device=dev)
    return 2 * n**3 / t.min / 1e12, t, n


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def fmt(x: float | int | None, digits: int = 2) -> str:
    """Number for a table cell: ``-`` for None/NaN, thousands separators for big integers."""
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float) and not math.isfinite(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table. ``align``: one letter per column, ``l`` or ``r`` (default: first
    column left, the rest right)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    if len(align) != len(headers):
        raise ValueError(f"align has {len(align)} letters for {len(headers)} columns")
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join(sep) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(headers)} columns")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
