"""DPM-Solver++ multistep samplers (Lu et al. 2022) for every formulation.

Each formulation is x_t = alpha_t (x0 + sigma_t n) in the noise-to-signal view of
Karras et al. (`Formulation.sigma`; alpha_t = noise_std / sigma). With lambda = -log sigma
(half the log-SNR) and h = lambda_{i+1} - lambda_i, the probability-flow ODE in
data-prediction form integrates exactly over the linear part:

  x_{i+1} = (noise_std_{i+1} / noise_std_i) x_i + alpha_{i+1} (1 - e^{-h}) D,

D being the network's denoised image. 'dpmpp_2m' (the paper's Algorithm 2) and 'dpmpp_3m'
(its third-order multistep extension) replace D with a polynomial in lambda through the
denoised images of the last 2 or 3 steps and integrate it exactly against e^{lambda}, so
each step costs one network call: x_{i+1} gains alpha_{i+1} (phi_2 h D' - phi_3 h^2 D''),
phi_2 = expm1(-h) / h + 1, phi_3 = phi_2 / h - 1/2 (the 3M update is exact when D is
quadratic in lambda: tests/test_samplers.py measures its third order). The order of step i is lowered as the paper and its implementation do:
- warm start: step i uses at most i + 1 earlier values (the first step is DDIM's);
- a step that starts at infinite sigma (flow matching at t = 1) or ends at sigma 0 is first
  order (the step to 0 returns the denoised image itself);
- with fewer than 10 steps the final steps are lower order too (order at most
  num_steps - i), which the authors found to stabilise sampling with very few steps.

Every step is linear in x_i and the carried denoised images; `step_weights` gives the
weights of the whole grid as a pure function of the grid.
"""

import jax
import jax.numpy as jnp

from sparsediff_jax import registry
from sparsediff_jax.samplers import Sampler, Walk, _check_sampler

LOWER_ORDER_FINAL_BELOW = 10   # grids shorter than this lower the order of their last steps
_SERIES_BELOW = 0.1            # h below this: the phi functions from their Taylor series


def _phi23(h):
  """phi_2 = expm1(-h) / h + 1 and phi_3 = phi_2 / h - 1/2, without cancellation at small h."""
  small = h < _SERIES_BELOW
  hs = jnp.where(small, h, 1.0)
  series2 = hs / 2 - hs**2 / 6 + hs**3 / 24 - hs**4 / 120
  series3 = -hs / 6 + hs**2 / 24 - hs**3 / 120 + hs**4 / 720
  hl = jnp.where(small, 1.0, h)
  phi2 = jnp.expm1(-hl) / hl + 1.0
  phi3 = phi2 / hl - 0.5
  return jnp.where(small, series2, phi2), jnp.where(small, series3, phi3)


def step_orders(sigmas: jax.Array, order: int) -> jax.Array:
  """int [N]: the order of each of the N steps along noise-to-signal ratios [N + 1]."""
  n = sigmas.shape[0] - 1
  i = jnp.arange(n)
  orders = jnp.minimum(order, i + 1)
  if n < LOWER_ORDER_FINAL_BELOW:
    orders = jnp.minimum(orders, n - i)
  singular = jnp.isinf(sigmas[:-1]) | (sigmas[1:] == 0)
  return jnp.where(singular, 1, orders)


def step_weights(formulation, ts: jax.Array, order: int) -> tuple[jax.Array, jax.Array]:
  """(a [N], b [N, 3]): step i is x_{i+1} = a_i x_i + sum_j b_ij D_{i-j} on the grid ts
  [N + 1], D_k the denoised image at ts[k] (weights of missing earlier images are 0)."""
  sig = formulation.sigma(ts)
  std = formulation.noise_std(ts)
  alpha = jnp.where(sig > 0, std / jnp.where(sig > 0, sig, 1.0), 1.0)
  lam = -jnp.log(sig)
  h = lam[1:] - lam[:-1]
  nan = jnp.full((2,), jnp.nan)
  h1 = jnp.concatenate([nan[:1], h[:-1]])   # the previous step's h
  h2 = jnp.concatenate([nan, h[:-2]])       # the one before
  a = std[1:] / std[:-1]
  s = alpha[1:]
  e = sig[1:] / sig[:-1]                    # e^{-h}, exactly 0 at infinite or zero sigma
  first = s * (1.0 - e)
  zero = jnp.zeros_like(first)
  b1 = jnp.stack([first, zero, zero], axis=1)
  r0, r1 = h1 / h, h2 / h
  b2 = jnp.stack([first * (1.0 + 0.5 / r0), -first * 0.5 / r0, zero], axis=1)
  phi2, phi3 = _phi23(h)
  # With u = (lambda - lambda_i) / h, D0 + u D1 + u^2 D2 / 2 through the last three images:
  # D1 = h D'(lambda_i) and D2 = h^2 D''(lambda_i) from divided differences.
  c, w = r0 / (r0 + r1), 2.0 / (r0 + r1)
  k0 = phi2 * (1.0 + c) - phi3 * w          # weight of (D0 - D1) / r0
  k1 = -phi2 * c + phi3 * w                 # weight of (D1 - D2) / r1
  b3 = jnp.stack([s * (1.0 - e + k0 / r0), s * (k1 / r1 - k0 / r0), -s * k1 / r1], axis=1)
  orders = step_orders(sig, order)[:, None]
  b = jnp.where(orders == 1, b1, jnp.where(orders == 2, b2, b3))
  return a, b


def _multistep(walk: Walk, carry, i, order: int):
  x, history = carry
  a, b = step_weights(walk.formulation, walk.ts, order)
  d = walk.denoise(x, walk.ts[i])
  images = jnp.concatenate([d[None], history])
  x_next = a[i] * x + jnp.tensordot(b[i, :order], images[:order], axes=1)
  return x_next, images[:-1]


def dpmpp_2m_step(walk: Walk, carry, i, last: bool):
  del last   # the weights lower the order where needed
  return _multistep(walk, carry, i, 2)


def dpmpp_3m_step(walk: Walk, carry, i, last: bool):
  del last
  return _multistep(walk, carry, i, 3)


registry.SAMPLERS.register('dpmpp_2m', check=_check_sampler)(
    Sampler(dpmpp_2m_step, 1, history=1))
registry.SAMPLERS.register('dpmpp_3m', check=_check_sampler)(
    Sampler(dpmpp_3m_step, 1, history=2))
