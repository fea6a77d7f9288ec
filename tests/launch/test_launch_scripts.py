"""launch/*.sh, launch/experiments/*.sh and benchmarks/*.sh: shellcheck-clean (bash -n where
shellcheck is not installed), and what the launch scripts would run, read back from their
DRY_RUN=1 output as argument lists."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPTS = sorted(glob.glob(os.path.join(REPO, 'launch', '*.sh')) +
                 glob.glob(os.path.join(REPO, 'launch', 'experiments', '*.sh')) +
                 glob.glob(os.path.join(REPO, 'benchmarks', '*.sh')))
SETTINGS = ('TPU_NAME', 'ZONE', 'PROJECT', 'ACCELERATOR_TYPE', 'RUNTIME_VERSION', 'QUEUED',
            'SPOT', 'CONFIG', 'WORKDIR', 'DATA_DIR', 'TFDS_NAME', 'MANUAL_DIR', 'EXTRA_FLAGS',
            'VENV', 'PYTHON', 'JAX_CUDA', 'JAX_VERSION', 'COORDINATOR_ADDRESS', 'NUM_PROCESSES',
            'PROCESS_ID', 'COORDINATOR_PORT', 'DEPS_ONLY')
BASH = shutil.which('bash')
# The jax release the scripts install: the newest that CI tests (pyproject.toml's bound).
TESTED_JAX = '0.10.2'


def test_scripts_are_clean():
  assert {os.path.basename(s) for s in SCRIPTS} >= {'tpu.sh', 'gpu.sh'}
  if shutil.which('shellcheck'):
    checks = [['shellcheck', '--severity=style', *SCRIPTS]]
  else:
    checks = [['bash', '-n', s] for s in SCRIPTS]
  for check in checks:
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dry_run(script, *args, path=None, **settings):
  """(exit code, [argv of each command it would run], stderr) with DRY_RUN=1 (unless settings
  say otherwise); `path` is put first on PATH (a folder of fake programs)."""
  env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
  env.update({'DRY_RUN': '1', **settings})
  if path:
    env['PATH'] = f'{path}{os.pathsep}{env["PATH"]}'
  result = subprocess.run([BASH, os.path.join(REPO, 'launch', script), *args], env=env,
                          capture_output=True, text=True, timeout=60)
  # Each printed line is one command quoted by printf %q: let bash itself split it.
  split = 'while IFS= read -r l; do eval "set -- $l"; printf "%s\\0" "$@"; printf "\\1\\0"; done'
  words = subprocess.run(['bash', '-c', split], input=result.stdout, capture_output=True,
                         text=True, check=True).stdout.split('\0')[:-1]
  commands, current = [], []
  for word in words:
    if word == '\1':
      commands.append(current)
      current = []
    else:
      current.append(word)
  return result.returncode, commands, result.stderr


def option(argv, name):
  return next(a.split('=', 1)[1] for a in argv if a.startswith(f'--{name}='))


# ACCELERATOR_TYPE -> (zone, runtime version, queued resource by default, hugepages)
TPU_TYPES = {
    'v2-8': ('us-central1-b', 'tpu-ubuntu2204-base', False, False),
    'v3-8': ('us-central1-a', 'tpu-ubuntu2204-base', False, False),
    'v4-8': ('us-central2-b', 'tpu-ubuntu2204-base', False, False),
    'v4-32': ('us-central2-b', 'tpu-ubuntu2204-base', False, False),
    'v5litepod-8': ('us-west4-a', 'v2-alpha-tpuv5-lite', True, True),
    'v5litepod-16': ('us-west4-a', 'v2-alpha-tpuv5-lite', True, True),
    'v5p-8': ('us-east5-a', 'v2-alpha-tpuv5', False, True),
    'v5p-32': ('us-east5-a', 'v2-alpha-tpuv5', False, True),
    'v6e-8': ('us-east5-b', 'v2-alpha-tpuv6e', True, True),
    'v6e-16': ('us-east5-b', 'v2-alpha-tpuv6e', True, True),
}


@pytest.mark.parametrize('accelerator', sorted(TPU_TYPES))
def test_tpu_commands_of_every_accelerator_type(accelerator):
  zone, runtime, queued, hugepages = TPU_TYPES[accelerator]
  code, commands, err = dry_run('tpu.sh', 'create', ACCELERATOR_TYPE=accelerator)
  assert code == 0, err
  create = commands[0]
  assert option(create, 'zone') == zone and option(create, 'accelerator-type') == accelerator
  if queued:
    assert create[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create']
    assert option(create, 'runtime-version') == runtime and option(create, 'node-id')
    assert commands[1][3:5] == ['queued-resources', 'describe']
  else:
    assert create[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create']
    assert option(create, 'version') == runtime and len(commands) == 1

  code, (_, _, ssh), _ = dry_run('tpu.sh', 'setup', ACCELERATOR_TYPE=accelerator)
  remote = option(ssh, 'command')
  assert code == 0 and option(ssh, 'zone') == zone and option(ssh, 'worker') == 'all'
  assert '--python 3.12' in remote and 'sys.version_info >= (3, 11)' in remote
  assert f"'jax[tpu]=={TESTED_JAX}'" in remote and ' -U ' not in remote
  assert 'local_devices' not in remote   # no TPU touched before distributed initialisation
  assert ('transparent_hugepage/enabled' in remote) == hugepages

  code, (check,), _ = dry_run('tpu.sh', 'check', ACCELERATOR_TYPE=accelerator)
  remote = option(check, 'command')
  assert code == 0 and option(check, 'worker') == 'all' and 'timeout ' in remote
  assert remote.index('distributed.initialize(') < remote.index('local_devices')


def test_tpu_create_node_stays_an_option_and_settings_win():
  code, (create,), _ = dry_run('tpu.sh', 'create', ACCELERATOR_TYPE='v6e-8', QUEUED='0',
                               ZONE='europe-west4-a', SPOT='1')
  assert code == 0 and create[3:5] == ['tpu-vm', 'create'] and '--spot' in create
  assert option(create, 'zone') == 'europe-west4-a'
  assert option(create, 'version') == 'v2-alpha-tpuv6e'
  code, (queue, describe), _ = dry_run('tpu.sh', 'create', QUEUED='1', SPOT='1', PROJECT='p')
  assert code == 0 and queue[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create']
  assert option(queue, 'node-id') == 'sparsediff' and '--spot' in queue
  assert option(queue, 'project') == 'p' and describe[4] == 'describe'
  assert option(queue, 'runtime-version') == 'tpu-ubuntu2204-base'   # the v4-8 default


@pytest.mark.parametrize('settings, message', [
    ({'ACCELERATOR_TYPE': 'v7-8'}, 'ACCELERATOR_TYPE=v7-8 is not a TPU type this script knows'),
    ({'COORDINATOR_PORT': 'x'}, 'COORDINATOR_PORT=x must be a port number'),
])
def test_tpu_bad_settings_are_one_line(settings, message):
  code, commands, err = dry_run('tpu.sh', 'create', **settings)
  assert code == 2 and not commands and err.startswith(f'error: {message}')
  assert len(err.strip().splitlines()) == 1


def test_tpu_setup_puts_the_code_and_jax_tpu_on_every_worker():
  code, (tar, scp, ssh), _ = dry_run('tpu.sh', 'setup')
  assert code == 0 and tar[0] == 'tar' and '--null' in tar
  assert scp[4] == 'scp' and option(scp, 'worker') == 'all' and scp[5] == tar[-1]
  assert ssh[4] == 'ssh' and option(ssh, 'worker') == 'all'
  remote = option(ssh, 'command')
  assert "'jax[tpu]==" in remote and '--python 3.12' in remote and '-e ~/sparsediff/code' in remote


def test_tpu_train_runs_one_command_on_all_workers_and_streams_worker_0():
  code, (start, stream), _ = dry_run(
      'tpu.sh', 'train', WORKDIR='gs://b/runs/x', DATA_DIR='gs://b/tfds',
      EXTRA_FLAGS='--config.sharding.fsdp=4 --config.model.channel_mult=(1,2)')
  assert code == 0 and option(start, 'worker') == 'all' and option(stream, 'worker') == '0'
  remote = option(start, 'command')
  assert ('python -m sparsediff_jax.main --config=configs/celeba.py --workdir=gs://b/runs/x '
          '--config.data.data_dir=gs://b/tfds --config.sharding.fsdp=4 '
          '--config.model.channel_mult=\\(1\\,2\\)') in remote
  assert '--coordinator_address' not in remote   # TPU pods are detected
  assert 'JAX_COORDINATOR_PORT' not in remote     # JAX's own port unless one is set
  _, (start, _), _ = dry_run('tpu.sh', 'train', WORKDIR='gs://b/r', DATA_DIR='gs://b/t',
                             COORDINATOR_PORT='8476')
  assert 'JAX_COORDINATOR_PORT=8476 setsid nohup' in option(start, 'command')
  assert 'tail -n +1 -F ~/sparsediff/train.log' == option(stream, 'command')


@pytest.mark.parametrize('command, settings, missing', [
    ('train', {'DATA_DIR': 'gs://b/tfds'}, 'WORKDIR'),
    ('train', {'WORKDIR': 'gs://b/r'}, 'DATA_DIR'),
    ('prepare', {}, 'DATA_DIR'),
])
def test_tpu_missing_settings_are_named(command, settings, missing):
  code, commands, err = dry_run('tpu.sh', command, **settings)
  assert code == 2 and not commands and err.startswith(f'error: set {missing} (e.g.')


def test_tpu_prepare_builds_the_dataset_once_from_worker_0():
  code, (build,), _ = dry_run('tpu.sh', 'prepare', DATA_DIR='gs://b/tfds', MANUAL_DIR='/data/c')
  assert code == 0 and option(build, 'worker') == '0'
  assert option(build, 'command') == ('sparsediff/venv/bin/tfds build celeb_a '
                                      '--data_dir=gs://b/tfds --manual_dir=/data/c ')


def test_tpu_stop_and_delete():
  _, (stop,), _ = dry_run('tpu.sh', 'stop')
  assert option(stop, 'worker') == 'all' and 'kill -- -$(cat ~/sparsediff/train.pid)' in (
      option(stop, 'command'))
  _, (delete,), _ = dry_run('tpu.sh', 'delete')
  assert delete[3:5] == ['tpu-vm', 'delete'] and '--quiet' in delete
  _, (delete,), _ = dry_run('tpu.sh', 'delete', QUEUED='1')
  assert delete[3:5] == ['queued-resources', 'delete'] and '--force' in delete


def fake_program(folder, name, body):
  folder.mkdir(exist_ok=True)
  program = folder / name
  program.write_text('#!/bin/sh\n' + body)
  program.chmod(0o755)
  return str(folder)


def fake_nvidia_smi(folder, *gpus, uv=True):
  """A folder with an `nvidia-smi` that reports GPUS, each 'DRIVER, COMPUTE_CAPABILITY', and
  (with uv) a `uv`: the dry run only looks it up."""
  if uv:
    fake_program(folder, 'uv', 'exit 0\n')
  return fake_program(folder, 'nvidia-smi', ''.join(f'echo "{g}"\n' for g in gpus))


def only_tools(folder, *tools):
  """A folder holding only the system tools gpu.sh needs (and `tools`), for PATH: no uv, no
  nvidia-smi, no pythonX.Y unless faked there."""
  folder.mkdir(exist_ok=True)
  for tool in ('dirname', 'head', 'cut', 'tr', 'sort', 'sed', *tools):
    (folder / tool).symlink_to(shutil.which(tool))
  return str(folder)


def fake_python(folder, name, version):
  """A `name` that answers the version probe with `version` (X.Y)."""
  return fake_program(folder, name, f'echo {version}\n')


def uv_commands(commands):
  """The `uv venv` and `uv pip install` command lines of an install."""
  venv = next(c for c in commands if c[1:2] == ['venv'])
  pip = next(c for c in commands if c[1:3] == ['pip', 'install'])
  return venv, pip


@pytest.mark.parametrize('gpus, chosen, extra', [
    (['580.65.06, 9.0'], 'auto', 'cuda13'),                   # H100, driver 580
    (['590.48.01, 12.0', '590.48.01, 8.9'], 'auto', 'cuda13'),
    (['550.54.15, 8.0'], 'auto', 'cuda12'),                   # A100, driver 550
    (['580.65.06, 7.0'], 'auto', 'cuda12'),                   # V100: below SM 7.5
    (['535.104.05, 8.6'], 'cuda12', 'cuda12'),
])
def test_gpu_install_picks_the_cuda_build_the_driver_allows(tmp_path, gpus, chosen, extra):
  code, commands, err = dry_run('gpu.sh', 'install', path=fake_nvidia_smi(tmp_path, *gpus),
                                JAX_CUDA=chosen)
  assert code == 0, err
  venv, pip = uv_commands(commands)
  assert option(['--python=' + venv[venv.index('--python') + 1]], 'python') == '3.12'
  assert f'jax[{extra}]=={TESTED_JAX}' in pip and pip[-2:] == ['-e', f'{REPO}[tf]']
  check = commands[-1][-1]
  assert 'sys.version_info >= (3, 11)' in check and "jax.default_backend() == 'gpu'" in check


@pytest.mark.parametrize('gpus, settings, message', [
    (None, {}, 'no NVIDIA driver here (nvidia-smi not found): install driver >= 580'),
    (['550.54.15, 8.0'], {'JAX_CUDA': 'cuda13'},
     'jax[cuda13] needs NVIDIA driver >= 580, this machine has 550: upgrade the driver or set '
     'JAX_CUDA=cuda12'),
    (['580.65.06, 7.0'], {'JAX_CUDA': 'cuda13'},
     'jax[cuda13] needs GPUs of compute capability >= 7.5 (Turing), this machine has 7.0'),
    (['470.82.01, 8.0'], {}, 'jax[cuda12] needs NVIDIA driver >= 525, this machine has 470'),
    (['580.65.06, 9.0'], {'JAX_CUDA': 'cuda11'}, 'JAX_CUDA=cuda11: use auto, cuda13 or cuda12'),
    (['580.65.06, 9.0'], {'PYTHON': '3.10'}, 'PYTHON=3.10: the project needs Python >= 3.11'),
])
def test_gpu_install_says_in_one_line_what_is_missing(tmp_path, gpus, settings, message):
  if gpus:
    settings = {**settings, 'path': fake_nvidia_smi(tmp_path, *gpus)}
  else:   # a PATH of only the tools the script needs: no nvidia-smi; a real install
    settings = {**settings, 'PATH': only_tools(tmp_path / 'bin', 'python3'), 'DRY_RUN': '0'}
  code, commands, err = dry_run('gpu.sh', 'install', **settings)
  lines = err.strip().splitlines()
  assert code == 2 and not commands and len(lines) == 1, err
  assert lines[0].startswith('error: ' + message)


def test_gpu_train():
  code, (train,), _ = dry_run('gpu.sh', 'train', '--config.training.batch_size=256',
                              COORDINATOR_ADDRESS='10.0.0.2:8476', NUM_PROCESSES='2',
                              PROCESS_ID='1', WORKDIR='gs://b/r')
  assert code == 0 and train[1:3] == ['-m', 'sparsediff_jax.main']
  assert train[3:] == ['--config=configs/celeba.py', '--workdir=gs://b/r',
                       '--coordinator_address=10.0.0.2:8476', '--num_processes=2',
                       '--process_id=1', '--config.training.batch_size=256']


def test_gpu_install_without_uv_makes_a_venv_not_a_user_install(tmp_path):
  """An "externally managed" system Python refuses `pip install --user`: without uv, the
  install makes VENV with python3 -m venv and installs with that venv's pip."""
  path = only_tools(tmp_path / 'bin')
  fake_nvidia_smi(tmp_path / 'bin', '580.65.06, 9.0', uv=False)
  fake_python(tmp_path / 'bin', 'python3', '3.11')
  code, commands, err = dry_run('gpu.sh', 'install', PATH=path, HOME=str(tmp_path),
                                VENV=str(tmp_path / 'venv'))
  assert code == 0, err
  venv, pip, check = commands
  assert venv == ['python3', '-m', 'venv', str(tmp_path / 'venv')]
  assert pip[:4] == [str(tmp_path / 'venv/bin/python'), '-m', 'pip', 'install']
  assert f'jax[cuda13]=={TESTED_JAX}' in pip and pip[-2:] == ['-e', f'{REPO}[tf]']
  assert check[0] == str(tmp_path / 'venv/bin/python')
  assert not any('--user' in command for command in commands)


def test_gpu_install_without_uv_prefers_the_python_of_PYTHON(tmp_path):
  path = only_tools(tmp_path / 'bin')
  fake_nvidia_smi(tmp_path / 'bin', '580.65.06, 9.0', uv=False)
  fake_python(tmp_path / 'bin', 'python3', '3.11')
  fake_python(tmp_path / 'bin', 'python3.13', '3.13')
  code, commands, err = dry_run('gpu.sh', 'install', PATH=path, HOME=str(tmp_path),
                                PYTHON='3.13', VENV=str(tmp_path / 'venv'))
  assert code == 0 and commands[0][:3] == ['python3.13', '-m', 'venv'], err


def test_gpu_install_without_uv_or_python_3_11_names_both_ways_out(tmp_path):
  path = only_tools(tmp_path / 'bin')
  fake_nvidia_smi(tmp_path / 'bin', '580.65.06, 9.0', uv=False)
  fake_python(tmp_path / 'bin', 'python3', '3.10')
  code, commands, err = dry_run('gpu.sh', 'install', PATH=path, HOME=str(tmp_path))
  lines = err.strip().splitlines()
  assert code == 2 and not commands and len(lines) == 1, err
  assert lines[0].startswith('error: no uv here, and python3 is Python 3.10: the project needs '
                             'Python >= 3.11. Install uv (curl -LsSf https://astral.sh/uv/'), err


@pytest.mark.parametrize('jax_cuda', ['cuda12', 'cuda13'])
def test_gpu_dry_run_without_nvidia_smi_previews_the_named_cuda_build(tmp_path, jax_cuda):
  path = fake_program(tmp_path / 'bin', 'uv', 'exit 0\n')
  code, commands, err = dry_run('gpu.sh', 'install', PATH=f'{path}:{only_tools(tmp_path / "t")}',
                                JAX_CUDA=jax_cuda)
  assert code == 0, err
  _, pip = uv_commands(commands)
  assert f'jax[{jax_cuda}]=={TESTED_JAX}' in pip
  assert f'no nvidia-smi here; previewing JAX_CUDA={jax_cuda}, unchecked' in err


def test_gpu_dry_run_without_nvidia_smi_asks_which_cuda_build(tmp_path):
  code, commands, err = dry_run('gpu.sh', 'install', PATH=only_tools(tmp_path / 'bin'))
  lines = err.strip().splitlines()
  assert code == 2 and not commands and len(lines) == 1, err
  assert lines[0].startswith("error: DRY_RUN=1 without nvidia-smi: name the GPUs' CUDA build")


@pytest.mark.parametrize('script', ['tpu.sh', 'gpu.sh'])
@pytest.mark.parametrize('flag', ['--help', '-h', 'help'])
def test_help_prints_the_usage_and_exits_0(script, flag):
  result = subprocess.run([BASH, os.path.join(REPO, 'launch', script), flag],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, 'ACCELERATOR_TYPE': 'v9-8'})   # help comes first
  assert result.returncode == 0 and not result.stderr, result.stderr
  assert f'Usage: launch/{script}' in result.stdout and 'DRY_RUN' in result.stdout
  assert '#' not in result.stdout.splitlines()[0] and 'set -euo' not in result.stdout


@pytest.mark.parametrize('script', ['tpu.sh', 'gpu.sh'])
def test_unknown_command_is_a_usage_line(script):
  code, commands, err = dry_run(script, 'launch-the-rockets')
  assert code == 2 and not commands and err.startswith(f'error: usage: launch/{script}')


def test_benchmark_suite_commands_use_flags_their_scripts_define(tmp_path):
  """benchmarks/gpu_suite.sh (DRY_RUN=1): every benchmark it runs exists and defines every
  flag it is given (absl DEFINE_* or argparse add_argument)."""
  env = {**os.environ, 'DRY_RUN': '1', 'PYTHON': 'python'}
  result = subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu_suite.sh'),
                           str(tmp_path / 'suite.md')], env=env, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  commands = [line.split() for line in result.stdout.splitlines() if line.strip()]
  scripts = {c[1] for c in commands}
  assert {'benchmarks/train_step.py', 'benchmarks/optimizations.py',
          'benchmarks/sampling_speed.py'} <= scripts
  for command in commands:
    source = open(os.path.join(REPO, command[1])).read()
    for arg in command[2:]:
      name = arg.split('=', 1)[0].lstrip('-')
      if name == 'config' or name.startswith('config.'):
        continue
      assert f"DEFINE_integer('{name}'" in source or f"DEFINE_list('{name}'" in source \
          or f"DEFINE_float('{name}'" in source or f"'--{name}'" in source, (command[1], name)


def test_benchmark_suite_names_the_wheels_to_bring(tmp_path):
  """The dependency check of benchmarks/gpu_suite.sh against the package set of a lent GPU
  machine (jax, flax, optax, orbax, scikit-learn, tensorboard and what they depend on; no
  ml-collections, clu or TensorFlow), faked as empty packages seen by a Python without its
  site-packages."""
  site = tmp_path / 'site'
  for package in ('jax', 'flax', 'optax', 'orbax', 'orbax/checkpoint', 'sklearn', 'tensorboard',
                  'numpy', 'scipy', 'PIL', 'absl', 'etils', 'etils/epath', 'yaml', 'msgpack'):
    (site / package).mkdir(parents=True)
    (site / package / '__init__.py').write_text('')
  python = tmp_path / 'python'
  python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
  python.chmod(0o755)
  output = tmp_path / 'out' / 'suite.md'
  env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
  env.update(PYTHON=str(python), PYTHONPATH=str(site), DEPS_ONLY='1')
  suite = ['bash', os.path.join(REPO, 'benchmarks', 'gpu_suite.sh'), str(output)]
  result = subprocess.run(suite, env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 2 and result.stdout == ''
  assert result.stderr.splitlines() == [
      'error: missing wheels: ml-collections tqdm; bring them (pip download -d WHEELHOUSE '
      'ml-collections tqdm, on a machine with network) and run: bash benchmarks/gpu_suite.sh '
      'OUTPUT.md WHEELHOUSE']
  assert not output.parent.exists()   # nothing written
  for package in ('ml_collections', 'tqdm'):
    (site / package).mkdir()
    (site / package / '__init__.py').write_text('')
  result = subprocess.run(suite, env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0 and result.stdout == 'dependencies: all found\n', result.stderr
