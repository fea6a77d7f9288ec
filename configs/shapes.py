"""The embedded default: procedurally generated mirror-symmetric shapes, 32x32.

Command: python -m sparsediff_jax.main   (this config is the default)
Expected time: the 1000 steps not timed whole; to the first step 24-27 s cold and 11 s
  warm on an idle 2-core VM (benchmarks/RESULTS.md, "The first ten minutes")
Expected result: four mirror-symmetric objects per image: the README's grids at steps 250
  and 1000 (docs/images/shapes_default_step*.png)

Needs no download and trains on a laptop CPU in a few minutes; every field is the base
default documented in `sparsediff_jax/config_base.py`.
"""

from sparsediff_jax import config_base


def get_config():
  return config_base.get_config()
