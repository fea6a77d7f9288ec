"""What the in-step non-finite guard (sparsediff_jax/runtime/nonfinite.py) costs: compile time and
step time of the real train step, with the guard and without it, side by side in one
process, on whatever device JAX finds.

Variants: `none` (no guard: the update is always applied) and `guard` (as shipped). Each
is compiled from scratch (run without a persistent compilation cache); step times are the
best of --repeats blocks of --steps steps, the two variants taking turns so that a busy
machine slows both alike.

  python benchmarks/nonfinite_guard.py [--config=configs/cifar10.py] [--batch=32]
      [--small]   # a tiny U-Net (8 channels, 16 px, two levels): compile time dominates

Prints one line per variant: compile seconds, milliseconds per step, and the ratio of each
to `none`.

Measured on the shared 2-core development VM (CPU, load average 7-9 from other work, so
absolute times are inflated; the variants ran side by side):
  --batch=32 --steps=3 --repeats=3 (default shapes config: 32 px, 1.1M-parameter U-Net):
    none  compile 54.3 s, step 2834 ms;  guard  compile 65.7 s (1.21x), step 2864 ms (1.01x)
  --small --batch=8 --steps=20 --repeats=5:
    none  compile 39.5 s, step 20.7 ms;  guard  compile 47.5 s (1.20x), step 25.8 ms (1.25x)
"""

import argparse
import platform
import runpy
import time

import jax
import jax.numpy as jnp
import numpy as np

from sparsediff_jax import config_base
from sparsediff_jax.runtime import nonfinite, sharding
from sparsediff_jax import train_step
from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer

VARIANTS = ('none', 'guard')


def _config(args):
  config = (runpy.run_path(args.config)['get_config']() if args.config
            else config_base.get_config())
  config.training.batch_size = args.batch
  if args.small:
    config.data.image_size, config.model.channels = 16, 8
    config.model.channel_mult, config.model.attn_resolutions = (1, 2), ()
  return config


def _variant(name):
  """(all_finite, keep_if) for a variant."""
  if name == 'none':
    return (lambda *trees: jnp.bool_(True)), (lambda ok, new, old: new)
  return nonfinite.all_finite, nonfinite.keep_if


def compile_variant(config, mesh, name):
  """(compiled step, state, batch, compile seconds) of a variant."""
  tx, schedule = make_optimizer(config)
  graphdef, _ = abstract_model(config)
  shipped = nonfinite.all_finite, nonfinite.keep_if
  nonfinite.all_finite, nonfinite.keep_if = _variant(name)
  try:
    step_fn = train_step.compile_train_step(config, graphdef, tx, schedule, mesh)
    state = init_state(config, tx, mesh)
    size = config.data.image_size
    batch = sharding.global_batch(np.random.default_rng(0).integers(
        0, 256, (config.training.batch_size, size, size, 3), dtype=np.uint8), mesh)
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch).compile()
    return compiled, state, batch, time.perf_counter() - start
  finally:
    nonfinite.all_finite, nonfinite.keep_if = shipped


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--config', default='')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--small', action='store_true')
  args = parser.parse_args()
  config = _config(args)
  mesh = sharding.make_mesh()
  print(f'{platform.node()}: {jax.devices()[0].device_kind} x{jax.device_count()}, '
        f'config {args.config or "shapes"}{" --small" if args.small else ""}, '
        f'batch {args.batch}; step time: best of {args.repeats} blocks of {args.steps} '
        'steps, the variants taking turns', flush=True)
  runs = {name: list(compile_variant(config, mesh, name)) for name in VARIANTS}
  best = {name: float('inf') for name in VARIANTS}
  for _ in range(args.repeats):
    for name, run in runs.items():
      compiled, state, batch, _ = run
      state, metrics = compiled(state, batch)   # warm
      jax.block_until_ready(metrics)
      start = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
      best[name] = min(best[name], (time.perf_counter() - start) / args.steps * 1e3)
      run[1] = state
  base_compile, base_step = runs['none'][3], best['none']
  for name in VARIANTS:
    print(f'{name:6s} compile {runs[name][3]:7.1f} s ({runs[name][3] / base_compile:4.2f}x)   '
          f'step {best[name]:8.1f} ms ({best[name] / base_step:4.2f}x)', flush=True)


if __name__ == '__main__':
  main()
