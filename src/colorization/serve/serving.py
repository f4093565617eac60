"""What the web service and the rating study share: the JSON error body ``{"error": code,
"detail": message}``, and running an app with uvicorn on a socket bound first, so that the URL
printed names the real port (``--port 0`` picks a free one); and the service's bounded
:class:`InferenceQueue` in front of its worker threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

DEFAULT_QUEUE_SIZE = 128
"""Requests that may wait for a worker (the service's default). A waiting request holds only its
upload's bytes (at most ``max_upload_bytes``; nothing is decoded before a worker takes it), so the
queue's memory is bounded by ``queue_size * max_upload_bytes`` and a burst of 64 ordinary photos is
absorbed; beyond ``workers + queue_size`` the answer is 503 + ``Retry-After`` at once."""

__all__ = ["bind_socket", "url_of", "run_app", "error_body", "status_code_name", "InferenceQueue", "DEFAULT_QUEUE_SIZE"]


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error answer: ``{"error": code, "detail": detail, **extra}``."""
    return {"error": code, "detail": detail, **extra}


def status_code_name(status: int) -> str:
    """Machine-readable code for an HTTP status: ``404 -> "not_found"`` (``"error"`` if unknown)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_") or "error"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0 = any free port).

    Raises:
        OSError: the address cannot be bound (in use, no such interface, ...).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_app(
    app: Any, host: str, port: int, *, log_level: str = "info", announce: Callable[[str], None] | None = None
) -> None:
    """Bind ``host:port``, call ``announce(url)`` with the real URL, then serve ``app`` (blocking)."""
    import uvicorn  # the 'serve' extra

    sock = bind_socket(host, port)
    if announce is not None:
        announce(url_of(sock))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    server.run(sockets=[sock])


class InferenceQueue:
    """A bounded queue in front of a thread pool of ``workers`` threads.

    At most ``workers + queue_size`` jobs are admitted at a time; :meth:`try_admit` returns False
    beyond that (the caller answers 503). Admission is released when the job finishes or is
    cancelled before it starts, so client disconnects never leak a slot. Thread-safe and not tied
    to an event loop.
    """

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="colorize"
        )
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._served = 0
        self._mean_seconds: float | None = None

    @property
    def capacity(self) -> int:
        return self.workers + self.queue_size

    def try_admit(self) -> bool:
        with self._lock:
            if self._admitted >= self.capacity:
                return False
            self._admitted += 1
            return True

    def _release(self, _future: concurrent.futures.Future) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on a worker thread (the caller must have been admitted)."""

        def job() -> Any:
            with self._lock:
                self._running += 1
            start = time.perf_counter()
            try:
                return fn()
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self._running -= 1
                    self._served += 1
                    m = self._mean_seconds
                    self._mean_seconds = elapsed if m is None else 0.8 * m + 0.2 * elapsed

        try:
            future = self._executor.submit(job)
        except BaseException:
            self._release(None)  # type: ignore[arg-type]
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the time to drain the queue, 1..60."""
        with self._lock:
            mean = self._mean_seconds if self._mean_seconds is not None else 1.0
            backlog = self._admitted
        return int(min(60, max(1, math.ceil(mean * backlog / self.workers))))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "depth": self._admitted - self._running,
                "running": self._running,
                "queue_size": self.queue_size,
                "workers": self.workers,
                "served": self._served,
                "mean_seconds": None if self._mean_seconds is None else round(self._mean_seconds, 4),
            }

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
