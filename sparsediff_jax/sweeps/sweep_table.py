"""Aggregates a sweep's run folders into mean +- std tables (Markdown, CSV) and plots.

One file: reading a sweep's run folders, aggregating over seeds and
writing its tables and plots.

A run folder holds `sweep_run.json` (written by `launch/sweep.py`: its group, the config
overrides that set it apart, the seed key and its x position) and `research_metrics.json`
(written by `--mode=research`). Runs that differ only in the seed form one setting; each
metric is summarised by its mean and sample standard deviation (ddof=1) over the seeds,
with n, the number of seeds, beside it (std is NaN for a single seed). NaN values (e.g.
memorization_onset_step of a run that never memorized) are left out of the mean; a cell
over fewer seeds than its row says so, `(n=k)`, and a metric that is NaN in every seed
reads NaN.

Equal quality (`summarize_equal_quality`): runs scored with research.trajectory=True have
research/trajectory.json (one entry per checkpoint). For each run it takes the checkpoint
whose quality metric (digits_fd, train_dense_loss, ...) is closest to a common target,
by default the final value of the dense setting (ratio 0 of the grid, mean over seeds),
and reports the memorization there: do masked runs memorize less only because they have
learned less? Written to results_equal_fd.md (for digits_fd; results_equal_<metric>.md
otherwise).
"""

import csv
import io
import json
import math
import os

import numpy as np
from etils import epath

from sparsediff_jax import config_base, registry
from sparsediff_jax.runtime import atomic_io
from sparsediff_jax.runtime.run_dir import with_suffix   # modes/research.py calls it from here
from sparsediff_jax.console.images import pyplot, save_figure

RUN_FILE = 'sweep_run.json'
METRICS_FILE = 'research_metrics.json'
CONFIG_FILE = 'config.json'   # the run's resolved config (main.write_run_record)
# Shown in the Markdown table and the plots unless asked otherwise, after the headline
# metrics of the runs' datasets (`headline`); the CSV has every metric.
GENERIC_HEADLINE = ('pixel_memorized_fraction', 'pixel_nn_distance_mean', 'locality_radius90',
                    'locality_far_fraction', 'train_dense_loss')
BOOKKEEPING = ('step', 'num_samples', 'num_train_images', 'sampling_seed', 'sampling_steps',
               'ema_index', 'ema_decay')
TRAJECTORY_FILE = os.path.join('research', 'trajectory.json')
EQUAL_QUALITY_FILES = {'digits_fd': 'results_equal_fd.md'}   # else results_equal_<metric>.md


def newest_suffix(workdir: str) -> str:
  """The suffix ('', '-2', '-3', ...) of the newest WORKDIR/research_metrics*.json: each
  `--mode=research` writes its outputs under the first suffix none of them has yet."""
  path, suffix, k = os.path.join(workdir, METRICS_FILE), '', 2
  while atomic_io.exists(with_suffix(path, f"-{k}")):
    suffix, k = f'-{k}', k + 1
  return suffix


def newest_metrics_file(workdir: str) -> str:
  """WORKDIR/research_metrics.json, or the newest rerun's research_metrics-K.json."""
  return with_suffix(os.path.join(workdir, METRICS_FILE), newest_suffix(workdir))


def headline(datasets) -> tuple[str, ...]:
  """The default table metrics of runs on `datasets` (data.name values, None for unknown):
  the headline metrics each dataset registers (registry.Dataset.headline), then
  GENERIC_HEADLINE, each once."""
  own = [m for name in dict.fromkeys(datasets) if name in registry.DATASETS
         for m in registry.DATASETS.get(name).headline]
  return tuple(dict.fromkeys(own + list(GENERIC_HEADLINE)))


def _dataset_of(workdir: str) -> str | None:
  """data.name of the run in `workdir` from its config.json; without one (a run folder
  made by hand), the default config's dataset; None if config.json cannot be read."""
  text = atomic_io.read_text(os.path.join(workdir, CONFIG_FILE))
  if text is None:
    return config_base.get_config().data.name
  try:
    return json.loads(text)['data']['name']
  except (ValueError, KeyError, TypeError):
    return None


def read_runs(root: str) -> list[dict]:
  """Every finished run under `root`: its sweep_run.json fields plus 'metrics' (dict, the
  newest research_metrics*.json), 'suffix' (that file's suffix) and 'dataset' (its
  data.name, `_dataset_of`)."""
  runs = []
  for name in sorted(p.name for p in epath.Path(root).iterdir()):
    workdir = os.path.join(root, name)
    run_text = atomic_io.read_text(os.path.join(workdir, RUN_FILE))
    metrics_text = atomic_io.read_text(newest_metrics_file(workdir))
    if run_text is not None and metrics_text is not None:
      run = json.loads(run_text)
      run['metrics'] = json.loads(metrics_text)
      run['suffix'] = newest_suffix(workdir)
      run['dataset'] = _dataset_of(workdir)
      runs.append(run)
  return runs


def _setting_key(run: dict) -> tuple:
  """What identifies a setting: the group and every override but the seed."""
  seed_key = run.get('seed_key', 'training.seed')
  return (run['group'],) + tuple(sorted((k, str(v)) for k, v in run['overrides'].items()
                                        if k != seed_key))


def aggregate(runs: list[dict]) -> list[dict]:
  """One row per setting: group, label, x, n, seeds, and {metric: (mean, std, n)}.

  Rows: the grid first, then each baseline group, each by increasing x (rows without x
  last), ties in the order of their first run.
  """
  settings: dict[tuple, list[dict]] = {}
  for run in runs:
    settings.setdefault(_setting_key(run), []).append(run)
  rows = []
  for key, members in settings.items():
    names = sorted({k for m in members for k, v in m['metrics'].items()
                    if k not in BOOKKEEPING and _is_real(v)})
    stats = {}
    for name in names:
      values = np.array([m['metrics'][name] for m in members if _is_number(
          m['metrics'].get(name))], np.float64)
      if not len(values):   # NaN in every seed: shown as NaN, counted over no seed
        stats[name] = (math.nan, math.nan, 0)
        continue
      std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
      stats[name] = (float(values.mean()), std, len(values))
    first = members[0]
    seed_key = first.get('seed_key', 'training.seed')
    rows.append({'group': first['group'], 'label': first.get('label', first['group']),
                 'x': first.get('x'), 'series': first.get('series', first['group']),
                 'setting': dict(key[1:]), 'n': len(members),
                 'seeds': sorted(str(m['overrides'].get(seed_key, '')) for m in members),
                 'stats': stats})
  groups = list(dict.fromkeys(['grid'] + [r['group'] for r in rows]))
  return sorted(rows, key=lambda r: (groups.index(r['group']),
                                     math.inf if r['x'] is None else r['x']))


def _is_real(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return _is_real(v) and math.isfinite(v)


def _present(rows: list[dict], metrics) -> list[str]:
  """The requested metrics that some row has; every metric when none of them is there."""
  found = [m for m in metrics if any(m in r['stats'] for r in rows)]
  return found or sorted({m for r in rows for m in r['stats']})


def _fmt(mean: float, std: float, n: int | None = None, row_n: int | None = None) -> str:
  """'mean ± std'; ' (n=k)' when only k of the row's row_n seeds have a value."""
  if math.isnan(mean):
    return 'NaN'
  text = f'{mean:.4g}' if math.isnan(std) else f'{mean:.4g} ± {std:.2g}'
  return text + (f' (n={n})' if n is not None and row_n is not None and n < row_n else '')


def _cell(row: dict, metric: str) -> str:
  return _fmt(*row['stats'][metric], row['n']) if metric in row['stats'] else '—'


def write_markdown(rows: list[dict], path: str, metrics=GENERIC_HEADLINE,
                   title: str = '') -> str:
  metrics = _present(rows, metrics)
  lines = [f'# {title}', ''] if title else []
  lines.append('| setting | n | ' + ' | '.join(metrics) + ' |')
  lines.append('|' + '---|' * (len(metrics) + 2))
  for r in rows:
    cells = [_cell(r, m) for m in metrics]
    lines.append(f'| {r["label"]} | {r["n"]} | ' + ' | '.join(cells) + ' |')
  lines += ['', 'mean ± sample standard deviation (ddof=1) over n seeds.']
  atomic_io.write_text(path, '\n'.join(lines) + '\n')
  return path


def write_csv(rows: list[dict], path: str) -> str:
  """One line per setting: group, label, x, n, seeds, each override, metric_mean/_std."""
  metrics = sorted({m for r in rows for m in r['stats']})
  keys = sorted({k for r in rows for k in r['setting']})
  f = io.StringIO(newline='')
  w = csv.writer(f)
  w.writerow(['group', 'label', 'x', 'n', 'seeds'] + keys
             + [f'{m}_{s}' for m in metrics for s in ('mean', 'std')])
  for r in rows:
    stats = [v for m in metrics for v in (r['stats'][m][:2] if m in r['stats']
                                           else ('', ''))]
    w.writerow([r['group'], r['label'], '' if r['x'] is None else r['x'], r['n'],
                ' '.join(r['seeds'])] + [r['setting'].get(k, '') for k in keys] + stats)
  atomic_io.write_text(path, f.getvalue())
  return path


def plot(rows: list[dict], path: str, metrics=GENERIC_HEADLINE,
         x_label: str = 'mask ratio') -> str:
  """One panel per metric: each series against x with ±std error bars.

  Rows without an x (e.g. dropout) are drawn as a horizontal line at their mean with a
  ±std band across the panel.
  """
  plt = pyplot()
  metrics = _present(rows, metrics)
  cols = min(3, len(metrics)) or 1
  nrows = -(-len(metrics) // cols) or 1
  fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
  series = list(dict.fromkeys(r['series'] for r in rows if r['x'] is not None))
  flat = list(dict.fromkeys(r['label'] for r in rows if r['x'] is None))
  colours = plt.cm.tab10(np.arange(len(series) + len(flat)) % 10)
  for ax, metric in zip(axes.ravel(), metrics):
    for s, colour in zip(series, colours):
      pts = sorted((r['x'], *r['stats'][metric][:2]) for r in rows
                   if r['series'] == s and r['x'] is not None and metric in r['stats'])
      if pts:
        x, mean, std = map(np.array, zip(*pts))
        ax.errorbar(x, mean, yerr=np.nan_to_num(std), fmt='o-', capsize=3, color=colour,
                    label=s)
    for label, colour in zip(flat, colours[len(series):]):
      for r in rows:
        if r['label'] == label and metric in r['stats']:
          mean, std, _ = r['stats'][metric]
          ax.axhline(mean, color=colour, ls='--', label=label)
          if not math.isnan(std):
            ax.axhspan(mean - std, mean + std, color=colour, alpha=0.15)
    ax.set_title(metric, fontsize=9)
    ax.set_xlabel(x_label, fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in axes.ravel()[len(metrics):]:
    ax.axis('off')
  axes[0, 0].legend(fontsize=7)
  fig.suptitle('mean ± std over seeds', fontsize=10)
  return save_figure(fig, path)


def summarize(root: str, out_dir: str | None = None, metrics=None,
              title: str = '') -> dict[str, str]:
  """Reads the runs under `root`; writes results.md, results.csv and results.png there
  (or in out_dir), showing `metrics` (None or empty: `headline` of the runs' datasets).
  Returns the paths; raises FileNotFoundError when no run has finished."""
  runs = read_runs(root)
  if not runs:
    raise FileNotFoundError(f'no finished run (a folder with {RUN_FILE} and {METRICS_FILE}) '
                            f'under {root}')
  metrics = metrics or headline(run['dataset'] for run in runs)
  rows = aggregate(runs)
  out_dir = out_dir or root
  return {'markdown': write_markdown(rows, os.path.join(out_dir, 'results.md'), metrics,
                                     title),
          'csv': write_csv(rows, os.path.join(out_dir, 'results.csv')),
          'plot': plot(rows, os.path.join(out_dir, 'results.png'), metrics)}


def read_trajectories(root: str) -> list[dict]:
  """The finished runs under `root` (read_runs) that have research/trajectory.json, each
  with 'trajectory': its list of entries, ascending step."""
  out = []
  for run in read_runs(root):
    text = atomic_io.read_text(
        with_suffix(os.path.join(root, run['name'], TRAJECTORY_FILE), run['suffix']))
    if text is not None:
      run['trajectory'] = sorted(json.loads(text), key=lambda e: e['step'])
      out.append(run)
  return out


def _value(entry: dict, key: str) -> float:
  v = entry.get(key)
  return float(v) if _is_number(v) else math.nan


def closest_entry(trajectory: list[dict], quality: str, target: float) -> dict | None:
  """The entry whose `quality` is closest to target (the earliest step on a tie); None when
  no entry has a finite value of it."""
  scored = [(abs(_value(e, quality) - target), e['step'], i)
            for i, e in enumerate(trajectory) if math.isfinite(_value(e, quality))]
  return trajectory[min(scored)[2]] if scored else None


def dense_target(runs: list[dict], quality: str) -> float:
  """Mean over the dense runs (the grid's ratio 0) of the final entry's quality; NaN when
  there is no such run or value."""
  finals = [_value(r['trajectory'][-1], quality) for r in runs
            if r['group'] == 'grid' and r.get('x') == 0 and r['trajectory']]
  finals = [v for v in finals if math.isfinite(v)]
  return float(np.mean(finals)) if finals else math.nan


def equal_quality_runs(runs: list[dict], quality: str, target: float, *,
                       lower_is_better: bool = True) -> list[dict]:
  """Per run (with a trajectory), the metrics at the checkpoint matched to `target`:

  matched_step, matched_<quality>, matched_pixel_memorized_fraction,
  matched_pixel_nn_distance_mean, reached_target (1.0 when some checkpoint is at least as
  good as target, else 0.0) and final_pixel_memorized_fraction. Returns read_runs-style
  records (the run's fields, 'metrics' replaced), ready for `aggregate`.
  """
  out = []
  for run in runs:
    entry = closest_entry(run['trajectory'], quality, target)
    if entry is None:
      continue
    values = np.array([_value(e, quality) for e in run['trajectory']])
    values = values[np.isfinite(values)]
    best = values.min() if lower_is_better else values.max()
    reached = best <= target if lower_is_better else best >= target
    out.append({**run, 'metrics': {
        'matched_step': float(entry['step']),
        f'matched_{quality}': _value(entry, quality),
        'matched_pixel_memorized_fraction': _value(entry, 'pixel_memorized_fraction'),
        'matched_pixel_nn_distance_mean': _value(entry, 'pixel_nn_distance_mean'),
        'reached_target': float(reached),
        'final_pixel_memorized_fraction': _value(run['trajectory'][-1],
                                                 'pixel_memorized_fraction')}})
  return out


def write_equal_quality(rows: list[dict], path: str, quality: str, target: float,
                        title: str = '') -> str:
  """The Markdown table of aggregate(equal_quality_runs(...))."""
  metrics = ['matched_pixel_memorized_fraction', 'final_pixel_memorized_fraction',
             f'matched_{quality}', 'matched_step', 'matched_pixel_nn_distance_mean',
             'reached_target']
  lines = [f'# {title}', ''] if title else []
  lines.append(f'Memorization at equal quality: each run at its checkpoint whose {quality} '
               f'is closest to {target:.4g}.')
  lines += ['', '| setting | n | ' + ' | '.join(metrics) + ' |',
            '|' + '---|' * (len(metrics) + 2)]
  for r in rows:
    lines.append(f'| {r["label"]} | {r["n"]} | '
                 + ' | '.join(_cell(r, m) for m in metrics) + ' |')
  lines += ['', 'mean ± sample standard deviation (ddof=1) over n seeds. reached_target: '
            'fraction of seeds with a checkpoint at least as good as the target; where it is '
            'below 1 the matched checkpoint is that run\'s best and still of worse quality. '
            'Resolution: the checkpoint spacing.']
  atomic_io.write_text(path, '\n'.join(lines) + '\n')
  return path


def summarize_equal_quality(root: str, quality: str = 'digits_fd',
                            target: float | None = None, out_dir: str | None = None,
                            title: str = '', lower_is_better: bool = True) -> str | None:
  """Writes the equal-quality table of the runs under `root` (see the module docstring).

  target: the common quality value; None = dense_target. Returns the path, or None when no
  run has a trajectory with `quality` or no target can be set (nothing is written).
  """
  runs = [r for r in read_trajectories(root)
          if any(math.isfinite(_value(e, quality)) for e in r['trajectory'])]
  if not runs:
    return None
  target = dense_target(runs, quality) if target is None else float(target)
  if not math.isfinite(target):
    return None
  rows = aggregate(equal_quality_runs(runs, quality, target,
                                      lower_is_better=lower_is_better))
  name = EQUAL_QUALITY_FILES.get(quality, f'results_equal_{quality}.md')
  return write_equal_quality(rows, os.path.join(out_dir or root, name), quality, target,
                             title)


def plot_trajectories(root: str, metrics=('pixel_memorized_fraction', 'digits_fd'),
                      out_dir: str | None = None) -> str | None:
  """ROOT/trajectories.png: each metric of the runs' trajectories against the training
  step, one line per setting (mean over its seeds, shaded +- sample std). None (nothing
  written) when no run has a trajectory."""
  runs = read_trajectories(root)
  if not runs:
    return None
  settings: dict[tuple, list[dict]] = {}
  for run in runs:
    settings.setdefault(_setting_key(run), []).append(run)
  labels = {key: members[0].get('label', members[0]['group']) for key, members in
            settings.items()}
  plt = pyplot()
  fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
  for ax, metric in zip(axes[0], metrics):
    for key, members in settings.items():
      steps = sorted({e['step'] for r in members for e in r['trajectory']})
      values = np.array([[_value(next((e for e in r['trajectory'] if e['step'] == s), {}),
                                 metric) for s in steps] for r in members])
      with np.errstate(invalid='ignore'):
        mean = np.nanmean(values, axis=0)
        std = (np.nanstd(values, axis=0, ddof=1) if len(members) > 1
               else np.zeros_like(mean))
      style = '-' if members[0]['group'] == 'grid' else '--'
      line, = ax.plot(steps, mean, style, marker='o', ms=3,
                      label=f'{labels[key]} (n={len(members)})')
      ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel('training step')
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  return save_figure(fig, os.path.join(out_dir or root, 'trajectories.png'))
