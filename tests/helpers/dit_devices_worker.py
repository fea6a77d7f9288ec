"""Run by test_dit.py in a subprocess with the device count XLA_FLAGS gives: three train
steps of the tiny DiT with plain data parallelism (fsdp1) and, on 8 devices, with FSDP
(data 2 x fsdp 4); prints one JSON line of losses, parameter sums, specs and bytes."""

import json

import jax
import jax.numpy as jnp

from sparsediff_jax import data
from sparsediff_jax.runtime import sharding
from sparsediff_jax import train_step
from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer
from tests.helpers.tiny import model_config

runs = {}
for fsdp in (1, 4) if jax.device_count() % 4 == 0 else (1,):
  c = model_config('dit', sharding__fsdp=fsdp, model__dropout=0.1)
  mesh = sharding.make_mesh(c)
  tx, schedule = make_optimizer(c)
  graphdef, _ = abstract_model(c)
  step = train_step.compile_train_step(c, graphdef, tx, schedule, mesh)
  state = init_state(c, tx, mesh)
  it = data.make_train_iterator(c)
  losses = []
  for _ in range(3):
    state, m = step(state, sharding.global_batch(next(it), mesh))
    losses.append(float(m['loss']))
  runs[f'fsdp{fsdp}'] = {
      'losses': losses,
      'param_sums': [float(jnp.sum(x)) for x in jax.tree.leaves(state.params)],
      'param_specs': sorted({str(x.sharding.spec) for x in jax.tree.leaves(state.params)}),
      'bytes_per_device': sharding.bytes_per_device((state.params, state.ema,
                                                     state.opt_state)),
  }
print(json.dumps({'devices': jax.device_count(), 'runs': runs}))
