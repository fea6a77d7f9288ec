"""Scale-out end to end, through the CLI, each run in its own subprocess:

- two processes with 2 CPU devices each (joined by jax.distributed over localhost, gloo
  collectives) train the same losses, parameters and sample grid as one process with 4;
  `--mode=sample` restores their Orbax checkpoint across both processes and draws that grid.
- FSDP (data 2 x fsdp 4 on 8 devices) trains what plain data parallelism on 8 devices does,
  with a quarter of the state per device, and restores into its own shardings.
- Bad input (an fsdp axis that does not divide the devices, an unreachable coordinator,
  disagreeing process counts) is one line on stderr and exit code 2, within the timeout.

Every process has a hard subprocess timeout: a JAX process whose peer is gone would abort
only after its initialization timeout.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from sparsediff_jax.console.scalars import read_scalars

from tests.helpers import REPO, tiny

pytestmark = pytest.mark.slow   # several processes of the CLI

# The tests' tiny config with a one-level U-Net, 3 steps, one checkpoint at the end.
TINY = tiny.as_flags({**tiny.TINY, 'model.channel_mult': (1,), 'model.attn_resolutions': (),
                      'training.num_steps': 3, 'training.log_every': 1,
                      'training.checkpoint_every': 0, 'sampling.sampler': 'euler',
                      'sampling.num_steps': 1})
# Cheaper XLA:CPU compilation; the runs compared here all use it.
FAST_COMPILE = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
HARD_TIMEOUT_S = 420
FSDP_SCRIPT = os.path.join(REPO, 'tests', 'helpers', 'fsdp_vs_dp.py')


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(args, devices: int, tmp, script=('-m', 'sparsediff_jax.main')) -> subprocess.Popen:
  """Starts the CLI (or `script`) with `devices` CPU devices; stderr goes to a file (a full
  pipe would stall a process, and with it its peer)."""
  env = dict(os.environ, PYTHONPATH=REPO, TMPDIR=str(tmp), JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} {FAST_COMPILE}')
  log = tempfile.TemporaryFile('w+', dir=tmp)
  proc = subprocess.Popen([sys.executable, *script, *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=log, text=True)
  proc.log = log
  return proc


def finish(procs: dict) -> dict:
  """Waits for every process -> {name: (returncode, stderr)}; kills all on the timeout."""
  deadline, out = time.monotonic() + HARD_TIMEOUT_S, {}
  try:
    for name, p in procs.items():
      p.wait(timeout=max(deadline - time.monotonic(), 1))
      p.log.seek(0)
      out[name] = (p.returncode, p.log.read())
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.kill()
        p.wait()
      p.log.close()
  return out


def multiprocess(args, n: int, devices: int, tmp) -> dict:
  address = f'127.0.0.1:{free_port()}'
  return {i: start([*args, f'--coordinator_address={address}', f'--num_processes={n}',
                    f'--process_id={i}', '--initialization_timeout=60'], devices, tmp)
          for i in range(n)}


def assert_ok(results: dict):
  for name, (code, err) in results.items():
    assert code == 0, f'{name} exited {code}:\n{err[-3000:]}'


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Trains four ways at once (one in two processes), then samples in two processes."""
  root = tmp_path_factory.mktemp('scale')
  w = {k: str(root / k) for k in ('one4', 'two2', 'dp8', 'fsdp8')}
  procs = {'one4': start([*TINY, f'--workdir={w["one4"]}'], 4, root),
           'dp8, fsdp8': start(TINY, 8, root, script=[FSDP_SCRIPT, str(root)])}
  procs.update({f'two2/{i}': p for i, p in
                multiprocess([*TINY, f'--workdir={w["two2"]}'], 2, 2, root).items()})
  logs = finish(procs)
  assert_ok(logs)
  # Restores the data-parallel checkpoint of two2 into FSDP shardings across both processes.
  sample = multiprocess([*TINY, f'--workdir={w["two2"]}', '--mode=sample',
                         '--config.sharding.fsdp=2'], 2, 2, root)
  logs.update({f'sample two2/{i}': r for i, r in finish(sample).items()})
  assert_ok(logs)
  with open(root / 'result.json') as f:
    return w, logs, json.load(f)


def checkpoint(workdir: str, step: int = 3) -> list[np.ndarray]:
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  local = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                        checkpointer.metadata(path).item_metadata)
  return [np.asarray(x) for x in jax.tree.leaves(checkpointer.restore(path, target))]


def grid(workdir: str, name: str) -> np.ndarray:
  """A saved sample grid at 1 pixel per pixel (the PNGs are upscaled by whole factors)."""
  image = np.asarray(Image.open(os.path.join(workdir, 'samples', name)))
  factor = image.shape[0] // 38   # 2x2 grid of 16 px images with 2 px padding
  return image[::factor, ::factor]


def assert_same_training(a: str, b: str):
  sa, sb = read_scalars(a), read_scalars(b)
  for tag in ('loss', 'dense_loss', 'grad_norm', 'kept_fraction'):
    np.testing.assert_array_equal(sa[tag][0], [1, 2, 3])
    np.testing.assert_array_equal(sb[tag][0], [1, 2, 3])
    np.testing.assert_allclose(sa[tag][1], sb[tag][1], rtol=1e-5, err_msg=tag)
  ca, cb = checkpoint(a), checkpoint(b)
  assert len(ca) == len(cb) > 100
  for x, y in zip(ca, cb):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_two_processes_train_what_one_process_trains(runs):
  w, _, _ = runs
  assert_same_training(w['one4'], w['two2'])


def test_two_processes_draw_the_same_grid_in_training_and_sample_mode(runs):
  w, _, _ = runs
  reference = grid(w['one4'], 'samples_0000003.png')
  assert reference.std() > 0
  np.testing.assert_array_equal(grid(w['two2'], 'samples_0000003.png'), reference)
  np.testing.assert_array_equal(grid(w['two2'], 'sample_mode_0000003.png'), reference)


def test_only_process_0_writes_logs_and_records(runs):
  w, logs, _ = runs
  events = [f for f in os.listdir(w['two2']) if f.startswith('events.out.tfevents')]
  assert len(events) == 1
  assert {'config.json', 'dataset.json'} <= set(os.listdir(w['two2']))
  for i in (0, 1):
    assert f'processes: process {i} of 2' in logs[f'two2/{i}'][1]
  wrote = f'wrote {w["two2"]}/samples/samples_0000003.png'
  assert wrote in logs['two2/0'][1] and wrote not in logs['two2/1'][1]
  assert "mesh {'data': 4, 'fsdp': 1}" in logs['two2/0'][1]
  assert 'training state per device: params 0.' in logs['two2/0'][1]


def test_fsdp_trains_what_data_parallelism_trains(runs):
  w, _, _ = runs
  assert_same_training(w['dp8'], w['fsdp8'])
  np.testing.assert_array_equal(grid(w['fsdp8'], 'samples_0000003.png'),
                                grid(w['dp8'], 'samples_0000003.png'))
  # --mode=sample's code restored the FSDP checkpoint into FSDP shardings.
  np.testing.assert_array_equal(grid(w['fsdp8'], 'sample_mode_0000003.png'),
                                grid(w['dp8'], 'samples_0000003.png'))


def test_fsdp_splits_the_state_over_its_axis(runs):
  _, _, result = runs
  dp, fsdp = result['dp8'], result['fsdp8']
  assert dp['mesh'] == {'data': 8, 'fsdp': 1} and fsdp['mesh'] == {'data': 2, 'fsdp': 4}
  assert dp['param_specs'] == ['P()']
  assert "P(None, None, None, 'fsdp')" in fsdp['param_specs']
  # Nearly every array splits 4 ways; a few (3 output channels, counters) stay whole.
  assert fsdp['bytes_per_device'] < 0.3 * dp['bytes_per_device']


def assert_usage_error(code: int, err: str, expected: str):
  lines = [l for l in err.splitlines() if l.startswith('error:')]
  assert code == 2 and len(lines) == 1 and expected in lines[0], err[-2000:]


def test_fsdp_axis_that_does_not_divide_the_devices(tmp_path):
  workdir = tmp_path / 'run'
  (code, err), = finish({'cli': start([*TINY, f'--workdir={workdir}',
                                       '--config.sharding.fsdp=3'], 4, tmp_path)}).values()
  assert_usage_error(code, err, 'config.sharding.fsdp=3 is invalid: the fsdp mesh axis must '
                                'divide the 4 devices')
  assert not workdir.exists()


def test_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path):
  workdir, started = tmp_path / 'run', time.monotonic()
  args = [*TINY, f'--workdir={workdir}', f'--coordinator_address=127.0.0.1:{free_port()}',
          '--num_processes=2', '--process_id=1', '--initialization_timeout=2']
  (code, err), = finish({'cli': start(args, 2, tmp_path)}).values()
  assert_usage_error(code, err, 'process 1 cannot reach the coordinator 127.0.0.1:')
  assert time.monotonic() - started < 60 and not workdir.exists()


def test_disagreeing_process_counts_stop_every_process(tmp_path):
  address = f'127.0.0.1:{free_port()}'
  procs = {n: start([*TINY, f'--workdir={tmp_path / "run"}', f'--coordinator_address={address}',
                     f'--num_processes={n}', f'--process_id={n - 2}',
                     '--initialization_timeout=20'], 2, tmp_path) for n in (2, 3)}
  results = finish(procs)
  for code, err in results.values():
    assert_usage_error(code, err, 'was started with --num_processes=3 but process 0 with '
                                  '--num_processes=2')
