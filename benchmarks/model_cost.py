"""Parameters and FLOPs per training step of each backbone, from XLA's cost analysis.

    python benchmarks/model_cost.py [--configs=celeba,celeba_dit] [--batch=128]
        [--set=celeba_dit:model.patch_size=2,model.remat=True]

For each config (a file in configs/) the real step (train_step.compile_train_step: forward,
backward, AdamW, EMA) is compiled for one global batch and XLA's estimate of its FLOPs is
read; nothing runs, so the numbers do not depend on the load of the machine. `--set` adds
a variant of a config with the listed fields changed (repeatable). The forward pass alone
is reported too (the network at the same batch, no gradient), and the step's scratch
memory from XLA's buffer assignment (activations and temporaries). That is XLA:CPU's
figure: it does not fall with model.remat (benchmarks/RESULTS.md) and an accelerator's
differs, so it compares backbones only roughly.
"""

import argparse
import ast
import os

import jax
import numpy as np
from flax import nnx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from sparsediff_jax import config_base  # noqa: E402
from sparsediff_jax.runtime import sharding  # noqa: E402
from sparsediff_jax import train_step  # noqa: E402
from sparsediff_jax.train_state import (abstract_model, abstract_state,  # noqa: E402
                                          make_optimizer)
from sparsediff_jax.models import count_params  # noqa: E402


def load(name: str):
  if name == 'shapes':
    return config_base.get_config()
  from sparsediff_jax.main import _load_config
  return _load_config(os.path.join(REPO, 'configs', f'{name}.py'))


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost['flops'])


def _temp_gib(compiled) -> float:
  """XLA's scratch buffers of the compiled step (activations kept for the backward pass
  and temporaries), GiB; nan where the backend gives no memory analysis."""
  mem = compiled.memory_analysis()
  return float(getattr(mem, 'temp_size_in_bytes', float('nan'))) / 2**30


def compiled_step(config, batch: int):
  """(the train step of CONFIG compiled for a global batch of abstract uint8 images, its
  graphdef, its abstract parameters); nothing runs."""
  config = config.copy_and_resolve_references()
  config.training.batch_size = batch
  mesh = sharding.make_mesh()
  tx, schedule = make_optimizer(config)
  graphdef, abstract_params = abstract_model(config)
  s = config.data.image_size
  images = jax.ShapeDtypeStruct((batch, s, s, 3), np.uint8,
                                sharding=sharding.batch_sharding(mesh))
  step = train_step.compile_train_step(config, graphdef, tx, schedule, mesh)
  return (step.lower(abstract_state(config, tx, mesh), images).compile(), graphdef,
          abstract_params)


def model_cost(config, batch: int) -> dict:
  """Parameters, GFLOP of one train step and of one forward pass, and the step's scratch
  memory, at global batch `batch`."""
  compiled, graphdef, abstract_params = compiled_step(config, batch)
  step_flops, temp = _flops(compiled), _temp_gib(compiled)
  forward = jax.jit(lambda p, x, t: nnx.merge(graphdef, p)(x, t))
  s = config.data.image_size
  x = jax.ShapeDtypeStruct((batch, s, s, 3), np.float32)
  t = jax.ShapeDtypeStruct((batch,), np.float32)
  fwd_flops = _flops(forward.lower(abstract_params, x, t).compile())
  return {'params': count_params(abstract_params), 'step': step_flops / 1e9,
          'forward': fwd_flops / 1e9, 'temp': temp}


def describe(config) -> str:
  m = config.model
  if m.name == 'dit':
    tokens = (config.data.image_size // m.patch_size) ** 2
    return (f'DiT patch {m.patch_size} ({tokens} tokens), hidden {m.hidden_size}, depth '
            f'{m.depth}, heads {m.num_heads}, mlp x{m.mlp_ratio:g}')
  return (f'U-Net {m.channels} ch x {tuple(m.channel_mult)}, {m.num_res_blocks} res blocks, '
          f'attn at {tuple(m.attn_resolutions)}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default='celeba,celeba_dit')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--set', action='append', default=[],
                      help='CONFIG:FIELD=VALUE[,FIELD=VALUE...], a variant of CONFIG '
                           '(repeatable)')
  args = parser.parse_args()
  variants = [(name, None) for name in args.configs.split(',')]
  for item in args.set:
    name, assignment = item.split(':', 1)
    variants.append((name, assignment))
  print(f'# model cost from XLA cost analysis: {jax.devices()[0].device_kind}, '
        f'jax {jax.__version__}; global batch {args.batch}, compute dtype of each config\n')
  print('| config | model | parameters (M) | GFLOP/train step | GFLOP/forward '
        '| GFLOP/image/step | step scratch GiB |')
  print('|---|---|---:|---:|---:|---:|---:|')
  for name, assignment in variants:
    config = load(name)
    label = name
    if assignment:
      for item in assignment.split(','):
        field, value = item.split('=', 1)
        section, leaf = field.split('.')
        config[section][leaf] = ast.literal_eval(value)
      label = f'{name} ({assignment})'
    cost = model_cost(config, args.batch)
    print(f'| {label} | {describe(config)} | {cost["params"] / 1e6:.2f} | {cost["step"]:.1f} '
          f'| {cost["forward"]:.1f} | {cost["step"] / args.batch:.2f} | {cost["temp"]:.1f} |',
          flush=True)


if __name__ == '__main__':
  main()
