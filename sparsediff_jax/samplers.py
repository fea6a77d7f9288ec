"""ODE samplers over any formulation, and per-sample deterministic noise.

A sampler integrates the formulation's drift dx/dt along its time grid, from the noise end
to the data end. `net_fn(net_input, cond) -> net_out` is the raw network. Sample i's
initial noise comes from (key, i) alone, so a set of samples does not depend on the batch
size or on how many devices produce it.
"""

import jax
import jax.numpy as jnp

SAMPLERS = ('euler', 'heun')


def per_sample_noise(key: jax.Array, indices: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Standard normal noise [len(indices), *shape]; row j depends on (key, indices[j]) only."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape))(indices)


def num_evaluations(formulation, sampler: str, num_steps: int) -> int:
  """Network evaluations (NFE) one `sample` call makes per image."""
  nfe = num_steps if sampler == 'euler' else 2 * num_steps - int(formulation.ends_at_zero)
  return nfe + int(not formulation.ends_at_zero)   # the final denoising call


def sample(formulation, net_fn, noise: jax.Array, *, sampler: str = 'heun',
           num_steps: int = 18) -> jax.Array:
  """Integrates from `noise` ([B, H, W, C] standard normal) to images (about [-1, 1]).

  Heun (second order) corrects every step except a last step that ends at time 0, where
  the drift of some formulations is singular; Euler is first order.
  """
  if sampler not in SAMPLERS:
    raise ValueError(f'unknown sampler {sampler!r}; choose from {SAMPLERS}')
  ts = formulation.time_grid(num_steps)
  b = noise.shape[0]

  def drift(x, t):
    net_in, cond = formulation.net_inputs(x, jnp.full((b,), t))
    return formulation.drift(net_fn(net_in, cond), x, jnp.full((b,), t))

  def euler_step(x, t, t_next):
    return x + (t_next - t) * drift(x, t)

  def heun_step(x, t, t_next):
    d = drift(x, t)
    x_euler = x + (t_next - t) * d
    return x + (t_next - t) * 0.5 * (d + drift(x_euler, t_next))

  step = heun_step if sampler == 'heun' else euler_step
  last = euler_step if formulation.ends_at_zero else step
  x = noise * formulation.prior_std()
  x = jax.lax.fori_loop(0, num_steps - 1, lambda i, x: step(x, ts[i], ts[i + 1]), x)
  x = last(x, ts[num_steps - 1], ts[num_steps])
  if not formulation.ends_at_zero:
    t = jnp.full((b,), ts[-1])
    x = formulation.denoised(net_fn(*formulation.net_inputs(x, t)), x, t)
  return x
