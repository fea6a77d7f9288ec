"""Comparing training states in tests."""

import jax
import numpy as np


def assert_same_state(a, b):
  """Parameters, EMA and optimiser state of two TrainStates are bit-identical."""
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
               (a.params, a.ema, a.opt_state), (b.params, b.ema, b.opt_state))
