"""Where a TPU plan's compile time goes: each program of `--mode=plan` compiled alone.

For one config and slice, compiles in this process, one after the other: the train step,
one network call (one NFE), the whole sampler at the config's sampling.num_steps, and the
same sampler at 2 steps (the fori_loop of samplers.sample runs 1 iteration; if its compile
time matches the full one, the loop is kept rolled and the trip count costs nothing to
compile). Each is timed in wall seconds and in this process's CPU seconds (all threads),
with the size of its lowered StableHLO and of its compiled HLO, and the load average when
it finished (the machine is shared: CPU seconds are the number to compare between runs).

  python benchmarks/tpu_compile_time.py --config=shapes --topology=v5e-8 \
      [--parts=train,call,sampler,sampler2] [--train_batch=N] [--eval_batch=N] \
      [--out=/tmp/compile_time.json]

LIBTPU_INIT_ARGS set in the environment reaches libtpu (its flags, e.g. for dumps); the
variant is recorded in the output. Needs libtpu (pip install -e '.[tpu]').
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PARTS = ('train', 'call', 'sampler', 'sampler2')


def parse_parts(text: str) -> list[str]:
  parts = [p for p in text.split(',') if p]
  unknown = [p for p in parts if p not in PARTS]
  if unknown or not parts:
    raise SystemExit(f'--parts={text!r}: choose from {",".join(PARTS)}')
  return parts


def _hlo_lines(text: str) -> int:
  return sum(1 for line in text.splitlines() if ' = ' in line)


def timed_compile(lowered) -> dict:
  """Wall and CPU seconds of lowered.compile(), and the sizes of both programs."""
  lowered_text = lowered.as_text()
  wall, cpu = time.monotonic(), time.process_time()
  compiled = lowered.compile()
  wall, cpu = time.monotonic() - wall, time.process_time() - cpu
  text = compiled.as_text()
  return {'wall_seconds': round(wall, 1), 'cpu_seconds': round(cpu, 1),
          'stablehlo_ops': _hlo_lines(lowered_text), 'hlo_instructions': _hlo_lines(text),
          'hlo_chars': len(text), 'load_average': [round(x, 2) for x in os.getloadavg()]}


def lower_part(part: str, config, mesh):
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from sparsediff_jax import generate, train_step as ts
  from sparsediff_jax.images import CHANNELS
  from sparsediff_jax import train_state as state
  from sparsediff_jax.runtime import sharding
  from sparsediff_jax.tpu_plan import compile as tpu_compile
  tx, schedule = state.make_optimizer(config)
  graphdef, _ = state.abstract_model(config)
  target = state.abstract_state(config, tx, mesh)
  d, t = config.data, config.training
  if part == 'train':
    shape = (t.batch_size, d.image_size, d.image_size, 3)
    batch = jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=sharding.batch_sharding(mesh))
    return ts.compile_train_step(config, graphdef, tx, schedule, mesh).lower(target, batch)
  params = state.inference_params(config, target)
  batch = tpu_compile.sampling_batch(config, mesh.devices.size)
  if part == 'call':
    rows = sharding.batch_sharding(mesh)
    x = jax.ShapeDtypeStruct((batch, d.image_size, d.image_size, CHANNELS), jnp.float32,
                             sharding=rows)
    level = jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=rows)
    return jax.jit(lambda p, x, c: nnx.merge(graphdef, p)(x, c)).lower(params, x, level)
  if part == 'sampler2':
    config.sampling.num_steps = 2
  return generate.make_batch_sampler(config, graphdef, mesh).lower(params, batch)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='shapes')
  parser.add_argument('--topology', default='v5e-8')
  parser.add_argument('--parts', default=','.join(PARTS))
  parser.add_argument('--train_batch', type=int, default=None,
                      help='training.batch_size (global) instead of the config\'s')
  parser.add_argument('--eval_batch', type=int, default=None,
                      help='eval.batch_size (the sampler\'s and the network call\'s global '
                           'batch) instead of the config\'s')
  parser.add_argument('--out', default=None, help='JSON written here too')
  args = parser.parse_args(argv)
  parts = parse_parts(args.parts)
  from sparsediff_jax.tpu_plan import compile as tpu_compile
  tpu_compile.prepare_environment()
  tpu_compile.require_libtpu()
  from benchmarks.tpu_plan_table import load_config
  from sparsediff_jax.tpu_plan import topology
  tpu_slice = topology.parse(args.topology)
  devices = tpu_compile.slice_devices(tpu_slice)
  result = {'config': args.config, 'topology': args.topology,
            'libtpu_init_args': os.environ.get('LIBTPU_INIT_ARGS', ''),
            'train_batch': args.train_batch, 'eval_batch': args.eval_batch, 'parts': {}}
  for part in parts:
    config = load_config(args.config)
    chips = tpu_slice.chips
    config.training.batch_size = args.train_batch or config.training.batch_size
    config.training.batch_size = -(-config.training.batch_size // chips) * chips
    if args.eval_batch:
      config.eval.batch_size = args.eval_batch
    mesh = tpu_compile.make_mesh(devices, config.sharding.fsdp)
    result['parts'][part] = timed_compile(lower_part(part, config, mesh))
    print(part, json.dumps(result['parts'][part]), flush=True)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
