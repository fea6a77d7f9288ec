"""Deterministic, resumable batch streams over an in-memory image array.

The stream is a pure function of (seed, position). Two layouts:

- shared (every process holds the whole array): global example k of the stream is image
  perm_e[k mod N] of epoch e = k // N, perm_e a permutation drawn from (seed, e); each
  process takes its own contiguous slice of every global batch. Hosts never read the same
  example twice in a step, and a run resumed on a different number of processes still sees
  exactly the global batches an uninterrupted one would.
- local shard (`local_shard=True`: each process holds only its own part of the dataset, see
  config.data.per_process_read): each process walks its own permutations of its part, drawn
  from (seed, process_index, e), taking local_batch examples per step. The global batch is
  the concatenation, every example is still seen once per epoch of its shard, and resume is
  exact for the same process count.

Random flips are drawn per slot of the global batch from (seed, position), so they do not
depend on the layout either.
"""

import numpy as np

# Stream tags of the random keys. numpy's SeedSequence treats trailing zeros as absent
# ([s, 1] and [s, 1, 0] give the same numbers), so every key has the same length, 4.
_ORDER, _FLIP = 1, 2


class ArrayIterator:
  """Yields uint8 [global_batch // process_count, H, W, C] batches of `images`."""

  def __init__(self, images: np.ndarray, global_batch: int, *, seed: int,
               process_index: int = 0, process_count: int = 1, random_flip: bool = False,
               local_shard: bool = False):
    if global_batch % process_count:
      raise ValueError(f'global batch {global_batch} does not split over '
                       f'{process_count} processes')
    if not len(images):
      raise ValueError('no training images (an empty dataset or an empty process shard)')
    self.images = images
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.process_index = process_index
    self.seed = seed
    self.random_flip = random_flip
    self.local_shard = local_shard
    self.position = 0          # global batches served so far
    self._perm_epoch = -1
    self._perm = None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._perm_epoch:
      stream = self.process_index if self.local_shard else 0
      rng = np.random.default_rng([self.seed, _ORDER, stream, epoch])
      self._perm = rng.permutation(len(self.images))
      self._perm_epoch = epoch
    return self._perm

  def _stream(self, ks: np.ndarray) -> np.ndarray:
    """Array indices of stream elements `ks` (int64 [k], ascending)."""
    n = len(self.images)
    out = np.empty(len(ks), np.int64)
    for epoch in np.unique(ks // n):
      sel = ks // n == epoch
      out[sel] = self._permutation(int(epoch))[ks[sel] % n]
    return out

  def global_indices(self, position: int) -> np.ndarray:
    """Dataset indices of global batch `position` (all processes; shared layout only)."""
    if self.local_shard:
      raise ValueError('a local-shard iterator knows only its own part of the global batch')
    return self._stream(position * self.global_batch + np.arange(self.global_batch))

  def local_indices(self, position: int) -> np.ndarray:
    """Indices into `self.images` of this process's part of global batch `position`."""
    if self.local_shard:
      return self._stream(position * self.local_batch + np.arange(self.local_batch))
    lo = self.process_index * self.local_batch
    return self.global_indices(position)[lo:lo + self.local_batch]

  def __iter__(self):
    return self

  def __next__(self) -> np.ndarray:
    batch = self.images[self.local_indices(self.position)]
    if self.random_flip:
      rng = np.random.default_rng([self.seed, _FLIP, 0, self.position])
      lo = self.process_index * self.local_batch
      flip = rng.random(self.global_batch)[lo:lo + self.local_batch] < 0.5
      batch = np.where(flip[:, None, None, None], batch[:, :, ::-1], batch)
    self.position += 1
    return batch

  def get_state(self) -> dict:
    return {'position': int(self.position)}

  def set_state(self, state: dict) -> None:
    self.position = int(state['position'])
