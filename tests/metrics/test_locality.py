"""Locality of a denoiser: known radii of fixed convolutions (the U-Net: test_research.py)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsediff_jax import formulations
from sparsediff_jax.metrics import locality

SIZE = 12
X0 = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)), jnp.float32)
FORMULATIONS = (formulations.FlowMatching(), formulations.DDPMEps(), formulations.EDM())


def conv_apply(params, x, cond):
  """A fixed convolution of each channel with params['kernel'] [k, k] ('SAME' padding)."""
  k = params['kernel']
  c = x.shape[-1]
  kernel = jnp.tile(k[:, :, None, None], (1, 1, 1, c))       # depthwise, HWIO
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=c)


@pytest.mark.parametrize('formulation', FORMULATIONS, ids=lambda f: type(f).__name__)
def test_a_3x3_convolution_has_radius_sqrt2(formulation):
  # Centre weight 1, edges 2, corners 3: the radial masses are 1, 8, 12 of 21 in all, so
  # 90% is reached only at the corners.
  kernel = jnp.array([[3., 2., 3.], [2., 1., 2.], [3., 2., 3.]])
  times = np.asarray(formulation.time_grid(3))[:3]
  result = locality.measure_locality(conv_apply, {'kernel': kernel}, formulation, X0, times)
  np.testing.assert_allclose(result['radius90'], np.sqrt(2.0), rtol=1e-6)
  first = {d: c for d, c in zip(result['distances'], result['cumulative'][0])}
  assert first[0.0] == pytest.approx(1 / 21, rel=1e-5)
  assert first[1.0] == pytest.approx(9 / 21, rel=1e-5)
  assert first[round(np.sqrt(2.0), 6)] == pytest.approx(1.0, rel=1e-5)
  np.testing.assert_allclose(result['far_fraction'], 0.0, atol=1e-7)


def test_radius_follows_the_kernel():
  point = jnp.zeros((5, 5)).at[2, 2].set(1.0)            # identity: radius 0
  box = jnp.ones((5, 5))                                  # 5x5 box: 90% at sqrt(8)
  fm = formulations.FlowMatching()
  r_point = locality.measure_locality(conv_apply, {'kernel': point}, fm, X0, [0.5])
  r_box = locality.measure_locality(conv_apply, {'kernel': box}, fm, X0, [0.5])
  assert r_point['radius90'][0] == 0.0
  assert r_box['radius90'][0] == pytest.approx(np.sqrt(8.0))
  summary = locality.summary(r_box)
  assert summary['locality_radius90'] == pytest.approx(np.sqrt(8.0))
  assert summary['locality_radius90_t0.5'] == pytest.approx(np.sqrt(8.0))


def test_radial_profile_counts_every_position():
  maps = np.zeros((2, 6, 6))
  maps[0, 1, 1] = 1.0     # at its own position: distance 0
  maps[1, 4, 1] = 3.0     # 3 pixels below position (1, 1)
  distances, cumulative = locality.radial_profile(maps, [(1, 1), (1, 1)])
  assert locality.radius_at(distances, cumulative, 0.25) == 0.0
  assert locality.radius_at(distances, cumulative, 0.9) == 3.0


def test_the_plot(tmp_path):
  kernel = jnp.array([[3., 2., 3.], [2., 1., 2.], [3., 2., 3.]])
  result = locality.measure_locality(conv_apply, {'kernel': kernel},
                                     formulations.FlowMatching(), X0, [1.0, 0.5])
  np.testing.assert_allclose(result['centre_map'].sum(axis=(1, 2)), 1.0, rtol=1e-6)
  path = locality.save_locality_plot(str(tmp_path / 'loc.png'), result, title='3x3')
  assert os.path.getsize(path) > 1000


def test_unknown_formulation_is_refused():
  with pytest.raises(ValueError, match='forward process'):
    locality.noisy_input(object(), X0, X0, 0.5)
