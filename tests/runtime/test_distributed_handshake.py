"""The start-up handshake of multi-process runs: consistent flags go through, mistakes become
one DistributedError per process within the timeout (JAX itself would abort the process)."""

import socket
import threading
import time

import pytest

from sparsediff_jax.runtime import distributed
from sparsediff_jax.runtime.distributed import DistributedError

pytestmark = pytest.mark.slow   # several processes


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(specs, timeout_s=5.0):
  """Runs handshake(address, n, i) for each (n, i) in its own thread -> {i: error or None}."""
  address = f'127.0.0.1:{free_port()}'
  results = {}

  def one(key, n, i):
    try:
      distributed.handshake(address, n, i, timeout_s)
      results[key] = None
    except DistributedError as e:
      results[key] = str(e)

  threads = [threading.Thread(target=one, args=(k, n, i)) for k, (n, i) in enumerate(specs)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=3 * timeout_s + 10)
  assert not any(t.is_alive() for t in threads), 'handshake hung'
  return results


def test_all_processes_present_in_any_order():
  # Process 0 last: the others retry until it listens.
  results = run_processes([(3, 2), (3, 1), (3, 0)])
  assert results == {0: None, 1: None, 2: None}


def test_disagreeing_process_counts_stop_both():
  results = run_processes([(2, 0), (3, 1)])
  assert all('--num_processes' in results[k] for k in (0, 1)), results
  assert 'process 0 with --num_processes=2' in results[0]


def test_duplicate_process_ids_are_named():
  results = run_processes([(3, 0), (3, 1), (3, 1)])
  assert 'two processes were started with --process_id=1' in results[0]


def test_missing_peer_stops_process_0_after_the_timeout():
  start = time.monotonic()
  results = run_processes([(3, 0), (3, 2)], timeout_s=1.5)
  assert 'process(es) 1 of 3 did not reach the coordinator' in results[0]
  assert 'process 2 stopped by process 0' in results[1]
  assert time.monotonic() - start < 10


def test_unreachable_coordinator_is_reported_within_the_timeout():
  start = time.monotonic()
  results = run_processes([(2, 1)], timeout_s=1.0)
  assert 'cannot reach the coordinator 127.0.0.1:' in results[0]
  assert time.monotonic() - start < 5


def test_busy_coordinator_port():
  with socket.socket() as busy:
    busy.bind(('', 0))
    busy.listen()
    port = busy.getsockname()[1]
    with pytest.raises(DistributedError, match=f'cannot listen on port {port}'):
      distributed.handshake(f'127.0.0.1:{port}', 2, 0, 1.0)


@pytest.mark.parametrize('flags, message', [
    (('127.0.0.1:1234', None, 0), 'needs all of --coordinator_address'),
    ((None, 2, 1), 'needs all of --coordinator_address'),
    (('127.0.0.1:1234', 2, 2), '--process_id=2 is out of range'),
    (('127.0.0.1:1234', 0, 0), '--num_processes=0 must be at least 1'),
    (('localhost', 2, 0), 'must be HOST:PORT'),
    (('host:99999', 2, 0), 'must be HOST:PORT'),
])
def test_inconsistent_flags_fail_before_anything_starts(flags, message):
  with pytest.raises(DistributedError, match=message):
    distributed.initialize(*flags, timeout_s=1)


def test_no_flags_and_no_cluster_is_a_single_process(monkeypatch):
  for var in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    monkeypatch.delenv(var, raising=False)
  assert distributed.initialize() == 'single process'


def test_cluster_detection_from_the_environment(monkeypatch):
  monkeypatch.setenv('SLURM_NTASKS', '4')
  monkeypatch.setenv('SLURM_STEP_NODELIST', 'node[1-2]')
  assert distributed.cluster_environment() == 'slurm'
  monkeypatch.setenv('SLURM_NTASKS', '1')
  monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '2')
  assert distributed.cluster_environment() == 'ompi'
