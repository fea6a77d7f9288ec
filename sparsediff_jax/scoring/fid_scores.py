"""FID, KID and precision/recall of a run's samples against reference statistics.

- `reference_path`, `load_reference`, `check_reference`: the reference statistics of
  `--mode=fid_stats` (Inception moments of the training images, a feature subset) and the
  checks that they were made like the samples' (resolution, preprocessing, weights).
- `generated_features`, `sample_metrics`: features of N generated images streamed into
  float64 statistics, and the scores of those against the reference.
- `make_train_fid` / `train_fid_hook`: the same FID on config.eval.train_fid_samples images
  while training (a hook of the training loop), as `fid_<n>`.

See docs/evaluation.md for usage.
"""

from absl import logging
import os
import warnings
import zipfile
import zlib

import numpy as np

from sparsediff_jax import generate
from sparsediff_jax.errors import EvalInputError
from sparsediff_jax.metrics.fid import features as feats
from sparsediff_jax.metrics.fid import fid
from sparsediff_jax.runtime import atomic_io

PR_NEIGHBOURS = 3       # k of the k-NN manifolds (Kynkaanniemi et al. 2019)
KID_SUBSETS = 100       # random subset pairs of the KID estimate
KID_SUBSET_SIZE = 1000  # their size (clipped to the available features)


def reference_path(config, workdir: str) -> str:
  """config.eval.reference_stats, or the default under WORKDIR/fid_stats/."""
  if config.eval.reference_stats:
    return config.eval.reference_stats
  name = f'{config.data.name}_{config.data.image_size}px_{config.eval.preprocessing}.npz'
  return os.path.join(workdir, 'fid_stats', name)


def stats_metadata(config, split: str, num_images: int,
                   weights_sha256: str) -> fid.StatsMetadata:
  """What statistics of config.data made with these weights are (fid.check_compatible)."""
  return fid.StatsMetadata(dataset=config.data.name, split=split,
                           resolution=config.data.image_size, num_images=num_images,
                           preprocessing=config.eval.preprocessing,
                           weights_sha256=weights_sha256)


def load_reference(config, workdir: str):
  """(stats, metadata, feature subset or None, path) of the reference statistics.

  Raises EvalInputError when the file is missing or unreadable or its arrays are not
  statistics of Inception features (check_reference_arrays), and StatsMismatchError when
  its resolution or preprocessing differs from the config's (checked before any work).
  """
  path = reference_path(config, workdir)
  if not atomic_io.exists(path):
    raise EvalInputError(
        f'no reference statistics at {path}; make them with --mode=fid_stats (same --config '
        'and --workdir) or point config.eval.reference_stats at an existing file')
  try:
    stats, meta = fid.load_stats(path)
    real = fid.load_features(path)
  except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
          zlib.error) as e:   # a truncated or damaged .npz (a zip archive)
    raise EvalInputError(f'{path}: not readable as reference statistics ({type(e).__name__}: '
                         f'{e}); make it again with --mode=fid_stats') from e
  check_reference_arrays(path, stats, real)
  check_reference(path, meta, config)
  if meta.dataset != config.data.name:
    logging.warning('reference statistics %s are of dataset %r, the config trains on %r',
                    path, meta.dataset, config.data.name)
  return stats, meta, real, path


def check_reference_arrays(path: str, stats: fid.FeatureStats, features,
                           dim: int = feats.FEATURE_DIM) -> None:
  """EvalInputError naming the file and the array unless mu is [dim], sigma [dim, dim] and
  the feature subset (if any) [K, dim], all finite: a NaN would hang the FID's matrix
  square root, a wrong shape fail after all the sampling."""
  arrays = (('mu', stats.mu, (dim,)), ('sigma', stats.sigma, (dim, dim)))
  if features is not None:
    arrays += (('features', features, (features.shape[0] if features.ndim else 0, dim)),)
  for name, array, shape in arrays:
    if array.shape != shape:
      problem = (f'has shape {list(array.shape)}, expected {list(shape)} (Inception pool3 '
                 f'features have {dim} dimensions)')
    elif not np.all(np.isfinite(array)):
      problem = f'holds {int(np.sum(~np.isfinite(array)))} NaN or inf values'
    else:
      continue
    raise EvalInputError(f'{path}: reference statistics array {name!r} {problem}; make the '
                         'file again with --mode=fid_stats')


def generated_features(config, featurizer, sample_batch, params, num_samples: int, *,
                       batch_size: int, keep_first: int = 0, keeper=None, desc='eval'):
  """(float64 accumulator, features of samples 0..keep_first - 1) of num_samples samples."""
  def batches():
    for images, indices in generate.sample_batches(sample_batch, params, num_samples,
                                                   batch_size, desc=desc):
      if keeper is not None:
        keeper.add(images, indices)
      yield images, indices
  return feats.collect(featurizer, batches(), keep=lambda idx: (idx >= 0) & (idx < keep_first))


def sample_metrics(gen: fid.FeatureStats, gen_features: np.ndarray, ref: fid.FeatureStats,
                   ref_features: np.ndarray | None) -> dict:
  """FID from the moments; KID and precision/recall from the feature subsets (None when
  either subset is too small: KID needs 2 rows, precision/recall more than k = 3)."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    out = {'fid': fid.fid_from_stats(gen, ref)}
  if caught:   # fid_from_stats warns when a set is too small for a full-rank covariance
    out['fid_note'] = '; '.join(str(w.message) for w in caught)
  out.update(kid=None, kid_std=None, precision=None, recall=None)
  n_ref = 0 if ref_features is None else len(ref_features)
  n = min(n_ref, len(gen_features))
  if n >= 2:
    out['kid'], out['kid_std'] = fid.kernel_inception_distance(
        gen_features, ref_features, num_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE)
  if n > PR_NEIGHBOURS:
    out['precision'], out['recall'] = fid.precision_recall(ref_features, gen_features,
                                                           k=PR_NEIGHBOURS)
  out.update(num_kid_pr_features_generated=len(gen_features),
             num_kid_pr_features_reference=n_ref)
  return out


def check_reference(path: str, ref_meta: fid.StatsMetadata, config, weights_sha256=None):
  """StatsMismatchError (naming the file and the field) unless the reference was made with
  the config's resolution and preprocessing and, when given, the same Inception weights."""
  fields = ('resolution', 'preprocessing') + (('weights_sha256',) if weights_sha256 else ())
  try:
    fid.check_compatible(ref_meta, stats_metadata(config, 'generated', 0, weights_sha256),
                         fields)
  except fid.StatsMismatchError as e:
    raise fid.StatsMismatchError(
        f'{path}: {e}, reference vs config; make the reference again with --mode=fid_stats '
        'and this config, or point config.eval.reference_stats at a matching file') from e


def train_fid_hook(config, graphdef, mesh, workdir: str):
  """The training loop's hook (EvalHook in modes/train.py): (eval.train_fid_every,
  make_train_fid's function), or None when config.eval.train_fid_every is 0."""
  fn = make_train_fid(config, graphdef, mesh, workdir)
  return None if fn is None else (config.eval.train_fid_every, fn)


def make_train_fid(config, graphdef, mesh, workdir: str):
  """fn(train_state) -> {'fid_<n>': value} on config.eval.train_fid_samples samples, or
  None when config.eval.train_fid_every is 0.

  Loads the reference and Inception at once, so a missing file stops training before the
  first step. With few samples FID is biased upward; `fid_<n>` values compare only with
  each other (the same samples' noise every time, so checkpoints differ by the model only).
  """
  e = config.eval
  if not e.train_fid_every:
    return None
  ref_stats, ref_meta, _, ref_path = load_reference(config, workdir)
  featurizer = feats.Featurizer(e, mesh)
  check_reference(ref_path, ref_meta, config, featurizer.sha256)
  sample_batch = generate.make_batch_sampler(config, graphdef, mesh)
  n, n_dev = e.train_fid_samples, mesh.devices.size
  batch = -(-min(e.batch_size, n) // n_dev) * n_dev
  name = f'fid_{n}'

  from sparsediff_jax.train_state import inference_params

  def train_fid(train_state) -> dict:
    acc, _ = generated_features(config, featurizer, sample_batch,
                                inference_params(config, train_state), n, batch_size=batch,
                                desc=name)
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')   # the small-sample bias is the documented point
      value = fid.fid_from_stats(acc.finalize(), ref_stats)
    logging.info('%s = %.3f (small-sample estimate on %d samples: biased upward, compare '
                 'only with other %s values)', name, value, n, name)
    return {name: value}

  return train_fid
