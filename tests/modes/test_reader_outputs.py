"""The modes that read a run (sample, eval, research) on a workdir they cannot write into:
one line, exit code 2, before any sampling (a read-only mount, an immutable folder, a file
where their output folder should be)."""

import errno
import os
import tempfile

import pytest

from sparsediff_jax import errors, main
from sparsediff_jax.modes import evaluate, research, sample
from sparsediff_jax import train_state as state
from tests.helpers.eval_fakes import tiny_config, write_checkpoint

MODES = {'sample': (sample.run_sample_mode, 'samples'),
         'eval': (evaluate.run_eval_mode, 'eval'),
         'research': (research.evaluate_run, '')}


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('readonly') / 'run')
  write_checkpoint(tiny_config(), path)
  return path


@pytest.mark.parametrize('mode', sorted(MODES))
def test_a_read_only_workdir_is_refused_before_any_sampling(workdir, mode, monkeypatch):
  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get('dir'))
  monkeypatch.setattr(tempfile, 'mkdtemp', read_only)
  monkeypatch.setattr(state, 'restore_run', lambda *a, **k: pytest.fail('restored'))
  before = sorted(os.listdir(workdir))
  run, folder = MODES[mode]
  with pytest.raises(errors.WorkdirError) as raised:
    run(tiny_config(), workdir)
  where = os.path.join(workdir, folder) if folder else workdir
  assert str(raised.value).startswith(f'--mode={mode} cannot write its outputs in {where} '
                                      '(Read-only file system: ')
  assert main.is_bad_input(raised.value) and sorted(os.listdir(workdir)) == before


@pytest.mark.slow   # the CLI in a subprocess
def test_cli_a_file_where_the_samples_folder_should_be_is_one_line(workdir, tmp_path):
  from tests.helpers import cli_runs
  cfg = tmp_path / 'tiny_cli.py'
  cfg.write_text('from tests.helpers.eval_fakes import tiny_config\n\n'
                 'def get_config():\n  return tiny_config()\n')
  blocked = os.path.join(workdir, 'samples')
  with open(blocked, 'w') as f:
    f.write('not a folder')
  try:
    result = cli_runs.run(f'--config={cfg}', '--mode=sample', f'--workdir={workdir}',
                          env=cli_runs.env(str(tmp_path)), timeout=300)
  finally:
    os.remove(blocked)
  line = cli_runs.assert_one_line_error(result, 2)
  assert line == (f'error: --mode=sample cannot write its outputs in {blocked} (Not a '
                  f'directory: {blocked} is a file); make the workdir writable (or read a '
                  'writable copy of the run) and run again')
  assert 'sampling' not in result.stderr


def _start_over(workdir: str) -> None:
  """What --start_over does to a run's records (run_dir.set_aside_run), then the new run's
  first ones: the same config.json, a new checkpoint folder."""
  aside = os.path.join(workdir, 'previous-x')
  os.mkdir(aside)
  for name in os.listdir(workdir):
    if name != 'previous-x':
      os.rename(os.path.join(workdir, name), os.path.join(aside, name))
  os.mkdir(os.path.join(workdir, 'checkpoints'))


def test_the_run_identity_survives_a_restart_but_not_start_over(tmp_path):
  from sparsediff_jax.runtime import checkpoints
  workdir = str(tmp_path / 'run')
  os.makedirs(os.path.join(workdir, 'checkpoints', '2'))
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write('{"training": {"num_steps": 4}}')
  identity = checkpoints.run_identity(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:   # a resume to more steps
    f.write('{"training": {"num_steps": 8}}')
  os.rename(os.path.join(workdir, 'checkpoints', '2'), os.path.join(workdir, 'checkpoints', '4'))
  checkpoints.check_run_unchanged(workdir, identity, 'research')   # the same run
  _start_over(workdir)
  with pytest.raises(errors.WorkdirError, match=rf'^--mode=research: the run in {workdir} '
                     r'changed while this mode read it .*; nothing was written'):
    checkpoints.check_run_unchanged(workdir, identity, 'research')
  checkpoints.check_run_unchanged(workdir, None, 'research')   # gs://: not checked


def test_a_sampler_whose_run_is_replaced_while_it_samples_writes_nothing(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  write_checkpoint(tiny_config(), workdir)
  real = state.restore_run

  def restore_then_start_over(*args, **kwargs):
    restored = real(*args, **kwargs)
    _start_over(workdir)   # a --start_over while this reader samples
    return restored
  monkeypatch.setattr(state, 'restore_run', restore_then_start_over)
  with pytest.raises(errors.WorkdirError, match='--mode=sample: the run in .* changed'):
    sample.run_sample_mode(tiny_config(), workdir)
  assert sorted(os.listdir(workdir)) == ['checkpoints', 'previous-x']   # nothing written
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == []


@pytest.mark.slow   # three CLI processes at once
def test_cli_research_readers_started_together_keep_every_result(tmp_path):
  """Three --mode=research runs started at the same moment, each with its own sampling
  seed: three results, each under its own suffix with all of its research/ files."""
  import json
  from tests.helpers import cli_runs, tiny
  workdir = str(tmp_path / 'run')
  write_checkpoint(tiny.research_config(), workdir)
  cfg = tmp_path / 'research_cli.py'
  cfg.write_text('from tests.helpers import tiny\n\ndef get_config():\n'
                 '  return tiny.research_config()\n')
  e = cli_runs.env(str(tmp_path), jax_cache=str(tmp_path / 'jax_cache'))
  logs = [str(tmp_path / f'reader{i}.log') for i in range(3)]
  readers = [cli_runs.start(f'--config={cfg}', '--mode=research', f'--workdir={workdir}',
                            f'--config.sampling.seed={100 + i}', env=e, log_path=log)
             for i, log in enumerate(logs)]
  for reader, log in zip(readers, logs):
    assert reader.wait(timeout=900) == 0, open(log).read()[-3000:]
  seeds = []
  for suffix in ('', '-2', '-3'):
    with open(os.path.join(workdir, f'research_metrics{suffix}.json')) as f:
      seeds.append(json.load(f)['sampling_seed'])
    for name in ('samples', 'memorization', 'locality'):
      assert os.path.exists(os.path.join(workdir, 'research', f'{name}{suffix}.png'))
  assert sorted(seeds) == [100, 101, 102]   # every reader's result kept
  assert sorted(os.listdir(os.path.join(workdir, 'research'))) == sorted(
      f'{name}{suffix}.png' for name in ('samples', 'memorization', 'locality')
      for suffix in ('', '-2', '-3'))   # nothing else: no marker left, no fourth name
