"""The fast 8-bit output (issue #23, item 4; #31, item 9): srgb8.lab_to_srgb8 and the CPU path of
fullres.recombine_array, each against the exact torch path (within one 8-bit level)."""

from __future__ import annotations

import itertools
import os

import cv2
import numpy as np
import pytest
import torch

from colorization import color, srgb8
from colorization.inference import fullres
from colorization.inference.fullres import RefineConfig, recombine, recombine_array
from colorization.inference.prepared import PreparedImage

CPU = torch.device("cpu")


def exact8(L: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """round(255 * lab_to_rgb_in_gamut(lab)) as (n, W, 3) uint8: what the output was before."""
    lab = torch.from_numpy(np.stack((L, a, b)).astype(np.float32))
    return color.lab_to_rgb_in_gamut(lab).mul_(255.0).round_().permute(1, 2, 0).to(torch.uint8).numpy()


def levels_apart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(x.astype(np.int16) - y.astype(np.int16))


def random_lab(seed: int, n: int, W: int, chroma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    L = rng.uniform(0.0, 100.0, (n, W))
    a, b = rng.uniform(-chroma, chroma, (2, n, W))
    return tuple(p.astype(np.float32) for p in (L, a, b))  # type: ignore[return-value]


def edge_lab() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lab edges as one (1, N) row: the L ends and the linear segment of f^-1 near black (L < 8),
    the sRGB primaries and secondaries, grays, tiny and extreme ab at every such L."""
    Ls = [0.0, 1e-4, 0.5, 2.0, 7.9, 8.0, 8.1, 20.0, 50.0, 53.24, 87.73, 97.14, 99.5, 99.99, 100.0]
    abs_ = [0.0, 1e-3, -1e-3, 0.5, 5.0, -5.0, 40.0, -40.0, 80.0, 127.0, -128.0]
    rows = [(L, a, b) for L in Ls for a in abs_ for b in abs_]
    rgb = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=torch.float32).T
    prim = color.rgb_to_lab(rgb[:, None, :])[:, 0, :].T.tolist()  # the cube's corners
    arr = np.array(rows + prim, dtype=np.float32).T
    return arr[0][None], arr[1][None], arr[2][None]


@pytest.mark.parametrize(
    "name, lab",
    [
        ("uniform, mostly out of gamut", random_lab(0, 64, 500, 130.0)),
        ("natural chroma", random_lab(1, 64, 500, 30.0)),
        ("edges", edge_lab()),
    ],
)
def test_lab_to_srgb8_within_one_level_of_the_exact_path(name, lab):
    L, a, b = lab
    fast, ref = srgb8.lab_to_srgb8(L, a, b), exact8(L, a, b)
    assert fast.shape == L.shape + (3,) and fast.dtype == np.uint8
    diff = levels_apart(fast, ref)
    assert diff.max() <= 1, name
    assert (diff > 0).mean() < 0.01, name  # off by one only where the maths round differently


@pytest.mark.parametrize(
    "L, a, b_range", [(100.0, -1.1224349, (3.0, 4.5)), (0.0, 1.5, (-8.0, 0.0)), (0.0, 0.5, (-4.0, 0.0))]
)
def test_the_tolerance_edge_is_decided_as_the_exact_path_does(L, a, b_range):
    # at L = 0 and 100 a colour just inside the tolerance is clamped (a tint stays), one just outside
    # is mapped to gray: levels apart, so a float32 difference at the edge must not flip the decision
    b = np.linspace(*b_range, 20001, dtype=np.float32)[None]
    Ls, As = np.full_like(b, L), np.full_like(b, a)
    fast, ref = srgb8.lab_to_srgb8(Ls, As, b), exact8(Ls, As, b)
    assert np.ptp(ref.astype(int), axis=1).max() > 2  # the sweep crosses the discontinuity
    assert levels_apart(fast, ref).max() <= 1


def test_out_of_gamut_colours_are_mapped_not_clipped():
    L, a, b = random_lab(2, 32, 400, 130.0)
    lin = color.lab_to_rgb(torch.from_numpy(np.stack((L, a, b))), clip=False)
    oob = ~((lin >= -1 / 255) & (lin <= 1 + 1 / 255)).all(dim=0).numpy()
    assert oob.mean() > 0.5  # the test set is mostly out of gamut
    clipped = cv2.convertScaleAbs(cv2.cvtColor(cv2.merge((L, a, b)), cv2.COLOR_Lab2RGB), alpha=255.0)
    fast = srgb8.lab_to_srgb8(L, a, b)
    assert levels_apart(fast, exact8(L, a, b))[oob].max() <= 1
    assert (levels_apart(fast, clipped)[oob].max(axis=-1) > 1).mean() > 0.5  # clipping would differ


def test_lab_to_srgb8_writes_into_out_and_takes_views():
    L, a, b = random_lab(3, 40, 60, 60.0)
    big = np.zeros((50, 60, 3), dtype=np.uint8)
    res = srgb8.lab_to_srgb8(L, a, b, out=big[5:45])
    assert np.shares_memory(res, big) and res.shape == (40, 60, 3)
    np.testing.assert_array_equal(big[5:45], srgb8.lab_to_srgb8(L, a, b))
    assert not big[:5].any() and not big[45:].any()
    # strided (non-contiguous) planes give the same result
    ab = np.stack((a, b), axis=-1)  # (40, 60, 2): ab[..., 0] is a strided view
    np.testing.assert_array_equal(srgb8.lab_to_srgb8(L, ab[..., 0], ab[..., 1]), res)


def test_deferred_gamut_mapping_is_the_same():
    L, a, b = random_lab(8, 30, 70, 120.0)
    direct = srgb8.lab_to_srgb8(L, a, b)
    found: list = []
    deferred = srgb8.lab_to_srgb8(L, a, b, defer=found)
    assert len(found) == 1 and len(found[0][0]) > 100  # the out-of-gamut pixels, left as OpenCV clipped them
    assert not np.array_equal(deferred, direct)
    color.gamut_map8(*found[0], deferred.reshape(-1, 3))
    np.testing.assert_array_equal(deferred, direct)
    inside: list = []
    srgb8.lab_to_srgb8(np.full((2, 3), 50, np.float32), np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32),
                       defer=inside)
    assert inside == []  # nothing to map


def test_lab_to_srgb8_empty_and_bad_input():
    z = np.zeros((0, 7), dtype=np.float32)
    assert srgb8.lab_to_srgb8(z, z, z).shape == (0, 7, 3)
    L = np.full((2, 3), 50.0, dtype=np.float32)
    with pytest.raises(TypeError, match="float32"):
        srgb8.lab_to_srgb8(L.astype(np.float64), L, L)
    with pytest.raises(TypeError, match="2-D"):
        srgb8.lab_to_srgb8(L[None], L[None], L[None])
    with pytest.raises(TypeError):
        srgb8.lab_to_srgb8(torch.from_numpy(L), L, L)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one shape"):
        srgb8.lab_to_srgb8(L, L[:, :2], L)
    with pytest.raises(ValueError, match="out must be"):
        srgb8.lab_to_srgb8(L, L, L, out=np.zeros((2, 3, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match="out must be"):
        srgb8.lab_to_srgb8(L, L, L, out=np.zeros((2, 4, 3), dtype=np.uint8))


# --------------------------------------------------------------------------------------------
# fullres: the fast CPU path against the exact one
# --------------------------------------------------------------------------------------------


def make_prep(H: int, W: int, h: int, w: int, seed: int = 0) -> PreparedImage:
    """A prepared image with a lightness of smooth ramps, a hard edge, black and white."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    L = 100.0 * (0.5 + 0.45 * torch.sin(6 * xx + 3 * yy)) + 3.0 * torch.rand(H, W, generator=g)
    L[:, : W // 5] = 0.0
    L[: H // 6] = 100.0
    L = L.clamp(0.0, 100.0)
    l_work = torch.nn.functional.interpolate(L[None, None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return PreparedImage(l_full=L, l_work=color.normalize_l(l_work), work_hw=(h, w), hints=None, alpha=None, bits=8)


@pytest.mark.parametrize("refine", [None, RefineConfig()])
@pytest.mark.parametrize("saturation", [1.0, 3.0])
def test_fast_recombine_equals_the_old_result_within_one_level(monkeypatch, refine, saturation):
    monkeypatch.setattr(fullres, "STRIP_PIXELS", 997)  # many strips, and a last partial one
    H, W, h, w = 71, 53, 13, 10
    prep = make_prep(H, W, h, w)
    ab = (torch.rand(2, h, w, generator=torch.Generator().manual_seed(1)) - 0.5) * 1.2
    fast = recombine_array(prep, ab, saturation, refine, CPU)
    old = recombine_array(prep, ab, saturation, refine, CPU, exact=True)
    assert fast.shape == (H, W, 3) and fast.dtype == np.uint8
    diff = levels_apart(fast, old)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.02
    pil = recombine(prep, ab, saturation, refine, CPU)
    assert pil.mode == "RGB" and pil.size == (W, H)
    np.testing.assert_array_equal(np.asarray(pil), fast)


def test_sixteen_bits_keep_the_exact_path():
    prep = make_prep(20, 30, 5, 6)
    ab = torch.full((2, 5, 6), 0.2)
    deep = recombine_array(prep, ab, 1.0, None, CPU, bits=16)
    assert deep.dtype == np.uint16
    np.testing.assert_array_equal(deep, recombine_array(prep, ab, 1.0, None, CPU, bits=16, exact=True))


@pytest.mark.parametrize("shape", [((2, 5, 7), (23, 31)), ((4, 1, 1), (9, 4)), ((2, 6, 4), (6, 4))])
def test_rows_numpy_equals_rows(shape):
    (C, h, w), (H, W) = shape
    src = torch.randn(C, h, w, generator=torch.Generator().manual_seed(2))
    up = fullres._RowUpsampler(src, (H, W))
    for start, stop in ((0, H), (0, 1), (H // 2, H), (1, max(2, H - 1))):
        np.testing.assert_allclose(up.rows_numpy(start, stop), up.rows(start, stop).numpy(), atol=1e-5)


def test_gray_to_l_is_the_table_and_checks_its_input():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    L = fullres.gray_to_l(gray)
    assert L.dtype == torch.float32 and L.shape == (16, 16)
    rgb = torch.from_numpy(np.repeat(gray[None], 3, axis=0).astype(np.float32) / 255.0)
    torch.testing.assert_close(L, color.rgb_to_lab(rgb)[0], atol=1e-4, rtol=0)
    assert fullres.gray_to_l(np.zeros((0, 5), dtype=np.uint8)).shape == (0, 5)
    with pytest.raises(ValueError, match="2-D uint8"):
        fullres.gray_to_l(gray.astype(np.float32))
    with pytest.raises(ValueError, match="2-D uint8"):
        fullres.gray_to_l(gray[..., None])


def test_full_res_l_takes_the_table_only_for_neutral_images(monkeypatch):
    monkeypatch.setattr(fullres, "STRIP_PIXELS", 64)  # the neutral check runs strip by strip
    rgb = np.repeat(np.arange(240, dtype=np.uint8).reshape(12, 20, 1), 3, axis=2)
    np.testing.assert_array_equal(fullres.full_res_l(rgb).numpy(), fullres.gray_to_l(rgb[:, :, 0]).numpy())
    tinted = rgb.copy()
    tinted[11, 19, 2] += 9  # one pixel in the last strip is not neutral
    ref = color.rgb_to_lab(torch.from_numpy(tinted).permute(2, 0, 1).float() / 255.0)[0]
    torch.testing.assert_close(fullres.full_res_l(tinted), ref, atol=1e-4, rtol=0)


def test_pil_gray_levels_finds_neutral_rgb_images():
    from PIL import Image

    gray = np.random.default_rng(4).integers(0, 256, (30, 41), dtype=np.uint8)
    np.testing.assert_array_equal(fullres.pil_gray_levels(Image.fromarray(gray)), gray)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(fullres.pil_gray_levels(Image.fromarray(rgb)), gray)
    for c in (1, 2):  # one pixel off in G or B
        tinted = rgb.copy()
        tinted[29, 40, c] ^= 1
        assert fullres.pil_gray_levels(Image.fromarray(tinted)) is None
    assert fullres.pil_gray_levels(Image.fromarray(np.dstack((rgb, gray)))) is None  # RGBA: not handled here


def test_prepare_gives_the_same_l_for_a_neutral_rgb_image_and_its_gray():
    from PIL import Image

    from colorization.inference.inputs import prepare_image

    gray = np.random.default_rng(5).integers(0, 256, (37, 52), dtype=np.uint8)
    a = prepare_image(Image.fromarray(gray), size=16)
    b = prepare_image(Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)), size=16)
    c = prepare_image(np.repeat(gray[:, :, None], 3, axis=2), size=16)  # arrays take the general path
    for p in (b, c):
        torch.testing.assert_close(p.l_full, a.l_full, atol=1e-4, rtol=0)
        torch.testing.assert_close(p.l_work, a.l_work, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------
# issue #31, item 9: a gray file needs no R == G == B check; strips fused and shared by threads
# --------------------------------------------------------------------------------------------


def test_known_gray_trusts_only_what_cannot_be_coloured(tmp_path):
    from PIL import Image

    from colorization import image_io
    from colorization.inference.inputs import known_gray, prepare_image

    rng = np.random.default_rng(6)
    gray = rng.integers(0, 256, (23, 31), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(np.dstack((gray, gray, 255 - gray))).save(tmp_path / "c.png")
    trns = Image.fromarray(gray)
    trns.info["transparency"] = int(gray[0, 0])
    trns.save(tmp_path / "t.png", transparency=int(gray[0, 0]))  # one gray level transparent
    la = Image.fromarray(np.dstack((gray, 255 - gray)), mode="LA")
    la.save(tmp_path / "la.png")

    g = known_gray(image_io.open_image(tmp_path / "g.png"), None)
    assert g.image.mode == "L" and np.array_equal(np.asarray(g.image), gray)
    assert known_gray(image_io.open_image(tmp_path / "c.png"), None).image.mode == "RGB"  # colour file
    red = (255, 0, 0)  # transparency composited on red is not gray; on white it is
    assert known_gray(image_io.open_image(tmp_path / "t.png", background=red), red).image.mode == "RGB"
    assert known_gray(image_io.open_image(tmp_path / "t.png"), None).image.mode == "L"
    kept = known_gray(image_io.open_image(tmp_path / "la.png", keep_alpha=True), red)  # straight gray + alpha
    assert kept.image.mode == "L" and np.array_equal(kept.alpha, 255 - gray)

    # the same network input and alpha as the general path, for paths, LoadedImages and PIL images
    ref = prepare_image(np.repeat(gray[:, :, None], 3, axis=2), size=16)
    for image in (tmp_path / "g.png", str(tmp_path / "g.png"), (tmp_path / "g.png").read_bytes(), g,
                  image_io.open_image(tmp_path / "g.png")):
        p = prepare_image(image, size=16)
        assert p.alpha is None
        torch.testing.assert_close(p.l_full, ref.l_full, atol=1e-4, rtol=0)
        torch.testing.assert_close(p.l_work, ref.l_work, atol=1e-4, rtol=0)
    assert np.array_equal(prepare_image(kept, size=16).alpha, 255 - gray)
    assert np.array_equal(prepare_image(tmp_path / "la.png", size=16).alpha, 255 - gray)  # background None keeps it
    with pytest.raises(image_io.ImageTooLargeError):
        prepare_image(g, size=16, max_pixels=100)


@pytest.mark.parametrize("refine", [None, RefineConfig()])
def test_fused_strips_give_one_result_with_any_number_of_threads(monkeypatch, refine):
    monkeypatch.setattr(fullres, "STRIP_PIXELS", 400)  # many strips, the last one partial
    prep = make_prep(61, 47, 11, 9, seed=3)
    ab = (torch.rand(2, 11, 9, generator=torch.Generator().manual_seed(4)) - 0.5) * 1.5
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        assert fullres._workers(10) == 1
        one = recombine_array(prep, ab, 1.2, refine, CPU)
        cv2.setNumThreads(3)
        assert fullres._workers(10) == min(3, os.cpu_count() or 1) and fullres._workers(1) == 1
        many = recombine_array(prep, ab, 1.2, refine, CPU)
    finally:
        cv2.setNumThreads(threads)
    np.testing.assert_array_equal(one, many)
    assert levels_apart(one, recombine_array(prep, ab, 1.2, refine, CPU, exact=True)).max() <= 1
    monkeypatch.setattr(fullres, "_GAMUT_BATCH", 1)  # out-of-gamut pixels mapped per strip, not collected
    np.testing.assert_array_equal(recombine_array(prep, ab, 1.2, refine, CPU), one)

    def broken(*args, **kwargs):
        raise RuntimeError("strip failed")

    monkeypatch.setattr(srgb8, "lab_to_srgb8", broken)
    with pytest.raises(RuntimeError, match="strip failed"):
        recombine_array(prep, ab, 1.0, refine, CPU)
