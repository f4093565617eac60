"""Servers bind first and print the real URL (``--port 0`` included)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from colorization.serve.serving import bind_socket, url_of


def test_bind_socket_port_zero_gets_a_real_port():
    sock = bind_socket("127.0.0.1", 0)
    try:
        url = url_of(sock)
        port = int(url.rsplit(":", 1)[1])
        assert url.startswith("http://127.0.0.1:") and port > 0
        with pytest.raises(OSError):  # the same port can't be bound twice while listening
            bind_socket("127.0.0.1", port).close()
    finally:
        sock.close()


def test_serve_port_zero_prints_the_bound_port_and_answers_there(model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorization.cli", "serve", "--port", "0", "--model", str(model_dir),
         "--log-level", "warning"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        deadline = time.time() + 60
        url = None
        while time.time() < deadline and url is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"page at (http://127\.0\.0\.1:(\d+))/", line)
            if m:
                url = m.group(1)
                assert int(m.group(2)) > 0
        assert url is not None, "serve printed no page URL"
        for _ in range(50):
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                    body = json.loads(resp.read())
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("service did not answer on the printed port")
        assert body.get("status") == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
