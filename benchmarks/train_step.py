"""Train-step benchmark: step time, images/s, model FLOPs utilisation, and the mask's cost.

Usage:
  python benchmarks/train_step.py --config=configs/celeba.py --batch_sizes=8,32 \
      --ratios=0,0.98 [--steps=10] [--peak_tflops=N] [--config.model.dtype=float32]

For each batch size and mask ratio it compiles the real jitted step (train_step.compile_train_step)
on all local devices and times `--rounds` rounds of `--steps` steps, the settings
interleaved in a new order each round; the best round is shown (on a shared machine other
load only adds time), as a Markdown table. FLOPs per step
come from XLA's cost analysis of the compiled step; MFU is printed when the chip's peak is
known (a table below) or given with --peak_tflops. Memory: XLA's estimate for the compiled
step, and the allocator's peak so far on GPU/TPU. The last
column is the step time relative to the first mask ratio at the same batch size, measured
in the same run. Ratio 0 draws no mask (masking.sample_pixel_mask), so 0.98 against 0 is the
whole cost of sparse supervision; listing 0 twice (--ratios=0,0.98,0) adds an A/A row whose
distance from 1.000 is the noise of the machine.
"""

import platform
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from sparsediff_jax import config_base
from sparsediff_jax.runtime import sharding
from sparsediff_jax import train_step
from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer

_CONFIG = config_flags.DEFINE_config_file('config', config_base.__file__, 'Config file.')
_BATCHES = flags.DEFINE_list('batch_sizes', ['8'], 'Global batch sizes to time.')
_RATIOS = flags.DEFINE_list('ratios', ['0', '0.98'], 'Mask ratios to time.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternating timed rounds per setting.')
_PEAK = flags.DEFINE_float('peak_tflops', 0.0, 'Peak TFLOP/s per chip (0 = from the table).')

# Dense bf16 peak TFLOP/s per chip, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {'TPU v4': 275.0, 'TPU v5 lite': 197.0, 'TPU v5p': 459.0,
                    'TPU v6 lite': 918.0, 'NVIDIA H100 80GB HBM3': 989.0,
                    'NVIDIA H200': 989.0, 'NVIDIA A100-SXM4-80GB': 312.0}


class Setting:
  """One (batch, mask ratio): the real compiled step, its state and a fixed batch."""

  def __init__(self, config, batch: int, ratio: float):
    config = config.copy_and_resolve_references()
    config.training.batch_size, config.mask.ratio = batch, ratio
    mesh = sharding.make_mesh()
    tx, schedule = make_optimizer(config)
    graphdef, _ = abstract_model(config)
    self.state = init_state(config, tx, mesh)
    s = config.data.image_size
    images = np.random.default_rng(0).integers(
        0, 256, (batch, s, s, 3), dtype=np.uint8)
    self.x = sharding.global_batch(images, mesh)
    step = train_step.compile_train_step(config, graphdef, tx, schedule, mesh)
    self.compiled = step.lower(self.state, self.x).compile()
    cost = self.compiled.cost_analysis()
    self.flops = float((cost[0] if isinstance(cost, list) else cost).get('flops', 0.0))
    m = self.compiled.memory_analysis()
    self.xla_mib = ((m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                     - m.alias_size_in_bytes) / 2 ** 20 if m is not None else float('nan'))
    self.times = []
    self.run(1)   # warm up

  def run(self, steps: int) -> None:
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, m = self.compiled(self.state, self.x)
    jax.block_until_ready(m)
    self.times.append((time.perf_counter() - t0) / steps)


def device_peak_mib() -> str:
  """The allocator's peak so far on device 0 (GPU/TPU), or 'n/a' (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return f'{peak / 2 ** 20:.0f}' if peak else 'n/a'


def main(_):
  config = _CONFIG.value
  dev = jax.devices()[0]
  kind = dev.device_kind
  peak = _PEAK.value or PEAK_BF16_TFLOPS.get(kind, 0.0)
  print(f'# train step: {kind} x {jax.device_count()} ({platform.processor() or dev.platform}), '
        f'jax {jax.__version__}, image {config.data.image_size}, '
        f'model {config.model.channels}x{tuple(config.model.channel_mult)}, '
        f'dtype {config.model.dtype}; best of {_ROUNDS.value} interleaved rounds of '
        f'{_STEPS.value} steps\n')
  print('| batch | mask ratio | step ms | images/s | TFLOP/step | MFU | XLA memory MiB '
        '| device peak MiB | time / ratio 0 |')
  print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for b in map(int, _BATCHES.value):
    settings = [Setting(config, b, float(r)) for r in _RATIOS.value]
    order = np.random.default_rng(0)
    for _ in range(_ROUNDS.value):   # interleaved in a new order each round
      for i in order.permutation(len(settings)):
        settings[i].run(_STEPS.value)
    base = None
    for r, s in zip(_RATIOS.value, settings):
      dt = min(s.times[1:])   # the best round: other load only ever adds time
      base = base or dt
      mfu = (f'{s.flops / dt / 1e12 / peak / jax.device_count():.1%}' if peak and s.flops
             else 'n/a')
      print(f'| {b} | {float(r):g} | {dt * 1e3:.1f} | {b / dt:.1f} | {s.flops / 1e12:.4f} '
            f'| {mfu} | {s.xla_mib:.0f} | {device_peak_mib()} | {dt / base:.3f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
