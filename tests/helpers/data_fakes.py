"""Shared by the data tests: a private TMPDIR, prepared-looking TFDS metadata, and TFDS
examples whose pixels name their position in the split.

Import this before tensorflow_datasets: TFDS leaves a temporary folder per process, and
this module points TMPDIR at one that is removed at exit.
"""

import atexit
import os
import shutil
import tempfile

TMP = tempfile.mkdtemp(prefix='sparsediff-data-tests-')
os.environ['TMPDIR'] = TMP
tempfile.tempdir = TMP
atexit.register(shutil.rmtree, TMP, True)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from sparsediff_jax import config_base  # noqa: E402
from tests.helpers import tiny  # noqa: E402


def write_metadata(data_dir: str, tfds_name: str, num_train: int) -> None:
  """Makes `tfds_name` look prepared in data_dir: real dataset_info, one train shard of
  num_train examples, no records (tfds.testing.mock_data supplies those)."""
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  builder.info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
      name='train', shard_lengths=[num_train], num_bytes=0, filename_template=None)]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)


def write_cifar10(data_dir: str, images: np.ndarray, shard_size: int) -> None:
  """A really prepared `cifar10` in data_dir: `images` (uint8 [N, 32, 32, 3]) as its train
  split, in TFRecord shards of shard_size examples, read by TFDS's own reader."""
  builder = tfds.builder('cifar10', data_dir=data_dir)
  builder.data_path.mkdir(parents=True, exist_ok=True)
  template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name='cifar10',
                                           split='train', filetype_suffix='tfrecord')
  starts = range(0, len(images), shard_size)
  for shard, start in enumerate(starts):
    path = template.sharded_filepath(shard_index=shard, num_shards=len(starts))
    with tf.io.TFRecordWriter(str(path)) as writer:
      for k in range(start, min(start + shard_size, len(images))):
        writer.write(builder.info.features.serialize_example(
            {'id': f'train_{k}', 'image': images[k], 'label': k % 10}))
  builder.info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
      name='train', num_bytes=0, filename_template=template,
      shard_lengths=[len(images[s:s + shard_size]) for s in starts])]))
  builder.info.write_to_directory(builder.data_path)


def mock_tfds(data_dir: str, num_examples: int = 16, image_fn=None):
  """tfds.testing.mock_data over the metadata in data_dir.

  Without image_fn: TFDS's random examples (JPEG/PNG-encoded as the real records are).
  With image_fn(i) -> uint8 [H, W, 3]: the example at position i of the split is that
  image, PNG-encoded, and slices such as 'train[10:20]' select positions 10..19.
  """
  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del decoders, read_config, shuffle_files
    (part,) = self.info.splits[split].file_instructions  # one shard per split here.
    positions = range(part.skip, part.skip + part.take)
    images = [tf.io.encode_png(image_fn(i)).numpy() for i in positions]
    return tf.data.Dataset.from_tensor_slices({'image': images})

  return tfds.testing.mock_data(num_examples=num_examples, data_dir=data_dir,
                                policy=tfds.testing.MockPolicy.USE_FILES,
                                as_dataset_fn=as_dataset if image_fn else None)


def index_image(i: int, height: int = 218, width: int = 178) -> np.ndarray:
  """A constant image coding i (< 65536) as R = i % 256, G = i // 256 (survives resizing)."""
  return np.broadcast_to(np.array([i % 256, i // 256, 7], np.uint8),
                         (height, width, 3)).copy()


def decode_index(images: np.ndarray) -> np.ndarray:
  """The i of each index_image in uint8 [N, H, W, 3]: int64 [N]."""
  corner = images[:, 0, 0].astype(np.int64)
  return corner[:, 0] + 256 * corner[:, 1]


def make_config(name: str, batch_size: int = 8, **data):
  """The tiny config (tiny.py) with data.name = name and the `data` fields overridden. The
  data fields tiny.TINY shrinks keep their config_base values unless given: these tests
  read datasets at their own sizes."""
  defaults = config_base.get_config().data
  kept = {key: defaults[key.split('.')[1]] for key in tiny.TINY if key.startswith('data.')}
  return tiny.tiny_config({**kept, 'data.name': name, 'training.batch_size': batch_size,
                           **{f'data.{key}': value for key, value in data.items()}})
