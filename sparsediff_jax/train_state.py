"""The training state: its optimiser, its shapes and shardings, and its ONE restore path.

`TrainState` holds everything a run needs to continue exactly: the step, parameters, one
EMA copy per `optim.ema_decays` entry, the optimiser state and the base PRNG key. Training,
`--mode=sample`, `--mode=eval` and `--mode=research` all restore through `restore`, so all
of them honour `sharding.fsdp`, fall back past damaged checkpoints and refuse a checkpoint
of another run in the same way; `inference_params` picks the copy `sampling.ema_index`
names.
"""

import dataclasses
import os

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sparsediff_jax.runtime import checkpoints, run_dir, sharding
from sparsediff_jax.errors import MissingCheckpointError
from sparsediff_jax.models import build_model


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 scalar: optimiser steps taken.
  params: nnx.State          # network parameters (float32).
  ema: tuple                 # one parameter copy per config.optim.ema_decays entry.
  opt_state: optax.OptState
  rng: jax.Array             # base PRNG key; step s uses fold_in(rng, s).


def make_optimizer(config):
  """(AdamW with linear warm-up, optional cosine decay and global-norm clipping, schedule)."""
  o, n = config.optim, config.training.num_steps
  if o.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, o.warmup_steps,
                                                  max(n, o.warmup_steps + 1))
  else:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, o.learning_rate, max(o.warmup_steps, 1)),
         optax.constant_schedule(o.learning_rate)], [o.warmup_steps])
  adam = optax.adamw(schedule, b1=o.beta1, b2=o.beta2, eps=o.eps, weight_decay=o.weight_decay)
  tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), adam) if o.grad_clip else adam
  return tx, schedule


def abstract_model(config):
  """(graphdef, abstract params) without allocating anything."""
  return nnx.split(nnx.eval_shape(lambda: build_model(config, config.training.seed)))


def _init_fn(config, tx, graphdefs: list | None = None):
  """The function that makes the initial TrainState (to run under jit or eval_shape).
  graphdefs: a list that each call appends the model's graphdef to (static structure, no
  arrays: it may leave the trace)."""
  seed = config.training.seed

  def init():
    graphdef, params = nnx.split(build_model(config, seed))
    if graphdefs is not None:
      graphdefs.append(graphdef)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema=tuple(params for _ in config.optim.ema_decays),
                      opt_state=tx.init(params),
                      rng=jax.random.fold_in(jax.random.PRNGKey(seed), 1))

  return init


def state_shardings(config, tx, mesh) -> TrainState:
  """Where each array of the TrainState lives on the mesh (see sharding.state_shardings)."""
  return sharding.state_shardings(jax.eval_shape(_init_fn(config, tx)), mesh)


def abstract_state(config, tx, mesh) -> TrainState:
  """The TrainState as sharded ShapeDtypeStructs: a restore target; its size, unallocated."""
  return abstract_model_and_state(config, tx, mesh)[1]


def abstract_model_and_state(config, tx, mesh) -> tuple[nnx.GraphDef, TrainState]:
  """(graphdef, abstract_state) from ONE trace of the model's construction: each trace of
  it costs about a second of a start on a CPU (benchmarks/warm_start.py), and
  abstract_model + abstract_state + state_shardings would take three."""
  graphdefs = []
  shapes = jax.eval_shape(_init_fn(config, tx, graphdefs))
  return graphdefs[0], checkpoints.abstract_like(shapes,
                                                 sharding.state_shardings(shapes, mesh))


# The initialiser runs once per run, so on CPU it is compiled at LLVM optimisation level 1:
# about 2.4x less compile time than the default level (the largest part of a cold start
# after the train step), the same bits (tests/test_train_state.py checks both ways).
INIT_CPU_COMPILER_OPTIONS = {'xla_backend_optimization_level': 1}


def compile_init(config, tx, mesh, shardings: TrainState | None = None):
  """The initialiser compiled, not run: calling it with no arguments returns the initial
  TrainState in its shardings (`shardings`: state_shardings, when the caller has them).
  Safe to call from another thread while the train step compiles."""
  shardings = shardings if shardings is not None else state_shardings(config, tx, mesh)
  lowered = jax.jit(_init_fn(config, tx), out_shardings=shardings).lower()
  cpu = all(d.platform == 'cpu' for d in mesh.devices.flat)
  return lowered.compile(INIT_CPU_COMPILER_OPTIONS if cpu else None)


def init_state(config, tx, mesh, compiled=None) -> TrainState:
  """Initialises parameters, EMA and optimiser state directly in their shardings.
  compiled: compile_init's result for this config and mesh, when compiled already."""
  return (compiled if compiled is not None else compile_init(config, tx, mesh))()


def restore(config, ckpt: checkpoints.Checkpointer, tx, mesh, target=None,
            step: int | None = None):
  """(step, TrainState, meta) of the newest intact checkpoint in `ckpt`, or None if none.

  The state comes back in its shardings (FSDP included). A checkpoint whose saved config
  is of another run raises errors.ConfigMismatchError (run_dir.check_same_run); damaged
  steps are passed over (checkpoints.Checkpointer.restore_latest). target: the
  abstract_state, when the caller has it already. step: restore exactly this checkpoint
  instead (checkpoints.Checkpointer.restore_step: no fallback; CheckpointError if it is
  missing or damaged).
  """
  target = target if target is not None else abstract_state(config, tx, mesh)
  advice = run_dir.READER_ADVICE if ckpt.read_only else None
  check = lambda meta: run_dir.check_same_run(meta.get('config'), config, ckpt.directory,
                                              advice)
  if step is not None:
    return ckpt.restore_step(step, target, check_meta=check)
  return ckpt.restore_latest(target, check_meta=check)


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: TrainState
  graphdef: nnx.GraphDef
  mesh: jax.sharding.Mesh

  def params(self, config):
    """The parameter copy config.sampling.ema_index names (-1: the raw parameters)."""
    return inference_params(config, self.state)


def no_checkpoint_error(workdir: str) -> MissingCheckpointError:
  directory = os.path.join(workdir, 'checkpoints')
  directory = directory if '://' in directory else os.path.abspath(directory)
  return MissingCheckpointError(f'no checkpoint in {directory}; train first with '
                                f'--mode=train --workdir={workdir}')


def require_checkpoint(workdir: str) -> None:
  """MissingCheckpointError unless WORKDIR/checkpoints holds a step (cheap: no Orbax)."""
  if not run_dir.has_checkpoints(workdir):
    raise no_checkpoint_error(workdir)


def restore_run(config, workdir: str, mesh=None, step: int | None = None,
                like: Restored | None = None) -> Restored:
  """The newest intact checkpoint of WORKDIR, for the modes that only read a run.

  step: checkpoint `step` instead (e.g. each step of a research trajectory); a missing or
  damaged one raises errors.CheckpointError.
  like: another step of the same run, already restored: its graphdef and its arrays'
  shapes and shardings are the restore target, so the model is not traced again (two
  traces of it were most of a restore's time: benchmarks/trajectory_scoring.py).
  """
  require_checkpoint(workdir)   # before Orbax, which would create the directory
  run_dir.check_same_run(run_dir.saved_config(workdir, quiet=True), config, workdir,
                         run_dir.READER_ADVICE)
  mesh = mesh if mesh is not None else sharding.make_mesh(config)
  tx, _ = make_optimizer(config)
  if like is not None:
    graphdef = like.graphdef
    target = checkpoints.abstract_like(like.state, jax.tree.map(lambda a: a.sharding,
                                                                like.state))
  else:
    (graphdef, _), target = abstract_model(config), None
  # A mode that only reads a run may run beside its live trainer: it reads committed steps
  # and deletes, renames and trims nothing (a research trajectory reads every step).
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'), read_only=True)
  try:
    restored = restore(config, ckpt, tx, mesh, target=target, step=step)
  finally:
    ckpt.close()
  if restored is None:
    raise no_checkpoint_error(workdir)
  step, state, _ = restored
  return Restored(step, state, graphdef, mesh)


def inference_params(config, state: TrainState):
  """The parameter copy named by config.sampling.ema_index (-1: the raw parameters)."""
  i = config.sampling.ema_index
  return state.params if i == -1 else state.ema[i]


def inference_ema_decay(config) -> float | None:
  """Decay of the EMA that config.sampling.ema_index selects (None for raw parameters)."""
  i = config.sampling.ema_index
  return None if i == -1 else float(config.optim.ema_decays[i])


def memory_per_device(state: TrainState) -> str:
  """MiB of parameters, EMA and optimiser state one device holds (arrays or sharded
  ShapeDtypeStructs), and the whole state unsharded."""
  mib = {name: sharding.bytes_per_device(getattr(state, name)) / 2**20
         for name in ('params', 'ema', 'opt_state')}
  whole = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) / 2**20
  return ', '.join(f'{k} {v:.2f} MiB' for k, v in mib.items()) + (
      f' ({sum(mib.values()):.2f} MiB in all; {whole:.2f} MiB unsharded)')
