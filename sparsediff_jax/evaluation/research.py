"""One run's research metrics: `--mode=research` writes WORKDIR/research_metrics.json.

`evaluate_run(config, workdir)` restores the newest checkpoint (state.restore_run: FSDP
shardings, damaged-step fallback) and, with the parameters sampling.ema_index names:
  * generates config.research.num_samples images (`generate.make_generator`; sample i's
    noise depends on (sampling.seed, i) only, so every run of a sweep is scored on the
    same noise);
  * the metrics the dataset registers (registry.DATASET_METRICS: global consistency on
    shapes, the classifier scores on digits);
  * memorization against the whole training set in pixel space (`memorization`), and
    for shapes the same measure for fresh dataset images (its floor: 'reference_pixel_*');
  * context use of the denoiser on noisy training images (`locality`);
  * the training losses of the last logged window (from the run's TensorBoard events).
It writes WORKDIR/research_metrics.json (flat floats, what `launch/sweep.py` aggregates)
and WORKDIR/research/{samples,memorization,locality}.png.

Command line: e.g. python -m sparsediff_jax.main --workdir=runs/x --mode=research. The
fields that define the run come from WORKDIR/config.json (run_dir.bind_to_run); an
override that contradicts them is refused.
"""

from absl import logging
import glob
import json
import os
import time

import jax
import numpy as np
from flax import nnx

from sparsediff_jax import data, evaluate, formulations, generate, state
from sparsediff_jax.data import shapes
from sparsediff_jax.evaluation import locality, memorization
from sparsediff_jax.images import make_grid, save_png

METRICS_FILE = 'research_metrics.json'
def generate_samples(config, graphdef, params, mesh, num: int) -> np.ndarray:
  """uint8 [num, H, W, C]: images 0..num-1 in batches of config.research.batch_size."""
  gen = generate.make_generator(config, graphdef, mesh)
  batch, out, start = config.research.batch_size, [], time.time()
  for lo in range(0, num, batch):
    # Always a full batch (one compilation); the surplus of the last one is dropped.
    out.append(gen(params, np.arange(lo, lo + batch))[:num - lo])
    done = lo + len(out[-1])
    logging.info('generated %d/%d images (%.1f images/s)', done, num,
                 done / max(time.time() - start, 1e-9))
  return np.concatenate(out)


def locality_times(formulation, n: int) -> np.ndarray:
  """The first n times of the sampler's n-step grid: from pure noise towards the data."""
  return np.asarray(formulation.time_grid(n))[:n]


def last_logged(workdir: str, tags=('loss', 'dense_loss')) -> dict[str, float]:
  """The newest logged value of each tag in WORKDIR's TensorBoard event files, as train_*."""
  from tensorboard.backend.event_processing import event_accumulator
  newest: dict[str, tuple[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    acc = event_accumulator.EventAccumulator(path, size_guidance={'tensors': 0, 'scalars': 0})
    acc.Reload()
    for tag in tags:
      events = []
      if tag in acc.Tags().get('tensors', []):
        events = [(e.step, float(np.asarray(_tensor_value(e.tensor_proto))))
                  for e in acc.Tensors(tag)]
      elif tag in acc.Tags().get('scalars', []):
        events = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
      for step, value in events:
        if tag not in newest or step >= newest[tag][0]:
          newest[tag] = (step, value)
  return {f'train_{tag}': value for tag, (_, value) in newest.items()}


def _tensor_value(proto):
  from tensorboard.util import tensor_util
  return tensor_util.make_ndarray(proto)


def evaluate_run(config, workdir: str) -> dict:
  """Computes, writes and returns the run's research metrics (see the module docstring)."""
  r = config.research
  run = state.restore_run(config, workdir)
  step, params, graphdef, mesh = run.step, run.params(config), run.graphdef, run.mesh
  logging.info('research metrics of %s at step %d', workdir, step)
  out_dir = os.path.join(workdir, 'research')
  metrics = {'step': step, 'num_samples': r.num_samples}

  samples = generate_samples(config, graphdef, params, mesh, r.num_samples)
  train_images = data.load_train_images(config)
  metrics['num_train_images'] = len(train_images)
  metrics.update(evaluate.dataset_metrics(config, samples, train_images))

  mem, neighbours = memorization.memorization_report(samples, train_images)
  metrics.update(mem)
  if config.data.name == 'shapes':
    # The floor of the measure: fresh images of the dataset (indices past the training
    # subset) that no model has seen; small images repeat by chance.
    d = config.data
    fresh = shapes.make_shapes(r.num_samples, d.image_size, d.shapes_pairs, d.shapes_seed,
                               start=len(train_images))
    f1, f2, _ = memorization.nearest_two(fresh, train_images)
    metrics.update(memorization.memorization_stats(f1, f2, 'reference_pixel_'))

  formulation = formulations.get_formulation(config.diffusion)
  x0 = train_images[:r.locality_images].astype(np.float32) / 127.5 - 1.0
  loc = locality.measure_locality(lambda p, x, c: nnx.merge(graphdef, p)(x, c), params,
                                  formulation, x0, locality_times(formulation, r.locality_times),
                                  seed=config.sampling.seed)
  metrics.update(locality.summary(loc))
  metrics.update(last_logged(workdir))

  if jax.process_index() == 0:
    rows = int(np.sqrt(min(64, len(samples))))
    save_png(os.path.join(out_dir, 'samples.png'),
             make_grid(samples[:rows * rows], rows=rows), upscale=2)
    memorization.save_memorization_grid(os.path.join(out_dir, 'memorization.png'), samples,
                                        train_images, neighbours, k=r.memorization_grid)
    run_name = os.path.basename(os.path.normpath(workdir))
    locality.save_locality_plot(os.path.join(out_dir, 'locality.png'), loc,
                                title=f'{run_name} (step {step})')
    write_metrics(workdir, metrics)
  logging.info('research metrics: %s', json.dumps(metrics, sort_keys=True))
  return metrics


def write_metrics(workdir: str, metrics: dict) -> str:
  """WORKDIR/research_metrics.json, written whole or not at all (rename is atomic)."""
  path = os.path.join(workdir, METRICS_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return path
