"""The reference photo on the service's page in a real headless browser (Debian chromium +
Playwright): "add a reference photo" re-colorizes the photo with it, shows it beside the result
with what the server said of the match, the strength slider is sent along, and removing it gives
the automatic result back. A model without hint input gets no reference control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

pytest.importorskip("uvicorn")
skimage_data = pytest.importorskip("skimage.data")

from conftest import serve_in_thread, watched_page  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.serve.service import create_app  # noqa: E402

SIDE = 96
PIXELS_JS = """(id) => {
  const img = document.getElementById(id);
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
}"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reference_page")
    photo = Image.fromarray(skimage_data.coffee()).convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)
    photo.convert("L").save(folder / "cup.png")
    view = photo.crop((0, 0, 64, SIDE)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((80, 120))
    view.save(folder / "cup_ref.png")
    photo.convert("L").convert("RGB").save(folder / "gray_ref.png")
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def server_url():
    with serve_in_thread(create_app(Colorizer.from_pretrained(device="cpu"), max_upload_bytes=1_000_000)) as url:
        yield url


def result_pixels(page) -> np.ndarray:
    return np.asarray(page.evaluate(PIXELS_JS, "result-image"), dtype=np.int16).reshape(SIDE, SIDE, 4)[..., :3]


def wait_for_result(page, reference: str) -> None:
    """Until the result computed with exactly ``reference`` ("name@strength", "" for none) is shown."""
    page.wait_for_selector(f'body[data-state=done] #result-image[data-reference="{reference}"]', state="attached",
                           timeout=30_000)


def test_adding_and_removing_a_reference_photo(chromium_browser, server_url, files) -> None:
    with watched_page(chromium_browser, server_url + "/") as page:
        page.wait_for_selector("#model-info:has-text('colour hints')")
        assert page.is_visible("#reference-control") and page.is_hidden("#reference-remove")
        page.set_input_files("#file-input", str(files["cup"]))
        wait_for_result(page, "")
        auto = result_pixels(page)
        assert page.is_hidden("#reference-figure")

        page.set_input_files("#reference-input", str(files["cup_ref"]))
        wait_for_result(page, "cup_ref.png@1")
        assert page.is_visible("#reference-figure") and page.is_visible("#reference-remove")
        assert "matched" in page.inner_text("#reference-caption")
        assert page.get_attribute("#reference-image", "src").startswith("blob:")
        referenced = result_pixels(page)
        assert np.abs(referenced - auto).mean() > 2  # the reference's colours are used

        page.fill("#reference-strength", "0")  # a range input: sets the value and fires change
        page.dispatch_event("#reference-strength", "change")
        wait_for_result(page, "cup_ref.png@0")
        assert np.abs(result_pixels(page) - auto).max() <= 1  # strength 0: the automatic colours

        page.click("#reference-remove")
        wait_for_result(page, "")
        assert page.is_hidden("#reference-figure")
        assert np.abs(result_pixels(page) - auto).max() <= 1

        page.set_input_files("#reference-input", str(files["gray_ref"]))  # a gray reference: its error
        page.wait_for_selector("#error:not([hidden])")
        assert page.inner_text("#error").startswith("Reference photo:") and "gray" in page.inner_text("#error")
        assert page.is_visible("#results")  # the photo's last result stays on screen
        assert [u for _, u in page.requested if not u.startswith((server_url, "blob:", "data:"))] == []
        assert [e for e in page.console_errors if "422" not in e] == []


def test_no_reference_control_for_models_without_hints(chromium_browser, model_dir, files) -> None:
    with serve_in_thread(create_app(Colorizer.from_pretrained(model_dir, device="cpu"))) as url:
        with watched_page(chromium_browser, url + "/") as page:
            page.wait_for_selector("#model-info:has-text('baseline')")
            page.set_input_files("#file-input", str(files["cup"]))
            wait_for_result(page, "")
            assert page.is_hidden("#reference-control") and page.is_hidden("#reference-figure")


def test_a_video_is_sent_with_the_reference_and_shown_beside_it(chromium_browser, server_url, files, tmp_path) -> None:
    from test_video import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, n=6, audio=None)
    with watched_page(chromium_browser, server_url + "/") as page:
        page.wait_for_selector("#model-info:has-text('colour hints')")
        page.set_input_files("#reference-input", str(files["cup_ref"]))  # no photo yet: nothing is sent
        page.set_input_files("#file-input", str(clip))
        page.wait_for_selector("body[data-state=done]", state="attached", timeout=60_000)
        assert page.is_visible("#video-results") and page.is_visible("#video-reference-figure")
        assert page.is_hidden("#reference-figure") and page.is_visible("#reference-control")
        assert "every shot" in page.inner_text("#video-reference-caption")
        posts = [u for m, u in page.requested if m == "POST"]
        assert posts == [server_url + "/videos"]  # the reference went with the video upload
        page.fill("#reference-strength", "1.5")
        page.dispatch_event("#reference-strength", "change")
        assert "press Colorize" in page.inner_text("#status")  # a video is redone only on request
        assert page.console_errors == []
