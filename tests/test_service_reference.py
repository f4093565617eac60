"""Reference photos through the REST service: the ``reference`` upload and ``reference_strength``
field of ``POST /colorize``, their 4xx answers, ``accepts_reference`` in ``/health``, the answer's
X-Reference headers and the OpenAPI documentation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
skimage_data = pytest.importorskip("skimage.data")

from fastapi.testclient import TestClient  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.serve.service import create_app  # noqa: E402

SIDE = 96


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(skimage_data.coffee()).convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def related(photo) -> Image.Image:
    """Another crop of the photo: its left two thirds, mirrored and enlarged."""
    return photo.crop((0, 0, 64, SIDE)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((80, 120))


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.from_pretrained(device="cpu")  # the shipped, hint-aware model


@pytest.fixture(scope="module")
def client(colorizer):
    with TestClient(create_app(colorizer, max_upload_bytes=200_000, max_pixels=100_000)) as c:
        yield c


def post(client: TestClient, photo: Image.Image, reference: bytes | None = None, name: str = "ref.png", **fields):
    files = {"file": ("photo.png", encoded(photo.convert("L")), "application/octet-stream")}
    if reference is not None:
        files["reference"] = (name, reference, "application/octet-stream")
    return client.post("/colorize", files=files, data={k: str(v) for k, v in fields.items()})


def pixels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.int16)


def assert_error(response, status: int, code: str, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    for needle in needles:
        assert needle in body["detail"], body


def test_health_says_whether_references_are_taken(client, model_dir) -> None:
    body = client.get("/health").json()
    assert body["accepts_reference"] is True
    assert body["limits"]["reference_strength_range"] == [0.0, 2.0]
    with TestClient(create_app(Colorizer.from_pretrained(model_dir, device="cpu"))) as plain:
        assert plain.get("/health").json()["accepts_reference"] is False


def test_a_related_reference_is_used_like_the_python_api(client, colorizer, photo, related) -> None:
    auto = pixels(post(client, photo))
    jpeg = encoded(related, "JPEG")
    answer = post(client, photo, jpeg, name="ref.jpg")
    got = pixels(answer)
    assert answer.headers["x-reference-used"] == "true"
    assert 0 < float(answer.headers["x-reference-match"]) <= 1
    expected = np.asarray(colorizer(photo.convert("L"), reference=Image.open(io.BytesIO(jpeg))), dtype=np.int16)
    assert np.abs(got - expected).max() <= 1
    truth = np.asarray(photo, dtype=np.float64)
    assert np.mean((got - truth) ** 2) < 0.7 * np.mean((auto - truth) ** 2)  # closer to the colour photo
    # strength 0 ignores it; an unrelated photo does not fit and leaves the automatic colours
    assert np.array_equal(pixels(post(client, photo, encoded(related), reference_strength=0)), auto)
    other = Image.fromarray(skimage_data.rocket()).convert("RGB").resize((SIDE, SIDE))
    unrelated = post(client, photo, encoded(other))
    assert unrelated.headers["x-reference-used"] == "false"
    assert np.array_equal(pixels(unrelated), auto)
    assert "x-reference-used" not in {k.lower() for k in post(client, photo).headers}


@pytest.mark.parametrize(
    ("make", "status", "code", "needles"),
    [
        (lambda p: encoded(p.convert("L").convert("RGB")), 422, "invalid_reference", ["ref.png", "gray"]),
        (lambda p: b"not an image at all", 415, "reference_not_an_image", ["ref.png"]),
        (lambda p: encoded(p)[:200], 422, "invalid_reference", ["ref.png"]),
        (lambda p: b"", 422, "invalid_reference", ["empty"]),
        (lambda p: encoded(p.resize((400, 300))), 413, "reference_too_large", ["ref.png", "pixels"]),  # > 100,000
        (lambda p: bytes(200_001), 413, "reference_too_large", ["ref.png", "limit"]),
    ],
)
def test_bad_references_are_4xx_with_the_reason(client, photo, make, status, code, needles) -> None:
    assert_error(post(client, photo, make(photo)), status, code, *needles)


def test_a_reference_for_a_model_without_hints_is_422(model_dir, photo, related) -> None:
    with TestClient(create_app(Colorizer.from_pretrained(model_dir, device="cpu"))) as plain:
        assert_error(post(plain, photo, encoded(related)), 422, "reference_not_supported", "does not take colour hints")


def test_bad_strength_is_422(client, photo, related) -> None:
    for value in ("3", "-1", "nan"):
        assert post(client, photo, encoded(related), reference_strength=value).status_code == 422


def test_schema_documents_the_reference_fields(client) -> None:
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/colorize"]["post"]
    ref = op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    props = schema["components"]["schemas"][ref]["properties"]
    assert "reference" in props and "reference_strength" in props
    assert "reference" not in schema["components"]["schemas"][ref].get("required", [])
    for needle in ("colour photo", "X-Reference-Used", "accepts_reference"):
        assert needle in props["reference"]["description"], needle
    for code in ("invalid_reference", "reference_not_supported"):
        assert code in op["responses"]["422"]["description"]
    assert "reference_too_large" in op["responses"]["413"]["description"]


def test_page_ships_the_reference_picker_offline(client) -> None:
    page = client.get("/").text
    assert page.index('src="/static/reference.js"') < page.index('src="/static/app.js"')
    for needle in ('id="reference-input"', 'id="reference-strength"', 'id="reference-figure"', "Add a reference photo"):
        assert needle in page, needle
    js = client.get("/static/reference.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "createReferencePicker" in js.text and "http" not in js.text


def test_a_video_upload_takes_a_reference(client, photo, related, tmp_path, model_dir) -> None:
    from test_service_video import upload, wait
    from test_video import make_clip

    src = tmp_path / "clip.mp4"
    make_clip(src, n=6, audio=None)
    res = upload(client, src.read_bytes())
    auto = wait(client, res.json())
    with_ref = client.post("/videos", files={"file": ("clip.mp4", src.read_bytes()),
                                             "reference": ("ref.png", encoded(related))},
                           data={"reference_strength": "1.5"})
    assert with_ref.status_code == 202, with_ref.text
    state = wait(client, with_ref.json())
    assert auto["status"] == state["status"] == "done" and state["frames_done"] == 6
    gray = client.post("/videos", files={"file": ("clip.mp4", src.read_bytes()),
                                         "reference": ("gray.png", encoded(photo.convert("L").convert("RGB")))})
    assert_error(gray, 422, "invalid_reference", "gray.png", "gray")  # refused before any job starts
    with TestClient(create_app(Colorizer.from_pretrained(model_dir, device="cpu"))) as plain:
        refused = plain.post("/videos", files={"file": ("clip.mp4", src.read_bytes()),
                                               "reference": ("ref.png", encoded(related))})
        assert_error(refused, 422, "reference_not_supported")
