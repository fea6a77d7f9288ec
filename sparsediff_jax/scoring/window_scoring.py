"""Scoring checkpoints WHILE a run trains, and stopping it once memorization has decided.

With research.window_every = k > 0 the training loop (modes/train.py) calls `hook` every k
steps: it generates research.num_samples images from the parameters sampling.ema_index
names (sample i's noise from (sampling.seed, i): the same noise at every step), and records
their pixel memorization (d1/d2 < 1/3 against the training set) and the dataset's quality
metrics (registry.DATASET_METRICS) as one entry of WORKDIR/research/window_trajectory.json
(the 16 first samples go to research/window_samples/<step>.npz, for the sample grids at
tau_gen). With research.window_stop = q > 0 the run then stops as soon as its memorized
fraction has reached q: checkpointed at that step, it ends as a finished run (exit 0), so
decided runs stop early while the others go on to training.num_steps (the cap). With
research.window_cap_factor = f > 0 the cap is the run's own: it stops once BOTH its tau_gen
(the dataset's headline quality target, the first of window.DEFAULT_TARGETS) and its
memorized fraction q are reached, or at the first scored step at or past f x its own
tau_gen; training.num_steps then only bounds a run that never reaches quality.

Each entry also holds the quality metrics counted over the novel samples only (not copies:
d1/d2 >= 1/3), as `novel_<metric>` (None when fewer than window.MIN_NOVEL are novel), and
`novel_count`: the copy-proof quality targets (window.py) read them.

A stopped run is the run trained straight to that step: scoring reads the state and changes
nothing. A resumed run re-scores a step it had scored before its checkpoint (the same
numbers: same parameters, same noise) and, resumed at the step where it stopped, does not
train further. `metrics/window.py` turns the trajectory into tau_gen, tau_mem and the
window; --mode=research adds them to research_metrics.json.
"""

from absl import logging
import io
import json
import os

import numpy as np

from sparsediff_jax.runtime import atomic_io
from sparsediff_jax import data
from sparsediff_jax.metrics import memorization, window
from sparsediff_jax.scoring import sample_scores

TRAJECTORY_FILE = os.path.join('research', 'window_trajectory.json')
SAMPLES_DIR = os.path.join('research', 'window_samples')
KEPT_SAMPLES = 16   # samples saved per scored step (uint8, for the grids at tau_gen)


def read_trajectory(workdir: str) -> list[dict]:
  """WORKDIR's window trajectory, ascending steps ([] when none was written)."""
  text = atomic_io.read_text(os.path.join(workdir, TRAJECTORY_FILE))
  return [] if text is None else sorted(json.loads(text), key=lambda e: e['step'])


def decided(trajectory: list[dict], step: int, stop_fraction: float,
            cap_factor: float = 0.0, quality: dict | None = None) -> bool:
  """Whether the run has decided by `step` (entries after it are not read).

  cap_factor 0: an entry has memorized fraction >= stop_fraction > 0. cap_factor > 0
  (quality: {metric: target}, its first item read): tau_gen is reached and either the
  memorized fraction has reached stop_fraction > 0 or `step` >= cap_factor x tau_gen.
  """
  seen = [e for e in trajectory if e['step'] <= step]
  memorized = stop_fraction > 0 and any(
      e['pixel_memorized_fraction'] >= stop_fraction for e in seen)
  if cap_factor <= 0:
    return memorized
  metric, target = next(iter(quality.items()))
  gen = window.tau_gen(sorted(seen, key=lambda e: e['step']), metric, target) if seen else None
  if gen is None or gen.censored:
    return False
  return memorized or step >= cap_factor * gen.step


def novel_quality(config, samples: np.ndarray, train_images: np.ndarray,
                  neighbours: dict) -> dict:
  """The dataset's quality metrics over the samples that are not copies (d1/d2 >= 1/3 in
  memorization_report's neighbours), as `novel_<metric>` for the dataset's quality metrics
  (None each when fewer than window.MIN_NOVEL samples are novel), and `novel_count`."""
  ratio = neighbours['d1'] / np.maximum(neighbours['d2'], 1e-12)
  novel = np.asarray(samples)[ratio >= memorization.MEMORIZED_RATIO]
  out = {'novel_count': int(len(novel))}
  names = [m for m in window.QUALITY_METRICS
           if window.QUALITY_METRICS[m][0] == config.data.name]
  metrics = (sample_scores.dataset_metrics(config, novel, train_images)
             if len(novel) >= window.MIN_NOVEL else {})
  out.update({window.NOVEL_PREFIX + m: metrics.get(m) for m in names})
  return out


def samples_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, SAMPLES_DIR, f'{int(step):07d}.npz')


def hook(config, graphdef, mesh, workdir: str):
  """The training loop's hook (EvalHook in modes/train.py): (research.window_every, score,
  stop), or None when the every is 0.

  score(state) -> {'window/<metric>': value} records the step's entry (replacing an older
  entry of the same step); stop(step) -> bool says whether the run has decided by `step`.
  """
  import jax
  from sparsediff_jax import generate
  from sparsediff_jax.train_state import inference_params
  r = config.research
  if not r.window_every:
    return None
  train_images = data.load_train_images(config)
  gen = generate.make_generator(config, graphdef, mesh)
  entries = {e['step']: e for e in read_trajectory(workdir)}

  def score(state) -> dict:
    step = int(state.step)
    samples = sample_scores.generate_samples(config, graphdef,
                                             inference_params(config, state), mesh,
                                             r.num_samples, gen=gen)
    mem, neighbours = memorization.memorization_report(samples, train_images)
    quality = sample_scores.dataset_metrics(config, samples, train_images)
    novel = novel_quality(config, samples, train_images, neighbours)
    entry = {'step': step, **mem, **quality, **novel}
    entries[step] = entry
    if jax.process_index() == 0:
      atomic_io.write_json(os.path.join(workdir, TRAJECTORY_FILE),
                           [entries[s] for s in sorted(entries)])
      atomic_io.save_npz(samples_path(workdir, step), samples=samples[:KEPT_SAMPLES])
    logging.info('window: step %d: memorized fraction %.3f, %s', step,
                 mem['pixel_memorized_fraction'],
                 ', '.join(f'{k} {v:.3f}' for k, v in sorted(quality.items())))
    return {f'window/{k}': float(v) for k, v in entry.items()
            if k != 'step' and v is not None}

  targets = quality_targets(config.data.name)

  def stop(step: int) -> bool:
    return decided(list(entries.values()), step, r.window_stop, r.window_cap_factor,
                   targets)

  return r.window_every, score, stop


def quality_targets(dataset: str, targets=None) -> dict[str, float]:
  """The window's quality targets that `dataset` provides (default: window.DEFAULT_TARGETS)."""
  targets = window.DEFAULT_TARGETS if targets is None else targets
  return {m: t for m, t in targets.items() if window.quality_metric(m)[0] == dataset}


def report(config, workdir: str, train_images: np.ndarray,
           grid_path: str | None = None) -> dict[str, float]:
  """--mode=research: the window of the run's trajectory (window.summarize with the default
  targets), and research/window_tau_gen.png, the kept samples of the first scored step at
  or past tau_gen of the first quality metric above their nearest training images.
  {} when the run recorded no window trajectory."""
  trajectory = read_trajectory(workdir)
  if not trajectory:
    return {}
  quality = quality_targets(config.data.name)
  out = window.summarize(trajectory, quality)
  out['window_trajectory_length'] = float(len(trajectory))
  r = config.research
  stops = [e['step'] for e in trajectory
           if decided(trajectory, e['step'], r.window_stop, r.window_cap_factor, quality)]
  if stops:   # where the stop rule ended training: launch/sweep.py counts it as finished
    out['window_stop_step'] = float(stops[0])
  for metric in list(quality)[:1]:
    gen = window.tau_gen(trajectory, metric, quality[metric])
    step = next((e['step'] for e in trajectory if e['step'] >= gen.step), None)
    kept = None if gen.censored or step is None else atomic_io.read_bytes(
        samples_path(workdir, step))
    if kept is None:
      continue
    samples = np.load(io.BytesIO(kept))['samples']
    _, neighbours = memorization.memorization_report(samples, train_images)
    memorization.save_memorization_grid(
        grid_path or os.path.join(workdir, 'research', 'window_tau_gen.png'), samples,
        train_images, neighbours, k=len(samples))
    out['window_grid_step'] = float(step)
  return out
