"""Sharded image generation from parameters: sample grids and `--mode=sample`.

Images are generated in batches split over the mesh's `data` axis; image i's noise comes
from (config.sampling.seed, i) alone, so the result does not depend on batch size or device
count.
"""

from absl import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from sparsediff_jax import formulations, samplers, sharding
from sparsediff_jax.images import make_grid, save_png, to_uint8


def make_generator(config, graphdef, mesh):
  """Returns generate(params, indices) -> uint8 numpy [len(indices), H, W, C] on every host."""
  formulation = formulations.get_formulation(config.diffusion)
  s, d = config.sampling, config.data
  shape = (d.image_size, d.image_size, d.num_channels)
  key = jax.random.PRNGKey(s.seed)

  @jax.jit
  def _generate(params, indices):
    net = nnx.merge(graphdef, params)
    noise = samplers.per_sample_noise(key, indices, shape)
    x = samplers.sample(formulation, lambda x, c: net(x, c), noise, sampler=s.sampler,
                        num_steps=s.num_steps)
    return jnp.clip(x, -1.0, 1.0)

  n_dev = mesh.devices.size

  def generate(params, indices) -> np.ndarray:
    indices = np.asarray(indices, np.int32)
    pad = -len(indices) % n_dev   # every device gets the same number of rows
    padded = np.concatenate([indices, np.full(pad, indices[-1], np.int32)])
    out = _generate(params, jax.device_put(padded, sharding.batch_sharding(mesh)))
    return to_uint8(multihost_utils.process_allgather(out, tiled=True))[:len(indices)]

  return generate


def make_grid_sampler(config, graphdef, mesh):
  """Returns fn(params) -> uint8 [grid_size**2, H, W, C], images 0..grid_size**2 - 1."""
  generate = make_generator(config, graphdef, mesh)
  n = config.sampling.grid_size ** 2
  return lambda params: generate(params, np.arange(n))


def run_sample_mode(config, workdir: str) -> str:
  """Writes a sample grid from the newest checkpoint's first EMA; returns its path."""
  from sparsediff_jax import checkpoints, run_dir, train   # train imports this module
  if not run_dir.has_checkpoints(workdir):   # checked before Orbax creates the folder
    raise FileNotFoundError(f'no checkpoint in {os.path.abspath(workdir)}/checkpoints; train '
                            f'first with --mode=train --workdir={workdir}')
  mesh = sharding.make_mesh()
  tx, _ = train.make_optimizer(config)
  graphdef, _ = train.abstract_model(config)
  abstract = jax.eval_shape(lambda: train.init_state(config, tx, mesh))
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step, state, _ = ckpt.restore_latest(checkpoints.abstract_like(abstract,
                                                                sharding.replicated(mesh)))
  images = make_grid_sampler(config, graphdef, mesh)(state.ema[0])
  path = os.path.join(workdir, 'samples', f'sample_mode_{step:07d}.png')
  if jax.process_index() == 0:
    save_png(path, make_grid(images, rows=config.sampling.grid_size), upscale=2)
    logging.info('wrote %s (%s sampler, %d NFE)', path, config.sampling.sampler,
                 samplers.num_evaluations(formulations.get_formulation(config.diffusion),
                                          config.sampling.sampler, config.sampling.num_steps))
  return path
