"""The device mesh and the shardings of the batch and of the training state.

The mesh has two axes over every device of every process: `data` x `fsdp`, with
`fsdp = config.sharding.fsdp` (1 = plain data parallelism). The batch is split over both
axes together. Each floating-point array of the state (parameters, EMA copies, Adam moments)
is split over `fsdp` along its largest dimension that divides evenly and kept whole along
`data`; the rest (step, RNG key, counters) is replicated. jit then gathers parameters where
the network needs them (ZeRO-3 / FSDP) and the results equal data parallelism up to float
rounding.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ('data', 'fsdp')


def make_mesh(config=None) -> Mesh:
  """A (devices // fsdp) x fsdp mesh of all devices; fsdp from config.sharding (default 1)."""
  fsdp = config.sharding.fsdp if config is not None else 1
  n = jax.device_count()
  if fsdp < 1 or n % fsdp:
    raise ValueError(f'config.sharding.fsdp={fsdp} must divide the {n} devices')
  return jax.make_mesh((n // fsdp, fsdp), BATCH_AXES, axis_types=(AxisType.Auto,) * 2)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, stacked: bool = False) -> NamedSharding:
  """Leading (batch) axis split over every device, the rest whole; with `stacked`, the
  batch is the second axis (a leading axis of steps, training.steps_per_call > 1)."""
  return NamedSharding(mesh, P(None, BATCH_AXES) if stacked else P(BATCH_AXES))


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> P:
  """Splits the largest dimension divisible by `fsdp` over the `fsdp` axis (P() if none)."""
  if fsdp > 1:
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
      if shape[dim] % fsdp == 0:
        return P(*[None] * dim, 'fsdp')
  return P()


def state_shardings(abstract_state, mesh: Mesh):
  """Shardings for a pytree of arrays/ShapeDtypeStructs (the training state), leaf by leaf."""
  fsdp = mesh.shape['fsdp']

  def leaf(x):
    spec = fsdp_spec(x.shape, fsdp) if jnp.issubdtype(x.dtype, jnp.floating) else P()
    return NamedSharding(mesh, spec)

  return jax.tree.map(leaf, abstract_state)


def bytes_per_device(tree) -> int:
  """Bytes of the arrays (or sharded ShapeDtypeStructs) in `tree` held by one device."""
  return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
             for x in jax.tree.leaves(tree))


def global_batch(local: np.ndarray, mesh: Mesh, stacked: bool = False) -> jax.Array:
  """Assembles every process's local rows into one global array sharded over the mesh."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh, stacked), local)


def prefetch_to_mesh(iterator, mesh: Mesh, size: int = 2, steps_per_call: int = 1):
  """Yields (global batch on the mesh, iterator state after that batch), `size` ahead.

  The host-to-device copies of the next batches are in flight while the current step runs.
  The state travels with its batch, so a checkpoint records the batches actually consumed,
  not the ones prefetched. With steps_per_call = k > 1 each item stacks k batches
  ([k, batch, ...], for a lax.scan over steps). size = 0 copies each batch when it is asked
  for (no prefetch; for measuring what prefetch buys).
  """
  queue, k = collections.deque(), steps_per_call

  def enqueue(n):
    for _ in range(n):
      local = np.stack([next(iterator) for _ in range(k)]) if k > 1 else next(iterator)
      queue.append((global_batch(local, mesh, stacked=k > 1), iterator.get_state()))

  if size == 0:
    while True:
      enqueue(1)
      yield queue.popleft()

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)
