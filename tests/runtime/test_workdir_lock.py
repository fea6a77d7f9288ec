"""WORKDIR/.lock: one run per workdir, a dead run's lock taken over, released on any exit."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.helpers.cli_runs import snapshot
from sparsediff_jax import errors
from sparsediff_jax.runtime import workdir_lock


def _dead_pid() -> int:
  """The PID of a process that has ended (and been reaped)."""
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def test_the_lock_records_its_holder_and_is_removed_on_exit(tmp_path):
  workdir = tmp_path / 'a' / 'run'
  with workdir_lock.hold(str(workdir)):
    record = json.loads((workdir / '.lock').read_text())
    assert (record['host'], record['pid']) == (socket.gethostname(), os.getpid())
    assert record['argv'] == sys.argv and record['started']
  assert not (tmp_path / 'a').exists()   # the folders it made, empty again, are gone


def test_a_second_run_is_refused_naming_the_holder_and_changing_nothing(tmp_path):
  workdir = tmp_path / 'run'
  with workdir_lock.hold(str(workdir)):
    (workdir / 'config.json').write_text('{}')
    before = snapshot(str(workdir))
    with pytest.raises(errors.WorkdirError) as raised:
      with workdir_lock.hold(str(workdir)):
        pass
    assert snapshot(str(workdir)) == before
  message = str(raised.value)
  assert message.startswith(f'--workdir={workdir} is in use by another run (host '
                            f'{socket.gethostname()}, PID {os.getpid()}, started '), message
  assert 'wait for it to end or stop it, or choose another --workdir' in message
  assert isinstance(raised.value, errors.UserError)
  assert (workdir / 'config.json').exists() and not (workdir / '.lock').exists()


def test_a_lock_held_by_another_live_process_is_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from sparsediff_jax.runtime import workdir_lock\n'
       'with workdir_lock.hold(sys.argv[1]):\n  print("held", flush=True); time.sleep(60)',
       workdir], stdout=subprocess.PIPE, text=True,
      env={**os.environ, 'PYTHONPATH': REPO})
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(errors.WorkdirError, match=rf'PID {holder.pid}, started '):
      with workdir_lock.hold(workdir):
        pass
  finally:
    holder.kill()
    holder.wait()
  # Killed outright: the kernel freed the flock; the file it left is taken over.
  with workdir_lock.hold(workdir):
    assert json.loads(open(os.path.join(workdir, '.lock')).read())['pid'] == os.getpid()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  old = {'host': socket.gethostname(), 'pid': _dead_pid(), 'started': '2024-01-01T00:00:00',
         'argv': ['main.py', '--workdir=x'], 'heartbeat': 0}
  (workdir / '.lock').write_text(json.dumps(old))
  with workdir_lock.hold(str(workdir)):
    assert json.loads((workdir / '.lock').read_text())['pid'] == os.getpid()
  assert any('left by a run that ended without releasing it' in r.getMessage()
             and f'PID {old["pid"]}, started 2024-01-01T00:00:00' in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_released_when_the_body_raises(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with pytest.raises(KeyboardInterrupt):
    with workdir_lock.hold(str(workdir)):
      raise KeyboardInterrupt
  assert not (workdir / '.lock').exists()
  with workdir_lock.hold(str(workdir)):
    pass


def test_before_release_runs_while_the_lock_is_still_held(tmp_path):
  workdir = tmp_path / 'run'
  seen = []
  with workdir_lock.hold(str(workdir), before_release=lambda: seen.append(
      (workdir / '.lock').exists())):
    pass
  assert seen == [True]


def test_a_workdir_the_os_refuses_names_the_flag():
  with pytest.raises(errors.WorkdirError, match=r'^--workdir=/proc/x/run: cannot create it '
                     r'\(No such file or directory at /proc/x'):
    with workdir_lock.hold('/proc/x/run'):
      pass


def test_advisory_lock_for_remote_or_lockless_workdirs(tmp_path, monkeypatch):
  """The lock file alone: live holder refused, dead PID on this host or an old heartbeat on
  another host taken over."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  live = {'host': socket.gethostname(), 'pid': os.getppid(), 'started': 'T',
          'argv': ['x'], 'heartbeat': time.time()}
  (workdir / '.lock').write_text(json.dumps(live))
  with pytest.raises(errors.WorkdirError, match=rf'PID {os.getppid()}, started T'):
    workdir_lock._AdvisoryLock(str(workdir)).acquire()
  assert json.loads((workdir / '.lock').read_text()) == live
  for stale in ({**live, 'pid': _dead_pid()},
                {**live, 'host': 'elsewhere',
                 'heartbeat': time.time() - 2 * workdir_lock.STALE_AFTER_S}):
    (workdir / '.lock').write_text(json.dumps(stale))
    lock = workdir_lock._AdvisoryLock(str(workdir))
    lock.acquire()
    assert json.loads((workdir / '.lock').read_text())['pid'] == os.getpid()
    lock.release()
    assert not (workdir / '.lock').exists()
  elsewhere = {**live, 'host': 'elsewhere'}   # alive for all we can tell: refused
  (workdir / '.lock').write_text(json.dumps(elsewhere))
  with pytest.raises(errors.WorkdirError, match='host elsewhere'):
    workdir_lock._AdvisoryLock(str(workdir)).acquire()


def test_an_advisory_lock_is_kept_fresh_while_held(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, 'HEARTBEAT_S', 0.02)
  lock = workdir_lock._AdvisoryLock(str(tmp_path))
  lock.acquire()
  first = json.loads((tmp_path / '.lock').read_text())['heartbeat']
  deadline = time.time() + 10
  while json.loads((tmp_path / '.lock').read_text())['heartbeat'] <= first:
    assert time.time() < deadline, 'the heartbeat was never refreshed'
    time.sleep(0.01)
  lock.release()
  assert not (tmp_path / '.lock').exists()


def test_a_full_disk_at_the_lock_is_a_disk_full_error_and_leaves_nothing(tmp_path, monkeypatch):
  """The same exit code (1) and wording as a full disk at config.json (atomic_io.py)."""
  import errno

  def full(*args):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(workdir_lock.os, 'pwrite', full)
  with pytest.raises(errors.DiskFullError, match=r'^no space left on device \(ENOSPC\) '
                                                 rf'writing {tmp_path}/run/.lock; nothing was '
                                                 'written; free space there'):
    with workdir_lock.hold(str(tmp_path / 'run')):
      pass
  assert not (tmp_path / 'run').exists()
