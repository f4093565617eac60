"""Transparency and 16-bit depth (issue #22, items 4 and 5): alpha kept by default where the output
format carries it (PNG, WebP, TIFF), compositing on a background as an option of the Python API and
of ``colorize`` / ``colorize-many``; 16-bit PNG and TIFF inputs read and written at 16 bits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab
from typer.testing import CliRunner

from colorization import cli, image_io
from colorization.image_io import deep as image_deep
from colorization.inference.colorizer import Colorizer

runner = CliRunner()
H, W = 24, 32


@pytest.fixture(scope="module")
def colorizer(model_dir) -> Colorizer:
    return Colorizer.from_pretrained(model_dir, device="cpu")


def cutout() -> Image.Image:
    """A gray gradient, opaque in the middle, half transparent in a band, clear around."""
    y, x = np.mgrid[0:H, 0:W]
    gray = (40 + 6 * x + 2 * y).astype(np.uint8)
    alpha = np.zeros((H, W), np.uint8)
    alpha[4:20, 6:26] = 255
    alpha[10:14, 6:26] = 128
    return Image.fromarray(np.dstack([gray, gray, gray, alpha]), "RGBA")


def deep_gray() -> np.ndarray:
    """(H, W) uint16 with levels between the 8-bit ones."""
    y, x = np.mgrid[0:H, 0:W]
    return (3000 + 1500 * x + 300 * y + 7).astype(np.uint16)


def test_python_api_keeps_alpha_unless_given_a_background(colorizer):
    img = cutout()
    out = colorizer(img)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], np.asarray(img)[..., 3])
    black = colorizer(img, background="black")
    assert black.mode == "RGB"
    assert np.asarray(black)[0, 0].tolist() == [0, 0, 0]  # a clear pixel: the background, L = 0
    white = colorizer(img, background=(255, 255, 255))
    assert np.asarray(white)[0, 0].tolist() == [255, 255, 255]
    same = colorizer.colorize_batch([img, img], background="#ffffff")
    assert all(np.array_equal(np.asarray(o), np.asarray(white)) for o in same)
    with pytest.raises(ValueError, match="background"):
        colorizer(img, background="no-such-colour")


def test_cli_keeps_alpha_in_png_webp_tiff_and_composites_jpeg(model_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cutout().save(src / "cut.png")
    cutout().save(src / "cut.webp", lossless=True)
    cutout().save(src / "cut.tif")
    out = tmp_path / "out"
    args = ["colorize", str(src), "-o", str(out), "--model", str(model_dir)]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    alpha = np.asarray(cutout())[..., 3]
    for name in ("cut.png", "cut.webp", "cut.tif"):
        with Image.open(out / name) as got:
            assert got.mode == "RGBA", name
            assert np.array_equal(np.asarray(got)[..., 3], alpha), name
    def one(folder: str, *extra: str):
        return runner.invoke(cli.app, ["colorize", str(src / "cut.png"), "-o", str(tmp_path / folder),
                                       "--model", str(model_dir), *extra])

    jpeg = one("jpeg", "--format", "jpeg")
    assert jpeg.exit_code == 0, jpeg.output
    with Image.open(tmp_path / "jpeg" / "cut.jpg") as got:
        assert got.mode == "RGB" and min(got.getpixel((0, 0))) >= 240  # composited on white: L = 100
    black = one("black", "--background", "#000000")
    assert black.exit_code == 0, black.output
    with Image.open(tmp_path / "black" / "cut.png") as got:
        assert got.mode == "RGB" and max(got.getpixel((0, 0))) <= 2
    bad = one("bad", "--background", "nope")
    assert bad.exit_code == 2 and "background" in bad.output


def test_colorize_many_takes_the_background_option(model_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cutout().save(src / "cut.png")
    base = ["colorize-many", "--input", str(src), "--model", str(model_dir), "--workers", "0"]
    kept = runner.invoke(cli.app, [*base, "-o", str(tmp_path / "kept")])
    assert kept.exit_code == 0, kept.output
    with Image.open(tmp_path / "kept" / "cut.png") as got:
        assert got.mode == "RGBA"
    flat = runner.invoke(cli.app, [*base, "-o", str(tmp_path / "flat"), "--background", "white"])
    assert flat.exit_code == 0, flat.output
    with Image.open(tmp_path / "flat" / "cut.png") as got:
        assert got.mode == "RGB"


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_a_16bit_gray_scan_comes_back_at_16_bits(model_dir, tmp_path, ext):
    """At saturation 0 the output is the input's lightness: a 16-bit scan keeps its levels within a
    few 16-bit steps, where 8 bits would be up to 128 steps off."""
    src = tmp_path / "in"
    src.mkdir()
    gray = deep_gray()
    exif = Image.Exif()
    exif[0x010F] = "Scanner Co"
    encode = image_deep.encode_png16 if ext == "png" else image_deep.encode_tiff16
    (src / f"scan.{ext}").write_bytes(encode(gray, exif.tobytes()))
    out = tmp_path / "out"
    result = runner.invoke(cli.app, ["colorize", str(src), "-o", str(out), "--model", str(model_dir),
                                     "--saturation", "0"])
    assert result.exit_code == 0, result.output
    data = (out / f"scan.{ext}").read_bytes()
    got = image_deep.decode_16bit(data)
    assert got is not None and got.dtype == np.uint16 and got.shape == (H, W, 3)
    assert np.abs(got.astype(int) - gray[..., None].astype(int)).max() <= 4
    with Image.open(out / f"scan.{ext}") as img:
        assert img.getexif().get(0x010F) == "Scanner Co"
    jpeg = runner.invoke(cli.app, ["colorize", str(src), "-o", str(tmp_path / "j"), "--model", str(model_dir),
                                   "--format", "jpeg"])
    assert jpeg.exit_code == 0 and (tmp_path / "j" / "scan.jpg").is_file()


def test_16bit_colour_orientation_and_alpha_through_the_api(colorizer, tmp_path):
    rng = np.random.default_rng(0)
    rgba = np.dstack([np.repeat(deep_gray()[..., None], 3, axis=2), rng.integers(0, 65536, (H, W), dtype=np.uint16)])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the pixels are stored sideways
    path = tmp_path / "scan.png"
    path.write_bytes(image_deep.encode_png16(rgba, exif.tobytes()))
    loaded = image_io.open_image(path, keep_alpha=True)
    assert loaded.deep is not None and loaded.deep.shape == (W, H, 3) and loaded.image.size == (H, W)
    assert np.array_equal(loaded.alpha, np.rot90(rgba[..., 3], -1))
    prep = colorizer.prepare(path)
    assert prep.bits == 16 and prep.alpha is not None and prep.alpha.dtype == np.uint16
    (ab,) = colorizer.predict([prep])
    arr = colorizer.finish_array(prep, ab, saturation=0.0)
    assert arr.dtype == np.uint16 and arr.shape == (W, H, 4)
    assert np.array_equal(arr[..., 3], loaded.alpha)
    assert np.abs(arr[..., 0].astype(int) - loaded.deep[..., 0].astype(int)).max() <= 4
    small = colorizer.finish_array(prep, ab, bits=8)
    assert small.dtype == np.uint8 and small.shape == (W, H, 4)
    pil = colorizer(path)
    assert pil.mode == "RGBA" and pil.size == (H, W)
    written = image_io.save_image(arr, tmp_path / "out.tif")
    assert np.array_equal(image_deep.decode_16bit(written.read_bytes()), arr)
    assert image_io.save_image(arr, tmp_path / "out.webp").is_file()  # 8 bits there


def test_lightness_of_a_16bit_input_is_read_at_16_bits(colorizer):
    """The L the network and the output keep comes from the 16-bit levels, not from 8-bit copies."""
    gray = deep_gray()
    prep = colorizer.prepare(gray)
    ref = rgb2lab(np.repeat(gray[..., None], 3, axis=2).astype(np.float64) / 65535.0)[..., 0]
    assert prep.bits == 16
    assert np.abs(prep.l_full.numpy() - ref).max() < 0.01  # 8-bit levels would be up to ~0.2 L off


def test_a_16bit_file_opencv_cannot_read_warns_and_uses_8_bits(tmp_path, monkeypatch):
    path = tmp_path / "scan.png"
    path.write_bytes(image_deep.encode_png16(deep_gray()))
    monkeypatch.setattr(image_deep, "decode_16bit", lambda data: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = image_io.open_image(path)
    assert loaded.deep is None and loaded.image.size == (W, H)
    assert any("16-bit" in str(w.message) for w in caught)


def test_save_image_refuses_other_array_dtypes(tmp_path):
    with pytest.raises(ValueError, match="uint8 or uint16"):
        image_io.save_image(np.zeros((4, 4, 3), np.float32), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_turns_16bit_pixels_as_pil_does(orientation):
    from PIL import ImageOps

    levels = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = Image.fromarray(levels)  # the same layout in 8 bits, for PIL's exif_transpose
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img)).astype(np.uint16) * 1000
    assert np.array_equal(image_deep.orient(levels.astype(np.uint16) * 1000, orientation), expected)
