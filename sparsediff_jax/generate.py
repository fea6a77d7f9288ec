"""Sharded image generation from parameters: sample grids and N-sample streams.

Images are generated in global batches split over the mesh's `data` axis (every device of
every host). Image i's initial noise and the noise a stochastic sampler injects into it
come from (config.sampling.seed, i) alone, so a set of samples does not depend on batch
size, device count or host count.
"""

from absl import logging
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from sparsediff_jax.console import progress
from sparsediff_jax.runtime import atomic_io, sharding
from sparsediff_jax import formulations, samplers
from sparsediff_jax.images import CHANNELS
from sparsediff_jax.errors import NonFiniteSamplesError
from sparsediff_jax.console.images import make_grid, save_png


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sample_images(graphdef, formulation, shape, options, params, indices, keys):
  """uint8 images [B, *shape] of `indices` and the number of non-finite samples.

  Compiled once per (network, formulation, image shape, sampler options, batch shape), so
  grids, evaluation and the training FID share executables.
  """
  net = nnx.merge(graphdef, params)
  noise_key, step_key = keys
  noise = samplers.per_sample_noise(noise_key, indices, shape)
  step_keys = samplers.per_sample_keys(step_key, indices)
  x = samplers.sample(formulation, lambda x, c: net(x, c), noise, keys=step_keys,
                      **dict(options))
  num_bad = jnp.sum(~jnp.all(jnp.isfinite(x), axis=(1, 2, 3)))
  # The quantisation of images.to_uint8, on device so only uint8 leaves it.
  images = jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
  return images, num_bad


def make_batch_sampler(config, graphdef, mesh):
  """Returns sample_batch(params, indices) -> uint8 jax.Array [B, H, W, C] over `data`.

  indices: int [B] image indices, B divisible by the device count. Raises
  NonFiniteSamplesError when a sample contains NaN or inf.
  """
  formulation = formulations.get_formulation(config.diffusion)
  s, d = config.sampling, config.data
  shape = (d.image_size, d.image_size, CHANNELS)
  options = tuple(sorted(samplers.options_from_config(s).items()))
  keys = jax.random.split(jax.random.PRNGKey(s.seed))   # initial noise, injected noise

  def sample_batch(params, indices):
    indices = np.asarray(indices, np.int32)
    images, num_bad = _sample_images(graphdef, formulation, shape, options, params,
                                     jax.device_put(indices, sharding.batch_sharding(mesh)),
                                     keys)
    if int(num_bad):
      raise NonFiniteSamplesError(
          f'{int(num_bad)} of the samples {indices.min()}..{indices.max()} contain NaN or '
          'inf: the parameters have diverged or the sampler is unstable; try an earlier '
          'checkpoint, another sampling.ema_index, or another sampler/more sampling.num_steps')
    return images

  def lower(params, batch: int):
    """The sampler of `batch` images lowered for `params` (arrays or sharded
    ShapeDtypeStructs), e.g. for its memory analysis before any sampling."""
    indices = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=sharding.batch_sharding(mesh))
    return _sample_images.lower(graphdef, formulation, shape, options, params, indices, keys)

  sample_batch.lower = lower
  return sample_batch


def check_sampler_fits(config, graphdef, mesh, params, batch: int) -> None:
  """errors.ConfigError unless the compiled sampler of `batch` images fits in device memory
  (memory_check.py); compiles it, which the first sampling call then reuses."""
  from sparsediff_jax.runtime import memory_check
  batch = -(-batch // mesh.devices.size) * mesh.devices.size
  memory_check.check_compiled_fits(
      make_batch_sampler(config, graphdef, mesh).lower(params, batch).compile(),
      f'the sampler ({batch} images of {config.data.image_size}x{config.data.image_size})')


def host_images(images: jax.Array) -> np.ndarray:
  """The whole global array on every host, as numpy (a collective: call on every host)."""
  return np.asarray(multihost_utils.process_allgather(images, tiled=True))


def make_generator(config, graphdef, mesh):
  """Returns generate(params, indices) -> uint8 numpy [len(indices), H, W, C] on every host."""
  sample_batch = make_batch_sampler(config, graphdef, mesh)
  n_dev = mesh.devices.size

  def generate(params, indices) -> np.ndarray:
    indices = np.asarray(indices, np.int32)
    pad = -len(indices) % n_dev   # every device gets the same number of rows
    padded = np.concatenate([indices, np.full(pad, indices[-1], np.int32)])
    return host_images(sample_batch(params, padded))[:len(indices)]

  return generate


def make_grid_sampler(config, graphdef, mesh):
  """Returns fn(params) -> uint8 [grid_size**2, H, W, C], images 0..grid_size**2 - 1."""
  generate = make_generator(config, graphdef, mesh)
  n = config.sampling.grid_size ** 2
  return lambda params: generate(params, np.arange(n))


def sample_batches(sample_batch, params, num_samples: int, batch_size: int, *,
                   desc: str = 'sampling'):
  """Yields (images [batch_size, H, W, C] on the mesh, indices int64 [batch_size]).

  Images 0..num_samples - 1 in order; rows of the last batch past num_samples have index
  -1 (padding: every batch has the same shape, so nothing recompiles). The next batch is
  dispatched before the current one is handed out, so the devices stay busy while the
  caller works on the host. Process 0 shows a progress bar in images/s.
  """
  starts = range(0, num_samples, batch_size)

  def dispatch(start):
    indices = np.arange(start, start + batch_size)
    indices[indices >= num_samples] = -1
    return sample_batch(params, np.where(indices < 0, num_samples - 1, indices)), indices

  bar = progress.CountProgress(num_samples, desc, 'img', enabled=jax.process_index() == 0)
  pending = dispatch(0) if num_samples > 0 else None
  for k in range(len(starts)):
    current = pending
    pending = dispatch(starts[k + 1]) if k + 1 < len(starts) else None
    yield current
    bar.update(int(np.sum(current[1] >= 0)))
  bar.close()


class ImageKeeper:
  """Host copies of the generated images that will be written: the first `first`, or all."""

  def __init__(self, first: int, keep_all: bool = False):
    self.first, self.keep_all, self.parts = first, keep_all, []
    self.count = 0

  def add(self, images: jax.Array, indices: np.ndarray) -> None:
    if self.keep_all or self.count < self.first:   # the same decision on every host
      valid = indices >= 0
      self.parts.append(host_images(images)[valid])
      self.count += int(valid.sum())

  def images(self) -> np.ndarray:
    out = np.concatenate(self.parts) if self.parts else np.zeros((0, 1, 1, 3), np.uint8)
    return out if self.keep_all else out[:self.first]


def write_images(config, keeper: ImageKeeper, prefix: str, meta: dict) -> list[str]:
  """Writes PREFIX.png (grid of the first grid_size**2 images) and, if kept, PREFIX.npz.

  Process 0 writes; returns the paths. The .npz holds `images` uint8 [N, H, W, C] and the
  JSON-able `meta` entries as scalars.
  """
  g = config.sampling.grid_size
  images, paths = keeper.images(), [prefix + '.png']
  if jax.process_index() == 0:
    grid = make_grid(images[:g * g], rows=min(g, -(-len(images[:g * g]) // g)))
    save_png(paths[0], grid, upscale=max(1, 256 // grid.shape[0] + 1))
    if keeper.keep_all:
      paths.append(prefix + '.npz')
      atomic_io.save_npz(paths[1], images=images,
                         **{k: np.asarray(v) for k, v in meta.items()})
    for path in paths:
      logging.info('wrote %s', path)
  return paths
