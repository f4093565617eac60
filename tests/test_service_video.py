"""REST video jobs: upload (202), progress, result, bounds (413/415/422), unknown and unfinished jobs."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from test_video import make_clip  # noqa: E402

from colorization import Colorizer  # noqa: E402
from colorization.serve.service import create_app  # noqa: E402
from colorization.video import VideoReader  # noqa: E402


@pytest.fixture(scope="module")
def client(model_dir):
    app = create_app(Colorizer.from_pretrained(model_dir, device="cpu"), max_upload_bytes=300_000)
    with TestClient(app) as c:
        yield c


def upload(client, data: bytes, name: str = "clip.mp4", **fields):
    return client.post("/videos", files={"file": (name, data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()})


def wait(client, job: dict, timeout: float = 60) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        state = client.get(job["status_url"]).json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job still {state['status']} after {timeout} s")


def test_upload_progress_and_result(client, tmp_path):
    src = tmp_path / "clip.mp4"
    make_clip(src, n=10)
    res = upload(client, src.read_bytes(), saturation=1.2)
    assert res.status_code == 202, res.text
    job = res.json()
    assert job["status"] in ("queued", "running", "done") and job["status_url"] == f"/videos/{job['id']}"
    early = client.get(f"/videos/{job['id']}/result")
    state = wait(client, job)
    assert early.status_code in (200, 409)
    assert state["status"] == "done" and state["frames_done"] == 10 and state["frames_total"] == 10
    out = client.get(state["result_url"])
    assert out.status_code == 200 and out.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(out.content)
    with VideoReader(tmp_path / "out.mp4") as r:
        assert (r.info.width, r.info.height, len(list(r.frames()))) == (64, 48, 10)
    assert client.delete(f"/videos/{job['id']}").status_code == 204
    assert client.get(f"/videos/{job['id']}").status_code == 404


def test_bad_uploads(client, tmp_path):
    assert upload(client, b"not a video" * 50).status_code == 415
    assert upload(client, b"").status_code == 422
    big = upload(client, b"0" * 300_001)
    assert big.status_code == 413
    src = tmp_path / "clip.mkv"
    make_clip(src, n=30, fmt="matroska")
    data = src.read_bytes()
    cut = upload(client, data[: len(data) * 2 // 3], name="cut.mkv")
    if cut.status_code == 202:  # found while decoding: the job fails with the reason
        state = wait(client, cut.json())
        assert state["status"] == "failed" and state["error"]["error"] == "corrupt_image", state
    else:
        assert cut.status_code == 422
    assert upload(client, src.read_bytes(), format="avi").status_code == 422
    assert client.get("/videos/nope").status_code == 404


def test_health_reports_video_limits(client):
    body = client.get("/health").json()
    assert body["accepts_videos"] is True
    video = body["limits"]["video"]
    assert (video["max_pixels"], video["max_seconds"], video["max_frames"]) == (1920 * 1088, 120.0, 7200)
    assert video["formats"] == ["mp4", "mov", "mkv", "webm"] and ".mkv" in video["extensions"]


def test_health_without_video_support():
    app = create_app(lambda image, size=None, saturation=1.0: image)  # a plain callable has no predict()
    with TestClient(app) as c:
        assert c.get("/health").json()["accepts_videos"] is False


def test_video_hints(model_dir, hint_model_dir, tmp_path):
    src = tmp_path / "clip.mp4"
    make_clip(src, n=8)  # 64x48
    mkv = tmp_path / "clip.mkv"
    make_clip(mkv, n=8, fmt="matroska", audio=None)
    data = src.read_bytes()
    hints = '{"0": ["10,10,#ff0000,shot"], "3": [{"x": 20, "y": 30, "color": [0, 0, 255]}]}'
    with TestClient(create_app(Colorizer.from_pretrained(hint_model_dir, device="cpu"))) as c:
        hinted, plain = upload(c, data, hints=hints), upload(c, data)
        assert hinted.status_code == 202 and plain.status_code == 202, hinted.text
        states = wait(c, hinted.json()), wait(c, plain.json())
        assert [s["status"] for s in states] == ["done", "done"], states
        outs = []
        for state in states:
            (tmp_path / "out.mp4").write_bytes(c.get(state["result_url"]).content)
            with av.open(str(tmp_path / "out.mp4")) as container:
                outs.append(np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(float))
        assert np.abs(outs[0] - outs[1]).max() > 10  # the hints change the colours
        listed = upload(c, data, hints='[{"x": 5, "y": 5, "color": "#00ff00", "hold": "track"}]')
        assert listed.status_code == 202 and wait(c, listed.json())["status"] == "done"
        for bad, needle in [('{"x": 1}', "expected a list"), ('{"a": []}', "not a frame index"),
                            ('["10,10,#ff0000,forever"]', "hold must be one of"),
                            ('{"2": ["64,10,#ff0000"]}', "frame 2: hint 0 at (64, 10) lies outside the 64x48"),
                            ("[", "not valid JSON")]:
            res = upload(c, data, hints=bad)
            assert res.status_code == 422 and res.json()["error"] == "invalid_hints", res.text
            assert needle in res.json()["detail"], res.json()
        # past the last frame: refused at upload when the container declares its length, else the job fails
        late = '{"9": ["1,1,#ff0000"]}'
        for clip, name in ((src, "clip.mp4"), (mkv, "clip.mkv")):
            res = upload(c, clip.read_bytes(), name=name, hints=late)
            if res.status_code == 202:
                state = wait(c, res.json())
                assert state["status"] == "failed" and state["error"]["error"] == "invalid_hints", state
                assert "hints for frame 9, but the video has 8 frames" in state["error"]["detail"]
            else:
                assert res.status_code == 422 and "frame 9" in res.json()["detail"], res.text
    with TestClient(create_app(Colorizer.from_pretrained(model_dir, device="cpu"))) as c:
        res = upload(c, data, hints='["1,1,#ff0000"]')
        assert res.status_code == 422 and res.json()["error"] == "hints_not_supported"
        assert upload(c, data, hints="[]").status_code == 202
