"""Samplers against closed forms: for data N(0, s^2 I) the optimal network output of every
formulation is linear in x (tests/helpers/eval_fakes.gaussian_net), the probability-flow ODE maps
noise z to k z with k known exactly, and stochastic samplers must reproduce N(0, s^2)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.eval_fakes import gaussian_net, tiny_config
from sparsediff_jax import formulations as F
from sparsediff_jax import samplers as S
from sparsediff_jax import registry, validation

S_DATA = 0.5
FM, VP, VP_COS, EDM = F.FlowMatching(), F.DDPMEps(), F.DDPMEps(schedule='cosine'), F.EDM()


def exact_gain(f, ts) -> float:
  """k of the exact ODE map x_end = k z for noise z started at ts[0].

  Along the ODE x / (scale(t) sqrt(s^2 + sigma(t)^2)) is constant; the start is
  z * noise_std(t0) = z scale(t0) sigma0, and ddpm_eps ends with E[x0 | x] at ts[-1].
  """
  sigma0 = float(f.sigma(ts[0]))
  k = 1.0 if math.isinf(sigma0) else sigma0 / math.hypot(S_DATA, sigma0)
  if f.ends_at_zero:
    return k * S_DATA
  return k * S_DATA**2 / math.hypot(S_DATA, float(f.sigma(ts[-1])))


# (formulation, sampler, time steps, order of accuracy)
DETERMINISTIC = [
    (FM, 'euler', 'default', 1), (FM, 'heun', 'edm', 2), (VP, 'euler', 'default', 1),
    (VP, 'heun', 'edm', 2),
    (VP, 'ddim', 'default', 1), (VP_COS, 'heun', 'default', 2), (VP_COS, 'ddim', 'edm', 1),
    (EDM, 'euler', 'default', 1), (EDM, 'heun', 'default', 2),
]


@pytest.mark.parametrize('f,sampler,time_steps,order', DETERMINISTIC,
                         ids=lambda v: getattr(v, 'schedule', type(v).__name__)
                         if not isinstance(v, (str, int)) else str(v))
def test_deterministic_samplers_converge_to_the_exact_ode_map(f, sampler, time_steps, order):
  noise = jnp.asarray([1.0, -0.5, 2.0, 0.3]).reshape(4, 1, 1, 1)
  errors = []
  for n in (40, 80):
    out = np.asarray(S.sample(f, gaussian_net(f, S_DATA), noise, sampler=sampler,
                              num_steps=n, time_steps=time_steps) / noise).ravel()
    np.testing.assert_allclose(out, out[0], rtol=1e-4)   # a linear map of the noise
    exact = exact_gain(f, S.time_grid(f, n, time_steps))
    errors.append(abs(out[0] - exact) / exact)
  # Doubling the steps divides the error by 2**order (measured: 0.50-0.53 and 0.24-0.26).
  assert 0.8 * 0.5**order < errors[1] / errors[0] < 1.3 * 0.5**order, errors
  assert errors[1] < (0.04 if order == 1 else 3e-3), errors


def _jitted_sampler(f, sampler, num_steps, churn=(40.0, 0.05, 50.0, 1.0)):
  """One compiled sampler per test (the eager path would compile op by op)."""
  return jax.jit(lambda z, k: S.sample(f, gaussian_net(f, S_DATA), z, sampler=sampler,
                                       num_steps=num_steps, keys=k, churn=churn))


@pytest.mark.parametrize('f,sampler,num_steps', [(VP, 'ancestral', 1000), (EDM, 'churn', 100)])
def test_stochastic_samplers_reproduce_the_data_distribution(f, sampler, num_steps):
  n = 512
  noise = jax.random.normal(jax.random.PRNGKey(0), (n, 4, 4, 3))
  keys = S.per_sample_keys(jax.random.PRNGKey(1), jnp.arange(n))
  out = np.asarray(_jitted_sampler(f, sampler, num_steps, (10.0, 0.05, 50.0, 1.0))(noise, keys))
  # 24576 values: the std's standard error is 0.45%; DDPM's own bias at 1000 steps is < 1%.
  assert abs(out.std() - S_DATA) < 0.02 * S_DATA
  assert abs(out.mean()) < 0.02 * S_DATA
  # The injected noise decorrelates sample and start (an ODE would keep corr = 1).
  assert abs(np.corrcoef(out.ravel(), np.asarray(noise).ravel())[0, 1]) < 0.5


@pytest.mark.parametrize('f,sampler', [(VP, 'ancestral'), (EDM, 'churn')])
def test_injected_noise_depends_only_on_the_sample_index(f, sampler):
  key, indices = jax.random.PRNGKey(3), jnp.arange(8)
  noise = S.per_sample_noise(key, indices, (2, 2, 1))
  keys = S.per_sample_keys(jax.random.PRNGKey(4), indices)
  run = _jitted_sampler(f, sampler, 5)
  whole = np.asarray(run(noise, keys))
  parts = np.concatenate([run(noise[:4], keys[:4]), run(noise[4:], keys[4:])])
  np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-6)
  other_keys = S.per_sample_keys(jax.random.PRNGKey(5), indices)
  assert np.abs(run(noise, other_keys) - whole).max() > 1e-2   # the keys do matter


def _counted_calls(f, sampler, num_steps):
  calls = []

  def net(x, c):
    calls.append(x.shape[0])
    return gaussian_net(f, S_DATA)(x, c)

  noise = jnp.ones((2, 1, 1, 1))
  keys = S.per_sample_keys(jax.random.PRNGKey(0), jnp.arange(2))
  with jax.disable_jit():   # fori_loop runs as a Python loop: every call is counted
    S.sample(f, net, noise, sampler=sampler, num_steps=num_steps, keys=keys)
  return len(calls)


@pytest.mark.parametrize('f', [FM, VP, EDM], ids=['flow_matching', 'ddpm_eps', 'edm'])
def test_num_evaluations_counts_network_calls(f):
  fitting = [s for s in registry.SAMPLERS.names() if S.sampler_mismatch(f.name, s) is None]
  assert {'euler', 'heun'} <= set(fitting)
  for sampler in fitting:
    for n in (1, 3):
      assert _counted_calls(f, sampler, n) == S.num_evaluations(f, sampler, n), (sampler, n)
  # The documented counts: EDM's 18-step Heun is 35 NFE, and 40 steps are 79.
  assert S.num_evaluations(EDM, 'heun', 18) == 35 and S.num_evaluations(EDM, 'heun', 40) == 79


def test_sampler_that_does_not_fit_the_formulation_is_a_clear_error():
  noise = jnp.ones((1, 1, 1, 1))
  with pytest.raises(ValueError, match="'ddim' only works with formulation 'ddpm_eps'"):
    S.sample(FM, gaussian_net(FM, S_DATA), noise, sampler='ddim')
  with pytest.raises(ValueError, match='per-sample keys'):
    S.sample(VP, gaussian_net(VP, S_DATA), noise, sampler='ancestral')
  config = tiny_config(**{'sampling.sampler': 'churn'})
  with pytest.raises(validation.ConfigError, match=r"sampling\.sampler='churn'.*'edm'.*"
                     r"choose one of \['euler', 'heun', 'dpmpp_2m', 'dpmpp_3m'\]"):
    validation.validate_config(config, 1)
  config.diffusion.formulation = 'edm'
  validation.validate_config(config, 1)


def test_edm_time_grid():
  # The edm formulation's own grid is Karras et al.'s.
  np.testing.assert_allclose(S.time_grid(EDM, 18, 'edm'), EDM.time_grid(18), rtol=1e-6)
  # Flow matching: sigma = t / (1 - t) follows the rho spacing, then a last step to 0.
  ts = np.asarray(S.time_grid(FM, 6, 'edm', rho=7.0, sigma_min=0.002, sigma_max=80.0))
  assert ts[-1] == 0.0 and np.all(np.diff(ts) < 0)
  sig = ts[:-1] / (1 - ts[:-1])
  want = (80**(1 / 7) + np.linspace(0, 1, 6) * (0.002**(1 / 7) - 80**(1 / 7)))**7
  np.testing.assert_allclose(sig, want, rtol=1e-4)
  # ddpm_eps: sigma is clamped to its schedule, so the grid stays inside [t_min, t_max].
  ts = np.asarray(S.time_grid(VP, 6, 'edm', sigma_min=0.002, sigma_max=1e4))
  assert ts.shape == (7,) and np.all(np.diff(ts) < 0)
  np.testing.assert_allclose([ts[0], ts[-1]], [VP.t_max, VP.t_min], rtol=1e-4)


@pytest.mark.parametrize('f', [FM, VP, VP_COS, EDM])
def test_sigma_and_its_inverse(f):
  t = jnp.asarray(f.time_grid(7)[1:-1])   # inside the schedule, away from singular ends
  np.testing.assert_allclose(f.t_from_sigma(f.sigma(t)), t, rtol=2e-4)
  # noise_std is the coefficient of the noise in x_t.
  if isinstance(f, F.DDPMEps):
    np.testing.assert_allclose(f.noise_std(t), np.sqrt(1 - np.exp(f.log_alpha_bar(t))),
                               rtol=1e-5)
  else:
    np.testing.assert_allclose(f.noise_std(t), t)


# ---- DPM-Solver++ multistep (sparsediff_jax/multistep.py) ---------------------------------
from sparsediff_jax import multistep as M   # noqa: E402

# (formulation, sampler, time steps, order): each fitted over 40, 80, 160 steps.
MULTISTEP = [(EDM, 'dpmpp_3m', 'edm', 3), (FM, 'dpmpp_3m', 'edm', 3),
             (FM, 'dpmpp_2m', 'logsnr', 2), (VP, 'dpmpp_2m', 'edm', 2)]


@pytest.mark.parametrize('f,sampler,time_steps,order', MULTISTEP,
                         ids=lambda v: v if isinstance(v, (str, int)) else type(v).__name__)
def test_multistep_error_falls_at_the_solvers_order(f, sampler, time_steps, order):
  noise = jnp.asarray([1.0, -0.5, 2.0, 0.3]).reshape(4, 1, 1, 1)
  steps, errors = (40, 80, 160), []
  for n in steps:
    run = jax.jit(lambda z: S.sample(f, gaussian_net(f, S_DATA), z, sampler=sampler,
                                     num_steps=n, time_steps=time_steps))
    out = np.asarray(run(noise) / noise).ravel()
    np.testing.assert_allclose(out, out[0], rtol=1e-4)
    exact = exact_gain(f, S.time_grid(f, n, time_steps))
    errors.append(abs(out[0] - exact) / exact)
  slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
  # Measured: 2.97 and 2.98 for 3M, 2.03 and 2.05 for 2M.
  assert abs(slope - order) < 0.25, (slope, errors)
  assert errors[-1] < (1e-4 if order == 3 else 1e-3), errors


def test_multistep_orders_warm_start_and_lower_order_final():
  # edm ends at sigma 0: the step to 0 is first order, the first steps warm up.
  sig = jnp.concatenate([jnp.geomspace(80.0, 0.002, 12), jnp.zeros(1)])
  assert M.step_orders(sig, 3).tolist() == [1, 2] + [3] * 9 + [1]
  assert M.step_orders(sig, 2).tolist() == [1] + [2] * 10 + [1]
  # Fewer than 10 steps: the last ones lower their order too.
  short = jnp.asarray([80.0, 10.0, 1.0, 0.5, 0.1, 0.01])
  assert M.step_orders(short, 3).tolist() == [1, 2, 3, 2, 1]
  # Flow matching at t = 1 starts at infinite sigma: that step is first order.
  assert M.step_orders(jnp.asarray([jnp.inf, 1.0, 0.3, 0.0]), 2).tolist() == [1, 2, 1]


@pytest.mark.parametrize('f', [FM, VP, EDM], ids=['flow_matching', 'ddpm_eps', 'edm'])
def test_multistep_weights_are_finite_and_reproduce_a_constant_denoiser(f):
  # If the network always denoises to the same image c, every step keeps x on the path
  # alpha_t (c + sigma_t n): the weights of a step sum to alpha_{i+1} on D.
  for grid in ('default', 'edm', 'logsnr'):
    ts = S.time_grid(f, 9, grid)
    for order in (2, 3):
      a, b = M.step_weights(f, ts, order)
      assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), (grid, order)
      sig, std = f.sigma(ts), f.noise_std(ts)
      alpha = np.where(np.asarray(sig) > 0, np.asarray(std) / np.maximum(sig, 1e-30), 1.0)
      np.testing.assert_allclose(np.sum(b, axis=1), alpha[1:] * (1 - sig[1:] / sig[:-1]),
                                 rtol=1e-5, atol=1e-6)


def test_multistep_samples_do_not_depend_on_the_batch():
  f = EDM
  noise = S.per_sample_noise(jax.random.PRNGKey(0), jnp.arange(6), (2, 2, 3))
  net = gaussian_net(f, S_DATA)
  run = jax.jit(lambda z: S.sample(f, lambda x, c: net(x, c) + 0.1 * jnp.tanh(x), z,
                                   sampler='dpmpp_3m', num_steps=7, time_steps='logsnr'))
  whole = np.asarray(run(noise))
  np.testing.assert_allclose(np.concatenate([run(noise[:2]), run(noise[2:])]), whole,
                             rtol=1e-6, atol=1e-6)
  # The Python loop of the benchmarks walks the same steps.
  looped = S.sample(f, jax.jit(lambda x, c: net(x, c) + 0.1 * jnp.tanh(x)), noise,
                    sampler='dpmpp_3m', num_steps=7, time_steps='logsnr', python_loop=True)
  np.testing.assert_allclose(looped, whole, rtol=1e-5, atol=1e-6)


def test_logsnr_and_uniform_time_grids():
  ts = np.asarray(S.time_grid(EDM, 6, 'logsnr', sigma_min=0.002, sigma_max=80.0))
  assert ts[-1] == 0.0
  np.testing.assert_allclose(np.diff(np.log(ts[:-1])), np.log(0.002 / 80) / 5, rtol=1e-4)
  ts = np.asarray(S.time_grid(VP, 6, 'logsnr'))   # inside the schedule, no step to 0
  assert ts.shape == (7,) and np.all(np.diff(ts) < 0) and ts[-1] >= VP.t_min
  np.testing.assert_allclose(S.time_grid(FM, 5, 'uniform'), FM.time_grid(5))
  with pytest.raises(ValueError, match="'uniform' needs a bounded time"):
    S.time_grid(EDM, 5, 'uniform')
  config = tiny_config(**{'sampling.time_steps': 'uniform', 'diffusion.formulation': 'edm'})
  with pytest.raises(validation.ConfigError, match=r"sampling\.time_steps='uniform'.*"
                     r"'flow_matching', 'ddpm_eps'.*choose one of 'default', 'edm', 'logsnr'"):
    validation.validate_fields(config)


@pytest.mark.slow
def test_a_grid_the_formulation_lacks_is_refused_before_jax(tmp_path):
  from tests.helpers.cli_runs import HEAVY, imported_modules
  result, names = imported_modules('--config.diffusion.formulation=edm',
                                   '--config.sampling.time_steps=uniform', cwd=tmp_path)
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
  assert "sampling.time_steps='uniform'" in errors[0] and "'flow_matching'" in errors[0]
  assert 'sparsediff_jax' in names and not names & set(HEAVY), sorted(names & set(HEAVY))
  assert not any(tmp_path.iterdir())
