"""Tables and figures of the memorization window, rebuilt from kept run results alone.

One file: the command that rebuilds every table and figure of the window
experiment from kept results; its math is metrics/window.py.

  python -m sparsediff_jax.sweeps.window_table \
      --results=docs/results/memorization_window/runs [--out=docs/results/memorization_window]

RESULTS holds one folder per finished run (launch/sweep.py --results): sweep_run.json,
config.json, window_trajectory.json. Every crossing is recomputed from the trajectories
(metrics/window.py) with --quality targets and --levels, so the numbers do not depend
on the code that ran. A setting is a (group, mask ratio, batch, dropout) at one n; its
seeds are averaged. Writes to OUT:
  window.md           tau_gen, tau_mem and the window per setting and n (mean +- std over
                      seeds; censored seeds counted), the same crossings in supervised
                      pixels and in images through the network, memorization at tau_gen,
                      the dataset's fd, confidence and asymmetric rate at tau_gen (equal
                      quality), and the fitted slope of tau_mem(0.5) against n;
  window.csv          one row per run, every crossing and its flags;
  window_vs_n.png     tau_gen and tau_mem(0.5) against n, log-log, per setting;
  window_ratio.png    the window per setting and n with error bars;
  trajectories.png    memorized fraction and the dataset's fd against steps and supervised
                      pixels.
--quality defaults to the targets of window.DEFAULT_TARGETS for the runs' dataset (digits:
digits_confidence and digits_fd; fashion_mnist: fashion_mnist_confidence).
Bad input (an unknown quality metric or one the runs' dataset lacks, a NaN or out-of-range
target or level) is one line `error: ...` and exit code 2, with nothing written.
"""

import argparse
import csv
import json
import math
import os
import sys

import numpy as np

from sparsediff_jax.metrics import window
from sparsediff_jax.console.images import pyplot, save_figure

EXIT_USAGE = 2
TRAJECTORY = 'window_trajectory.json'
# Read at tau_gen beside the memorized fraction, as '<dataset>_<name>' when a run recorded it.
AT_GEN_METRICS = ('fd', 'confidence', 'asymmetric_rate')
SETTING_ORDER = ('dense', 'mask 0.5', 'mask 0.9', 'mask 0.98', 'dense, batch-matched 0.5',
                 'dense, batch-matched 0.9', 'dense, batch-matched 0.98', 'dense, dropout 0.1')


def setting_name(record: dict, config: dict) -> str:
  """'dense', 'mask 0.9', 'dense, batch-matched 0.9' (batch 2), 'dense, dropout 0.1'; a
  backbone other than the U-Net in front ('dit: mask 0.9')."""
  ratio, group = float(config['mask']['ratio']), record.get('group', 'grid')
  model = config['model'].get('name', 'unet')
  prefix = '' if model == 'unet' else f'{model}: '
  if group == 'batch_matched':
    return f'{prefix}dense, batch-matched {record["x"]:g}'
  if group == 'dropout' or config['model'].get('dropout', 0) > 0:
    return f'{prefix}dense, dropout {config["model"]["dropout"]:g}'
  return prefix + ('dense' if ratio == 0 else f'mask {ratio:g}')


def read_results(results: str) -> list[dict]:
  """Every run folder of RESULTS with a trajectory: name, setting, n, seed, the steps'
  conversion factors (window.units_per_step) and the trajectory."""
  runs = []
  for name in sorted(os.listdir(results)):
    folder = os.path.join(results, name)
    paths = [os.path.join(folder, f) for f in ('sweep_run.json', 'config.json', TRAJECTORY)]
    if not all(os.path.isfile(p) for p in paths):
      continue
    record, config, trajectory = (json.load(open(p)) for p in paths)
    if not trajectory:
      continue
    d, t = config['data'], config['training']
    runs.append({'name': name, 'setting': setting_name(record, config),
                 'n': int(d['num_train_examples']), 'seed': int(t['seed']),
                 'dataset': d['name'], 'image_size': int(d['image_size']),
                 'batch': int(t['batch_size']),
                 'cap': int(t['num_steps']),
                 'units': window.units_per_step(int(t['batch_size']),
                                                1.0 - float(config['mask']['ratio']),
                                                int(d['image_size']) ** 2 * 3),
                 'trajectory': sorted(trajectory, key=lambda e: e['step'])})
  return runs


def run_row(run: dict, quality: dict, levels) -> dict:
  """One run's crossings (Crossing objects under 'gen_<metric>' / 'mem_<q>'), the window,
  and the memorized fraction at each tau_gen."""
  t = run['trajectory']
  row = {k: run[k] for k in ('name', 'setting', 'n', 'seed', 'batch', 'cap')}
  row['last_step'] = t[-1]['step']
  for q in levels:
    row[f'mem_{q:g}'] = window.tau_mem(t, q)
  for metric, target in quality.items():
    if not window.recorded(t, metric):   # scored before the metric existed: no crossing
      row[f'gen_{metric}'] = None
      row[f'memorized_at_gen_{metric}'] = math.nan
      for q in levels:
        row[f'window_{metric}_{q:g}'] = (math.nan, 'unrecorded')
      continue
    gen = window.tau_gen(t, metric, target)
    row[f'gen_{metric}'] = gen
    row[f'memorized_at_gen_{metric}'] = (math.nan if gen.censored else window.value_at(
        t, window.MEMORIZED_KEY, gen.step))
    for key in at_gen_keys(run):
      row[f'{key}_at_gen_{metric}'] = (math.nan if gen.censored else
                                       window.value_at(t, key, gen.step))
    for q in levels:
      row[f'window_{metric}_{q:g}'] = window.ratio(row[f'mem_{q:g}'], gen)
  return row


def at_gen_keys(run: dict) -> list[str]:
  """The dataset's metrics the table reads at tau_gen (equal quality), where recorded."""
  return [f'{run["dataset"]}_{k}' for k in AT_GEN_METRICS
          if f'{run["dataset"]}_{k}' in run['trajectory'][0]]


def dataset_title(runs: list[dict]) -> str:
  """'digits 8x8', 'fashion_mnist 16x16' (joined by ' / ' when the runs mix them)."""
  return ' / '.join(sorted({f"{r['dataset']} {r['image_size']}x{r['image_size']}"
                            for r in runs}))


def _crossing_cell(crossings: list, scale: float = 1.0, fmt: str = '{:.0f}') -> str:
  """mean +- std over seeds; '> x' when every seed is censored (x: the smallest cap);
  '> mean (k of N censored)' when some are (the censored at their cap: a lower bound);
  '<=' marks a crossing reached at the first scored step in every seed; runs that did not
  record the metric (None) are left out ('not recorded' when none did)."""
  crossings = [c for c in crossings if c is not None]
  if not crossings:
    return 'not recorded'
  values = np.array([c.step * scale for c in crossings])
  censored = sum(c.censored for c in crossings)
  if censored == len(crossings):
    return '> ' + fmt.format(values.min())
  mean = fmt.format(values.mean())
  spread = ' ± ' + fmt.format(values.std(ddof=1)) if len(values) > 1 else ''
  if censored:
    return f'> {mean} ({censored} of {len(values)} censored)'
  if all(c.at_first for c in crossings):
    return '<= ' + mean
  return mean + spread


def _ratio_cell(ratios: list) -> str:
  ratios = [r for r in ratios if r[1] != 'unrecorded']
  if not ratios:
    return 'not recorded'
  values = np.array([v for v, bound in ratios if bound != 'none'])
  none = sum(bound == 'none' for _, bound in ratios)
  lower = sum(bound == 'lower' for _, bound in ratios)
  if not len(values):
    return 'none (quality not reached)'
  cell = f'{values.mean():.2f}' + (f' ± {values.std(ddof=1):.2f}' if len(values) > 1 else '')
  notes = ([f'{lower} lower bound{"s" if lower > 1 else ""}'] if lower else [])
  notes += [f'{none} without tau_gen'] if none else []
  return ('>= ' if lower else '') + cell + (f' ({", ".join(notes)})' if notes else '')


def _mean_cell(values: list, fmt: str = '{:.2f}') -> str:
  v = np.array([x for x in values if not math.isnan(x)])
  if not len(v):
    return '–'
  return fmt.format(v.mean()) + (' ± ' + fmt.format(v.std(ddof=1)) if len(v) > 1 else '')


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
  """{(setting, n): [rows]} in SETTING_ORDER, then by n."""
  out: dict[tuple, list[dict]] = {}
  for r in rows:
    out.setdefault((r['setting'], r['n']), []).append(r)
  order = {s: i for i, s in enumerate(SETTING_ORDER)}
  return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][0],
                                                  kv[0][1])))


def fit_slope(ns, taus) -> tuple[float, float, int]:
  """(slope, its standard error, points) of log tau against log n by least squares; NaNs
  when fewer than 3 points or fewer than 2 distinct n."""
  ns, taus = np.asarray(ns, float), np.asarray(taus, float)
  if len(ns) < 3 or len(set(ns)) < 2:
    return math.nan, math.nan, len(ns)
  from scipy import stats
  fit = stats.linregress(np.log(ns), np.log(taus))
  return float(fit.slope), float(fit.stderr), len(ns)


def slopes(rows: list[dict], key: str = 'mem_0.5') -> dict[str, tuple]:
  """Per setting: fit_slope over its uncensored runs' `key` crossing."""
  out = {}
  for setting in dict.fromkeys(r['setting'] for r in rows):
    pts = [(r['n'], r[key].step) for r in rows if r['setting'] == setting
           and not r[key].censored and not r[key].at_first]
    out[setting] = fit_slope([p[0] for p in pts], [p[1] for p in pts])
  return out


def welch(a, b, log: bool = True) -> dict:
  """Welch's two-sample t-test of a against b (on log values when `log`): 'effect' (the
  ratio of geometric means exp(mean log a - mean log b); without log the difference of
  means), 'low' and 'high' (its 95% confidence interval), 'p' (two-sided). NaNs when either
  side has fewer than 2 values."""
  from scipy import stats
  a, b = (np.log(np.asarray(x, float)) if log else np.asarray(x, float) for x in (a, b))
  nan = {'effect': math.nan, 'low': math.nan, 'high': math.nan, 'p': math.nan}
  if len(a) < 2 or len(b) < 2:
    return nan
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
  if se == 0:
    return {**nan, 'effect': math.exp(diff) if log else diff}
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  half = float(stats.t.ppf(0.975, df)) * se
  p = float(2 * stats.t.sf(abs(diff / se), df))
  out = {'effect': diff, 'low': diff - half, 'high': diff + half, 'p': p}
  if log:
    out.update({k: math.exp(out[k]) for k in ('effect', 'low', 'high')})
  return out


def holm(ps: list[float]) -> list[float]:
  """Holm-adjusted p-values (NaNs stay NaN and do not count)."""
  order = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
  out, running = [math.nan] * len(ps), 0.0
  for rank, (p, i) in enumerate(order):
    running = max(running, min(1.0, (len(order) - rank) * p))
    out[i] = running
  return out


EQUIVALENCE = (0.8, 1.25)   # a window ratio whose 95% interval lies inside: "no different"


def reading(test: dict, p_holm: float, censored: tuple[bool, bool] = (False, False)) -> str:
  """The stated reading of one comparison (README.md: the test, fixed in advance).
  censored: whether (setting, reference) hold runs whose window is a lower bound; the
  smaller side holding one leaves the direction open, either holding one rules out "no
  different"."""
  smaller_censored = censored[1] if test['effect'] > 1 else censored[0]
  if not math.isnan(p_holm) and p_holm < 0.05:
    if smaller_censored:
      return 'undecided (censored)'
    return 'wider' if test['effect'] > 1 else 'narrower'
  if (EQUIVALENCE[0] <= test['low'] and test['high'] <= EQUIVALENCE[1]
      and not any(censored)):
    return 'no different'
  return 'undecided'


def comparisons(settings) -> list[tuple[str, str]]:
  """(setting, reference) pairs: each setting against the dense loss of its backbone, and
  each mask against its batch-matched control."""
  out = []
  for s in settings:
    prefix = s.split(': ')[0] + ': ' if ': ' in s else ''
    if s != prefix + 'dense' and prefix + 'dense' in settings:
      out.append((s, prefix + 'dense'))
  for s in settings:
    if s.startswith('mask ') and f'dense, batch-matched {s[5:]}' in settings:
      out.append((s, f'dense, batch-matched {s[5:]}'))
  return out


def decision_lines(rows: list[dict], quality: dict, levels) -> list[str]:
  """The section 'Decisions' of window.md (the test stated in README.md)."""
  groups = group_rows(rows)
  lines = ['', '## Decisions: each setting against dense and against its control', '',
           'Welch\'s t-test on log window per run (a censored tau_mem enters as its lower '
           'bound, marked *; runs without tau_gen are left out); effect: ratio of geometric '
           'means with its 95% interval; Holm over the comparisons of one table and n. '
           'Reading: wider/narrower when Holm p < 0.05 (undecided when the smaller side '
           f'holds a lower bound), "no different" when the interval lies in '
           f'[{EQUIVALENCE[0]}, {EQUIVALENCE[1]}] and no side holds a lower bound, else '
           'undecided. Memorized at tau_gen: difference of means (Welch).', '']
  for metric in quality:
    for q in levels:
      head = ['n', 'setting', 'against', 'runs', 'ratio', '95% interval', 'p', 'Holm p',
              'reading', 'memorized at tau_gen: difference', 'p']
      body = []
      for n in sorted({r['n'] for r in rows}):
        settings = [s for (s, m) in groups if m == n]
        pairs, tests, mems = comparisons(settings), [], []
        for a, b in pairs:
          va, vb = ([x[f'window_{metric}_{q:g}'] for x in groups[(s, n)]] for s in (a, b))
          good_a, good_b = ([v for v, bound in vs if bound in ('exact', 'lower')]
                            for vs in (va, vb))
          lower = tuple(any(bound == 'lower' for _, bound in v) for v in (va, vb))
          tests.append((welch(good_a, good_b), lower, f'{len(good_a)} / {len(good_b)}'))
          ma, mb = ([x[f'memorized_at_gen_{metric}'] for x in groups[(s, n)]] for s in (a, b))
          mems.append(welch([v for v in ma if not math.isnan(v)],
                            [v for v in mb if not math.isnan(v)], log=False))
        adjusted = holm([t['p'] for t, _, _ in tests])
        for (a, b), (t, lower, count), p_adj, mem in zip(pairs, tests, adjusted, mems):
          if math.isnan(t['effect']):
            continue
          star = '*' if any(lower) else ''
          body.append([str(n), a, b, count, f'{t["effect"]:.2f}{star}',
                       f'{t["low"]:.2f} to {t["high"]:.2f}', f'{t["p"]:.3g}',
                       f'{p_adj:.3g}', reading(t, p_adj, lower),
                       f'{mem["effect"]:+.3f} ({mem["low"]:+.3f} to {mem["high"]:+.3f})'
                       if not math.isnan(mem['low']) else '–', f'{mem["p"]:.3g}'])
      if not body:
        continue
      sign = '<=' if window.quality_metric(metric)[1] == 'le' else '>='
      lines += [f'### Window tau_mem({q:g}) / tau_gen({metric} {sign} {quality[metric]:g})',
                '', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
      lines += ['| ' + ' | '.join(cells) + ' |' for cells in body] + ['']
  return lines


def slope_lines(rows: list[dict], quality: dict, levels) -> list[str]:
  """tau_gen (each target) and tau_mem(q) each against n: slope and its 95% interval."""
  from scipy import stats
  keys = ([(f'gen_{m}', f'tau_gen({m})') for m in quality] +
          [(f'mem_{q:g}', f'tau_mem({q:g})') for q in levels])
  lines = ['', '## tau_gen and tau_mem against n', '',
           'Least-squares slope of log tau against log n over the uncensored runs, with its '
           '95% interval (t, runs - 2 degrees of freedom; NaN with fewer than 3 runs or one '
           'n); then the runs and the n they span.', '',
           '| setting | ' + ' | '.join(label for _, label in keys) + ' |',
           '|---|' + '---|' * len(keys)]
  for setting in _by_setting(rows):
    cells = [setting]
    for key, _ in keys:
      pts = [(r['n'], r[key].step) for r in rows if r['setting'] == setting
             and r[key] is not None and not r[key].censored and not r[key].at_first]
      slope, err, k = fit_slope([p[0] for p in pts], [p[1] for p in pts])
      if math.isnan(slope):
        cells.append(f'– ({k} runs)')
        continue
      half = float(stats.t.ppf(0.975, k - 2)) * err
      ns = sorted({p[0] for p in pts})
      cells.append(f'{slope:.2f} ({slope - half:.2f} to {slope + half:.2f}; {k} runs, '
                   f'n {ns[0]}-{ns[-1]})')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def write_markdown(path: str, rows: list[dict], quality: dict, levels, runs: list[dict],
                   planned: int | None,
                   command: str = 'launch/experiments/memorization_window.sh') -> str:
  groups = group_rows(rows)
  first = next(iter(quality))
  units = {r['name']: r['units'] for r in runs}
  lines = [f'# The memorization window: {dataset_title(runs)}', '',
           f'{len(rows)} runs' + (f' of the {planned} planned' if planned else '') +
           f' ({command}). Quality targets: ' +
           ', '.join(f'{m} {"<=" if window.quality_metric(m)[1] == "le" else ">="} {t:g}'
                     for m, t in quality.items()) +
           '; memorized: d1/d2 < 1/3. Steps interpolated between scored steps '
           '(resolution: the scoring spacing, column `every`). Cells: mean ± sample std over '
           'seeds; "> x": censored, not reached by step x, the last scored step (the cap, '
           'or the step where the run\'s stop rule ended it); "<= x": reached at the first '
           'scored step.', '']
  head = (['setting', 'n', 'seeds', 'every'] + [f'tau_gen {m}' for m in quality] +
          [f'tau_mem({q:g})' for q in levels] +
          [f'window {m} ({q:g})' for m in quality for q in levels] +
          [f'memorized at tau_gen {first}'])
  lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for (setting, n), members in groups.items():
    every = max(window.summarize(next(r for r in runs if r['name'] == m['name'])
                                 ['trajectory'], {})['window_spacing'] for m in members)
    cells = [setting, str(n), str(len(members)), f'{every:.0f}']
    cells += [_crossing_cell([m[f'gen_{k}'] for m in members]) for k in quality]
    cells += [_crossing_cell([m[f'mem_{q:g}'] for m in members]) for q in levels]
    cells += [_ratio_cell([m[f'window_{k}_{q:g}'] for m in members])
              for k in quality for q in levels]
    cells += [_mean_cell([m[f'memorized_at_gen_{first}'] for m in members])]
    lines.append('| ' + ' | '.join(cells) + ' |')
  keys = list(dict.fromkeys(k for r in runs for k in at_gen_keys(r)))
  if keys:
    lines += ['', f'## At equal quality: the metrics at tau_gen {first}', '',
              'Each metric interpolated at the run\'s own tau_gen (mean ± std over the seeds '
              'that reached it; – when none did).', '',
              '| setting | n | reached | ' + ' | '.join(keys) + ' | memorized |',
              '|' + '---|' * (len(keys) + 4)]
    for (setting, n), members in groups.items():
      reached = sum(not m[f'gen_{first}'].censored for m in members)
      cells = [setting, str(n), f'{reached} of {len(members)}']
      cells += [_mean_cell([m.get(f'{k}_at_gen_{first}', math.nan) for m in members],
                           '{:.3f}') for k in keys]
      cells += [_mean_cell([m[f'memorized_at_gen_{first}'] for m in members], '{:.3f}')]
      lines.append('| ' + ' | '.join(cells) + ' |')
  q_top = max(levels)
  lines += ['', f'## The same crossings in supervised pixels and in compute', '',
            'Supervised pixels seen: steps x batch x kept fraction x values per image '
            '(millions); compute: images through the network, steps x batch (thousands; a '
            'masked step costs a full forward and backward).', '']
  head = ['setting', 'n', f'tau_gen {first}: Mpixels', f'tau_mem({q_top:g}): Mpixels',
          f'tau_gen {first}: kimages', f'tau_mem({q_top:g}): kimages']
  lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for (setting, n), members in groups.items():
    u = units[members[0]['name']]
    cells = [setting, str(n)]
    for unit, scale in (('pixels_seen', 1e-6), ('images_seen', 1e-3)):
      for key in (f'gen_{first}', f'mem_{q_top:g}'):
        cells.append(_crossing_cell([m[key] for m in members], u[unit] * scale, '{:.2f}'))
    cells = cells[:2] + [cells[2], cells[3], cells[4], cells[5]]
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += slope_lines(rows, quality, levels)
  lines += decision_lines(rows, quality, levels)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def write_csv(path: str, rows: list[dict]) -> str:
  flat = []
  for r in rows:
    out = {}
    for k, v in r.items():
      if isinstance(v, window.Crossing):
        out.update({k: v.step, f'{k}_censored': int(v.censored),
                    f'{k}_at_first': int(v.at_first)})
      elif isinstance(v, tuple):   # (window, bound)
        out.update({k: v[0], f'{k}_bound': v[1]})
      else:
        out[k] = v
    flat.append(out)
  fields = list(dict.fromkeys(k for r in flat for k in r))
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    writer.writerows(flat)
  return path


def _by_setting(rows):
  out: dict[str, list[dict]] = {}
  for r in rows:
    out.setdefault(r['setting'], []).append(r)
  order = {s: i for i, s in enumerate(SETTING_ORDER)}
  return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], 99)))


def plot_vs_n(path: str, rows: list[dict], metric: str, q: float) -> str:
  """tau_gen(metric) and tau_mem(q) against n, log-log: seed means, censored hollow."""
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, key, title in ((axes[0], f'gen_{metric}', f'tau_gen ({metric})'),
                         (axes[1], f'mem_{q:g}', f'tau_mem({q:g})')):
    for setting, members in _by_setting(rows).items():
      ns = sorted({m['n'] for m in members})
      means = [np.mean([m[key].step for m in members if m['n'] == n]) for n in ns]
      censored = [any(m[key].censored for m in members if m['n'] == n) for n in ns]
      line, = ax.plot(ns, means, '-', label=setting)
      for n, v, c in zip(ns, means, censored):
        ax.plot(n, v, 'o', mfc='none' if c else line.get_color(), color=line.get_color())
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('training images n')
    ax.set_ylabel('steps')
    ax.set_title(title + ' (hollow: censored at the cap)', fontsize=9)
    ax.grid(alpha=0.3, which='both')
  axes[1].legend(fontsize=7)
  return save_figure(fig, path)


def plot_window(path: str, rows: list[dict], metric: str, q: float) -> str:
  """The window tau_mem(q) / tau_gen(metric) per setting and n, mean +- std over seeds."""
  plt = pyplot()
  groups = group_rows(rows)
  settings = list(_by_setting(rows))
  ns = sorted({r['n'] for r in rows})
  fig, ax = plt.subplots(figsize=(11, 4))
  width = 0.8 / max(len(ns), 1)
  for j, n in enumerate(ns):
    xs, means, stds, hatches = [], [], [], []
    for i, setting in enumerate(settings):
      members = groups.get((setting, n), [])
      vals = [m[f'window_{metric}_{q:g}'] for m in members]
      good = [v for v, b in vals if b != 'none']
      if not good:
        continue
      xs.append(i + (j - (len(ns) - 1) / 2) * width)
      means.append(np.mean(good))
      stds.append(np.std(good, ddof=1) if len(good) > 1 else 0.0)
      hatches.append(any(b == 'lower' for _, b in vals))
    bars = ax.bar(xs, means, width, yerr=stds, capsize=3, label=f'n={n}')
    for bar, hatch in zip(bars, hatches):
      if hatch:
        bar.set_hatch('//')
  ax.set_xticks(range(len(settings)))
  ax.set_xticklabels(settings, rotation=20, ha='right', fontsize=8)
  ax.set_ylabel(f'tau_mem({q:g}) / tau_gen({metric})')
  ax.set_title('memorization window (hatched: a seed censored, a lower bound)', fontsize=9)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, axis='y')
  return save_figure(fig, path)


def plot_trajectories(path: str, runs: list[dict], n: int,
                      metrics=(window.MEMORIZED_KEY, 'digits_fd')) -> str:
  """Each metric against steps (top) and supervised pixels seen (bottom), runs at n."""
  plt = pyplot()
  fig, axes = plt.subplots(2, len(metrics), figsize=(6 * len(metrics), 8), squeeze=False)
  colors = {s: f'C{i}' for i, s in enumerate(SETTING_ORDER)}
  seen = set()
  for run in (r for r in runs if r['n'] == n):
    steps = np.array([e['step'] for e in run['trajectory']], float)
    label = None if run['setting'] in seen else run['setting']
    seen.add(run['setting'])
    for j, metric in enumerate(metrics):
      values = [e.get(metric, math.nan) for e in run['trajectory']]
      for i, x in enumerate((steps, steps * run['units']['pixels_seen'] / 1e6)):
        axes[i, j].plot(x, values, '-', color=colors.get(run['setting'], 'k'), alpha=0.7,
                        lw=1, label=label if (i, j) == (0, 0) else None)
  for j, metric in enumerate(metrics):
    for i, xlabel in enumerate(('training step', 'supervised pixels seen (millions)')):
      axes[i, j].set_xscale('log')
      axes[i, j].set_xlabel(xlabel)
      axes[i, j].set_ylabel(metric)
      axes[i, j].grid(alpha=0.3)
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(f'{dataset_title(runs)}, n={n}: every run', fontsize=10)
  return save_figure(fig, path)


def build(results: str, out: str, quality: dict, levels, planned: int | None = None,
          command: str = 'launch/experiments/memorization_window.sh') -> list:
  """Writes every output of the module docstring to OUT; returns their paths."""
  runs = read_results(results)
  if not runs:
    raise FileNotFoundError(f'no run with {TRAJECTORY} under {results}')
  for dataset in {r['dataset'] for r in runs}:
    window.check_dataset(quality, dataset)
  # Targets every run recorded first: the sections and figures read at the first one.
  quality = dict(sorted(quality.items(), key=lambda kv: not all(
      window.recorded(r['trajectory'], kv[0]) for r in runs)))
  rows = [run_row(r, quality, levels) for r in runs]
  os.makedirs(out, exist_ok=True)
  first, q_top = next(iter(quality)), max(levels)
  paths = [write_markdown(os.path.join(out, 'window.md'), rows, quality, levels, runs,
                          planned, command),
           write_csv(os.path.join(out, 'window.csv'), rows),
           plot_vs_n(os.path.join(out, 'window_vs_n.png'), rows, first, q_top),
           plot_window(os.path.join(out, 'window_ratio.png'), rows, first, q_top)]
  for n in sorted({r['n'] for r in runs}):
    fd = [k for k in at_gen_keys(runs[0]) if k.endswith('_fd')][:1] or list(quality)[:1]
    paths.append(plot_trajectories(os.path.join(out, f'trajectories_n{n}.png'), runs, n,
                                   (window.MEMORIZED_KEY, *fd)))
  return paths


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--results', required=True, help='folder of kept run results')
  p.add_argument('--out', default=None, help='output folder (default: RESULTS/..)')
  p.add_argument('--quality', default='',
                 help='metric=target,...: the quality targets of tau_gen '
                      f'({", ".join(window.quality_names())}); default: those of '
                      'window.DEFAULT_TARGETS that the runs\' dataset provides')
  p.add_argument('--levels', default=','.join(f'{q:g}' for q in window.LEVELS),
                 help='memorized fractions q of tau_mem(q), each in (0, 1]')
  p.add_argument('--planned', type=int, default=None,
                 help='runs the experiment plans (the table says how many it holds)')
  p.add_argument('--command', default='launch/experiments/memorization_window.sh',
                 help='the command that made the runs, named in the table')
  a = p.parse_args(argv)
  try:
    flag = '--levels'
    levels = window.parse_levels(a.levels)
    flag = '--results'
    if not os.path.isdir(a.results):
      raise ValueError(f'{a.results}: no such folder')
    datasets = {r['dataset'] for r in read_results(a.results)}
    flag = '--quality'
    quality = window.parse_quality(a.quality or ','.join(
        f'{k}={v:g}' for k, v in window.DEFAULT_TARGETS.items()
        if window.quality_metric(k)[0] in datasets or not datasets))
    for dataset in datasets:
      window.check_dataset(quality, dataset)
  except ValueError as e:
    print(f'error: {flag}: {e}', file=sys.stderr)
    return EXIT_USAGE
  try:
    paths = build(a.results, a.out or os.path.dirname(os.path.abspath(a.results)), quality,
                  levels, a.planned, a.command)
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print('wrote ' + ', '.join(paths))
  return 0


if __name__ == '__main__':
  sys.exit(main())
