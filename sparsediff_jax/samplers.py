"""Samplers over the formulations, their time grids, and per-sample deterministic noise.

`net_fn(net_input, cond) -> net_out` is the raw network. A sampler walks the time grid
from the noise end to the data end:

- 'euler', 'heun': the probability-flow ODE of any formulation (first / second order).
- 'ddim': deterministic DDIM (Song et al. 2021) for 'ddpm_eps'.
- 'ancestral': DDPM ancestral sampling (Ho et al. 2020; DDIM with eta = 1) for 'ddpm_eps'.
- 'churn': EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) for 'edm': Heun
  steps after raising the noise level by a factor 1 + gamma inside [s_min, s_max].
- 'dpmpp_2m', 'dpmpp_3m': DPM-Solver++ multistep (Lu et al. 2022) for every formulation,
  one network call per step (sparsediff_jax/multistep.py).

Determinism: sample i's initial noise and every noise injected by a stochastic sampler come
from (seed, i) alone (`per_sample_noise`, `per_sample_keys`), so a set of samples does not
depend on batch size, device count or host count.

Each sampler is one short step function registered with registry.SAMPLERS as a
`Sampler`: step(walk, x, i, last) -> x at time ts[i + 1], given x at ts[i]; `sample` owns
the grid, the loop and the final denoising call. A multistep sampler (`history` > 0)
carries (x, its last `history` denoised images, newest first) instead of x.
"""

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from sparsediff_jax import registry
from sparsediff_jax.errors import ConfigError
from sparsediff_jax.validation import TIME_STEPS, UNIFORM_TIME_FORMULATIONS


class Walk(NamedTuple):
  """What a sampler's step sees: the formulation, the time grid and network calls."""
  formulation: object      # formulations.Formulation
  ts: jax.Array            # [num_steps + 1] times, noise end first
  net: Callable            # net(x, t) -> raw network output at scalar time t
  drift: Callable          # drift(x, t) -> dx/dt of the probability-flow ODE
  denoise: Callable        # denoise(x, t) -> the network's estimate of the clean image
  step_noise: Callable     # step_noise(i) -> [B, H, W, C] fresh noise of step i per sample
  num_steps: int
  churn: tuple             # (s_churn, s_min, s_max, s_noise)


@dataclasses.dataclass(frozen=True)
class Sampler:
  step: Callable                   # step(walk, x, i, last) -> x_next
  evals_per_step: int              # network calls per step (1, or 2 for second order)
  formulation: str | None = None   # the only formulation it works with (None: every one)
  stochastic: bool = False         # injects noise: needs per-sample keys
  history: int = 0                 # earlier denoised images a multistep sampler carries


def sampler_mismatch(formulation_name: str, sampler: str) -> str | None:
  """Why `sampler` cannot run with `formulation_name`, or None when it can."""
  names = registry.SAMPLERS.names()
  if sampler not in names:
    return f'unknown sampler {sampler!r}; choose from {names}'
  needed = registry.SAMPLERS.get(sampler).formulation
  if needed is None or needed == formulation_name:
    return None
  fitting = [s for s in names
             if registry.SAMPLERS.get(s).formulation in (None, formulation_name)]
  return (f'sampler {sampler!r} only works with formulation {needed!r}, not '
          f'{formulation_name!r}; for {formulation_name!r} choose one of {fitting}')


def _check_sampler(config) -> None:
  why = sampler_mismatch(config.diffusion.formulation, config.sampling.sampler)
  if why:
    raise ConfigError(f'config.sampling.sampler={config.sampling.sampler!r} is invalid: {why}')


def per_sample_noise(key: jax.Array, indices: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Standard normal noise [len(indices), *shape]; row j depends on (key, indices[j]) only."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape))(indices)


def per_sample_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  """Keys [len(indices), ...] for the noise a stochastic sampler injects into each sample.

  Use a key other than the one of the initial noise (e.g. split the seed's key in two).
  """
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)


def num_evaluations(formulation, sampler: str, num_steps: int) -> int:
  """Network evaluations (NFE) one `sample` call makes per image."""
  if registry.SAMPLERS.get(sampler).evals_per_step == 1:
    nfe = num_steps
  else:   # second order: two per step, except a last step that ends at time 0
    nfe = 2 * num_steps - int(formulation.ends_at_zero)
  return nfe + int(not formulation.ends_at_zero)   # the final denoising call


def time_grid(formulation, num_steps: int, time_steps: str = 'default', *, rho: float = 7.0,
              sigma_min: float = 0.002, sigma_max: float = 80.0) -> jax.Array:
  """The num_steps + 1 times a sampler visits, from the noise end to the data end.

  'default': the formulation's own grid (uniform in t for flow matching and ddpm_eps,
  EDM's rho = 7 grid for edm). 'uniform': uniform in the formulation's own t between the
  ends of its default grid (flow matching and ddpm_eps only, whose t is bounded).
  'edm': Karras et al.'s spacing for every formulation, uniform in sigma**(1/rho) from
  sigma_max to sigma_min, where sigma is the formulation's noise-to-signal ratio.
  'logsnr': uniform in log sigma (half the log-SNR) between the same ends, the spacing of
  DPM-Solver (Lu et al. 2022). For 'edm' and 'logsnr', formulations that end at time 0 take
  a last step to 0 (EDM's convention); ddpm_eps keeps sigma inside its schedule (linear:
  about [0.01, 152]).
  """
  if time_steps == 'default':
    return formulation.time_grid(num_steps)
  if time_steps == 'uniform':
    if formulation.name not in UNIFORM_TIME_FORMULATIONS:
      raise ValueError(f"time_steps 'uniform' needs a bounded time; formulation "
                       f'{formulation.name!r} is not one of {UNIFORM_TIME_FORMULATIONS}')
    ends = formulation.time_grid(1)
    return jnp.linspace(ends[0], ends[-1], num_steps + 1)
  if time_steps not in ('edm', 'logsnr'):
    raise ValueError(f'unknown time_steps {time_steps!r}; choose from {TIME_STEPS}')
  if not 0.0 < sigma_min < sigma_max:
    raise ValueError(f'need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}')
  # The round trip through time clamps sigma to what the formulation can represent.
  hi = formulation.sigma(formulation.t_from_sigma(jnp.float32(sigma_max)))
  lo = formulation.sigma(formulation.t_from_sigma(jnp.float32(sigma_min)))
  n = num_steps if formulation.ends_at_zero else num_steps + 1
  frac = jnp.arange(n) / max(n - 1, 1)
  if time_steps == 'edm':
    sigmas = (hi ** (1 / rho) + frac * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
  else:
    sigmas = jnp.exp(jnp.log(hi) + frac * (jnp.log(lo) - jnp.log(hi)))
  ts = formulation.t_from_sigma(sigmas)
  return jnp.concatenate([ts, jnp.zeros(1)]) if formulation.ends_at_zero else ts


def options_from_config(s) -> dict:
  """Keyword arguments of `sample` from a `config.sampling` block."""
  return dict(sampler=s.sampler, num_steps=s.num_steps, time_steps=s.time_steps, rho=s.rho,
              sigma_min=s.sigma_min, sigma_max=s.sigma_max,
              churn=(s.s_churn, s.s_min, s.s_max, s.s_noise))


def _ode_step(walk: Walk, x, i, correct: bool):
  """Euler's step, and with `correct` Heun's: the slopes at both ends averaged."""
  t, t_next = walk.ts[i], walk.ts[i + 1]
  d = walk.drift(x, t)
  x_next = x + (t_next - t) * d
  if correct:
    x_next = x + (t_next - t) * 0.5 * (d + walk.drift(x_next, t_next))
  return x_next


def _ddim_step(walk: Walk, x, i, eta: float):
  """Generalised DDIM (needs formulations.VariancePreserving): eta = 0 deterministic DDIM,
  eta = 1 DDPM's posterior noise."""
  t, t_next = walk.ts[i], walk.ts[i + 1]
  a, a_next = (jnp.exp(walk.formulation.log_alpha_bar(u)) for u in (t, t_next))
  eps = walk.net(x, t)
  x0 = (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)
  c = eta * jnp.sqrt((1.0 - a_next) / (1.0 - a) * (1.0 - a / a_next))
  x_next = jnp.sqrt(a_next) * x0 + jnp.sqrt(1.0 - a_next - c * c) * eps
  return x_next + c * walk.step_noise(i) if eta else x_next


def euler_step(walk: Walk, x, i, last: bool):
  del last
  return _ode_step(walk, x, i, correct=False)


def heun_step(walk: Walk, x, i, last: bool):
  # No correction on a last step that ends at time 0, where some drifts are singular.
  return _ode_step(walk, x, i, correct=not (last and walk.formulation.ends_at_zero))


def ddim_step(walk: Walk, x, i, last: bool):
  del last
  return _ddim_step(walk, x, i, 0.0)


def ancestral_step(walk: Walk, x, i, last: bool):
  del last
  return _ddim_step(walk, x, i, 1.0)


def churn_step(walk: Walk, x, i, last: bool):
  """EDM's Algorithm 2: raise t by gamma t with fresh noise inside [s_min, s_max], then a
  Heun step from the raised level."""
  s_churn, s_min, s_max, s_noise = walk.churn
  t, t_next = walk.ts[i], walk.ts[i + 1]
  gamma = jnp.where((t >= s_min) & (t <= s_max),
                    min(s_churn / walk.num_steps, math.sqrt(2.0) - 1.0), 0.0)
  t_hat = t + gamma * t
  # sqrt(t_hat^2 - t^2), written so that rounding cannot make it sqrt(negative).
  x_hat = x + t * jnp.sqrt(gamma * (2.0 + gamma)) * s_noise * walk.step_noise(i)
  d = walk.drift(x_hat, t_hat)
  x_next = x_hat + (t_next - t_hat) * d
  if not (last and walk.formulation.ends_at_zero):
    x_next = x_hat + (t_next - t_hat) * 0.5 * (d + walk.drift(x_next, t_next))
  return x_next


registry.SAMPLERS.register('euler', check=_check_sampler)(Sampler(euler_step, 1))
registry.SAMPLERS.register('heun', check=_check_sampler)(Sampler(heun_step, 2))
registry.SAMPLERS.register('ddim', check=_check_sampler)(Sampler(ddim_step, 1, 'ddpm_eps'))
registry.SAMPLERS.register('ancestral', check=_check_sampler)(
    Sampler(ancestral_step, 1, 'ddpm_eps', stochastic=True))
registry.SAMPLERS.register('churn', check=_check_sampler)(
    Sampler(churn_step, 2, 'edm', stochastic=True))


def sample(formulation, net_fn, noise: jax.Array, *, sampler: str = 'heun',
           num_steps: int = 18, keys: jax.Array | None = None, time_steps: str = 'default',
           rho: float = 7.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
           churn: tuple[float, float, float, float] = (0.0, 0.0, math.inf, 1.0),
           python_loop: bool = False) -> jax.Array:
  """Turns `noise` ([B, H, W, C] standard normal) into images (about [-1, 1]).

  Args:
    keys: per-sample keys [B] (`per_sample_keys`); required by the stochastic samplers,
      step i of sample j draws its noise from fold_in(keys[j], i).
    time_steps, rho, sigma_min, sigma_max: the time grid, see `time_grid`.
    churn: (s_churn, s_min, s_max, s_noise) of the 'churn' sampler: each step whose time
      is in [s_min, s_max] first raises the noise level t to t (1 + gamma),
      gamma = min(s_churn / num_steps, sqrt(2) - 1), with fresh noise scaled by s_noise.
    python_loop: walk the steps in a Python loop instead of lax.fori_loop: called outside
      jit with a jitted net_fn, a grid of any length reuses net_fn's one compilation
      (benchmarks that sweep num_steps); under jit it unrolls the loop.
  Heun and churn correct every step except a last step that ends at time 0, where the
  drift of some formulations is singular. Formulations that stop short of time 0
  (ddpm_eps) finish with one denoising call. NFE: `num_evaluations`.
  """
  why = sampler_mismatch(formulation.name, sampler)
  if why:
    raise ValueError(why)
  spec = registry.SAMPLERS.get(sampler)
  if spec.stochastic and keys is None:
    raise ValueError(f'sampler {sampler!r} injects noise: pass per-sample keys '
                     '(samplers.per_sample_keys)')
  if num_steps < 1:
    raise ValueError(f'num_steps must be >= 1, got {num_steps}')
  ts = time_grid(formulation, num_steps, time_steps, rho=rho, sigma_min=sigma_min,
                 sigma_max=sigma_max)
  b = noise.shape[0]

  def net(x, t):
    return net_fn(*formulation.net_inputs(x, jnp.full((b,), t)))

  def drift(x, t):
    return formulation.drift(net(x, t), x, jnp.full((b,), t))

  def denoise(x, t):
    return formulation.denoised(net(x, t), x, jnp.full((b,), t))

  def step_noise(i):
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), noise.shape[1:]))(keys)

  walk = Walk(formulation, ts, net, drift, denoise, step_noise, num_steps, churn)
  x = noise * formulation.noise_std(ts[0])
  if spec.history:
    x = (x, jnp.zeros((spec.history,) + x.shape, x.dtype))
  if python_loop:
    for i in range(num_steps - 1):
      x = spec.step(walk, x, i, False)
  else:
    x = jax.lax.fori_loop(0, num_steps - 1, lambda i, x: spec.step(walk, x, i, False), x)
  x = spec.step(walk, x, num_steps - 1, True)
  if spec.history:
    x = x[0]
  if not formulation.ends_at_zero:
    t = jnp.full((b,), ts[-1])
    x = formulation.denoised(net_fn(*formulation.net_inputs(x, t)), x, t)
  return x
