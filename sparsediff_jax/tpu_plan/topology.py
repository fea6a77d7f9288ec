"""TPU slices by name: what `--topology` accepts, and each generation's chip figures.

Pure Python (no JAX): `parse('v5e-16')` -> a `Slice` (generation, chips, the topology string
for jax.experimental.topologies.get_topology_desc, hosts). Two spellings are accepted:
- Cloud accelerator types, as `gcloud compute tpus tpu-vm create --accelerator-type` takes
  them: v4-N and v5p-N count TensorCores (two per chip: v4-8 is 4 chips, 2x2x1);
  v5litepod-N / v5e-N and v6e-N count chips;
- the topology form GENERATION:AxB (v5e, v6e: 2D tori) or GENERATION:AxBxC (v4, v5p).
"""

import dataclasses
import math
import re

from sparsediff_jax import errors


@dataclasses.dataclass(frozen=True)
class Chip:
  """One chip of a generation, per chip, from the Cloud TPU documentation."""
  generation: str
  peak_bf16_flops: float     # FLOP/s, dense bf16 matrix multiply.
  hbm_bytes: int             # HBM capacity, bytes.
  hbm_bytes_per_s: float     # HBM bandwidth, bytes/s.
  ici_bytes_per_s: float     # inter-chip interconnect, bytes/s per chip, both directions.
  mxu: int                   # side of the matrix unit's systolic array (padding granularity).
  dims: int                  # dimensions of the interconnect torus (topology string).
  cores_in_name: int         # TensorCores per chip that the Cloud name counts (v4-8: 2).
  chips_per_vm: int          # chips per host VM of a multi-host slice.


GIB = 2**30
# Cloud TPU documentation, per chip (read 2026-12-07):
# - v4: cloud.google.com/tpu/docs/v4 — 275 TFLOP/s bf16, HBM2 32 GiB at 1,200 GB/s, two
#   TensorCores per chip, 3D torus. ICI: 2,400 Gbit/s per chip one way, as the v5p
#   announcement (cloud.google.com/blog, "Introducing Cloud TPU v5p", 2023) compares it
#   with v5p's 4,800, so 600 GB/s both directions.
# - v5p: cloud.google.com/tpu/docs/v5p — 459 TFLOP/s bf16, 95 GiB HBM2e at 2,765 GB/s,
#   1,200 GB/s bidirectional ICI per chip, two TensorCores per chip, 3D torus.
# - v5e: cloud.google.com/tpu/docs/v5e — 197 TFLOP/s bf16, 16 GB HBM2 at 819 GB/s, 400 GB/s
#   bidirectional ICI per chip (1,600 Gbit/s one way), 2D torus, 4 chips per VM when a slice
#   spans hosts.
# - v6e: cloud.google.com/tpu/docs/v6e — 918 TFLOP/s bf16, 32 GB HBM at 1,640 GB/s, 800 GB/s
#   bidirectional ICI per chip, 2D torus, 4 chips per VM when a slice spans hosts.
# HBM "GB" is taken as GiB (what the runtime reports as the chip's memory is close to it).
# The MXU is 128x128 on v4, v5e and v5p and 256x256 on v6e.
CHIPS = {
    'v4': Chip('v4', 275e12, 32 * GIB, 1200e9, 600e9, 128, 3, 2, 4),
    'v5e': Chip('v5e', 197e12, 16 * GIB, 819e9, 400e9, 128, 2, 1, 4),
    'v5p': Chip('v5p', 459e12, 95 * GIB, 2765e9, 1200e9, 128, 3, 2, 4),
    'v6e': Chip('v6e', 918e12, 32 * GIB, 1640e9, 800e9, 256, 2, 1, 4),
}

# Cloud name prefix -> generation. v5litepod is the accelerator type's own name for v5e.
_PREFIXES = {'v4': 'v4', 'v5p': 'v5p', 'v5e': 'v5e', 'v5litepod': 'v5e', 'v6e': 'v6e'}

# The slice shapes each generation's documentation lists, by chip count.
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8),
              128: (8, 16), 256: (16, 16)}
_SHAPES_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4),
              128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16),
              2048: (8, 16, 16)}
SHAPES = {'v4': _SHAPES_3D, 'v5p': _SHAPES_3D, 'v5e': _SHAPES_2D, 'v6e': _SHAPES_2D}


class UnknownTopologyError(errors.ConfigError):
  """A --topology value that names no slice this module knows."""


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU slice: its chips, how they are wired, and how many host VMs drive them."""
  name: str                  # as the user typed it.
  chip: Chip
  shape: tuple[int, ...]     # chips along each torus dimension.

  @property
  def generation(self) -> str:
    return self.chip.generation

  @property
  def chips(self) -> int:
    return math.prod(self.shape)

  @property
  def topology(self) -> str:
    """The name get_topology_desc takes: 'v5e:4x4', 'v4:2x2x1'."""
    return f'{self.generation}:{"x".join(map(str, self.shape))}'

  @property
  def hosts(self) -> int:
    """Host VMs (JAX processes): one up to 8 chips of v5e/v6e (4 of v4/v5p), else one per
    chips_per_vm chips."""
    single = 8 if self.chip.dims == 2 else 4
    return 1 if self.chips <= single else self.chips // self.chip.chips_per_vm

  @property
  def cloud_name(self) -> str:
    """The accelerator type Cloud calls this slice (v4-8 for v4:2x2x1)."""
    return f'{self.generation}-{self.chips * self.chip.cores_in_name}'

  def topology_kwargs(self) -> dict:
    """Extra arguments of get_topology_desc: one TensorCore pair per device on v4/v5p
    (megacore, as JAX runs them), 8 chips on one host for the 8-chip v5e/v6e slices."""
    if self.chip.dims == 3:
      return {'chip_config_name': 'megacore'}
    if self.chips == 8:
      return {'chips_per_host_bounds': (2, 4, 1)}
    return {}


def known_names() -> list[str]:
  """Every Cloud accelerator name parse() accepts, generation by generation."""
  names = []
  for gen, shapes in SHAPES.items():
    names += [f'{gen}-{n * CHIPS[gen].cores_in_name}' for n in shapes]
  return names


def known_names_line() -> str:
  return (f'{", ".join(known_names())} (v5litepod-N = v5e-N), or GEN:AxB for v5e/v6e and '
          'GEN:AxBxC for v4/v5p (e.g. v5e:4x4, v4:2x2x1)')


def _unknown(name: str, why: str = '') -> UnknownTopologyError:
  why = f' ({why})' if why else ''
  return UnknownTopologyError(f'--topology={name!r} is not a known TPU slice{why}; known: '
                              f'{known_names_line()}')


def parse(name: str) -> Slice:
  """The Slice `name` denotes; UnknownTopologyError (one line listing the known names)."""
  text = name.strip().lower()
  if m := re.fullmatch(r'(v\d+[a-z]*|v5litepod):(\d+(?:x\d+)*)', text):
    gen, dims = _PREFIXES.get(m[1]), tuple(int(x) for x in m[2].split('x'))
    if gen is None:
      raise _unknown(name, f'generation {m[1]!r}')
    if len(dims) != CHIPS[gen].dims or min(dims) < 1:
      raise _unknown(name, f'{gen} slices are {CHIPS[gen].dims}D')
    return Slice(name, CHIPS[gen], dims)
  if m := re.fullmatch(r'(v\d+[a-z]*|v5litepod)-(\d+)', text):
    gen = _PREFIXES.get(m[1])
    if gen is None:
      raise _unknown(name, f'generation {m[1]!r}')
    cores, per_chip = int(m[2]), CHIPS[gen].cores_in_name
    shape = SHAPES[gen].get(cores // per_chip) if cores % per_chip == 0 else None
    if shape is None:
      raise _unknown(name)
    return Slice(name, CHIPS[gen], shape)
  raise _unknown(name)
