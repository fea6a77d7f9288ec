"""Joining the processes of a multi-host run into one JAX runtime, before any computation.

Three ways, chosen in this order by `initialize`:

- explicit: `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` on every
  process (GPU clusters without SLURM, several processes on one machine for testing), or the
  same three as JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID.
- detected: a TPU pod slice (more than one worker in TPU_WORKER_HOSTNAMES /
  TPU_PROCESS_ADDRESSES or in the TPU VM's `worker-network-endpoints` metadata, or a
  multislice MEGASCALE_* setting), a SLURM job step of several tasks or an Open MPI job of
  several ranks: JAX finds the processes by itself, so `jax.distributed.initialize()` is
  called with no arguments.
- neither: one host (a TPU VM of one worker, Colab's TPU, one GPU machine); nothing to do.

Why a handshake of our own in the explicit case: when a peer is missing or disagrees,
`jax.distributed.initialize` does not raise; its C++ client aborts the whole process
(SIGABRT and a stack trace) after `initialization_timeout`. So process 0 first listens on the
coordinator port itself, every other process says hello (its id and the process count it was
given), and an absent or inconsistent process becomes a `DistributedError` of one line on
every process that can be told, within the timeout. Then process 0 frees the port and JAX's
coordinator service takes it over.

A failed initialisation is a `DistributedError` (a `UserError`: exit code 2). It happens
before the workdir is touched, and what fixes it is the cluster's set-up (addresses, ports,
the processes started), not the run.
"""

import importlib.util
import json
import os
import socket
import time
import urllib.request
from collections.abc import Callable, Mapping

import jax
from sparsediff_jax import errors


# The processes of a multi-host run cannot be joined; the message says what to fix.
DistributedError = errors.DistributedError

_METADATA_URL = ('http://{host}/computeMetadata/v1/instance/attributes/'
                 'worker-network-endpoints')


def _count(value: str | None) -> int:
  """The number of entries of a comma-separated list ('' and None: 0)."""
  return len([v for v in (value or '').split(',') if v.strip()])


def _int(environ: Mapping[str, str], name: str) -> int:
  """A count from the environment: 1 where unset or not a number."""
  try:
    return int(environ.get(name, '1'))
  except ValueError:
    return 1


def tpu_metadata_workers(environ: Mapping[str, str] = os.environ) -> int:
  """The number of workers in this TPU VM's slice from the GCE metadata server; 0 where
  there is no such server or attribute (Colab, a workstation). Asked only with libtpu."""
  if environ.get('TPU_SKIP_MDS_QUERY') is not None:
    return 0
  host = environ.get('GCE_METADATA_IP', 'metadata.google.internal')
  request = urllib.request.Request(_METADATA_URL.format(host=host),
                                   headers={'Metadata-Flavor': 'Google'})
  direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never a proxy
  try:
    with direct.open(request, timeout=2) as response:
      return _count(response.read().decode())
  except (OSError, ValueError):
    return 0


def cluster_environment(environ: Mapping[str, str] = os.environ,
                        tpu_workers: Callable[[], int] | None = None) -> str | None:
  """Names the multi-host set-up JAX discovers by itself, or None for a single host.

  `tpu_workers` counts the TPU slice's workers from the VM's metadata (the default, where
  libtpu is installed; a test passes its own).
  """
  if _int(environ, 'MEGASCALE_NUM_SLICES') > 1 or environ.get('MEGASCALE_COORDINATOR_ADDRESS'):
    return 'tpu multislice'
  hosts = environ.get('TPU_PROCESS_ADDRESSES') or environ.get('TPU_WORKER_HOSTNAMES')
  if _count(hosts) > 1:
    return 'tpu pod'
  if _int(environ, 'SLURM_NTASKS') > 1 and 'SLURM_STEP_NODELIST' in environ:
    return 'slurm'
  if _int(environ, 'OMPI_COMM_WORLD_SIZE') > 1:
    return 'ompi'
  if hosts is None:   # a TPU VM sets no variables: its slice is in the metadata
    if tpu_workers is None and importlib.util.find_spec('libtpu') is not None:
      tpu_workers = lambda: tpu_metadata_workers(environ)  # noqa: E731
    if tpu_workers is not None and tpu_workers() > 1:
      return 'tpu pod'
  return None


def _environment_int(environ: Mapping[str, str], name: str) -> int | None:
  if not environ.get(name):
    return None
  try:
    return int(environ[name])
  except ValueError:
    raise DistributedError(f'{name}={environ[name]!r} must be an integer') from None


def _from_environment(coordinator_address, num_processes, process_id, environ):
  """The explicit settings, each flag not given taken from its JAX_* variable."""
  if coordinator_address is None:
    coordinator_address = environ.get('JAX_COORDINATOR_ADDRESS') or None
  if num_processes is None:
    num_processes = _environment_int(environ, 'JAX_NUM_PROCESSES')
  if process_id is None:
    process_id = _environment_int(environ, 'JAX_PROCESS_ID')
  return coordinator_address, num_processes, process_id


def _one_line(e: Exception) -> str:
  return ' '.join(str(e).split()) or type(e).__name__


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300,
               environ: Mapping[str, str] = os.environ,
               tpu_workers: Callable[[], int] | None = None) -> str:
  """Joins this process to the run; returns how, in words. Call before anything uses JAX.

  Raises DistributedError for inconsistent flags, an unreachable coordinator, a missing
  process or processes that disagree, at the latest after about `timeout_s` seconds, and
  when JAX's own initialisation of a detected cluster fails.
  """
  coordinator_address, num_processes, process_id = _from_environment(
      coordinator_address, num_processes, process_id, environ)
  explicit = (coordinator_address, num_processes, process_id)
  if coordinator_address is None and num_processes in (None, 1) and process_id in (None, 0):
    env = cluster_environment(environ, tpu_workers)
    if env is None:
      return 'single process'
    try:
      jax.distributed.initialize(initialization_timeout=timeout_s)
    except (ValueError, RuntimeError) as e:
      hint = ('the workers must reach worker 0 on port 8482 (JAX >= 0.8.1; another port: '
              'JAX_COORDINATOR_PORT on every worker)' if env.startswith('tpu') else
              'or give --coordinator_address, --num_processes and --process_id')
      raise DistributedError(f'{env} detected, but jax.distributed.initialize() failed: '
                             f'{_one_line(e)}; {hint}') from None
    return f'{env} (detected): process {jax.process_index()} of {jax.process_count()}'
  if None in explicit:
    raise DistributedError('a multi-process run needs all of --coordinator_address=HOST:PORT, '
                           '--num_processes=N and --process_id=I (0 on the HOST machine)')
  if num_processes < 1:
    raise DistributedError(f'--num_processes={num_processes} must be at least 1')
  if not 0 <= process_id < num_processes:
    raise DistributedError(f'--process_id={process_id} is out of range: with --num_processes='
                           f'{num_processes} use 0..{num_processes - 1}')
  if timeout_s < 1:
    raise DistributedError(f'--initialization_timeout={timeout_s} must be at least 1 second')
  handshake(coordinator_address, num_processes, process_id, timeout_s)
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=timeout_s,
                               cluster_detection_method='deactivate')
  except (ValueError, RuntimeError) as e:
    raise DistributedError(f'jax.distributed.initialize({coordinator_address!r}) failed on '
                           f'process {process_id}: {_one_line(e)}') from None
  return f'process {process_id} of {num_processes} (coordinator {coordinator_address})'


def handshake(coordinator_address: str, num_processes: int, process_id: int,
              timeout_s: float) -> None:
  """Returns once all processes have reached process 0 and agree; else DistributedError.

  Process 0 listens on the coordinator's port; the others connect, retrying until
  `timeout_s` so that the processes may start in any order. Nothing of JAX is touched.
  """
  host, port = _split_address(coordinator_address)
  if num_processes == 1:
    return
  deadline = time.monotonic() + timeout_s
  if process_id == 0:
    _gather(port, num_processes, deadline, coordinator_address, timeout_s)
  else:
    _hello(host, port, num_processes, process_id, deadline, coordinator_address, timeout_s)


def _split_address(address: str) -> tuple[str, int]:
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise DistributedError(f'--coordinator_address={address!r} must be HOST:PORT, e.g. '
                           '10.0.0.2:8476 (the address of process 0 and a free port there)')
  return host.strip('[]'), int(port)


def _send(conn: socket.socket, message: dict) -> None:
  conn.sendall(json.dumps(message).encode() + b'\n')


def _receive(conn: socket.socket) -> dict:
  data = b''
  while not data.endswith(b'\n'):
    chunk = conn.recv(4096)
    if not chunk:
      raise ValueError('connection closed mid-message')
    data += chunk
  return json.loads(data)


def _gather(port, n, deadline, address, timeout_s) -> None:
  """Process 0: waits for hellos from processes 1..n-1, then tells each whether to go on."""
  try:
    server = (socket.create_server(('', port), family=socket.AF_INET6, dualstack_ipv6=True)
              if socket.has_dualstack_ipv6() else socket.create_server(('', port)))
  except OSError as e:
    raise DistributedError(f'process 0 cannot listen on port {port} of --coordinator_address='
                           f'{address} ({e.strerror}); choose a free port') from None
  peers, problem = {}, None
  with server:
    while len(peers) < n - 1 and problem is None and time.monotonic() < deadline:
      server.settimeout(max(deadline - time.monotonic(), 0.01))
      try:
        conn, _ = server.accept()
        conn.settimeout(max(deadline - time.monotonic(), 1.0))
        hello = _receive(conn)
      except (OSError, ValueError):   # the timeout, or a stray connection: not one of ours
        continue
      i, count = hello.get('process_id'), hello.get('num_processes')
      if count != n:
        problem = (f'process {i} was started with --num_processes={count} but process 0 with '
                   f'--num_processes={n}; give every process the same count')
      elif i in peers:
        problem = f'two processes were started with --process_id={i}; give each its own id'
      peers[i if problem is None else -1 - len(peers)] = conn
    missing = sorted(set(range(1, n)) - set(peers))
    if problem is None and missing:
      problem = (f'process(es) {", ".join(map(str, missing))} of {n} did not reach the '
                 f'coordinator {address} within {timeout_s} s; start all {n} processes with '
                 'the same --coordinator_address and --num_processes')
    for conn in peers.values():
      with conn:
        try:
          _send(conn, {'error': problem} if problem else {'ok': True})
          conn.recv(1)   # the peer closes first, so this end leaves no TIME_WAIT on the port
        except OSError:
          pass
  if problem:
    raise DistributedError(problem)


def _hello(host, port, n, i, deadline, address, timeout_s) -> None:
  """Process i > 0: reaches process 0 (retrying until the deadline) and awaits its verdict."""
  while True:
    try:
      conn = socket.create_connection((host, port), timeout=5)
      break
    except OSError as e:   # refused (not started yet), unresolvable, unreachable
      if time.monotonic() >= deadline:
        raise DistributedError(
            f'process {i} cannot reach the coordinator {address} (process 0) within '
            f'{timeout_s} s ({e}); start process 0 on that machine, or check the address, '
            'the port and the firewall') from None
      time.sleep(0.25)
  with conn:
    conn.settimeout(timeout_s + 5)   # process 0 waits up to its own timeout for the others
    try:
      _send(conn, {'process_id': i, 'num_processes': n})
      reply = _receive(conn)
    except (OSError, ValueError):
      raise DistributedError(f'the coordinator {address} did not confirm the start of process '
                             f'{i}; is another program listening on that port?') from None
  if 'error' in reply:
    raise DistributedError(f'process {i} stopped by process 0: {reply["error"]}')
