"""`--mode=fid_stats`: the reference statistics that FID is measured against.

Inception statistics of the training images of config.data (the subset the model trains
on), written with their metadata, plus a seeded random subset of
config.eval.reference_features real feature rows for precision/recall and KID, to
scoring/fid_scores.reference_path (docs/evaluation.md).
"""

from absl import logging
import time

import jax
import numpy as np

from sparsediff_jax.errors import EvalInputError
from sparsediff_jax.metrics.fid import features as feats
from sparsediff_jax.metrics.fid import fid
from sparsediff_jax.scoring import fid_scores, real_images
from sparsediff_jax.modes.base import Mode


def run_fid_stats_mode(config, workdir: str) -> str:
  """Writes the reference statistics of config.data's training subset; returns the path."""
  from sparsediff_jax.runtime import sharding
  mesh = sharding.make_mesh()
  path = fid_scores.reference_path(config, workdir)
  batches, total = real_images.real_image_batches(config, mesh, config.eval.batch_size)
  if total < 2:
    raise EvalInputError(f'{total} training image(s) in config.data: reference statistics '
                         'need at least 2 (set config.data.num_train_examples)')
  featurizer = feats.Featurizer(config.eval, mesh)
  k = min(config.eval.reference_features, total)
  chosen = np.sort(np.random.default_rng(0).choice(total, k, replace=False))
  start = time.time()
  acc, subset = feats.collect(featurizer, batches, keep=lambda idx: np.isin(idx, chosen))
  meta = fid_scores.stats_metadata(config, 'train', acc.count, featurizer.sha256)
  if jax.process_index() == 0:
    fid.save_stats(path, acc.finalize(), meta, features=subset)   # atomic
    logging.info('wrote %s: %d images of %s (%s preprocessing) in %.1f s, %d kept features',
                 path, acc.count, config.data.name, meta.preprocessing, time.time() - start, k)
  return path


def summary(path: str, finished) -> tuple[str, str]:
  """The CLI's last two lines after --mode=fid_stats (console/summary.py)."""
  return f'reference statistics in {finished.took}; wrote {path}', finished.command('eval')


MODE = Mode(name='fid_stats', run=run_fid_stats_mode, summary=summary)
