"""One run's research metrics: `--mode=research` writes WORKDIR/research_metrics.json.

`evaluate_run(config, workdir)` restores the newest checkpoint (state.restore_run: FSDP
shardings, damaged-step fallback) and, with the parameters sampling.ema_index names:
  * generates config.research.num_samples images (`generate.make_generator`; sample i's
    noise depends on (sampling.seed, i) only, so every run of a sweep is scored on the
    same noise);
  * the metrics the dataset registers (registry.DATASET_METRICS: global consistency on
    shapes, the classifier scores on digits);
  * memorization against the whole training set in pixel space (`memorization`), and
    the same measure for fresh real images of the dataset (its floor, 'reference_pixel_*':
    the images registry.DATASET_FRESH gives for data.name; none when it has no entry);
  * context use of the denoiser on noisy training images (`locality`);
  * the training losses of the last logged window (from the run's TensorBoard events).
It writes WORKDIR/research_metrics.json (flat floats, what `launch/sweep.py` aggregates,
and the settings that produced them: checkpoint step, sampler, sampling_steps,
sampling_seed, sampling_time_steps, sampling_rho, sampling_s_churn, num_samples, ema_index,
ema_decay, allow_other_data) and
WORKDIR/research/{samples,memorization,locality}.png. A rerun never overwrites: it writes
research_metrics-2.json, research/samples-2.png, ... (the first suffix no output has yet;
sweep_table.newest_metrics_file finds the newest). The console shows a short table of the
headline metrics (headline_lines) and the path of the JSON file.

Before scoring, the training data is checked against WORKDIR/dataset.json as a resume does
(run_dir.check_same_data): memorization against other images would mean nothing. A change
is refused (ConfigMismatchError, exit 2) unless research.allow_other_data=True.

With research.trajectory=True it also scores EVERY checkpoint on disk, oldest first, each
restored by state.restore_run(config, workdir, step=S), with the cheap subset of the
metrics: pixel memorization of the same num_samples samples (same noise at every step;
one compiled sampler for all steps) and the dataset's metrics, plus the losses logged at
or before S. It writes WORKDIR/research/trajectory.json (a list of {'step', 'pixel_*',
<dataset metrics>, 'train_loss', 'train_dense_loss'}) and trajectory.png, and adds to the
metrics `trajectory_length` (checkpoints scored), `trajectory_missing_steps` (listed, but
deleted by a live trainer before they were read) and `memorization_onset_step`: the first
scored step at which at least ONSET_FRACTION of the samples are memorized, NaN when no
scored step reaches it (so its resolution is training.checkpoint_every); left out, with
`memorization_onset_note` saying why, when a missing step could hold it
(trajectory.onset_report).

Command line: e.g. python -m sparsediff_jax.main --workdir=runs/x --mode=research. The
fields that define the run come from WORKDIR/config.json (run_dir.bind_to_run); an
override that contradicts them is refused.
"""

from absl import logging
import contextlib
import os

import jax
import numpy as np
from flax import nnx

from sparsediff_jax import data, errors, formulations, generate
from sparsediff_jax.console.images import make_grid, save_png
from sparsediff_jax.metrics import locality, memorization
from sparsediff_jax.scoring import window_scoring
from sparsediff_jax.scoring.sample_scores import (dataset_metrics, generate_samples,
                                                  memorization_floor)
from sparsediff_jax.scoring.trajectory import (TRAJECTORY_FILE, last_logged, logged_at,
                                               logged_series, onset_report,
                                               save_trajectory_plot, trajectory_entry,
                                               write_trajectory)
from sparsediff_jax.modes.base import Mode
from sparsediff_jax.runtime import atomic_io, checkpoints, run_dir
from sparsediff_jax import train_state as state
from sparsediff_jax.sweeps import sweep_table

METRICS_FILE = 'research_metrics.json'


def locality_times(formulation, n: int) -> np.ndarray:
  """The first n times of the sampler's n-step grid: from pure noise towards the data."""
  return np.asarray(formulation.time_grid(n))[:n]


def checkpoint_steps(workdir: str) -> list[int]:
  """The checkpoint steps in WORKDIR/checkpoints, ascending (read-only: nothing trimmed)."""
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  try:
    return ckpt.all_steps()
  finally:
    ckpt.close()


def evaluate_trajectory(config, workdir: str, gen, mesh, train_images: np.ndarray,
                        newest: dict, like=None) -> tuple[list[dict], list[int]]:
  """(trajectory entries of every checkpoint on disk up to newest['step'], oldest first;
  the listed steps that could not be read).

  gen: the generate.make_generator function (one compiled sampler for every step).
  newest: the entry of the newest step, already computed by evaluate_run (reused).
  like: the newest step's state.Restored: the restore target of the others (traced once).
  A checkpoint that cannot be read (a live trainer deleted it meanwhile) is left out with a
  warning, and counted as missing.
  """
  series = logged_series(workdir)
  out, missing = [], []
  for step in checkpoint_steps(workdir):
    if step == newest['step']:
      out.append(newest)
      continue
    if step > newest['step']:
      continue
    try:
      run = state.restore_run(config, workdir, mesh=mesh, step=step, like=like)
    except errors.CheckpointError as e:
      logging.warning('trajectory: checkpoint %d left out: %s', step, e)
      missing.append(step)
      continue
    samples = generate_samples(config, run.graphdef, run.params(config), mesh,
                               config.research.num_samples, gen=gen)
    mem, _ = memorization.memorization_report(samples, train_images)
    dataset = dataset_metrics(config, samples, train_images)
    out.append(trajectory_entry(step, {**mem, **dataset}, dataset, logged_at(series, step)))
    logging.info('trajectory: step %d: memorized fraction %.3f', step,
                 mem['pixel_memorized_fraction'])
  return out, missing


def evaluate_run(config, workdir: str) -> dict:
  """Computes, writes and returns the run's research metrics (see the module docstring)."""
  state.require_checkpoint(workdir)
  atomic_io.check_can_write('research', [workdir, os.path.join(workdir, 'research')])
  check_training_data(config, workdir)
  identity = checkpoints.run_identity(workdir)   # checked again before each write
  with output_suffix(workdir) as suffix:   # reserved until everything is written
    return _evaluate_run(config, workdir, suffix,
                         lambda: checkpoints.check_run_unchanged(workdir, identity, 'research'))


def _evaluate_run(config, workdir: str, suffix: str, check_unchanged) -> dict:
  r, s = config.research, config.sampling
  run = state.restore_run(config, workdir)
  step, params, graphdef, mesh = run.step, run.params(config), run.graphdef, run.mesh
  logging.info('research metrics of %s at step %d', workdir, step)
  out_dir = os.path.join(workdir, 'research')
  out = lambda name: sweep_table.with_suffix(os.path.join(out_dir, name), suffix)
  metrics = {'step': step, 'num_samples': r.num_samples, 'sampler': s.sampler,
             'sampling_steps': s.num_steps, 'sampling_seed': s.seed,
             'sampling_time_steps': s.time_steps, 'sampling_rho': s.rho,
             'sampling_s_churn': s.s_churn, 'allow_other_data': bool(r.allow_other_data),
             'ema_index': s.ema_index, 'ema_decay': state.inference_ema_decay(config)}

  generate.check_sampler_fits(config, graphdef, mesh, params, r.batch_size)   # else refused
  gen = generate.make_generator(config, graphdef, mesh)
  samples = generate_samples(config, graphdef, params, mesh, r.num_samples, gen=gen)
  train_images = data.load_train_images(config)
  metrics['num_train_images'] = len(train_images)
  dataset = dataset_metrics(config, samples, train_images)
  metrics.update(dataset)

  mem, neighbours = memorization.memorization_report(samples, train_images)
  metrics.update(mem)
  metrics.update(memorization_floor(config, r.num_samples, train_images))

  formulation = formulations.get_formulation(config.diffusion)
  x0 = train_images[:r.locality_images].astype(np.float32) / 127.5 - 1.0
  loc = locality.measure_locality(lambda p, x, c: nnx.merge(graphdef, p)(x, c), params,
                                  formulation, x0, locality_times(formulation, r.locality_times),
                                  seed=config.sampling.seed)
  metrics.update(locality.summary(loc))
  logged = last_logged(workdir)
  metrics.update(logged)

  trajectory = None
  if r.trajectory:
    newest = trajectory_entry(step, metrics, dataset, logged)
    trajectory, missing = evaluate_trajectory(config, workdir, gen, mesh, train_images,
                                              newest, like=run)
    metrics.update(onset_report([e['step'] for e in trajectory],
                                [e['pixel_memorized_fraction'] for e in trajectory], missing))
    if missing:
      logging.warning('trajectory: %d of %d listed checkpoints could not be read (%s); '
                      'memorization onset: %s', len(missing), len(missing) + len(trajectory),
                      missing, metrics.get('memorization_onset_note',
                                           metrics.get('memorization_onset_step')))

  check_unchanged()
  if jax.process_index() == 0:   # scored while training (research.window_every), if it was
    metrics.update(window_scoring.report(config, workdir, train_images,
                                         out('window_tau_gen.png')))

  check_unchanged()
  if jax.process_index() == 0:
    rows = int(np.sqrt(min(64, len(samples))))
    save_png(out('samples.png'),
             make_grid(samples[:rows * rows], rows=rows), upscale=2)
    memorization.save_memorization_grid(out('memorization.png'), samples,
                                        train_images, neighbours, k=r.memorization_grid)
    run_name = os.path.basename(os.path.normpath(workdir))
    locality.save_locality_plot(out('locality.png'), loc,
                                title=f'{run_name} (step {step})')
    if trajectory is not None:
      write_trajectory(workdir, trajectory, suffix)
      save_trajectory_plot(out('trajectory.png'), trajectory,
                           floor=metrics.get('reference_pixel_memorized_fraction'),
                           title=run_name)
    check_unchanged()
    metrics_file = write_metrics(workdir, metrics, suffix)
  for line in headline_lines(config, metrics, metrics_file if jax.process_index() == 0
                             else None):
    logging.info('%s', line)
  return {**metrics, 'metrics_file': metrics_file} if jax.process_index() == 0 else metrics


def headline_lines(config, metrics: dict, path: str | None) -> list[str]:
  """What the console shows of the metrics: a short table of the dataset's headline metrics
  and the generic ones (sweep_table.headline) that were computed, and where all are."""
  names = [n for n in sweep_table.headline([config.data.name]) if n in metrics]
  for extra in ('memorization_onset_step', 'memorization_onset_note'):
    if extra in metrics:
      names.append(extra)
  width = max(map(len, names), default=0)
  lines = [f'research metrics at step {metrics["step"]} ({metrics["num_samples"]} samples, '
           f'{metrics["sampler"]}, {metrics["sampling_steps"]} steps):']
  for name in names:
    value = metrics[name]
    lines.append(f'  {name:<{width}}  {value:.4g}' if isinstance(value, float) else
                 f'  {name:<{width}}  {value}')
  if path:
    lines.append(f'all {len(metrics)} metrics: {path}')
  return lines


@contextlib.contextmanager
def output_suffix(workdir: str):
  """'' for the first research run of WORKDIR, then '-2', '-3', ...: the first suffix with
  no research_metrics, research/samples or research/trajectory output yet, reserved while
  the body runs (atomic_io.reserved_prefix: research runs started together each get their
  own); a failed run leaves no empty research/ folder."""
  base = os.path.join(workdir, 'research', 'samples')
  with atomic_io.reserved_prefix(base, also=(
      os.path.join(workdir, os.path.splitext(METRICS_FILE)[0]),
      os.path.join(workdir, 'research', os.path.splitext(TRAJECTORY_FILE)[0])),
      reserve=jax.process_index() == 0) as prefix:
    yield prefix[len(base):]


def check_training_data(config, workdir: str) -> None:
  """ConfigMismatchError when the training data differs from WORKDIR/dataset.json (what
  the run trained on), unless research.allow_other_data; then a warning."""
  try:
    run_dir.check_same_data(data.describe_dataset(config), workdir,
                            'or set --config.research.allow_other_data=True to score anyway')
  except errors.ConfigMismatchError as e:
    if not config.research.allow_other_data:
      raise
    logging.warning('%s (scoring anyway: research.allow_other_data=True)', e)


def write_metrics(workdir: str, metrics: dict, suffix: str = '') -> str:
  """WORKDIR/research_metrics{suffix}.json, written whole or not at all."""
  path = sweep_table.with_suffix(os.path.join(workdir, METRICS_FILE), suffix)
  atomic_io.write_json(path, metrics, sort_keys=True)
  return path


def summary(metrics: dict, finished) -> tuple[str, str]:
  """The CLI's last two lines after --mode=research (console/summary.py)."""
  written = metrics.get('metrics_file', f'{finished.workdir}/research_metrics.json')
  return (f'research metrics of step {metrics.get("step")} in {finished.took}; wrote '
          f'{written} and {finished.workdir}/research/', finished.tensorboard())


MODE = Mode(name='research', run=evaluate_run, summary=summary, reads_run=True)
