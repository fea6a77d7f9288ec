"""Which environments start jax.distributed: only multi-host ones, read from the variables
(and the TPU VM metadata) that TPU pods, SLURM, Open MPI and JAX itself set; faked here."""

import http.server
import os
import subprocess
import sys
import threading

import jax
import pytest

from sparsediff_jax.runtime import distributed
from sparsediff_jax.runtime.distributed import DistributedError
from tests.helpers import REPO

# What a TPU VM of one worker (a v5e-8, v6e-1 or v4-8 VM) or Colab's TPU runtime sets.
SINGLE_HOST_TPU = {'TPU_WORKER_HOSTNAMES': 't1v-n-0a1b2c3d-w-0', 'TPU_WORKER_ID': '0',
                   'TPU_ACCELERATOR_TYPE': 'v5litepod-8', 'TPU_SKIP_MDS_QUERY': '1'}
POD = {'TPU_WORKER_HOSTNAMES': 't1v-w-0,t1v-w-1,t1v-w-2,t1v-w-3', 'TPU_WORKER_ID': '2',
       'TPU_ACCELERATOR_TYPE': 'v5litepod-16'}


@pytest.fixture
def init_calls(monkeypatch):
  """Replaces jax.distributed.initialize: records its calls instead of starting anything."""
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda *a, **k: calls.append((a, k)))
  monkeypatch.setattr(distributed, 'handshake', lambda *a: calls.append(('handshake', a)))
  return calls


@pytest.mark.parametrize('environ, tpu_workers', [
    ({}, 0),                                               # a workstation, Colab CPU/GPU
    ({}, 1),                                               # a TPU VM of one worker (metadata)
    (SINGLE_HOST_TPU, 0),
    ({'SLURM_NTASKS': '1', 'SLURM_STEP_NODELIST': 'n1'}, 0),
    ({'OMPI_COMM_WORLD_SIZE': '1'}, 0),
    ({'MEGASCALE_NUM_SLICES': '1'}, 0),
    ({'JAX_NUM_PROCESSES': '1'}, 0),
])
def test_a_single_host_starts_no_distributed_runtime(environ, tpu_workers, init_calls):
  assert distributed.initialize(environ=environ, tpu_workers=lambda: tpu_workers) == (
      'single process')
  assert init_calls == []


@pytest.mark.parametrize('environ, tpu_workers, name', [
    (POD, 0, 'tpu pod'),
    ({'TPU_PROCESS_ADDRESSES': '10.0.0.1:8476,10.0.0.2:8476'}, 0, 'tpu pod'),
    ({}, 4, 'tpu pod'),                                    # a TPU VM pod: the metadata says 4
    ({'MEGASCALE_NUM_SLICES': '2', **SINGLE_HOST_TPU}, 0, 'tpu multislice'),
    ({'SLURM_NTASKS': '8', 'SLURM_STEP_NODELIST': 'gpu[1-2]'}, 0, 'slurm'),
    ({'OMPI_COMM_WORLD_SIZE': '2'}, 0, 'ompi'),
])
def test_multi_host_environments_call_initialize(environ, tpu_workers, name, init_calls):
  how = distributed.initialize(timeout_s=77, environ=environ, tpu_workers=lambda: tpu_workers)
  assert how.startswith(f'{name} (detected)')
  assert init_calls == [((), {'initialization_timeout': 77})]


def test_worker_hostnames_settle_it_without_asking_the_metadata():
  def never():
    raise AssertionError('metadata asked although TPU_WORKER_HOSTNAMES is set')
  assert distributed.cluster_environment(SINGLE_HOST_TPU, never) is None
  assert distributed.cluster_environment(POD, never) == 'tpu pod'


def test_jax_variables_are_the_explicit_flags(init_calls):
  environ = {'JAX_COORDINATOR_ADDRESS': '10.0.0.2:8476', 'JAX_NUM_PROCESSES': '2',
             'JAX_PROCESS_ID': '1'}
  assert distributed.initialize(timeout_s=9, environ=environ).startswith('process 1 of 2')
  assert init_calls[0] == ('handshake', ('10.0.0.2:8476', 2, 1, 9))
  assert init_calls[1][0] == ('10.0.0.2:8476', 2, 1)
  with pytest.raises(DistributedError, match="JAX_NUM_PROCESSES='two' must be an integer"):
    distributed.initialize(environ={**environ, 'JAX_NUM_PROCESSES': 'two'})


def test_a_failed_initialisation_is_one_error_line(monkeypatch):
  def fail(*args, **kwargs):
    raise ValueError('coordinator_address should be defined.\n(more)')
  monkeypatch.setattr(jax.distributed, 'initialize', fail)
  with pytest.raises(DistributedError) as raised:
    distributed.initialize(environ=POD, tpu_workers=lambda: 0)
  message = str(raised.value)
  assert '\n' not in message and message.startswith('tpu pod detected, but jax.distributed')
  assert 'coordinator_address should be defined. (more)' in message and '8482' in message
  with pytest.raises(DistributedError, match='^ompi detected.*--coordinator_address'):
    distributed.initialize(environ={'OMPI_COMM_WORLD_SIZE': '2'})


class _Metadata(http.server.BaseHTTPRequestHandler):
  endpoints = ''

  def do_GET(self):
    found = (self.path.endswith('/worker-network-endpoints') and
             self.headers.get('Metadata-Flavor') == 'Google' and self.endpoints)
    self.send_response(200 if found else 404)
    self.end_headers()
    if found:
      self.wfile.write(self.endpoints.encode())

  def log_message(self, *args):
    pass


@pytest.mark.parametrize('endpoints, workers', [
    ('', 0),                                               # no such attribute (not a TPU VM)
    ('unknown:0:10.130.0.5', 1),
    ('unknown:0:10.130.0.5,unknown:1:10.130.0.6', 2),
])
def test_the_tpu_vm_metadata_counts_the_workers(endpoints, workers, monkeypatch):
  monkeypatch.setattr(_Metadata, 'endpoints', endpoints)
  server = http.server.HTTPServer(('127.0.0.1', 0), _Metadata)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    environ = {'GCE_METADATA_IP': f'127.0.0.1:{server.server_port}'}
    assert distributed.tpu_metadata_workers(environ) == workers
    assert distributed.tpu_metadata_workers({**environ, 'TPU_SKIP_MDS_QUERY': '1'}) == 0
  finally:
    server.shutdown()
    server.server_close()


def test_no_metadata_server_means_no_workers():
  port = http.server.HTTPServer(('127.0.0.1', 0), _Metadata)
  address = f'127.0.0.1:{port.server_port}'
  port.server_close()   # nothing listens there now: refused at once
  assert distributed.tpu_metadata_workers({'GCE_METADATA_IP': address}) == 0


@pytest.mark.slow   # a subprocess of the CLI
def test_the_cli_exits_2_with_one_line_when_a_detected_pod_cannot_start(tmp_path):
  """Pod variables on a machine that is no TPU VM: JAX finds no coordinator and raises."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(('TPU_', 'JAX_', 'SLURM_'))}
  env.update(POD, JAX_PLATFORMS='cpu', PYTHONPATH=REPO, TMPDIR=str(tmp_path))
  workdir = tmp_path / 'run'
  result = subprocess.run([sys.executable, '-m', 'sparsediff_jax.main', f'--workdir={workdir}'],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(errors) == 1 and 'tpu pod detected, but jax.distributed.initialize()' in errors[0]
  assert not workdir.exists()
