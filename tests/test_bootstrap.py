"""Bootstrap intervals over photos (colorization.evaluation.bootstrap) and FID from Gram matrices."""

from __future__ import annotations

import numpy as np
import pytest

from colorization.evaluation import bootstrap as B
from colorization.evaluation import metrics as M


def features(n: int, d: int = 16, seed: int = 0, shift: float = 0.0, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) + shift + noise * rng.standard_normal((n, d))


def test_indices_shape_range_and_seed():
    idx = B.bootstrap_indices(7, 5, seed=3)
    assert idx.shape == (5, 7) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < 7
    np.testing.assert_array_equal(idx, B.bootstrap_indices(7, 5, seed=3))
    assert not np.array_equal(idx, B.bootstrap_indices(7, 5, seed=4))


@pytest.mark.parametrize("n, n_boot", [(0, 5), (5, 0), (-1, 5), (2.5, 5), (True, 5)])
def test_indices_reject_bad_sizes(n, n_boot):
    with pytest.raises(ValueError):
        B.bootstrap_indices(n, n_boot)


def test_percentile_interval():
    assert B.percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    for bad in (np.array([]), np.array([1.0, np.nan]), np.ones((2, 2))):
        with pytest.raises(ValueError):
            B.percentile_interval(bad)
    for level in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError):
            B.percentile_interval(np.arange(5.0), level)


def test_mean_interval_contains_point_and_shrinks_with_more_photos():
    x = np.random.default_rng(0).standard_normal(4000)

    def mean_of(v):
        return lambda idx: float(v[idx].mean())

    small = B.bootstrap_statistic(mean_of(x[:100]), 100, n_boot=300, seed=1)
    large = B.bootstrap_statistic(mean_of(x), 4000, n_boot=300, seed=1)
    for r in (small, large):
        assert r.contains_point and r.samples.shape == (300,) and r.level == 0.95
    assert small.point == pytest.approx(x[:100].mean())
    # the width of the mean's interval falls like 1 / sqrt(n): 40x the photos, about 1/6.3 the width
    ratio = (large.high - large.low) / (small.high - small.low)
    assert 0.08 < ratio < 0.25
    # and is near the normal interval 2 * 1.96 sd / sqrt(n)
    assert small.high - small.low == pytest.approx(2 * 1.96 * x[:100].std() / 10, rel=0.25)
    again = B.bootstrap_statistic(mean_of(x[:100]), 100, n_boot=300, seed=1)
    np.testing.assert_array_equal(small.samples, again.samples)
    basic = B.bootstrap_statistic(mean_of(x[:100]), 100, n_boot=300, seed=1, method="basic")
    assert basic.low == pytest.approx(2 * small.point - small.high)
    shifted = B.bootstrap_statistic(mean_of(x[:100]), 100, n_boot=300, seed=1, method="shifted")
    bias = small.samples.mean() - small.point
    assert (shifted.low, shifted.high) == pytest.approx((small.low - bias, small.high - bias))
    with pytest.raises(ValueError):
        B.bootstrap_statistic(mean_of(x[:100]), 100, method="bca")  # type: ignore[arg-type]


def test_shifted_interval_centres_a_biased_statistic():
    # the maximum of resampled photos is biased downwards: its percentile interval can miss the
    # point estimate, the shifted one is centred on it
    x = np.random.default_rng(3).normal(size=200)
    stat = lambda i: float(x[i].max())  # noqa: E731
    pct = B.bootstrap_statistic(stat, 200, n_boot=300, seed=0)
    shifted = B.result_from_samples(pct.point, pct.samples, 0.95, "shifted")
    assert pct.bias < 0 and shifted.contains_point
    assert shifted.high - shifted.low == pytest.approx(pct.high - pct.low)


@pytest.mark.parametrize("n, d", [(12, 40), (60, 8)])  # fewer photos than dimensions, and more
def test_fid_from_gram_equals_fid_from_features(n, d):
    real, fake = features(n, d, 0), features(n + 3, d, 1, shift=0.4)
    c = real.mean(0)
    xr, xf = real - c, fake - c
    got = M.fid_from_gram(xr @ xr.T, xf @ xf.T, xf @ xr.T)
    # the nuclear norm goes through the eigenvalues of C C^T: agreement to ~1e-6 of the largest term
    assert got == pytest.approx(M.fid_from_features(real, fake), rel=1e-6, abs=1e-5)
    # any common shift gives the same FID
    xr2, xf2 = real + 5.0, fake + 5.0
    assert M.fid_from_gram(xr2 @ xr2.T, xf2 @ xf2.T, xf2 @ xr2.T) == pytest.approx(got, rel=1e-7)


def test_fid_from_gram_rows_resample_both_sets():
    real, fake = features(30, 50, 0), features(30, 50, 1, noise=0.5)
    rows = np.array([0, 0, 3, 7, 7, 7, 12, 29, 29, 5])
    c = real.mean(0)
    xr, xf = real - c, fake - c
    got = M.fid_from_gram(xr @ xr.T, xf @ xf.T, xf @ xr.T, rows)
    assert got == pytest.approx(M.fid_from_features(real[rows], fake[rows]), rel=1e-6, abs=1e-5)
    g = xr @ xr.T
    for bad in (np.array([0.5, 1.0]), np.array([0, 30]), np.array([[0, 1]])):
        with pytest.raises(ValueError):
            M.fid_from_gram(g, g, g, bad)
    with pytest.raises(ValueError):
        M.fid_from_gram(g, g[:5, :5], g[:5], rows)  # rows need paired sets
    with pytest.raises(ValueError):
        M.fid_from_gram(g, g, g[:, :5])
    with pytest.raises(ValueError):
        M.fid_from_gram(g[:1, :1], g[:1, :1], g[:1, :1])


def test_fid_bootstrap_identical_sets_is_zero():
    real = features(40, 64, 2)
    r = B.fid_bootstrap(real, real.copy(), n_boot=20, seed=0)
    assert r.point == pytest.approx(0.0, abs=1e-5)
    assert np.abs(r.samples).max() < 1e-5
    assert r.low == pytest.approx(0.0, abs=1e-5) and r.high == pytest.approx(0.0, abs=1e-5)


def test_fid_bootstrap_point_seed_and_pairing():
    real = features(80, 32, 0)
    near, far = features(80, 32, 1, shift=0.2), features(80, 32, 2, shift=1.0)
    boot = B.FIDBootstrap(real, n_boot=50, seed=7)
    a, b = boot(near), boot(far)
    assert a.point == pytest.approx(M.fid_from_features(real, near), rel=1e-6)
    # each resample is the FID of the resampled photos of both sets
    rows = boot.indices[3]
    assert a.samples[3] == pytest.approx(M.fid_from_features(real[rows], near[rows]), rel=1e-6)
    assert a.low < a.high and b.point > a.point
    np.testing.assert_array_equal(a.samples, B.FIDBootstrap(real, n_boot=50, seed=7)(near).samples)
    d = B.difference(b, a)
    assert d.point == pytest.approx(b.point - a.point)
    assert d.low > 0  # far is clearly worse than near on every resample
    with pytest.raises(ValueError):
        B.difference(a, B.fid_bootstrap(real, near, n_boot=10))


def test_fid_bootstrap_more_photos_narrower():
    def width(n):
        real, fake = features(n, 8, 0), features(n, 8, 1, shift=0.5)
        r = B.fid_bootstrap(real, fake, n_boot=100, seed=0)
        return r.high - r.low

    assert width(800) < 0.6 * width(100)


def test_fid_bootstrap_bad_input():
    real = features(10, 4)
    with pytest.raises(ValueError):
        B.FIDBootstrap(real[:1])
    with pytest.raises(ValueError):
        B.FIDBootstrap(real[:, 0])
    with pytest.raises(ValueError):
        B.FIDBootstrap(np.where(np.eye(10, 4) > 0, np.nan, real))
    with pytest.raises(ValueError):
        B.FIDBootstrap(real, n_boot=0)
    with pytest.raises(ValueError):
        B.FIDBootstrap(real, level=95)
    with pytest.raises(ValueError):
        B.FIDBootstrap(real)(real[:9])
    with pytest.raises(ValueError):
        B.FIDBootstrap(real)(features(10, 5))
