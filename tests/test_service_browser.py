"""The service's page in a real headless browser (Debian chromium driven by Playwright).

Starts uvicorn on 127.0.0.1 (a free port) in a thread with a tiny real model, uploads a grayscale
photo through the page's file input, and checks that a coloured result of the right size is shown
and can be downloaded, that API errors are displayed, and that the page requests nothing outside
the server.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

uvicorn = pytest.importorskip("uvicorn")

from conftest import serve_in_thread, watched_page  # noqa: E402

from colorization.serve.service import create_app  # noqa: E402

WIDTH, HEIGHT = 96, 64

# Reads an <img> back through a canvas: natural size and mean/max channel spread (chroma, 0..255).
PIXELS_JS = """(id) => {
  const img = document.getElementById(id);
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, max = 0;
  for (let i = 0; i < d.length; i += 4) {
    const s = Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
    sum += s; if (s > max) max = s;
  }
  return {width: c.width, height: c.height, meanChroma: sum / (d.length / 4), maxChroma: max};
}"""


def gray_photo(path: Path) -> Path:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    arr = (30 + 200 * x / (WIDTH - 1) * (0.4 + 0.6 * y / (HEIGHT - 1))).astype(np.uint8)
    arr[16:40, 20:50] = 230
    Image.fromarray(arr, mode="L").save(path)
    return path


def chroma(img: Image.Image) -> float:
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    return float((a.max(axis=2) - a.min(axis=2)).mean())


@pytest.fixture(scope="module")
def server_url(tiny_colorizer):
    with serve_in_thread(create_app(tiny_colorizer, max_upload_bytes=1_000_000)) as url:
        yield url


@pytest.fixture()
def page(chromium_browser, server_url: str):
    with watched_page(chromium_browser, server_url + "/") as pg:
        yield pg


def test_upload_shows_colour_result_and_downloads(page, server_url: str, tmp_path: Path) -> None:
    # (selectors, not wait_for_function: the page's CSP forbids the eval() that polling needs)
    page.wait_for_selector("body[data-state=idle]")
    page.wait_for_selector("#model-info:has-text('baseline')")
    page.set_input_files("#file-input", str(gray_photo(tmp_path / "street.png")))
    page.wait_for_selector("body[data-state=done], body[data-state=error]", state="attached", timeout=60_000)
    assert page.evaluate("document.body.dataset.state") == "done", page.inner_text("#error")
    assert page.is_visible("#results")
    assert page.is_hidden("#error")
    assert "street.png" in page.inner_text("#status")

    result = page.evaluate(PIXELS_JS, "result-image")
    gray = page.evaluate(PIXELS_JS, "gray-image")
    assert (result["width"], result["height"]) == (WIDTH, HEIGHT)
    assert (gray["width"], gray["height"]) == (WIDTH, HEIGHT)
    assert result["meanChroma"] > 10.0, result  # the result shown is in colour
    assert gray["maxChroma"] == 0, gray  # the input is shown in gray

    # the before/after slider moves the divider
    page.fill("#compare-slider", "20")
    position = page.evaluate("getComputedStyle(document.getElementById('compare')).getPropertyValue('--position')")
    assert position.strip() == "20%"

    if os.environ.get("COLORIZATION_SCREENSHOT"):
        page.screenshot(path=os.environ["COLORIZATION_SCREENSHOT"], full_page=True)

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == "street_color.png"
    saved = Path(download.path())
    with Image.open(saved) as img:
        assert img.format == "PNG" and img.size == (WIDTH, HEIGHT)
        assert chroma(img) > 10.0

    # the page only talked to this server (blob:/data: URLs are local)
    external = [u for _, u in page.requested if not u.startswith((server_url, "blob:", "data:"))]
    assert external == []
    assert page.console_errors == []


def test_api_errors_are_shown(page, tmp_path: Path) -> None:
    page.wait_for_selector("body[data-state=idle]")
    # a result first: the error that follows must clear it (no stale result beside the error)
    page.set_input_files("#file-input", str(gray_photo(tmp_path / "first.png")))
    page.wait_for_selector("body[data-state=done]", state="attached", timeout=60_000)
    assert page.is_visible("#results")
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a photo\n" * 10)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("body[data-state=error]", state="attached", timeout=30_000)
    message = page.inner_text("#error")
    assert page.is_visible("#error")
    assert "Not an image" in message and "notes.txt" in message
    assert page.is_hidden("#results")
    assert page.get_attribute("#result-image", "src") is None
    assert page.get_attribute("#gray-image", "src") is None  # no broken preview of the non-image



def test_api_reference_renders_offline_and_tries_a_request(chromium_browser, server_url: str, tmp_path: Path) -> None:
    """/docs is FastAPI's Swagger UI with its assets served by this app: it renders the operations
    of /openapi.json, "Try it out" colorizes an upload, and its CSP (the inline script allowed by
    hash) blocks nothing the page needs."""
    context = chromium_browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        pg = context.new_page()
        requested: list[str] = []
        errors: list[str] = []
        pg.on("request", lambda req: requested.append(req.url))
        pg.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(server_url + "/docs")
        pg.wait_for_selector(".opblock-post .opblock-summary-path:has-text('/colorize')", timeout=30_000)
        paths = pg.locator(".opblock-summary-path").all_inner_texts()
        expected = [
            "/colorize", "/health", "/videos", "/videos/{job_id}", "/videos/{job_id}", "/videos/{job_id}/result",
        ]
        assert sorted(p.strip() for p in paths) == expected, paths  # GET and DELETE share /videos/{job_id}
        post = ".opblock-post:has-text('Colorize an uploaded photo')"  # POST /videos is another
        pg.click(f"{post} .opblock-summary")  # expand POST /colorize: its form fields render
        for field in ("file", "size", "saturation", "format", "hints"):
            pg.wait_for_selector(f"{post} tr[data-property-name={field}]", timeout=10_000)
        pg.click(f"{post} button.try-out__btn")
        pg.set_input_files(f"{post} input[type=file]", str(gray_photo(tmp_path / "docs.png")))
        pg.fill(f"{post} tr[data-property-name=hints] input[type=text]", "")  # Swagger fills in the example
        pg.click(f"{post} button.execute")
        status = f"{post} .live-responses-table tr.response .response-col_status"
        pg.wait_for_selector(status, timeout=60_000)
        assert pg.inner_text(status).strip() == "200", pg.inner_text(f"{post} .live-responses-table")
        img = pg.locator(f"{post} .live-responses-table img").first
        img.wait_for(timeout=10_000)
        assert img.get_attribute("src").startswith("blob:")
        size = img.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
        assert size == [WIDTH, HEIGHT]
        for url in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/openapi.json"):
            assert server_url + url in requested, url
        external = [u for u in requested if not u.startswith((server_url, "blob:", "data:"))]
        assert external == []
        assert errors == []  # a CSP violation would be reported here
    finally:
        context.close()


@pytest.mark.parametrize("limit, shown", [(20 * 1024 * 1024, "Up to 20 MiB"), (1_000_000, "Up to 977 KiB"),
                                          (1536 * 1024, "Up to 1.5 MiB")])
def test_upload_limit_is_shown_in_binary_units(chromium_browser, tiny_colorizer, limit: int, shown: str) -> None:
    """The page states the service's upload limit as it is set: a 20 MiB limit is "20 MiB", not "20.0 MB"."""
    with serve_in_thread(create_app(tiny_colorizer, max_upload_bytes=limit)) as url:
        context = chromium_browser.new_context()
        try:
            pg = context.new_page()
            pg.goto(url + "/")
            pg.wait_for_selector("#limits-hint:has-text('Up to')")
            text = pg.inner_text("#limits-hint")
            assert text.startswith(shown + ";"), text  # the size, then the photo and video limits
            assert "megapixels" in text and "Videos:" in text
        finally:
            context.close()
