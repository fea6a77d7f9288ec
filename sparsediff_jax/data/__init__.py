"""Dataset registry.

`make_train_iterator(config, ...)` returns an iterator of uint8 [local_batch, H, W, C]
batches with `get_state()` / `set_state()` (JSON-serialisable) for exact resume;
`load_train_images(config)` returns the whole (subset of the) training set as uint8.
"""

import numpy as np

from sparsediff_jax.data import shapes
from sparsediff_jax.data.iterators import ArrayIterator

DATASETS = ('shapes',)


def load_train_images(config) -> np.ndarray:
  """The training images of `config.data`: uint8 [N, H, W, C]."""
  d = config.data
  if d.name == 'shapes':
    return shapes.make_shapes(d.num_train_examples, d.image_size, d.shapes_pairs,
                              d.shapes_seed)
  raise ValueError(f'unknown dataset {d.name!r}; choose from {DATASETS}')


def make_train_iterator(config, *, process_index: int = 0, process_count: int = 1):
  """The training stream of this process; its order follows config.training.seed."""
  return ArrayIterator(load_train_images(config), config.training.batch_size,
                       seed=config.training.seed, process_index=process_index,
                       process_count=process_count, random_flip=config.data.random_flip)
