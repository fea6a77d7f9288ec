"""Each training-loop optimisation measured with and without it, side by side in one run.

    python benchmarks/optimizations.py                        # CPU: the embedded shapes run
    python benchmarks/optimizations.py --config=configs/celeba.py --batch=128 --steps=50

Rows (before -> after):
  A/A                the same step twice: the noise floor of this machine and run
  bfloat16 compute   model.dtype float32 -> bfloat16 (parameters stay float32)
  donated state      jit without donate_argnums -> with (memory: XLA's compiled estimate)
  host sync          metrics fetched after every step -> every --fetch_every steps
  steps per call     training.steps_per_call 1 -> --scan steps in one lax.scan, unrolled
                     and as a rolled loop (training.unroll_steps)
  rematerialisation  model.remat False -> True (memory and time)
  device prefetch    each batch copied when asked for -> 2 batches in flight
  async checkpoint   Orbax save returns after the write -> returns while it writes

Every variant keeps its own state and is timed in alternating rounds, the best of --rounds
shown (on a shared machine other load only ever adds time); the A/A row shows what
difference the machine's noise alone makes. Step times include what the loop
does around the step (the batch copy, the metric fetch) where that is what is measured.
Memory is XLA's estimate for the compiled step: arguments + outputs + temporaries - the
buffers aliased by donation (on GPU/TPU the allocator's peak is printed by train_step.py).
"""

import os
import platform
import tempfile
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from sparsediff_jax.runtime import checkpoints, sharding  # noqa: E402
from sparsediff_jax import config_base, data  # noqa: E402
from sparsediff_jax import train_step  # noqa: E402
from sparsediff_jax.train_state import (abstract_model, init_state,  # noqa: E402
                                          make_optimizer)

_CONFIG = config_flags.DEFINE_config_file('config', config_base.__file__, 'Config file.')
_BATCH = flags.DEFINE_integer('batch', 0, 'Global batch (0: the config\'s).')
_STEPS = flags.DEFINE_integer('steps', 20, 'Steps per timed round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternating rounds per comparison.')
_FETCH = flags.DEFINE_integer('fetch_every', 10, 'Steps between metric fetches (after).')
_SCAN = flags.DEFINE_integer('scan', 4, 'Steps per call (after).')
_ONLY = flags.DEFINE_list('only', [], 'Rows to run (default: all): ' + ', '.join(
    ('aa', 'bf16', 'donate', 'sync', 'scan', 'remat', 'prefetch', 'checkpoint')))


def _config(**fields):
  c = _CONFIG.value.copy_and_resolve_references()
  if _BATCH.value:
    c.training.batch_size = _BATCH.value
  for key, value in fields.items():
    section, name = key.split('__')
    c[section][name] = value
  return c


class Variant:
  """A compiled step with its own state and a batch source, timed `steps` at a time."""

  def __init__(self, config, mesh, *, donate=True, fetch_every=None, prefetch=2):
    self.config, self.fetch_every = config, fetch_every or _FETCH.value
    tx, schedule = make_optimizer(config)
    graphdef, _ = abstract_model(config)
    self.step = train_step.compile_train_step(config, graphdef, tx, schedule, mesh, donate=donate)
    self.state = init_state(config, tx, mesh)
    self.k = config.training.steps_per_call
    self.batches = sharding.prefetch_to_mesh(data.make_train_iterator(config), mesh,
                                             size=prefetch, steps_per_call=self.k)
    self.compiled = self.step.lower(self.state, next(self.batches)[0]).compile()
    self.run(self.k)   # compile and warm up

  def memory_mib(self) -> float:
    m = self.compiled.memory_analysis()
    if m is None:
      return float('nan')
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return total / 2 ** 20

  def run(self, steps: int) -> float:
    """Seconds per step over `steps` steps, the loop's host work included."""
    pending = []
    t0 = time.perf_counter()
    for i in range(0, steps, self.k):
      batch, _ = next(self.batches)
      self.state, metrics = self.compiled(self.state, batch)
      pending.append(metrics)
      if (i + self.k) % self.fetch_every == 0:
        jax.device_get(pending)
        pending = []
    jax.block_until_ready(self.state)
    jax.device_get(pending)
    return (time.perf_counter() - t0) / steps


def compare(name, before, after, what='step ms'):
  """Alternating timed rounds; returns a table row."""
  times = {0: [], 1: []}
  steps = max(_STEPS.value // after.k * after.k, after.k)
  for r in range(_ROUNDS.value):   # before/after, then after/before: no side always first
    for i in ((0, 1) if r % 2 == 0 else (1, 0)):
      times[i].append((before, after)[i].run(steps))
  b, a = (min(times[i]) * 1e3 for i in (0, 1))   # the best round: load only adds time
  row = f'| {name} | {what} | {b:.2f} | {a:.2f} | {a / b:.3f} |'
  print(row, flush=True)
  return row


def memory_row(name, before, after):
  b, a = before.memory_mib(), after.memory_mib()
  row = f'| {name} | memory MiB (XLA estimate) | {b:.1f} | {a:.1f} | {a / b:.3f} |'
  print(row, flush=True)
  return row


def checkpoint_row(config, mesh):
  """Time until save() returns, synchronous vs asynchronous Orbax, the same state."""
  tx, _ = make_optimizer(config)
  state = init_state(config, tx, mesh)
  times = {False: [], True: []}
  with tempfile.TemporaryDirectory() as root:
    ckpts = {a: checkpoints.Checkpointer(os.path.join(root, str(a)), keep=2, async_save=a)
             for a in (False, True)}
    for r in range(_ROUNDS.value + 1):
      for a, ckpt in ckpts.items():
        t0 = time.perf_counter()
        ckpt.save(r + 1, state, {'data': {}})
        if r:   # the first save creates directories and is not counted
          times[a].append(time.perf_counter() - t0)
        ckpt.wait()
    for ckpt in ckpts.values():
      ckpt.close()
  b, a = (min(times[x]) * 1e3 for x in (False, True))
  row = f'| async checkpoint | save() blocks the loop, ms | {b:.1f} | {a:.1f} | {a / b:.3f} |'
  print(row, flush=True)
  return row


def main(_):
  mesh = sharding.make_mesh()
  base = _config()
  dev = jax.devices()[0]
  print(f'# optimisations: {dev.device_kind} x {jax.device_count()} '
        f'({platform.processor() or dev.platform}), jax {jax.__version__}, '
        f'image {base.data.image_size}, batch {base.training.batch_size}, model '
        f'{base.model.channels}x{tuple(base.model.channel_mult)}, {_STEPS.value} steps x '
        f'{_ROUNDS.value} rounds\n')
  print('| optimisation | measure | before | after | after / before |')
  print('|---|---|---:|---:|---:|')
  only = set(_ONLY.value) or {'aa', 'bf16', 'donate', 'sync', 'scan', 'remat', 'prefetch',
                              'checkpoint'}
  f32, bf16 = _config(model__dtype='float32'), _config(model__dtype='bfloat16')
  dtype = base.model.dtype
  if 'aa' in only:   # the noise floor: any ratio this far from 1 is not an effect
    compare('none (A/A: the same step twice)', Variant(base, mesh), Variant(base, mesh))
  if 'bf16' in only:
    compare('bfloat16 compute', Variant(f32, mesh), Variant(bf16, mesh))
  if 'donate' in only:
    before, after = Variant(base, mesh, donate=False), Variant(base, mesh)
    memory_row('donated state', before, after)
    compare('donated state', before, after)
  if 'sync' in only:
    compare(f'host sync: fetch every {_FETCH.value} steps',
            Variant(base, mesh, fetch_every=1), Variant(base, mesh, fetch_every=_FETCH.value))
  if 'scan' in only:
    one = Variant(base, mesh)
    for unroll in (True, False):
      compare(f'{_SCAN.value} steps per call ({"unrolled" if unroll else "rolled loop"})', one,
              Variant(_config(training__steps_per_call=_SCAN.value,
                              training__unroll_steps=unroll), mesh))
  if 'remat' in only:
    before, after = Variant(base, mesh), Variant(_config(model__remat=True), mesh)
    memory_row('rematerialisation', before, after)
    compare('rematerialisation', before, after)
  if 'prefetch' in only:
    compare('device prefetch', Variant(base, mesh, prefetch=0), Variant(base, mesh))
  if 'checkpoint' in only:
    checkpoint_row(base, mesh)
  print(f'\n(model.dtype of the other rows: {dtype})')


if __name__ == '__main__':
  app.run(main)
