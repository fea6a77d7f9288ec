"""Deterministic, resumable batch streams over an in-memory image array.

The stream is a pure function of (seed, position): global example k of the stream is
image perm_e[k mod N] of epoch e = k // N, where perm_e is a permutation drawn from
(seed, e). Each process takes its own contiguous slice of every global batch, so hosts
never read the same example twice in a step and a resumed run (restored `position`)
sees exactly the images an uninterrupted one would.
"""

import numpy as np


class ArrayIterator:
  """Yields uint8 [global_batch // process_count, H, W, C] batches of `images`."""

  def __init__(self, images: np.ndarray, global_batch: int, *, seed: int,
               process_index: int = 0, process_count: int = 1, random_flip: bool = False):
    if global_batch % process_count:
      raise ValueError(f'global batch {global_batch} does not split over '
                       f'{process_count} processes')
    self.images = images
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self.process_index = process_index
    self.seed = seed
    self.random_flip = random_flip
    self.position = 0          # global batches served so far
    self._perm_epoch = -1
    self._perm = None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._perm_epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))
      self._perm_epoch = epoch
    return self._perm

  def global_indices(self, position: int) -> np.ndarray:
    """Dataset indices of global batch `position` (all processes)."""
    n = len(self.images)
    ks = position * self.global_batch + np.arange(self.global_batch)
    out = np.empty(self.global_batch, np.int64)
    for epoch in np.unique(ks // n):
      sel = ks // n == epoch
      out[sel] = self._permutation(int(epoch))[ks[sel] % n]
    return out

  def __iter__(self):
    return self

  def __next__(self) -> np.ndarray:
    lo = self.process_index * self.local_batch
    idx = self.global_indices(self.position)[lo:lo + self.local_batch]
    batch = self.images[idx]
    if self.random_flip:
      flip = np.random.default_rng([self.seed, 1, self.position]).random(self.global_batch)
      flip = flip[lo:lo + self.local_batch] < 0.5
      batch = np.where(flip[:, None, None, None], batch[:, :, ::-1], batch)
    self.position += 1
    return batch

  def get_state(self) -> dict:
    return {'position': int(self.position)}

  def set_state(self, state: dict) -> None:
    self.position = int(state['position'])
