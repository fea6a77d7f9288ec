"""Scores of a set of generated samples against the run's training images.

- `generate_samples`: images 0..N-1 of a run's parameters (sample i's noise from
  (sampling.seed, i) only: every run and every checkpoint is scored on the same noise).
- `dataset_metrics`: the metrics the dataset registers (registry.DATASET_METRICS).
- `research_metrics`: memorization in pixel and Inception space plus the dataset's metrics
  (`--mode=eval`).
- `memorization_floor`: the memorization measure of fresh real images, the level a model
  that never saw the training set would reach.
"""

from absl import logging
import os
import time

import jax
import numpy as np

from sparsediff_jax import generate, registry
from sparsediff_jax.metrics import memorization
from sparsediff_jax.metrics.fid import features as feats
from sparsediff_jax.scoring import real_images


def generate_samples(config, graphdef, params, mesh, num: int, gen=None) -> np.ndarray:
  """uint8 [num, H, W, C]: images 0..num-1 in batches of config.research.batch_size.

  gen: a generate.make_generator function to reuse (its compiled sampler), or None.
  """
  gen = gen if gen is not None else generate.make_generator(config, graphdef, mesh)
  batch, out, start = config.research.batch_size, [], time.time()
  for lo in range(0, num, batch):
    # Always a full batch (one compilation); the surplus of the last one is dropped.
    out.append(gen(params, np.arange(lo, lo + batch))[:num - lo])
    done = lo + len(out[-1])
    logging.info('generated %d/%d images (%.1f images/s)', done, num,
                 done / max(time.time() - start, 1e-9))
  return np.concatenate(out)


def research_metrics(config, featurizer, mesh, samples: np.ndarray,
                     sample_features: np.ndarray, out_dir: str, step: int) -> dict:
  """Memorization of uint8 `samples` against every training image, in pixel space and in
  Inception feature space (`memorization_pixel_*`, `memorization_feature_*`), and the
  metrics its dataset registers (registry.DATASET_METRICS: shapes' global consistency,
  digits' classifier scores). Writes
  OUT_DIR/memorization_<step>.png: the most memorized samples over their nearest
  training images (pixel space)."""
  from sparsediff_jax import data   # imports TFDS; only needed here
  train_images = data.load_train_images(config)
  batches, _ = real_images.real_image_batches(config, mesh, config.eval.batch_size)
  _, train_features = feats.collect(featurizer, batches, keep=lambda idx: idx >= 0)
  mem, neighbours = memorization.memorization_report(
      samples, train_images, sample_features=sample_features, train_features=train_features)
  out = {f'memorization_{k}': v for k, v in mem.items()}
  out['memorization_samples'] = len(samples)
  out.update(dataset_metrics(config, samples, train_images))
  if jax.process_index() == 0:
    out['memorization_grid'] = memorization.save_memorization_grid(
        os.path.join(out_dir, f'memorization_{step}.png'), samples, train_images, neighbours,
        k=min(config.research.memorization_grid, len(samples)))
  return out


def dataset_metrics(config, samples: np.ndarray, train_images: np.ndarray) -> dict:
  """The sample metrics registered for config.data.name ({} when it has none)."""
  if config.data.name not in registry.DATASET_METRICS:
    return {}
  return registry.DATASET_METRICS.get(config.data.name)(config, samples, train_images)


def memorization_floor(config, num: int, train_images: np.ndarray) -> dict[str, float]:
  """'reference_pixel_*': the memorization measure of fresh real images of the dataset
  (registry.DATASET_FRESH: images outside the training subset, which no model has seen;
  small images repeat by chance) against train_images. {} when the dataset registers none
  or gives no image."""
  if config.data.name not in registry.DATASET_FRESH:
    return {}
  fresh = registry.DATASET_FRESH.get(config.data.name)(config, num, len(train_images))
  if len(fresh) == 0:
    return {}
  f1, f2, _ = memorization.nearest_two(np.asarray(fresh), train_images)
  return memorization.memorization_stats(f1, f2, 'reference_pixel_')
