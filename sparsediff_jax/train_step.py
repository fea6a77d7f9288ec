"""The pure training step of the paper's recipe, and its compiled, sharded form.

The step is one function of the split NNX state: it turns uint8 images into a training pair
of the formulation, runs the network, takes the sparse-mask loss (`masking.masked_mse`),
and applies gradients and EMA updates; a step with a NaN/inf loss or gradient applies
nothing (runtime/nonfinite.py). `compile_train_step` jits it over the mesh with the state
donated; the training loop that calls it is modes/train.py.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sparsediff_jax import formulations, masking
from sparsediff_jax.runtime import memory_check, nonfinite, sharding
from sparsediff_jax.train_state import TrainState, state_shardings


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
  """The decay used at `step`: warmed up as (1 + step) / (10 + step) early in training.

  Without the warm-up a 0.9999 average would still be mostly the initial parameters after
  thousands of steps, and short runs would sample from an untrained network.
  """
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def make_train_step(config, graphdef, tx, schedule, *, return_mask: bool = False):
  """The pure step (state, uint8 images [B, H, W, C]) -> (state, metrics).

  return_mask: also return the keep-mask the step drew, as metrics['mask'] [B, H, W, C]
  (for tests of what the compiled step does; it costs a copy of the mask).
  """
  formulation = formulations.get_formulation(config.diffusion)
  mask_fn = masking.get_mask_strategy(config.mask)
  mask_cfg, decays = config.mask, tuple(config.optim.ema_decays)
  use_dropout = config.model.dropout > 0

  def step_fn(state: TrainState, images: jax.Array):
    x0 = images.astype(jnp.float32) / 127.5 - 1.0
    k_pair, k_mask, k_drop = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
    pair = formulation.training_pair(k_pair, x0)
    mask = mask_fn(k_mask, x0.shape, pair.level, state.step)

    def loss_fn(params):
      net = nnx.merge(graphdef, params)
      pred = net(pair.net_input, pair.cond,
                 rngs=nnx.Rngs(dropout=k_drop) if use_dropout else None)
      loss = masking.masked_mse(pred, pair.target, mask, pair.weight, mask_cfg.normalize)
      # The ordinary dense loss on the same batch, for comparison across mask ratios.
      dense = masking.masked_mse(jax.lax.stop_gradient(pred), pair.target,
                                 jnp.ones_like(mask), pair.weight)
      return loss, dense

    (loss, dense), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = tuple(jax.tree.map(lambda e, p, d=ema_decay(d, state.step): d * e + (1.0 - d) * p,
                             e, params)
                for d, e in zip(decays, state.ema))
    grad_norm = optax.global_norm(grads)
    # NaN/inf: keep the old state (see nonfinite.py); the host reads `skipped` lazily.
    finite = nonfinite.all_finite(loss, grad_norm, optax.global_norm(updates))
    params, ema, opt_state = nonfinite.keep_if(finite, (params, ema, opt_state),
                                               (state.params, state.ema, state.opt_state))
    metrics = {'loss': loss, 'dense_loss': dense, 'grad_norm': grad_norm,
               'learning_rate': schedule(state.step), 'kept_fraction': jnp.mean(mask),
               'skipped': 1.0 - finite.astype(jnp.float32)}
    if return_mask:
      metrics['mask'] = mask
    return state.replace(step=state.step + 1, params=params, ema=ema,
                         opt_state=opt_state), metrics

  return step_fn


def make_multi_step(step_fn, steps: int, unroll: bool = True):
  """`steps` training steps in one call, as a lax.scan: images [steps, batch, H, W, C] in,
  metrics stacked along a leading [steps] axis out. The same numbers as `steps` calls.
  `unroll`: the steps laid out one after another (no loop in the program) or a rolled loop."""
  if steps == 1:
    return step_fn
  return lambda state, images: jax.lax.scan(step_fn, state, images, unroll=unroll)


def compile_train_step(config, graphdef, tx, schedule, mesh, *, donate: bool = True,
                       return_mask: bool = False, shardings: TrainState | None = None):
  """jit with the batch split over the mesh, the state in its shardings and donated (its
  buffers reused for the new state: one copy of the state in memory, not two).
  shardings: state_shardings(config, tx, mesh), when the caller has them (saves a trace of
  the model).

  With config.training.steps_per_call = k > 1 one call runs k steps on [k, batch, ...].
  """
  rep = sharding.replicated(mesh)
  state_sh = shardings if shardings is not None else state_shardings(config, tx, mesh)
  k = config.training.steps_per_call
  step_fn = make_train_step(config, graphdef, tx, schedule, return_mask=return_mask)
  return jax.jit(make_multi_step(step_fn, k,
                                 config.training.unroll_steps),
                 in_shardings=(state_sh, sharding.batch_sharding(mesh, stacked=k > 1)),
                 out_shardings=(state_sh, rep), donate_argnums=0 if donate else ())


def check_step_fits(config, step_jit, target: TrainState, mesh) -> None:
  """errors.ConfigError unless the compiled train step fits in device memory (compiles it
  from shapes; the first call then reuses the executable)."""
  t, d = config.training, config.data
  shape = (t.batch_size, d.image_size, d.image_size, 3)
  k = t.steps_per_call
  batch = jax.ShapeDtypeStruct((k, *shape) if k > 1 else shape, jnp.uint8,
                               sharding=sharding.batch_sharding(mesh, stacked=k > 1))
  memory_check.check_compiled_fits(step_jit.lower(target, batch).compile(),
                                   f'the train step (batch {t.batch_size} of '
                                   f'{d.image_size}x{d.image_size})')
