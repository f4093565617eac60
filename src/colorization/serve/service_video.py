"""Video jobs of the REST service: ``POST /videos`` uploads a short video and starts a job,
``GET /videos/{id}`` reports its progress, ``GET /videos/{id}/result`` returns the colorized video.

A video takes far longer than a photo, so the upload is answered at once (202, after the video
has been checked: a readable container with a video stream, frames of at most
:data:`MAX_VIDEO_PIXELS`, at most :data:`MAX_VIDEO_SECONDS`), and the job runs on one background
thread (:data:`MAX_VIDEO_JOBS` jobs kept at a time; more: 503). Results are temporary files
deleted when the job is deleted (``DELETE /videos/{id}``), replaced by newer jobs, or the
service stops. Kept out of :mod:`colorization.service`, which adds the routes.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import FileResponse

from colorization import image_io
from colorization.inference.colorizer import SATURATION_RANGE
from colorization.inference.reference import STRENGTH_RANGE
from colorization.serve.service_hints import (
    VIDEO_HINTS_FIELD_DESCRIPTION,
    accepts_hints,
    check_hints_inside,
    parse_video_hints_field,
)
from colorization.serve.service_reference import (
    STRENGTH_FIELD_DESCRIPTION,
    VIDEO_REFERENCE_FIELD_DESCRIPTION,
    ReferenceProblem,
    accepts_reference,
    read_reference,
)
from colorization.video.formats import VIDEO_EXTENSIONS, VIDEO_FORMATS, video_format

__all__ = ["MAX_VIDEO_PIXELS", "MAX_VIDEO_SECONDS", "MAX_VIDEO_JOBS", "VideoJobs", "add_video_routes", "video_limits"]

logger = logging.getLogger("colorization.service")

MAX_VIDEO_PIXELS = 1920 * 1088
"""Largest accepted frame (width * height) of an uploaded video: Full HD."""
MAX_VIDEO_SECONDS = 120.0
"""Longest accepted upload (declared duration, and frame time stamps while decoding)."""
MAX_VIDEO_FRAMES = 7200
"""Most frames of an uploaded video."""
MAX_JOB_WARNINGS = 32
"""Most hint warnings a job reports (``GET /videos/{id}``'s ``warnings``)."""
MAX_VIDEO_JOBS = 8
"""Jobs kept (queued, running or finished with their results); a new one beyond: the oldest
finished job is dropped, or 503 when none has finished."""


def video_limits() -> dict[str, Any]:
    """The video bounds for ``/health`` (the browser page shows them and uses ``extensions`` to
    tell a video from a photo when the browser gives a file no ``video/`` type)."""
    return {"max_pixels": MAX_VIDEO_PIXELS, "max_seconds": MAX_VIDEO_SECONDS, "max_frames": MAX_VIDEO_FRAMES,
            "max_jobs": MAX_VIDEO_JOBS, "formats": list(VIDEO_FORMATS), "extensions": sorted(VIDEO_EXTENSIONS)}


@dataclass
class VideoJob:
    """One upload's job; ``status`` is ``queued``, ``running``, ``done`` or ``failed``."""

    id: str
    filename: str
    folder: Path
    status: str = "queued"
    frames_done: int = 0
    frames_total: int | None = None
    error: dict[str, str] | None = None
    output: Path | None = None
    media_type: str = "video/mp4"
    created: float = field(default_factory=time.time)
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    """Messages about the job's hints (a point dropped or lost before its shot ended), at most
    :data:`MAX_JOB_WARNINGS`."""

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_JOB_WARNINGS:
            self.warnings.append(message)

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "status": self.status, "frames_done": self.frames_done,
               "frames_total": self.frames_total, "status_url": f"/videos/{self.id}"}
        if self.status == "done":
            out["result_url"] = f"/videos/{self.id}/result"
            out["seconds"] = self.seconds
        if self.error:
            out["error"] = self.error
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


class VideoJobs:
    """The jobs of one service instance and the thread that runs them (one at a time)."""

    def __init__(self, colorizer: Any, map_error: Callable[[Exception, str], Any], max_jobs: int = MAX_VIDEO_JOBS):
        self.colorizer = colorizer
        self.map_error = map_error
        self.max_jobs = max_jobs
        self.jobs: OrderedDict[str, VideoJob] = OrderedDict()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video")
        self.root = Path(tempfile.mkdtemp(prefix="colorization-videos-"))

    def admit(self, filename: str) -> VideoJob | None:
        """A new job, or None when every kept job is still queued or running."""
        with self.lock:
            while len(self.jobs) >= self.max_jobs:
                old = next((j for j in self.jobs.values() if j.status in ("done", "failed")), None)
                if old is None:
                    return None
                self._drop(old.id)
            job = VideoJob(uuid.uuid4().hex, filename, self.root / uuid.uuid4().hex)
            job.folder.mkdir()
            self.jobs[job.id] = job
            return job

    def _drop(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def delete(self, job_id: str) -> bool:
        with self.lock:
            if job_id not in self.jobs or self.jobs[job_id].status in ("queued", "running"):
                return False
            self._drop(job_id)
            return True

    def start(self, job: VideoJob, src: Path, fmt: str, saturation: float, reference: Any = None,
              strength: float = 1.0, hints: dict[int, list] | None = None) -> None:
        self.pool.submit(self._run, job, src, fmt, saturation, reference, strength, hints)

    def _run(self, job: VideoJob, src: Path, fmt: str, saturation: float, reference: Any = None,
             strength: float = 1.0, hints: dict[int, list] | None = None) -> None:
        from colorization.video.pipeline import LateFrameError, colorize_video

        job.status = "running"
        dst = job.folder / f"result{video_format(fmt).extension}"

        def on_frame(done: int, total: int | None) -> None:
            job.frames_done, job.frames_total = done, total

        try:
            result = colorize_video(src, dst, self.colorizer, format=fmt, saturation=saturation, progress=False,
                                    on_frame=on_frame, max_frames=MAX_VIDEO_FRAMES, max_duration=MAX_VIDEO_SECONDS,
                                    name=job.filename, reference=reference, reference_strength=strength,
                                    hints=hints or None, on_warning=job.warn)
            job.output, job.seconds, job.status = dst, round(result.seconds, 3), "done"
        except image_io.ImageError as exc:
            err = self.map_error(exc, job.filename)
            job.error, job.status = {"error": err.code, "detail": err.detail}, "failed"
        except LateFrameError as exc:  # hints past the last frame of a video that did not declare its length
            job.error, job.status = {"error": "invalid_hints", "detail": f"hints: {exc}"}, "failed"
        except Exception:  # noqa: BLE001 - reported in the job, details in the server log
            logger.exception("colorizing video %s failed", job.filename)
            detail = f"{job.filename}: colorizing failed (see the server log)"
            job.error, job.status = {"error": "internal_error", "detail": detail}, "failed"
        finally:
            src.unlink(missing_ok=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)


def add_video_routes(
    app: FastAPI, colorizer: Any, max_upload_bytes: int, error: type, map_error: Callable,
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS,
) -> VideoJobs:
    """Add the ``/videos`` routes to ``app``; ``error`` is the service's ServiceError (status,
    code, detail) and ``map_error`` its image-error mapping (413 / 415 / 422); ``max_pixels``
    bounds a reference photo."""
    jobs = VideoJobs(colorizer, map_error)

    def find(job_id: str) -> VideoJob:
        job = jobs.jobs.get(job_id)
        if job is None:
            raise error(404, "unknown_job", f"no video job {job_id!r} (finished jobs are kept for a while only)")
        return job

    @app.post("/videos", status_code=202, summary="Upload a short video; starts a colorization job")
    async def upload_video(
        file: UploadFile = File(..., description="The video (any container/codec FFmpeg reads)."),
        saturation: float = Form(1.0, ge=SATURATION_RANGE[0], le=SATURATION_RANGE[1]),
        format: str = Form("mp4", description=f"Output: {', '.join(VIDEO_FORMATS)}."),
        reference: UploadFile | None = File(
            None, description=VIDEO_REFERENCE_FIELD_DESCRIPTION
        ),
        reference_strength: float = Form(
            1.0, ge=STRENGTH_RANGE[0], le=STRENGTH_RANGE[1], description=STRENGTH_FIELD_DESCRIPTION
        ),
        hints: str | None = Form(None, description=VIDEO_HINTS_FIELD_DESCRIPTION),
    ) -> dict[str, Any]:
        from colorization.video.io import VideoReader  # lazy: PyAV only when videos are used

        if not hasattr(colorizer, "predict"):
            raise error(501, "video_not_supported", "this service's colorizer cannot colorize videos")
        fmt = format.strip().lower()
        if fmt not in VIDEO_FORMATS:
            raise error(422, "invalid_request", f"format: {format!r} is not one of {', '.join(VIDEO_FORMATS)}")
        if not math.isfinite(saturation):
            raise error(422, "invalid_request", f"saturation: must be a finite number, got {saturation}")
        filename = file.filename or "upload"
        data = await file.read(max_upload_bytes + 1)
        await file.close()
        if len(data) > max_upload_bytes:
            raise error(413, "upload_too_large", f"{filename}: upload exceeds the {max_upload_bytes:,} byte limit")
        try:
            frame_hints = parse_video_hints_field(hints)
        except ValueError as exc:
            raise error(422, "invalid_hints", f"hints: {exc}") from None
        if frame_hints and not accepts_hints(colorizer):
            raise error(422, "hints_not_supported", "hints: this service's model does not take colour hints; "
                        "send the video without them")
        try:  # checked before the job starts: bad uploads are answered now, not in the job
            with VideoReader(data, name=filename, max_pixels=MAX_VIDEO_PIXELS, max_frames=MAX_VIDEO_FRAMES,
                             max_duration=MAX_VIDEO_SECONDS) as reader:
                info = reader.info
        except image_io.ImageError as exc:
            raise map_error(exc, filename) from None
        for frame, points in sorted(frame_hints.items()):
            if info.frames and frame >= info.frames:
                raise error(422, "invalid_hints", f"hints: frame {frame}, but {filename} has {info.frames} frames "
                            f"(0 to {info.frames - 1})")
            try:
                check_hints_inside(points, (info.width, info.height))
            except ValueError as exc:
                raise error(422, "invalid_hints", f"hints: frame {frame}: {exc}") from None
        encoded = await _reference(reference)
        job = jobs.admit(filename)
        if job is None:
            raise error(503, "queue_full", f"{jobs.max_jobs} video jobs are queued or running; retry later",
                        headers={"Retry-After": "30"})
        src = job.folder / "upload"
        src.write_bytes(data)
        jobs.start(job, src, fmt, saturation, encoded, reference_strength, frame_hints)
        return job.to_dict()

    async def _reference(part: UploadFile | None) -> Any:
        """The reference upload read and encoded before the job starts (None without one)."""
        if part is None or (not part.filename and not part.size):
            return None
        name = part.filename or "reference"
        data = await part.read(max_upload_bytes + 1)
        await part.close()
        if not accepts_reference(colorizer):
            raise error(422, "reference_not_supported", "reference: this service's model does not take colour "
                        "hints, through which a reference photo colours; send the video without a reference")
        if len(data) > max_upload_bytes:
            raise error(413, "reference_too_large", f"reference {name}: upload exceeds the {max_upload_bytes:,} "
                        "byte limit")
        if not data:
            raise error(422, "invalid_reference", f"reference {name}: the uploaded file is empty")
        try:
            return read_reference(colorizer, data, name, max_pixels)
        except ReferenceProblem as exc:
            raise error(exc.status, exc.code, exc.detail) from None

    @app.get("/videos/{job_id}", summary="Progress of a video job")
    async def video_status(job_id: str) -> dict[str, Any]:
        return find(job_id).to_dict()

    @app.get("/videos/{job_id}/result", summary="The colorized video of a finished job", response_model=None)
    async def video_result(job_id: str) -> FileResponse:
        job = find(job_id)
        if job.status != "done" or job.output is None:
            raise error(409, "job_not_done", f"video job {job_id} is {job.status}")
        stem = Path(job.filename).stem or "video"
        return FileResponse(job.output, media_type="video/webm" if job.output.suffix == ".webm" else "video/mp4",
                            filename=f"{stem}_color{job.output.suffix}")

    @app.delete("/videos/{job_id}", status_code=204, summary="Delete a finished video job and its result")
    async def delete_video(job_id: str) -> None:
        find(job_id)
        if not jobs.delete(job_id):
            raise error(409, "job_not_done", f"video job {job_id} is still running")

    return jobs
