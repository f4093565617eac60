"""Colour hints through the Colorizer (torch and ONNX backends): validation, batching, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from colorization import Colorizer
from colorization.inference.hints import MAX_HINTS, Hint, coerce_hints


def gray_photo(w=96, h=64, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(40, 220, size=(h, w), dtype=np.uint8), "L")


def diff(a, b):
    return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))


def test_coerce_hints_forms():
    hints = coerce_hints([Hint(1, 2, "#ff0000"), {"x": 3, "y": 4, "color": [0, 0, 255]}, "5,6,#00ff00"])
    assert [h.rgb for h in hints] == [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    assert coerce_hints(None) == [] and coerce_hints([]) == []


@pytest.mark.parametrize(
    "bad, match",
    [
        ("1,2,#ff0000", "must be a list"),
        ({"x": 1, "y": 2, "color": "#ff0000"}, "must be a list"),
        ([{"x": 1, "y": 2}], "hint 0: .*missing \\['color'\\]"),
        ([{"x": 1, "y": 2, "color": "#ff0000", "size": 3}], "unknown \\['size'\\]"),
        ([{"x": -1, "y": 2, "color": "#ff0000"}], "hint 0: hint x must be a number >= 0"),
        (["1,2,#ff0000", "1,2,red"], "hint 1: .*#rrggbb"),
        ([{"x": 1, "y": 2, "color": [256, 0, 0]}], "three integers"),
        ([3], "hint 0: expected a Hint"),
        (["1,1,#000000"] * (MAX_HINTS + 1), f"at most {MAX_HINTS}"),
    ],
)
def test_coerce_hints_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        coerce_hints(bad)


def test_hints_shape_and_local_effect(hint_model_dir):
    colorizer = Colorizer.from_pretrained(hint_model_dir, device="cpu")
    assert colorizer.accepts_hints
    photo = gray_photo()
    auto = colorizer(photo)
    assert colorizer(photo, hints=[]).tobytes() == auto.tobytes()  # empty list: automatic
    hinted = colorizer(photo, hints=[Hint(20, 30, "#d02020")])
    assert hinted.size == photo.size and hinted.mode == "RGB"
    assert diff(hinted, auto).max() > 0
    # lightness is still the input's (the hint changes ab only)
    lum = np.asarray(hinted.convert("L"), dtype=np.int16)
    assert np.abs(lum - np.asarray(photo, dtype=np.int16)).mean() < 6


def test_hint_outside_the_image_and_models_without_hints(hint_model_dir, model_dir):
    colorizer = Colorizer.from_pretrained(hint_model_dir, device="cpu")
    with pytest.raises(ValueError, match="outside the 96x64 image"):
        colorizer(gray_photo(), hints=[Hint(96, 10, "#ffffff")])
    plain = Colorizer.from_pretrained(model_dir, device="cpu")
    assert not plain.accepts_hints
    with pytest.raises(ValueError, match="does not take colour hints"):
        plain(gray_photo(), hints=["1,1,#ff0000"])


def test_batch_with_mixed_hints_matches_single_calls(hint_model_dir):
    colorizer = Colorizer.from_pretrained(hint_model_dir, device="cpu")
    photos = [gray_photo(seed=i) for i in range(3)]
    hints = [None, ["10,10,#00ff00"], [Hint(50, 40, (0, 0, 255))]]
    batch = colorizer.colorize_batch(photos, batch_size=3, hints=hints)
    for photo, h, out in zip(photos, hints, batch):
        assert diff(out, colorizer(photo, hints=h)).max() <= 1
    with pytest.raises(ValueError, match="one entry per image"):
        colorizer.colorize_batch(photos, hints=hints[:2])
    with pytest.raises(ValueError, match="ran out"):
        list(colorizer.colorize_iter(photos, hints=iter(hints[:2])))


def test_hint_coordinates_follow_the_input_resolution(hint_model_dir):
    """The same relative point on a 2x larger copy gives the same hint map at the working size."""
    colorizer = Colorizer.from_pretrained(hint_model_dir, device="cpu")
    small = gray_photo()
    big = small.resize((192, 128), Image.BILINEAR)
    a = colorizer.prepare(small, hints=[Hint(20, 30, "#d02020")]).hints
    b = colorizer.prepare(big, hints=[Hint(40, 60, "#d02020")]).hints
    assert a is not None and a.shape == b.shape
    torch.testing.assert_close(a[2], b[2])


def test_onnx_export_carries_the_hint_input(hint_model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from colorization.inference.checkpoint import load_exported
    from colorization.inference.onnx_export import HINTS_NAME, OnnxBackend, export_onnx, onnx_parity

    model = load_exported(hint_model_dir)
    path = export_onnx(model, tmp_path / "m.onnx", hints=True)
    backend = OnnxBackend(path)
    assert backend.accepts_hints
    assert [i.name for i in backend.session.get_inputs()][1] == HINTS_NAME
    assert onnx_parity(model, path) < 1e-4
    photo = gray_photo()
    hints = [Hint(20, 30, "#d02020")]
    torch_out = Colorizer.from_pretrained(hint_model_dir, device="cpu")(photo, hints=hints)
    onnx_out = Colorizer.from_pretrained(path, backend="onnx")(photo, hints=hints)
    assert diff(torch_out, onnx_out).max() <= 2
