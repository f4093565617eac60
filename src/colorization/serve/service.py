"""REST service and browser page for colorizing photos.

``create_app`` builds a FastAPI application around any *colorizer-like* callable (normally a
:class:`colorization.Colorizer`):

``colorizer(image: PIL.Image.Image (mode "RGB"), size: int | None = None, saturation: float = 1.0)
-> PIL.Image.Image`` (mode "RGB", same width and height as ``image``). A colorizer whose
``accepts_hints`` is true is also called with ``hints=[colorization.inference.hints.Hint, ...]`` when a request
carries colour hints (never with an empty list, so plain callables keep working).

Endpoints
---------
``POST /colorize``  multipart upload (field ``file``; optional ``size``, ``saturation``, ``format``,
                    ``hints``: colour points as JSON, see :mod:`colorization.serve.service_hints`;
                    ``reference``: a second upload, a colour photo to take colours from, and
                    ``reference_strength``, see :mod:`colorization.serve.service_reference`)
                    -> the colorized image (PNG unless another format is asked for).
``GET /health``     status, model name, device, whether the model takes colour hints, reference photos and videos,
                    queue depth and the limits in force (``limits.video``: the video bounds).
``POST /videos``    a short video upload -> 202 and a job; ``GET /videos/{id}`` its progress,
                    ``GET /videos/{id}/result`` the colorized video (:mod:`colorization.serve.service_video`).
``GET /``           the browser page (``static/index.html``, ``app.js``, ``hints.js``, ``reference.js``, ``video.js``,
                    ``style.css``; no external assets).
``GET /docs``       FastAPI's Swagger UI for ``/openapi.json``, its JavaScript and CSS served by
                    this app under ``/docs-assets/`` (from package ``fastapi-offline``; no CDN).

Limits (all configurable, see :class:`ServiceConfig`): the request body is counted while it is
received and the request is refused with 413 as soon as it exceeds twice the upload limit (a photo
and its reference; each file part is held to the limit on its own); images whose
pixel count exceeds ``max_pixels`` are refused with 413 *before* they are decoded; at most
``workers`` images are colorized at once in a thread pool (never on the event loop) and at most
``queue_size`` more wait for a worker; further requests get 503 with ``Retry-After``.

Every error response is JSON ``{"error": "<machine-readable code>", "detail": "<message>"}``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Protocol

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colorization import image_io
from colorization._version import __version__
from colorization.inference.colorizer import SATURATION_RANGE, Colorizer
from colorization.inference.hints import MAX_HINTS
from colorization.inference.reference import STRENGTH_RANGE
from colorization.serve.service_hints import (
    HINTS_EXAMPLE,
    HINTS_FIELD_DESCRIPTION,
    accepts_hints,
    check_hints_inside,
    parse_hints_field,
)
from colorization.serve.service_reference import (
    REFERENCE_FIELD_DESCRIPTION,
    STRENGTH_FIELD_DESCRIPTION,
    ReferenceProblem,
    accepts_reference,
    read_reference,
)
from colorization.serve.service_video import add_video_routes, video_limits
from colorization.serve.serving import DEFAULT_QUEUE_SIZE, InferenceQueue, status_code_name
from colorization.serve.serving import error_body as _error_body

__all__ = [
    "ColorizerLike",
    "OUTPUT_FORMATS",
    "ServiceConfig",
    "ServiceError",
    "InferenceQueue",
    "create_app",
]

logger = logging.getLogger("colorization.serve.service")

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (the ``file`` part), in bytes."""
DEFAULT_MAX_PIXELS = 16_000_000
"""Largest accepted image, in pixels (width * height); tighter than ``image_io.DEFAULT_MAX_PIXELS``
because every pixel of a served image is held several times over as float tensors."""
DEFAULT_WORKERS = 1
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Allowance for multipart boundaries, headers and the small form fields on top of the file."""
SIZE_RANGE = (32, 1024)

OUTPUT_FORMATS = image_io.OUTPUT_FORMATS  # name -> OutputFormat(pil_format, suffix, media_type, ...): image_io's table
_FORMAT_ALIASES = {"jpg": "jpeg"}
_INPUT_FORMAT = "input"
# PIL format of the upload -> output format name for format=input (others fall back to PNG)
_PIL_TO_OUTPUT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}

_PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "hints.js": "text/javascript; charset=utf-8",
    "reference.js": "text/javascript; charset=utf-8",
    "video.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI 5 (OpenAPI 3.1, which FastAPI emits) as shipped by package fastapi-offline (serve extra):
# the files /docs loads, served at /docs-assets/ (swagger-ui-bundle on PyPI has Swagger UI 4, which
# cannot read OpenAPI 3.1)
_DOCS_ASSET_DIR = resources.files("fastapi_offline") / "static"
_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8"}


class ColorizerLike(Protocol):
    """What the service needs from a colorizer (``colorization.Colorizer`` satisfies it)."""

    def __call__(
        self, image: Image.Image, size: int | None = None, saturation: float = 1.0
    ) -> Image.Image: ...


@dataclass(frozen=True)
class ServiceConfig:
    """Limits of one service instance (JSON-serialisable via :meth:`to_dict`).

    max_upload_bytes: largest ``file`` part in bytes (the whole body may exceed it by
        ``MULTIPART_OVERHEAD_BYTES``); larger -> 413 ``upload_too_large``.
    max_pixels: largest width*height; larger -> 413 ``image_too_large``.
    queue_size: requests allowed to wait for a worker; beyond -> 503 ``queue_full``.
    workers: images colorized concurrently (threads).
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    queue_size: int = DEFAULT_QUEUE_SIZE
    workers: int = DEFAULT_WORKERS

    def __post_init__(self) -> None:
        for name, low in (("max_upload_bytes", 1), ("max_pixels", 1), ("queue_size", 0), ("workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ServiceConfig.{name} must be an integer >= {low}, got {value!r}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ServiceError(Exception):
    """An error answered as JSON ``{"error": code, "detail": detail}`` with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once the body exceeds the limit (FastAPI re-raises HTTPExceptions
    from body parsing, so it reaches the exception handlers unchanged)."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=f"request body exceeds the {_mb(limit)} limit")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MiB" if n >= 1024 * 1024 else f"{n} bytes"


class BodyLimitMiddleware:
    """Pure ASGI middleware that bounds request bodies of ``POST`` requests.

    A ``Content-Length`` above ``max_body`` is refused before anything is read; otherwise the
    bytes are counted as they arrive and reading stops with 413 as soon as the count passes
    ``max_body``, so a client can never make the server buffer more than that.
    """

    def __init__(self, app: ASGIApp, max_body: int, upload_limit: int) -> None:
        self.app = app
        self.max_body = max_body
        self.upload_limit = upload_limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            _error_body(
                "upload_too_large",
                f"upload exceeds the {_mb(self.upload_limit)} limit",
                limit_bytes=self.upload_limit,
            ),
            separators=(",", ":"),
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(self.upload_limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(send)


def _describe(colorizer: Any) -> tuple[str, str]:
    """(model name, device) of a colorizer-like object for ``/health`` (its ``model_name`` and
    ``device`` when it has them)."""
    device = getattr(colorizer, "device", None)
    return str(getattr(colorizer, "model_name", None) or type(colorizer).__name__), str(device or "unknown")


def _safe_stem(filename: str | None) -> str:
    stem = (filename or "image").replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    return stem[:100]


def _map_image_error(exc: Exception, filename: str) -> ServiceError:
    message = str(exc) or type(exc).__name__
    if filename and filename not in message:
        message = f"{filename}: {message}"
    if isinstance(exc, image_io.ImageTooLargeError):
        return ServiceError(413, "image_too_large", message)
    if isinstance(exc, image_io.NotAnImageError):
        return ServiceError(415, "not_an_image", message)
    if isinstance(exc, image_io.EmptyImageError):
        return ServiceError(422, "empty_image", message)
    if isinstance(exc, image_io.CorruptImageError):
        return ServiceError(422, "corrupt_image", message)
    return ServiceError(422, "invalid_image", message)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "form")]
        field = ".".join(loc) or "request"
        msg = err.get("msg", "invalid value")
        if err.get("type") == "missing" and field == "file":
            msg = "no file uploaded: send the image as multipart form field 'file'"
        parts.append(f"{field}: {msg}")
    return "; ".join(parts) or "invalid request"


def _docs_page(openapi_url: str, title: str) -> tuple[bytes, str]:
    """FastAPI's Swagger UI page for ``/docs`` (assets from this server) and its CSP.

    The page starts Swagger UI from one inline script. Rather than ``'unsafe-inline'``, the CSP
    allows exactly that script by its SHA-256 hash (the page is the same for every request);
    everything else stays ``'self'`` as on the colorizer page, so the page cannot reach a CDN.
    """
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} API reference",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/favicon.ico",
        swagger_ui_parameters={"validatorUrl": None},  # no badge image from validator.swagger.io
    ).body
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", page.decode(), re.S)
    ]
    return bytes(page), _PAGE_CSP.replace("script-src 'self'", " ".join(["script-src 'self'", *hashes]))


def _page_file(name: str) -> bytes:
    return resources.files("colorization.serve").joinpath("static", name).read_bytes()


_ERROR_RESPONSE = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                "required": ["error", "detail"],
            }
        }
    }
}


def create_app(
    colorizer: ColorizerLike | None = None,
    *,
    model: str | None = None,
    device: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    workers: int = DEFAULT_WORKERS,
    model_name: str | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        colorizer: a colorizer-like callable (see :class:`ColorizerLike`); when None,
            ``Colorizer.from_pretrained(model, device=device)`` is loaded now (errors surface here,
            not on the first request).
        model: exported model folder for the default colorizer (None = the shipped default model).
        device: torch device for the default colorizer (None = its own choice).
        max_upload_bytes, max_pixels, queue_size, workers: see :class:`ServiceConfig`.
        model_name: name reported by ``/health`` (default: taken from the colorizer).

    Returns:
        A FastAPI app; run it with ``uvicorn.run(app, host="127.0.0.1", port=8000)``.
    """
    config = ServiceConfig(
        max_upload_bytes=max_upload_bytes, max_pixels=max_pixels, queue_size=queue_size, workers=workers
    )
    if colorizer is None:
        colorizer = Colorizer.from_pretrained(model, device=device, max_pixels=config.max_pixels)
    if not callable(colorizer):
        raise TypeError(f"colorizer must be callable, got {type(colorizer).__name__}")
    name, device_name = _describe(colorizer)
    if model_name:
        name = model_name
    takes_hints = accepts_hints(colorizer)
    takes_reference = accepts_reference(colorizer)
    queue = InferenceQueue(workers=config.workers, queue_size=config.queue_size)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()
        app.state.video_jobs.shutdown()

    app = FastAPI(
        title="colorization",
        version=__version__,
        description="Colorize grayscale photos. Upload an image to `POST /colorize`; "
        "every error is JSON `{\"error\": code, \"detail\": message}`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.colorizer = colorizer
    app.state.model_name = name
    app.state.device = device_name
    app.state.accepts_hints = takes_hints
    app.state.accepts_reference = takes_reference
    app.state.config = config
    app.state.queue = queue
    app.add_middleware(
        BodyLimitMiddleware,
        max_body=2 * config.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        upload_limit=config.max_upload_bytes,
    )

    # POST /videos, GET /videos/{id}[/result]: video jobs (colorization.service_video)
    app.state.video_jobs = add_video_routes(app, colorizer, config.max_upload_bytes, ServiceError, _map_image_error,
                                            config.max_pixels)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(
            _error_body(exc.code, exc.detail, **exc.extra), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(_BodyTooLarge)
    async def _too_large(_request: Request, exc: _BodyTooLarge) -> JSONResponse:
        return JSONResponse(
            _error_body(
                "upload_too_large",
                f"upload exceeds the {_mb(config.max_upload_bytes)} limit",
                limit_bytes=config.max_upload_bytes,
            ),
            status_code=413,
            headers={"Connection": "close"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body(status_code_name(exc.status_code), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg"), "type": err.get("type")}
            for err in exc.errors()
        ]
        return JSONResponse(_error_body("invalid_request", _validation_message(exc), errors=errors), status_code=422)

    @app.get("/health", summary="Service status, model, device, hint support and queue depth")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": name,
            "device": device_name,
            "accepts_hints": takes_hints,
            "accepts_reference": takes_reference,
            "accepts_videos": hasattr(colorizer, "predict"),
            "version": __version__,
            "queue": queue.snapshot(),
            "limits": {
                **config.to_dict(),
                "size_range": list(SIZE_RANGE),
                "saturation_range": list(SATURATION_RANGE),
                "formats": [*OUTPUT_FORMATS, _INPUT_FORMAT],
                "max_hints": MAX_HINTS,
                "reference_strength_range": list(STRENGTH_RANGE),
                "video": video_limits(),
            },
        }

    @app.post(
        "/colorize",
        summary="Colorize an uploaded photo",
        description=(
            "Multipart form upload. Returns the colorized image, same width and height as the "
            "upload, as PNG (default), JPEG or WebP; format=input keeps the upload's format when "
            "it is PNG, JPEG or WebP and uses PNG otherwise. Metadata (EXIF) is not copied; the "
            "EXIF orientation is applied before colorizing.\n\n"
            "Colour hints (models with accepts_hints in /health): the optional hints field is a JSON "
            "list of points in the upload's pixel coordinates, e.g. hints=" + HINTS_EXAMPLE + ".\n\n"
            "Reference photo (models with accepts_reference in /health): the optional reference file field "
            "is a colour photo whose colours the result takes where the photo matches it; "
            "reference_strength weighs them."
        ),
        response_class=Response,
        responses={
            200: {
                "description": "The colorized image",
                "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
            },
            413: {
                "description": "Upload (photo or reference) larger than max_upload_bytes, or more pixels than "
                "max_pixels (reference_too_large for the reference)",
                **_ERROR_RESPONSE,
            },
            415: {"description": "The upload (or the reference: reference_not_an_image) is not an image",
                  **_ERROR_RESPONSE},
            422: {
                "description": "Corrupt or empty image, an invalid size/saturation/format, invalid "
                "hints (invalid_hints: bad JSON or point, a point outside the image, more than "
                f"{MAX_HINTS} points) or hints for a model without hint input (hints_not_supported); a corrupt, "
                "empty or gray reference (invalid_reference), or a reference for a model without hint input "
                "(reference_not_supported)",
                **_ERROR_RESPONSE,
            },
            503: {"description": "Inference queue full; retry after Retry-After seconds", **_ERROR_RESPONSE},
        },
    )
    async def colorize(
        file: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, TIFF, BMP, GIF; any mode)."),
        size: int | None = Form(
            None,
            ge=SIZE_RANGE[0],
            le=SIZE_RANGE[1],
            description="Working resolution of the network in pixels (default: the model's own).",
        ),
        saturation: float = Form(
            1.0,
            ge=SATURATION_RANGE[0],
            le=SATURATION_RANGE[1],
            description=(
                "Chroma multiplier on top of the model's own: 0 = grayscale, 1 = the model's setting, 2 = doubled "
                "(the shipped model halves its predicted chroma, so 2 gives it in full)."
            ),
        ),
        format: str = Form("png", description="Output format: png, jpeg (jpg), webp or input."),
        hints: str | None = Form(None, description=HINTS_FIELD_DESCRIPTION, examples=[HINTS_EXAMPLE]),
        reference: UploadFile | None = File(None, description=REFERENCE_FIELD_DESCRIPTION),
        reference_strength: float = Form(
            1.0, ge=STRENGTH_RANGE[0], le=STRENGTH_RANGE[1], description=STRENGTH_FIELD_DESCRIPTION
        ),
    ) -> Response:
        fmt = format.strip().lower()
        fmt = _FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in OUTPUT_FORMATS and fmt != _INPUT_FORMAT:
            raise ServiceError(
                422, "invalid_request",
                f"format: {format!r} is not one of {', '.join([*OUTPUT_FORMATS, 'jpg', _INPUT_FORMAT])}",
            )
        if not math.isfinite(saturation):
            raise ServiceError(422, "invalid_request", f"saturation: must be a finite number, got {saturation}")
        try:
            points = parse_hints_field(hints)
        except ValueError as exc:
            raise ServiceError(422, "invalid_hints", f"hints: {exc}") from None
        if points and not takes_hints:
            raise ServiceError(
                422, "hints_not_supported",
                f"hints: the {name} model does not take colour hints (it was trained without them); "
                "send the request without hints",
            )
        filename = file.filename or "upload"
        data = await file.read(config.max_upload_bytes + 1)
        await file.close()
        if len(data) > config.max_upload_bytes:
            raise ServiceError(
                413,
                "upload_too_large",
                f"{filename}: upload exceeds the {_mb(config.max_upload_bytes)} limit",
                extra={"limit_bytes": config.max_upload_bytes},
            )
        if not data:
            raise ServiceError(422, "empty_image", f"{filename}: the uploaded file is empty")
        ref_data, ref_name = await _read_reference_part(reference)
        if ref_data is not None and not takes_reference:
            raise ServiceError(
                422, "reference_not_supported",
                f"reference: the {name} model does not take colour hints, through which a reference photo "
                "colours; send the request without a reference",
            )
        if not queue.try_admit():
            retry = queue.retry_after()
            raise ServiceError(
                503, "queue_full",
                f"the server is busy ({queue.capacity} requests in progress or queued); retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )

        def work() -> tuple[bytes, str, tuple[int, int], Any]:
            try:
                loaded = image_io.open_image(data, max_pixels=config.max_pixels, name=filename)
            except image_io.ImageError as exc:
                raise _map_image_error(exc, filename) from exc
            try:
                check_hints_inside(points, loaded.image.size)
            except ValueError as exc:
                raise ServiceError(422, "invalid_hints", f"hints: {exc}") from None
            out_fmt = fmt
            if out_fmt == _INPUT_FORMAT:
                out_fmt = _PIL_TO_OUTPUT.get((loaded.format or "").upper(), "png")
            extra = {"hints": points} if points else {}
            match = None
            try:
                if ref_data is not None:
                    result, match = _with_reference(colorizer, loaded.image, ref_data, ref_name, size, saturation,
                                                    reference_strength, points)
                else:
                    result = colorizer(loaded.image, size=size, saturation=saturation, **extra)
            except image_io.ImageError as exc:  # e.g. the colorizer's own pixel limit
                raise _map_image_error(exc, filename) from exc
            if result.size != loaded.image.size:
                raise RuntimeError(f"colorizer returned {result.size}, expected {loaded.image.size}")
            return image_io.encode_image(result.convert("RGB"), out_fmt), out_fmt, result.size, match

        start = time.perf_counter()
        try:
            payload, out_fmt, (width, height), match = await queue.run(work)
        except ServiceError:
            raise
        except Exception:
            logger.exception("colorizing %s failed", filename)
            raise ServiceError(500, "internal_error", f"{filename}: colorizing failed (see the server log)") from None
        media_type, ext = OUTPUT_FORMATS[out_fmt].media_type, OUTPUT_FORMATS[out_fmt].suffix
        headers = {
            "Content-Disposition": f'inline; filename="{_safe_stem(filename)}_color{ext}"',
            "X-Image-Size": f"{width}x{height}",
            "X-Processing-Seconds": f"{time.perf_counter() - start:.3f}",
            "Cache-Control": "no-store",
        }
        if ref_data is not None:
            headers["X-Reference-Used"] = "true" if match is not None and match.fits else "false"
            headers["X-Reference-Match"] = f"{match.share if match is not None else 0.0:.3f}"
        return Response(content=payload, media_type=media_type, headers=headers)

    async def _read_reference_part(part: UploadFile | None) -> tuple[bytes | None, str]:
        """The reference upload's bytes (None when no file was chosen) and name; 413/422 for too
        large or empty."""
        if part is None or (not part.filename and not part.size):
            return None, ""
        ref_name = part.filename or "reference"
        data = await part.read(config.max_upload_bytes + 1)
        await part.close()
        if len(data) > config.max_upload_bytes:
            raise ServiceError(413, "reference_too_large",
                               f"reference {ref_name}: upload exceeds the {_mb(config.max_upload_bytes)} limit",
                               extra={"limit_bytes": config.max_upload_bytes})
        if not data:
            raise ServiceError(422, "invalid_reference", f"reference {ref_name}: the uploaded file is empty")
        return data, ref_name

    def _with_reference(col: Any, image: Image.Image, ref_data: bytes, ref_name: str, size: int | None,
                        saturation: float, strength: float, points: list) -> tuple[Image.Image, Any]:
        """Colorize ``image`` with the reference photo (the Colorizer's own steps, so that the match
        is known); ReferenceProblem -> ServiceError."""
        try:
            ref = read_reference(col, ref_data, ref_name, config.max_pixels)
        except ReferenceProblem as exc:
            raise ServiceError(exc.status, exc.code, exc.detail) from None
        prep = col.prepare(image, size, points or None)
        match = col.add_reference(prep, ref, strength)
        (ab,) = col.predict([prep], 1)
        return col.finish(prep, ab, saturation), match

    docs_page, docs_csp = _docs_page(app.openapi_url or "/openapi.json", app.title)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page, headers={"Content-Security-Policy": docs_csp})

    @app.get("/docs-assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in _DOCS_ASSETS:
            raise ServiceError(404, "not_found", f"no docs asset {name!r}")
        return FileResponse(
            _DOCS_ASSET_DIR / name, media_type=_DOCS_ASSETS[name], headers={"X-Content-Type-Options": "nosniff"}
        )

    page_cache: dict[str, bytes] = {}

    def serve_page_file(name: str) -> Response:
        if name not in page_cache:
            page_cache[name] = _page_file(name)
        return Response(
            page_cache[name],
            media_type=_PAGE_FILES[name],
            headers={"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return serve_page_file("index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:  # browsers ask for it on every page, /docs included
        return serve_page_file("favicon.svg")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in _PAGE_FILES:
            raise ServiceError(404, "not_found", f"no static file {name!r}")
        return serve_page_file(name)

    return app


