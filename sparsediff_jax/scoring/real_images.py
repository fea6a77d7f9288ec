"""The training images as mesh batches for Inception features (metrics/fid/features.collect).

`real_image_batches` streams the training subset of config.data with every batch the same
shape: each host reads only its own contiguous part, the last batch is padded, and padding
rows carry index -1.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from sparsediff_jax.runtime import sharding


def real_image_batches(config, mesh, batch_size: int):
  """(iterator of (uint8 images [batch_size, S, S, 3] on the mesh, global indices), N).

  The training subset of config.data (data.load_train_images); each host loads only its
  contiguous part and contributes batch_size / process_count rows to every batch.
  """
  from sparsediff_jax import data   # imports TFDS; only needed here
  pi, pc = jax.process_index(), jax.process_count()
  local = data.load_train_images(config, process_index=pi, process_count=pc)
  counts = np.asarray(multihost_utils.process_allgather(np.int64(len(local)))).reshape(-1)
  total, first = int(counts.sum()), int(counts[:pi].sum())
  local_batch = batch_size // pc
  num_batches = -(-int(counts.max()) // local_batch)

  def batches():
    bar = tqdm(total=total, desc='reference features', unit='img', disable=pi != 0,
               dynamic_ncols=True)
    for b in range(num_batches):
      rows = local[b * local_batch:(b + 1) * local_batch]
      index = np.full(local_batch, -1, np.int64)
      index[:len(rows)] = first + b * local_batch + np.arange(len(rows))
      padded = np.zeros((local_batch,) + local.shape[1:], np.uint8)
      padded[:len(rows)] = rows
      indices = np.asarray(multihost_utils.process_allgather(index, tiled=True))
      yield sharding.global_batch(padded, mesh), indices
      bar.update(int(np.sum(indices >= 0)))
    bar.close()

  return batches(), total
