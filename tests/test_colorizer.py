"""Tests of the inference pipeline (colorization.inference.colorizer) on a tiny untrained model."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.color import rgb2lab

from colorization import Colorizer, color, image_io
from colorization.inference.backends import Backend, TorchBackend
from colorization.inference.checkpoint import save_exported
from colorization.inference.fullres import RefineConfig, bilinear_upsample, guided_filter_coefficients
from colorization.inference.inputs import prepare_image, working_shape
from colorization.inference.prepared import PreparedImage
from colorization.models import create_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = create_model("baseline", width=8, depth=2)  # stride 4
    return save_exported(net, tmp_path_factory.mktemp("tiny"), head="regression", extra={"working_size": 32})


@pytest.fixture(scope="module")
def colorizer(model_dir):
    return Colorizer.from_pretrained(model_dir, device="cpu", size=32)


def gradient_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (H, W, 3) uint8 with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 0.5 + 0.5 * np.sin(x / max(w, 1) * 6.0)
    g = y / max(h - 1, 1)
    b = 0.5 + 0.4 * np.cos((x + y) / 9.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 0.03, (h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def lab_of(img: Image.Image | np.ndarray) -> np.ndarray:
    """Lab (H, W, 3) of an 8-bit RGB image, computed by scikit-image (independent of color.py)."""
    return rgb2lab(np.asarray(img, dtype=np.float64) / 255.0)


# --------------------------------------------------------------------------------------------
# inputs of every kind: output is RGB with the input's size
# --------------------------------------------------------------------------------------------


def _inputs(h: int, w: int) -> dict[str, object]:
    rgb = gradient_rgb(h, w)
    gray8 = (rgb.mean(-1)).astype(np.uint8)
    return {
        "PIL L": Image.fromarray(gray8, "L"),
        "PIL RGB": Image.fromarray(rgb, "RGB"),
        "PIL RGBA": Image.fromarray(np.dstack([rgb, np.full((h, w), 200, np.uint8)]), "RGBA"),
        "PIL I;16": Image.fromarray(gray8.astype(np.uint16) * 257),
        "PIL LA": Image.fromarray(gray8, "L").convert("LA"),
        "np uint8 HxW": gray8,
        "np uint8 HxWx1": gray8[:, :, None],
        "np uint8 HxWx3": rgb,
        "np uint8 HxWx4": np.dstack([rgb, np.full((h, w), 255, np.uint8)]),
        "np uint16 HxW": gray8.astype(np.uint16) * 257,
        "np float32 HxWx3": rgb.astype(np.float32) / 255.0,
        "np float64 HxW": gray8.astype(np.float64) / 255.0,
    }


_WITH_ALPHA = {"PIL RGBA", "PIL LA", "np uint8 HxWx4"}


def test_output_is_rgb_of_input_size(colorizer):
    """RGB of the input's size; inputs with an alpha channel keep it (RGBA) unless a background is given."""
    for name, image in _inputs(37, 61).items():
        out = colorizer(image)
        assert isinstance(out, Image.Image), name
        assert out.mode == ("RGBA" if name in _WITH_ALPHA else "RGB"), name
        assert out.size == (61, 37), name
        flat = colorizer(image, background="white")
        assert flat.mode == "RGB" and flat.size == (61, 37), name
        if name in _WITH_ALPHA:
            expected = np.asarray(image)[..., -1] if isinstance(image, np.ndarray) else image.getchannel("A")
            expected = np.asarray(expected)
            assert np.array_equal(np.asarray(out.getchannel("A")), expected), name


@pytest.mark.parametrize("hw", [(61, 37), (5, 9), (1, 1), (3, 200)])
def test_odd_sizes(colorizer, hw):
    h, w = hw
    for image in (gradient_rgb(h, w), Image.fromarray(gradient_rgb(h, w)).convert("L")):
        out = colorizer(image)
        assert out.mode == "RGB" and out.size == (w, h)


def test_path_and_bytes_inputs(colorizer, tmp_path):
    img = Image.fromarray(gradient_rgb(37, 61)).convert("L")
    path = tmp_path / "g.png"
    img.save(path)
    by_path = colorizer(path)
    by_str = colorizer(str(path))
    by_bytes = colorizer(path.read_bytes())
    by_pil = colorizer(img)
    for other in (by_str, by_bytes, by_pil):
        assert np.array_equal(np.asarray(by_path), np.asarray(other))


def test_16bit_array_precision_is_kept(colorizer):
    """A 16-bit ramp keeps sub-8-bit lightness steps in the network input."""
    ramp = np.tile(np.linspace(1000, 1255, 61).astype(np.uint16), (37, 1))  # < 1 8-bit level apart
    prep = colorizer.prepare(ramp)
    expected = torch.from_numpy(
        rgb2lab(np.repeat((ramp / 65535.0)[:, :, None], 3, axis=2))[..., 0].astype(np.float32)
    )
    assert torch.allclose(prep.l_full, expected, atol=1e-3)
    assert len(torch.unique(prep.l_full[0])) == 61


def test_full_resolution_lightness_matches_scikit_image(colorizer):
    """Every input path (8-bit gray table, RGB conversion) gives the L of scikit-image."""
    rgb = gradient_rgb(23, 31, seed=9)
    gray = rgb[:, :, 1]
    expected_gray = rgb2lab(np.repeat(gray[:, :, None], 3, 2) / 255.0)[..., 0]
    for image in (Image.fromarray(gray, "L"), np.repeat(gray[:, :, None], 3, 2), gray.astype(np.float32) / 255):
        assert np.abs(colorizer.prepare(image).l_full.numpy() - expected_gray).max() < 1e-3
    assert np.abs(colorizer.prepare(rgb).l_full.numpy() - lab_of(rgb)[..., 0]).max() < 1e-3


# --------------------------------------------------------------------------------------------
# lightness preserved at full resolution, colour replaced
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(37, 61), (80, 50)])
def test_output_lightness_equals_input_lightness(colorizer, hw):
    rgb = gradient_rgb(*hw, seed=3)
    out = colorizer(Image.fromarray(rgb))
    dl = np.abs(lab_of(out)[..., 0] - lab_of(rgb)[..., 0])
    # 8-bit quantisation of the output costs at most ~0.5 L; out-of-gamut colours are mapped at
    # constant L, not clipped per channel
    assert dl.max() < 1.0, dl.max()
    # the output is coloured, not gray
    assert np.hypot(lab_of(out)[..., 1], lab_of(out)[..., 2]).mean() > 1.0


def test_full_resolution_detail_is_kept(colorizer):
    """A one-pixel checkerboard at 256x256 (working size 32) survives in the output's L."""
    checker = ((np.indices((256, 256)).sum(0) % 2) * 140 + 60).astype(np.uint8)
    out = colorizer(checker)
    L_out = lab_of(out)[..., 0]
    L_in = lab_of(np.repeat(checker[:, :, None], 3, 2))[..., 0]
    assert np.abs(L_out - L_in).max() < 1.0


def test_colour_input_is_treated_as_its_lightness(colorizer):
    rgb = gradient_rgb(37, 61, seed=5)
    t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    gray = color.rgb_to_gray(t).permute(1, 2, 0).numpy()  # same L, a = b = 0, float
    a = np.asarray(colorizer(rgb)).astype(int)
    b = np.asarray(colorizer(np.clip(gray, 0, 1))).astype(int)
    assert np.abs(a - b).max() <= 1


# --------------------------------------------------------------------------------------------
# saturation and recombination with known ab
# --------------------------------------------------------------------------------------------


def test_saturation_zero_gives_gray(colorizer):
    out = np.asarray(colorizer(gradient_rgb(37, 61), saturation=0.0)).astype(int)
    assert (out.max(-1) - out.min(-1)).max() <= 1
    assert np.hypot(*np.moveaxis(lab_of(out)[..., 1:], -1, 0)).max() < 1.0


def _prepared_ramp(h: int = 20, w: int = 30) -> PreparedImage:
    L = torch.linspace(30.0, 80.0, w).repeat(h, 1)
    return PreparedImage(l_full=L, l_work=color.normalize_l(L)[None], work_hw=(h, w))


@pytest.mark.parametrize("saturation", [0.5, 1.0, 1.5])
def test_finish_recombines_known_ab_with_saturation(colorizer, saturation):
    prep = _prepared_ramp()
    ab = torch.tensor([12.0, -18.0]).view(2, 1, 1).expand(2, 20, 30)  # in gamut for L 30..80
    out = colorizer.finish(prep, color.normalize_ab(ab), saturation=saturation)
    lab = lab_of(out)
    assert np.abs(lab[..., 0] - prep.l_full.numpy()).max() < 0.6
    assert np.abs(lab[..., 1] - 12.0 * saturation).max() < 1.5
    assert np.abs(lab[..., 2] + 18.0 * saturation).max() < 1.5


def test_out_of_gamut_colour_keeps_lightness_and_hue(colorizer):
    prep = _prepared_ramp()
    ab = torch.tensor([100.0, 100.0]).view(2, 1, 1).expand(2, 20, 30)  # far outside sRGB
    lab = lab_of(colorizer.finish(prep, color.normalize_ab(ab)))
    assert np.abs(lab[..., 0] - prep.l_full.numpy()).max() < 1.0
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    assert np.abs(hue - 45.0).max() < 4.0
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    assert chroma.min() > 10.0 and chroma.max() < 100.0 * math.sqrt(2)


def test_bad_arguments(colorizer):
    img = gradient_rgb(16, 16)
    with pytest.raises(ValueError, match="saturation"):
        colorizer(img, saturation=-1.0)
    with pytest.raises(ValueError, match="saturation"):
        colorizer(img, saturation=2.5)  # one rule for API, CLI and service: [0, 2]
    with pytest.raises(TypeError, match="cannot colorize"):
        colorizer(12345)
    with pytest.raises(image_io.ImageError, match="float images must be in"):
        colorizer(np.full((8, 8), 3.0, np.float32))
    with pytest.raises(image_io.ImageError, match="shape"):
        colorizer(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(image_io.EmptyImageError):
        colorizer(np.zeros((0, 8), np.uint8))
    with pytest.raises(image_io.NotAnImageError):
        colorizer(b"definitely not an image")
    with pytest.raises(ValueError, match="working resolution"):
        colorizer(img, size=100_000)


# --------------------------------------------------------------------------------------------
# pixel limit
# --------------------------------------------------------------------------------------------


def test_image_over_pixel_limit_raises(model_dir, tmp_path):
    c = Colorizer.from_pretrained(model_dir, device="cpu", size=32, max_pixels=40 * 40)
    big = gradient_rgb(41, 40)
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path)
    for image in (big, Image.fromarray(big), path):
        with pytest.raises(image_io.ImageTooLargeError, match="1,640"):
            c(image)
    assert c(gradient_rgb(40, 40)).size == (40, 40)


# --------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------


class Spy:
    """A backend wrapper that records the shape of every network input, then delegates."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[int, ...]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x):
        self.calls.append(tuple(x.shape))
        return self.inner(x)


def test_batch_equals_single(colorizer):
    images = [
        gradient_rgb(37, 61, 1),
        Image.fromarray(gradient_rgb(36, 62, 2)),  # same padded working shape as the first
        gradient_rgb(50, 50, 3),
        gradient_rgb(37, 61, 4),
        Image.fromarray(gradient_rgb(9, 70, 5)).convert("L"),
    ]
    single = [np.asarray(colorizer(im)).astype(int) for im in images]
    spy = Spy(colorizer.backend)
    batched = Colorizer(spy, size=32).colorize_batch(images, batch_size=8)
    calls = spy.calls
    assert len(batched) == len(images)
    for s, b in zip(single, batched):
        assert b.size == (s.shape[1], s.shape[0])
        assert np.abs(s - np.asarray(b).astype(int)).max() <= 1
    # three working shapes -> three network calls, the 37x61 group batched
    assert len(calls) == 3
    assert sorted(c[0] for c in calls) == [1, 1, 3]


def test_batch_size_limits_network_batch(colorizer):
    spy = Spy(colorizer.backend)
    out = Colorizer(spy, size=32).colorize_batch([gradient_rgb(20, 20, i) for i in range(5)], batch_size=2)
    assert len(out) == 5 and [shape[0] for shape in spy.calls] == [2, 2, 1]


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------


def test_working_shape():
    assert working_shape(37, 61, 32) == (32, 53)
    assert working_shape(3000, 4000, 256) == (256, 341)
    assert working_shape(10, 10, 256) == (256, 256)  # small images are upscaled
    assert working_shape(100, 2000, 64) == (13, 256)  # long side capped at 4 x size


def test_prepare_pads_to_stride_with_reflection():
    img = gradient_rgb(37, 61)
    prep = prepare_image(img, size=30, stride=8)
    h, w = prep.work_hw
    assert (h, w) == (30, 49)
    assert prep.l_work.shape == (1, 32, 56)
    # reflect padding: row h+k mirrors row h-2-k
    assert torch.equal(prep.l_work[:, h, :w], prep.l_work[:, h - 2, :w])
    assert torch.equal(prep.l_work[:, :h, w + 1], prep.l_work[:, :h, w - 3])
    assert prep.l_full.shape == (37, 61)


def test_bilinear_upsample_matches_interpolate():
    src = torch.randn(3, 7, 11)
    for hw in [(40, 61), (7, 11), (100, 13)]:
        ref = F.interpolate(src[None], size=hw, mode="bilinear", align_corners=False)[0]
        assert torch.allclose(bilinear_upsample(src, hw), ref, atol=1e-5)


def test_guided_filter_reproduces_a_linear_function_of_the_guide():
    guide = torch.rand(1, 24, 24) * 2 - 1
    src = torch.cat([0.7 * guide + 0.1, -0.3 * guide + 0.2])
    a, b = guided_filter_coefficients(guide, src, radius=2, eps=1e-8)
    assert torch.allclose(a * guide + b, src, atol=1e-3)
    # constant guide: the filter is a box mean (a = 0)
    a, b = guided_filter_coefficients(torch.zeros(1, 9, 9), src[:, :9, :9], radius=1, eps=1e-2)
    assert torch.allclose(a, torch.zeros_like(a), atol=1e-6)


def test_refine_option_keeps_lightness(colorizer):
    rgb = gradient_rgb(37, 61, seed=7)
    out = colorizer(rgb, refine=True)
    assert out.size == (61, 37)
    assert np.abs(lab_of(out)[..., 0] - lab_of(rgb)[..., 0]).max() < 1.0
    with pytest.raises(ValueError):
        RefineConfig(radius=0)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def test_from_pretrained_errors(tmp_path, model_dir):
    with pytest.raises(FileNotFoundError):
        Colorizer.from_pretrained(tmp_path / "missing", device="cpu")
    with pytest.raises(ValueError, match="backend"):
        Colorizer.from_pretrained(model_dir, backend="tensorrt")
    c = Colorizer.from_pretrained(model_dir, device="cpu")
    assert c.size == 32  # the model's working_size
    assert c.model_name == "baseline" and c.device == torch.device("cpu")
    assert isinstance(c.backend, TorchBackend) and isinstance(c.backend, Backend)


def test_default_model_is_shipped_in_the_package():
    c = Colorizer.from_pretrained(device="cpu", size=32)
    out = c(gradient_rgb(24, 40))
    assert out.size == (40, 24)


@pytest.mark.slow
def test_large_photo_on_cpu():
    """A 4000x3000 photo with the default model (see benchmarks/colorize_large.py for figures)."""
    import resource

    c = Colorizer.from_pretrained(device="cpu")
    rgb = np.asarray(Image.fromarray(gradient_rgb(300, 400)).resize((4000, 3000), Image.BICUBIC))
    start = time.perf_counter()
    out = c(rgb)
    elapsed = time.perf_counter() - start
    assert out.size == (4000, 3000)
    assert elapsed < 120
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert peak_gib < 4.0


# --------------------------------------------------------------------------------------------
# precision / channels_last / compile options of the torch backend (CPU only here)
# --------------------------------------------------------------------------------------------


def test_bf16_autocast_on_cpu_is_close_to_fp32(model_dir):
    fp32 = Colorizer.from_pretrained(model_dir, device="cpu", size=32, precision="fp32")
    bf16 = Colorizer.from_pretrained(model_dir, device="cpu", size=32, precision="bf16")
    assert fp32.backend.precision == "fp32" and bf16.backend.precision == "bf16"
    # the network ran in bf16 (outputs differ) but comes back as float32
    prep = fp32.prepare(gradient_rgb(40, 56, seed=3))
    batch = prep.l_work[None]
    ab32, ab16 = fp32.backend(batch), bf16.backend(batch)
    assert ab16.dtype == torch.float32 and ab16.shape == ab32.shape
    assert not torch.equal(ab16, ab32)
    assert (ab16 - ab32).abs().max().item() < 0.05
    image = Image.fromarray(gradient_rgb(40, 56, seed=3))
    out32, out16 = fp32(image), bf16(image)
    assert out16.size == out32.size == image.size and out16.mode == out32.mode == "RGB"
    diff = np.abs(np.asarray(out16, dtype=np.int16) - np.asarray(out32, dtype=np.int16))
    assert diff.mean() < 3.0


def test_auto_precision_is_fp32_on_cpu(model_dir):
    colorizer = Colorizer.from_pretrained(model_dir, device="cpu", size=32)
    assert colorizer.backend.precision == "fp32"
    assert colorizer.backend.channels_last is False and colorizer.backend.compiled is False


def test_invalid_precision_names_the_option(model_dir):
    with pytest.raises(ValueError, match="precision"):
        Colorizer.from_pretrained(model_dir, device="cpu", precision="fp64")
    with pytest.raises(ValueError, match="precision"):
        TorchBackend(torch.nn.Conv2d(1, 2, 1), "cpu", precision="half")
    with pytest.raises(ValueError, match="precision='bf16'.*torch backend only"):
        Colorizer.from_pretrained(model_dir, backend="onnx", precision="bf16")


def test_channels_last_on_cpu_matches_contiguous(model_dir):
    from colorization.inference.checkpoint import load_exported

    plain = TorchBackend(load_exported(model_dir), "cpu", precision="fp32", channels_last=False)
    nhwc = TorchBackend(load_exported(model_dir), "cpu", precision="fp32", channels_last=True)
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = plain(x), nhwc(x)
    assert b.shape == a.shape == (2, 2, 32, 48) and b.is_contiguous()
    assert (a - b).abs().max().item() < 1e-5


def test_compile_fails_clearly_without_torch_compile(monkeypatch, model_dir):
    from colorization.inference.checkpoint import load_exported

    net = load_exported(model_dir)
    monkeypatch.delattr(torch, "compile")
    with pytest.raises(RuntimeError, match=r"compile=True.*torch\.compile"):
        TorchBackend(net, "cpu", compile=True)


def test_compile_error_is_reraised_with_the_option(monkeypatch, model_dir):
    from colorization.inference.checkpoint import load_exported

    def broken(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(RuntimeError, match=r"compile=True.*Dynamo is not supported"):
        TorchBackend(load_exported(model_dir), "cpu", compile=True)


def test_torch_backend_takes_a_raw_registry_network(model_dir):
    from colorization.inference.checkpoint import load_exported
    from colorization.models import create_model

    net = load_exported(model_dir).network  # the bare network, not the ColorModel wrapper
    backend = TorchBackend(net, "cpu", precision="fp32")
    assert backend.config["width"] == 8 and backend.config["depth"] == 2
    assert backend.working_size is None and backend.stride == net.stride
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(backend(x), net.eval()(x).float())
    assert TorchBackend(create_model("baseline", width=8, depth=2), "cpu").config["width"] == 8


def test_windows_bounds_count_and_pixels() -> None:
    from colorization.inference.inputs import PENDING_PIXELS, windows

    assert [len(w) for w in windows(range(10), 2, lambda _: 1)] == [8, 2]  # 4 * batch_size per window
    assert list(windows([], 2, lambda _: 1)) == []
    big = PENDING_PIXELS // 2
    assert [len(w) for w in windows(range(5), 8, lambda _: big)] == [2, 2, 1]  # pixel bound first
    assert [x for w in windows(range(7), 1, lambda _: 1) for x in w] == list(range(7))  # order kept
