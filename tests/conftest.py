"""Shared test configuration and fixtures.

Tests use tiny networks, for which one intra-op thread is faster than several (and the suite
runs beside other processes on 2 cores), so torch is pinned to one thread here, and again around
every test (code under test, such as the trainer, may change the thread count).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)


# --- shared fixtures ---------------------------------------------------------------------------

import pytest  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.inference.checkpoint import save_exported  # noqa: E402
from colorization.models import create_model  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(autouse=True)
def _single_thread():
    """One torch intra-op thread during each test, the previous count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny exported regression model (baseline, width 8) with working size 32."""
    torch.manual_seed(0)
    net = create_model("baseline", width=8, depth=2)
    return save_exported(net, tmp_path_factory.mktemp("tiny"), head="regression", extra={"working_size": 32})


@pytest.fixture(scope="module")
def chromium_browser():
    """Debian's chromium driven by Playwright (headless); skips when either is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser tests"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def hint_model_dir(tmp_path_factory):
    """A tiny exported hint-aware model (effnet_fpn, width 8, random weights) with working size 64;
    its hint encoder is randomised so that hints change the output."""
    torch.manual_seed(0)
    net = create_model("effnet_fpn", pretrained=False, width=8, freeze_stages=0, hints=True)
    for p in net.hint_encoder.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return save_exported(net, tmp_path_factory.mktemp("tiny_hints"), head="regression", extra={"working_size": 64})


@pytest.fixture(scope="module")
def tiny_colorizer(tmp_path_factory) -> Colorizer:
    """A real exported tiny ``baseline`` (width 8) whose output head is biased towards a warm
    colour, so that results have visible chroma, loaded through :class:`Colorizer` (size 32)."""
    torch.manual_seed(0)
    net = create_model("baseline", width=8, depth=2)
    with torch.no_grad():
        net.head.conv.bias.copy_(torch.tensor([0.25, 0.35]))
    folder = save_exported(net, tmp_path_factory.mktemp("tiny_model"), head="regression")
    return Colorizer.from_pretrained(folder, device="cpu", size=32)


@contextlib.contextmanager
def watched_page(browser, url: str) -> Iterator[Any]:
    """A fresh browser context's page opened at ``url``, recording ``page.requested`` (method, URL)
    and ``page.console_errors`` (console errors and uncaught exceptions); closed on exit."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    try:
        pg = context.new_page()
        pg.requested = []
        pg.console_errors = []
        pg.on("request", lambda req: pg.requested.append((req.method, req.url)))
        pg.on("console", lambda msg: msg.type == "error" and pg.console_errors.append(msg.text))
        pg.on("pageerror", lambda exc: pg.console_errors.append(str(exc)))
        pg.goto(url)
        yield pg
    finally:
        context.close()


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free 127.0.0.1 port in a daemon thread; yield its base URL.

    Waits up to 30 s for start-up (fails the test if the server dies or does not start) and
    stops the server on exit.
    """
    import uvicorn  # the browser tests skip themselves when it is missing

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
