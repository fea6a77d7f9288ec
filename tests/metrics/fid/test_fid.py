"""FID / KID / precision-recall math and reference-statistics files (small dimensions)."""

import dataclasses
import warnings

import numpy as np
import pytest
import scipy.linalg

from sparsediff_jax.metrics.fid import fid


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1]


# ---------------------------------------------------------------- streaming statistics


def test_accumulator_matches_numpy_with_partial_last_batch():
    rng = np.random.default_rng(0)
    # A large common offset: a naive E[xx^T] - mu mu^T in float32 would lose the covariance.
    x = (1000.0 + rng.standard_normal((17, 5)) @ rng.standard_normal((5, 5))).astype(np.float32)
    acc = fid.FeatureAccumulator(5)
    for start in range(0, 17, 7):  # batches of 7, 7 and a partial 3
        acc.update(x[start:start + 7])
    acc.update(np.zeros((0, 5)))  # an empty batch changes nothing
    stats = acc.finalize()
    x64 = x.astype(np.float64)
    assert stats.count == 17
    np.testing.assert_allclose(stats.mu, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x64, rowvar=False, ddof=1), rtol=1e-9, atol=1e-12)


def test_accumulator_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((23, 4)) + 3.0
    a = fid.FeatureAccumulator(4).update(x[:10])
    b = fid.FeatureAccumulator(4).update(x[10:15]).update(x[15:])
    merged = a.merge(b).finalize()
    whole = fid.feature_stats(x)
    assert merged.count == whole.count == 23
    np.testing.assert_allclose(merged.mu, whole.mu, rtol=1e-12)
    np.testing.assert_allclose(merged.sigma, whole.sigma, rtol=1e-10)
    assert a.merge(fid.FeatureAccumulator(4)).count == 23  # merging an empty one is a no-op


def test_accumulator_errors():
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid.FeatureAccumulator(3).update(np.ones((1, 3))).finalize()
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        fid.FeatureAccumulator(3).update(np.ones((2, 4)))
    with pytest.raises(ValueError, match="dimension"):
        fid.FeatureAccumulator(3).merge(fid.FeatureAccumulator(4))


# ------------------------------------------------------------------- Frechet distance


def test_frechet_zero_for_identical_stats():
    rng = np.random.default_rng(2)
    mu, sigma = rng.standard_normal(16), _random_cov(rng, 16)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-8 * np.trace(sigma)


def test_frechet_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    v1, v2 = rng.uniform(0.1, 3.0, 8), rng.uniform(0.1, 3.0, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2.0 * np.sqrt(v1 * v2))
    got = fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_general_matches_symmetric_formula():
    # Tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)): an independent route via eigh.
    rng = np.random.default_rng(4)
    s1, s2 = _random_cov(rng, 12), _random_cov(rng, 12)
    root1 = scipy.linalg.sqrtm(s1).real
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum()
    expected = np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    assert fid.frechet_distance(np.zeros(12), s1, np.zeros(12), s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_with_singular_covariances_stays_finite_and_accurate():
    # 5 samples in 24 dimensions: both covariances have rank 4. The exact value follows
    # from the samples: Tr sqrt(S1 S2) = nuclear norm of X1c X2c^T / (n - 1).
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((5, 24)), rng.standard_normal((5, 24)) + 0.5
    a, b = fid.feature_stats(x1), fid.feature_stats(x2)
    c1, c2 = x1 - x1.mean(0), x2 - x2.mean(0)
    tr_sqrt = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / 4
    expected = np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_sqrt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's LinAlgWarning about the singular product
        got = fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert np.isfinite(got) and got == pytest.approx(expected, rel=1e-4)


def test_frechet_retries_with_eps_offset_when_sqrtm_fails(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def flaky_sqrtm(a):
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    v1, v2, eps = np.array([1.0, 4.0]), np.array([9.0, 1.0]), 0.5
    got = fid.frechet_distance(np.zeros(2), np.diag(v1), np.zeros(2), np.diag(v2), eps=eps)
    np.testing.assert_allclose(calls[1], np.diag((v1 + eps) * (v2 + eps)))
    expected = np.sum(v1 + v2 - 2.0 * np.sqrt((v1 + eps) * (v2 + eps)))
    assert len(calls) == 2 and got == pytest.approx(expected, rel=1e-12)


def test_frechet_dimension_mismatch():
    with pytest.raises(ValueError, match="mismatched statistics"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="mismatched statistics"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


def test_fid_from_stats_warns_only_with_too_few_samples():
    rng = np.random.default_rng(6)
    few = fid.feature_stats(rng.standard_normal((6, 8)))
    many = fid.feature_stats(rng.standard_normal((200, 8)))
    with pytest.warns(UserWarning, match="6 samples"):
        fid.fid_from_stats(few, many)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fid.fid_from_stats(many, many) == pytest.approx(0.0, abs=1e-8)


# -------------------------------------------------------------------------------- KID


def test_kid_matches_direct_unbiased_estimate():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 1.0
    k = lambda a, b: (a @ b / 3 + 1.0) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    # One subset holding all samples: a permutation, which MMD^2 does not see.
    mean, std = fid.kernel_inception_distance(x, y, num_subsets=1, subset_size=100)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std == 0.0


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(8)
    real = rng.standard_normal((400, 16))
    same = rng.standard_normal((400, 16))
    shifted = rng.standard_normal((400, 16)) + 0.5
    m_same, s_same = fid.kernel_inception_distance(real, same, num_subsets=20, subset_size=200)
    m_shift, s_shift = fid.kernel_inception_distance(real, shifted, num_subsets=20, subset_size=200)
    assert abs(m_same) < 3 * s_same + 1e-3
    assert m_shift > 10 * max(s_shift, abs(m_same))


# ----------------------------------------------------------------- precision / recall


def test_precision_recall_identical_and_disjoint():
    rng = np.random.default_rng(9)
    real = rng.standard_normal((60, 5))
    assert fid.precision_recall(real, real.copy(), block_size=16) == (1.0, 1.0)
    far = real + 100.0
    assert fid.precision_recall(real, far, block_size=16) == (0.0, 0.0)
    half = np.concatenate([real[:30], far[30:]])  # half the fakes sit on real samples
    precision, recall = fid.precision_recall(real, half, block_size=16)
    assert precision == pytest.approx(0.5) and recall < 1.0


def test_precision_recall_blocks_match_brute_force():
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((50, 4)), rng.standard_normal((40, 4)) * 1.3 + 0.3
    d_rr = ((real[:, None] - real[None]) ** 2).sum(-1)
    d_ff = ((fake[:, None] - fake[None]) ** 2).sum(-1)
    d_fr = ((fake[:, None] - real[None]) ** 2).sum(-1)
    r_real, r_fake = np.sort(d_rr, 1)[:, 3], np.sort(d_ff, 1)[:, 3]  # k=3, skipping self
    precision = (d_fr <= r_real[None]).any(1).mean()
    recall = (d_fr.T <= r_fake[None]).any(1).mean()
    for block in (7, 1000):
        got = fid.precision_recall(real, fake, k=3, block_size=block)
        assert got == pytest.approx((precision, recall))
    assert 0.0 < precision < 1.0 and 0.0 < recall < 1.0  # a case that can actually fail


# ---------------------------------------------------------------- reference statistics


def _meta(**changes):
    base = fid.StatsMetadata(dataset="celeb_a", split="train", resolution=64, num_images=10,
                             preprocessing="pytorch", weights_sha256="ab" * 32)
    return dataclasses.replace(base, **changes)


def test_stats_roundtrip(tmp_path):
    stats = fid.feature_stats(np.random.default_rng(11).standard_normal((10, 3)))
    fid.save_stats(tmp_path / "ref.npz", stats, _meta())
    loaded, meta = fid.load_stats(tmp_path / "ref.npz")
    assert meta == _meta() and loaded.count == 10
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    with pytest.raises(ValueError, match="num_images"):
        fid.save_stats(tmp_path / "bad.npz", stats, _meta(num_images=11))


def test_metadata_compatibility_names_the_field():
    fid.check_compatible(_meta(), _meta(split="generated", num_images=5))  # allowed to differ
    with pytest.raises(fid.StatsMismatchError, match="'preprocessing'.*'pytorch' vs 'tf'"):
        fid.check_compatible(_meta(), _meta(preprocessing="tf"))
    with pytest.raises(fid.StatsMismatchError, match="'resolution'"):
        fid.check_compatible(_meta(), _meta(resolution=32))
    with pytest.raises(fid.StatsMismatchError, match="'dataset'"):
        fid.check_compatible(_meta(), _meta(dataset="cifar10"), fields=("dataset",))
