"""Build a blind rating study folder from colour photos and models.

``build_study`` draws a seeded sample of photos, crops each to a ``size x size`` square (short
side resized with PIL bicubic, centre crop — the protocol of ``colorization evaluate``), and
writes for each photo:

* the photo itself (the "real photo" control), and
* the output of every model, colorized from the photo's lightness through
  :class:`colorization.inference.colorizer.Colorizer` (``gray`` = ab 0),

all re-encoded the same way (JPEG quality 90, no metadata) under ``STUDYDIR/images/<id>.jpg`` with
``id`` a random 128-bit token, so neither the file, its URL nor its bytes name the condition. The
mapping id -> condition lives only in ``STUDYDIR/study.db``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from colorization import image_io
from colorization.evaluation.evaluate import _unique_names, list_group_images, load_ground_truth, resolve_model
from colorization.study.db import DB_NAME, REAL_LABEL, Item, StudyDB

__all__ = ["IMAGES_DIR", "JPEG_QUALITY", "DEFAULT_QUESTION", "build_study"]

IMAGES_DIR = "images"
JPEG_QUALITY = 90
DEFAULT_QUESTION = "How natural do the colours of this photo look?"


def build_study(
    images: str | os.PathLike,
    models: Sequence[str],
    out: str | os.PathLike,
    *,
    count: int = 20,
    size: int = 256,
    seed: int = 0,
    device: str | None = None,
    question: str = DEFAULT_QUESTION,
    progress: bool | None = None,
) -> Path:
    """Create the study folder ``out`` (must not already hold a study).

    Args:
        images: folder of colour photos. models: specs as for ``colorization evaluate`` (exported
            folder, ``default``, ``gray``, optionally ``NAME=SPEC``); their names must be unique
            and differ from "real photo".
        count: photos to sample (all if fewer). size: side of the square images.
        seed: photo sample and per-rater order seed. device: where models run (None: auto).
        question: the question shown to raters.
        progress: a tqdm bar on stderr; None (default): only when stderr is a terminal.

    Returns:
        The study folder.

    Raises:
        FileExistsError: ``out`` already holds a study. ValueError / FileNotFoundError: bad input.
    """
    if not models:
        raise ValueError("a study needs at least one model")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out_dir = Path(out)
    if (out_dir / DB_NAME).exists():
        raise FileExistsError(f"{out_dir / DB_NAME} exists: choose a new study folder")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    evals = [resolve_model(spec, dev, size) for spec in models]
    _unique_names(evals)
    if any(e.name == REAL_LABEL for e in evals):
        raise ValueError(f"a model may not be called {REAL_LABEL!r}")
    files = list_group_images(images, count, seed)
    root = Path(images)

    img_dir = out_dir / IMAGES_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    db = StudyDB(out_dir / DB_NAME, create=True)
    items: list[Item] = []

    def store(img, model: str, source: str) -> None:
        item_id = secrets.token_hex(16)
        name = f"{item_id}.jpg"
        image_io.save_image(img.convert("RGB"), img_dir / name, format="JPEG", quality=JPEG_QUALITY)
        items.append(Item(item_id, model, source, name))

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    for f in tqdm(files, desc="study images", unit="photo", file=sys.stderr, disable=disable):
        gt = load_ground_truth(f, size)
        source = f.relative_to(root).as_posix()
        store(gt, REAL_LABEL, source)
        for e in evals:
            store(e.colorizer(gt), e.name, source)
    db.add_items(items)
    db.set_meta(seed=seed, question=question, size=size, photos=len(files))
    manifest = {
        "photos": len(files),
        "size": size,
        "seed": seed,
        "question": question,
        "conditions": [REAL_LABEL] + [e.name for e in evals],
        "models": [{"name": e.name, "spec": e.spec, **e.info} for e in evals],
    }
    image_io.atomic_write_text(out_dir / "study.json", json.dumps(manifest, indent=2) + "\n")
    return out_dir
