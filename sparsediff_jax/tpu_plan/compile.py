"""Compiling the config's train step, sampler and one network call for a TPU slice, here.

libtpu (`pip install -e '.[tpu]'`) compiles for a slice it is not running on:
jax.experimental.topologies.get_topology_desc gives the slice's devices without the
hardware, and a function lowered on ShapeDtypeStructs sharded over a Mesh of them compiles
into the real TPU executable, whose memory analysis, cost analysis and HLO are read here.
The mesh is the training mesh (runtime/sharding.py): data x fsdp over every chip of every
host.
"""

import importlib.util
import os

from sparsediff_jax import errors

INSTALL = "pip install -e '.[tpu]'"


def prepare_environment() -> None:
  """Environment libtpu reads when it loads, set before JAX starts its backends: no query of
  the GCE metadata server (there is none off a TPU VM), and loading beside another process
  that loaded it (its lock file is per machine)."""
  os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')


def require_libtpu() -> None:
  """errors.ConfigError (one line: how to install it) unless libtpu is importable."""
  if importlib.util.find_spec('libtpu') is None:
    raise errors.ConfigError(f'--mode=plan compiles for TPUs with libtpu, which is not '
                             f'installed; install it with {INSTALL}')


def slice_devices(tpu_slice):
  """The compile-only devices of `tpu_slice` (topology.Slice)."""
  prepare_environment()
  from jax.experimental import topologies
  return topologies.get_topology_desc(topology_name=tpu_slice.topology, platform='tpu',
                                      **tpu_slice.topology_kwargs()).devices


def make_mesh(devices, fsdp: int):
  """runtime/sharding.py's data x fsdp mesh over `devices`, laid out on the torus."""
  import numpy as np
  from jax.experimental import mesh_utils
  from jax.sharding import AxisType, Mesh
  from sparsediff_jax.runtime import sharding
  n = len(devices)
  if fsdp < 1 or n % fsdp:
    raise errors.ConfigError(f'config.sharding.fsdp={fsdp} must divide the slice\'s {n} chips')
  try:   # the axes laid along the torus's physical links
    grid = mesh_utils.create_device_mesh((n // fsdp, fsdp), list(devices))
  except (ValueError, NotImplementedError, AssertionError):   # a shape it cannot lay out
    grid = np.array(devices).reshape(n // fsdp, fsdp)
  return Mesh(grid, sharding.BATCH_AXES, axis_types=(AxisType.Auto,) * 2)


def measure(compiled, chips: int) -> dict:
  """Per-chip memory, cost and collectives of a compiled executable."""
  from sparsediff_jax.runtime import memory_check
  from sparsediff_jax.tpu_plan import collectives
  sizes = memory_check.compiled_bytes(compiled)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {'memory': {**sizes, 'need': memory_check.compiled_need(sizes)},
          'flops': float(cost.get('flops', 0.0)),
          'hbm_bytes': float(cost.get('bytes accessed', 0.0)),
          'collectives': collectives.summarize(collectives.parse(compiled.as_text(), chips))}


def check_batch(batch: int, chips: int, what: str) -> None:
  if batch % chips:
    raise errors.ConfigError(f'{what}={batch} must be a multiple of the slice\'s {chips} chips '
                             'to split over them')


def train_step(config, mesh) -> tuple[dict, dict]:
  """(measure() of the compiled train step, per-chip bytes of the state by part)."""
  import jax
  import jax.numpy as jnp
  from sparsediff_jax import train_step as ts
  from sparsediff_jax.runtime import sharding
  from sparsediff_jax import train_state as state
  t, d = config.training, config.data
  check_batch(t.batch_size, mesh.devices.size, 'config.training.batch_size')
  tx, schedule = state.make_optimizer(config)
  graphdef, _ = state.abstract_model(config)
  target = state.abstract_state(config, tx, mesh)
  k = t.steps_per_call
  shape = (t.batch_size, d.image_size, d.image_size, 3)
  batch = jax.ShapeDtypeStruct((k, *shape) if k > 1 else shape, jnp.uint8,
                               sharding=sharding.batch_sharding(mesh, stacked=k > 1))
  step = ts.compile_train_step(config, graphdef, tx, schedule, mesh)
  measured = measure(step.lower(target, batch).compile(), mesh.devices.size)
  parts = {name: sharding.bytes_per_device(getattr(target, name))
           for name in ('params', 'ema', 'opt_state')}
  return measured, parts


def sampling_batch(config, chips: int) -> int:
  """The global batch --mode=sample and eval generate in: eval.batch_size rounded up to
  the chips."""
  return -(-config.eval.batch_size // chips) * chips


def sampler(config, mesh) -> dict:
  """measure() of the compiled sampler (its whole loop: memory and collectives; its cost
  analysis counts the loop body once, so `network_call` gives the cost per NFE)."""
  from sparsediff_jax import generate
  from sparsediff_jax import train_state as state
  tx, _ = state.make_optimizer(config)
  graphdef, _ = state.abstract_model(config)
  params = state.inference_params(config, state.abstract_state(config, tx, mesh))
  batch = sampling_batch(config, mesh.devices.size)
  lowered = generate.make_batch_sampler(config, graphdef, mesh).lower(params, batch)
  return measure(lowered.compile(), mesh.devices.size)


def network_call(config, mesh) -> dict:
  """measure() of one network evaluation on a sampling batch: one NFE of the sampler."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from sparsediff_jax.images import CHANNELS
  from sparsediff_jax.runtime import sharding
  from sparsediff_jax import train_state as state
  tx, _ = state.make_optimizer(config)
  graphdef, _ = state.abstract_model(config)
  params = state.inference_params(config, state.abstract_state(config, tx, mesh))
  batch, size = sampling_batch(config, mesh.devices.size), config.data.image_size
  rows = sharding.batch_sharding(mesh)
  x = jax.ShapeDtypeStruct((batch, size, size, CHANNELS), jnp.float32, sharding=rows)
  level = jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=rows)
  call = jax.jit(lambda p, x, c: nnx.merge(graphdef, p)(x, c))
  return measure(call.lower(params, x, level).compile(), mesh.devices.size)
