"""The cost of bounding the steps in flight (progress.InFlight) on the real train step.

    python -m benchmarks.dispatch_bound [--config tiny|default] [--steps 30] [--rounds 5]

The training loop pushes each step's loss into progress.InFlight(depth=2), which waits
until the loss of the step before the previous one is ready: at most two steps are queued,
so Ctrl-C/SIGTERM is honoured within two steps instead of after the whole queue (~20 steps
of the default run on CPU). This times `--steps` steps of the compiled step (the same
batch each step, prefetched on the device) with the bound and without it (plain async
dispatch, one block at the end), the two alternating round by round, and prints the best
and median steps/s of each and the ratio. An A/A pair (unbounded twice) shows the noise.

Why it costs nothing on accelerators either: a step of a few milliseconds is queued while
the previous one runs; the host waits on a loss computed one step earlier, so the device
always has the next step to run, and the wait is one host synchronisation per step on a
value already there (microseconds). Only a host slower than the device (a dispatch that
takes longer than a step) would stall it, and then the queue never fills anyway.
"""

import argparse
import os
import statistics
import time

import jax
import numpy as np

from sparsediff_jax import config_base  # noqa: E402
from sparsediff_jax.console import progress  # noqa: E402
from sparsediff_jax.runtime import sharding  # noqa: E402
from sparsediff_jax import train_step  # noqa: E402
from sparsediff_jax.train_state import (abstract_model, init_state,  # noqa: E402
                                          make_optimizer)
from tests.helpers.tiny import tiny_config  # noqa: E402


def setup(config):
  mesh = sharding.make_mesh(config)
  tx, schedule = make_optimizer(config)
  graphdef, _ = abstract_model(config)
  state = init_state(config, tx, mesh)
  s = config.data.image_size
  images = np.random.default_rng(0).integers(
      0, 256, (config.training.batch_size, s, s, 3), dtype=np.uint8)
  batch = sharding.global_batch(images, mesh)
  step = train_step.compile_train_step(config, graphdef, tx, schedule, mesh)
  state, metrics = step(state, batch)   # compile
  jax.block_until_ready(metrics)
  return step, state, batch


def run(step, state, batch, steps: int, bounded: bool):
  bound = progress.InFlight(depth=2)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
    if bounded:
      bound.push(metrics['loss'])
  jax.block_until_ready((state, metrics))
  return state, steps / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--config', choices=('tiny', 'default'), default='tiny')
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  config = tiny_config() if args.config == 'tiny' else config_base.get_config()
  step, state, batch = setup(config)
  rates = {'unbounded': [], 'bounded (2 in flight)': [], 'unbounded (A/A)': []}
  print(f'{args.config} config, batch {config.training.batch_size}, {args.steps} steps x '
        f'{args.rounds} rounds; load average {os.getloadavg()}')
  for r in range(args.rounds):
    names = list(rates) if r % 2 == 0 else list(rates)[::-1]
    for name in names:
      state, rate = run(step, state, batch, args.steps, bounded=name.startswith('bounded'))
      rates[name].append(rate)
  for name, values in rates.items():
    print(f'{name:24s} best {max(values):8.2f} steps/s  median {statistics.median(values):8.2f}')
  base = 'unbounded'
  for name in ('bounded (2 in flight)', 'unbounded (A/A)'):
    print(f'{name} / unbounded: best {max(rates[name]) / max(rates[base]):.3f}, median '
          f'{statistics.median(rates[name]) / statistics.median(rates[base]):.3f}')
  print(f'load average at end {os.getloadavg()}')


if __name__ == '__main__':
  main()
