"""The roofline: a lower bound on a step's time from what the compiler says it does.

Pure arithmetic on per-chip counts: FLOPs and HBM bytes from XLA's cost analysis of the
compiled TPU program, and the bytes its collectives move over the interconnect (parsed from
its HLO, `collectives.py`). A chip cannot finish a step faster than the slowest of
  compute      flops / peak bf16 FLOP/s,
  memory       bytes accessed / HBM bandwidth,
  interconnect collective traffic / ICI bandwidth,
so their maximum is a bound, not a prediction: it assumes perfect overlap, every FLOP at
the bf16 peak (float32 runs slower) and no latency. The MFU it implies (compute time over
the bound) is therefore a ceiling.
"""

import dataclasses
import math

from sparsediff_jax.tpu_plan.topology import Chip

HOUR = 3600.0


@dataclasses.dataclass(frozen=True)
class Bound:
  compute_s: float
  memory_s: float
  interconnect_s: float

  @property
  def seconds(self) -> float:
    return max(self.compute_s, self.memory_s, self.interconnect_s)

  @property
  def limited_by(self) -> str:
    """'compute', 'memory' (HBM bandwidth) or 'interconnect' (ICI)."""
    times = {'compute': self.compute_s, 'memory': self.memory_s,
             'interconnect': self.interconnect_s}
    return max(times, key=times.get)

  @property
  def mfu(self) -> float:
    """The model-FLOP utilisation the bound allows: compute time / bound (0 if no time)."""
    return self.compute_s / self.seconds if self.seconds > 0 else 0.0


def bound(chip: Chip, flops: float, hbm_bytes: float, ici_bytes: float = 0.0) -> Bound:
  """The bound on one program run of `flops`, `hbm_bytes` and `ici_bytes` per chip."""
  return Bound(flops / chip.peak_bf16_flops, hbm_bytes / chip.hbm_bytes_per_s,
               ici_bytes / chip.ici_bytes_per_s)


def arithmetic_intensity(flops: float, hbm_bytes: float) -> float:
  """FLOP per byte of HBM traffic (inf when nothing is read or written)."""
  return flops / hbm_bytes if hbm_bytes else math.inf


def ridge(chip: Chip) -> float:
  """FLOP per byte a program needs to be compute-bound on `chip`."""
  return chip.peak_bf16_flops / chip.hbm_bytes_per_s


def training(step: Bound, global_batch: int, num_steps: int, chips: int) -> dict:
  """Throughput and cost of `num_steps` steps of `global_batch` images at the bound."""
  s = step.seconds
  hours = num_steps * s / HOUR
  return {'step_seconds': s, 'limited_by': step.limited_by, 'mfu_bound': step.mfu,
          'images_per_second': global_batch / s if s > 0 else math.inf,
          'hours': hours, 'chip_hours': hours * chips}


def sampling(call: Bound, nfe: int, batch: int, num_samples: int) -> dict:
  """Time to generate `num_samples` images in batches of `batch` (global), each batch
  making `nfe` network calls of `call` each."""
  batches = -(-num_samples // batch)
  seconds = batches * nfe * call.seconds
  return {'call_seconds': call.seconds, 'limited_by': call.limited_by, 'nfe': nfe,
          'batch': batch, 'num_samples': num_samples, 'seconds': seconds,
          'images_per_second': num_samples / seconds if seconds > 0 else math.inf}
