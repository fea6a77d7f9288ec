"""The paper's module: mask statistics, masked_mse normalisations, the covariance identity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsediff_jax import masking

SHAPE = (16, 16, 16, 3)


def _binomial_ok(kept, n, p, sigmas=5.0):
  return abs(kept - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize('ratio', [0.0, 0.5, 0.9, 0.98])
def test_keep_fraction_within_binomial_bound(ratio):
  mask = masking.sample_pixel_mask(jax.random.PRNGKey(0), SHAPE, ratio)
  draws = mask[..., 0]    # one draw per pixel, shared by channels
  assert set(np.unique(mask)) <= {0.0, 1.0}
  assert _binomial_ok(float(draws.sum()), draws.size, 1 - ratio)
  np.testing.assert_array_equal(mask[..., 0], mask[..., 2])


def test_ratio_zero_keeps_everything():
  mask = masking.sample_pixel_mask(jax.random.PRNGKey(3), SHAPE, 0.0)
  assert float(mask.min()) == 1.0


def test_per_channel_draws_differ_between_channels():
  mask = masking.sample_pixel_mask(jax.random.PRNGKey(1), SHAPE, 0.5, per_channel=True)
  assert float(jnp.mean(mask[..., 0] != mask[..., 1])) > 0.4   # about 0.5 expected
  assert _binomial_ok(float(mask.sum()), mask.size, 0.5)


def test_patches_are_constant_and_aligned():
  mask = np.asarray(masking.sample_pixel_mask(jax.random.PRNGKey(2), SHAPE, 0.5, patch_size=4))
  blocks = mask[..., 0].reshape(16, 4, 4, 4, 4)
  assert (blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4))).all()
  assert 0 < mask.mean() < 1
  with pytest.raises(ValueError, match='patch_size'):
    masking.sample_pixel_mask(jax.random.PRNGKey(2), (1, 10, 10, 3), 0.5, patch_size=4)


def test_masks_independent_across_examples_and_keys():
  m1 = np.asarray(masking.sample_pixel_mask(jax.random.PRNGKey(0), SHAPE, 0.5))[..., 0]
  m2 = np.asarray(masking.sample_pixel_mask(jax.random.PRNGKey(1), SHAPE, 0.5))[..., 0]
  flat = m1.reshape(16, -1)
  # Two independent Bernoulli(0.5) masks agree on about half their pixels.
  for a, b in [(flat[0], flat[1]), (m1.ravel(), m2.ravel())]:
    agree = float(np.mean(a == b))
    assert abs(agree - 0.5) < 5 * 0.5 / np.sqrt(a.size)
  # and are uncorrelated across examples.
  corr = np.corrcoef(flat)[np.triu_indices(16, 1)]
  assert np.abs(corr).max() < 0.35


def test_ratio_zero_equals_dense_mse():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  p, t = jax.random.normal(k1, SHAPE), jax.random.normal(k2, SHAPE)
  dense = jnp.mean((p - t) ** 2)
  mask = masking.sample_pixel_mask(jax.random.PRNGKey(5), SHAPE, 0.0)
  # Equal up to float32 summation order, which differs between XLA builds (3e-6 on jax 0.7).
  for norm in ('kept', 'all'):
    np.testing.assert_allclose(masking.masked_mse(p, t, mask, normalize=norm), dense,
                               rtol=1e-5)


def test_normalisations():
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  p, t = jax.random.normal(k1, SHAPE), jax.random.normal(k2, SHAPE)
  w = jnp.linspace(0.5, 2.0, SHAPE[0])
  mask = masking.sample_pixel_mask(k3, SHAPE, 0.9)
  err = (p - t) ** 2 * w[:, None, None, None]
  kept = masking.masked_mse(p, t, mask, w, 'kept')
  np.testing.assert_allclose(kept, err[mask == 1].mean(), rtol=1e-5)
  np.testing.assert_allclose(masking.masked_mse(p, t, mask, w, 'all'),
                             (err * mask).sum() / err.size, rtol=1e-5)
  with pytest.raises(ValueError, match='normalize'):
    masking.masked_mse(p, t, mask, normalize='bogus')


def test_all_normalisation_expectation_is_one_minus_eta_times_dense():
  k1, k2 = jax.random.split(jax.random.PRNGKey(7))
  p, t = jax.random.normal(k1, (2, 8, 8, 3)), jax.random.normal(k2, (2, 8, 8, 3))
  dense = float(jnp.mean((p - t) ** 2))
  eta = 0.8
  losses = jax.vmap(lambda k: masking.masked_mse(
      p, t, masking.sample_pixel_mask(k, p.shape, eta), normalize='all'))(
          jax.random.split(jax.random.PRNGKey(0), 4000))
  np.testing.assert_allclose(float(losses.mean()), (1 - eta) * dense, rtol=0.03)


def test_no_kept_element_gives_zero_not_nan():
  x = jnp.ones((1, 2, 2, 1))
  assert float(masking.masked_mse(x, 0 * x, jnp.zeros_like(x))) == 0.0


def test_masked_covariance_identity_monte_carlo():
  """Cov(m * x) = (1-eta)^2 Sigma + eta (1-eta) D, checked on the mask sampler."""
  eta, d, n = 0.7, 4, 200_000
  rng = np.random.default_rng(0)
  a = rng.normal(size=(d, d))
  sigma = a @ a.T + np.eye(d)
  x = rng.multivariate_normal(np.zeros(d), sigma, size=n).astype(np.float32)
  mask = masking.sample_pixel_mask(jax.random.PRNGKey(0), (n, 1, d, 1), eta)
  masked = np.asarray(mask[:, 0, :, 0]) * x
  empirical = masked.T @ masked / n
  predicted = np.asarray(masking.masked_covariance(jnp.asarray(sigma, jnp.float32), eta))
  np.testing.assert_allclose(empirical, predicted, atol=0.03 * np.abs(sigma).max())
  # Masking damps correlations more than variances: the correlation matrix shrinks.
  corr = lambda c: c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
  off = ~np.eye(d, dtype=bool)
  assert (np.abs(corr(predicted)[off]) < np.abs(corr(sigma)[off])).all()


def test_ratio_zero_draws_nothing_and_equals_a_draw():
  """Ratio 0 is the dense baseline: the all-ones mask a Bernoulli(1) draw gives, drawn
  without random bits (so timing ratio 0.98 against 0 measures the whole cost of the mask)."""
  key = jax.random.PRNGKey(0)
  jaxpr = lambda r: str(jax.make_jaxpr(lambda k: masking.sample_pixel_mask(k, SHAPE, r))(key))
  assert 'random_bits' not in jaxpr(0.0) and 'random_bits' in jaxpr(0.5)
  np.testing.assert_array_equal(masking.sample_pixel_mask(key, SHAPE, 0.0),
                                jax.random.bernoulli(key, 1.0, SHAPE).astype(np.float32))


def test_noise_schedule_strategy_keeps_by_noise_level():
  """The registered 'noise_schedule' strategy: drop ratio ratio_at_t0 + (t1 - t0) * level,
  per example; 'iid' ignores the level. Both are found through the registry by name."""
  from ml_collections import ConfigDict
  cfg = ConfigDict(dict(strategy='noise_schedule', ratio=0.9, per_channel=False,
                        patch_size=1, ratio_at_t0=0.1, ratio_at_t1=0.9))
  level = jnp.array([0.0, 0.5, 1.0, 0.25])
  np.testing.assert_allclose(masking.scheduled_ratio(level, 0.1, 0.9), [0.1, 0.5, 0.9, 0.3])
  mask = masking.get_mask_strategy(cfg)(jax.random.PRNGKey(0), (4, 64, 64, 3), level, 0)
  kept = np.asarray(mask).reshape(4, -1).mean(axis=1)
  np.testing.assert_allclose(kept, [0.9, 0.5, 0.1, 0.7], atol=0.03)
  iid = masking.get_mask_strategy(ConfigDict({**cfg.to_dict(), 'strategy': 'iid'}))
  kept_iid = np.asarray(iid(jax.random.PRNGKey(0), (4, 64, 64, 3), level, 0)).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(kept_iid, 0.1, atol=0.03)


def test_iid_strategy_is_the_paper_mask_bit_for_bit():
  from ml_collections import ConfigDict
  cfg = ConfigDict(dict(strategy='iid', ratio=0.7, per_channel=True, patch_size=2,
                        ratio_at_t0=0.0, ratio_at_t1=0.0))
  key = jax.random.PRNGKey(3)
  got = masking.get_mask_strategy(cfg)(key, (2, 8, 8, 3), jnp.zeros(2), 5)
  want = masking.sample_pixel_mask(key, (2, 8, 8, 3), 0.7, per_channel=True, patch_size=2)
  np.testing.assert_array_equal(got, want)
