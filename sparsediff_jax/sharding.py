"""One device mesh and the shardings the training step uses.

The mesh has a single `data` axis over every device of every process: the batch is split
along it and parameters are replicated (plain data parallelism, compiled by jit; no pmap).
"""

import collections

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest whole."""
  return NamedSharding(mesh, P('data'))


def global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
  """Assembles every process's local rows into one global array sharded over `data`."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local)


def prefetch_to_mesh(iterator, mesh: Mesh, size: int = 2):
  """Yields (global batch on the mesh, iterator state after that batch), `size` ahead.

  The host-to-device copies of the next batches are in flight while the current step runs.
  The state travels with its batch, so a checkpoint records the batches actually consumed,
  not the ones prefetched.
  """
  queue = collections.deque()

  def enqueue(n):
    for _ in range(n):
      local = next(iterator)
      queue.append((global_batch(local, mesh), iterator.get_state()))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)
