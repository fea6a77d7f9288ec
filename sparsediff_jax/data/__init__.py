"""Dataset registry: the training images of `config.data`, their stream and their record.

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

import dataclasses
import hashlib
import logging
from typing import Callable
import warnings

import numpy as np

from sparsediff_jax.data import folders, shapes, tfds_sources
from sparsediff_jax.data.folders import BadImageError
from sparsediff_jax.data.iterators import ArrayIterator
from sparsediff_jax.data.tfds_sources import DatasetUnavailableError

DATASETS = ('shapes', *tfds_sources.SOURCES, 'folder')

__all__ = ['DATASETS', 'ArrayIterator', 'BadImageError', 'DatasetUnavailableError',
           'describe_dataset', 'load_train_images', 'make_train_iterator', 'process_range']


@dataclasses.dataclass(frozen=True)
class _Source:
  available: int | None                        # examples in the source (None: unbounded).
  order: str                                   # its canonical order, in words.
  ids: Callable[[int], list[str]]              # ids of its first n examples.
  load: Callable[[int, int], np.ndarray]       # uint8 images of examples [lo, hi).
  facts: dict                                  # source-specific part of describe_dataset.


def _open_source(config) -> _Source:
  """Finds the source of config.data without reading any image."""
  d = config.data
  if d.name not in DATASETS:
    raise ValueError(f'unknown dataset config.data.name={d.name!r}; choose from {DATASETS}')
  if d.num_channels != 3:
    raise ValueError(f'config.data.num_channels={d.num_channels}: every dataset here is RGB')
  if d.name == 'shapes':
    return _Source(
        available=None, order='image-index',
        ids=lambda n: [str(i) for i in range(n)],
        load=lambda lo, hi: shapes.make_shapes(hi - lo, d.image_size, d.shapes_pairs,
                                               d.shapes_seed, start=lo),
        facts={'source': f'procedural shapes (shapes_seed={d.shapes_seed}, '
                         f'shapes_pairs={d.shapes_pairs})', 'split': 'all',
               'preprocessing': f'drawn at {d.image_size}x{d.image_size}'})
  if d.name == 'folder':
    names = folders.list_images(d.folder)
    return _Source(
        available=len(names), order='relative-path',
        ids=lambda n: names[:n],
        load=lambda lo, hi: _load_folder(d, names[lo:hi]),
        facts={'source': f'image folder {d.folder}', 'split': 'all files',
               'preprocessing': 'RGB by the rule of data/folders.py, '
                                + _resize_text(d, d.crop_size),
               'on_bad_image': d.on_bad_image})
  builder = tfds_sources.prepared_builder(d.name, d)
  source = tfds_sources.SOURCES[d.name]
  prefix = f'{source.tfds_name}/{builder.version}/{source.split}/'
  return _Source(
      available=tfds_sources.split_size(builder, d.name), order='TFDS canonical (stored)',
      ids=lambda n: [f'{prefix}{i}' for i in range(n)],
      load=lambda lo, hi: tfds_sources.load_range(builder, d.name, lo, hi, d),
      facts={'source': f'tfds {source.tfds_name} {builder.version}', 'split': source.split,
             'preprocessing': _resize_text(d, tfds_sources.crop_size(d.name, d))})


def _resize_text(d, crop_size: int) -> str:
  crop = (f'central {crop_size or "shorter-side"} px square crop' if d.crop == 'center'
          else 'no crop')
  return (f'{crop}, tf.image.resize bilinear antialias to {d.image_size}x{d.image_size}, '
          'rounded to uint8')


def _load_folder(d, names: list[str]) -> np.ndarray:
  images, bad = folders.load_images(d.folder, names, d)
  if bad:
    warnings.warn(f'{len(bad)} of {len(names)} image files in {d.folder} could not be '
                  f'decoded and were skipped; {len(images)} images remain')
  if not len(images):
    raise BadImageError(f'none of the {len(names)} selected files in {d.folder} decoded')
  return images


def _subset_size(d, source: _Source) -> int:
  n = d.num_train_examples or source.available
  if n is None or n <= 0:
    raise ValueError(f'config.data.num_train_examples={d.num_train_examples}: '
                     f'{d.name} needs a positive number of examples')
  if source.available is not None and n > source.available:
    raise ValueError(f'config.data.num_train_examples={n} but {d.name} has only '
                     f'{source.available} training examples')
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
  lo, hi = process_range(_subset_size(config.data, source), process_index, process_count)
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
  n = _subset_size(d, source)
  of = f' of the {source.available}' if source.available is not None else ''
  digest = hashlib.sha256('\n'.join(source.ids(n)).encode()).hexdigest()
  return {
      'name': d.name,
      **source.facts,
      'split_size': source.available,
      'num_examples': n,
      'subset_rule': f'the first {n}{of} examples in {source.order} order',
      'selection_sha256': digest,
      'image_shape': [d.image_size, d.image_size, 3],
      'random_flip': bool(d.random_flip),
      'per_process_read': bool(d.per_process_read),
  }
