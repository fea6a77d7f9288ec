"""launch/sweep.py: grid and baselines, resume after interruption, and the aggregated table."""

import csv
import importlib.util
import json
import math
import os
import shlex
import sys

import numpy as np
import pytest

from sparsediff_jax.sweeps import sweep_table
from tests.helpers import REPO

_spec = importlib.util.spec_from_file_location('sweep', os.path.join(REPO, 'launch', 'sweep.py'))
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)

FAKE_RUNNER = f'{shlex.quote(sys.executable)} {os.path.join(REPO, "tests", "helpers", "fake_runner.py")}'


def test_matched_batch_keeps_supervised_pixels_and_divides_over_devices():
  assert sweep.matched_batch(16, 0.5, 1) == 8
  assert sweep.matched_batch(16, 0.9, 1) == 2      # 1.6 rounds to 2
  assert sweep.matched_batch(16, 0.98, 1) == 1     # never below one image per device
  assert sweep.matched_batch(64, 0.5, 8) == 32
  assert sweep.matched_batch(128, 0.9, 8) == 16    # 12.8 -> nearest multiple of 8
  assert sweep.matched_batch(32, 0.9, 8) == 8


def test_grid_and_baselines_expand_to_named_runs():
  grid = {'training.seed': ['0', '1'], 'mask.ratio': ['0.5', '0.9']}
  runs = sweep.expand_runs(grid, ['dense', 'batch_matched', 'dropout=0.1,0.2'],
                           base_batch=16)
  by_group = {}
  for r in runs:
    by_group.setdefault(r.group, []).append(r)
  assert len(by_group['grid']) == 2 * 3                  # dense adds ratio 0 to the grid
  assert sorted({r.x for r in by_group['grid']}) == [0.0, 0.5, 0.9]
  assert len(by_group['batch_matched']) == 2 * 2
  assert len(by_group['dropout']) == 2 * 2
  assert len({r.name for r in runs}) == len(runs)        # every run has its own folder
  matched = {(r.x, r.overrides['training.seed']): r.overrides for r in by_group['batch_matched']}
  assert matched[(0.9, '1')] == {'mask.ratio': '0', 'training.batch_size': '2',
                                 'training.seed': '1'}
  assert matched[(0.5, '0')]['training.batch_size'] == '8'
  for r in by_group['dropout']:
    assert r.overrides['mask.ratio'] == '0' and r.x is None
  assert runs[0].name == 'grid__training.seed=0__mask.ratio=0'


def test_bad_baselines_are_refused():
  with pytest.raises(sweep.SweepError, match='unknown baseline'):
    sweep.expand_runs({'mask.ratio': ['0.9']}, ['smaller'], base_batch=16)
  with pytest.raises(sweep.SweepError, match='rates'):
    sweep.expand_runs({'mask.ratio': ['0.9']}, ['dropout'], base_batch=16)
  with pytest.raises(sweep.SweepError, match='batch_size'):
    sweep.expand_runs({'training.batch_size': ['8']}, ['batch_matched'], base_batch=16)
  with pytest.raises(sweep.SweepError, match='field=value'):
    sweep.parse_assignments(['mask.ratio'], '--grid')


def _write_run(root, name, group, ratio, seed, metrics, x=None):
  os.makedirs(root / name)
  record = {'name': name, 'group': group, 'series': group, 'label': f'{group} {ratio}',
            'overrides': {'mask.ratio': str(ratio), 'training.seed': str(seed)},
            'x': ratio if x is None else x, 'seed_key': 'training.seed'}
  (root / name / 'sweep_run.json').write_text(json.dumps(record))
  if metrics is not None:
    (root / name / 'research_metrics.json').write_text(json.dumps(metrics))


def test_aggregator_gives_mean_and_std_over_seeds(tmp_path):
  values = {0.0: [1.0, 2.0, 6.0], 0.9: [4.0, 4.5]}
  for ratio, vs in values.items():
    for seed, v in enumerate(vs):
      _write_run(tmp_path, f'r{ratio}_s{seed}', 'grid', ratio, seed,
                 {'step': 10, 'symmetry_error': v, 'train_dense_loss': 2 * v})
  _write_run(tmp_path, 'single', 'dropout', 0, 0, {'step': 10, 'symmetry_error': 7.0}, x=None)
  _write_run(tmp_path, 'unfinished', 'grid', 0.5, 0, None)
  rows = sweep_table.aggregate(sweep_table.read_runs(str(tmp_path)))
  assert len(rows) == 3
  stats = {(r['group'], r['x']): r for r in rows}
  mean, std, n = stats[('grid', 0.0)]['stats']['symmetry_error']
  assert (mean, n) == (3.0, 3)
  assert std == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))
  mean, std, n = stats[('grid', 0.9)]['stats']['train_dense_loss']
  assert (mean, std, n) == (8.5, pytest.approx(math.sqrt(0.5)), 2)
  assert stats[('grid', 0.9)]['seeds'] == ['0', '1']
  assert math.isnan(stats[('dropout', 0)]['stats']['symmetry_error'][1])
  assert 'step' not in stats[('grid', 0.0)]['stats']

  paths = sweep_table.summarize(str(tmp_path), title='synthetic')
  table = open(paths['markdown']).read()
  assert '| grid 0.0 | 3 | 3 ± 2.6 |' in table
  with open(paths['csv']) as f:
    lines = list(csv.DictReader(f))
  row = next(r for r in lines if r['label'] == 'grid 0.9')
  assert float(row['symmetry_error_mean']) == 4.25
  assert float(row['symmetry_error_std']) == pytest.approx(math.sqrt(0.125))
  assert os.path.getsize(paths['plot']) > 1000


def test_no_finished_run_is_an_error(tmp_path):
  _write_run(tmp_path, 'unfinished', 'grid', 0.5, 0, None)
  with pytest.raises(FileNotFoundError, match='no finished run'):
    sweep_table.summarize(str(tmp_path))


def _sweep(root, *extra):
  return sweep.main(['--root', str(root), '--runner', FAKE_RUNNER,
                     '--set', 'training.num_steps=5', '--grid', 'training.seed=0,1',
                     '--grid', 'mask.ratio=0,0.9', '--baseline', 'batch_matched', *extra])


def _log(path):
  return open(path).read().split('\n')[:-1] if os.path.exists(path) else []


def test_an_interrupted_sweep_runs_only_what_is_unfinished(tmp_path, monkeypatch):
  log = tmp_path / 'calls.log'
  monkeypatch.setenv('FAKE_RUNNER_LOG', str(log))
  monkeypatch.setenv('FAKE_RUNNER_FAIL', 'seed=1__mask.ratio=0.9')
  root = tmp_path / 'sweep'
  assert _sweep(root) == 1                              # one run failed
  first = _log(log)
  assert len(first) == 6 * 2 - 1                        # 6 runs; the failed one stopped early
  assert 'train grid__training.seed=1__mask.ratio=0.9' in first
  assert 'research grid__training.seed=1__mask.ratio=0.9' not in first

  monkeypatch.delenv('FAKE_RUNNER_FAIL')
  log.unlink()
  assert _sweep(root) == 0
  assert _log(log) == ['train grid__training.seed=1__mask.ratio=0.9',
                       'research grid__training.seed=1__mask.ratio=0.9']
  rows = sweep_table.aggregate(sweep_table.read_runs(str(root)))
  grid = {r['x']: r['stats']['score'] for r in rows if r['group'] == 'grid'}
  assert grid[0.9][:2] == (9.5, pytest.approx(math.sqrt(0.5)))
  assert '| score |' in open(root / 'results.md').read()   # no headline metric: all shown
  assert os.path.isfile(root / 'results.png')

  # A longer run is not finished by metrics of a shorter one: all 6 run again.
  log.unlink()
  assert sweep.main(['--root', str(root), '--runner', FAKE_RUNNER,
                     '--set', 'training.num_steps=7', '--grid', 'training.seed=0,1',
                     '--grid', 'mask.ratio=0,0.9', '--baseline', 'batch_matched']) == 0
  assert len(_log(log)) == 12


def test_print_mode_runs_nothing(tmp_path, monkeypatch, capsys):
  log = tmp_path / 'calls.log'
  monkeypatch.setenv('FAKE_RUNNER_LOG', str(log))
  assert _sweep(tmp_path / 'sweep', '--print', '--set', 'training.batch_size=32') == 0
  lines = capsys.readouterr().out.strip().split('\n')
  assert len(lines) == 6 and not log.exists()
  assert all('--mode=train' in l and '--mode=research' in l for l in lines)
  assert any('--config.training.batch_size=3' in l for l in lines)   # 32 * 0.1


def test_a_bad_request_is_one_line_and_exit_code_2(tmp_path, capsys):
  root = tmp_path / 'sweep'
  assert sweep.main(['--root', str(root), '--grid', 'mask.ratio']) == 2
  assert sweep.main(['--root', str(root), '--grid', 'mask.ratio=0.9',
                     '--baseline', 'smaller']) == 2
  err = capsys.readouterr().err.strip().split('\n')
  assert len(err) == 2 and all(line.startswith('error: ') for line in err)
  assert not root.exists()


def test_headline_picks_the_table_columns_and_skips_absent_ones(tmp_path, monkeypatch):
  monkeypatch.setenv('FAKE_RUNNER_LOG', str(tmp_path / 'calls.log'))
  root = tmp_path / 'sweep'
  assert _sweep(root, '--headline', 'digits_fd,score') == 0   # no run has digits_fd
  header = open(root / 'results.md').read().split('\n')[0]
  assert header == '| setting | n | score |'


def _traj(steps, fd, mem):
  return [{'step': s, 'digits_fd': f, 'pixel_memorized_fraction': m,
           'pixel_nn_distance_mean': 1.0 - m} for s, f, m in zip(steps, fd, mem)]


def _write_traj_run(root, name, group, ratio, seed, trajectory, extra=None):
  metrics = {'step': trajectory[-1]['step'], **trajectory[-1], **(extra or {})}
  _write_run(root, name, group, ratio, seed, metrics)
  os.makedirs(root / name / 'research')
  (root / name / sweep_table.TRAJECTORY_FILE).write_text(json.dumps(trajectory))


def test_equal_fd_table_matches_each_run_at_the_dense_final_quality(tmp_path):
  steps = [100, 200, 300, 400]
  # Dense: final digits_fd 10 (mean of 9 and 11), memorizes early.
  _write_traj_run(tmp_path, 'd0', 'grid', 0.0, 0, _traj(steps, [40, 20, 12, 9], [0, .2, .6, .9]),
                  {'memorization_onset_step': 300.0})
  _write_traj_run(tmp_path, 'd1', 'grid', 0.0, 1, _traj(steps, [50, 30, 15, 11], [0, .1, .3, .7]),
                  {'memorization_onset_step': 400.0})
  # Masked: reaches fd 10 only at its last step (seed 0) or never (seed 1, best 14).
  _write_traj_run(tmp_path, 'm0', 'grid', 0.9, 0, _traj(steps, [60, 40, 25, 10], [0, 0, 0, .1]),
                  {'memorization_onset_step': math.nan})
  _write_traj_run(tmp_path, 'm1', 'grid', 0.9, 1, _traj(steps, [70, 45, 30, 14], [0, 0, 0, .3]),
                  {'memorization_onset_step': math.nan})
  runs = sweep_table.read_trajectories(str(tmp_path))
  assert sweep_table.dense_target(runs, 'digits_fd') == 10.0
  assert sweep_table.closest_entry(runs[0]['trajectory'], 'digits_fd', 10.0)['step'] == 400
  path = sweep_table.summarize_equal_quality(str(tmp_path))
  assert os.path.basename(path) == 'results_equal_fd.md'
  rows = {r['x']: r['stats'] for r in sweep_table.aggregate(
      sweep_table.equal_quality_runs(runs, 'digits_fd', 10.0))}
  assert rows[0.0]['matched_step'][0] == 400.0       # both dense seeds at their last step
  assert rows[0.0]['matched_pixel_memorized_fraction'][0] == pytest.approx(0.8)
  assert rows[0.9]['matched_pixel_memorized_fraction'][0] == pytest.approx(0.2)
  assert rows[0.9]['reached_target'][0] == 0.5       # seed 1 never got to fd 10
  assert rows[0.0]['reached_target'][0] == 0.5       # dense seed 1 ends at 11 > 10
  table = open(path).read()
  assert 'closest to 10' in table and '| grid 0.9 | 2 | 0.2 ± 0.14 |' in table
  # An explicit target moves the match: fd 20 is dense seed 0's step 200.
  rows = sweep_table.aggregate(sweep_table.equal_quality_runs(runs, 'digits_fd', 20.0))
  assert rows[0]['stats']['matched_step'][:2] == (
      pytest.approx(np.mean([200, 300])), pytest.approx(np.std([200, 300], ddof=1)))
  # The main table: onset NaN in every masked seed reads NaN, not a crash or a blank mean.
  sweep_table.summarize(str(tmp_path), metrics=['pixel_memorized_fraction',
                                                'memorization_onset_step', 'digits_fd'])
  lines = open(tmp_path / 'results.md').read().split('\n')
  assert lines[0] == '| setting | n | pixel_memorized_fraction | memorization_onset_step | digits_fd |'
  masked = next(l for l in lines if l.startswith('| grid 0.9 '))
  assert masked.split(' | ')[3] == 'NaN'


def test_a_cell_over_fewer_seeds_says_so(tmp_path):
  _write_run(tmp_path, 'a', 'grid', 0.0, 0, {'step': 1, 'memorization_onset_step': 300.0})
  _write_run(tmp_path, 'b', 'grid', 0.0, 1, {'step': 1, 'memorization_onset_step': math.nan})
  _write_run(tmp_path, 'c', 'grid', 0.0, 2, {'step': 1, 'memorization_onset_step': 500.0})
  sweep_table.summarize(str(tmp_path), metrics=['memorization_onset_step'])
  assert '| grid 0.0 | 3 | 400 ± 1.4e+02 (n=2) |' in open(tmp_path / 'results.md').read()
  assert sweep_table.summarize_equal_quality(str(tmp_path)) is None   # no trajectories


def test_sweep_writes_the_equal_fd_table_from_trajectories(tmp_path):
  steps = [10, 20]
  _write_traj_run(tmp_path, 'd0', 'grid', 0.0, 0, _traj(steps, [30, 5], [0.1, 0.9]))
  _write_traj_run(tmp_path, 'm0', 'grid', 0.9, 0, _traj(steps, [20, 6], [0.0, 0.4]))
  assert sweep.main(['--root', str(tmp_path), '--aggregate_only', '--headline',
                     'pixel_memorized_fraction,digits_fd']) == 0
  table = open(tmp_path / 'results_equal_fd.md').read()
  assert '| grid 0.9 | 1 | 0.4 |' in table       # its step 20 (fd 6) is closest to 5
  assert sweep.main(['--root', str(tmp_path), '--aggregate_only', '--equal_quality',
                     'digits_fd', '--equal_target', '20']) == 0
  table = open(tmp_path / 'results_equal_fd.md').read()
  assert '| grid 0.9 | 1 | 0 |' in table          # now its step 10 (fd 20)


def test_trajectory_plot_has_one_line_per_setting(tmp_path, monkeypatch):
  steps = [100, 200, 300]
  for seed, mem in ((0, [0, .4, .8]), (1, [0, .2, .6])):
    _write_traj_run(tmp_path, f'd{seed}', 'grid', 0.0, seed, _traj(steps, [9, 8, 7], mem))
  _write_traj_run(tmp_path, 'm0', 'grid', 0.9, 0, _traj(steps, [20, 15, 12], [0, 0, .1]))
  drawn = []
  from sparsediff_jax.console.images import pyplot
  real_plot = pyplot().Axes.plot

  def recording_plot(ax, x, y, *args, **kwargs):
    drawn.append((list(x), list(y), kwargs.get('label')))
    return real_plot(ax, x, y, *args, **kwargs)

  monkeypatch.setattr(pyplot().Axes, 'plot', recording_plot)
  path = sweep_table.plot_trajectories(str(tmp_path), metrics=('pixel_memorized_fraction',))
  assert os.path.getsize(path) > 1000
  by_label = {label: y for _, y, label in drawn}
  dense = next(y for label, y in by_label.items() if label.endswith('(n=2)'))
  np.testing.assert_allclose(dense, [0, .3, .7])     # the mean over the two seeds
  assert any(label.endswith('(n=1)') for label in by_label)
  (tmp_path / 'empty').mkdir()
  assert sweep_table.plot_trajectories(str(tmp_path / 'empty')) is None


def _kept_sweep(root, results, *extra, seeds='0'):
  return sweep.main(['--root', str(root), '--runner', FAKE_RUNNER, '--results', str(results),
                     '--set', 'training.num_steps=5', '--grid', f'training.seed={seeds}',
                     '--grid', 'mask.ratio=0,0.9', *extra])


def test_kept_results_carry_over_and_a_changed_config_runs_again(tmp_path, monkeypatch):
  log = tmp_path / 'calls.log'
  monkeypatch.setenv('FAKE_RUNNER_LOG', str(log))
  monkeypatch.setenv('FAKE_RUNNER_CONFIG', '1')
  results = tmp_path / 'kept'
  assert _kept_sweep(tmp_path / 'machine1', results) == 0
  assert len(_log(log)) == 4
  kept = sorted(os.listdir(results))
  assert kept == ['grid__training.seed=0__mask.ratio=0', 'grid__training.seed=0__mask.ratio=0.9']
  assert sorted(os.listdir(results / kept[0])) == ['config.json', 'research_metrics.json',
                                                   'sweep_run.json']
  # Another machine (no run folders), one more seed: only the two new runs train.
  log.unlink()
  assert _kept_sweep(tmp_path / 'machine2', results, seeds='0,1') == 0
  assert sorted(set(line.split()[1] for line in _log(log))) == [
      'grid__training.seed=1__mask.ratio=0', 'grid__training.seed=1__mask.ratio=0.9']
  # A changed setting that does not change the run names (the sampler's steps): every kept
  # result is of another config, so all four run again and replace them.
  log.unlink()
  assert _kept_sweep(tmp_path / 'machine3', results, '--set', 'sampling.num_steps=7',
                     seeds='0,1') == 0
  assert len(_log(log)) == 8
  config = json.load(open(results / kept[0] / 'config.json'))
  assert config['sampling']['num_steps'] == 7


def test_a_kept_result_of_another_sampler_or_grid_is_not_reused(tmp_path, monkeypatch):
  # Sampler, time grid and steps are part of a run's config: results kept under Heun (the
  # former default) are not taken for a run of the current default, nor for another grid.
  from sparsediff_jax import config_base
  log = tmp_path / 'calls.log'
  monkeypatch.setenv('FAKE_RUNNER_LOG', str(log))
  monkeypatch.setenv('FAKE_RUNNER_CONFIG', '1')
  results = tmp_path / 'kept'
  heun = ('--set', 'sampling.sampler=heun', '--set', 'sampling.time_steps=default',
          '--set', 'sampling.num_steps=18')
  assert _kept_sweep(tmp_path / 'machine1', results, *heun) == 0
  log.unlink()
  assert _kept_sweep(tmp_path / 'machine2', results, *heun, seeds='0,1') == 0
  assert sorted(set(line.split()[1] for line in _log(log))) == [   # seed 0 reused
      'grid__training.seed=1__mask.ratio=0', 'grid__training.seed=1__mask.ratio=0.9']
  log.unlink()
  default = config_base.get_config().sampling
  assert default.sampler != 'heun'
  assert _kept_sweep(tmp_path / 'machine3', results) == 0          # the default sampler
  assert len(_log(log)) == 4
  kept = results / 'grid__training.seed=0__mask.ratio=0' / 'config.json'
  assert json.load(open(kept))['sampling']['sampler'] == default.sampler
  log.unlink()
  assert _kept_sweep(tmp_path / 'machine4', results, '--set', 'sampling.time_steps=logsnr') == 0
  assert len(_log(log)) == 4
  assert json.load(open(kept))['sampling']['time_steps'] == 'logsnr'


def test_kept_config_comparison_tolerates_only_new_fields_at_their_default():
  from sparsediff_jax.sweeps import carry_over
  current = carry_over.as_dict(carry_over.resolve_config(None, {'mask.ratio': '0.5'}))
  assert carry_over.differences(json.loads(json.dumps(current)), current) == []
  older = json.loads(json.dumps(current))
  del older['research']['window_every']                   # added since, at its default
  assert carry_over.differences(older, current) == []
  changed = carry_over.as_dict(carry_over.resolve_config(
      None, {'mask.ratio': '0.5', 'research.window_every': '5', 'training.num_steps': '10'}))
  assert carry_over.differences(older, changed) == ['research.window_every',
                                                     'training.num_steps']
  older['research']['gone'] = 1                            # a field removed since
  assert 'research.gone' in carry_over.differences(older, current)


def test_commit_keeps_each_result_in_git(tmp_path, monkeypatch):
  import subprocess
  log = tmp_path / 'calls.log'
  monkeypatch.setenv('FAKE_RUNNER_LOG', str(log))
  monkeypatch.setenv('FAKE_RUNNER_CONFIG', '1')
  repo = tmp_path / 'repo'
  repo.mkdir()
  git = lambda *a: subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', *a],
                                  cwd=repo, capture_output=True, text=True, check=True).stdout
  git('init', '-q')
  git('commit', '-q', '--allow-empty', '-m', 'start')
  (repo / 'staged.txt').write_text('not part of a result')
  git('add', 'staged.txt')
  monkeypatch.setenv('GIT_AUTHOR_NAME', 't')
  monkeypatch.setenv('GIT_AUTHOR_EMAIL', 't@t')
  monkeypatch.setenv('GIT_COMMITTER_NAME', 't')
  monkeypatch.setenv('GIT_COMMITTER_EMAIL', 't@t')
  assert _kept_sweep(tmp_path / 'root', repo / 'kept', '--commit') == 0
  subjects = git('log', '--format=%s').strip().split('\n')
  assert subjects[:2] == ['kept: result of grid__training.seed=0__mask.ratio=0.9',
                          'kept: result of grid__training.seed=0__mask.ratio=0']
  assert 'staged.txt' not in git('show', '--name-only', 'HEAD')   # only the result's files
  assert 'A  staged.txt' in git('status', '--short')


def test_commit_subject_names_the_experiment():
  assert sweep.experiment_name('docs/results/fashion_mnist_window/runs') == 'fashion_mnist_window'
  assert sweep.experiment_name('docs/results/memorization_window/runs/') == 'memorization_window'
  assert sweep.experiment_name('/tmp/kept') == 'kept'


def test_print_validates_every_run_and_junk_is_one_line(tmp_path, capsys):
  root = tmp_path / 'sweep'
  for junk in (['--set', 'training.num_steps=abc'], ['--set', 'training.num_stepz=3'],
               ['--grid', 'mask.ratio=0,1.5']):
    assert sweep.main(['--root', str(root), '--print', '--grid', 'mask.ratio=0', *junk]
                      if junk[0] == '--set' else ['--root', str(root), '--print', *junk]) == 2
  err = capsys.readouterr().err.strip().split('\n')
  assert len(err) == 3 and all(line.startswith('error: run ') for line in err), err
  assert 'mask.ratio=1.5' in err[2]
  assert not root.exists()
