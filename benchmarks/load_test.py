"""Bounded loopback load test of ``colorization serve``.

Starts the service on 127.0.0.1 (a free port) in a child process, fires ``--requests`` POST
/colorize requests with ``--concurrency`` client threads, and prints throughput, latency
percentiles, responses by status and the server's peak resident memory (VmHWM). It stops by itself:
after the last request, or after ``--max-seconds`` (unsent requests are reported), and always shuts
the server down.

    python benchmarks/load_test.py --tiny --requests 40 --concurrency 8
    python benchmarks/load_test.py --model src/colorization/weights/default --image examples/astronaut_gray.jpg

With more concurrent clients than ``--workers + --queue-size`` some requests get 503 (queue full)
by design; that is the graceful-degradation path being measured. ``--retries N`` makes clients honour
``Retry-After`` like a well-behaved client would (latencies then include the waits).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_image(width: int, height: int, seed: int = 0) -> bytes:
    """A grayscale PNG: smooth gradient plus mild noise (stands in for a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = 40 + 150 * (x / width) * (0.6 + 0.4 * np.sin(y / max(1, height) * 6.0)) + rng.normal(0, 6, (height, width))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_tiny_model(folder: Path) -> Path:
    """A randomly initialised tiny ``baseline`` (measures the service, not the network)."""
    import torch

    from colorization import create_model
    from colorization.inference.checkpoint import save_exported

    torch.manual_seed(0)
    save_exported(create_model("baseline", width=16, depth=3), folder, head="regression")
    return folder


def read_status_kib(pid: int, key: str) -> int | None:
    """``VmHWM`` / ``VmRSS`` of ``pid`` in KiB (Linux), None elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--model", type=Path, help="exported model folder (default: the shipped model)")
    group.add_argument("--tiny", action="store_true", help="use a random tiny baseline model")
    ap.add_argument("--image", type=Path, help="photo to upload (default: a generated grayscale PNG)")
    ap.add_argument("--width", type=int, default=512, help="generated image width")
    ap.add_argument("--height", type=int, default=384, help="generated image height")
    ap.add_argument("--requests", type=int, default=40, help="total requests (max 10000)")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads (max 256)")
    ap.add_argument("--workers", type=int, default=1, help="server inference threads")
    ap.add_argument("--queue-size", type=int, default=128, help="server queue size (the service's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="stop sending after this long")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (s)")
    ap.add_argument("--retries", type=int, default=0,
                    help="on 503, wait Retry-After and try again up to this many times (max 10)")
    args = ap.parse_args()
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 256 or not 0 <= args.retries <= 10:
        ap.error("--requests must be in 1..10000, --concurrency in 1..256 and --retries in 0..10")

    payload = args.image.read_bytes() if args.image else make_image(args.width, args.height)
    with Image.open(io.BytesIO(payload)) as im:
        image_desc = f"{im.width}x{im.height} {im.format}, {len(payload) / 1024:.0f} KiB"

    tmp = tempfile.TemporaryDirectory(prefix="colorization-load-")
    model = make_tiny_model(Path(tmp.name) / "tiny") if args.tiny else args.model
    port = free_port()
    cmd = [
        sys.executable, "-m", "colorization.cli", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--device", args.device,
        "--workers", str(args.workers), "--queue-size", str(args.queue_size), "--log-level", "warning",
    ]
    if model is not None:
        cmd += ["--model", str(model)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    stop_sampling = threading.Event()
    peak_rss = [0]

    def sample_rss() -> None:
        while not stop_sampling.wait(0.05):
            rss = read_status_kib(server.pid, "VmRSS")
            if rss:
                peak_rss[0] = max(peak_rss[0], rss)

    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline:
            if server.poll() is not None:
                print(f"server exited with {server.returncode}:\n{server.stderr.read()}", file=sys.stderr)
                return 1
            try:
                health = httpx.get(f"{base}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        if health is None:
            print("server did not come up within 120 s", file=sys.stderr)
            return 1
        idle_rss = read_status_kib(server.pid, "VmRSS")
        threading.Thread(target=sample_rss, daemon=True).start()

        # one warm-up request (not counted)
        httpx.post(f"{base}/colorize", files={"file": ("warmup.png", payload)}, timeout=args.timeout)

        statuses: collections.Counter[str] = collections.Counter()
        latencies_ok: list[float] = []
        latencies_all: list[float] = []
        lock = threading.Lock()
        send_deadline = time.monotonic() + args.max_seconds
        local = threading.local()

        def one(i: int) -> None:
            if time.monotonic() > send_deadline:
                with lock:
                    statuses["not sent (time limit)"] += 1
                return
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=args.timeout)
            start = time.perf_counter()
            for attempt in range(args.retries + 1):
                try:
                    r = client.post(f"{base}/colorize", files={"file": (f"img{i}.png", payload)})
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    break
                if key != "503" or attempt == args.retries:
                    break
                wait = float(r.headers.get("retry-after", "1"))
                if time.monotonic() + wait > send_deadline:
                    break
                with lock:
                    statuses["503 (retried)"] += 1
                time.sleep(wait)
            elapsed = time.perf_counter() - start
            with lock:
                statuses[key] += 1
                latencies_all.append(elapsed)
                if key == "200":
                    latencies_ok.append(elapsed)

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t0
        stop_sampling.set()
        hwm = read_status_kib(server.pid, "VmHWM")
        final_health = httpx.get(f"{base}/health", timeout=5).json()
    finally:
        stop_sampling.set()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        tmp.cleanup()

    ok = statuses.get("200", 0)
    rows = [
        ("model", f"{health['model']} on {health['device']}"),
        ("image", image_desc),
        ("requests / concurrency / retries", f"{args.requests} / {args.concurrency} / {args.retries}"),
        ("server workers / queue size", f"{args.workers} / {args.queue_size}"),
        ("wall time", f"{wall:.2f} s"),
        ("throughput (200s)", f"{ok / wall:.2f} req/s"),
        ("latency p50 / p90 / p99 (200s)",
         " / ".join(f"{percentile(latencies_ok, q) * 1000:.0f} ms" for q in (50, 90, 99))),
        ("latency p50 / p99 (all)",
         " / ".join(f"{percentile(latencies_all, q) * 1000:.0f} ms" for q in (50, 99))),
        ("responses by status", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("server mean inference", f"{(final_health['queue']['mean_seconds'] or 0) * 1000:.0f} ms"),
        ("server RSS idle / peak sampled / VmHWM",
         " / ".join("n/a" if v is None else f"{v / 1024:.0f} MiB" for v in (idle_rss, peak_rss[0] or None, hwm))),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\n{'metric'.ljust(width)} | value\n{'-' * width}-+-{'-' * 40}")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
