"""`--mode=eval`: sample quality of the newest checkpoint against reference statistics.

config.eval.num_samples images from the newest checkpoint (parameters chosen by
config.sampling.ema_index), features streamed into float64 statistics, then FID, KID,
precision/recall against the reference of --mode=fid_stats (scoring/fid_scores.py),
written to WORKDIR/eval/metrics_<step>.json with a sample grid; for the first
config.eval.memorization_samples samples also memorization (pixel and Inception space,
against every training image) and the dataset's own metrics
(scoring/sample_scores.research_metrics). Statistics made with another resolution,
preprocessing or Inception weights are refused before any sampling.

See docs/evaluation.md for usage.
"""

from absl import logging
import os
import time

import jax

from sparsediff_jax import formulations, generate, samplers
from sparsediff_jax.console import progress
from sparsediff_jax.errors import EvalInputError
from sparsediff_jax.metrics.fid import features as feats
from sparsediff_jax.scoring import fid_scores, sample_scores
from sparsediff_jax.modes.base import Mode
from sparsediff_jax.runtime import atomic_io, checkpoints
from sparsediff_jax import train_state as state


def run_eval_mode(config, workdir: str) -> dict:
  """Generates, featurizes and scores config.eval.num_samples images; returns the metrics
  written to WORKDIR/eval/metrics_<step>.json."""
  e, s = config.eval, config.sampling
  state.require_checkpoint(workdir)   # the cheap refusals first
  atomic_io.check_can_write('eval', [os.path.join(workdir, 'eval')])
  identity = checkpoints.run_identity(workdir)   # checked again before writing
  ref_stats, ref_meta, ref_features, ref_path = fid_scores.load_reference(config, workdir)
  run = state.restore_run(config, workdir)
  step, params, graphdef, mesh = run.step, run.params(config), run.graphdef, run.mesh
  featurizer = feats.Featurizer(e, mesh)
  fid_scores.check_reference(ref_path, ref_meta, config, featurizer.sha256)
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
  acc, gen_features = fid_scores.generated_features(
      config, featurizer, generate.make_batch_sampler(config, graphdef, mesh), params, n,
      batch_size=e.batch_size, keep_first=max(e.reference_features, m), keeper=keeper,
      desc=f'eval: sampling ({s.sampler}, {nfe} NFE) + features')
  elapsed = time.time() - start
  metrics = fid_scores.sample_metrics(acc.finalize(), gen_features[:e.reference_features],
                                   ref_stats, ref_features)
  checkpoints.check_run_unchanged(workdir, identity, 'eval')
  if m:
    metrics.update(sample_scores.research_metrics(config, featurizer, mesh,
                                                  keeper.images()[:m], gen_features[:m],
                                                  os.path.join(workdir, 'eval'), step))
  metrics.update(
      step=step, num_samples=acc.count, nfe=nfe, sampler=s.sampler, num_steps=s.num_steps,
      time_steps=s.time_steps, seed=s.seed, ema_index=s.ema_index,
      ema_decay=state.inference_ema_decay(config), reference=(
          ref_path if atomic_io.is_remote(ref_path) else os.path.abspath(ref_path)),
      reference_dataset=ref_meta.dataset, reference_split=ref_meta.split,
      reference_num_images=ref_meta.num_images, resolution=config.data.image_size,
      preprocessing=e.preprocessing, inception_weights_sha256=featurizer.sha256,
      seconds=round(elapsed, 2), images_per_sec=round(acc.count / max(elapsed, 1e-9), 3))
  # A rerun (another sampler, more samples) never overwrites: metrics_<step>-2.json, ...,
  # and evaluations started together each reserve their own name.
  base = os.path.join(workdir, 'eval', f'samples_{step}')
  with atomic_io.reserved_prefix(base, also=(os.path.join(workdir, 'eval', f'metrics_{step}'),),
                                 reserve=jax.process_index() == 0) as prefix:
    suffix = prefix[len(base):]
    checkpoints.check_run_unchanged(workdir, identity, 'eval')
    metrics['samples'] = generate.write_images(config, keeper, prefix, dict(
        step=step, seed=s.seed, sampler=s.sampler, nfe=nfe, ema_index=s.ema_index))
    if jax.process_index() == 0:
      path = os.path.join(workdir, 'eval', f'metrics_{step}{suffix}.json')
      atomic_io.write_json(path, metrics)
      logging.info('step %d: FID %.3f over %d samples (%s, %d NFE); wrote %s', step,
                   metrics['fid'], acc.count, s.sampler, nfe, path)
  return metrics


def summary(metrics: dict, finished) -> tuple[str, str]:
  """The CLI's last two lines after --mode=eval (console/summary.py)."""
  fid = metrics.get('fid')
  score = f'FID {fid:.3f}' if isinstance(fid, (int, float)) else 'evaluated'
  return (f'{score} at step {metrics.get("step")} over {metrics.get("num_samples")} samples '
          f'in {finished.took}; wrote {finished.workdir}/eval/', finished.tensorboard())


MODE = Mode(name='eval', run=run_eval_mode, summary=summary, reads_run=True)
