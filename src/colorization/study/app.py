"""The rating web app (FastAPI): one image at a time, blinded, ratings 1..5 into SQLite.

Routes (nothing here names a model; images are addressed by opaque random ids):

* ``GET /`` — the rating page (``static/index.html``); ``GET /static/{app.js,style.css}``.
* ``GET /api/next?rater=ID`` — ``{"done": false, "item": ID, "image": "/img/ID", "position": k,
  "total": n}`` for the next unrated item in the rater's own order (a shuffle seeded by the rater
  id), or ``{"done": true, "position": n, "total": n}``.
* ``GET /img/{item}`` — the JPEG of an item.
* ``POST /api/rate`` with JSON ``{"rater": ID, "item": ID, "rating": 1..5}`` — 201; 409 when this
  rater already rated the item; 404 for an unknown item; 422 for invalid fields; 413 for a body over
  ``MAX_BODY_BYTES``.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from colorization.serve.serving import error_body, run_app, status_code_name
from colorization.study.build import IMAGES_DIR
from colorization.study.db import (
    DB_NAME,
    DuplicateRatingError,
    StudyDB,
    StudyError,
    UnknownItemError,
    check_rater,
)

__all__ = ["create_app", "MAX_BODY_BYTES", "serve_study"]

MAX_BODY_BYTES = 4096
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _static_text(name: str) -> str:
    return resources.files("colorization.study").joinpath("static", name).read_text(encoding="utf-8")


def create_app(study_dir: str | Path) -> FastAPI:
    """The app for the study in ``study_dir`` (made by ``build_study``).

    Raises:
        StudyError: ``study_dir`` holds no study database.
    """
    root = Path(study_dir)
    db = StudyDB(root / DB_NAME)
    img_dir = (root / IMAGES_DIR).resolve()
    question = db.meta().get("question", "How natural do the colours of this photo look?")
    page = _static_text("index.html").replace("{{QUESTION}}", html.escape(question))

    app = FastAPI(title="Colour rating study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the same error JSON as the web service: {"error": code, "detail": message}
        return JSONResponse(error_body(status_code_name(exc.status_code), str(exc.detail)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=_HEADERS)

    @app.get("/favicon.ico")
    def favicon() -> Response:  # the service's icon; browsers ask for it on every page
        icon = resources.files("colorization.serve").joinpath("static", "favicon.svg").read_bytes()
        return Response(icon, media_type="image/svg+xml", headers=_HEADERS)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, "not found")
        return Response(_static_text(name), media_type=_STATIC[name], headers=_HEADERS)

    @app.get("/api/next")
    def next_item(rater: str = Query(..., max_length=64)) -> dict[str, Any]:
        try:
            item, done, total = db.next_item(rater)
        except StudyError as err:
            raise HTTPException(422, str(err)) from None
        if item is None:
            return {"done": True, "position": done, "total": total}
        return {"done": False, "item": item.id, "image": f"/img/{item.id}", "position": done, "total": total}

    @app.get("/img/{item_id}")
    def image(item_id: str) -> FileResponse:
        try:
            item = db.item(item_id)
        except UnknownItemError:
            raise HTTPException(404, "no such image") from None
        path = (img_dir / item.file).resolve()
        if path.parent != img_dir or not path.is_file():
            raise HTTPException(404, "no such image")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/rate", status_code=201)
    async def rate(request: Request) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise HTTPException(422, "body must be JSON") from None
        if not isinstance(payload, dict):
            raise HTTPException(422, "body must be a JSON object {rater, item, rating}")
        rater, item_id, rating = payload.get("rater"), payload.get("item"), payload.get("rating")
        try:
            check_rater(rater)  # type: ignore[arg-type]
            await run_in_threadpool(db.add_rating, rater, item_id, rating)
        except DuplicateRatingError as err:
            raise HTTPException(409, str(err)) from None
        except UnknownItemError as err:
            raise HTTPException(404, str(err)) from None
        except StudyError as err:
            raise HTTPException(422, str(err)) from None
        return JSONResponse({"ok": True}, status_code=201, headers=_HEADERS)

    return app


def serve_study(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the study app with uvicorn (blocking); prints the page's real URL (``port`` 0 = any free one)."""
    app = create_app(study_dir)
    run_app(app, host, port, announce=lambda url: print(f"colorization study: rating page at {url}/", flush=True))
