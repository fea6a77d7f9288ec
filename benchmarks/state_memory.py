"""Training-state memory per device for each FSDP size, from shapes alone (nothing allocated).

    python benchmarks/state_memory.py --config=configs/celeba.py --devices=8 --fsdp=1,2,4,8

Prints, for a mesh of DEVICES virtual CPU devices (the layout is the same on TPUs or GPUs
of that count), the MiB of parameters, EMA copies and Adam moments one device holds: the
line the training log prints at start. Activations come on top.
"""

import argparse
import importlib.util
import os


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('run_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='configs/celeba.py')
  parser.add_argument('--devices', type=int, default=8)
  parser.add_argument('--fsdp', default='1,2,4,8', help='comma-separated fsdp axis sizes')
  args = parser.parse_args()
  # Must be set before JAX starts: a CPU "machine" of the asked-for device count.
  os.environ['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={args.devices}'
  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax
  from sparsediff_jax.runtime import sharding
  from sparsediff_jax.train_state import abstract_state, make_optimizer, memory_per_device
  from sparsediff_jax.models import count_params

  print(f'{args.config} on {jax.device_count()} devices')
  for fsdp in map(int, args.fsdp.split(',')):
    config = load_config(args.config)
    config.sharding.fsdp = fsdp
    mesh = sharding.make_mesh(config)
    tx, _ = make_optimizer(config)
    abstract = abstract_state(config, tx, mesh)
    if fsdp == 1:
      print(f'{count_params(abstract.params) / 1e6:.2f}M parameters, '
            f'{len(config.optim.ema_decays)} EMA copies')
    print(f'fsdp={fsdp} mesh {dict(mesh.shape)}: {memory_per_device(abstract)}')


if __name__ == '__main__':
  main()
