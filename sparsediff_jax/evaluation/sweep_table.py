"""Aggregates a sweep's run folders into mean +- std tables (Markdown, CSV) and plots.

A run folder holds `sweep_run.json` (written by `launch/sweep.py`: its group, the config
overrides that set it apart, the seed key and its x position) and `research_metrics.json`
(written by `--mode=research`). Runs that differ only in the seed form one setting; each
metric is summarised by its mean and sample standard deviation (ddof=1) over the seeds,
with n, the number of seeds, beside it (std is NaN for a single seed).
"""

import csv
import json
import math
import os

import numpy as np

from sparsediff_jax.images import pyplot, save_figure

RUN_FILE = 'sweep_run.json'
METRICS_FILE = 'research_metrics.json'
# Shown in the Markdown table and the plots unless asked otherwise; the CSV has every metric.
HEADLINE = ('consistent_fraction', 'count_exact_fraction', 'symmetry_error',
            'partnered_fraction', 'pixel_memorized_fraction', 'pixel_nn_distance_mean',
            'locality_radius90', 'locality_far_fraction', 'train_dense_loss')
BOOKKEEPING = ('step', 'num_samples', 'num_train_images')


def read_runs(root: str) -> list[dict]:
  """Every finished run under `root`: its sweep_run.json fields plus 'metrics' (dict)."""
  runs = []
  for name in sorted(os.listdir(root)):
    run_file = os.path.join(root, name, RUN_FILE)
    metrics_file = os.path.join(root, name, METRICS_FILE)
    if os.path.isfile(run_file) and os.path.isfile(metrics_file):
      with open(run_file) as f:
        run = json.load(f)
      with open(metrics_file) as f:
        run['metrics'] = json.load(f)
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
                    if k not in BOOKKEEPING and _is_number(v)})
    stats = {}
    for name in names:
      values = np.array([m['metrics'][name] for m in members if _is_number(
          m['metrics'].get(name))], np.float64)
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


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _present(rows: list[dict], metrics) -> list[str]:
  """The requested metrics that some row has; every metric when none of them is there."""
  found = [m for m in metrics if any(m in r['stats'] for r in rows)]
  return found or sorted({m for r in rows for m in r['stats']})


def _fmt(mean: float, std: float) -> str:
  if math.isnan(std):
    return f'{mean:.4g}'
  return f'{mean:.4g} ± {std:.2g}'


def write_markdown(rows: list[dict], path: str, metrics=HEADLINE, title: str = '') -> str:
  metrics = _present(rows, metrics)
  lines = [f'# {title}', ''] if title else []
  lines.append('| setting | n | ' + ' | '.join(metrics) + ' |')
  lines.append('|' + '---|' * (len(metrics) + 2))
  for r in rows:
    cells = [_fmt(*r['stats'][m][:2]) if m in r['stats'] else '—' for m in metrics]
    lines.append(f'| {r["label"]} | {r["n"]} | ' + ' | '.join(cells) + ' |')
  lines += ['', 'mean ± sample standard deviation (ddof=1) over n seeds.']
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def write_csv(rows: list[dict], path: str) -> str:
  """One line per setting: group, label, x, n, seeds, each override, metric_mean/_std."""
  metrics = sorted({m for r in rows for m in r['stats']})
  keys = sorted({k for r in rows for k in r['setting']})
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['group', 'label', 'x', 'n', 'seeds'] + keys
               + [f'{m}_{s}' for m in metrics for s in ('mean', 'std')])
    for r in rows:
      stats = [v for m in metrics for v in (r['stats'][m][:2] if m in r['stats']
                                             else ('', ''))]
      w.writerow([r['group'], r['label'], '' if r['x'] is None else r['x'], r['n'],
                  ' '.join(r['seeds'])] + [r['setting'].get(k, '') for k in keys] + stats)
  return path


def plot(rows: list[dict], path: str, metrics=HEADLINE, x_label: str = 'mask ratio') -> str:
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


def summarize(root: str, out_dir: str | None = None, metrics=HEADLINE,
              title: str = '') -> dict[str, str]:
  """Reads the runs under `root`; writes results.md, results.csv and results.png there
  (or in out_dir). Returns the paths; raises FileNotFoundError when no run has finished."""
  runs = read_runs(root)
  if not runs:
    raise FileNotFoundError(f'no finished run (a folder with {RUN_FILE} and {METRICS_FILE}) '
                            f'under {root}')
  rows = aggregate(runs)
  out_dir = out_dir or root
  return {'markdown': write_markdown(rows, os.path.join(out_dir, 'results.md'), metrics,
                                     title),
          'csv': write_csv(rows, os.path.join(out_dir, 'results.csv')),
          'plot': plot(rows, os.path.join(out_dir, 'results.png'), metrics)}
