"""Sharded generation and feature streams: a set of samples does not depend on device or
host count (exactly) or batch size (up to float rounding in the network), the reference
feature stream gives the same statistics on 1 host or 2, and NaN samples are an error. A
stochastic sampler (DDPM ancestral) is used, so the injected noise is covered too."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from tests.helpers.eval_fakes import fake_params, tiny_config
from sparsediff_jax import errors, generate, main, samplers
from sparsediff_jax.runtime import sharding
from sparsediff_jax.metrics.fid import features
from sparsediff_jax.scoring import real_images

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


def _mean_colour_features(images) -> np.ndarray:
  """A cheap stand-in for Inception: per-image mean colour, tiled to [B, 2048], gathered."""
  f = jnp.tile(images.astype(jnp.float32).mean(axis=(1, 2)), (1, 683))[:, :2048]
  return np.asarray(multihost_utils.process_allgather(f, tiled=True), np.float32)


def _streams(sample_batch_size):
  """Images 0..INDICES-1 through eval's streaming path, and the reference-feature stream of
  7 training images in global batches of 8 (2 hosts hold uneven parts: 3 and 4)."""
  config = _config()
  config.data.num_train_examples = 7
  graphdef, params = fake_params(config)
  mesh = sharding.make_mesh()
  keeper = generate.ImageKeeper(0, keep_all=True)
  sample_batch = generate.make_batch_sampler(config, graphdef, mesh)
  for images, indices in generate.sample_batches(sample_batch, params, INDICES,
                                                 sample_batch_size):
    assert images.shape[0] == sample_batch_size   # 2 rows on each device:
    assert {s.data.shape[0] for s in images.addressable_shards} == {2}
    keeper.add(images, indices)
  batches, total = real_images.real_image_batches(config, mesh, 8)
  acc, kept = features.collect(_mean_colour_features, batches, keep=lambda i: i % 3 == 0)
  return dict(images=keeper.images(), total=total, count=acc.count, mean=acc.mean,
              scatter=acc.scatter, kept=kept)


def _host_worker(process_id, port, out_path):
  """One of 2 processes with 4 CPU devices each (run in a subprocess): global batches of 16
  put 2 rows on each device, as batches of 2 do on 1 device."""
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                             process_id=process_id, initialization_timeout=120)
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  out = _streams(16)
  if process_id == 0:
    np.savez(out_path, **out)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def batch_of_two():
  assert jax.device_count() == 1
  return _generate(2)


@pytest.mark.slow   # subprocesses on 1, 8 and 2 x 4 devices
def test_samples_and_reference_features_do_not_depend_on_device_or_host_count(batch_of_two,
                                                                              tmp_path):
  images = batch_of_two[0]
  assert images.shape == (INDICES, 16, 16, 3) and images.dtype == np.uint8
  assert len(np.unique(images.reshape(INDICES, -1), axis=0)) == INDICES
  out, port = tmp_path / 'two_hosts.npz', _free_port()
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             PYTHONPATH=str(REPO))
  procs = [subprocess.Popen(
      [sys.executable, '-c', f'from tests import test_generate as t; t._host_worker({i}, {port}, {str(out)!r})'],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
  two_hosts, here = np.load(out), _streams(2)
  np.testing.assert_array_equal(two_hosts['images'], images)   # 2 rows per device in both
  np.testing.assert_array_equal(here['images'], images)
  assert int(two_hosts['count']) == here['count'] == here['total'] == 7
  np.testing.assert_allclose(two_hosts['mean'], here['mean'], rtol=1e-12)
  np.testing.assert_allclose(two_hosts['scatter'], here['scatter'], rtol=1e-9, atol=1e-9)
  np.testing.assert_array_equal(two_hosts['kept'], here['kept'])
  assert here['kept'].shape == (3, 2048)   # rows 0, 3, 6


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
  assert '\n' not in str(err.value) and main.is_bad_input(err.value)
