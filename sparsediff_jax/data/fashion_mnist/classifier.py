"""The classifiers of Fashion-MNIST and MNIST: their recipe and registration (classifier.py).

Trained on the official train split (60,000 images at the native 28x28,
`sparsediff_jax/data/fashion_mnist/source.py`) and checked on the 10,000 test images: at least
MIN_ACCURACY['fashion_mnist'] = 0.90 (the classic small CNNs reach 0.90-0.93). The recipe
records the SHA-256 of the training images and labels, so a cache made from other files is
retrained. Cached in `CACHE_ROOT/fashion_mnist_classifier/` (see classifier.py).

Command: `python -m sparsediff_jax.metrics.classifier --dataset=fashion_mnist`.
"""

import functools
import hashlib

import ml_collections

from sparsediff_jax.data.fashion_mnist import source as fashion_mnist
from sparsediff_jax.metrics import classifier

INPUT_SIZE = 28          # the native size: samples at 16x16 are enlarged to it.
FEATURE_DIM = 128        # width of the penultimate layer (the features of <name>_fd).
MIN_ACCURACY = {'fashion_mnist': 0.90, 'mnist': 0.98}

RECIPE = {
    'version': 1,
    'seed': 0,
    'steps': 4000,        # about 4.3 epochs of 60,000 images.
    'batch_size': 64,
    'learning_rate': 2e-3,
    'schedule': 'cosine decay from learning_rate to 0 over steps, no warm-up',
    'optimizer': 'adam (optax defaults b1=0.9, b2=0.999, eps=1e-8)',
    'augmentation': None,  # 60,000 images: enough without.
    'label_smoothing': 0.1,
    'input': 'mean of RGB / 255, at 28x28 (other sizes resized: linear, antialiased)',
    'architecture': ('conv3x3(32) relu, avgpool2, conv3x3(64) relu, avgpool2, '
                     f'dense({FEATURE_DIM}) relu [features], dense(10)'),
}


@functools.lru_cache(maxsize=8)
def _spec(name: str, data_dir: str, source: str, download: bool) -> classifier.Spec:
  data = ml_collections.ConfigDict({'name': name, 'data_dir': data_dir, 'source': source,
                                    'download': download})
  images, labels = fashion_mnist.native_split(data, 'train')
  digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
  recipe = {**RECIPE, 'data': f'{name} train split ({len(labels)} images) at 28x28',
            'data_sha256': digest}
  return classifier.Spec(
      name=name, recipe=recipe,
      load_split=lambda split, size: fashion_mnist.load_split(data, split, size),
      train_split='train', heldout_split='test', input_size=INPUT_SIZE,
      feature_dim=FEATURE_DIM, min_accuracy=MIN_ACCURACY[name])


def make_spec(name: str, data_config=None) -> classifier.Spec:
  """The Spec of `name` reading the files config.data names (None: the defaults)."""
  d = data_config
  if d is None:
    return _spec(name, '', 'files', False)
  return _spec(name, d.data_dir, d.source, bool(d.download))
