"""Run by test_multiprocess.py in a subprocess with 8 CPU devices (one process: the imports
are paid once). Usage: python tests/helpers/fsdp_vs_dp.py ROOT --config.a.b=v ...

Trains the overridden base config with plain data parallelism into ROOT/dp8 and with FSDP
(data 2 x fsdp 4) into ROOT/fsdp8, draws the FSDP run's grid again through --mode=sample's
code (restoring into FSDP shardings), and writes ROOT/result.json: per run, the mesh, the
partition specs of the parameters and the state bytes one device holds.
"""

import ast
import json
import os
import sys

import jax

from sparsediff_jax import config_base
from sparsediff_jax.runtime import sharding
from sparsediff_jax.modes import sample, train


def config_with(overrides: list[str]):
  config = config_base.get_config()
  for arg in overrides:
    key, value = arg.removeprefix('--config.').split('=', 1)
    *path, leaf = key.split('.')
    node = config
    for part in path:
      node = node[part]
    try:
      node[leaf] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      node[leaf] = value
  return config


def main(root: str, overrides: list[str]):
  assert jax.device_count() == 8, jax.devices()
  result = {}
  for name, fsdp in (('dp8', 1), ('fsdp8', 4)):
    config = config_with(overrides)
    config.sharding.fsdp = fsdp
    state = train.train(config, os.path.join(root, name))
    result[name] = {
        'mesh': dict(sharding.make_mesh(config).shape),
        'param_specs': sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)}),
        'bytes_per_device': sharding.bytes_per_device((state.params, state.ema,
                                                       state.opt_state)),
    }
  sample.run_sample_mode(config, os.path.join(root, 'fsdp8'))
  with open(os.path.join(root, 'result.json'), 'w') as f:
    json.dump(result, f)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2:])
