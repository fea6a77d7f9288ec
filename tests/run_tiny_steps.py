"""Runs three tiny train steps on however many devices XLA_FLAGS gives; prints JSON."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from sparsediff_jax import data, masking, sharding, train
from tiny import tiny_config

c = tiny_config()
mesh = sharding.make_mesh()
tx, schedule = train.make_optimizer(c)
graphdef, _ = train.abstract_model(c)
step = train.compile_train_step(c, graphdef, tx, schedule, mesh)
state = train.init_state(c, tx, mesh)
it = data.make_train_iterator(c)
losses = []
for _ in range(3):
  state, m = step(state, sharding.global_batch(next(it), mesh))
  losses.append(float(m['loss']))
# The mask the step draws for the whole (sharded) batch, computed the same way under jit.
mask = jax.jit(lambda k: masking.sample_pixel_mask(k, (8, 16, 16, 3), c.mask.ratio),
               out_shardings=sharding.batch_sharding(mesh))(jax.random.PRNGKey(0))
rows = np.asarray(mask).reshape(8, -1)
print(json.dumps({
    'devices': jax.device_count(), 'losses': losses, 'batch': 8,
    'param_sums': [float(jnp.sum(x)) for x in jax.tree.leaves(state.params)],
    'mask_rows_distinct': len({r.tobytes() for r in rows}),
}))
