"""Non-finite losses and gradients: skipped inside the jitted step, acted on by the host.

Inside the step (pure, no host sync): `all_finite` says whether the loss, the gradient
norm and the update norm are finite (a NaN or inf anywhere in the gradient or the update
makes its norm so; the update catches what a finite gradient becomes under an infinite
learning rate or a degenerate optimiser setting), and `keep_if`
selects the updated trees or the old ones. A skipped step leaves parameters, EMA and
optimiser state exactly as they were (so the optimiser's own step count, which drives
Adam's bias correction and optax schedules, counts applied updates only); the run's step
counter still advances, so the batch is consumed and the next step draws fresh noise and
masks. The step reports `skipped` (1.0 or 0.0) in its metrics. Parameters that a finite
update pushes past the float range are not looked for in the step (that would need a pass
over them before the select); they make the next loss non-finite, and
`checkpoints.Checkpointer.save` refuses any state holding NaN or inf.

On the host, `NonFiniteMonitor` keeps each step's flags as device arrays and reads them only
where the loop waits anyway (a log line, a checkpoint), so it never stalls the pipeline:
config.training.on_nonfinite='skip' counts the skipped steps (metric `skipped_steps`, the
run's total, carried across resume in the checkpoint meta) and stops after
config.training.nonfinite_patience of them in a row; 'stop' raises NonFiniteError naming the
first bad step, which quantity was not finite and the real newest checkpoint (`check` returns the error, the loop raises it once that step's metrics
line is written). The loop checks before every checkpoint, so under 'stop' no checkpoint is
written after a bad step and the newest one is the last good state.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sparsediff_jax import errors

# Training produced NaN/inf (and the policy says stop), or a state to save is not finite.
NonFiniteError = errors.NonFiniteError


def all_finite(*trees) -> jax.Array:
  """bool scalar: every floating-point element of every tree is finite (traceable)."""
  leaves = [x for t in trees for x in jax.tree.leaves(t)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def keep_if(ok: jax.Array, new, old):
  """`new` where the bool scalar `ok`, else `old` (trees of the same structure).

  `ok` should not depend on `new`: then each select fuses into the elementwise update that
  makes its leaf, costing no extra pass over memory. (A predicate that reduces over the
  new arrays themselves forces them to be materialised first, and made XLA's CPU compile
  of the U-Net step many times slower.)
  """
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


_all_finite_jit = jax.jit(all_finite)


def check_state_finite(state, what: str) -> None:
  """Raises NonFiniteError unless every float in `state` is finite (one host sync)."""
  if not bool(_all_finite_jit(state)):
    raise NonFiniteError(f'{what} holds NaN or inf values and was not written; the newest '
                         'checkpoint on disk is the last good state')


class NonFiniteMonitor:
  """Reads the per-step `skipped` flags lazily and applies config.training.on_nonfinite."""

  def __init__(self, policy: str, patience: int, skipped_steps: int = 0,
               last_checkpoint: Callable[[], int | None] = lambda: None):
    """last_checkpoint() -> the step of the newest checkpoint on disk, or None: asked only
    when the run stops, for the message."""
    self.policy, self.patience = policy, patience
    self.last_checkpoint = last_checkpoint
    self.skipped_steps = skipped_steps   # the run's total, including before a resume
    self.in_row = 0
    self._pending = []                   # (step, metrics) not read yet

  def observe(self, step: int, metrics: dict) -> None:
    """Records step `step`'s metrics (device arrays; nothing is read here). Metrics
    stacked over k steps (training.steps_per_call) are those of steps step-k+1..step."""
    self._pending.append((step, {k: metrics[k] for k in ('skipped', 'loss', 'grad_norm')}))

  def check(self) -> NonFiniteError | None:
    """Reads the flags recorded since the last check and counts the skipped steps.

    Returns the NonFiniteError that the policy calls for, or None: the caller raises it,
    after writing the metrics of the step that revealed it.
    """
    pending, self._pending = jax.device_get(self._pending), []
    for step, m in _one_per_step(pending):
      if not m['skipped']:
        self.in_row = 0
        continue
      self.skipped_steps += 1
      self.in_row += 1
      what = f'step {step}: {non_finite_quantity(m)}; the update was not applied'
      if self.policy == 'stop':
        return NonFiniteError(
            f'{what}. Stopping (config.training.on_nonfinite=\'stop\'); '
            f'{self._last_good_state()}. Lower optim.learning_rate or optim.grad_clip, or set '
            'training.on_nonfinite=skip to skip such steps')
      if self.patience and self.in_row >= self.patience:
        return NonFiniteError(
            f'{what}, after {self.in_row} skipped steps in a row '
            f'(config.training.nonfinite_patience={self.patience}): the run is not recovering; '
            f'{self._last_good_state()}. Lower optim.learning_rate')
    return None

  def _last_good_state(self) -> str:
    step = self.last_checkpoint()
    if step is None:
      return 'no checkpoint was written yet, so a rerun starts from the beginning'
    return f'the newest checkpoint, step {step}, is the last good state'

  def meta(self) -> dict:
    """What a checkpoint carries so that the count survives a resume."""
    return {'skipped_steps': self.skipped_steps}


def _one_per_step(pending):
  """(step, scalar metrics) for each step of (last step, metrics of one or k steps)."""
  for last, m in pending:
    k = np.size(m['skipped'])
    for i in range(k):
      yield last - k + 1 + i, {key: np.ravel(value)[i] for key, value in m.items()}


def non_finite_quantity(m: dict) -> str:
  """Which quantity of a skipped step was NaN or inf: the loss, the gradient, or (both of
  those finite) the optimiser's update, in words with the values."""
  values = f'loss={_fmt(m["loss"])}, grad_norm={_fmt(m["grad_norm"])}'
  if not np.isfinite(m['loss']):
    return f'the loss is not finite ({values})'
  if not np.isfinite(m['grad_norm']):
    return f'the gradient is not finite ({values})'
  return (f'the optimiser\'s update is not finite although the loss and gradient are '
          f'({values})')


def _fmt(x) -> str:
  return f'{float(x):.6g}'
