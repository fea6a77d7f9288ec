"""The real CLI against a hostile workdir: in use by another run, a file where the
checkpoint folder should be, a path the OS refuses, a disk that fills up mid-checkpoint.
Each ends with one `error:` line; the bad-input ones (exit 2) change nothing on disk."""

import os
import re
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers.cli_runs import TINY, assert_one_line_error, env, run, snapshot
from sparsediff_jax.runtime import workdir_lock

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def cli_env(tmp_path_factory):
  root = tmp_path_factory.mktemp('hostile')
  return env(str(root), jax_cache=str(root / 'jax_cache'))


def test_a_workdir_in_use_is_refused_naming_the_holder(cli_env, tmp_path):
  workdir = tmp_path / 'run'
  with workdir_lock.hold(str(workdir)):
    before = snapshot(str(workdir))
    result = run(*TINY, f'--workdir={workdir}', env=cli_env)
    assert snapshot(str(workdir)) == before
  line = assert_one_line_error(result)
  assert line.startswith(f'error: --workdir={workdir} is in use by another run (host '), line
  assert f'PID {os.getpid()}, started ' in line


def test_a_checkpoints_file_is_refused_not_trained_from_scratch(cli_env, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'checkpoints').write_text('a stray file')
  before = snapshot(str(workdir))
  line = assert_one_line_error(run(*TINY, f'--workdir={workdir}', env=cli_env))
  assert line == (f'error: {workdir}/checkpoints is a file, not a folder of checkpoints; move '
                  'it away (training would otherwise start from scratch next to it) or choose '
                  'another --workdir'), line
  assert snapshot(str(workdir)) == before


def test_a_workdir_the_os_cannot_create_names_the_flag(cli_env):
  line = assert_one_line_error(run(*TINY, '--workdir=/proc/x', env=cli_env))
  assert line.startswith('error: --workdir=/proc/x: cannot create it (No such file or '
                         'directory'), line


@pytest.fixture
def small_disk(tmp_path):
  """A 2200 KiB tmpfs: room for one tiny checkpoint (~0.7 MiB) and the run record, not two
  more. Skipped where mounting is not allowed (not root, or a container without it)."""
  mount = tmp_path / 'disk'
  mount.mkdir()
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2200k', 'tmpfs', str(mount)],
                          capture_output=True, text=True)
  if result.returncode != 0:
    pytest.skip(f'cannot mount a small tmpfs here: {result.stderr.strip() or result.returncode}')
  yield mount
  subprocess.run(['umount', str(mount)], check=True)


def test_a_full_disk_mid_checkpoint_is_one_line_and_keeps_the_last_checkpoint(
    cli_env, small_disk):
  workdir = small_disk / 'run'
  result = run(*TINY, '--config.training.num_steps=12', '--config.training.checkpoint_every=2',
               f'--workdir={workdir}', env=cli_env)
  assert 'Traceback' not in result.stderr, result.stderr[:6000]
  line = assert_one_line_error(result, code=1)
  match = re.match(rf'error: no space left on device \(ENOSPC\) writing checkpoint (\d+) to '
                   rf'{workdir}/checkpoints/\1\S*; the last intact checkpoint is step (\d+) in '
                   rf'{workdir}/checkpoints; free space there and run the same command again',
                   line)
  assert match, line
  assert len(result.stderr.splitlines()) < 40, result.stderr   # no walls of tracebacks
  failed, intact = int(match.group(1)), int(match.group(2))
  assert intact < failed
  state = ocp.StandardCheckpointer().restore(str(workdir / 'checkpoints' / str(intact) / 'state'))
  assert int(state['step']) == intact
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state['params'])))
  assert not (workdir / '.lock').exists()


def test_sample_is_bound_to_the_run_and_never_overwrites(cli_env, tmp_path):
  """--mode=sample with a run-defining override that contradicts the trained run (another
  formulation) is refused naming the field; without overrides it takes the run's own fields
  (here the whole tiny model, from a plain default command) and writes a second grid next
  to the first instead of over it."""
  workdir = tmp_path / 'run'
  trained = run(*TINY, '--config.training.num_steps=2', f'--workdir={workdir}', env=cli_env)
  assert trained.returncode == 0, trained.stderr[-2000:]
  first = run(*TINY, '--mode=sample', f'--workdir={workdir}', env=cli_env)
  assert first.returncode == 0, first.stderr[-2000:]
  grid = workdir / 'samples' / 'sample_mode_0000002.png'
  before = snapshot(str(workdir / 'samples'))
  refused = run(*TINY, '--mode=sample', '--config.diffusion.formulation=edm',
                f'--workdir={workdir}', env=cli_env)
  line = assert_one_line_error(refused)
  assert "--config.diffusion.formulation='edm' contradicts the run" in line, line
  assert "diffusion.formulation='flow_matching'" in line
  assert snapshot(str(workdir / 'samples')) == before
  plain = run('--mode=sample', '--config.sampling.sampler=euler',
              '--config.sampling.num_steps=1', '--config.sampling.grid_size=2',
              f'--workdir={workdir}', env=cli_env)
  assert plain.returncode == 0, plain.stderr[-2000:]
  assert os.path.isfile(grid) and os.path.isfile(workdir / 'samples' /
                                                 'sample_mode_0000002-2.png')
  assert snapshot(str(workdir / 'samples'))[grid.name] == before[grid.name]
