"""Tests of colorization.image_io: every format/mode built on the fly, typed errors, atomic saving."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorization import image_io


def _gradient(w: int = 16, h: int = 12) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    arr = np.stack([x, y, 255 - x], -1).round().astype(np.uint8)
    return Image.fromarray(arr)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int32)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png16(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit grey (H, W) or RGB (H, W, 3) PNG by hand (PIL cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    colour_type = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


# --- formats and modes ------------------------------------------------------------------------


@pytest.mark.parametrize("ext,lossless", [(".png", True), (".bmp", True), (".tif", True),
                                          (".webp", False), (".jpg", False)])
def test_formats_round_trip(tmp_path: Path, ext: str, lossless: bool) -> None:
    img = _gradient()
    path = image_io.save_image(img, tmp_path / f"g{ext}")
    loaded = image_io.open_image(path)
    assert loaded.image.mode == "RGB" and loaded.image.size == img.size
    diff = np.abs(_arr(loaded.image) - _arr(img)).max()
    assert diff == 0 if lossless else diff < 24
    assert loaded.format == Image.registered_extensions()[ext]


def test_gif_first_frame_and_palette_transparency(tmp_path: Path) -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    np.testing.assert_array_equal(_arr(image_io.load_image(tmp_path / "anim.gif"))[0, 0], [255, 0, 0])

    # palette image with a transparent index -> composited on white
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.putpixel((1, 1), 1)
    for name in ("t.png", "t.gif"):
        p.save(tmp_path / name, transparency=0)
        out = _arr(image_io.load_image(tmp_path / name))
        np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
        np.testing.assert_array_equal(out[1, 1], [10, 200, 30])


def test_grey_and_alpha_modes(tmp_path: Path) -> None:
    grey = Image.fromarray(np.array([[0, 100], [200, 255]], dtype=np.uint8))
    grey.save(tmp_path / "l.png")
    loaded = image_io.open_image(tmp_path / "l.png")
    assert loaded.source_mode == "L"
    np.testing.assert_array_equal(_arr(loaded.image)[..., 0], _arr(grey))
    np.testing.assert_array_equal(_arr(loaded.image)[..., 1], _arr(grey))

    # RGBA: alpha 0 -> white, alpha 255 -> colour, alpha 128 -> halfway to white
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = [0, 0, 0, 0]
    rgba[0, 1] = [20, 40, 60, 255]
    rgba[0, 2] = [0, 0, 0, 128]
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = _arr(image_io.load_image(tmp_path / "a.png"))[0]
    np.testing.assert_array_equal(out[0], [255, 255, 255])
    np.testing.assert_array_equal(out[1], [20, 40, 60])
    assert np.abs(out[2] - 127).max() <= 1

    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    out = _arr(image_io.load_image(tmp_path / "la.png"))[0]
    np.testing.assert_array_equal(out, [[255, 255, 255], [50, 50, 50]])


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
def test_cmyk(tmp_path: Path, ext: str) -> None:
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan
    cmyk.save(tmp_path / f"c{ext}")
    loaded = image_io.open_image(tmp_path / f"c{ext}")
    assert loaded.source_mode == "CMYK"
    assert np.abs(_arr(loaded.image)[4, 4] - [0, 255, 255]).max() <= 3


def test_sixteen_bit_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 60000, 65535]], dtype=np.uint16)
    expected = np.rint(values / 257.0).astype(np.int32)  # [0, 1, 128, 233, 255]
    Image.fromarray(values).save(tmp_path / "g16.png")
    Image.fromarray(values).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        loaded = image_io.open_image(tmp_path / name)
        assert loaded.source_mode.startswith("I;16")
        np.testing.assert_array_equal(_arr(loaded.image)[..., 0], expected)
    _write_png16(tmp_path / "g16b.png", values)
    np.testing.assert_array_equal(_arr(image_io.load_image(tmp_path / "g16b.png"))[..., 2], expected)
    # 16-bit RGB: PIL keeps the high byte, within one level of exact scaling
    rgb16 = np.stack([values, values[:, ::-1], np.full_like(values, 1000)], -1)
    _write_png16(tmp_path / "rgb16.png", rgb16)
    out = _arr(image_io.load_image(tmp_path / "rgb16.png"))
    assert np.abs(out - np.rint(rgb16 / 257.0)).max() <= 1


def test_int_and_float_modes(tmp_path: Path) -> None:
    i16_in_32 = np.array([[0, 1000, 65535]], dtype=np.int32)
    Image.fromarray(i16_in_32).save(tmp_path / "i.tif")
    loaded = image_io.open_image(tmp_path / "i.tif")
    assert loaded.source_mode == "I"
    np.testing.assert_array_equal(_arr(loaded.image)[0, :, 0], np.rint(i16_in_32[0] / 257))
    wide = np.array([[-100, 0, 900]], dtype=np.int32)  # outside 16 bits: min-max scaled
    np.testing.assert_array_equal(_arr(image_io.to_rgb(Image.fromarray(wide)))[0, :, 0], [0, 26, 255])
    f = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    Image.fromarray(f).save(tmp_path / "f.tif")
    loaded = image_io.open_image(tmp_path / "f.tif")
    assert loaded.source_mode == "F"
    np.testing.assert_array_equal(_arr(loaded.image)[0, :, 1], [0, 64, 255])
    f255 = np.array([[0.0, 100.0, 255.0]], dtype=np.float32)
    np.testing.assert_array_equal(_arr(image_io.to_rgb(Image.fromarray(f255)))[0, :, 0], [0, 100, 255])


def test_exif_orientation(tmp_path: Path) -> None:
    arr = np.zeros((2, 4, 3), dtype=np.uint8)  # 4 wide, 2 high; red top-left, green bottom-right
    arr[0, 0] = [255, 0, 0]
    arr[1, 3] = [0, 255, 0]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90° clockwise
    exif[0x010F] = "TestCam"
    Image.fromarray(arr).save(tmp_path / "o.png", exif=exif)
    loaded = image_io.open_image(tmp_path / "o.png")
    out = _arr(loaded.image)
    assert loaded.image.size == (2, 4)
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])  # top-left -> top-right
    np.testing.assert_array_equal(out[3, 0], [0, 255, 0])  # bottom-right -> bottom-left
    assert loaded.exif is not None
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept[0x010F] == "TestCam" and 0x0112 not in kept


def test_sources_bytes_and_stream(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _gradient().save(buf, format="PNG")
    data = buf.getvalue()
    a = image_io.load_image(data)
    b = image_io.load_image(io.BytesIO(data))
    np.testing.assert_array_equal(_arr(a), _arr(_gradient()))
    np.testing.assert_array_equal(_arr(a), _arr(b))


# --- errors -----------------------------------------------------------------------------------


def test_typed_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    with pytest.raises(image_io.NotAnImageError, match="notes.jpg"):
        image_io.load_image(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(image_io.EmptyImageError, match="empty.png"):
        image_io.load_image(empty)
    with pytest.raises(image_io.EmptyImageError):
        image_io.load_image(b"")
    zero = tmp_path / "zero.png"  # valid signature, 0 x 0 header
    zero.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)))
    with pytest.raises(image_io.EmptyImageError, match="zero.png"):
        image_io.load_image(zero)

    for ext in (".jpg", ".png", ".webp"):
        buf = io.BytesIO()
        Image.effect_noise((64, 64), 60).convert("RGB").save(buf, format=Image.registered_extensions()[ext])
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(image_io.CorruptImageError, match=f"cut{ext}"):
            image_io.load_image(cut)
        if ext == ".webp":  # PIL's WebP reader decodes on open: no header-only size
            continue
        # the pixel limit is checked from the header, before decoding the (truncated) data
        with pytest.raises(image_io.ImageTooLargeError, match=f"cut{ext}"):
            image_io.load_image(cut, max_pixels=64 * 64 - 1)

    _gradient(20, 20).save(tmp_path / "big.png")
    assert image_io.load_image(tmp_path / "big.png", max_pixels=400).size == (20, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's bomb error at 2x this
    with pytest.raises(image_io.ImageTooLargeError, match="big.png"):
        image_io.load_image(tmp_path / "big.png", max_pixels=None)

    with pytest.raises(FileNotFoundError, match="missing.png"):
        image_io.load_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError):
        image_io.load_image(tmp_path)
    assert issubclass(image_io.CorruptImageError, image_io.ImageError) and issubclass(image_io.ImageError, ValueError)


# --- saving -----------------------------------------------------------------------------------


def test_save_atomic_and_no_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "dir" / "x.png"
    assert image_io.save_image(_gradient(), out) == out
    assert out.read_bytes().startswith(b"\x89PNG")
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="x.png"):
        image_io.save_image(Image.new("RGB", (3, 3)), out)
    assert out.read_bytes() == before
    image_io.save_image(Image.new("RGB", (3, 3)), out, overwrite=True)
    assert Image.open(out).size == (3, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self, fp, format=None, **params):  # noqa: ANN001
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        image_io.save_image(_gradient(), tmp_path / "y.png")
    assert list(tmp_path.iterdir()) == []


def test_save_formats_modes_and_exif(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image_io.save_image(rgba, tmp_path / "a.jpg")
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert np.asarray(im).min() >= 250  # transparent -> white
    image_io.save_image(rgba, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGBA"
    i16 = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    image_io.save_image(i16, tmp_path / "i.webp")
    np.testing.assert_array_equal(_arr(image_io.load_image(tmp_path / "i.webp"))[0, :, 0], [0, 255])
    image_io.save_image(Image.new("L", (4, 4), 7), tmp_path / "l.webp")
    # explicit format wins over the extension; unknown extension without format is refused
    image_io.save_image(_gradient(), tmp_path / "data.bin", format="png")
    assert (tmp_path / "data.bin").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="extension"):
        image_io.save_image(_gradient(), tmp_path / "data.xyz")
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    for ext in (".jpg", ".png", ".webp", ".tif"):
        image_io.save_image(_gradient(), tmp_path / f"e{ext}", exif=exif.tobytes())
        with Image.open(tmp_path / f"e{ext}") as im:
            assert im.getexif().get(0x010F) == "TestCam", ext
    image_io.save_image(_gradient(), tmp_path / "e.bmp", exif=exif)  # not storable: ignored
    assert Image.open(tmp_path / "e.bmp").size == (16, 12)
    image_io.save_image(Image.new("CMYK", (4, 4)), tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").mode == "RGB"


# --- finding files ----------------------------------------------------------------------------


def test_find_images(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for rel in ("b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tif", "sub/notes.txt",
                ".hidden.png", ".cache/e.png"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    single = tmp_path / "single.gif"
    single.write_bytes(b"x")

    found = image_io.find_images([root])
    assert [f.relative_to(root).as_posix() for f, _ in found] == [
        "a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tif"]
    assert all(r == root for _, r in found)
    assert [f.name for f, _ in image_io.find_images([root], recursive=False)] == ["a.JPG", "b.png"]
    assert image_io.find_images([single, root / "b.png", single]) == [(single, None), (root / "b.png", None)]

    pattern = str(root / "**" / "*.tif")
    found = image_io.find_images([pattern])
    assert found == [(root / "sub" / "deeper" / "d.tif", root)]
    found = image_io.find_images([str(root / "sub" / "*")])
    assert [(f.name, r) for f, r in found] == [("c.webp", root / "sub"), ("d.tif", root / "sub")]
    with pytest.raises(FileNotFoundError, match="nothing"):
        image_io.find_images([tmp_path / "nothing"])
    with pytest.raises(FileNotFoundError):
        image_io.find_images([str(tmp_path / "*.jpeg")])


def test_tensor_conversions() -> None:
    img = _gradient()
    t = image_io.pil_to_tensor(img)
    assert t.shape == (3, 12, 16) and t.dtype == torch.float32
    assert t.min() >= 0 and t.max() <= 1
    np.testing.assert_array_equal(_arr(image_io.tensor_to_pil(t)), _arr(img))
    np.testing.assert_array_equal(_arr(image_io.tensor_to_pil(t.unsqueeze(0) * 2)), np.minimum(_arr(img) * 2, 255))
    u8 = torch.from_numpy(_arr(img).astype(np.uint8)).permute(2, 0, 1)
    np.testing.assert_array_equal(_arr(image_io.tensor_to_pil(u8)), _arr(img))
    with pytest.raises(ValueError):
        image_io.tensor_to_pil(torch.zeros(2, 4, 4))


@pytest.mark.parametrize("name", ["png", "jpeg", "jpg", "webp"])
def test_encode_image_matches_save_image(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    data = image_io.encode_image(img, name)
    path = image_io.save_image(img, tmp_path / f"x.{name}")
    assert data == path.read_bytes()  # one encoder: the service's bytes equal the CLI's file
    assert Image.open(io.BytesIO(data)).size == (40, 24)
    with pytest.raises(ValueError, match="cannot write format"):
        image_io.encode_image(img, "nosuchformat")
