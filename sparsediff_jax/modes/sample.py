"""`--mode=sample`: images from the newest checkpoint of a run (docs/evaluation.md).

A grid of the first sampling.grid_size**2 images, and with sampling.save_npz all
sampling.num_samples images as .npz, under WORKDIR/samples/sample_mode_<step>[-N].{png,npz}
(a rerun with other settings never overwrites an earlier output).
"""

from absl import logging
import filecmp
import os
import time

import jax

from sparsediff_jax import formulations, generate, samplers
from sparsediff_jax.console import progress
from sparsediff_jax.errors import ConfigError
from sparsediff_jax.modes.base import Mode
from sparsediff_jax.runtime import atomic_io, checkpoints
from sparsediff_jax import train_state as state


def run_sample_mode(config, workdir: str) -> list[str]:
  """Writes a grid (and with sampling.save_npz all images as .npz) of
  sampling.num_samples images (0: one grid) from the newest checkpoint; returns the paths."""
  s = config.sampling
  if s.save_npz and not s.num_samples:
    raise ConfigError('config.sampling.save_npz=True needs config.sampling.num_samples > 0 '
                      '(the number of images to save); 0 writes one grid only')
  state.require_checkpoint(workdir)
  atomic_io.check_can_write('sample', [os.path.join(workdir, 'samples')])   # before sampling
  identity = checkpoints.run_identity(workdir)   # checked again before writing
  run = state.restore_run(config, workdir)
  step, params, graphdef, mesh = run.step, run.params(config), run.graphdef, run.mesh
  n = s.num_samples or s.grid_size ** 2
  nfe = samplers.num_evaluations(formulations.get_formulation(config.diffusion), s.sampler,
                                 s.num_steps)
  batch = -(-min(config.eval.batch_size, n) // mesh.devices.size) * mesh.devices.size
  with progress.phase('compiling the sampler'):   # and refused if it cannot fit
    generate.check_sampler_fits(config, graphdef, mesh, params, batch)
  keeper = generate.ImageKeeper(s.grid_size ** 2, keep_all=s.save_npz)
  start = time.time()
  sample_batch = generate.make_batch_sampler(config, graphdef, mesh)
  for images, indices in generate.sample_batches(sample_batch, params, n, batch,
                                                 desc=f'sampling ({s.sampler}, {nfe} NFE)'):
    keeper.add(images, indices)
  logging.info('%d samples in %.1f s (%s sampler, %d NFE)', n, time.time() - start,
               s.sampler, nfe)
  meta = dict(step=step, seed=s.seed, sampler=s.sampler, nfe=nfe, ema_index=s.ema_index)
  checkpoints.check_run_unchanged(workdir, identity, 'sample')
  # never over an earlier output, nor that of a sampler started at the same time
  with atomic_io.reserved_prefix(os.path.join(workdir, 'samples', f'sample_mode_{step:07d}'),
                                 reserve=jax.process_index() == 0) as prefix:
    paths = generate.write_images(config, keeper, prefix, meta)
  trained = os.path.join(workdir, 'samples', f'samples_{step:07d}.png')   # train's grid
  if os.path.isfile(paths[0]) and os.path.isfile(trained) and filecmp.cmp(paths[0], trained,
                                                                          shallow=False):
    logging.info('this grid is %s byte for byte (the same noise: sampling.seed=%d); for new '
                 'images set another seed, e.g. --config.sampling.seed=%d', trained, s.seed,
                 s.seed + 1)
  return paths


def summary(paths: list[str], finished) -> tuple[str, str]:
  """The CLI's last two lines after sampling (console/summary.py)."""
  return f'sampled in {finished.took}; wrote {", ".join(paths)}', finished.command('research')


MODE = Mode(name='sample', run=run_sample_mode, summary=summary, reads_run=True)
