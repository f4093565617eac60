"""Colour hints on the service's page in a real headless browser (Debian chromium + Playwright).

Places one colour point with the mouse (then drags it) and one with the keyboard only, and checks
that the result shown changes near the points and stays the same far from them, that the points
are listed accessibly, that Tab reaches the list and that Delete removes a point.

The model is a tiny exported hint-aware ``effnet_fpn`` whose hint features enter only at stride 4
(the hint encoder's stride-4 branch is randomised, its coarser branches keep their zero-initialised
outputs), so a hint's effect is local by construction: it reaches a few stride-4 cells around the
point through the head's 3x3 convolutions, and the rest of the image is computed exactly as
without hints. (The ``hint_model_dir`` fixture randomises the whole encoder, whose coarse branches
spread a hint over the whole 64 px working image.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.browser

uvicorn = pytest.importorskip("uvicorn")

from conftest import serve_in_thread  # noqa: E402

from colorization import Colorizer, create_model  # noqa: E402
from colorization.inference.checkpoint import save_exported  # noqa: E402
from colorization.serve.service import create_app  # noqa: E402

WIDTH, HEIGHT = 256, 64

# The <img>'s pixels as a flat RGBA list (read through a canvas; the blob: URL is same-origin).
PIXELS_JS = """(id) => {
  const img = document.getElementById(id);
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
}"""


def local_hint_colorizer(folder: Path) -> Colorizer:
    torch.manual_seed(0)
    net = create_model("effnet_fpn", pretrained=False, width=8, freeze_stages=0, hints=True)
    enc = net.hint_encoder
    with torch.no_grad():
        torch.nn.init.normal_(enc.inp[0].weight, std=2.0)
        torch.nn.init.normal_(enc.inp[0].bias, std=0.1)
        torch.nn.init.normal_(enc.out[0].weight, std=4.0)
        assert all(float(conv.weight.abs().max()) == 0.0 for conv in enc.out[1:])  # coarse branches: no-op
    save_exported(net, folder, head="regression", extra={"working_size": 64})
    return Colorizer.from_pretrained(folder, device="cpu")


def gray_photo(path: Path) -> Path:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    arr = (40 + 150 * x / (WIDTH - 1) + 30 * y / (HEIGHT - 1)).astype(np.uint8)
    Image.fromarray(arr, mode="L").save(path)
    return path


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory):
    app = create_app(local_hint_colorizer(tmp_path_factory.mktemp("local_hints")), max_upload_bytes=1_000_000)
    with serve_in_thread(app) as url:
        yield url


def result_pixels(page) -> np.ndarray:
    flat = np.asarray(page.evaluate(PIXELS_JS, "result-image"), dtype=np.int16)
    return flat.reshape(HEIGHT, WIDTH, 4)[..., :3]


def wait_for_result(page, key: str) -> None:
    """Until the result computed with exactly the points ``key`` ("x,y,#rrggbb;...") is shown."""
    page.wait_for_selector(f'body[data-state=done] #result-image[data-hints="{key}"]', state="attached", timeout=30_000)


def screen_xy(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of the centre of image pixel (x, y) of the result."""
    box = page.locator("#result-image").bounding_box()
    return box["x"] + (x + 0.5) / WIDTH * box["width"], box["y"] + (y + 0.5) / HEIGHT * box["height"]


def test_hints_placed_with_mouse_and_keyboard_change_the_result_locally(chromium_browser, server_url, tmp_path):
    context = chromium_browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        requested, errors = [], []
        page.on("request", lambda req: requested.append(req.url))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server_url + "/")
        page.wait_for_selector("#model-info:has-text('colour hints')")
        page.set_input_files("#file-input", str(gray_photo(tmp_path / "wide.png")))
        wait_for_result(page, "")
        assert page.is_visible("#hint-panel") and page.is_visible("#hint-empty")
        auto = result_pixels(page)

        # 1. mouse: a new point takes the picker's colour where the result is clicked; then drag it
        page.fill("#hint-color", "#e02020")
        page.mouse.click(*screen_xy(page, 20, 20))
        assert page.get_attribute("#hint-list", "data-points") == "20,20,#e02020"
        page.mouse.move(*screen_xy(page, 20, 20))
        page.mouse.down()
        page.mouse.move(*screen_xy(page, 30, 40), steps=4)
        page.mouse.up()
        assert page.get_attribute("#hint-list", "data-points") == "30,40,#e02020"

        # 2. keyboard only: let the dragged point go, move the cursor (Shift: 10 steps of 1% of 256 px
        # = 30 px), Enter places point 2 at the cursor and selects it
        assert page.evaluate("document.activeElement.id") == "hint-area"
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+ArrowRight")
        page.keyboard.press("Shift+ArrowRight")
        page.keyboard.press("Enter")
        assert page.get_attribute("#hint-list", "data-points") == "30,40,#e02020;90,40,#e02020"
        # "take the colour the model predicts here" copies the current result's pixel at the point
        wait_for_result(page, "30,40,#e02020;90,40,#e02020")
        current = result_pixels(page)[40, 90]
        page.click("#hint-predicted")
        assert page.input_value("#hint-color") == "#{:02x}{:02x}{:02x}".format(*(int(v) for v in current))
        page.fill("#hint-color", "#2040e0")  # the picker recolours the selected point
        key = "30,40,#e02020;90,40,#2040e0"
        assert page.get_attribute("#hint-list", "data-points") == key
        wait_for_result(page, key)

        items = page.locator("#hint-list button.hint-item")
        assert items.count() == 2
        assert items.nth(0).inner_text().strip() == "Point 1: x 30, y 40, #e02020"
        assert items.nth(1).inner_text().strip() == "Point 2: x 90, y 40, #2040e0"
        assert items.nth(1).get_attribute("aria-pressed") == "true"  # the selected one
        assert page.get_attribute("#hint-area", "role") == "application"

        hinted = result_pixels(page)
        change = np.abs(hinted - auto).max(axis=2)
        for x, y in ((30, 40), (90, 40)):
            near = change[y - 2 : y + 3, x - 2 : x + 3]
            assert near.mean() > 15, (x, y, near)
        # 80+ px from both points (beyond the hint's receptive field) nothing changed
        assert change[:, 170:].max() <= 2, change[:, 170:].max()
        # ... and the lightness is still the input's everywhere
        lum = hinted @ np.array([0.299, 0.587, 0.114])
        assert np.abs(lum - auto @ np.array([0.299, 0.587, 0.114])).mean() < 4

        # 3. Tab from the image reaches the point list; Delete there removes a point
        page.focus("#hint-area")
        if os.environ.get("COLORIZATION_SCREENSHOT"):
            page.screenshot(path=os.environ["COLORIZATION_SCREENSHOT"], full_page=True)
        for _ in range(8):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.closest('#hint-list') !== null"):
                break
        assert page.evaluate("document.activeElement.className") == "hint-item"
        assert page.evaluate("document.activeElement.dataset.id") == "1"
        page.keyboard.press("Delete")
        assert page.get_attribute("#hint-list", "data-points") == "90,40,#2040e0"
        wait_for_result(page, "90,40,#2040e0")
        assert "deleted" in page.inner_text("#hint-position")

        assert [u for u in requested if not u.startswith((server_url, "blob:", "data:"))] == []
        assert errors == []
    finally:
        context.close()


def test_hint_controls_are_hidden_for_models_without_hints(chromium_browser, tmp_path, model_dir):
    app = create_app(Colorizer.from_pretrained(model_dir, device="cpu"))
    with serve_in_thread(app) as url:
        context = chromium_browser.new_context()
        try:
            page = context.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#model-info:has-text('baseline')")
            page.set_input_files("#file-input", str(gray_photo(tmp_path / "wide.png")))
            wait_for_result(page, "")
            assert page.is_hidden("#hint-panel")
            assert page.get_attribute("#hint-area", "tabindex") is None
            page.mouse.click(*screen_xy(page, 20, 20))  # clicking the result places nothing
            assert page.get_attribute("#hint-list", "data-points") == ""
        finally:
            context.close()
