"""Fashion-MNIST and MNIST, read offline from their IDX files or from TFDS (source.py), their
domain classifiers (the recipe: classifier.py) and their metrics (the classifier metrics and,
on Fashion-MNIST, mirror symmetry: metrics.py), registered as one record each."""

import functools

from sparsediff_jax import registry
from sparsediff_jax.data.fashion_mnist.source import (  # noqa: F401  (the datasets' API)
    DATASETS, MIN_SIZE, NATIVE_SIZE, NUM_CLASSES, SPLITS, IdxFormatError, check_fields,
    fresh_idx, load_split, native_split, open_idx, parse_idx, selection)

_EXTRA_HEADLINE = {'fashion_mnist': ('fashion_mnist_asymmetric_rate',)}

# The classifier and its metrics import JAX, so they are loaded when samples are scored.
for _name in DATASETS:
  registry.DATASETS.add(_name, registry.Dataset(
      source=open_idx, fresh=fresh_idx,
      metrics=registry.later('sparsediff_jax.data.fashion_mnist.metrics', 'sample_metrics'),
      headline=(f'{_name}_fd', f'{_name}_confidence', f'{_name}_class_entropy',
                *_EXTRA_HEADLINE.get(_name, ())),
      quality={f'{_name}_fd': 'le', f'{_name}_confidence': 'ge'},
      classifier=functools.partial(
          registry.later('sparsediff_jax.data.fashion_mnist.classifier', 'make_spec'), _name),
      check=check_fields))
