"""Sharded generation: a set of samples does not depend on device count (exactly) or batch
size (up to float rounding in the network), and NaN samples are an error. A stochastic
sampler (DDPM ancestral) is used, so the injected noise is covered too."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from eval_fakes import fake_params, tiny_config
from sparsediff_jax import errors, generate, main, samplers, sharding

REPO = Path(__file__).parents[1]
INDICES = 12


def _config():
  return tiny_config(**{'diffusion.formulation': 'ddpm_eps', 'sampling.sampler': 'ancestral',
                        'sampling.num_steps': 3})


def _generate(batch_size):
  """uint8 images 0..INDICES-1 generated through make_generator, batch_size at a time."""
  config = _config()
  graphdef, params = fake_params(config)
  generate_fn = generate.make_generator(config, graphdef, sharding.make_mesh())
  images = np.concatenate([generate_fn(params, np.arange(i, min(i + batch_size, INDICES)))
                           for i in range(0, INDICES, batch_size)])
  return images, generate_fn, params


def _eight_device_worker(out_path):
  """Run in a subprocess with 8 CPU devices: the streaming path of eval in global batches
  of 16 (the last one padding from row 12 on), 2 rows per device as in the 1-device run."""
  assert jax.device_count() == 8
  config = _config()
  graphdef, params = fake_params(config)
  keeper = generate.ImageKeeper(0, keep_all=True)
  sample_batch = generate.make_batch_sampler(config, graphdef, sharding.make_mesh())
  for images, indices in generate.sample_batches(sample_batch, params, INDICES, 16):
    assert images.sharding.spec[0] == 'data' and images.shape[0] == 16
    keeper.add(images, indices)
  np.save(out_path, keeper.images())


@pytest.fixture(scope='module')
def batch_of_two():
  assert jax.device_count() == 1
  return _generate(2)


def test_samples_do_not_depend_on_device_count(batch_of_two, tmp_path):
  images = batch_of_two[0]
  assert images.shape == (INDICES, 16, 16, 3) and images.dtype == np.uint8
  assert len(np.unique(images.reshape(INDICES, -1), axis=0)) == INDICES
  out = tmp_path / 'eight.npy'
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]))
  code = f'import test_generate as t; t._eight_device_worker({str(out)!r})'
  proc = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO / 'tests',
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  np.testing.assert_array_equal(np.load(out), images)


def test_samples_do_not_depend_on_batch_size(batch_of_two):
  """The noise is exact; the network's float arithmetic is not batch-invariant on XLA:CPU
  (its matmuls differ by an ulp between batch shapes), which can move a pixel that sits
  on a rounding boundary by one level."""
  noise = lambda idx: np.asarray(samplers.per_sample_noise(jax.random.PRNGKey(0), idx,
                                                           (4, 4, 3)))
  np.testing.assert_array_equal(
      np.concatenate([noise(jnp.arange(5)), noise(jnp.arange(5, 12))]), noise(jnp.arange(12)))
  images = _generate(INDICES)[0].astype(int)
  diff = np.abs(images - batch_of_two[0])
  assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3, (diff.max(), np.mean(diff > 0))


def test_nan_samples_are_a_clear_error(batch_of_two):
  _, generate_fn, params = batch_of_two
  broken = jax.tree.map(lambda p: p * np.nan, params)
  with pytest.raises(errors.NonFiniteSamplesError, match=r'2 of the samples 0\.\.1 contain '
                     'NaN or inf') as err:
    generate_fn(broken, np.arange(2))
  assert '\n' not in str(err.value) and errors.NonFiniteSamplesError in main.USER_ERRORS
