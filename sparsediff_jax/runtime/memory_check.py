"""Memory is checked before any work: a run that cannot fit is refused with one line (exit
code 2), not killed minutes later by the out-of-memory killer or RESOURCE_EXHAUSTED.

Two checks, each against the memory of one device (`memory_limit`):
- `check_state_fits`, from shapes alone (jax.eval_shape of the initialiser, before anything
  is allocated): the train state one device holds (parameters, every EMA copy and the
  optimiser's moments; split over sharding.fsdp devices when FSDP is on);
- `check_compiled_fits`, after compiling: XLA's memory analysis of the compiled train step
  or sampler (its arguments, outputs and temporaries per device, less what outputs reuse
  of donated arguments).
The limit is the accelerator's `bytes_limit` (GPU, TPU); on CPU every device is a slice of
the host, so the need of all local devices together is compared with the host memory
available now. benchmarks/memory_estimate.py compares the estimate with the measured peak.
"""

import os

import jax

from sparsediff_jax import entry_checks
from sparsediff_jax.runtime import sharding
from sparsediff_jax.errors import ConfigError

# A limit in bytes that replaces the device's own (a hidden override for tests, and for
# keeping a run below what a shared machine can give it); checked before JAX by main.py.
LIMIT_ENV = entry_checks.MEMORY_LIMIT_ENV
REMEDIES = ('lower training.batch_size (or eval.batch_size for sampling), set model.remat=True, '
            'split the state with sharding.fsdp=N, or use model.dtype=bfloat16')
# The state does not depend on the batch: only a smaller or split state helps.
STATE_REMEDIES = ('split the state over more devices with sharding.fsdp=N, or use a smaller '
                  'model (model.channels, model.channel_mult; model.hidden_size, model.depth '
                  'for the DiT)')


def readable(num_bytes: float) -> str:
  """A size in the largest binary unit that keeps it >= 1: '3.20 GiB', '12.5 MiB', '640 B'."""
  for unit, size in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
    if num_bytes >= size:
      return f'{num_bytes / size:.3g} {unit}' if num_bytes < 100 * size else (
          f'{num_bytes / size:.0f} {unit}')
  return f'{num_bytes:.0f} B'


def _host_available_bytes() -> int | None:
  """MemAvailable of /proc/meminfo (what can still be allocated), else physical memory."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def memory_limit(device=None) -> tuple[int | None, str, int]:
  """(bytes, what they are, devices sharing them) of one device's memory; bytes None when
  unknown (the checks then pass)."""
  device = device or jax.local_devices()[0]
  override = entry_checks.memory_limit_override()
  if override is not None:
    return override, f'${LIMIT_ENV}', 1
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'{device.device_kind} memory', 1
  return _host_available_bytes(), 'available host memory', jax.local_device_count()


def _refuse_if_over(need: int, what: str, detail: str, remedies: str = REMEDIES) -> None:
  limit, where, sharing = memory_limit()
  if limit is None or need * sharing <= limit:
    return
  devices = f' x {sharing} local devices' if sharing > 1 else ''
  raise ConfigError(f'{what} needs an estimated {readable(need)} per device{devices} '
                    f'({detail}), more than the {readable(limit)} of {where}; {remedies}')


def check_state_fits(abstract_state) -> None:
  """ConfigError unless one device can hold the train state (sharded ShapeDtypeStructs)."""
  parts = {name: sharding.bytes_per_device(getattr(abstract_state, name))
           for name in ('params', 'ema', 'opt_state')}
  _refuse_if_over(sum(parts.values()), 'the training state',
                  ', '.join(f'{k} {readable(v)}' for k, v in parts.items()), STATE_REMEDIES)


def compiled_bytes(compiled) -> dict[str, int] | None:
  """{'arguments', 'outputs', 'temporaries', 'aliased'} bytes per device of a compiled
  function (jax.stages.Compiled), or None where the backend reports none."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return {'arguments': analysis.argument_size_in_bytes,
          'outputs': analysis.output_size_in_bytes,
          'temporaries': analysis.temp_size_in_bytes,
          'aliased': analysis.alias_size_in_bytes}


def compiled_need(sizes: dict[str, int]) -> int:
  """Peak bytes per device: arguments + outputs + temporaries, outputs written into donated
  arguments counted once."""
  return sizes['arguments'] + sizes['outputs'] + sizes['temporaries'] - sizes['aliased']


def check_compiled_fits(compiled, what: str) -> None:
  """ConfigError unless the compiled function's arguments, outputs and temporaries fit."""
  sizes = compiled_bytes(compiled)
  if sizes is None:
    return
  _refuse_if_over(compiled_need(sizes), what, ', '.join(
      f'{k} {readable(v)}' for k, v in sizes.items() if k != 'aliased'))
