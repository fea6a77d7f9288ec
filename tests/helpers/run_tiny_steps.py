"""Runs three tiny train steps on however many devices XLA_FLAGS gives; prints JSON.

The masks reported are the ones the compiled, sharded step drew (return_mask=True), not a
redraw: their rows (one per example) and a hash of all three steps' masks.
"""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from sparsediff_jax import data
from sparsediff_jax.runtime import sharding
from sparsediff_jax import train_step
from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer
from tests.helpers.tiny import tiny_config

c = tiny_config()
mesh = sharding.make_mesh()
tx, schedule = make_optimizer(c)
graphdef, _ = abstract_model(c)
step = train_step.compile_train_step(c, graphdef, tx, schedule, mesh, return_mask=True)
state = init_state(c, tx, mesh)
it = data.make_train_iterator(c)
losses, masks = [], []
for _ in range(3):
  state, m = step(state, sharding.global_batch(next(it), mesh))
  losses.append(float(m['loss']))
  masks.append(np.asarray(m['mask']))
rows = masks[0].reshape(len(masks[0]), -1)
print(json.dumps({
    'devices': jax.device_count(), 'losses': losses, 'batch': len(masks[0]),
    'param_sums': [float(jnp.sum(x)) for x in jax.tree.leaves(state.params)],
    'mask_rows_distinct': len({r.tobytes() for r in rows}),
    'mask_kept_fraction': float(np.mean(masks)),
    'masks_sha256': hashlib.sha256(np.stack(masks).tobytes()).hexdigest(),
}))
