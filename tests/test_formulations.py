"""Each formulation's training pairs, targets, denoiser and time grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsediff_jax import formulations, registry, samplers
from tests.helpers.tiny import tiny_config

X0 = jax.random.uniform(jax.random.PRNGKey(0), (6, 4, 4, 3), minval=-1, maxval=1)
ALL = [formulations.FlowMatching(), formulations.FlowMatching('logit_normal'),
       formulations.DDPMEps('linear'), formulations.DDPMEps('cosine'), formulations.EDM()]


@pytest.mark.parametrize('f', ALL, ids=lambda f: type(f).__name__)
def test_true_target_denoises_exactly(f):
  """Feeding the regression target back as the net output recovers x0."""
  pair = f.training_pair(jax.random.PRNGKey(1), X0)
  assert pair.net_input.shape == X0.shape and pair.cond.shape == (6,)
  # Reconstruct the noisy x (EDM scales the net input by c_in) and its time.
  if isinstance(f, formulations.EDM):
    sigma = jnp.exp(4 * pair.cond)
    x = pair.net_input * jnp.sqrt(sigma**2 + f.sigma_data**2)[:, None, None, None]
    t = sigma
  else:
    x, t = pair.net_input, pair.cond
  np.testing.assert_allclose(f.denoised(pair.target, x, t), X0, atol=2e-3)


def test_flow_matching_pair():
  f = formulations.FlowMatching()
  pair = f.training_pair(jax.random.PRNGKey(2), X0)
  t = pair.cond[:, None, None, None]
  eps = pair.target + X0                      # target is eps - x0
  np.testing.assert_allclose(pair.net_input, (1 - t) * X0 + t * eps, atol=1e-6)
  assert pair.weight is None and (0 <= pair.cond).all() and (pair.cond <= 1).all()


@pytest.mark.parametrize('schedule', ['linear', 'cosine'])
def test_ddpm_beta_is_minus_dlog_alpha_bar(schedule):
  f = formulations.DDPMEps(schedule)
  t = jnp.linspace(0.05, 0.95, 7)
  numeric = -jax.vmap(jax.grad(f.log_alpha_bar))(t)
  np.testing.assert_allclose(f.beta(t), numeric, rtol=1e-3)
  abar = jnp.exp(f.log_alpha_bar(jnp.array([f.t_min, f.t_max])))
  assert abar[0] > 0.99 and abar[1] < 1e-3


def test_edm_precondition_and_weight():
  f = formulations.EDM()
  sigma = jnp.array([0.01, 0.5, 10.0])
  c_skip, c_out, c_in = f._precond(sigma)
  lam = (sigma**2 + f.sigma_data**2) / (sigma * f.sigma_data) ** 2
  # The F-space target with uniform weight is EDM's lambda-weighted loss.
  np.testing.assert_allclose(lam * c_out**2, 1.0, rtol=1e-5)
  np.testing.assert_allclose(c_in**2 * (sigma**2 + f.sigma_data**2), 1.0, rtol=1e-5)
  grid = f.time_grid(5)
  assert float(grid[0]) == pytest.approx(80.0) and float(grid[-1]) == 0.0
  assert float(grid[-2]) == pytest.approx(0.002, rel=1e-4)


@pytest.mark.parametrize('f', ALL, ids=lambda f: type(f).__name__)
def test_time_grids_run_from_noise_to_data(f):
  grid = np.asarray(f.time_grid(10))
  assert grid.shape == (11,) and (np.diff(grid) < 0).all()
  assert (grid[-1] == 0) == f.ends_at_zero


@pytest.mark.parametrize('name', registry.FORMULATIONS.names())
def test_registry_builds_each_and_rejects_unknown(name):
  cfg = tiny_config().diffusion
  cfg.formulation = name
  assert formulations.get_formulation(cfg) is not None
  cfg.formulation = 'nope'
  with pytest.raises(ValueError, match='unknown formulation'):
    formulations.get_formulation(cfg)


@pytest.mark.parametrize('f', ALL[::2], ids=lambda f: type(f).__name__)
@pytest.mark.parametrize('sampler', ['euler', 'heun'])
def test_sampler_with_exact_denoiser_reaches_a_point_mass(f, sampler):
  """With data = one image, the exact denoiser is constant; every ODE lands on it."""
  target = X0[:1]

  def net_fn(net_in, cond):
    # Invert the formulation's parameterisation for D(x) = target.
    if isinstance(f, formulations.EDM):
      sigma = jnp.exp(4 * cond)[:, None, None, None]
      x = net_in * jnp.sqrt(sigma**2 + f.sigma_data**2)
      c_skip, c_out, _ = f._precond(sigma)
      return (target - c_skip * x) / c_out
    t = cond[:, None, None, None]
    if isinstance(f, formulations.FlowMatching):
      return (net_in - target) / jnp.maximum(t, 1e-6)        # v = eps - x0
    abar = jnp.exp(f.log_alpha_bar(t))
    return (net_in - jnp.sqrt(abar) * target) / jnp.sqrt(1 - abar)   # eps

  noise = samplers.per_sample_noise(jax.random.PRNGKey(0), jnp.arange(3), target.shape[1:])
  out = samplers.sample(f, net_fn, noise, sampler=sampler, num_steps=8)
  np.testing.assert_allclose(out, jnp.broadcast_to(target, out.shape), atol=1e-3)
