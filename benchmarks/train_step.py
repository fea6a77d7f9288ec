"""Train-step benchmark: step time, images/s, model FLOPs utilisation, and the mask's cost.

Usage:
  python benchmarks/train_step.py --config=configs/celeba.py --batch_sizes=8,32 \
      --ratios=0,0.98 [--steps=10] [--peak_tflops=N] [--config.model.dtype=float32]

For each batch size and mask ratio it compiles the real jitted step (train.compile_train_step)
on all local devices, times `--steps` steps after one warm-up step, and prints a Markdown
table. FLOPs per step come from XLA's cost analysis of the compiled step; MFU is printed
when the chip's peak is known (a table below) or given with --peak_tflops. The last
column is the step time relative to mask ratio 0 at the same batch size, measured in the
same run: the cost of sparse supervision.
"""

import platform
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from sparsediff_jax import config_base, sharding, train

_CONFIG = config_flags.DEFINE_config_file('config', config_base.__file__, 'Config file.')
_BATCHES = flags.DEFINE_list('batch_sizes', ['8'], 'Global batch sizes to time.')
_RATIOS = flags.DEFINE_list('ratios', ['0', '0.98'], 'Mask ratios to time.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per setting.')
_PEAK = flags.DEFINE_float('peak_tflops', 0.0, 'Peak TFLOP/s per chip (0 = from the table).')

# Dense bf16 peak TFLOP/s per chip, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {'TPU v4': 275.0, 'TPU v5 lite': 197.0, 'TPU v5p': 459.0,
                    'TPU v6 lite': 918.0, 'NVIDIA H100 80GB HBM3': 989.0,
                    'NVIDIA H200': 989.0, 'NVIDIA A100-SXM4-80GB': 312.0}


def time_step(config, batch: int, ratio: float, steps: int):
  config = config.copy_and_resolve_references()
  config.training.batch_size, config.mask.ratio = batch, ratio
  mesh = sharding.make_mesh()
  tx, schedule = train.make_optimizer(config)
  graphdef, _ = train.abstract_model(config)
  step = train.compile_train_step(config, graphdef, tx, schedule, mesh)
  state = train.init_state(config, tx, mesh)
  s = config.data.image_size
  images = np.random.default_rng(0).integers(0, 256, (batch, s, s, config.data.num_channels),
                                             dtype=np.uint8)
  x = sharding.global_batch(images, mesh)
  cost = step.lower(state, x).compile().cost_analysis()
  flops = float((cost[0] if isinstance(cost, list) else cost).get('flops', 0.0))
  state, m = step(state, x)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, x)
  jax.block_until_ready(m)
  return (time.perf_counter() - t0) / steps, flops


def main(_):
  config = _CONFIG.value
  dev = jax.devices()[0]
  kind = dev.device_kind
  peak = _PEAK.value or PEAK_BF16_TFLOPS.get(kind, 0.0)
  print(f'# train step: {kind} x {jax.device_count()} ({platform.processor() or dev.platform}), '
        f'jax {jax.__version__}, image {config.data.image_size}, '
        f'model {config.model.channels}x{tuple(config.model.channel_mult)}, '
        f'dtype {config.model.dtype}\n')
  print('| batch | mask ratio | step ms | images/s | TFLOP/step | MFU | time / ratio 0 |')
  print('|---:|---:|---:|---:|---:|---:|---:|')
  for b in map(int, _BATCHES.value):
    base = None
    for r in map(float, _RATIOS.value):
      dt, flops = time_step(config, b, r, _STEPS.value)
      base = base or dt
      mfu = f'{flops / dt / 1e12 / peak / jax.device_count():.1%}' if peak and flops else 'n/a'
      print(f'| {b} | {r:g} | {dt * 1e3:.1f} | {b / dt:.1f} | {flops / 1e12:.4f} | {mfu} '
            f'| {dt / base:.3f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
