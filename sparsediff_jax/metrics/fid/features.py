"""Inception features of image streams: sharded over the mesh, accumulated in float64.

`Featurizer` runs pytorch-fid's Inception (our JAX port) on uint8 batches that live on the
mesh (batch split over `data`) and gathers the pool3 features [B, 2048] to every host;
`collect` folds them into a float64 `fid.FeatureAccumulator` and keeps a capped subset of
rows for precision/recall and KID. Every batch has the same shape (nothing recompiles): the
last partial batch is padded, and padding rows (index -1) are dropped before they count.
The training images reach it as such batches through scoring/real_images.py.
"""

import functools
import os

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from sparsediff_jax.runtime import sharding
from sparsediff_jax.metrics.fid import fid, inception, inception_weights

FEATURE_DIM = 2048


def expected_sha256(setting: str) -> str | None:
  """config.eval.inception_sha256 -> the digest to enforce ('pytorch-fid': the published
  file's; '': none)."""
  if setting == 'pytorch-fid':
    return inception_weights.PT_INCEPTION_SHA256
  return setting.lower() or None


@functools.lru_cache(maxsize=2)
def _load_inception(path: str, expected: str | None, _file_identity):
  params, sha = inception_weights.load_params(path or None, expected_sha256=expected)
  graphdef, state = nnx.split(inception.build_inception(params))
  return graphdef, state, sha


def load_inception(weights: str, sha_setting: str):
  """(graphdef, state, SHA-256 of the weights file) of the FID Inception.

  weights: a .pth path, or '' for pytorch-fid's file downloaded into the cache (see
  inception_weights.load_params). Built once per process and file version: building the
  network takes seconds, and evaluation during training reuses it.
  Raises InceptionWeightsError for a missing, truncated or wrong-hash file.
  """
  identity = None
  if weights:
    if not os.path.isfile(weights):
      raise inception_weights.InceptionWeightsError(
          f'config.eval.inception_weights={weights}: no such file; give the path of '
          "pytorch-fid's pt_inception-2015-12-05-6726825d.pth or '' to download it")
    st = os.stat(weights)
    identity = (st.st_size, st.st_mtime_ns)
  return _load_inception(weights, expected_sha256(sha_setting), identity)


class Featurizer:
  """Inception pool3 features of uint8 image batches laid out over `mesh`."""

  def __init__(self, eval_config, mesh):
    self.preprocessing = eval_config.preprocessing
    self.graphdef, state, self.sha256 = load_inception(eval_config.inception_weights,
                                                       eval_config.inception_sha256)
    self.state = jax.device_put(state, sharding.replicated(mesh))

  def __call__(self, images: jax.Array) -> np.ndarray:
    """uint8 [B, H, W, 3] on the mesh -> float32 [B, 2048] numpy on every host."""
    features = inception.inception_features(self.graphdef, self.state, images,
                                            preprocessing=self.preprocessing)
    return np.asarray(multihost_utils.process_allgather(features, tiled=True), np.float32)


def collect(featurize, batches, keep=None) -> tuple[fid.FeatureAccumulator, np.ndarray]:
  """Streams (images, indices) batches through `featurize`.

  batches: iterable of (uint8 images [B, H, W, 3] on the mesh, int indices [B], -1 for
  padding rows). keep: indices -> bool [B], the rows whose features are returned as well
  (None: none). Returns the float64 accumulator of every valid row, and the kept rows
  float32 [K, 2048] in index order.
  """
  acc, kept_idx, kept = fid.FeatureAccumulator(FEATURE_DIM), [], []
  for images, indices in batches:
    features = featurize(images)
    valid = np.asarray(indices) >= 0
    acc.update(features[valid])
    if keep is not None:
      rows = valid & keep(indices)
      kept_idx.append(indices[rows])
      kept.append(features[rows])
  if not kept:
    return acc, np.zeros((0, FEATURE_DIM), np.float32)
  order = np.argsort(np.concatenate(kept_idx), kind='stable')
  return acc, np.concatenate(kept)[order]

