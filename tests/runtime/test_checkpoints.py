"""Checkpointer on real Orbax files: damaged newest steps, none intact, NaN states, and a
soak of asynchronous saves killed at random moments."""

import errno
import os
import random
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sparsediff_jax import errors
from sparsediff_jax.runtime import checkpoints, nonfinite
from tests.helpers import REPO
from tests.helpers.checkpoint_soak_worker import state_of
from tests.helpers.cli_runs import truncate_every_file

ABSTRACT = checkpoints.abstract_like(state_of(0), jax.sharding.SingleDeviceSharding(
    jax.devices()[0]))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """Steps 1, 2, 3 (state arrays hold their step), written once and copied per test."""
  directory = str(tmp_path_factory.mktemp('saved') / 'checkpoints')
  ckpt = checkpoints.Checkpointer(directory, keep=3)
  for step in (1, 2, 3):
    ckpt.save(step, state_of(step), {'data': {'position': step}})
  ckpt.wait()
  ckpt.close()
  return directory


@pytest.fixture
def copy(saved, tmp_path):
  directory = str(tmp_path / 'checkpoints')
  shutil.copytree(saved, directory)
  return directory


def _remove_the_array_data(step_dir):
  state = os.path.join(step_dir, 'state')
  for name in os.listdir(state):
    if name == 'd' or name.startswith('ocdbt.process_'):
      shutil.rmtree(os.path.join(state, name))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


@pytest.mark.parametrize('damage', [truncate_every_file, _remove_the_array_data, _empty])
def test_a_damaged_newest_step_falls_back_and_is_set_aside(copy, damage, caplog):
  damage(os.path.join(copy, '3'))
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  step, state, meta = ckpt.restore_latest(ABSTRACT)
  assert step == 2 and meta == {'data': {'position': 2}}
  np.testing.assert_array_equal(state['params']['w'], np.full((64, 32), 2.0))
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any(w.startswith(f'checkpoint 3 in {copy} cannot be restored') for w in warnings)
  assert any(w.startswith(f'restored checkpoint 2 of {copy}; the newer [3]') for w in warnings)
  # Set aside, so that training can write step 3 again (Orbax would skip it otherwise).
  assert sorted(os.listdir(copy)) == ['1', '2', '3.damaged']
  ckpt.save(3, state_of(3), {'data': {'position': 3}})
  ckpt.wait()
  assert ckpt.restore_latest(ABSTRACT)[0] == 3
  ckpt.close()


def test_none_intact_is_an_error_not_a_fresh_start(copy):
  for step in ('1', '2', '3'):
    truncate_every_file(os.path.join(copy, step))
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'^none of the checkpoints \[1, 2, 3\] in .* can be restored \(step '
                           r'3: .*\); resume with the config they were written with, or '
                           r'start from scratch with --start_over'):
    ckpt.restore_latest(ABSTRACT)
  assert sorted(os.listdir(copy)) == ['1', '2', '3']   # nothing renamed or deleted
  ckpt.close()


def test_a_refusal_from_check_meta_is_not_taken_for_damage(copy):
  ckpt = checkpoints.Checkpointer(copy, keep=3)

  def refuse(meta):
    raise ValueError(f'not this run (position {meta["data"]["position"]})')

  with pytest.raises(ValueError, match=r'position 3'):
    ckpt.restore_latest(ABSTRACT, check_meta=refuse)
  assert sorted(os.listdir(copy)) == ['1', '2', '3']
  ckpt.close()


def test_a_state_with_nan_is_never_written(copy):
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  bad = state_of(4)
  bad['params']['b'] = bad['params']['b'].at[5].set(np.nan)
  with pytest.raises(nonfinite.NonFiniteError, match='the state of step 4 holds NaN'):
    ckpt.save(4, bad, {'data': {'position': 4}})
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2, 3]
  ckpt.close()


@pytest.mark.slow   # a soak of killed processes
def test_soak_async_saves_killed_at_random_moments(tmp_path):
  """A process saving a checkpoint per step is killed (SIGKILL) at random moments, and some
  newest steps are then cut short too: every restart must restore a consistent state, never
  meet an unreadable newest step it cannot fall back past, nor more steps than allowed."""
  directory, keep, rng = str(tmp_path / 'checkpoints'), 2, random.Random(0)
  env = {**os.environ, 'PYTHONPATH': REPO}
  worker = [sys.executable, os.path.join(REPO, 'tests', 'helpers', 'checkpoint_soak_worker.py'),
            directory, str(keep)]
  restored_steps, deadline = [], time.time() + 100
  for cycle in range(8):
    proc = subprocess.Popen(worker, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout.readline().startswith('ready')
    time.sleep(rng.uniform(0.0, 1.2))
    proc.kill()
    proc.wait()
    steps = sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    # A kill between Orbax's commit of a new step and its deletion of the oldest leaves
    # one extra step; anything else half-written is a *.orbax-checkpoint-tmp folder.
    assert len(steps) <= keep + 1
    if cycle % 2 and len(steps) > 1:   # a disk error on the newest, with an older one left
      truncate_every_file(os.path.join(directory, str(steps[-1])))
    ckpt = checkpoints.Checkpointer(directory, keep=keep)
    restored = ckpt.restore_latest(ABSTRACT)
    if restored is not None:
      step, state, meta = restored
      assert meta == {'data': {'position': step}} and int(state['step']) == step
      np.testing.assert_array_equal(state['params']['w'], np.full((64, 32), float(step)))
      assert len(ckpt.all_steps()) <= keep
      restored_steps.append(step)
    ckpt.close()
    if time.time() > deadline:
      break
  assert restored_steps and restored_steps[-1] > 0


def test_a_checkpoints_path_that_is_a_file_is_refused(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'checkpoints').write_text('not a folder')
  with pytest.raises(errors.CheckpointError, match=r'checkpoints is a file, not a folder of '
                     r'checkpoints; move it away'):
    checkpoints.check_checkpoint_dir(str(workdir))
  with pytest.raises(errors.CheckpointError, match='is a file'):
    checkpoints.Checkpointer(str(workdir / 'checkpoints'))
  assert (workdir / 'checkpoints').read_text() == 'not a folder'
  checkpoints.check_checkpoint_dir(str(tmp_path / 'fresh'))   # absent is fine


def _fail_one_write_with_enospc(monkeypatch, step):
  """Orbax's asynchronous writer raises ENOSPC for the files of checkpoint `step` only."""
  from orbax.checkpoint._src.path import async_path
  real = async_path.write_text

  async def write_text(path, text):
    if f'/{step}.orbax-checkpoint-tmp' in str(path) or f'/{step}/' in str(path):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return await real(path, text)
  monkeypatch.setattr(async_path, 'write_text', write_text)


@pytest.mark.parametrize('surfaced_at', ['wait', 'next save'])
def test_a_full_disk_is_one_error_naming_the_write_and_the_last_intact_step(
    copy, monkeypatch, surfaced_at):
  _fail_one_write_with_enospc(monkeypatch, 4)
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  ckpt.save(4, state_of(4), {'data': {'position': 4}})   # returns: the write is asynchronous
  with pytest.raises(errors.DiskFullError) as raised:
    if surfaced_at == 'wait':
      ckpt.wait()
    else:
      ckpt.save(5, state_of(5), {'data': {'position': 5}})
  message = str(raised.value)
  assert message.startswith('no space left on device (ENOSPC) writing checkpoint 4 to '
                            f'{copy}/4'), message
  assert f'the last intact checkpoint is step 3 in {copy}' in message
  assert isinstance(raised.value, errors.RunFailedError)
  checkpoints.wait_for_saves()   # reported once: the CLI's final wait adds nothing
  ckpt.wait()
  monkeypatch.undo()
  reopened = checkpoints.Checkpointer(copy, keep=3)
  step, state, meta = reopened.restore_latest(ABSTRACT)
  assert step == 3 and meta == {'data': {'position': 3}} and not os.path.exists(
      os.path.join(copy, '5'))
  np.testing.assert_array_equal(state['params']['w'], np.full((64, 32), 3, np.float32))


def _tree(directory) -> dict:
  """{relative path: size} of every file and folder under `directory`."""
  out = {}
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, directory)] = os.path.getsize(path)
  return out


def test_a_reader_leaves_an_in_flight_write_untouched(copy):
  """A training run's half-written step (Orbax's N.orbax-checkpoint-tmp folder) is neither
  listed, read nor removed by a reader."""
  tmp = os.path.join(copy, '4.orbax-checkpoint-tmp-1234')
  shutil.copytree(os.path.join(copy, '3'), tmp)
  before = _tree(copy)
  reader = checkpoints.Checkpointer(copy, read_only=True)
  assert reader.all_steps() == [1, 2, 3]
  assert reader.restore_latest(ABSTRACT)[0] == 3
  assert reader.restore_step(1, ABSTRACT)[0] == 1
  reader.close()
  assert _tree(copy) == before


def test_a_reader_reports_a_damaged_step_and_renames_nothing(copy, caplog):
  truncate_every_file(os.path.join(copy, '3'))
  before = _tree(copy)
  reader = checkpoints.Checkpointer(copy, read_only=True, keep=1)
  step, _, meta = reader.restore_latest(ABSTRACT)
  assert step == 2 and meta == {'data': {'position': 2}}
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any(w.startswith(f'checkpoint 3 in {copy} cannot be restored') for w in warnings)
  assert any(w.startswith(f'restored checkpoint 2 of {copy}; the newer [3] could not be read '
                          '(left as they are') for w in warnings)
  assert not any('read only' in w or 'read_only' in w for w in warnings)   # Orbax's notices
  with pytest.raises(ValueError, match='read-only'):
    reader.save(4, state_of(4), {'data': {'position': 4}})
  reader.close()
  assert _tree(copy) == before   # nothing renamed, trimmed to keep=1 or written


def test_the_config_a_checkpoint_records_is_read_from_its_meta(tmp_path):
  """run_dir.checkpointed_config reads Orbax's layout of the meta item directly."""
  from sparsediff_jax.runtime import run_dir
  ckpt = checkpoints.Checkpointer(str(tmp_path / 'checkpoints'), keep=3)
  ckpt.save(5, state_of(5), {'data': {}, 'config': {'model': {'channels': 8}}})
  ckpt.wait()
  ckpt.close()
  assert run_dir.checkpointed_config(str(tmp_path)) == (5, {'model': {'channels': 8}})


def test_a_reader_lists_again_when_the_steps_it_saw_are_gone(copy):
  """A live trainer deletes old steps: a reader whose listed steps all fail lists again."""
  reader = checkpoints.Checkpointer(copy, read_only=True)
  assert reader.all_steps() == [1, 2, 3]
  for step in ('1', '2', '3'):   # the trainer moved on: 1-3 deleted, 4 committed
    os.rename(os.path.join(copy, step), os.path.join(copy, str(int(step) + 3)))
  assert reader.restore_latest(ABSTRACT)[0] == 6
  for step in ('4', '5', '6'):
    truncate_every_file(os.path.join(copy, step))
  with pytest.raises(checkpoints.CheckpointError, match=r'; if a training run is writing '
                                                        r'them, try again$'):
    reader.restore_latest(ABSTRACT)
  reader.close()


def _orbax_threads_end(timeout: float = 60) -> bool:
  """Whether Orbax's writer threads end within `timeout` seconds (Orbax's own wait for a
  folder that never comes is 300 s)."""
  import threading
  deadline = time.time() + timeout
  writers = [t for t in threading.enumerate() if type(t).__module__.startswith('orbax')]
  for thread in writers:   # threading's join: not Orbax's, which re-raises the failure
    threading.Thread.join(thread, max(0.0, deadline - time.time()))
  return not [t for t in writers if t.is_alive()]


def test_a_folder_that_turns_unwritable_is_one_error_and_nothing_waits(copy, monkeypatch):
  from tests.helpers.unwritable_checkpoints import refuse_from
  refuse_from(4, monkeypatch.setattr)
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  ckpt.save(4, state_of(4), {'data': {'position': 4}})   # fails in Orbax's writer thread
  with pytest.raises(checkpoints.CheckpointWriteError) as raised:
    ckpt.wait()
  message = str(raised.value)
  assert message.startswith(f'cannot write checkpoint 4 to {copy}/4.orbax-checkpoint-tmp '
                            '(Operation not permitted); the last intact checkpoint is step 3 '
                            f'in {copy}; make that folder writable'), message
  assert isinstance(raised.value, errors.RunFailedError)   # exit code 1
  checkpoints.wait_for_saves()   # reported once
  ckpt.wait()
  assert _orbax_threads_end()   # released, not waiting out Orbax's 5 minutes
  monkeypatch.undo()
  step, _, _ = checkpoints.Checkpointer(copy, keep=3).restore_latest(ABSTRACT)
  assert step == 3


def test_a_folder_that_cannot_be_written_is_found_before_orbax_starts(copy, monkeypatch):
  import tempfile
  real = tempfile.mkdtemp
  ckpt = checkpoints.Checkpointer(copy, keep=3)

  def refused(*args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs['dir'])
  monkeypatch.setattr(tempfile, 'mkdtemp', refused)
  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=rf'^cannot write checkpoint 4 to {copy}/4 \(Permission denied\); the '
                           rf'last intact checkpoint is step 3 in {copy}'):
    ckpt.save(4, state_of(4), {'data': {'position': 4}})
  assert sorted(os.listdir(copy)) == ['1', '2', '3']   # Orbax started nothing
  with pytest.raises(checkpoints.CheckpointWriteError, match='no checkpoint in .* is '
                     'complete yet'):   # and a training run does not start
    checkpoints.Checkpointer(copy + '-new', keep=3)
  monkeypatch.setattr(tempfile, 'mkdtemp', real)


def test_a_checkpoint_folder_that_cannot_be_made_is_refused_before_any_write(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (tmp_path / 'a_file').write_text('x')
  # a link to a disk that is not there: here, into a file
  os.symlink(tmp_path / 'a_file' / 'ckpt', workdir / 'checkpoints')
  before = sorted(os.listdir(tmp_path)), sorted(os.listdir(workdir))
  with pytest.raises(errors.CheckpointError, match=rf'{workdir}/checkpoints cannot be written '
                     rf'\(Not a directory: {tmp_path}/a_file, where it leads to '
                     rf'{tmp_path}/a_file/ckpt\); make it a writable folder'):
    checkpoints.check_checkpoint_dir(str(workdir))
  assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(workdir))) == before


def test_a_workdir_too_deep_for_checkpoint_files_is_refused(tmp_path):
  deep = str(tmp_path / 'run')
  while len(deep) < 4096 - 150:
    deep = os.path.join(deep, 'd' * min(200, 4096 - 150 - len(deep)))
  with pytest.raises(errors.CheckpointError, match=r'checkpoints is too deep for checkpoints: '
                     r'the paths of their files would be about \d+ bytes long, over this '
                     r"system's limit of 4096 \(PATH_MAX\)"):
    checkpoints.check_checkpoint_dir(deep)
  assert os.listdir(tmp_path) == []
  checkpoints.check_checkpoint_dir(str(tmp_path / 'run'))   # a usual path is fine


@pytest.mark.slow   # the CLI in a subprocess
def test_cli_a_checkpoint_folder_that_turns_unwritable_is_one_line_and_a_prompt_exit(tmp_path):
  from tests.helpers import unwritable_checkpoints
  from tests.helpers.cli_runs import TINY, assert_one_line_error, env
  workdir = str(tmp_path / 'run')
  result = subprocess.run(
      [sys.executable, unwritable_checkpoints.__file__, '4', *TINY, f'--workdir={workdir}',
       '--config.training.num_steps=8', '--config.training.checkpoint_every=2'],
      env=env(str(tmp_path)), capture_output=True, text=True,
      timeout=280)   # Orbax alone would wait 300 s at exit
  line = assert_one_line_error(result, code=1)
  ckpts = os.path.join(workdir, 'checkpoints')
  assert line.startswith(f'error: cannot write checkpoint 4 to {ckpts}/4.orbax-checkpoint-tmp '
                         f'(Operation not permitted); the last intact checkpoint is step 2 in '
                         f'{ckpts}'), line
  assert 'never awaited' not in result.stderr and 'Task exception' not in result.stderr
  assert sorted(n for n in os.listdir(ckpts) if n.isdigit()) == ['2']
  assert not os.path.exists(os.path.join(workdir, '.lock'))


@pytest.mark.slow   # the CLI in a subprocess
def test_cli_a_checkpoint_folder_that_cannot_be_made_is_refused_before_any_write(tmp_path):
  from tests.helpers.cli_runs import TINY, assert_one_line_error, env, run
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (tmp_path / 'a_file').write_text('x')
  os.symlink(tmp_path / 'a_file' / 'ckpt', workdir / 'checkpoints')
  result = run(*TINY, f'--workdir={workdir}', env=env(str(tmp_path / 'env')), timeout=300)
  line = assert_one_line_error(result, code=2)
  assert line.startswith(f'error: {workdir}/checkpoints cannot be written (Not a directory')
  assert os.listdir(workdir) == ['checkpoints']   # nothing written


def test_a_reader_lists_again_when_a_step_goes_while_orbax_lists_it(copy, monkeypatch, caplog):
  """Orbax reads every listed step's metadata when a folder is opened: a step that the
  trainer deletes in between is a FileNotFoundError (a raw errno line at the CLI), not a
  damaged run; the reader lists again and falls back as for a damaged step."""
  real, calls = checkpoints.ocp.CheckpointManager, []

  def deleted_meanwhile(directory, **kwargs):
    calls.append(directory)
    if len(calls) == 1:
      shutil.rmtree(os.path.join(copy, '1'))   # the trainer trims its oldest step
      raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                              os.path.join(copy, '1', '_CHECKPOINT_METADATA'))
    return real(directory, **kwargs)
  monkeypatch.setattr(checkpoints.ocp, 'CheckpointManager', deleted_meanwhile)
  reader = checkpoints.Checkpointer(copy, read_only=True)
  assert len(calls) == 2 and reader.all_steps() == [2, 3]
  assert reader.restore_latest(ABSTRACT)[0] == 3
  assert any('went away while it was listed' in r.getMessage() for r in caplog.records)
  def always_gone(directory, **kwargs):
    calls.append(directory)
    raise FileNotFoundError(errno.ENOENT, 'gone')
  calls.clear()
  monkeypatch.setattr(checkpoints.ocp, 'CheckpointManager', always_gone)
  with pytest.raises(FileNotFoundError, match='gone'):   # a trainer's own folder: raised
    checkpoints.Checkpointer(copy, keep=3)
  assert len(calls) == 1
