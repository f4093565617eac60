"""Colour hints through the REST service: the ``hints`` form field of ``POST /colorize``, its 422
answers, ``accepts_hints`` in ``/health`` and the field's OpenAPI documentation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.inference.hints import MAX_HINTS, Hint  # noqa: E402
from colorization.serve.service import create_app  # noqa: E402
from colorization.serve.service_hints import MAX_HINTS_FIELD_CHARS, parse_hints_field  # noqa: E402

WIDTH, HEIGHT = 96, 64


def gray_png(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(40, 220, size=(height, width), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, format="PNG")
    return buf.getvalue()


def post(client: TestClient, hints: object = None, data: bytes | None = None, **fields):
    form = {k: str(v) for k, v in fields.items()}
    if hints is not None:
        form["hints"] = hints if isinstance(hints, str) else json.dumps(hints)
    return client.post(
        "/colorize", files={"file": ("photo.png", data or gray_png(), "application/octet-stream")}, data=form
    )


def decoded(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.int16)


def assert_error(response, code: str, *needles: str) -> dict:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == code, body
    assert body["detail"].startswith("hints: "), body
    for needle in needles:
        assert needle in body["detail"], body
    return body


@pytest.fixture(scope="module")
def hint_colorizer(hint_model_dir) -> Colorizer:
    return Colorizer.from_pretrained(hint_model_dir, device="cpu")


@pytest.fixture(scope="module")
def client(hint_colorizer: Colorizer):
    with TestClient(create_app(hint_colorizer, max_upload_bytes=200_000, max_pixels=100_000)) as c:
        yield c


@pytest.fixture(scope="module")
def plain_client(model_dir):
    with TestClient(create_app(Colorizer.from_pretrained(model_dir, device="cpu"))) as c:
        yield c


def test_health_says_whether_the_model_takes_hints(client: TestClient, plain_client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["accepts_hints"] is True
    assert body["limits"]["max_hints"] == MAX_HINTS
    assert plain_client.get("/health").json()["accepts_hints"] is False


def test_hints_change_the_result_like_the_python_api(client: TestClient, hint_colorizer: Colorizer) -> None:
    auto = decoded(post(client))
    for empty in ("", "  ", "[]"):
        assert np.array_equal(decoded(post(client, empty)), auto)
    points = [{"x": 20, "y": 30, "color": "#d02020"}, {"x": 70.5, "y": 10, "color": [20, 40, 220]}]
    hinted = decoded(post(client, points))
    assert hinted.shape == auto.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(hinted - auto).max() > 0  # (the fixture model's hint effect is weak but non-zero)
    photo = Image.open(io.BytesIO(gray_png()))
    expected = np.asarray(hint_colorizer(photo, hints=[Hint(20, 30, "#d02020"), Hint(70.5, 10, (20, 40, 220))]))
    assert np.abs(hinted - expected).max() <= 1
    # the last pixel is inside, one more is not
    assert post(client, [{"x": WIDTH - 1, "y": HEIGHT - 1, "color": "#00ff00"}]).status_code == 200


@pytest.mark.parametrize(
    ("hints", "needles"),
    [
        ("[{x: 1}]", ["not valid JSON", '"color"']),
        ('{"x": 1, "y": 2, "color": "#ff0000"}', ["must be a list"]),
        ('"1,2,#ff0000"', ["must be a list"]),
        ([{"x": 1, "y": 2}], ["hint 0", "missing ['color']"]),
        ([{"x": 1, "y": 2, "color": "#ff0000", "r": 3}], ["unknown ['r']"]),
        ([{"x": 1, "y": 2, "color": "#ff0000"}, {"x": 1, "y": 2, "color": "red"}], ["hint 1", "#rrggbb"]),
        ([{"x": 1, "y": 2, "color": [300, 0, 0]}], ["three integers 0..255"]),
        ([{"x": -1, "y": 2, "color": "#ff0000"}], ["x must be a number >= 0"]),
        ([{"x": True, "y": 2, "color": "#ff0000"}], ["x must be a number"]),
        ('[{"x": NaN, "y": 2, "color": "#ff0000"}]', ["NaN is not a number"]),
        ('[{"x": 1e999, "y": 2, "color": "#ff0000"}]', ["x must be a finite number"]),
        (
            [{"x": WIDTH, "y": 10, "color": "#ffffff"}],
            [f"hint 0 at ({WIDTH}, 10) lies outside the {WIDTH}x{HEIGHT} image"],
        ),
        (
            [{"x": 5, "y": 5, "color": "#ffffff"}, {"x": 5, "y": HEIGHT + 0.5, "color": "#ffffff"}],
            ["hint 1 at", "outside"],
        ),
        ([{"x": 1, "y": 1, "color": "#000000"}] * (MAX_HINTS + 1), [f"at most {MAX_HINTS} hint points"]),
        ("[" + " " * MAX_HINTS_FIELD_CHARS + "]", [f"at most {MAX_HINTS_FIELD_CHARS}"]),
    ],
)
def test_bad_hints_are_422_with_the_reason(client: TestClient, hints: object, needles: list[str]) -> None:
    assert_error(post(client, hints), "invalid_hints", *needles)


def test_hints_for_a_model_without_hint_input_are_422(plain_client: TestClient) -> None:
    body = assert_error(post(plain_client, [{"x": 1, "y": 1, "color": "#ff0000"}]), "hints_not_supported")
    assert "does not take colour hints" in body["detail"]
    assert post(plain_client, "[]").status_code == 200  # no points: fine


def test_plain_callables_are_never_given_hints() -> None:
    calls = []

    def fake(image, size=None, saturation=1.0):  # no hints parameter, no accepts_hints
        calls.append(size)
        return image.convert("RGB")

    with TestClient(create_app(fake, model_name="fake")) as c:
        assert c.get("/health").json()["accepts_hints"] is False
        assert post(c, "[]").status_code == 200
        assert_error(post(c, [{"x": 1, "y": 1, "color": "#ff0000"}]), "hints_not_supported", "fake model")
    assert calls == [None]


def test_schema_and_docs_document_the_hints_field(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/colorize"]["post"]
    ref = op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    field = schema["components"]["schemas"][ref]["properties"]["hints"]
    assert "hints" not in schema["components"]["schemas"][ref].get("required", [])
    for needle in ("JSON", '"x"', "#rrggbb", "pixel coordinates", str(MAX_HINTS), "Example: [{"):
        assert needle in field["description"], needle
    example = field["examples"][0]
    assert parse_hints_field(example)  # the documented example is valid
    assert "invalid_hints" in op["responses"]["422"]["description"]
    assert "hints_not_supported" in op["responses"]["422"]["description"]


def test_page_ships_the_hint_editor_offline(client: TestClient) -> None:
    page = client.get("/").text
    assert page.index('src="/static/hints.js"') < page.index('src="/static/app.js"')  # defer: in order
    for needle in ('id="hint-area"', 'type="color" id="hint-color"', 'id="hint-predicted"', 'id="hint-list"'):
        assert needle in page, needle
    js = client.get("/static/hints.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "default-src 'self'" in js.headers["content-security-policy"]
    assert "createHintEditor" in js.text and "http" not in js.text  # no external URL of any kind
