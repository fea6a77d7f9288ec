"""Context use of a denoiser: how far from an output pixel do the inputs that move it lie?

For an output position p the sensitivity map is
    S_p(q) = sum over images b, output channels c, input channels c' of
             | d net(x_b)[p, c] / d x_b[q, c'] |,
one vector-Jacobian product per (p, c), taken at noisy inputs x_t of a given noise level t.
Grouping S_p(q) by the distance |q - p| (pixels) and summing over the chosen positions
gives a radial profile; its cumulative fraction F(r) says which share of the total
sensitivity lies within radius r. `radius90`, the smallest distance with F >= 0.9, is the
one-number summary: a 3x3 convolution has radius90 = sqrt(2), a denoiser that reads the
whole image has a radius near the image size.

The network is any `apply_fn(params, net_input, cond) -> net_out`; the formulation supplies
`net_inputs` (EDM scales its input; the gradient is still taken with respect to x_t), and
`noisy_input` places x_t on the formulation's forward path. Each image's output must depend
on that image alone (true of the U-Net: no batch statistics), so one product per (p, c)
serves the whole batch.
"""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from sparsediff_jax import formulations
from sparsediff_jax.console.images import pyplot, save_figure


def noisy_input(formulation, x0: jax.Array, eps: jax.Array, t) -> jax.Array:
  """x_t of the formulation's forward process for clean x0 and noise eps, [B, H, W, C]."""
  if isinstance(formulation, formulations.FlowMatching):
    return (1.0 - t) * x0 + t * eps
  if isinstance(formulation, formulations.DDPMEps):
    abar = jnp.exp(formulation.log_alpha_bar(t))
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps
  if isinstance(formulation, formulations.EDM):
    return x0 + t * eps
  raise ValueError(f'noisy_input does not know {type(formulation).__name__}; add its '
                   'forward process x_t(x0, eps, t) here')


def default_positions(height: int, width: int) -> tuple[tuple[int, int], ...]:
  """A 3x3 lattice at a quarter, half and three quarters of each side."""
  return tuple((height * i // 4, width * j // 4) for i in (1, 2, 3) for j in (1, 2, 3))


def sensitivity_maps(fn, x: jax.Array, positions) -> jax.Array:
  """S_p for each of `positions` ((row, col) pairs): float32 [P, H, W].

  fn: [B, H, W, C] -> [B, H, W, C'], each output image depending on its own input only.
  """
  out, vjp = jax.vjp(fn, x)
  b, _, _, c_out = out.shape
  rows = jnp.array([p[0] for p in positions])
  cols = jnp.array([p[1] for p in positions])

  def one(row, col, channel):
    cotangent = jnp.zeros_like(out).at[:, row, col, channel].set(1.0)
    (grad,) = vjp(cotangent)
    return jnp.sum(jnp.abs(grad), axis=(0, 3))

  per_channel = jax.vmap(lambda r, c: jax.vmap(lambda ch: one(r, c, ch))(
      jnp.arange(c_out)))(rows, cols)              # [P, C', H, W]
  return jnp.sum(per_channel, axis=1)


def radial_profile(maps: np.ndarray, positions) -> tuple[np.ndarray, np.ndarray]:
  """(distances [K], cumulative fraction [K]) of the summed maps [P, H, W].

  distances are the distinct pixel distances |q - p| that occur, ascending; cumulative[k]
  is the share of all sensitivity at distance <= distances[k].
  """
  maps = np.asarray(maps, np.float64)
  _, h, w = maps.shape
  yy, xx = np.mgrid[0:h, 0:w]
  dist = np.stack([np.hypot(yy - r, xx - c) for r, c in positions])
  # Rounded so that equal distances from different positions fall in one bin.
  distances, inverse = np.unique(np.round(dist, 6).ravel(), return_inverse=True)
  mass = np.bincount(inverse, weights=maps.ravel(), minlength=len(distances))
  total = mass.sum()
  cumulative = np.cumsum(mass) / total if total > 0 else np.ones_like(mass)
  return distances, cumulative


def radius_at(distances: np.ndarray, cumulative: np.ndarray, fraction: float = 0.9) -> float:
  """Smallest distance whose cumulative share reaches `fraction`."""
  # The small tolerance keeps rounding in the cumulative sum from skipping a bin.
  return float(distances[np.argmax(cumulative >= fraction - 1e-9)])


def make_measure(apply_fn, formulation, positions):
  """jit'ed (params, x0, eps, t) -> S [P, H, W] at noise level t (a scalar)."""

  @jax.jit
  def measure(params, x0, eps, t):
    def fn(x):
      net_in, cond = formulation.net_inputs(x, jnp.full((x.shape[0],), t))
      return apply_fn(params, net_in, cond)
    return sensitivity_maps(fn, noisy_input(formulation, x0, eps, t), positions)

  return measure


def measure_locality(apply_fn, params, formulation, x0, times, *, positions=None,
                     seed: int = 0) -> dict:
  """Sensitivity profile of a denoiser at each noise level of `times`.

  Args:
    apply_fn: (params, net_input [B, H, W, C], cond [B]) -> net output [B, H, W, C].
    params: its parameters (any pytree).
    formulation: from `formulations.get_formulation`.
    x0: clean images in [-1, 1], float [B, H, W, C].
    times: noise levels in the formulation's own units (e.g. flow-matching t in (0, 1]).
    positions: output (row, col) positions; default a 3x3 lattice.
    seed: seed of the noise eps (the same eps at every t).

  Returns:
    dict with 'times' [T], 'distances' [K], 'cumulative' [T, K], 'radius90' [T],
    'far_fraction' [T] (share beyond a quarter of the image side), 'centre_map' [T, H, W]
    (normalised S of the lattice position nearest the centre), 'positions'.
  """
  x0 = jnp.asarray(x0, jnp.float32)
  _, h, w, _ = x0.shape
  positions = tuple(positions or default_positions(h, w))
  if jax.__version_info__ < (0, 8):   # its VJP of a convolution on mesh-sharded inputs
    params = jax.device_get(params)    # cannot be vmapped (NotImplementedError): host copy
  measure = make_measure(apply_fn, formulation, positions)
  eps = jax.random.normal(jax.random.PRNGKey(seed), x0.shape)
  centre = int(np.argmin([np.hypot(r - h / 2, c - w / 2) for r, c in positions]))
  result = {'times': np.asarray(times, np.float64), 'positions': positions,
            'cumulative': [], 'radius90': [], 'far_fraction': [], 'centre_map': []}
  for t in times:
    maps = np.asarray(jax.device_get(measure(params, x0, eps, jnp.float32(t))), np.float64)
    distances, cumulative = radial_profile(maps, positions)
    result['distances'] = distances
    result['cumulative'].append(cumulative)
    result['radius90'].append(radius_at(distances, cumulative, 0.9))
    inside = cumulative[np.searchsorted(distances, min(h, w) / 4.0, side='right') - 1]
    result['far_fraction'].append(float(1.0 - inside))
    result['centre_map'].append(maps[centre] / max(maps[centre].sum(), 1e-30))
  for k in ('cumulative', 'radius90', 'far_fraction', 'centre_map'):
    result[k] = np.asarray(result[k])
  return result


def summary(result: dict) -> dict[str, float]:
  """Flat floats for a metrics file: mean radius90 and far fraction, and radius90 per t."""
  out = {'locality_radius90': float(np.mean(result['radius90'])),
         'locality_far_fraction': float(np.mean(result['far_fraction']))}
  for t, r in zip(result['times'], result['radius90']):
    out[f'locality_radius90_t{t:.3g}'] = float(r)
  return out


def save_locality_plot(path: str, result: dict, title: str = '') -> str:
  """PNG: cumulative share vs distance per noise level, and the centre sensitivity maps."""
  plt = pyplot()
  times = result['times']
  n = len(times)
  fig = plt.figure(figsize=(max(6.0, 1.6 * n), 5.6))
  grid = fig.add_gridspec(2, n, height_ratios=(2.2, 1.0))
  ax = fig.add_subplot(grid[0, :])
  colours = plt.cm.viridis(np.linspace(0, 0.9, n))
  for t, cum, r, col in zip(times, result['cumulative'], result['radius90'], colours):
    ax.plot(result['distances'], cum, '-', color=col, label=f't={t:.3g}: r90={r:.2f}')
    ax.axvline(r, color=col, ls=':', lw=1)
  ax.axhline(0.9, color='grey', lw=0.8)
  ax.set_xlabel('distance from the output pixel (pixels)')
  ax.set_ylabel('share of |d out / d in| within distance')
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=8, loc='lower right')
  # A long run name (a sweep's) wraps rather than running off the figure.
  ax.set_title(textwrap.fill(title or 'sensitivity of the denoiser output to its input', 70),
               fontsize=9)
  for i, (t, m) in enumerate(zip(times, result['centre_map'])):
    a = fig.add_subplot(grid[1, i])
    a.imshow(np.sqrt(m), cmap='magma', interpolation='nearest')
    a.set_xticks([])
    a.set_yticks([])
    a.set_title(f't={t:.3g}', fontsize=8)
  fig.text(0.01, 0.02, 'maps: sqrt of the centre pixel\'s sensitivity', fontsize=7)
  return save_figure(fig, path)
