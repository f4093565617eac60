"""Tests of the blind rating study: building, the API (FastAPI TestClient), SQLite persistence,
blinding, per-rater order and the report."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from colorization import create_model
from colorization.cli import app as cli_app
from colorization.inference import checkpoint
from colorization.study import REAL_LABEL, build_study, create_app
from colorization.study.db import DB_NAME, StudyDB, rater_order
from colorization.study.report import format_report, summarize, summarize_ratings

SECRET_MODEL = "zebranet"  # a name that must never reach the browser


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A study of 3 photos x (real, gray, zebranet) = 9 items; copied per test."""
    base = tmp_path_factory.mktemp("study")
    photos = base / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(photos / f"p{i}.png")
    torch.manual_seed(0)
    net = create_model("baseline", width=8, depth=2).eval()
    model_dir = checkpoint.save_exported(net, base / "m", head="regression", extra={"working_size": 32})
    return build_study(
        photos, ["gray", f"{SECRET_MODEL}={model_dir}"], base / "s", count=3, size=32, seed=0,
        device="cpu", progress=False,
    )


@pytest.fixture()
def study(built, tmp_path) -> Path:
    dst = tmp_path / "study"
    shutil.copytree(built, dst)
    return dst


def test_build_writes_opaque_items(study):
    db = StudyDB(study / DB_NAME)
    items = db.items()
    assert len(items) == 9
    assert sorted({it.model for it in items}) == sorted([REAL_LABEL, "gray", SECRET_MODEL])
    files = sorted(p.name for p in (study / "images").iterdir())
    assert files == sorted(it.file for it in items)
    for it in items:
        assert it.file == f"{it.id}.jpg" and len(it.id) == 32
        with Image.open(study / "images" / it.file) as im:
            assert im.format == "JPEG" and im.size == (32, 32) and not im.getexif()
    # every photo appears once per condition
    per_source = {}
    for it in items:
        per_source.setdefault(it.source, set()).add(it.model)
    assert all(len(v) == 3 for v in per_source.values()) and len(per_source) == 3
    manifest = json.loads((study / "study.json").read_text())
    assert manifest["conditions"][0] == REAL_LABEL
    with pytest.raises(FileExistsError):
        build_study(study, ["gray"], study, count=1, size=32, device="cpu", progress=False)


def test_pages_and_api_are_blinded(study):
    client = TestClient(create_app(study))
    seen = []
    for url in ("/", "/static/app.js", "/static/style.css", "/favicon.ico", "/api/next?rater=alice"):
        r = client.get(url)
        assert r.status_code == 200
        seen.append(r.text + json.dumps(dict(r.headers)))
    nxt = client.get("/api/next?rater=alice").json()
    img = client.get(nxt["image"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert "content-disposition" not in img.headers
    seen.append(json.dumps(dict(img.headers)) + nxt["image"])
    blob = "\n".join(seen).lower()
    assert set(nxt) == {"done", "item", "image", "position", "total"}
    for secret in (SECRET_MODEL, "real photo", '"gray"'):
        assert secret not in blob, secret
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
    assert client.get("/static/../study.db").status_code == 404
    assert client.get("/img/" + "0" * 32).status_code == 404
    assert client.get("/img/..%2Fstudy.db").status_code == 404


def test_each_rater_gets_an_independent_reproducible_order(study):
    db = StudyDB(study / DB_NAME)
    ids = [it.id for it in db.items()]
    a, b = rater_order(ids, "alice"), rater_order(ids, "bob")
    assert sorted(a) == sorted(ids) == sorted(b)
    assert a != b
    assert a == rater_order(ids, "alice")
    client = TestClient(create_app(study))
    assert client.get("/api/next?rater=alice").json()["item"] == a[0]
    assert client.get("/api/next?rater=bob").json()["item"] == b[0]


def test_rate_validation_and_duplicates(study):
    client = TestClient(create_app(study))
    nxt = client.get("/api/next?rater=alice").json()
    assert nxt == {"done": False, "item": nxt["item"], "image": f"/img/{nxt['item']}", "position": 0, "total": 9}
    ok = client.post("/api/rate", json={"rater": "alice", "item": nxt["item"], "rating": 4})
    assert ok.status_code == 201
    dup = client.post("/api/rate", json={"rater": "alice", "item": nxt["item"], "rating": 2})
    assert dup.status_code == 409 and dup.json()["error"] == "conflict"
    # another rater may rate the same item
    assert client.post("/api/rate", json={"rater": "bob", "item": nxt["item"], "rating": 2}).status_code == 201
    for bad in (0, 6, "3", 3.5, True, None):
        r = client.post("/api/rate", json={"rater": "carol", "item": nxt["item"], "rating": bad})
        assert r.status_code == 422, bad
        body = r.json()  # the service's error shape: a code and a message
        assert body["error"] == "unprocessable_content" or body["error"] == "unprocessable_entity", body
        assert body["detail"]
    assert client.post("/api/rate", json={"rater": "bad id!", "item": nxt["item"], "rating": 3}).status_code == 422
    assert client.post("/api/rate", json={"rater": "carol", "item": "f" * 32, "rating": 3}).status_code == 404
    assert client.post("/api/rate", content=b"not json").status_code == 422
    assert client.post("/api/rate", content=b"[" + b"1," * 5000 + b"1]").status_code == 413
    assert client.get("/api/next?rater=bad%20id").status_code == 422
    after = client.get("/api/next?rater=alice").json()
    assert after["position"] == 1 and after["item"] != nxt["item"]
    # the stored row records rater, item, model and a timestamp
    with sqlite3.connect(study / DB_NAME) as con:
        rows = con.execute("SELECT rater, item, model, rating, created_at FROM ratings ORDER BY id").fetchall()
    model = StudyDB(study / DB_NAME).item(nxt["item"]).model
    assert rows[0][:4] == ("alice", nxt["item"], model, 4) and rows[0][4].endswith("+00:00")
    assert len(rows) == 2


def test_ratings_survive_restart_and_unique_constraint_holds_in_sqlite(study):
    client = TestClient(create_app(study))
    first = client.get("/api/next?rater=dan").json()["item"]
    assert client.post("/api/rate", json={"rater": "dan", "item": first, "rating": 5}).status_code == 201
    del client
    client2 = TestClient(create_app(study))  # a new process would see the same file
    nxt = client2.get("/api/next?rater=dan").json()
    assert nxt["position"] == 1 and nxt["item"] != first
    assert client2.post("/api/rate", json={"rater": "dan", "item": first, "rating": 1}).status_code == 409
    with sqlite3.connect(study / DB_NAME) as con, pytest.raises(sqlite3.IntegrityError):
        con.execute(
            "INSERT INTO ratings(rater, item, model, rating, created_at) VALUES ('dan', ?, 'x', 3, 't')",
            (first,),
        )


def test_rater_finishes_all_items(study):
    client = TestClient(create_app(study))
    for k in range(9):
        nxt = client.get("/api/next?rater=eve").json()
        assert nxt["position"] == k and not nxt["done"]
        assert client.post("/api/rate", json={"rater": "eve", "item": nxt["item"], "rating": 3}).status_code == 201
    assert client.get("/api/next?rater=eve").json() == {"done": True, "position": 9, "total": 9}


def test_summary_hand_computed():
    rows = summarize_ratings(
        [("a", REAL_LABEL, 4), ("b", REAL_LABEL, 5), ("a", "m1", 2), ("b", "m1", 3), ("c", "m1", 1),
         ("a", "m2", 5)],
        conditions=["m3"],
    )
    assert [r.model for r in rows] == [REAL_LABEL, "m1", "m2", "m3"]
    real, m1, m2, m3 = rows
    # n = 2: mean 4.5, sd = sqrt(0.5), t(0.975, 1) = 12.7062
    assert real.mean == pytest.approx(4.5) and real.sd == pytest.approx(math.sqrt(0.5))
    assert real.ci_high - real.mean == pytest.approx(12.7062 * math.sqrt(0.5) / math.sqrt(2), rel=1e-4)
    # n = 3: mean 2, sd 1, t(0.975, 2) = 4.3027
    assert m1.mean == pytest.approx(2.0) and m1.count == 3 and m1.raters == 3
    assert m1.ci_low == pytest.approx(2 - 4.3027 / math.sqrt(3), rel=1e-4)
    assert m2.mean == 5 and m2.ci_low is None and m2.count == 1
    assert m3.mean is None and m3.count == 0
    text = format_report(rows)
    assert text.splitlines()[2].startswith("real photo (reference)")
    real_line = text.splitlines()[2]
    assert "4.50" in real_line and "[-1.85, 10.85]" in real_line  # 4.5 -+ 6.3531


def test_report_cli(study):
    db = StudyDB(study / DB_NAME)
    items = db.items()
    for it in items:
        db.add_rating("r1", it.id, 5 if it.model == REAL_LABEL else 2)
        db.add_rating("r2", it.id, 4 if it.model == REAL_LABEL else 3)
    rows = {r.model: r for r in summarize(db)}
    assert rows[REAL_LABEL].mean == pytest.approx(4.5) and rows[REAL_LABEL].count == 6
    assert rows["gray"].mean == pytest.approx(2.5) and rows["gray"].raters == 2
    runner = CliRunner()
    res = runner.invoke(cli_app, ["study", "--report", "--dir", str(study)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[2].split()[:4] == ["real", "photo", "(reference)", "4.50"]
    assert any(line.startswith(SECRET_MODEL) and "2.50" in line for line in lines)
    res_json = runner.invoke(cli_app, ["study", "report", str(study), "--json"])
    data = json.loads(res_json.output)
    assert data[0]["model"] == REAL_LABEL and data[0]["count"] == 6
    missing = runner.invoke(cli_app, ["study", "report", str(study / "nope")])
    assert missing.exit_code == 2 and "no study database" in missing.output


def test_build_draws_its_bar_only_on_a_terminal(tmp_path, monkeypatch):
    """``study build`` into a pipe prints no tqdm bar; on a terminal it does."""
    import io
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / "p.png")
    piped = subprocess.run(
        [sys.executable, "-m", "colorization.cli", "study", "build", "--images", str(photos), "--model", "gray",
         "--out", str(tmp_path / "piped"), "--count", "1", "--size", "32", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert "study images" not in piped.stderr + piped.stdout and "%|" not in piped.stderr

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    build_study(photos, ["gray"], tmp_path / "tty", count=1, size=32, device="cpu")
    assert "study images" in terminal.getvalue()
