"""Grid sweeps over config fields, with the baselines that isolate the effect of masking.

  python launch/sweep.py --root=runs/ratio_sweep \
      --set training.num_steps=1500 \
      --grid mask.ratio=0,0.5,0.9,0.98 --grid training.seed=0,1,2 \
      --baseline batch_matched --baseline dropout=0.1

Every run gets its own folder under --root named after the settings that set it apart
(e.g. `grid__mask.ratio=0.9__training.seed=1`); each is trained with
`python -m sparsediff_jax.main --mode=train` and scored with `--mode=research`, which
writes research_metrics.json. A run whose research_metrics.json records the run's final
step is finished and skipped, so an interrupted sweep continues where it stopped (training
itself resumes from its newest checkpoint). With --print, nothing runs: one shell line per
unfinished run is printed, for a cluster's job queue. Afterwards (or with --aggregate_only)
the finished runs are summarised into results.md, results.csv and results.png in --root
(mean ± std over seeds; --headline picks the table's and plots' metrics). Runs scored with
research.trajectory=True also give results_equal_fd.md: memorization at the checkpoint of
equal quality (--equal_quality, --equal_target; sweep_table.summarize_equal_quality).

Baselines (see docs/research.md for what each controls for):
  dense            the dense loss: mask.ratio=0 is added to the ratio grid.
  batch_matched    for every ratio eta > 0 of the grid: the dense loss with the global batch
                   round(B * (1 - eta)) (a multiple of --devices), so each step supervises
                   as many pixels as the masked run does.
  dropout=P[,P..]  the dense loss with dropout P in the network's residual blocks.
With --matched_images each batch-matched run's training.num_steps is scaled by
B / its batch, so that it may see as many images through the network as the masked run
(the run's name is unchanged; a stop rule may end it earlier).

Local runs share a persistent XLA compilation cache in ROOT/jax_cache, so seeds of one
setting compile once.
"""

import argparse
import dataclasses
import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from sparsediff_jax.runtime import atomic_io  # noqa: E402
from sparsediff_jax import errors  # noqa: E402
from sparsediff_jax.sweeps import carry_over, sweep_table  # noqa: E402

RATIO_KEY = 'mask.ratio'
EXIT_USAGE = 2
BATCH_KEY = 'training.batch_size'


class SweepError(ValueError):
  """A malformed sweep request; the CLI prints it as one line and exits with code 2."""


@dataclasses.dataclass
class Run:
  name: str                 # folder name under the sweep root
  group: str                # 'grid' or a baseline's name
  series: str               # the line it belongs to in the plots
  label: str                # its row name in the table
  overrides: dict           # config field -> value (string) that set it apart
  x: float | None           # its position on the plots' x axis (None: a horizontal band)
  seed_key: str
  extra: dict = dataclasses.field(default_factory=dict)   # set without naming the run
                            # (--matched_images: a batch-matched run's training.num_steps)

  def record(self) -> dict:
    return dataclasses.asdict(self)


def parse_assignments(items: list[str], what: str) -> dict[str, list[str]]:
  """['a.b=1,2', ...] -> {'a.b': ['1', '2']}; a malformed item is a usage error."""
  out = {}
  for item in items:
    key, sep, values = item.partition('=')
    if not sep or not key or not values:
      raise SweepError(f'{what} {item!r} must look like field=value[,value...], '
                       'e.g. mask.ratio=0,0.9')
    out[key] = values.split(',')
  return out


def matched_batch(batch: int, ratio: float, devices: int) -> int:
  """round(batch * (1 - ratio)) rounded to a multiple of `devices`, at least `devices`."""
  target = batch * (1.0 - ratio)
  return max(devices, int(round(target / devices)) * devices)


def _name(group: str, overrides: dict) -> str:
  return '__'.join([group] + [f'{k}={v}' for k, v in overrides.items()])


def _label(overrides: dict, seed_key: str) -> str:
  return ', '.join(f'{k}={v}' for k, v in overrides.items() if k != seed_key) or 'base'


def expand_runs(grid: dict[str, list[str]], baselines: list[str], *, base_batch: int,
                devices: int = 1, seed_key: str = 'training.seed',
                x_key: str = RATIO_KEY) -> list[Run]:
  """The sweep's runs: the grid's product, then each baseline's runs."""
  grid = dict(grid)
  presets = {}
  for b in baselines:
    name, _, values = b.partition('=')
    if name not in ('dense', 'batch_matched', 'dropout'):
      raise SweepError(f'unknown baseline {b!r}; choose dense, batch_matched or '
                       'dropout=P[,P...]')
    if name == 'dropout' and not values:
      raise SweepError('--baseline dropout needs its rates, e.g. dropout=0.1')
    presets[name] = values.split(',') if values else []
  if 'dense' in presets and not any(float(v) == 0 for v in grid.get(RATIO_KEY, [])):
    grid[RATIO_KEY] = ['0'] + grid.get(RATIO_KEY, [])
  if BATCH_KEY in grid and 'batch_matched' in presets:
    raise SweepError(f'--baseline batch_matched sets {BATCH_KEY} itself; '
                     'do not put it in the grid')

  def x_of(overrides):
    return float(overrides[x_key]) if x_key in overrides else None

  runs = []
  for values in itertools.product(*grid.values()):
    o = dict(zip(grid, values))
    others = {k: v for k, v in o.items() if k not in (x_key, seed_key)}
    series = 'sparse mask' + (f' ({_label(others, seed_key)})' if others else '')
    runs.append(Run(_name('grid', o), 'grid', series, _label(o, seed_key), o, x_of(o),
                    seed_key))

  # Baselines vary what the grid varies except the mask ratio, which they set themselves.
  rest = {k: v for k, v in grid.items() if k != RATIO_KEY}
  for values in itertools.product(*rest.values()):
    o = dict(zip(rest, values))
    if 'batch_matched' in presets:
      for ratio in grid.get(RATIO_KEY, []):
        eta = float(ratio)
        if eta == 0:
          continue
        b = matched_batch(base_batch, eta, devices)
        ov = {RATIO_KEY: '0', BATCH_KEY: str(b), **o}
        runs.append(Run(_name(f'batch_matched{ratio}', ov), 'batch_matched',
                        'dense, batch matched', f'dense, batch {b} (matched to {RATIO_KEY}='
                        f'{ratio}){_suffix(o, seed_key)}', ov, eta, seed_key))
    for p in presets.get('dropout', []):
      ov = {RATIO_KEY: '0', 'model.dropout': p, **o}
      runs.append(Run(_name('dropout', ov), 'dropout', f'dense, dropout {p}',
                      f'dense, dropout {p}{_suffix(o, seed_key)}', ov, None, seed_key))
  return runs


def match_images(runs: list[Run], num_steps: int, base_batch: int) -> None:
  """--matched_images: each batch-matched run's cap (training.num_steps, in run.extra) is
  the masked run's in images through the network: num_steps x base_batch / its batch."""
  for run in runs:
    if run.group == 'batch_matched':
      batch = int(run.overrides[BATCH_KEY])
      run.extra['training.num_steps'] = str(num_steps * base_batch // batch)


def _suffix(overrides: dict, seed_key: str) -> str:
  label = _label(overrides, seed_key)
  return '' if label == 'base' else f', {label}'


def load_config(path: str | None):
  """The config file's get_config() (the embedded default without a path)."""
  if path is None:
    from sparsediff_jax import config_base
    return config_base.get_config()
  file = path.split(':', 1)[0]
  if not os.path.isfile(file):
    raise SweepError(f'--config={path}: no such file')
  spec = importlib.util.spec_from_file_location('sweep_config', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def expected_steps(config, overrides: dict) -> int:
  return int(overrides.get('training.num_steps', config.training.num_steps))


def is_finished(workdir: str, num_steps: int) -> bool:
  """True when WORKDIR's newest research_metrics*.json exists and was taken at step
  num_steps, or at the step where the run's stop rule ended it (research.window_stop:
  window_stop_step)."""
  path = sweep_table.newest_metrics_file(workdir)
  try:
    with open(path) as f:
      metrics = json.load(f)
    return int(metrics.get('step', -1)) in (num_steps, metrics.get('window_stop_step'))
  except (OSError, ValueError):
    return False


def resolve_runs(config_path: str | None, fixed: dict, runs: list[Run]) -> dict:
  """{run name: its config as config.json will hold it}, each resolved and validated as
  the CLI would (carry_over.resolve_config); a bad run is a ConfigError naming it."""
  out = {}
  for run in runs:
    try:
      out[run.name] = carry_over.as_dict(carry_over.resolve_config(
          config_path, {**fixed, **run.overrides, **run.extra}))
    except errors.ConfigError as e:
      raise errors.ConfigError(f'run {run.name}: {e}') from None
  return out


def is_kept(results: str, name: str, config: dict) -> bool:
  """True when RESULTS/NAME holds a finished result of this very config; a kept result of
  another config is reported and run again."""
  kept = carry_over.read_kept_config(results, name)
  if kept is None or not os.path.isfile(os.path.join(results, name, sweep_table.METRICS_FILE)):
    return False
  diff = carry_over.differences(kept, config)
  if diff:
    print(f'{name}: the kept result in {results} differs in {", ".join(diff[:5])}'
          f'{" ..." if len(diff) > 5 else ""}; running it again', flush=True)
  return not diff


def experiment_name(results: str) -> str:
  """What a commit of a kept result is about: the results folder's name, or its parent's
  when it is called runs/ (docs/results/fashion_mnist_window/runs -> fashion_mnist_window)."""
  results = os.path.abspath(results)
  base = os.path.basename(results)
  return os.path.basename(os.path.dirname(results)) if base == 'runs' else base


def commit_result(path: str, name: str, experiment: str, attempts: int = 5) -> bool:
  """git add + commit of PATH alone (other staged changes are left as they are), with the
  subject 'EXPERIMENT: result of NAME'; a busy index (another git command) is retried.
  False, with a message, when it fails."""
  folder = os.path.dirname(os.path.abspath(path))
  for attempt in range(attempts):
    add = subprocess.run(['git', 'add', '--', path], cwd=folder, capture_output=True, text=True)
    done = add.returncode == 0 and subprocess.run(
        ['git', 'commit', '-q', '-m', f'{experiment}: result of {name}', '--', path],
        cwd=folder, capture_output=True, text=True).returncode == 0
    if done:
      return True
    time.sleep(2 + 3 * attempt)
  print(f'{name}: could not commit {path}; it stays in the folder, commit it by hand',
        file=sys.stderr, flush=True)
  return False


def run_commands(runner: list[str], config_path: str | None, fixed: dict, run: Run,
                 workdir: str) -> list[list[str]]:
  """The train and research command lines of one run."""
  args = ([f'--config={config_path}'] if config_path else [])
  args += [f'--config.{k}={v}' for k, v in {**fixed, **run.overrides, **run.extra}.items()]
  args.append(f'--workdir={workdir}')
  return [runner + args + ['--mode=train'], runner + args + ['--mode=research']]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--root', required=True, help='folder of the sweep; one subfolder per run')
  p.add_argument('--config', default=None, help='config file (default: embedded shapes)')
  p.add_argument('--grid', action='append', default=[],
                 help='field=v1,v2,...: one axis of the grid (repeatable)')
  p.add_argument('--set', action='append', default=[],
                 help='field=value for every run (repeatable)')
  p.add_argument('--baseline', action='append', default=[],
                 help='dense | batch_matched | dropout=P[,P...] (repeatable)')
  p.add_argument('--devices', type=int, default=1,
                 help='devices per run: batch-matched batches are multiples of it')
  p.add_argument('--seed_key', default='training.seed',
                 help='the field whose values are repeats of one setting')
  p.add_argument('--runner', default=f'{shlex.quote(sys.executable)} -m sparsediff_jax.main',
                 help='the command a run starts with (flags are appended)')
  p.add_argument('--print', action='store_true', dest='print_only',
                 help='print one command line per unfinished run instead of running')
  p.add_argument('--aggregate_only', action='store_true',
                 help='only summarise the finished runs')
  p.add_argument('--headline', '--metrics', dest='metrics', default='',
                 help='comma-separated metrics of the Markdown table and the plots, e.g. '
                      'pixel_memorized_fraction,digits_fd (default: the headline metrics '
                      "the runs' dataset registers, then "
                      f'{",".join(sweep_table.GENERIC_HEADLINE)}); '
                      'a metric no run has is left out')
  p.add_argument('--equal_quality', default='digits_fd',
                 help='runs with research/trajectory.json: memorization at the checkpoint '
                      'whose value of this metric is closest to --equal_target, into '
                      'results_equal_fd.md (digits_fd) or results_equal_<metric>.md; '
                      "'' = off")
  p.add_argument('--equal_target', type=float, default=None,
                 help='the common value of --equal_quality (default: the final value of '
                      'the dense runs, mask.ratio=0 of the grid)')
  p.add_argument('--title', default='', help='title of the Markdown table')
  p.add_argument('--results', default=None,
                 help='folder of kept results (e.g. committed to the repository): each '
                      'finished run is copied to RESULTS/<run name>/, and a run whose kept '
                      'config.json matches its resolved config is skipped '
                      '(sparsediff_jax/sweeps/carry_over.py)')
  p.add_argument('--matched_images', action='store_true',
                 help='cap each batch-matched run by images through the network, equal to '
                      'its masked run\'s: training.num_steps x batch / its batch')
  p.add_argument('--commit', action='store_true',
                 help='with --results: git-commit each kept result as soon as it is kept')
  a = p.parse_args(argv)

  try:
    grid = parse_assignments(a.grid, '--grid')
    fixed = {k: ','.join(v) for k, v in parse_assignments(a.set, '--set').items()}
    config = load_config(a.config)
    base_batch = int(fixed.get(BATCH_KEY, config.training.batch_size))
    runs = expand_runs(grid, a.baseline, base_batch=base_batch, devices=a.devices,
                       seed_key=a.seed_key)
    if a.matched_images:
      match_images(runs, expected_steps(config, fixed), base_batch)
    if a.commit and not a.results:
      raise SweepError('--commit needs --results (the folder whose results it commits)')
    configs = {} if a.aggregate_only else resolve_runs(a.config, fixed, runs)
  except ValueError as e:   # SweepError, ConfigError, or a value that is not a number
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    return EXIT_USAGE
  root = os.path.abspath(a.root)
  os.makedirs(root, exist_ok=True)
  if not a.aggregate_only:   # the record of what was run; summarising changes nothing
    atomic_io.write_json(os.path.join(root, 'sweep.json'), {
        'argv': sys.argv[1:] if argv is None else list(argv), 'fixed': fixed,
        'runs': [r.record() for r in runs]})

  failed = []
  if not a.aggregate_only:
    runner = shlex.split(a.runner)
    env = dict(os.environ)
    env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(root, 'jax_cache'))
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    for i, run in enumerate(runs, 1):
      workdir = os.path.join(root, run.name)
      steps = expected_steps(config, {**fixed, **run.overrides, **run.extra})
      if is_finished(workdir, steps):
        print(f'[{i}/{len(runs)}] {run.name}: finished, skipped', flush=True)
        continue
      if a.results and is_kept(a.results, run.name, configs[run.name]):
        print(f'[{i}/{len(runs)}] {run.name}: kept in {a.results}, skipped', flush=True)
        continue
      atomic_io.write_json(os.path.join(workdir, sweep_table.RUN_FILE), run.record())
      commands = run_commands(runner, a.config and os.path.abspath(a.config), fixed, run,
                              workdir)
      if a.print_only:
        print(f'cd {shlex.quote(REPO)} && ' + ' && '.join(shlex.join(c) for c in commands))
        continue
      print(f'[{i}/{len(runs)}] {run.name}: running', flush=True)
      start = time.time()
      for command in commands:
        rc = subprocess.call(command, cwd=REPO, env=env)
        if rc:
          failed.append(run.name)
          print(f'[{i}/{len(runs)}] {run.name}: FAILED (exit {rc}) in {shlex.join(command)}',
                flush=True)
          break
      else:
        print(f'[{i}/{len(runs)}] {run.name}: done in {time.time() - start:.0f} s', flush=True)
        if a.results:
          kept = carry_over.keep(workdir, a.results, run.name)
          if a.commit:
            commit_result(kept, run.name, experiment_name(a.results))
  if a.print_only:
    return 0
  try:
    paths = sweep_table.summarize(root, metrics=[m for m in a.metrics.split(',') if m] or None,
                                  title=a.title)
    if a.equal_quality:
      equal = sweep_table.summarize_equal_quality(root, a.equal_quality, a.equal_target,
                                                  title=a.title)
      if equal:
        paths['equal_quality'] = equal
    trajectories = sweep_table.plot_trajectories(root)
    if trajectories:
      paths['trajectories'] = trajectories
    print('wrote ' + ', '.join(paths.values()))
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if failed:
    print(f'{len(failed)} run(s) failed: {", ".join(failed)}; run the same command again '
          'to retry them', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
