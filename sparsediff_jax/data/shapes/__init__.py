"""The embedded dataset `shapes` (mirror-symmetric coloured discs and squares, drawn from a
seed: source.py) and its global-consistency metric (object count, symmetry, palette:
consistency.py), registered as one record."""

from sparsediff_jax import registry
from sparsediff_jax.data.shapes.source import (  # noqa: F401  (the dataset's API)
    PALETTE, check_fields, fresh_shapes, make_image, make_shapes, open_shapes)

# The consistency metric imports SciPy, so it is loaded when samples are scored.
DATASET = registry.DATASETS.add('shapes', registry.Dataset(
    source=open_shapes, fresh=fresh_shapes,
    metrics=registry.later('sparsediff_jax.data.shapes.consistency', 'shapes_sample_metrics'),
    headline=('consistent_fraction', 'count_exact_fraction', 'symmetry_error',
              'partnered_fraction'),
    quality={'consistent_fraction': 'ge'},
    check=check_fields))
