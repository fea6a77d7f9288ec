"""Fashion-MNIST and MNIST: 28x28 grayscale images in the IDX format, read offline.

Both datasets ship as the same four IDX files (`train-images-idx3-ubyte`,
`train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, gzipped
or not), so one reader serves `data.name='fashion_mnist'` and `'mnist'`.

Where the images come from (`config.data.source`):

* 'files' (default): the IDX files in `config.data.data_dir`, by default the folder the
  Debian package puts them in (`apt-get install dataset-fashion-mnist` installs
  /usr/share/datasets/fashion-mnist/; MNIST has no such package: put its four files in a
  folder and name it). Missing files, or a truncated or malformed file (wrong magic
  number, sizes that do not match), are one `error:` line and exit code 2.
* 'tfds': TensorFlow Datasets' `fashion_mnist` / `mnist`, prepared in data.data_dir (or
  downloaded when data.download=True), in TFDS's stored order.

Splits: the official ones, `train` (60,000 images: the training set and what the domain
classifier learns from) and `test` (10,000: the classifier's accuracy check, the reference
of the classifier metrics and the fresh images of the memorization floor).

Preprocessing: the 28x28 uint8 image resized to data.image_size with PIL's bilinear filter
(antialiased when shrinking; 28 is the image itself), gray repeated to RGB
(`digits.resize`).

Training subset (data.num_train_examples = n; 0 = all): the first n images of the train
split in its stored order, or with data.class_balanced=True the first n // 10 images of each
class (the first n % 10 classes one more), kept in stored order. The content fingerprint of
dataset.json hashes those images' stored pixels and labels, so a resume notices changed files.
"""

import dataclasses
import functools
import gzip
import hashlib
import os
import zlib

import numpy as np

from sparsediff_jax import errors
from sparsediff_jax.data.digits.source import resize
from sparsediff_jax.data.source import Source

SPLITS = ('train', 'test')
FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
SOURCES = ('files', 'tfds')
NATIVE_SIZE = 28
MIN_SIZE = 8               # smaller images lose the garments' outlines.
NUM_CLASSES = 10
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049   # big-endian: 0, 0, type 0x08 (uint8), dimensions.


@dataclasses.dataclass(frozen=True)
class IdxDataset:
  title: str
  default_dir: str          # data.data_dir when it is '' and data.source='files'.
  install: str              # how to get the files, in words.
  tfds_name: str
  class_names: tuple[str, ...]


DATASETS = {
    'fashion_mnist': IdxDataset(
        'Fashion-MNIST', '/usr/share/datasets/fashion-mnist',
        'install them with `apt-get install dataset-fashion-mnist`', 'fashion_mnist',
        ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
         'Sneaker', 'Bag', 'Ankle boot')),
    'mnist': IdxDataset(
        'MNIST', '/usr/share/datasets/mnist',
        'put the four MNIST IDX files there (Debian has no package for them)', 'mnist',
        tuple(str(i) for i in range(10))),
}


class IdxFormatError(errors.UserError, ValueError):
  """An IDX file that is truncated or not what its name says."""


def parse_idx(data: bytes, path: str, magic: int) -> np.ndarray:
  """The uint8 array of one IDX file's bytes; IdxFormatError naming `path` if malformed."""
  if len(data) < 8:
    raise IdxFormatError(f'{path}: {len(data)} bytes, too short for an IDX header')
  found = int.from_bytes(data[:4], 'big')
  if found != magic:
    raise IdxFormatError(f'{path}: magic number {found}, expected {magic} (an IDX '
                         f'{"image" if magic == IMAGE_MAGIC else "label"} file of uint8)')
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(data) < header:
    raise IdxFormatError(f'{path}: {len(data)} bytes, too short for its {header}-byte header')
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
  expected = header + int(np.prod(dims))
  if len(data) != expected:
    raise IdxFormatError(f'{path}: {len(data)} bytes, but its header says {"x".join(map(str, dims))} '
                         f'values ({expected} bytes): truncated or damaged')
  return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _file(folder: str, stem: str) -> str | None:
  """The path of `stem` (gzipped or not) in folder; None when neither name is there.
  IdxFormatError when a name is there but is no readable file (a folder, a link loop)."""
  for name in (stem + '.gz', stem):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
    if os.path.lexists(path):
      raise IdxFormatError(f'{path}: not a readable file ({_not_a_file(path)})')
  return None


def _not_a_file(path: str) -> str:
  """Why an existing name is not a file that can be read: os.stat's error (a link loop, a
  dangling link), a folder, or something else."""
  return _stat_error(path) or ('a folder' if os.path.isdir(path) else 'not a regular file')


def _stat_error(path: str) -> str | None:
  """os.stat's reason when `path` exists as a name but cannot be followed (a link loop)."""
  try:
    os.stat(path)
  except OSError as err:
    return err.strerror if os.path.lexists(path) else None
  return None


def _read(path: str) -> bytes:
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rb') as f:
        return f.read()
    with open(path, 'rb') as f:
      return f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as err:
    raise IdxFormatError(f'{path}: not a complete gzip file ({err})') from err
  except OSError as err:
    raise IdxFormatError(f'{path}: cannot be read ({err.strerror or err})') from err


def folder_of(name: str, data_dir: str) -> str:
  return data_dir or DATASETS[name].default_dir


def _check_files(name: str, folder: str) -> dict[str, str]:
  """{stem: path} of the four files; DatasetUnavailableError naming what is missing, or
  that config.data.data_dir is a file or a path that cannot be followed."""
  if os.path.isfile(folder):
    raise errors.DatasetUnavailableError(
        f'config.data.data_dir={folder!r} is a file, not the folder of the four IDX files '
        f'of {DATASETS[name].title}; point it at their folder')
  if reason := _stat_error(folder):
    raise errors.DatasetUnavailableError(
        f'config.data.data_dir={folder!r} cannot be opened ({reason}, e.g. a symbolic link '
        'loop); point it at the folder of the four IDX files')
  found = {stem: _file(folder, stem) for pair in FILES.values() for stem in pair}
  missing = [stem for stem, path in found.items() if path is None]
  if missing:
    ds = DATASETS[name]
    raise errors.DatasetUnavailableError(
        f'{ds.title} (config.data.name={name!r}) not found in {folder} '
        f'(config.data.data_dir): missing {", ".join(m + "[.gz]" for m in missing)}; '
        f'{ds.install}, or set config.data.source=\'tfds\' to read TFDS '
        f'\'{ds.tfds_name}\' (with config.data.download=True where there is internet)')
  return found


@functools.lru_cache(maxsize=4)
def _files_split(name: str, folder: str, split: str, stamp) -> tuple[np.ndarray, np.ndarray]:
  del stamp   # part of the cache key only: a replaced file is read again.
  found = _check_files(name, folder)
  image_stem, label_stem = FILES[split]
  images = parse_idx(_read(found[image_stem]), found[image_stem], IMAGE_MAGIC)
  labels = parse_idx(_read(found[label_stem]), found[label_stem], LABEL_MAGIC)
  if len(images) != len(labels):
    raise IdxFormatError(f'{found[image_stem]} holds {len(images)} images but '
                         f'{found[label_stem]} {len(labels)} labels')
  if images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE) or (labels >= NUM_CLASSES).any():
    raise IdxFormatError(f'{found[image_stem]}: images of {images.shape[1:]} with labels up '
                         f'to {labels.max()}; expected 28x28 images with labels 0..9')
  return images, labels.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _tfds_split(name: str, data_dir: str, split: str, download: bool):
  import tensorflow_datasets as tfds
  tfds_name = DATASETS[name].tfds_name
  builder = tfds.builder(tfds_name, data_dir=data_dir or None)
  if not builder.is_prepared():
    if not download:
      raise errors.DatasetUnavailableError(
          f"TFDS dataset '{tfds_name}' (config.data.name={name!r}) is not prepared in "
          f'{builder.data_dir_root}; prepare it with `tfds build {tfds_name}`, set '
          "config.data.download=True, or use config.data.source='files'")
    builder.download_and_prepare()
  data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
  return (np.asarray(data['image'], np.uint8).reshape(-1, NATIVE_SIZE, NATIVE_SIZE),
          np.asarray(data['label'], np.int64))


def native_split(data_config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [N, 28, 28], int64 labels [N]) of one official split of config.data's dataset.

  Cached in memory and read-only.
  """
  d = data_config
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; choose from {SPLITS}')
  if d.source == 'tfds':
    images, labels = _tfds_split(d.name, d.data_dir, split, bool(d.download))
  else:
    folder = folder_of(d.name, d.data_dir)
    stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) if p else None
                   for p in (_file(folder, s) for s in FILES[split]))
    images, labels = _files_split(d.name, folder, split, stamps)
  images.flags.writeable = labels.flags.writeable = False
  return images, labels


def load_split(data_config, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """One official split at image_size: (uint8 [N, S, S, 3], int64 labels [N])."""
  images, labels = native_split(data_config, split)
  return resize(images, image_size), labels


def selection(labels: np.ndarray, n: int, balanced: bool) -> np.ndarray:
  """Indices (ascending) of the training subset of n examples: the first n, or with
  `balanced` the first n // 10 of each class (the first n % 10 classes one more)."""
  if n > len(labels):
    raise ValueError(f'config.data.num_train_examples={n} but the train split has only '
                     f'{len(labels)} examples')
  if not balanced:
    return np.arange(n)
  chosen = []
  for c in range(NUM_CLASSES):
    want = n // NUM_CLASSES + (c < n % NUM_CLASSES)
    of_class = np.flatnonzero(labels == c)[:want]
    if len(of_class) < want:
      raise ValueError(f'config.data.class_balanced=True needs {want} examples of class {c} '
                       f'but the train split has {len(of_class)}')
    chosen.append(of_class)
  return np.sort(np.concatenate(chosen))


def check_fields(config) -> None:
  size = config.data.image_size
  if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
    raise errors.ConfigError(f'config.data.image_size={size} is invalid: {config.data.name} '
                             f'is stored at 28x28 and needs image_size >= {MIN_SIZE}')


def open_idx(config) -> Source:
  """The train split (or its class-balanced subset) of config.data as a dataset Source."""
  d = config.data
  check_fields(config)
  images, labels = native_split(d, 'train')
  sel = selection(labels, d.num_train_examples or len(labels), bool(d.class_balanced))
  where = (f'tfds {DATASETS[d.name].tfds_name}' if d.source == 'tfds'
           else f'IDX files in {folder_of(d.name, d.data_dir)}')

  def fingerprint(n: int) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images[sel[:n]]).tobytes())
    h.update(labels[sel[:n]].tobytes())
    return h.hexdigest()

  order = ('class-balanced (the first n/10 of each class, in stored order)'
           if d.class_balanced else 'stored')
  return Source(
      available=len(labels), order=order,
      ids=lambda n: [f'{d.name}/train/{i}' for i in sel[:n]],
      load=lambda lo, hi: resize(images[sel[lo:hi]], d.image_size),
      fingerprint=fingerprint,
      facts={'source': f'{DATASETS[d.name].title}, {where}', 'split': 'train (official)',
             'class_balanced': bool(d.class_balanced),
             'preprocessing': f'PIL bilinear 28x28 -> {d.image_size}x{d.image_size}; gray '
                              'repeated to RGB'})


def fresh_idx(config, num: int, num_train: int) -> np.ndarray:
  """uint8 [min(num, 10000), S, S, 3]: the first test images, which no run trains on."""
  del num_train
  images, _ = native_split(config.data, 'test')
  return resize(images[:num], config.data.image_size)
