"""Running the real CLI (and the worker scripts of tests/helpers/) in subprocesses, for the
end-to-end tests, and damaging its files.

Runs compile with XLA's cheap CPU settings, and processes that share `jax_cache` (by default
the whole session's, conftest.py) load the compiled step from JAX's persistent cache instead
of compiling it again: every run of the same tiny config after the first costs the Python
start-up only.
"""

import hashlib
import json
import os
import subprocess
import sys

from tests.helpers import REPO, tiny

# The tests' tiny config (tiny.py) as flags, with batch 4, no attention, a log line every
# step, and the default run length and checkpoint schedule (the tests set their own).
TINY = tuple(tiny.as_flags({
    **tiny.TINY, 'data.num_train_examples': 32, 'data.shapes_pairs': 2,
    'model.attn_resolutions': (), 'training.batch_size': 4, 'training.num_steps': 1000,
    'training.log_every': 1, 'training.checkpoint_every': 250, 'sampling.num_steps': 1,
    'sampling.sampler': 'euler'}))


# Set by conftest.py to the session's compilation cache: env()'s cache when none is given.
SHARED_CACHE_ENV = 'SPARSEDIFF_TEST_JAX_CACHE'


def env(tmp_dir: str, jax_cache: str | None = None, devices: int = 1) -> dict:
  """Environment of a CLI subprocess; TMPDIR inside tmp_dir (TFDS leaves folders there).
  jax_cache: its own compilation cache folder; by default the session's (conftest.py)."""
  os.makedirs(os.path.join(tmp_dir, 'tmp'), exist_ok=True)
  jax_cache = jax_cache or os.environ.get(SHARED_CACHE_ENV)
  e = {**os.environ, 'PYTHONPATH': REPO, 'TMPDIR': os.path.join(tmp_dir, 'tmp'),
       'TF_CPP_MIN_LOG_LEVEL': '2',
       'XLA_FLAGS': ('--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes'
                     f'=true --xla_force_host_platform_device_count={devices}')}
  if jax_cache:
    e.update(JAX_COMPILATION_CACHE_DIR=jax_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
  return e


def timing(t0: float, t_reference: float) -> dict:
  """The wall-time fields of a soak report: seconds since t0, the reference run's seconds,
  and the machine they were measured on."""
  import platform
  import time
  return dict(seconds=round(time.time() - t0, 1), reference_seconds=round(t_reference, 1),
              machine=f'{platform.machine()}, {os.cpu_count()} CPUs, '
                      f'{platform.python_version()}')


def command(*args) -> list[str]:
  return [sys.executable, '-m', 'sparsediff_jax.main', *args]


def run(*args, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run(command(*args), env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def start(*args, env: dict, log_path: str) -> subprocess.Popen:
  """Starts the CLI with stdout and stderr going to log_path."""
  log = open(log_path, 'w')
  return subprocess.Popen(command(*args), env=env, cwd=REPO, stdout=log,
                          stderr=subprocess.STDOUT)


# The packages a CLI error must be reported without importing.
HEAVY = ('jax', 'jaxlib', 'tensorflow', 'tensorflow_datasets', 'flax', 'orbax')


def imported_modules(*args, cwd, extra_path: str = '') -> tuple[subprocess.CompletedProcess,
                                                                 set[str]]:
  """Runs the CLI under `python -X importtime`; the top-level packages it imported.
  extra_path: folders put before the repository on PYTHONPATH."""
  path = os.pathsep.join(p for p in (extra_path, REPO) if p)
  result = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'sparsediff_jax.main',
                           *args], cwd=cwd, env={**os.environ, 'PYTHONPATH': path},
                          capture_output=True, text=True, timeout=600)
  names = {line.rsplit('|', 1)[-1].strip().split('.')[0]
           for line in result.stderr.splitlines() if line.startswith('import time:')}
  return result, names


def run_worker(module: str, devices: int) -> dict:
  """Runs `python -m tests.helpers.MODULE` on `devices` CPU devices; its last stdout line,
  parsed as JSON."""
  e = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
           JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-m', f'tests.helpers.{module}'], env=e,
                       capture_output=True, text=True, timeout=600, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith('error:')]


def assert_one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
  """The process failed with `code` and a single 'error: ...' line, no traceback."""
  lines = error_lines(result.stderr)
  assert result.returncode == code and len(lines) == 1, (result.returncode, result.stderr[-3000:])
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  return lines[0]


def snapshot(path: str) -> dict:
  """{relative path: sha256 of the file, or 'dir'} of everything under path."""
  out = {}
  for root, dirs, files in os.walk(path):
    for name in dirs:
      out[os.path.relpath(os.path.join(root, name), path)] = 'dir'
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.relpath(os.path.join(root, name), path)] = hashlib.sha256(
            f.read()).hexdigest()
  return out


def truncate_every_file(directory: str) -> None:
  """Cuts every file under `directory` to half its size (a write cut short)."""
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)
