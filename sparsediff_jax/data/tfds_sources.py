"""Training images from TensorFlow Datasets, read once into uint8 host memory.

A dataset is used only when it is already prepared under `config.data.data_dir`: by
default nothing is downloaded, so a machine without network (or CelebA past its Google
Drive quota) fails at once with `DatasetUnavailableError` instead of hanging on retries.
Examples are addressed by their position in the split's canonical order (the order TFDS
wrote them in; files are read in order, one at a time), so `[lo, hi)` names the same
images on every run, device and host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib

import numpy as np
from absl import logging as absl_logging

from sparsediff_jax import errors, registry
from sparsediff_jax.data.preprocess import crop_and_resize, describe_resize, tensorflow
from sparsediff_jax.data.source import Source


def _tfds():
  """tensorflow_datasets, imported when a dataset is opened: registering the datasets (and
  checking a config) imports no TensorFlow. TF only decodes and resizes here: `tensorflow()`
  keeps it off any GPU so it takes no accelerator memory from JAX."""
  tensorflow()
  return importlib.import_module('tensorflow_datasets')


# A TFDS dataset is not prepared in data_dir and was not (or could not be) downloaded.
DatasetUnavailableError = errors.DatasetUnavailableError


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  tfds_name: str               # name (with config) as tfds.builder takes it.
  default_crop_size: int = 0   # crop side when config.data.crop_size is 0 (0: shorter side).
  how_to_prepare: str = ''     # extra hint for DatasetUnavailableError.
  split: str = 'train'


_CELEBA_FILES = ('img_align_celeba.zip, list_eval_partition.txt, list_attr_celeba.txt, '
                 'list_landmarks_align_celeba.txt, identity_CelebA.txt')

SOURCES = {
    # 140 px central crop: the published CelebA-64 recipe (see preprocess.py).
    'celeba': TfdsSource('celeb_a', default_crop_size=140, how_to_prepare=(
        f'; if Google Drive refuses the download, put {_CELEBA_FILES} in a folder and add '
        '--manual_dir=FOLDER (or set config.data.manual_dir)')),
    'cifar10': TfdsSource('cifar10'),
    'imagenet32': TfdsSource('imagenet_resized/32x32', how_to_prepare=(
        '; if image-net.org asks for a login, download Imagenet32_train_npz.zip and '
        'Imagenet32_val_npz.zip from it into a folder and add --manual_dir=FOLDER')),
    'imagenet64': TfdsSource('imagenet_resized/64x64', how_to_prepare=(
        '; if image-net.org asks for a login, download Imagenet64_train_part1_npz.zip, '
        'Imagenet64_train_part2_npz.zip and Imagenet64_val_npz.zip from it into a folder '
        'and add --manual_dir=FOLDER')),
    'lsun_bedroom': TfdsSource('lsun/bedroom', how_to_prepare=(
        '; building it reads LMDB files and needs `pip install tensorflow-io`')),
}


def _folder_exists(record) -> bool:
  """False for TFDS's 'Variant folder X has no dataset_info.json' where X does not exist (a
  version never prepared there, which DatasetUnavailableError explains), else True."""
  if not str(record.msg).startswith('Variant folder') or not record.args:
    return True
  try:
    return bool(record.args[0].exists())
  except Exception:   # not a path: keep the warning
    return True


@contextlib.contextmanager
def _no_warnings_about_absent_folders():
  logger = absl_logging.get_absl_logger()
  logger.addFilter(_folder_exists)
  try:
    yield
  finally:
    logger.removeFilter(_folder_exists)


def prepared_builder(name: str, data_config) -> tfds.core.DatasetBuilder:
  """The TFDS builder of dataset `name`, prepared (downloading only if config.data.download).

  Raises DatasetUnavailableError when the data is missing and cannot be made.
  """
  tfds, source = _tfds(), SOURCES[name]
  with _no_warnings_about_absent_folders():
    builder = tfds.builder(source.tfds_name, data_dir=data_config.data_dir or None)
    if builder.is_prepared():
      return builder
  flag_dir = f' --data_dir={data_config.data_dir}' if data_config.data_dir else ''
  where = (f"TFDS dataset '{source.tfds_name}' {builder.version} (config.data.name="
           f"'{name}') is not prepared in {builder.data_dir_root}")
  prepare = (f'prepare it with `tfds build {source.tfds_name}{flag_dir}`'
             f'{source.how_to_prepare}')
  if not data_config.download:
    raise DatasetUnavailableError(
        f'{where}; {prepare}, or set config.data.download=True to download it now')
  download_config = tfds.download.DownloadConfig(manual_dir=data_config.manual_dir or None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except ImportError as err:   # a package TFDS needs to build it (importlib_resources, ...)
    raise DatasetUnavailableError(
        f'{where} and downloading it needs the package {err.name or err}, not installed: '
        f'pip install {err.name or "it"} (the [tf] extra brings it: pip install -e '
        "'.[tf]'); or " + prepare) from err
  except Exception as err:  # network, quota, checksum, missing reader package, ...
    detail = ' '.join(str(err).split())   # TFDS errors span lines; the message is one.
    raise DatasetUnavailableError(f'{where} and downloading it failed '
                                  f'({type(err).__name__}: {detail}); {prepare}') from err
  return builder


def crop_size(name: str, data_config) -> int:
  """Side of the central crop for dataset `name` (0: the shorter image side)."""
  return data_config.crop_size or SOURCES[name].default_crop_size


def split_size(builder: tfds.core.DatasetBuilder, name: str) -> int:
  """Number of examples in the training split of a prepared dataset."""
  return builder.info.splits[SOURCES[name].split].num_examples


def preprocess_fn(name: str, data_config):
  """The per-record work of dataset `name`: encoded image bytes -> uint8 [S, S, 3] tensor.

  TFDS's own decoding is skipped (see load_range): decode_image(channels=3) also turns any
  grayscale or RGBA record into RGB.
  """
  tf = tensorflow()
  size, crop, side = data_config.image_size, data_config.crop, crop_size(name, data_config)

  def fn(encoded: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return crop_and_resize(image, size, crop, side)
  return fn


def load_range(builder: tfds.core.DatasetBuilder, name: str, lo: int, hi: int,
               data_config, *, batch: int = 256) -> np.ndarray:
  """Examples [lo, hi) of the training split, cropped and resized: uint8 [hi - lo, S, S, 3].

  Decoding, cropping and resizing run in parallel tf.data threads; the result is written
  into one preallocated array, so peak memory is the output plus a few batches.
  """
  tf, tfds, source = tensorflow(), _tfds(), SOURCES[name]
  ds = builder.as_dataset(split=f'{source.split}[{lo}:{hi}]', shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(interleave_cycle_length=1))
  preprocess = preprocess_fn(name, data_config)
  options = tf.data.Options()
  options.deterministic = True
  ds = (ds.map(lambda example: preprocess(example['image']),
               num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch).with_options(options).prefetch(2))
  size = data_config.image_size
  out = np.empty((hi - lo, size, size, 3), np.uint8)
  filled = 0
  for images in tfds.as_numpy(ds):
    take = min(len(images), hi - lo - filled)
    out[filled:filled + take] = images[:take]
    filled += take
    if filled == hi - lo:
      break
  if filled < hi - lo:
    raise ValueError(f'{source.tfds_name} split {source.split}[{lo}:{hi}] gave only {filled} '
                     f'examples; the prepared data in {builder.data_dir} looks incomplete')
  return out


def open_tfds(config) -> Source:
  """A prepared TFDS dataset's training split, in its stored order."""
  d = config.data
  builder = prepared_builder(d.name, d)
  source = SOURCES[d.name]
  prefix = f'{source.tfds_name}/{builder.version}/{source.split}/'
  return Source(
      available=split_size(builder, d.name), order='TFDS canonical (stored)',
      ids=lambda n: [f'{prefix}{i}' for i in range(n)],
      load=lambda lo, hi: load_range(builder, d.name, lo, hi, d),
      facts={'source': f'tfds {source.tfds_name} {builder.version}', 'split': source.split,
             'preprocessing': describe_resize(d, crop_size(d.name, d))})


for _name in SOURCES:   # images only: no fresh images, no metrics of their own.
  registry.DATASETS.add(_name, registry.Dataset(source=open_tfds))
