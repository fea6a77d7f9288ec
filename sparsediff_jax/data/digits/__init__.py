"""The UCI handwritten digits that ship with scikit-learn (source.py), their domain
classifier (its recipe: classifier.py) and the classifier metrics (metrics.py), registered
as one record."""

from sparsediff_jax import registry
from sparsediff_jax.data.digits.source import (  # noqa: F401  (the dataset's API)
    MIN_SIZE, NATIVE_SIZE, NUM_HELDOUT, NUM_TRAIN, SPLITS, check_fields, fresh_digits,
    load_split, open_digits, resize)

# The classifier and its metrics import JAX, so they are loaded when samples are scored.
DATASET = registry.DATASETS.add('digits', registry.Dataset(
    source=open_digits, fresh=fresh_digits,
    metrics=registry.later('sparsediff_jax.data.digits.metrics', 'digits_sample_metrics'),
    headline=('digits_fd', 'digits_confidence', 'digits_class_entropy'),
    quality={'digits_fd': 'le', 'digits_confidence': 'ge'},
    classifier=registry.later('sparsediff_jax.data.digits.classifier', 'make_spec'),
    check=check_fields))
