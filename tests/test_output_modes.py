"""Every input mode and container through the file job (``colorize`` / ``colorize-many``), into every
output format: each output must reopen (in Pillow and in our own loader) at the input's size, keep
the input's alpha channel where the output format has one, and its 16 bits per channel in PNG and
TIFF (issue #22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorization import image_io
from colorization.batch import jobs
from colorization.image_io import deep as image_deep
from colorization.inference.colorizer import Colorizer

H, W = 12, 16


def _deep_source(mode: str) -> np.ndarray:
    """16-bit pixels: "RGB16" (H, W, 3) or "RGBA16" (H, W, 4) uint16, with levels no 8-bit file has."""
    rng = np.random.default_rng(1)
    rgb = np.repeat(rng.integers(0, 65536, (H, W, 1), dtype=np.uint16), 3, axis=2)
    if mode == "RGBA16":
        return np.dstack([rgb, rng.integers(0, 65536, (H, W), dtype=np.uint16)])
    return rgb


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
    *[(m, _name(m, ext), {}) for m in ("RGB16", "RGBA16") for ext in ("png", "tif")],
]
ALPHA_MODES = {"LA", "RGBA", "P+t", "RGBA16"}
DEEP_MODES = {"I;16", "RGB16", "RGBA16"}  # 16 bits per sample (TIFF and PNG; 'I' and 'F' are not)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("modes")
    for mode, name, options in INPUTS:
        exif = Image.Exif()
        exif[0x010F] = "Scanner Co"  # Make: real EXIF that must travel (where the format has EXIF)
        if mode.endswith("16") and mode != "I;16":  # Pillow cannot write 16-bit colour
            encode = image_deep.encode_png16 if name.endswith(".png") else image_deep.encode_tiff16
            (root / name).write_bytes(encode(_deep_source(mode), exif.tobytes()))
            continue
        extra = {"exif": exif} if name.endswith((".tif", ".png", ".jpg", ".webp")) else {}
        _source(mode).save(root / name, **options, **extra)
    return root


def _input_alpha(inputs: Path, mode: str, name: str) -> np.ndarray:
    """The input's alpha as 8 bits."""
    if mode == "RGBA16":
        return image_deep.to_8bit(_deep_source(mode)[..., 3])
    with Image.open(inputs / name) as img:
        return np.asarray(img.convert("RGBA").getchannel("A"))


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
        out_format = Image.registered_extensions()[out.suffix.lower()]
        keeps_alpha = mode in ALPHA_MODES and out_format in image_io.ALPHA_FORMATS
        keeps_depth = mode in DEEP_MODES and out_format in image_io.DEEP_FORMATS
        if out_format != "GIF":  # (a GIF is a palette image)
            assert reopened.mode == ("RGBA" if keeps_alpha else "RGB"), (mode, name, fmt)
        if keeps_alpha and not keeps_depth:  # (Pillow reads 16-bit alpha truncated; checked below)
            assert np.array_equal(np.asarray(reopened.getchannel("A")), _input_alpha(inputs, mode, name)), (name, fmt)
        deep = image_deep.decode_16bit(out.read_bytes())
        if keeps_depth:
            assert deep is not None and deep.shape == (H, W, 4 if keeps_alpha else 3), (name, fmt)
            if mode == "RGBA16":  # the 16-bit alpha itself, not an 8-bit copy
                assert np.array_equal(deep[..., 3], _deep_source(mode)[..., 3]), (name, fmt)
            assert (deep % 257 != 0).any(), (name, fmt)  # levels between the 8-bit ones
        else:
            assert deep is None, (name, fmt)  # 8 bits per channel


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
