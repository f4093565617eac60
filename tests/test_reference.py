"""Colorizing from a reference photo (issue #32): the matching module's shapes, errors and golden
values, that a related reference brings the result closer to the colour photo, that one that does
not fit leaves the automatic result unchanged, and the Colorizer's API around it (batches, hints,
bad input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from colorization import Colorizer, color, image_io
from colorization.inference.hints import Hint
from colorization.inference.reference import (
    CELL,
    GrayReferenceError,
    Reference,
    ReferenceConfig,
    check_strength,
    encode_reference,
    load_match_encoder,
    match_reference,
    merge_hint_maps,
    render_points,
)

skimage_data = pytest.importorskip("skimage.data")
SIDE = 96


def photo(name: str, side: int = SIDE) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)


def related(image: Image.Image) -> Image.Image:
    """Another view of ``image``: its left two thirds, mirrored and enlarged 1.25x."""
    w, h = image.size
    return image.crop((0, 0, 2 * w // 3, h)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((5 * w // 6, 5 * h // 4))


def mse(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b.convert("RGB"), np.float64)) ** 2))


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.from_pretrained(device="cpu")  # the shipped model takes hints


@pytest.fixture(scope="module")
def encoder():
    return load_match_encoder("cpu")


# --- the matching module ----------------------------------------------------------------------


def test_config_is_checked() -> None:
    ReferenceConfig()
    for bad in ({"match_size": 16}, {"threshold": 1.5}, {"strength_step": -0.1}, {"coherence": 9},
                {"min_share": 1.5}, {"radius": -1}, {"stage_weights": (0.0, 0.0)}, {"match_size": True}):
        with pytest.raises(ValueError):
            ReferenceConfig(**bad)


def test_encoded_reference_shapes(encoder) -> None:
    rgb = np.asarray(photo("coffee").resize((120, 80)))
    config = ReferenceConfig(match_size=64)
    ref = encode_reference(rgb, encoder, config, name="cup")
    h, w = 64, 96  # short side 64 at the match size
    assert ref.grid == (h // CELL, w // CELL) and ref.size == (120, 80) and ref.name == "cup"
    assert ref.features.shape == (120, ref.grid[0] * ref.grid[1]) and ref.features.dtype == torch.float32
    assert torch.allclose(ref.features.norm(dim=0), torch.ones(ref.grid[0] * ref.grid[1]), atol=1e-5)
    assert ref.ab.shape == (2, ref.grid[0] * ref.grid[1]) and float(ref.ab.abs().max()) > 5  # Lab units
    float01 = np.asarray(rgb, np.float32) / 255  # float input in [0, 1] gives the same descriptors
    assert torch.allclose(encode_reference(float01, encoder, config).features, ref.features, atol=1e-4)


def test_match_shapes_and_self_match(encoder) -> None:
    image = photo("coffee")
    ref = encode_reference(np.asarray(image), encoder, ReferenceConfig())
    L = image_io.pil_to_tensor(image)[None]
    match = match_reference(ref, color.rgb_to_lab(L)[0, 0], encoder)
    gh = ref.grid[0]
    side = ReferenceConfig().match_size
    assert match.ab.shape == (2, gh, gh) and match.weight.shape == (gh, gh) and match.match_hw == (side, side)
    assert match.fits and match.share > 0.5  # a photo matches itself almost everywhere
    on = match.weight > 0
    assert torch.allclose(match.ab[:, on], ref.ab.reshape(2, gh, gh)[:, on])  # ... with its own colours
    xy, ab, weight = match.points((SIDE, SIDE))
    assert xy.shape == (int(on.sum()), 2) and ab.shape == (len(xy), 2) and weight.shape == (len(xy),)
    assert xy.min() >= 0 and xy.max() < SIDE
    assert match.hint_map((SIDE, SIDE)).shape == (3, SIDE, SIDE)


def test_a_gray_reference_is_refused(encoder) -> None:
    gray = np.asarray(photo("coffee").convert("L").convert("RGB"))
    with pytest.raises(GrayReferenceError, match="cup.*gray"):
        encode_reference(gray, encoder, name="cup")
    with pytest.raises(ValueError, match="RGB array"):
        encode_reference(gray[:, :, 0], encoder)


def test_render_points_golden_values() -> None:
    xy = np.array([[0.5, 0.5], [3.2, 2.9], [9.9, 5.0], [3.5, 3.5]], np.float32)
    ab = torch.tensor([[0.1, 0.2], [0.3, -0.4], [0.5, 0.5], [-0.9, 0.9]])
    hmap = render_points(xy, ab, torch.tensor([1.0, 0.5, 2.0, 0.0]), (6, 10), radius=1)
    expected_mask = torch.zeros(6, 10)
    expected_mask[0:2, 0:2] = 1.0  # point 0, clipped at the corner
    expected_mask[1:4, 2:5] = 0.5  # point 1 overwrites where it overlaps point 0; point 3 has weight 0
    expected_mask[4:6, 8:10] = 1.0  # point 2: weight clamped to 1, clipped at the border
    assert torch.equal(hmap[2], expected_mask)
    assert hmap[0, 2, 3] == pytest.approx(0.15) and hmap[1, 2, 3] == pytest.approx(-0.2)  # ab * mask
    assert hmap[0, 0, 0] == pytest.approx(0.1) and hmap[1, 5, 9] == pytest.approx(0.5)
    assert torch.equal(render_points(xy, ab, torch.zeros(4), (6, 10)), torch.zeros(3, 6, 10))


def test_merge_hint_maps_keeps_the_users_points() -> None:
    user, matched = torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)
    user[:, 1, 1] = torch.tensor([0.9, -0.9, 1.0])
    merged = merge_hint_maps(user, matched)
    assert torch.equal(merged[:, 1, 1], user[:, 1, 1]) and torch.equal(merged[:, 0, 0], matched[:, 0, 0])
    assert merge_hint_maps(None, matched) is matched and merge_hint_maps(user, None) is user
    assert merge_hint_maps(None, None) is None


def test_strength_range() -> None:
    assert check_strength(0) == 0.0 and check_strength(2) == 2.0
    for bad in (-0.1, 2.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reference strength"):
            check_strength(bad)


# --- through the Colorizer ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_a_related_reference_brings_the_colours_of_the_photo(colorizer, name) -> None:
    truth = photo(name)
    target = truth.convert("L")
    auto = colorizer(target)
    out = colorizer(target, reference=related(truth))
    assert out.size == truth.size and out.mode == "RGB"
    assert mse(out, truth) < 0.5 * mse(auto, truth)  # > 3 dB closer to the colour photo
    # the lightness stays the input's (Lab L, up to 8-bit rounding)
    L_out = color.rgb_to_lab(image_io.pil_to_tensor(out))[0]
    L_in = color.rgb_to_lab(image_io.pil_to_tensor(target.convert("RGB")))[0]
    assert float((L_out - L_in).abs().mean()) < 0.5


def test_a_reference_that_does_not_fit_leaves_the_automatic_result(colorizer) -> None:
    target = photo("rocket").convert("L")
    auto = np.asarray(colorizer(target))
    unrelated = photo("chelsea")
    prep = colorizer.prepare(target)
    match = colorizer.match_reference(prep, unrelated)
    assert not match.fits and float(match.weight.sum()) == 0.0
    assert np.array_equal(np.asarray(colorizer(target, reference=unrelated)), auto)
    related_ref = related(photo("rocket"))
    assert np.array_equal(np.asarray(colorizer(target, reference=related_ref, reference_strength=0)), auto)


def test_an_encoded_reference_serves_many_photos(colorizer) -> None:
    truth = photo("coffee")
    ref = colorizer.encode_reference(related(truth))
    assert isinstance(ref, Reference) and colorizer.encode_reference(ref) is ref
    targets = [truth.convert("L"), truth.convert("L").resize((80, 64)), photo("rocket").convert("L")]
    batch = colorizer.colorize_batch(targets, batch_size=2, reference=ref)
    for target, got in zip(targets, batch):  # batched network calls: within one level
        single = np.asarray(colorizer(target, reference=ref), np.int16)
        assert np.abs(np.asarray(got, np.int16) - single).max() <= 1
    with pytest.raises(ValueError, match="reference strength"):
        colorizer.colorize_batch(targets, reference=ref, reference_strength=3)


def test_strength_moves_the_threshold(colorizer) -> None:
    truth = photo("coffee")
    ref = colorizer.encode_reference(related(truth))
    prep = colorizer.prepare(truth.convert("L"))
    used = [float(colorizer.match_reference(prep, ref, s).weight.sum()) for s in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert used[0] == 0 and used == sorted(used) and used[1] < used[4]  # more strength, more matches
    assert set(colorizer.match_reference(prep, ref).weight.unique().tolist()) <= {0.0, 1.0}


def test_the_users_hints_win_where_both_give_a_colour(colorizer) -> None:
    truth = photo("coffee")
    target = truth.convert("L")
    ref = colorizer.encode_reference(related(truth))
    hint = Hint(48, 48, "#1040e0")
    prep = colorizer.prepare(target, hints=[hint], reference=ref)
    only_hint = colorizer.prepare(target, hints=[hint])
    rows, cols = torch.nonzero(only_hint.hints[2] > 0, as_tuple=True)
    assert torch.equal(prep.hints[:, rows, cols], only_hint.hints[:, rows, cols])
    assert float((prep.hints[2] > 0).sum()) > float((only_hint.hints[2] > 0).sum())  # matches elsewhere


def test_bad_references_raise_before_the_photo_is_read(colorizer, tmp_path, model_dir) -> None:
    target = photo("coffee").convert("L")
    with pytest.raises(GrayReferenceError, match="gray"):
        colorizer(target, reference=target.convert("RGB"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(image_io.ImageError, match="bad.jpg"):
        colorizer(target, reference=tmp_path / "bad.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        colorizer(target, reference=tmp_path / "missing.jpg")
    small = Colorizer.from_pretrained(device="cpu", max_pixels=5000)
    with pytest.raises(image_io.ImageTooLargeError, match="5,000"):
        small(target.resize((60, 60)), reference=photo("coffee"))  # 9,216 pixels
    plain = Colorizer.from_pretrained(model_dir, device="cpu")
    with pytest.raises(ValueError, match="does not take colour hints"):
        plain(target, reference=photo("coffee"))
    with pytest.raises(TypeError):
        colorizer(target, reference=12)
