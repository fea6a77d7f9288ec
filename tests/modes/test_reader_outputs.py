"""The modes that read a run (sample, eval, research) on a workdir they cannot write into:
one line, exit code 2, before any sampling (a read-only mount, an immutable folder, a file
where their output folder should be)."""

import errno
import os
import tempfile

import pytest

from sparsediff_jax import errors, main
from sparsediff_jax.modes import evaluate, research, sample
from sparsediff_jax.runtime import state
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
