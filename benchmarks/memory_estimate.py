"""How close the memory check's estimate is to the memory a train step really uses, on CPU.

    python benchmarks/memory_estimate.py            # the default sizes, one process each

For each (image size, batch, channels) of the U-Net of configs/shapes.py shrunk to that
size, a fresh process compiles the train step, takes memory_check's estimate (XLA's memory
analysis: arguments + outputs + temporaries - aliased, per device, one device here), then
resets the kernel's peak-RSS mark (/proc/self/clear_refs), initialises the state, runs three
steps and reads the peak RSS (VmHWM) above the RSS before initialising. The ratio
measured / estimate says how much the check under- or over-counts (the host process also
holds the input batches and numpy copies, which the estimate does not see).
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ((16, 16, 32), (32, 16, 32), (64, 16, 32), (64, 32, 64))   # image, batch, channels


def _status_kib(field: str) -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1])
  raise KeyError(field)


def measure(image_size: int, batch: int, channels: int) -> dict:
  """In this process: estimate and measured peak (MiB) of one train-step configuration."""
  import jax
  import numpy as np
  from sparsediff_jax import config_base
  from sparsediff_jax.runtime import memory_check, sharding
  from sparsediff_jax import train_step
  from sparsediff_jax.train_state import (abstract_model, abstract_state, init_state,
                                            make_optimizer)
  config = config_base.get_config()
  config.data.image_size, config.training.batch_size = image_size, batch
  config.model.channels, config.model.attn_resolutions = channels, ()
  mesh = sharding.make_mesh(config)
  tx, schedule = make_optimizer(config)
  graphdef, _ = abstract_model(config)
  target = abstract_state(config, tx, mesh)
  step = train_step.compile_train_step(config, graphdef, tx, schedule, mesh)
  shape = (batch, image_size, image_size, 3)
  compiled = step.lower(target, jax.ShapeDtypeStruct(
      shape, np.uint8, sharding=sharding.batch_sharding(mesh))).compile()
  sizes = memory_check.compiled_bytes(compiled)
  before = _status_kib('VmRSS')
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')   # the peak-RSS mark restarts from the current RSS
  state = init_state(config, tx, mesh)
  images = sharding.global_batch(np.zeros(shape, np.uint8), mesh)
  for _ in range(3):
    state, metrics = step(state, images)
  jax.block_until_ready((state, metrics))
  peak = _status_kib('VmHWM')
  return {'image_size': image_size, 'batch': batch, 'channels': channels,
          'estimate_mib': memory_check.compiled_need(sizes) / 2**20,
          'measured_mib': (peak - before) / 1024,
          **{f'{k}_mib': v / 2**20 for k, v in sizes.items()}}


def main():
  if len(sys.argv) == 5 and sys.argv[1] == '--one':
    print(json.dumps(measure(*map(int, sys.argv[2:]))))
    return
  print(f'{"image":>5} {"batch":>5} {"ch":>3} {"estimate MiB":>12} {"measured MiB":>12} '
        f'{"ratio":>6}')
  env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_PLATFORMS': 'cpu',
         'JAX_COMPILATION_CACHE_DIR': ''}
  for size in SIZES:
    out = subprocess.run([sys.executable, __file__, '--one', *map(str, size)], env=env,
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f'{r["image_size"]:>5} {r["batch"]:>5} {r["channels"]:>3} '
          f'{r["estimate_mib"]:>12.1f} {r["measured_mib"]:>12.1f} '
          f'{r["measured_mib"] / r["estimate_mib"]:>6.2f}')


if __name__ == '__main__':
  main()
