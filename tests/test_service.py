"""REST service: status codes, limits, queue, health, page (TestClient, tiny real model)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.serve.service import InferenceQueue, ServiceConfig, create_app  # noqa: E402

MAX_UPLOAD = 200_000
MAX_PIXELS = 100_000


def gray_png(width: int = 48, height: int = 40, fmt: str = "PNG") -> bytes:
    """A grayscale gradient with a bright square, encoded in ``fmt``."""
    y, x = np.mgrid[0:height, 0:width]
    arr = (30 + 180 * x / max(1, width - 1) * (0.5 + 0.5 * y / max(1, height - 1))).astype(np.uint8)
    arr[height // 4 : height // 2, width // 4 : width // 2] = 235
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format=fmt)
    return buf.getvalue()


def chroma(img: Image.Image) -> float:
    """Mean max-min channel spread of an RGB image, 0..255."""
    a = np.asarray(img.convert("RGB")).astype(np.int16)
    return float((a.max(axis=2) - a.min(axis=2)).mean())


@pytest.fixture(scope="module")
def colorizer(tiny_colorizer: Colorizer) -> Colorizer:
    return tiny_colorizer


@pytest.fixture(scope="module")
def client(colorizer: Colorizer):
    app = create_app(colorizer, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS, queue_size=2, workers=1)
    with TestClient(app) as c:
        yield c


def post(client: TestClient, data: bytes, name: str = "photo.png", **fields):
    return client.post(
        "/colorize",
        files={"file": (name, data, "application/octet-stream")},
        data={k: str(v) for k, v in fields.items()},
    )


def assert_error(response, status: int, code: str, *needles: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    for needle in needles:
        assert needle in body["detail"], body
    return body


# -------------------------------------------------------------------------------------- 200


def test_colorize_returns_png_equal_to_colorizer(client: TestClient, colorizer: Colorizer) -> None:
    data = gray_png(48, 40)
    r = post(client, data, name="old photo.png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'inline; filename="old_photo_color.png"'
    assert r.headers["x-image-size"] == "48x40"
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "PNG" and out.mode == "RGB" and out.size == (48, 40)
    expected = colorizer(Image.open(io.BytesIO(data)).convert("RGB"), saturation=1.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    assert chroma(out) > 10.0  # the biased head gives a clearly coloured result


def test_size_and_saturation_are_passed_through(client: TestClient, colorizer: Colorizer) -> None:
    data = gray_png(40, 56)
    src = Image.open(io.BytesIO(data)).convert("RGB")
    r = post(client, data, size=64, saturation=0.5)
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(colorizer(src, size=64, saturation=0.5)))
    gray = Image.open(io.BytesIO(post(client, data, saturation=0).content))
    assert chroma(gray) <= 1.0 < chroma(out)


@pytest.mark.parametrize(
    ("upload_fmt", "requested", "media", "pil_format"),
    [
        ("PNG", "jpeg", "image/jpeg", "JPEG"),
        ("PNG", "JPG", "image/jpeg", "JPEG"),
        ("PNG", "webp", "image/webp", "WEBP"),
        ("WEBP", "input", "image/webp", "WEBP"),
        ("JPEG", "input", "image/jpeg", "JPEG"),
        ("BMP", "input", "image/png", "PNG"),
    ],
)
def test_output_formats(client: TestClient, upload_fmt, requested, media, pil_format) -> None:
    r = post(client, gray_png(32, 32, upload_fmt), name="x.img", format=requested)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    out = Image.open(io.BytesIO(r.content))
    assert out.format == pil_format and out.size == (32, 32)


# -------------------------------------------------------------------------------------- 413


def test_upload_over_limit_is_413(client: TestClient) -> None:
    # Content-Length far above the limit: refused before the body is read.
    big = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD + 100_000)
    body = assert_error(post(client, big), 413, "upload_too_large", f"{MAX_UPLOAD} bytes limit")
    assert body["limit_bytes"] == MAX_UPLOAD
    # A file just over the limit whose body still fits the multipart allowance: caught after reading.
    body = assert_error(post(client, bytes(MAX_UPLOAD + 1)), 413, "upload_too_large", "photo.png")
    assert body["limit_bytes"] == MAX_UPLOAD
    # exactly at the limit is not refused for its size (it is refused for not being an image)
    assert_error(post(client, bytes(MAX_UPLOAD)), 415, "not_an_image")


def test_upload_limit_is_enforced_while_streaming(colorizer: Colorizer) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the limit: the ASGI app pulls
    only a few chunks of a 12.5 MiB body and answers 413, it never reads to the end."""
    app = create_app(colorizer, max_upload_bytes=MAX_UPLOAD)
    boundary = "xBOUNDARYx"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    chunk = bytes(64 * 1024)
    total_chunks = 200
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        body = head if pulled == 1 else chunk
        return {"type": "http.request", "body": body, "more_body": pulled <= total_chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/colorize", "raw_path": b"/colorize", "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked"),
                    (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert json.loads(body)["error"] == "upload_too_large"
    limit_chunks = (2 * MAX_UPLOAD + 64 * 1024) // len(chunk) + 2  # a photo and its reference photo
    assert pulled <= limit_chunks < total_chunks


def test_pixel_limit_is_413(client: TestClient) -> None:
    data = gray_png(400, 300)  # 120,000 pixels > MAX_PIXELS, yet a small file
    assert len(data) < MAX_UPLOAD
    assert_error(post(client, data, name="wide.png"), 413, "image_too_large", "wide.png", "pixels")


# -------------------------------------------------------------------------------------- 415/422


def test_not_an_image_is_415(client: TestClient) -> None:
    assert_error(post(client, b"just some text, not pixels\n" * 20, name="notes.txt"), 415, "not_an_image", "notes.txt")


def test_corrupt_image_is_422(client: TestClient) -> None:
    data = gray_png(48, 40)
    assert_error(post(client, data[: len(data) // 2], name="cut.png"), 422, "corrupt_image", "cut.png")


def test_empty_upload_is_422(client: TestClient) -> None:
    assert_error(post(client, b"", name="empty.png"), 422, "empty_image", "empty.png")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"size": 8}, "size"),
        ({"size": 5000}, "size"),
        ({"size": "big"}, "size"),
        ({"saturation": -0.5}, "saturation"),
        ({"saturation": 3}, "saturation"),
        ({"saturation": "nan"}, "saturation"),
        ({"saturation": "lots"}, "saturation"),
        ({"format": "gif"}, "format"),
    ],
)
def test_bad_fields_are_422(client: TestClient, fields: dict, needle: str) -> None:
    body = assert_error(post(client, gray_png(), **fields), 422, "invalid_request", needle)
    assert body["detail"].startswith(needle)


def test_missing_file_is_422(client: TestClient) -> None:
    r = client.post("/colorize", data={"saturation": "1"})
    assert_error(r, 422, "invalid_request", "file", "multipart")


# -------------------------------------------------------------------------------------- 503


class BlockingColorizer:
    """Stands in for a slow model: blocks until released; records the thread it ran on."""

    model_name = "blocking-fake"
    device = "cpu"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.threads: list[str] = []

    def __call__(self, image: Image.Image, size=None, saturation: float = 1.0) -> Image.Image:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        assert self.release.wait(30), "test never released the fake colorizer"
        return Image.new("RGB", image.size, (200, 40, 40))


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_full_queue_is_503_with_retry_after() -> None:
    fake = BlockingColorizer()
    app = create_app(fake, queue_size=1, workers=1)
    data = gray_png(16, 16)
    results: dict[str, object] = {}
    with TestClient(app) as client:
        def send(key: str) -> None:
            results[key] = post(client, data)

        first = threading.Thread(target=send, args=("running",))
        first.start()
        assert fake.started.wait(10)
        second = threading.Thread(target=send, args=("queued",))
        second.start()
        wait_until(lambda: client.get("/health").json()["queue"]["depth"] == 1)
        health = client.get("/health").json()["queue"]
        assert (health["running"], health["depth"], health["queue_size"], health["workers"]) == (1, 1, 1, 1)

        refused = post(client, data)
        assert_error(refused, 503, "queue_full", "busy")
        assert int(refused.headers["retry-after"]) >= 1

        fake.release.set()
        first.join(10)
        second.join(10)
        for key in ("running", "queued"):
            r = results[key]
            assert r.status_code == 200, r.text
            assert Image.open(io.BytesIO(r.content)).getpixel((0, 0)) == (200, 40, 40)
        # inference ran on the pool's worker thread, never on the event loop's thread
        assert fake.threads and all(name.startswith("colorize") for name in fake.threads)
        # the slots are free again
        after = client.get("/health").json()["queue"]
        assert (after["running"], after["depth"], after["served"]) == (0, 0, 2)
        assert post(client, data).status_code == 200


def test_model_failure_is_500_without_internals() -> None:
    def broken(image: Image.Image, size=None, saturation: float = 1.0) -> Image.Image:
        raise RuntimeError("secret internal state")

    with TestClient(create_app(broken, model_name="broken")) as client:
        body = assert_error(post(client, gray_png(), name="a.png"), 500, "internal_error", "a.png")
        assert "secret" not in body["detail"]
        assert client.get("/health").json()["queue"]["running"] == 0  # the slot was released


def test_inference_queue_admission_counts() -> None:
    q = InferenceQueue(workers=2, queue_size=1)
    try:
        assert [q.try_admit() for _ in range(4)] == [True, True, True, False]
        assert q.snapshot()["depth"] == 3  # admitted, none running yet
    finally:
        q.shutdown()


def test_service_config_validation() -> None:
    assert ServiceConfig(max_upload_bytes=10, max_pixels=5, queue_size=0, workers=1).to_dict() == {
        "max_upload_bytes": 10,
        "max_pixels": 5,
        "queue_size": 0,
        "workers": 1,
    }
    with pytest.raises(ValueError, match="workers"):
        ServiceConfig(workers=0)
    with pytest.raises(ValueError, match="max_upload_bytes"):
        ServiceConfig(max_upload_bytes=-1)


# -------------------------------------------------------------------------------------- health, page, docs


def test_health(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["model"] == "baseline"
    assert body["device"] == "cpu"
    assert body["queue"]["depth"] == 0 and body["queue"]["running"] == 0
    assert body["limits"]["max_upload_bytes"] == MAX_UPLOAD
    assert body["limits"]["max_pixels"] == MAX_PIXELS
    assert body["limits"]["queue_size"] == 2


EXTERNAL_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}|@import|url\(\s*['"]?(?:https?:|//)""", re.I)


def test_page_is_served_and_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for needle in (
        '<label for="file-input"',
        'type="file" id="file-input"',
        '<label for="saturation"',
        'id="compare-slider"',
        'aria-label="Before/after',
        'id="download"',
        'role="alert"',
        'src="/static/app.js"',
        'href="/static/style.css"',
    ):
        assert needle in html, needle
    assets = {name: client.get(f"/static/{name}") for name in ("app.js", "video.js", "style.css")}
    assert assets["app.js"].headers["content-type"].startswith("text/javascript")
    assert assets["video.js"].headers["content-type"].startswith("text/javascript")
    assert assets["style.css"].headers["content-type"].startswith("text/css")
    for text in (html, assets["app.js"].text, assets["video.js"].text, assets["style.css"].text):
        assert not EXTERNAL_URL.search(text), EXTERNAL_URL.search(text)
    assert "/colorize" in assets["app.js"].text and '"/videos"' in assets["video.js"].text
    assert 'accept="image/*,video/*"' in html and 'id="result-video"' in html
    assert "media-src 'self' blob:" in page.headers["content-security-policy"]
    assert_error(client.get("/static/../service.py"), 404, "not_found")
    assert_error(client.get("/static/secret.txt"), 404, "not_found")
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_openapi_and_offline_docs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/colorize", "/health", "/videos", "/videos/{job_id}", "/videos/{job_id}/result"}
    op = schema["paths"]["/colorize"]["post"]
    assert {"200", "413", "415", "422", "503"} <= set(op["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for needle in (
        '"/docs-assets/swagger-ui-bundle.js"', '"/docs-assets/swagger-ui.css"', "url: '/openapi.json'",
        '"/favicon.ico"', '"validatorUrl": null',
    ):
        assert needle in docs.text, needle
    assert not EXTERNAL_URL.search(docs.text) and "http" not in docs.text  # no CDN, no URL of any kind
    # the CSP allows the one inline script by its hash, nothing else from outside
    csp = docs.headers["content-security-policy"]
    (inline,) = re.findall(r"<script>(.*?)</script>", docs.text, re.S)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    for directive in ("default-src 'self'", "connect-src 'self'", "img-src 'self' blob: data:", "style-src 'self'"):
        assert directive in csp, directive
    assert "unsafe" not in csp and "http" not in csp
    for name, media in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
        asset = client.get(f"/docs-assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media), name
        assert asset.headers["x-content-type-options"] == "nosniff" and len(asset.content) > 10_000
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text
    for name in ("index.html", "swagger-ui.js.map", "secret.txt", "..%2F__init__.py"):
        assert_error(client.get(f"/docs-assets/{name}"), 404, "not_found")
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN-based pages stay off


def test_serve_command_is_registered() -> None:
    from typer.testing import CliRunner

    from colorization.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--host", "--port", "--model", "--device", "--max-upload-mb", "--queue-size", "--workers"):
        assert option in result.output, option
