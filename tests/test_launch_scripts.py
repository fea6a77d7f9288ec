"""launch/*.sh: shellcheck-clean (bash -n where shellcheck is not installed), and what they
would run, read back from their DRY_RUN=1 output as argument lists."""

import glob
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, 'launch', '*.sh')) +
                 glob.glob(os.path.join(REPO, 'benchmarks', '*.sh')))
SETTINGS = ('TPU_NAME', 'ZONE', 'PROJECT', 'ACCELERATOR_TYPE', 'RUNTIME_VERSION', 'QUEUED',
            'SPOT', 'CONFIG', 'WORKDIR', 'DATA_DIR', 'TFDS_NAME', 'MANUAL_DIR', 'EXTRA_FLAGS',
            'VENV', 'PYTHON', 'JAX_CUDA', 'COORDINATOR_ADDRESS', 'NUM_PROCESSES', 'PROCESS_ID')


def test_scripts_are_clean():
  assert {os.path.basename(s) for s in SCRIPTS} >= {'tpu.sh', 'gpu.sh'}
  if shutil.which('shellcheck'):
    checks = [['shellcheck', '--severity=style', *SCRIPTS]]
  else:
    checks = [['bash', '-n', s] for s in SCRIPTS]
  for check in checks:
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dry_run(script, *args, **settings):
  """(exit code, [argv of each command it would run], stderr) with DRY_RUN=1."""
  env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
  env.update(settings, DRY_RUN='1')
  result = subprocess.run(['bash', os.path.join(REPO, 'launch', script), *args], env=env,
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


def test_tpu_create_a_vm_or_a_queued_resource():
  code, (create,), _ = dry_run('tpu.sh', 'create', ACCELERATOR_TYPE='v4-32', ZONE='z1')
  assert code == 0 and create[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create']
  assert option(create, 'accelerator-type') == 'v4-32' and option(create, 'zone') == 'z1'
  assert option(create, 'version') == 'tpu-ubuntu2204-base' and '--spot' not in create
  code, (queue, describe), _ = dry_run('tpu.sh', 'create', QUEUED='1', SPOT='1', PROJECT='p')
  assert code == 0 and queue[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create']
  assert option(queue, 'node-id') == 'sparsediff' and '--spot' in queue
  assert option(queue, 'project') == 'p' and describe[4] == 'describe'


def test_tpu_setup_puts_the_code_and_jax_tpu_on_every_worker():
  code, (tar, scp, ssh), _ = dry_run('tpu.sh', 'setup')
  assert code == 0 and tar[0] == 'tar' and '--null' in tar
  assert scp[4] == 'scp' and option(scp, 'worker') == 'all' and scp[5] == tar[-1]
  assert ssh[4] == 'ssh' and option(ssh, 'worker') == 'all'
  remote = option(ssh, 'command')
  assert "'jax[tpu]'" in remote and '--python 3.12' in remote and '-e ~/sparsediff/code' in remote


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


def test_gpu_install_and_train():
  code, commands, _ = dry_run('gpu.sh', 'install', JAX_CUDA='cuda13')
  assert code == 0 and commands[-2][-1] == 'jax[cuda13]'
  assert "jax.default_backend() == 'gpu'" in commands[-1][-1]
  code, (train,), _ = dry_run('gpu.sh', 'train', '--config.training.batch_size=256',
                              COORDINATOR_ADDRESS='10.0.0.2:8476', NUM_PROCESSES='2',
                              PROCESS_ID='1', WORKDIR='gs://b/r')
  assert code == 0 and train[1:3] == ['-m', 'sparsediff_jax.main']
  assert train[3:] == ['--config=configs/celeba.py', '--workdir=gs://b/r',
                       '--coordinator_address=10.0.0.2:8476', '--num_processes=2',
                       '--process_id=1', '--config.training.batch_size=256']


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
