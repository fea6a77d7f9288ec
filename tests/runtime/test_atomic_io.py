"""Files are written whole or not at all; a full disk is one error line and leaves the
previous file intact, no temporary file and (at the start of a run) no lock or folder."""

import contextlib
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import disk_full
from tests.helpers.cli_runs import TINY, assert_one_line_error, env
from sparsediff_jax.runtime import atomic_io
from sparsediff_jax import errors
from sparsediff_jax.console import images, metrics_jsonl


def _grid(value: int) -> np.ndarray:
  return np.full((8, 8, 3), value, np.uint8)


def test_writes_replace_the_file_and_leave_nothing_else(tmp_path):
  path = str(tmp_path / 'out' / 'a.json')
  atomic_io.write_json(path, {'a': 1})
  atomic_io.write_json(path, {'a': 2})
  assert json.loads(open(path).read()) == {'a': 2}
  assert os.listdir(tmp_path / 'out') == ['a.json']
  assert oct(os.stat(path).st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


@pytest.mark.parametrize('kind', ['png', 'json'])
def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                     kind):
  path = str(tmp_path / f'samples_0000004.{kind}')
  write = ((lambda v: images.save_png(path, _grid(v))) if kind == 'png'
           else (lambda v: atomic_io.write_json(path, {'value': v})))
  write(1)
  before = open(path, 'rb').read()
  disk_full.fill_up('samples_0000004', monkeypatch.setattr)
  with pytest.raises(errors.DiskFullError) as raised:
    write(2)
  message = str(raised.value)
  assert message.startswith(f'no space left on device (ENOSPC) writing {path}; the previous '
                            'version of that file is intact')
  assert '\n' not in message
  assert open(path, 'rb').read() == before
  assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_an_append_cut_short_is_taken_back(tmp_path, monkeypatch):
  path = str(tmp_path / 'metrics.jsonl')
  writer = metrics_jsonl.JsonlWriter(path)
  writer.write_scalars(1, {'loss': 0.5})
  before = open(path, 'rb').read()
  real_write = os.write
  monkeypatch.setattr(os, 'write', lambda fd, data: real_write(fd, data[:len(data) // 2]))
  with pytest.raises(errors.DiskFullError, match='ENOSPC'):
    writer.write_scalars(2, {'loss': 0.25})
  assert open(path, 'rb').read() == before   # no half line
  monkeypatch.undo()
  writer.write_scalars(2, {'loss': 0.25})
  assert [r['step'] for r in metrics_jsonl.read(path)] == [1, 2]


def test_other_errors_pass_unchanged(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError(errno.EACCES, 'Permission denied')
  monkeypatch.setattr(os, 'replace', refuse)
  with pytest.raises(PermissionError):
    atomic_io.write_text(str(tmp_path / 'a.txt'), 'x')
  assert os.listdir(tmp_path) == []


def _cli(tmp_path, pattern, *args):
  return subprocess.run([sys.executable, disk_full.__file__, pattern, *TINY, *args],
                        env=env(str(tmp_path)), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_full_disk_while_writing_a_grid_is_one_line(tmp_path):
  workdir = str(tmp_path / 'run')
  result = _cli(tmp_path, 'samples_0000002', '--config.training.num_steps=2',
                '--config.training.sample_every=2', f'--workdir={workdir}')
  line = assert_one_line_error(result, code=1)
  grid = os.path.join(workdir, 'samples', 'samples_0000002.png')
  assert line.startswith(f'error: no space left on device (ENOSPC) writing {grid}')
  assert os.listdir(os.path.join(workdir, 'samples')) == []   # no truncated PNG
  assert not os.path.exists(os.path.join(workdir, '.lock'))


@pytest.mark.slow
def test_a_full_disk_under_the_tensorboard_events_is_one_line_naming_the_file(tmp_path):
  workdir = str(tmp_path / 'run')
  result = _cli(tmp_path, 'tfevents', '--config.training.num_steps=2', f'--workdir={workdir}')
  line = assert_one_line_error(result, code=1)
  assert line.startswith('error: no space left on device (ENOSPC) writing the TensorBoard '
                         f'events file {workdir}/events.out.tfevents.'), line
  assert not os.path.exists(workdir)   # a new run that trained no step leaves nothing


@pytest.mark.slow
def test_a_full_disk_at_the_start_leaves_no_lock_or_folder(tmp_path):
  workdir = str(tmp_path / 'new' / 'run')
  result = _cli(tmp_path, 'config.json', f'--workdir={workdir}')
  line = assert_one_line_error(result, code=1)
  assert 'no space left on device (ENOSPC) writing' in line and 'config.json' in line
  assert not os.path.exists(tmp_path / 'new')


@pytest.mark.parametrize('code, error, message', [
    (errno.EIO, errors.WorkdirError, r'cannot write its lock file .lock \(Input/output error'),
    (errno.ENOSPC, errors.DiskFullError, r'no space left on device \(ENOSPC\) writing ')])
def test_a_lock_that_cannot_be_written_is_not_left_behind(tmp_path, monkeypatch, code, error,
                                                          message):
  from sparsediff_jax.runtime import workdir_lock

  def failing(*args):
    raise OSError(code, os.strerror(code))
  monkeypatch.setattr(os, 'pwrite', failing)
  with pytest.raises(error, match=message):
    with workdir_lock.hold(str(tmp_path / 'new' / 'run')):
      pass
  assert os.listdir(tmp_path) == []


def test_disk_full_is_found_however_it_is_wrapped():
  def wrapped(inner):
    try:
      try:
        raise inner
      except OSError as e:
        raise RuntimeError('Save Finalize thread failed') from e
    except RuntimeError as e:
      return e
  assert atomic_io.disk_full_cause(wrapped(OSError(errno.ENOSPC, 'x'))).errno == errno.ENOSPC
  assert atomic_io.disk_full_cause(ValueError('[Errno 28] No space left on device'))
  assert atomic_io.disk_full_cause(wrapped(OSError(errno.EIO, 'I/O error'))) is None


def test_readers_started_together_each_reserve_their_own_name(tmp_path):
  """reserved_prefix: eight writers that ask at the same moment get eight names, none
  overwrites another, and no marker is left."""
  import threading
  prefix = str(tmp_path / 'out' / 'samples')
  atomic_io.write_bytes(prefix + '.png', b'earlier')   # an earlier output: never reused
  start, got = threading.Barrier(8), []

  def writer(i):
    start.wait()
    with atomic_io.reserved_prefix(prefix, also=(str(tmp_path / 'metrics'),)) as p:
      got.append(p)
      atomic_io.write_bytes(p + '.png', str(i).encode())
      atomic_io.write_json(str(tmp_path / 'metrics') + p[len(prefix):] + '.json', i)
  threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert sorted(got) == sorted(f'{prefix}-{k}' for k in range(2, 10))
  for p in got:   # each name holds the outputs of one writer
    assert (open(p + '.png', 'rb').read().decode()
            == open(str(tmp_path / 'metrics') + p[len(prefix):] + '.json').read().strip())
  assert open(prefix + '.png', 'rb').read() == b'earlier'
  assert not [n for n in os.listdir(tmp_path / 'out') if n.endswith(atomic_io.RESERVED)]


def test_a_reservation_is_looked_at_again_once_held(tmp_path, monkeypatch):
  """A writer that finished between the look and the marker (its outputs written, its
  marker removed) is not overwritten; a marker left by a killed writer is skipped."""
  prefix = str(tmp_path / 'samples')
  os.close(os.open(str(tmp_path / f'.samples-2{atomic_io.RESERVED}'), os.O_CREAT))   # killed
  real_open = os.open

  def finished_meanwhile(path, *args, **kwargs):
    fd = real_open(path, *args, **kwargs)
    if path.endswith(f'.samples{atomic_io.RESERVED}') and not os.path.exists(prefix + '.png'):
      with open(prefix + '.png', 'wb') as f:
        f.write(b'the other writer')
    return fd
  monkeypatch.setattr(os, 'open', finished_meanwhile)
  with atomic_io.reserved_prefix(prefix) as p:
    assert p == prefix + '-3'


def test_a_failed_reservation_leaves_no_folder_or_marker(tmp_path):
  prefix = str(tmp_path / 'research' / 'samples')
  with pytest.raises(errors.DiskFullError):
    with atomic_io.reserved_prefix(prefix, tidy=(str(tmp_path / 'research'),)):
      raise errors.DiskFullError('full')
  assert os.listdir(tmp_path) == []
  with atomic_io.reserved_prefix(prefix, reserve=False) as p:   # by looking: no marker
    assert p == prefix and not os.path.exists(tmp_path / 'research')


def test_the_marker_goes_with_its_folder_moved_meanwhile(tmp_path):
  """A reader whose run is set aside (--start_over renames it) while it holds a name
  leaves no marker in the moved run, on success or failure."""
  for fail in (False, True):
    run, moved = tmp_path / f'run{fail}', tmp_path / f'previous{fail}'
    prefix = str(run / 'research' / 'samples')
    with contextlib.suppress(RuntimeError):
      with atomic_io.reserved_prefix(prefix) as p:
        assert p == prefix and os.listdir(run / 'research') == [f'.samples{atomic_io.RESERVED}']
        os.rename(run, moved)
        if fail:
          raise RuntimeError('the run was replaced')
    assert os.listdir(moved / 'research') == [] and not run.exists()
