"""The embedded default: procedurally generated mirror-symmetric shapes, 32x32.

Command: python -m sparsediff_jax.main   (this config is the default)
Expected time: the 1000 steps not timed whole; to the first step 131.7 s cold and 25.6 s
  warm on a shared 2-core VM (benchmarks/RESULTS.md)
Expected result: four mirror-symmetric objects per image: the README's grids at steps 250
  and 1000 (docs/images/shapes_default_step*.png)

Needs no download and trains on a laptop CPU in a few minutes; every field is the base
default documented in `sparsediff_jax/config_base.py`.
"""

from sparsediff_jax import config_base


def get_config():
  return config_base.get_config()
