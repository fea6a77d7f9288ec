"""The training images of `config.data`, their stream and their record.

Each dataset registers one `registry.Dataset` record from its own package or module
(shapes/, digits/, fashion_mnist/, folders.py, tfds_sources.py; data/README.md) whose
`source` returns a `source.Source`: how many examples it has, their ids, how to load a
range of them. This module does the rest for all of them.

`make_train_iterator(config, ...)` returns an iterator of uint8 [local_batch, H, W, C]
batches with `get_state()` / `set_state()` (JSON-serialisable) for exact resume;
`load_train_images(config)` returns the training subset (or one process's part) as uint8;
`describe_dataset(config)` says which images those are, for WORKDIR/dataset.json.

Subset rule (config.data.num_train_examples = N; 0 = all): the first N examples of the
source in its canonical order, the same on every run, device and host whatever the seed:
TFDS's stored order of the training split, the sorted relative paths of an image folder,
the image index of `shapes`. The seed only orders the stream.

Every dataset is held in host memory as uint8 (N x S x S x 3 bytes: 600 MB for CelebA-50K
at 64x64, 150 MB for CIFAR-10, 15.7 GB for ImageNet 64x64). With
config.data.per_process_read each host loads only its contiguous part
[N * i // P, N * (i + 1) // P) of the subset, dividing memory and reading by P.
"""

import hashlib
import logging

import numpy as np

from sparsediff_jax import registry, validation
from sparsediff_jax.data.iterators import ArrayIterator
from sparsediff_jax.data.source import Source
from sparsediff_jax.errors import BadImageError, DatasetUnavailableError

__all__ = ['ArrayIterator', 'BadImageError', 'DatasetUnavailableError',
           'describe_dataset', 'load_train_images', 'make_train_iterator', 'process_range']


def _open_source(config) -> Source:
  """Finds the source of config.data without reading any image."""
  return registry.DATASETS.get(config.data.name).source(config)


def _subset_size(config, source: Source) -> int:
  d = config.data
  n = d.num_train_examples or source.available
  if n is None or n <= 0:
    raise ValueError(f'config.data.num_train_examples={d.num_train_examples}: '
                     f'{d.name} needs a positive number of examples')
  if source.available is not None and n > source.available:
    raise ValueError(f'config.data.num_train_examples={n} but {d.name} has only '
                     f'{source.available} training examples')
  validation.check_host_memory(config, n, source.bytes_per_example,
                               field='data.num_train_examples')
  return n


def process_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """Process i's contiguous part [lo, hi) of n examples; the parts tile [0, n) in order."""
  return n * process_index // process_count, n * (process_index + 1) // process_count


def load_train_images(config, *, process_index: int = 0,
                      process_count: int = 1) -> np.ndarray:
  """The training subset, uint8 [n, S, S, 3] with S = config.data.image_size.

  With process_count > 1, only part `process_range(N, process_index, process_count)`.
  Raises DatasetUnavailableError for an unprepared TFDS dataset, BadImageError for an
  undecodable folder image with on_bad_image='error'.
  """
  source = _open_source(config)
  lo, hi = process_range(_subset_size(config, source), process_index, process_count)
  images = source.load(lo, hi)
  logging.info('%s: loaded examples [%d, %d) as %s uint8 (%.0f MB)', config.data.name,
               lo, hi, images.shape, images.nbytes / 2**20)
  return images


def make_train_iterator(config, *, process_index: int = 0, process_count: int = 1):
  """The training stream of this process; its order follows config.training.seed.

  Yields uint8 [config.training.batch_size // process_count, S, S, 3]. With
  config.data.per_process_read this process loads and serves only its part of the subset.
  """
  local = bool(config.data.per_process_read)
  images = (load_train_images(config, process_index=process_index,
                              process_count=process_count) if local
            else load_train_images(config))
  return ArrayIterator(images, config.training.batch_size, seed=config.training.seed,
                       process_index=process_index, process_count=process_count,
                       random_flip=config.data.random_flip, local_shard=local)


def describe_dataset(config) -> dict:
  """What the run trains on, as JSON-ready data for WORKDIR/dataset.json.

  Reads no image (TFDS metadata or a folder listing only), so every host gets the same
  answer cheaply. `selection_sha256` hashes the ids of the selected examples (TFDS:
  'name/version/split/position'; folders: relative paths; shapes: indices), one per line.
  Folder files that fail to decode under on_bad_image='skip' are named in warnings when
  loading; they are not known here.
  """
  d = config.data
  source = _open_source(config)
  n = _subset_size(config, source)
  of = f' of the {source.available}' if source.available is not None else ''
  digest = hashlib.sha256('\n'.join(source.ids(n)).encode()).hexdigest()
  return {
      'name': d.name,
      **source.facts,
      'split_size': source.available,
      'num_examples': n,
      'subset_rule': f'the first {n}{of} examples in {source.order} order',
      'selection_sha256': digest,
      # What was trained on, beyond names: a source that can change under the same ids
      # (files replaced in a folder) fingerprints their contents.
      'content_sha256': source.fingerprint(n) if source.fingerprint else digest,
      'image_shape': [d.image_size, d.image_size, 3],
      'random_flip': bool(d.random_flip),
      'per_process_read': bool(d.per_process_read),
  }
