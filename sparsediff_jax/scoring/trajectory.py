"""A run's course over training: its logged losses and its checkpoints' memorization.

- `logged_series`, `logged_at`, `last_logged`: the losses a run logged (its TensorBoard
  event files), at or before a step.
- `trajectory_entry`, `memorization_onset_step`: one scored checkpoint, and the first step
  at which at least ONSET_FRACTION of the samples are memorized.
- `write_trajectory`, `save_trajectory_plot`: WORKDIR/research/trajectory.json and its plot.
"""

import os

import numpy as np

from sparsediff_jax.console import metrics_jsonl
from sparsediff_jax.console.images import pyplot, save_figure
from sparsediff_jax.runtime import atomic_io
from sparsediff_jax.runtime.run_dir import with_suffix

TRAJECTORY_FILE = 'trajectory.json'
ONSET_FRACTION = 0.5   # memorization_onset_step: at least half the samples memorized.


def logged_series(workdir: str, tags=('loss', 'dense_loss')) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of every logged value of each tag: from WORKDIR/metrics.jsonl
  (the same float32 scalars as TensorBoard, read without importing TensorFlow, which the
  event reader does; its cost is measured by benchmarks/trajectory_scoring.py)
  or, for a run without that file, from the TensorBoard event files (a step logged twice,
  e.g. by a resumed run, keeps the later file's value)."""
  jsonl = os.path.join(workdir, 'metrics.jsonl')
  if atomic_io.exists(jsonl):
    records = metrics_jsonl.read(jsonl)
    return {tag: {int(r['step']): float(r[tag]) for r in records if tag in r}
            for tag in tags if any(tag in r for r in records)}
  from sparsediff_jax.console.scalars import read_scalars
  return {tag: dict(zip(steps.tolist(), values.tolist()))
          for tag, (steps, values) in read_scalars(workdir).items() if tag in tags}


def logged_at(series: dict[str, dict[int, float]], step: int | None = None) -> dict[str, float]:
  """{'train_<tag>': the value logged at the newest step <= `step` (None: the newest)};
  tags with nothing logged by then are left out."""
  out = {}
  for tag, values in series.items():
    steps = [s for s in values if step is None or s <= step]
    if steps:
      out[f'train_{tag}'] = values[max(steps)]
  return out


def last_logged(workdir: str, tags=('loss', 'dense_loss')) -> dict[str, float]:
  """The newest logged value of each tag in WORKDIR's TensorBoard event files, as train_*."""
  return logged_at(logged_series(workdir, tags))


def memorization_onset_step(steps, fractions, threshold: float = ONSET_FRACTION) -> float:
  """The first of `steps` (ascending) whose memorized fraction is >= threshold; NaN if none.

  Args:
    steps: int [T], the scored checkpoint steps, ascending.
    fractions: float [T] in [0, 1], the memorized fraction of the samples at each step.
  """
  for step, fraction in zip(steps, fractions):
    if fraction >= threshold:
      return float(step)
  return float('nan')


def onset_report(steps, fractions, missing=()) -> dict:
  """The trajectory's summary metrics: `trajectory_length` (steps scored),
  `trajectory_missing_steps` (listed but unreadable: a live trainer deleted them) and
  `memorization_onset_step` (memorization_onset_step of the scored steps: NaN when no
  scored step reaches the threshold, i.e. not memorized by the newest step).

  When a missing step comes before the onset (or there is none), the onset is unknown:
  it may lie at a step that could not be scored. Then `memorization_onset_step` is left out
  (an absent value, never a NaN that reads as "never memorized") and
  `memorization_onset_note` says why."""
  steps, missing = list(steps), sorted(missing)
  onset = memorization_onset_step(steps, fractions)
  out = {'trajectory_length': len(steps), 'trajectory_missing_steps': len(missing)}
  if any(np.isnan(onset) or m < onset for m in missing):
    out['memorization_onset_note'] = (
        f'unknown: checkpoints {missing} were listed but could not be read (a live training '
        'run deletes all but training.keep_checkpoints); score the trajectory after training '
        'ends, or keep more checkpoints')
  else:
    out['memorization_onset_step'] = onset
  return out


def trajectory_entry(step: int, metrics: dict, dataset_keys, logged: dict) -> dict:
  """One point of the trajectory: the step, the pixel_* memorization stats, the dataset's
  metrics and the losses logged at or before `step`."""
  entry = {'step': int(step)}
  entry.update({k: v for k, v in metrics.items() if k.startswith('pixel_')})
  entry.update({k: metrics[k] for k in dataset_keys if k in metrics})
  entry.update(logged)
  return entry


def save_trajectory_plot(path: str, trajectory: list[dict], floor: float | None = None,
                         title: str = '') -> str:
  """PNG: memorized fraction (left) and mean nearest-neighbour distance (right) vs step."""
  plt = pyplot()
  steps = [e['step'] for e in trajectory]
  fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
  axes[0].plot(steps, [e['pixel_memorized_fraction'] for e in trajectory], 'o-',
               label='samples')
  axes[0].axhline(ONSET_FRACTION, color='grey', ls=':', label='onset threshold')
  if floor is not None:
    axes[0].axhline(floor, color='black', ls='--', label='fresh real images')
  axes[0].set_ylim(-0.02, 1.02)
  axes[0].set_ylabel('memorized fraction (d1/d2 < 1/3)', fontsize=8)
  axes[0].legend(fontsize=7)
  axes[1].plot(steps, [e['pixel_nn_distance_mean'] for e in trajectory], 'o-')
  axes[1].set_ylabel('mean L2 to nearest training image', fontsize=8)
  for ax in axes:
    ax.set_xlabel('training step', fontsize=8)
    ax.tick_params(labelsize=7)
  fig.suptitle(title, fontsize=9)
  return save_figure(fig, path)


def write_trajectory(workdir: str, trajectory: list[dict], suffix: str = '') -> str:
  """WORKDIR/research/trajectory{suffix}.json, written whole or not at all."""
  path = with_suffix(os.path.join(workdir, 'research', TRAJECTORY_FILE), suffix)
  atomic_io.write_json(path, trajectory)
  return path
