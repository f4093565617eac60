"""The rating page in a real headless browser (Debian chromium driven by Playwright).

Builds a tiny study (3 photos x real/gray/tiny model), serves it with uvicorn on 127.0.0.1 (a free
port) in a thread, rates photos by clicking and with the keyboard, then checks the SQLite rows, the
blinding of everything the browser saw, and the report.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.browser

uvicorn = pytest.importorskip("uvicorn")

from conftest import serve_in_thread  # noqa: E402

from colorization import create_model  # noqa: E402
from colorization.inference import checkpoint  # noqa: E402
from colorization.study import REAL_LABEL, build_study, create_app  # noqa: E402
from colorization.study.db import DB_NAME  # noqa: E402
from colorization.study.report import study_report  # noqa: E402

SECRET_MODEL = "zebranet"


@pytest.fixture()
def server(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    torch.manual_seed(0)
    model_dir = checkpoint.save_exported(
        create_model("baseline", width=8, depth=2).eval(), tmp_path / "m", head="regression",
        extra={"working_size": 32},
    )
    study = build_study(
        photos, ["gray", f"{SECRET_MODEL}={model_dir}"], tmp_path / "study", count=3, size=32,
        device="cpu", progress=False,
    )
    with serve_in_thread(create_app(study)) as url:
        yield study, url


def test_rate_photos_in_browser(server, chromium_browser):
    study, base = server
    requested: list[str] = []
    bodies: list[str] = []
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        page.on("request", lambda req: requested.append(req.url))

        def keep(resp):
            if "/img/" not in resp.url:
                try:
                    bodies.append(resp.text())
                except Exception:  # noqa: BLE001 - redirects etc. have no body
                    pass

        page.on("response", keep)
        page.goto(f"{base}/?rater=tester")
        assert page.input_value("#rater") == "tester"
        page.click("#begin")
        page.wait_for_selector("body[data-state=ready]")
        shown = []
        for k, value in enumerate((4, 2, 5)):
            assert page.inner_text("#progress") == f"{k + 1} / 9"
            src = page.get_attribute("#photo", "src")
            assert src.startswith("/img/") and len(src) == len("/img/") + 32
            shown.append(src[5:])
            page.click(f".rating[data-value='{value}']")
            page.wait_for_function(f"document.getElementById('progress').textContent === '{k + 2} / 9'")
            page.wait_for_selector("body[data-state=ready]")
        # keyboard shortcut rates the 4th photo
        shown.append(page.get_attribute("#photo", "src")[5:])
        page.keyboard.press("1")
        page.wait_for_function("document.getElementById('progress').textContent === '5 / 9'")
        page.wait_for_selector("body[data-state=ready]")
        # the photo is really displayed
        assert page.evaluate("document.getElementById('photo').naturalWidth") == 32
        html = page.content()
    finally:
        context.close()

    with sqlite3.connect(study / DB_NAME) as con:
        rows = con.execute("SELECT rater, item, rating FROM ratings ORDER BY id").fetchall()
    assert rows == [("tester", item, v) for item, v in zip(shown, (4, 2, 5, 1))]
    # nothing the browser saw or asked for names a condition, and it only talked to our server
    seen = "\n".join(bodies + requested + [html]).lower()
    assert SECRET_MODEL not in seen and REAL_LABEL not in seen and '"gray"' not in seen
    assert all(url.startswith(base) for url in requested)

    summary, text = study_report(study)
    assert sum(r.count for r in summary) == 4
    assert "real photo (reference)" in text.splitlines()[2]
