"""Every input mode and container through the file job (``colorize`` / ``colorize-many``), into every
output format: each output must reopen (in Pillow and in our own loader) at the input's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorization import image_io
from colorization.batch import jobs
from colorization.inference.colorizer import Colorizer

H, W = 12, 16


def _source(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (H, W), dtype=np.uint8)
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(gray.astype(np.int32) * 100)
    if mode == "F":
        return Image.fromarray(gray.astype(np.float32) / 255.0)
    base = Image.fromarray(gray, "L")
    if mode == "P+t":  # palette with a transparent index
        img = base.convert("P")
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        return img
    if mode in ("LA", "RGBA"):
        alpha = Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8), "L")
        img = base.convert(mode)
        img.putalpha(alpha)
        return img
    return base.convert(mode)


def _name(mode: str, ext: str, tag: str = "") -> str:
    return f"{mode.replace(';', '').replace('+', '')}{tag}_{ext}.{ext}"  # unique whatever --format


# (mode, file name, save options): every mode each container stores
INPUTS = [
    *[(m, _name(m, "tif"), {}) for m in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK")],
    *[(m, _name(m, "tif", "_lzw"), {"compression": "tiff_lzw"}) for m in ("L", "RGB", "I;16")],
    *[(m, _name(m, "png"), {}) for m in ("1", "L", "LA", "P", "P+t", "RGB", "RGBA", "I;16")],
    *[(m, _name(m, "jpg"), {}) for m in ("L", "RGB", "CMYK")],
    *[(m, _name(m, "webp"), {"lossless": True}) for m in ("RGB", "RGBA")],
    *[(m, _name(m, "bmp"), {}) for m in ("1", "L", "P", "RGB")],
    *[(m, _name(m, "gif"), {}) for m in ("L", "P")],
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("modes")
    for mode, name, options in INPUTS:
        exif = Image.Exif()
        exif[0x010F] = "Scanner Co"  # Make: real EXIF that must travel (where the format has EXIF)
        extra = {"exif": exif} if name.endswith((".tif", ".png", ".jpg", ".webp")) else {}
        _source(mode).save(root / name, **options, **extra)
    return root


def _reopen(path: Path) -> tuple[Image.Image, dict[int, object]]:
    """The decoded image and its tags (EXIF, or for a TIFF its IFD)."""
    with Image.open(path) as img:
        img.load()
        return img.copy(), dict(img.getexif())


@pytest.mark.parametrize("fmt", [None, *image_io.OUTPUT_FORMATS])
def test_every_mode_into_every_format_reopens(inputs, model_dir, tmp_path, fmt):
    colorizer = Colorizer.from_pretrained(model_dir, device="cpu")
    entries = [(inputs / name, inputs) for _, name, _ in INPUTS]
    summary = jobs.colorize_files(colorizer, entries, jobs.Outputs(tmp_path, fmt), batch_size=4)
    assert (summary.done, summary.failed, summary.skipped) == (len(INPUTS), 0, 0), summary.failures
    for mode, name, _ in INPUTS:
        out = jobs.output_path(inputs / name, inputs, tmp_path, fmt)
        reopened, tags = _reopen(out)  # raised UnidentifiedImageError for gray TIFFs (issue #22)
        assert reopened.size == (W, H), (mode, name, fmt)
        assert image_io.open_image(out).image.size == (W, H)
        if not name.endswith((".bmp", ".gif")):
            assert tags.get(0x010F) == "Scanner Co", (name, fmt)  # the real EXIF travels
        if out.suffix == ".tif":
            # the TIFF's own layout, not the source's: three (or four) samples, RGB photometric
            assert tags[262] == 2 and tags[277] in (3, 4), (name, fmt)


def test_tiff_layout_tags_are_not_exif(tmp_path):
    path = tmp_path / "gray.tif"
    exif = Image.Exif()
    exif[0x0110] = "Model 9"
    Image.fromarray(np.zeros((H, W), np.uint8), "L").save(path, exif=exif, compression="tiff_lzw")
    loaded = image_io.open_image(path)
    tags = Image.Exif()
    tags.load(loaded.exif)
    assert dict(tags) == {0x0110: "Model 9"}  # no BitsPerSample, Photometric, StripOffsets ...
    # save_image leaves them out too when given a TIFF's raw getexif()
    with Image.open(path) as img:
        raw = img.getexif()
    assert 262 in raw
    out = image_io.save_image(Image.new("RGB", (W, H)), tmp_path / "rgb.tif", exif=raw)
    assert _reopen(out)[0].mode == "RGB" and 262 in raw  # the caller's Exif is left as it was
