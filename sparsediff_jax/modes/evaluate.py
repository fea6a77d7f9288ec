"""Sample-quality evaluation: `--mode=fid_stats`, `--mode=eval`, and FID during training.

- fid_stats: Inception statistics of the training images of config.data (the subset the
  model trains on), written with their metadata, plus a seeded random subset of
  config.eval.reference_features real feature rows for precision/recall and KID.
- eval: config.eval.num_samples images from the newest checkpoint (parameters chosen by
  config.sampling.ema_index), features streamed into float64 statistics, then FID, KID,
  precision/recall against the reference, written to WORKDIR/eval/metrics_<step>.json with
  a sample grid; for the first config.eval.memorization_samples samples also memorization
  (pixel and Inception space, against every training image) and, on shapes, global
  consistency (`research_metrics`). Statistics made with another resolution, preprocessing or Inception weights
  are refused before any sampling.
- make_train_fid: the same FID on config.eval.train_fid_samples images, as `fid_<n>`.

See docs/evaluation.md for usage.
"""

from absl import logging
import os
import time
import warnings
import zipfile
import zlib

import jax
import numpy as np

from sparsediff_jax.runtime import atomic_io
from sparsediff_jax import formulations, generate, samplers
from sparsediff_jax.console import progress
from sparsediff_jax.errors import EvalInputError
from sparsediff_jax.metrics.fid import features as feats
from sparsediff_jax.metrics.fid import fid

PR_NEIGHBOURS = 3       # k of the k-NN manifolds (Kynkaanniemi et al. 2019)
KID_SUBSETS = 100       # random subset pairs of the KID estimate
KID_SUBSET_SIZE = 1000  # their size (clipped to the available features)


def reference_path(config, workdir: str) -> str:
  """config.eval.reference_stats, or the default under WORKDIR/fid_stats/."""
  if config.eval.reference_stats:
    return config.eval.reference_stats
  name = f'{config.data.name}_{config.data.image_size}px_{config.eval.preprocessing}.npz'
  return os.path.join(workdir, 'fid_stats', name)


def _metadata(config, split: str, num_images: int, weights_sha256: str) -> fid.StatsMetadata:
  return fid.StatsMetadata(dataset=config.data.name, split=split,
                           resolution=config.data.image_size, num_images=num_images,
                           preprocessing=config.eval.preprocessing,
                           weights_sha256=weights_sha256)


def run_fid_stats_mode(config, workdir: str) -> str:
  """Writes the reference statistics of config.data's training subset; returns the path."""
  from sparsediff_jax.runtime import sharding
  mesh = sharding.make_mesh()
  path = reference_path(config, workdir)
  batches, total = feats.real_image_batches(config, mesh, config.eval.batch_size)
  if total < 2:
    raise EvalInputError(f'{total} training image(s) in config.data: reference statistics '
                         'need at least 2 (set config.data.num_train_examples)')
  featurizer = feats.Featurizer(config.eval, mesh)
  k = min(config.eval.reference_features, total)
  chosen = np.sort(np.random.default_rng(0).choice(total, k, replace=False))
  start = time.time()
  acc, subset = feats.collect(featurizer, batches, keep=lambda idx: np.isin(idx, chosen))
  meta = _metadata(config, 'train', acc.count, featurizer.sha256)
  if jax.process_index() == 0:
    fid.save_stats(path, acc.finalize(), meta, features=subset)   # atomic
    logging.info('wrote %s: %d images of %s (%s preprocessing) in %.1f s, %d kept features',
                 path, acc.count, config.data.name, meta.preprocessing, time.time() - start, k)
  return path


def load_reference(config, workdir: str):
  """(stats, metadata, feature subset or None, path) of the reference statistics.

  Raises EvalInputError when the file is missing or unreadable, and StatsMismatchError when
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
  _check_reference(path, meta, config)
  if meta.dataset != config.data.name:
    logging.warning('reference statistics %s are of dataset %r, the config trains on %r',
                    path, meta.dataset, config.data.name)
  return stats, meta, real, path


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


def _check_reference(path: str, ref_meta: fid.StatsMetadata, config, weights_sha256=None):
  """StatsMismatchError (naming the file and the field) unless the reference was made with
  the config's resolution and preprocessing and, when given, the same Inception weights."""
  fields = ('resolution', 'preprocessing') + (('weights_sha256',) if weights_sha256 else ())
  try:
    fid.check_compatible(ref_meta, _metadata(config, 'generated', 0, weights_sha256), fields)
  except fid.StatsMismatchError as e:
    raise fid.StatsMismatchError(
        f'{path}: {e}, reference vs config; make the reference again with --mode=fid_stats '
        'and this config, or point config.eval.reference_stats at a matching file') from e


def run_eval_mode(config, workdir: str) -> dict:
  """Generates, featurizes and scores config.eval.num_samples images; returns the metrics
  written to WORKDIR/eval/metrics_<step>.json."""
  e, s = config.eval, config.sampling
  from sparsediff_jax.runtime import state
  state.require_checkpoint(workdir)   # the cheap refusals first
  ref_stats, ref_meta, ref_features, ref_path = load_reference(config, workdir)
  run = state.restore_run(config, workdir)
  step, params, graphdef, mesh = run.step, run.params(config), run.graphdef, run.mesh
  featurizer = feats.Featurizer(e, mesh)
  _check_reference(ref_path, ref_meta, config, featurizer.sha256)
  n = e.num_samples
  if n < 2:
    raise EvalInputError(f'config.eval.num_samples={n}: FID needs at least 2 samples')
  nfe = samplers.num_evaluations(formulations.get_formulation(config.diffusion), s.sampler,
                                 s.num_steps)
  m = min(e.memorization_samples, n)
  keeper = generate.ImageKeeper(max(s.grid_size ** 2, m), keep_all=s.save_npz)
  with progress.phase('compiling the sampler'):   # and refused if it cannot fit
    generate.check_sampler_fits(config, graphdef, mesh, params, e.batch_size)
  start = time.time()
  acc, gen_features = generated_features(
      config, featurizer, generate.make_batch_sampler(config, graphdef, mesh), params, n,
      batch_size=e.batch_size, keep_first=max(e.reference_features, m), keeper=keeper,
      desc=f'eval: sampling ({s.sampler}, {nfe} NFE) + features')
  elapsed = time.time() - start
  metrics = sample_metrics(acc.finalize(), gen_features[:e.reference_features], ref_stats,
                           ref_features)
  if m:
    metrics.update(research_metrics(config, featurizer, mesh, keeper.images()[:m],
                                    gen_features[:m], os.path.join(workdir, 'eval'), step))
  metrics.update(
      step=step, num_samples=acc.count, nfe=nfe, sampler=s.sampler, num_steps=s.num_steps,
      time_steps=s.time_steps, seed=s.seed, ema_index=s.ema_index,
      ema_decay=state.inference_ema_decay(config), reference=(
          ref_path if atomic_io.is_remote(ref_path) else os.path.abspath(ref_path)),
      reference_dataset=ref_meta.dataset, reference_split=ref_meta.split,
      reference_num_images=ref_meta.num_images, resolution=config.data.image_size,
      preprocessing=e.preprocessing, inception_weights_sha256=featurizer.sha256,
      seconds=round(elapsed, 2), images_per_sec=round(acc.count / max(elapsed, 1e-9), 3))
  # A rerun (another sampler, more samples) never overwrites: metrics_<step>-2.json, ...
  base = os.path.join(workdir, 'eval', f'samples_{step}')
  prefix = generate.unused_prefix(base, also=(os.path.join(workdir, 'eval', f'metrics_{step}'),))
  suffix = prefix[len(base):]
  metrics['samples'] = generate.write_images(config, keeper, prefix, dict(
      step=step, seed=s.seed, sampler=s.sampler, nfe=nfe, ema_index=s.ema_index))
  if jax.process_index() == 0:
    path = os.path.join(workdir, 'eval', f'metrics_{step}{suffix}.json')
    atomic_io.write_json(path, metrics)
    logging.info('step %d: FID %.3f over %d samples (%s, %d NFE); wrote %s', step,
                 metrics['fid'], acc.count, s.sampler, nfe, path)
  return metrics


def research_metrics(config, featurizer, mesh, samples: np.ndarray,
                     sample_features: np.ndarray, out_dir: str, step: int) -> dict:
  """Memorization of uint8 `samples` against every training image, in pixel space and in
  Inception feature space (`memorization_pixel_*`, `memorization_feature_*`), and the
  metrics its dataset registers (registry.DATASET_METRICS: shapes' global consistency,
  digits' classifier scores). Writes
  OUT_DIR/memorization_<step>.png: the most memorized samples over their nearest
  training images (pixel space)."""
  from sparsediff_jax import data   # imports TFDS; only needed here
  from sparsediff_jax.metrics import memorization
  train_images = data.load_train_images(config)
  batches, _ = feats.real_image_batches(config, mesh, config.eval.batch_size)
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
  from sparsediff_jax import registry
  if config.data.name not in registry.DATASET_METRICS:
    return {}
  return registry.DATASET_METRICS.get(config.data.name)(config, samples, train_images)


def train_fid_hook(config, graphdef, mesh, workdir: str):
  """The training loop's hook (train.EvalHook): (eval.train_fid_every, make_train_fid's
  function), or None when config.eval.train_fid_every is 0."""
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
  _check_reference(ref_path, ref_meta, config, featurizer.sha256)
  sample_batch = generate.make_batch_sampler(config, graphdef, mesh)
  n, n_dev = e.train_fid_samples, mesh.devices.size
  batch = -(-min(e.batch_size, n) // n_dev) * n_dev
  name = f'fid_{n}'

  from sparsediff_jax.runtime.state import inference_params

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
