"""A small CNN per labelled dataset: the feature extractor of the classifier metrics.

One file: the classifier's network, training, cache and command line are
one mechanism that every labelled dataset shares.

Inception features say little about small gray images (8x8 digits, 28x28 garments), so
labelled datasets are scored by a domain classifier (`label_metrics.py`). One mechanism
serves them all; a dataset writes a `Spec` (its recipe, how to read its splits) and names
its maker in its registry.Dataset record, `classifier=` (digits: data/digits/classifier.py;
Fashion-MNIST and MNIST: data/fashion_mnist/classifier.py). For each, the classifier is
trained on the TRAIN split only, with a fixed seed and recipe, and must reach
`spec.min_accuracy` on the held-out split or training raises.

Inputs are uint8 [N, S, S, 3] at any S: the network averages the three channels to gray,
scales to [0, 1] and resizes to spec.input_size (`jax.image.resize`, linear, antialiased
when shrinking) itself, so samples of any size are scored by the same network.

Cache: trained once, then kept in `CACHE_ROOT/<name>_classifier/` where CACHE_ROOT is the
`cache_dir` argument, else `$SPARSEDIFF_CACHE`, else `~/.cache/sparsediff_jax`
(runtime/caches.py). The folder
holds `params.npz` (written byte-for-byte reproducibly: sorted names, fixed zip
timestamps) and `classifier.json` (its SHA-256, the recipe, the held-out accuracy and the
library versions). A later call loads the parameters only if the file's SHA-256 matches
the JSON and the recipe is the current one; otherwise it warns and trains again. A cache
that cannot be written (read-only home or cache folder, full disk) gives one warning and
the trained classifier is used from memory.

Command: `python -m sparsediff_jax.metrics.classifier [--dataset=digits] [--cache_dir=DIR]`
trains or loads a classifier and prints its held-out accuracy and the path of its parameters.
"""

import argparse
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import platform
import tempfile
import time
import warnings
import zipfile
from typing import Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sparsediff_jax import errors, registry
from sparsediff_jax.console import progress
from sparsediff_jax.runtime import caches
from sparsediff_jax.runtime.caches import sha256_file

EVAL_BATCH = 256         # images per compiled forward call (the last batch is padded).
PARAMS_FILE = 'params.npz'
META_FILE = 'classifier.json'


@dataclasses.dataclass(frozen=True)
class Spec:
  """How to train and check the classifier of one labelled dataset."""
  name: str                 # the dataset (data.name); cache subfolder `<name>_classifier`.
  # Everything that decides the trained parameters (seed, steps, batch_size,
  # learning_rate, augmentation or None, label_smoothing, and descriptions). A cached
  # classifier made with another recipe is retrained.
  recipe: dict
  # (split, image_size) -> (uint8 [N, S, S, 3], int labels [N]) of the dataset.
  load_split: Callable[[str, int], tuple[np.ndarray, np.ndarray]]
  train_split: str          # the split it learns from (the one models train on).
  heldout_split: str        # its accuracy check and the metrics' reference.
  input_size: int           # side the network works at, pixels.
  feature_dim: int          # width of the penultimate layer (the features of the FD).
  min_accuracy: float       # held-out accuracy below which the classifier is refused.
  num_classes: int = 10


class ClassifierAccuracyError(errors.RunFailedError):
  """A trained classifier missed its spec's min_accuracy on the held-out split."""


class Net(nnx.Module):
  """gray float [N, S, S, 1] in [0, 1] -> (features [N, feature_dim], logits [N, classes]),
  S = input_size (a multiple of 4)."""

  def __init__(self, input_size: int, feature_dim: int, num_classes: int, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
    flat = 64 * (input_size // 4) ** 2
    self.dense = nnx.Linear(flat, feature_dim, rngs=rngs)
    self.head = nnx.Linear(feature_dim, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.avg_pool(jax.nn.relu(self.conv1(x)), (2, 2), strides=(2, 2))
    x = nnx.avg_pool(jax.nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))
    features = jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))
    return features, self.head(features)


def to_input(images, input_size: int) -> jax.Array:
  """uint8 [N, S, S, 3] -> float32 [N, input_size, input_size, 1] in [0, 1] (gray, resized)."""
  x = jnp.mean(jnp.asarray(images, jnp.float32), axis=-1, keepdims=True) / 255.0
  if x.shape[1:3] != (input_size, input_size):
    x = jax.image.resize(x, (x.shape[0], input_size, input_size, 1), 'linear',
                         antialias=True)
  return x


def new_model(spec: Spec) -> tuple[nnx.GraphDef, nnx.State]:
  """The untrained network of `spec`, initialised from its recipe's seed."""
  net = Net(spec.input_size, spec.feature_dim, spec.num_classes,
            nnx.Rngs(spec.recipe['seed']))
  return nnx.split(net, nnx.Param)


def augment(x, key, *, max_rotation: float, max_log_scale: float, max_shift: float):
  """Each image of x [B, H, W, 1] rotated, scaled and moved at random about its centre.

  Angles are uniform in +-max_rotation (radians), scales exp(uniform +-max_log_scale),
  shifts uniform in +-max_shift pixels per axis; bilinear, zeros outside the image.
  """
  n, h, w, _ = x.shape
  k_rot, k_scale, k_shift = jax.random.split(key, 3)
  angles = jax.random.uniform(k_rot, (n,), minval=-max_rotation, maxval=max_rotation)
  scales = jnp.exp(jax.random.uniform(k_scale, (n,), minval=-max_log_scale,
                                      maxval=max_log_scale))
  shifts = jax.random.uniform(k_shift, (n, 2), minval=-max_shift, maxval=max_shift)
  yy, xx = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2,
                        indexing='ij')

  def one(image, angle, scale, shift):
    # Output pixel (y, x) reads the input at the inverse transform of (y, x).
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    src_y = cos * yy - sin * xx + (h - 1) / 2 + shift[0]
    src_x = sin * yy + cos * xx + (w - 1) / 2 + shift[1]
    out = jax.scipy.ndimage.map_coordinates(image[..., 0], [src_y, src_x], order=1,
                                            mode='constant')
    return out[..., None]

  return jax.vmap(one)(x, angles, scales, shifts)


def train_params(spec: Spec, train_x: np.ndarray,
                 train_y: np.ndarray) -> tuple[nnx.GraphDef, nnx.State]:
  """Trains spec's Net by its recipe on float32 [N, S, S, 1] inputs and int labels [N].

  The batch order is drawn with NumPy from the seed and the augmentation (if any) with JAX
  from the seed.
  """
  r = spec.recipe
  graphdef, params = new_model(spec)
  rng = np.random.default_rng(r['seed'])
  per_epoch = len(train_x) // r['batch_size']
  epochs = -(-r['steps'] // per_epoch)
  order = np.concatenate([rng.permutation(len(train_x))[:per_epoch * r['batch_size']]
                          for _ in range(epochs)])
  batches = order[:r['steps'] * r['batch_size']].reshape(r['steps'], r['batch_size'])
  schedule = optax.cosine_decay_schedule(r['learning_rate'], r['steps'])
  tx = optax.adam(schedule)

  def loss_fn(p, x, y):
    _, logits = nnx.merge(graphdef, p)(x)
    targets = optax.smooth_labels(jax.nn.one_hot(y, spec.num_classes), r['label_smoothing'])
    return optax.softmax_cross_entropy(logits, targets).mean()

  @jax.jit
  def step(p, opt_state, x, y, key):
    if r['augmentation']:
      x = augment(x, key, **r['augmentation'])
    grads = jax.grad(loss_fn)(p, x, y)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  # One compiled step called from Python: XLA:CPU ran the same step several times slower
  # inside a lax.scan loop body.
  xs, ys = jnp.asarray(train_x), jnp.asarray(train_y, jnp.int32)
  keys = jax.random.split(jax.random.key(r['seed']), r['steps'])
  opt_state = tx.init(params)
  report = _TrainingReport(spec.name, r['steps'])
  for i in range(r['steps']):
    params, opt_state = step(params, opt_state, xs[batches[i]], ys[batches[i]], keys[i])
    report.after(i + 1, params)
  return graphdef, params


class _TrainingReport:
  """Progress lines while a classifier trains (Fashion-MNIST's takes about 20 minutes on 2
  CPU cores, once per cache): one at the start, then one every PROGRESS_SECONDS at most
  with the step, the time so far and an estimate of the rest."""

  PROGRESS_SECONDS = 30.0

  def __init__(self, name: str, steps: int, clock=time.monotonic):
    self.name, self.steps, self.clock = name, steps, clock
    self.start = self.last = clock()
    logging.info('training the %s classifier once (%d steps; cached afterwards)', name, steps)

  def after(self, done: int, params) -> None:
    now = self.clock()
    if now - self.last < self.PROGRESS_SECONDS and done < self.steps:
      return
    jax.block_until_ready(params)   # the time of steps done, not of steps dispatched
    now = self.clock()
    self.last, elapsed = now, now - self.start
    logging.info('%s classifier: step %d/%d, %s so far, about %s left', self.name, done,
                 self.steps, progress.format_seconds(elapsed),
                 progress.format_seconds(elapsed / done * (self.steps - done)))


def _leaf_name(path) -> str:
  keys = (getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))) for k in path)
  return '/'.join(str(k) for k in keys)


def params_to_arrays(params: nnx.State) -> dict[str, np.ndarray]:
  """{'conv1/kernel/value': float32 array, ...} of a parameter State."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {_leaf_name(path): np.asarray(leaf) for path, leaf in leaves}


def arrays_to_params(spec: Spec,
                     arrays: dict[str, np.ndarray]) -> tuple[nnx.GraphDef, nnx.State]:
  """The inverse of params_to_arrays; ValueError if names or shapes differ from spec's Net."""
  graphdef, template = new_model(spec)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
  names = [_leaf_name(path) for path, _ in leaves]
  if sorted(names) != sorted(arrays):
    raise ValueError(f'parameter names {sorted(arrays)} differ from {sorted(names)}')
  new = []
  for name, (_, leaf) in zip(names, leaves):
    if arrays[name].shape != leaf.shape:
      raise ValueError(f'{name}: shape {arrays[name].shape}, expected {leaf.shape}')
    new.append(jnp.asarray(arrays[name], jnp.float32))
  return graphdef, jax.tree_util.tree_unflatten(treedef, new)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
  """An .npz that np.load reads, identical bytes for identical arrays (sorted names, fixed
  zip timestamps)."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as zf:
    for name in sorted(arrays):
      info = zipfile.ZipInfo(name + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
      with zf.open(info, 'w') as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)
  return buffer.getvalue()


def write_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  """npz_bytes(arrays) written to path (atomic replace)."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(npz_bytes(arrays))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _write_json(path: pathlib.Path, obj: dict) -> None:
  tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + '\n')
  os.replace(tmp, path)


def cache_folder(name: str, cache_dir=None) -> pathlib.Path:
  """CACHE_ROOT/<name>_classifier (CACHE_ROOT: runtime/caches.py; cache_dir replaces it)."""
  return caches.cache_root(cache_dir) / f'{name}_classifier'


class Classifier:
  """A trained Net with batched, compiled forward passes.

  Attributes:
    spec: what it was trained by.
    sha256: SHA-256 (hex) of its params.npz.
    heldout_accuracy: fraction of the held-out split it labels correctly.
    path: its params.npz (None: held in memory only, the cache could not be written).
  """

  def __init__(self, spec: Spec, graphdef, params, *, sha256: str,
               heldout_accuracy: float = float('nan'), path: pathlib.Path | None = None):
    self.spec = spec
    self.sha256 = sha256
    self.heldout_accuracy = heldout_accuracy
    self.path = path
    self._params = params

    @jax.jit
    def forward(params, images):
      features, logits = nnx.merge(graphdef, params)(to_input(images, spec.input_size))
      return features, jax.nn.softmax(logits, axis=-1)
    self._forward = forward

  def outputs(self, images) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, S, S, 3] -> (features float32 [N, feature_dim], probabilities [N, classes])."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f'expected uint8 [N, S, S, 3] images, got {images.dtype} '
                       f'{images.shape}')
    features, probs = [], []
    for lo in range(0, images.shape[0], EVAL_BATCH):
      batch = images[lo:lo + EVAL_BATCH]
      # Pad to a full batch so every call reuses one compiled program per image size.
      padded = np.concatenate([batch, np.zeros((EVAL_BATCH - len(batch),) + batch.shape[1:],
                                               np.uint8)])
      f, p = self._forward(self._params, padded)
      features.append(np.asarray(f)[:len(batch)])
      probs.append(np.asarray(p)[:len(batch)])
    if not features:
      return (np.zeros((0, self.spec.feature_dim), np.float32),
              np.zeros((0, self.spec.num_classes), np.float32))
    return np.concatenate(features), np.concatenate(probs)

  def features(self, images) -> np.ndarray:
    """Penultimate-layer activations: uint8 [N, S, S, 3] -> float32 [N, feature_dim]."""
    return self.outputs(images)[0]

  def probabilities(self, images) -> np.ndarray:
    """Softmax class probabilities: uint8 [N, S, S, 3] -> float32 [N, classes]."""
    return self.outputs(images)[1]

  def accuracy(self, images, labels) -> float:
    return float(np.mean(self.probabilities(images).argmax(-1) == np.asarray(labels)))


def _versions() -> dict:
  import flax
  import sklearn
  return {'python': platform.python_version(), 'jax': jax.__version__,
          'flax': flax.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'scikit-learn': sklearn.__version__}


def _heldout_accuracy(classifier: Classifier) -> tuple[float, int]:
  spec = classifier.spec
  images, labels = spec.load_split(spec.heldout_split, spec.input_size)
  return classifier.accuracy(images, labels), len(labels)


def _save(folder: pathlib.Path, classifier: Classifier, meta: dict) -> None:
  """Writes params.npz and classifier.json; sets classifier.path."""
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / PARAMS_FILE
  write_npz(path, params_to_arrays(classifier._params))
  _write_json(folder / META_FILE, {'sha256': classifier.sha256, 'params_file': PARAMS_FILE,
                                   **meta})
  classifier.path = path


def train_and_save(spec: Spec, folder: pathlib.Path) -> Classifier:
  """Trains by spec's recipe, checks min_accuracy, writes params.npz and classifier.json
  (or warns once and keeps the classifier in memory when the folder cannot be written)."""
  images, labels = spec.load_split(spec.train_split, spec.input_size)
  start = time.perf_counter()
  graphdef, params = train_params(spec, np.asarray(to_input(images, spec.input_size)), labels)
  seconds = time.perf_counter() - start
  sha = hashlib.sha256(npz_bytes(params_to_arrays(params))).hexdigest()
  classifier = Classifier(spec, graphdef, params, sha256=sha)
  accuracy, count = _heldout_accuracy(classifier)
  if accuracy < spec.min_accuracy:
    raise ClassifierAccuracyError(
        f'the {spec.name} classifier reached held-out accuracy {accuracy:.4f} < '
        f'{spec.min_accuracy}; its recipe no longer trains a usable classifier')
  classifier.heldout_accuracy = accuracy
  meta = {'recipe': spec.recipe, 'heldout_accuracy': accuracy, 'heldout_examples': count,
          'train_seconds': round(seconds, 2), 'versions': _versions()}
  try:
    _save(folder, classifier, meta)
  except OSError as err:
    warnings.warn(f'the {spec.name} classifier cannot be cached in {folder} '
                  f'({err.strerror or err}); using it from memory (it is trained again '
                  'next time; set $SPARSEDIFF_CACHE to a writable folder to keep it)',
                  stacklevel=3)
  return classifier


def load_cached(spec: Spec, folder: pathlib.Path) -> Classifier | None:
  """The cached classifier, or None (with a warning saying why) if it cannot be trusted."""
  meta_path, path = folder / META_FILE, folder / PARAMS_FILE
  if not meta_path.exists() and not path.exists():
    return None
  try:
    meta = json.loads(meta_path.read_text())
    if meta.get('recipe') != spec.recipe:
      reason = 'was trained with another recipe'
    elif sha256_file(path) != meta.get('sha256'):
      reason = f'{path} does not match the SHA-256 recorded in {meta_path}'
    else:
      with np.load(path, allow_pickle=False) as npz:
        graphdef, params = arrays_to_params(spec, {k: npz[k] for k in npz.files})
      classifier = Classifier(spec, graphdef, params, sha256=meta['sha256'], path=path)
      classifier.heldout_accuracy = _heldout_accuracy(classifier)[0]
      if classifier.heldout_accuracy >= spec.min_accuracy:
        return classifier
      reason = f'scores {classifier.heldout_accuracy:.4f} < {spec.min_accuracy} held out'
  except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
    reason = f'cannot be read ({type(err).__name__}: {err})'
  warnings.warn(f'the cached {spec.name} classifier in {folder} {reason}; training it again',
                stacklevel=3)
  return None


def load_or_train(name: str, cache_dir=None, data_config=None, *,
                  spec: Spec | None = None) -> Classifier:
  """The classifier of dataset `name` from the cache, trained and cached first if needed.

  Args:
    name: a registered dataset ('digits', 'fashion_mnist', 'mnist').
    cache_dir: cache root (default $SPARSEDIFF_CACHE, else ~/.cache/sparsediff_jax); the
      classifier lives in its `<name>_classifier/` subfolder.
    data_config: the run's config.data (where its files are); None: the defaults.
    spec: use this Spec instead of the registered one.
  Raises:
    ClassifierAccuracyError: training did not reach the spec's min_accuracy held out.
  """
  spec = spec or spec_of(name, data_config)
  folder = cache_folder(name, cache_dir)
  return load_cached(spec, folder) or train_and_save(spec, folder)


def spec_of(name: str, data_config=None) -> Spec:
  """The Spec of dataset `name`: the `classifier` of its registry.Dataset record, made
  from the run's config.data (a dataset whose files can vary) or None (the defaults)."""
  with_classifier = [n for n in registry.DATASETS.names()
                     if n in registry.DATASETS and registry.DATASETS.get(n).classifier]
  if name not in with_classifier:
    raise ValueError(f'no classifier for dataset {name!r}; known: {sorted(with_classifier)}')
  return registry.DATASETS.get(name).classifier(data_config)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default='digits', help='a dataset with a classifier Spec')
  parser.add_argument('--cache_dir', default=None,
                      help='cache root (default $SPARSEDIFF_CACHE or ~/.cache/sparsediff_jax)')
  args = parser.parse_args(argv)
  start = time.perf_counter()
  # The imported module, not __main__: the dataset modules register with that one.
  from sparsediff_jax.metrics import classifier as module
  classifier = module.load_or_train(args.dataset, args.cache_dir)
  print(f'held-out accuracy: {classifier.heldout_accuracy:.4f}')
  print(f'parameters: {classifier.path} (sha256 {classifier.sha256})')
  print(f'seconds: {time.perf_counter() - start:.1f}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
