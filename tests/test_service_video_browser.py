"""Video uploads on the service's page in a real headless browser (Debian chromium + Playwright).

Uploads a tiny generated clip (64x48, gray) through the page's file input and checks that the page
starts a job (POST /videos), polls it (GET /videos/{id}) showing progress, then plays the
colorized result in a <video> (in colour, the clip's size and length) and offers it for download
(the saved file is the whole video, audio included); and that a job that fails, a non-video, an
empty file and frames over the pixel bound are reported in the alert region, with no stale result.
The page's Content-Security-Policy is in force throughout (a violation would be a console error).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

uvicorn = pytest.importorskip("uvicorn")
av = pytest.importorskip("av")

from conftest import serve_in_thread, watched_page  # noqa: E402
from test_video import make_clip  # noqa: E402

from colorization.serve.service import create_app  # noqa: E402
from colorization.video import VideoReader  # noqa: E402

FRAMES = 12

# A <video>'s current frame read back through a canvas: size, duration and mean chroma (0..255).
VIDEO_JS = """(id) => {
  const v = document.getElementById(id);
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(v, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
  return {width: v.videoWidth, height: v.videoHeight, duration: v.duration, meanChroma: sum / (d.length / 4)};
}"""

# Records every text the status line shows (a MutationObserver; installed over CDP, which the
# page's CSP does not restrict).
WATCH_STATUS_JS = """() => {
  window.statusLog = [];
  const el = document.getElementById('status');
  new MutationObserver(() => window.statusLog.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def server_url(tiny_colorizer):
    with serve_in_thread(create_app(tiny_colorizer, max_upload_bytes=1_000_000)) as url:
        yield url


@pytest.fixture()
def page(chromium_browser, server_url: str):
    with watched_page(chromium_browser, server_url + "/") as pg:
        pg.wait_for_selector("body[data-state=idle]")
        pg.wait_for_selector("#limits-hint:has-text('Videos: up to 120 s')")  # /health read
        yield pg


def finish(page, timeout: float = 60_000) -> str:
    page.wait_for_selector("body[data-state=done], body[data-state=error]", state="attached", timeout=timeout)
    return page.evaluate("document.body.dataset.state")


def test_video_upload_progress_result_and_download(page, server_url: str, tmp_path: Path) -> None:
    clip = tmp_path / "walk.mp4"
    make_clip(clip, n=FRAMES)
    page.evaluate(WATCH_STATUS_JS)
    page.set_input_files("#file-input", str(clip))
    assert finish(page) == "done", page.inner_text("#error")
    assert page.is_visible("#video-results") and page.is_hidden("#results") and page.is_hidden("#error")
    assert page.is_hidden("#video-progress")
    assert page.is_visible("#video-format") and page.is_hidden("#size") and page.is_hidden("#format")
    assert page.inner_text("#status") == "Done: walk.mp4 colorized."
    log = page.evaluate("window.statusLog")
    assert any(text.startswith("Colorizing walk.mp4: ") for text in log), log  # progress was shown

    posts = [url for method, url in page.requested if method == "POST"]
    assert posts == [server_url + "/videos"]
    polls = [url for method, url in page.requested if method == "GET" and "/videos/" in url]
    job_url = polls[0]
    assert job_url.startswith(server_url + "/videos/") and job_url + "/result" in polls

    page.locator("#result-video").evaluate("v => v.readyState >= 2 || new Promise(r => v.onloadeddata = r)")
    shown = page.evaluate(VIDEO_JS, "result-video")
    assert (shown["width"], shown["height"]) == (64, 48)
    assert abs(shown["duration"] - FRAMES / 25) < 0.1, shown
    assert shown["meanChroma"] > 10.0, shown  # the result is in colour (the clip is gray)
    assert "64×48 px" in page.inner_text("#video-info") and f"{FRAMES} frames" in page.inner_text("#video-info")
    page.locator("#input-video").evaluate("v => v.readyState >= 2 || new Promise(r => v.onloadeddata = r)")
    assert page.evaluate(VIDEO_JS, "input-video")["meanChroma"] < 3.0  # the upload, played from a blob:

    if os.environ.get("COLORIZATION_SCREENSHOT"):
        page.screenshot(path=os.environ["COLORIZATION_SCREENSHOT"], full_page=True)

    with page.expect_download() as info:
        page.click("#video-download")
    download = info.value
    assert download.suggested_filename == "walk_color.mp4"
    with VideoReader(Path(download.path())) as reader:
        assert (reader.info.width, reader.info.height) == (64, 48)
        assert len(list(reader.frames())) == FRAMES
    with av.open(download.path()) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]

    # another file replaces the result and deletes the finished job on the server
    page.set_input_files("#file-input", str(make_clip_file(tmp_path / "second.mp4")))
    assert finish(page) == "done", page.inner_text("#error")
    assert ("DELETE", job_url) in page.requested
    external = [u for _, u in page.requested if not u.startswith((server_url, "blob:", "data:"))]
    assert external == []
    assert page.console_errors == []


def make_clip_file(path: Path, **kwargs) -> Path:
    make_clip(path, n=kwargs.pop("n", 6), **kwargs)
    return path


def test_video_errors_are_shown(page, tmp_path: Path) -> None:
    # a job that fails while decoding (truncated Matroska: the upload check passes, decoding does not)
    full = make_clip_file(tmp_path / "full.mkv", n=30, fmt="matroska").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full[: len(full) // 2])
    page.set_input_files("#file-input", str(cut))
    assert finish(page) == "error"
    message = page.inner_text("#error")
    assert message.startswith("Cannot colorize: cut.mkv:") and "truncated" in message, message
    assert page.is_hidden("#video-results") and page.is_hidden("#video-progress")

    # a good result first: each error that follows must clear it
    page.set_input_files("#file-input", str(make_clip_file(tmp_path / "ok.mp4")))
    assert finish(page) == "done", page.inner_text("#error")
    cases = [
        ("notes.mp4", b"this is not a video\n" * 20, "Not a video: notes.mp4"),  # 415
        ("empty.mp4", b"", "Cannot colorize: empty.mp4"),  # 422
        ("huge.mp4", make_clip_file(tmp_path / "huge.mp4", n=2, w=2000, h=1100, audio=None).read_bytes(),
         "Too large: huge.mp4"),  # 413: 2.2 MP frames, over the 1920x1088 bound
    ]
    for name, data, expected in cases:
        page.set_input_files("#file-input", files=[{"name": name, "mimeType": "video/mp4", "buffer": data}])
        assert finish(page) == "error"
        message = page.inner_text("#error")
        assert message.startswith(expected), (name, message)
        assert page.is_visible("#error")
        assert page.is_hidden("#video-results") and page.is_hidden("#results")
        assert page.get_attribute("#result-video", "src") is None
        page.set_input_files("#file-input", str(make_clip_file(tmp_path / "ok.mp4")))
        assert finish(page) == "done", page.inner_text("#error")
    # the browser logs each 4xx answer; nothing else (a CSP violation, a script error) may appear
    answered = "Failed to load resource: the server responded with a status of "
    assert [e for e in page.console_errors if not e.startswith(answered)] == [], page.console_errors
    assert len(page.console_errors) == 3, page.console_errors  # 415, 422, 413
