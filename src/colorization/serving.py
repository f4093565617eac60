"""What the web service and the rating study share: the JSON error body ``{"error": code,
"detail": message}``, and running an app with uvicorn on a socket bound first, so that the URL
printed names the real port (``--port 0`` picks a free one)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

DEFAULT_QUEUE_SIZE = 128
"""Requests that may wait for a worker (the service's default). A waiting request holds only its
upload's bytes (at most ``max_upload_bytes``; nothing is decoded before a worker takes it), so the
queue's memory is bounded by ``queue_size * max_upload_bytes`` and a burst of 64 ordinary photos is
absorbed; beyond ``workers + queue_size`` the answer is 503 + ``Retry-After`` at once."""

__all__ = ["bind_socket", "url_of", "run_app", "error_body", "status_code_name"]


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


def run_app(app: Any, host: str, port: int, *, log_level: str = "info", announce: Callable[[str], None] | None = None) -> None:
    """Bind ``host:port``, call ``announce(url)`` with the real URL, then serve ``app`` (blocking)."""
    import uvicorn  # the 'serve' extra

    sock = bind_socket(host, port)
    if announce is not None:
        announce(url_of(sock))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    server.run(sockets=[sock])
