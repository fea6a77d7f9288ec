"""The embedded default: procedurally generated mirror-symmetric shapes, 32x32.

Needs no download and trains on a laptop CPU in a few minutes; every field is the base
default documented in `sparsediff_jax/config_base.py`.
"""

from sparsediff_jax import config_base


def get_config():
  return config_base.get_config()
