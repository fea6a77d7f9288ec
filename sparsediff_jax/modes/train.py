"""`--mode=train`: the training loop around train_step.py's compiled step.

The loop resumes exactly from the newest intact checkpoint, stops cleanly on SIGTERM/SIGINT
(preemption.py) and writes every logged line to WORKDIR/metrics.jsonl too
(docs/troubleshooting.md). Everything it does besides training is a `Periodic` action with
one rule for when it is due: the metric line, sample grids, the evaluation hooks its caller
hands it (training never imports evaluation code) and checkpoints.
"""

from concurrent.futures import ThreadPoolExecutor
import dataclasses
import functools
import os
from typing import Callable, NamedTuple

from absl import logging
import jax
import numpy as np

from sparsediff_jax import data, generate
from sparsediff_jax.console import progress, tb_writer  # console: phases, progress bar, writers
from sparsediff_jax.console.images import make_grid, save_png
from sparsediff_jax.errors import ConfigError
from sparsediff_jax.scoring import fid_scores, window_scoring
from sparsediff_jax.models import count_params
from sparsediff_jax.modes.base import Mode
from sparsediff_jax.runtime import (checkpoints, memory_check, nonfinite, preemption, run_dir,
                                    sharding)
from sparsediff_jax.runtime.run_dir import flatten as _flatten
from sparsediff_jax.train_state import (TrainState, abstract_model_and_state, compile_init,
                                        init_state, make_optimizer, memory_per_device,
                                        restore)
from sparsediff_jax.train_step import check_step_fits, compile_train_step

# A periodic evaluation handed to the loop by its caller (training never imports the
# evaluation code): factory(config, graphdef, mesh, workdir) -> None (off) or
# (every: steps between calls, fn(state) -> dict of scalars to log) or
# (every, fn, stop) with stop(step) -> bool: True once the run has decided by that step
# (asked after each of its calls and on resume): the run checkpoints and ends there like a
# finished run. The factory runs before the data is loaded, so a missing input of the hook
# stops the run before it writes.
EvalHook = Callable[..., tuple | None]


class Tick(NamedTuple):
  """Where the loop is when a periodic action runs."""
  step: int          # the last step trained
  state: TrainState  # the state after it
  data_state: dict   # the data iterator's position after its batch


@dataclasses.dataclass(frozen=True)
class Periodic:
  """Work the loop does every `every` steps (0: never by count) and at the last step.

  at_stop: at a call where the run stops early (a stop signal; for the checkpoint also an
  evaluation hook's decision): 'skip' the action, do it only when it is 'scheduled', or
  'always' do it (the checkpoint that the resume starts from).
  """
  every: int
  fn: Callable[[Tick], None]
  at_stop: str = 'skip'

  def due(self, step: int, is_last: bool, stopping: bool = False) -> bool:
    """The one rule: a multiple of `every` (step: the last step of the call), the last
    step, or per at_stop when the run stops there."""
    if stopping and self.at_stop != 'scheduled':
      return self.at_stop == 'always'
    return is_last or (self.every > 0 and step % self.every == 0)


class MetricWindow:
  """The steps since the last metric line, and the line: their mean metrics, with steps/s
  and the ETA as the progress bar counts them (training time only)."""

  def __init__(self, writer, bar: progress.TrainProgress, monitor, batch_size: int,
               unlogged: list[dict]):
    # After a resume the window starts with the steps the checkpoint's run trained but had
    # not logged yet, so that the line averages the whole window.
    self.history = unlogged
    self._writer, self._bar, self._monitor, self._batch = writer, bar, monitor, batch_size

  def log(self, tick: Tick) -> None:
    failure = self._monitor.check()
    host = jax.device_get(self.history)
    scalars = {k: float(np.mean([h[k] for h in host])) for k in host[0]}
    rate, eta = self._bar.steps_per_second(), self._bar.eta_seconds()
    if rate is not None:   # none yet on the first call (it includes compiling)
      scalars.update(steps_per_sec=rate, images_per_sec=rate * self._batch,
                     eta_minutes=eta / 60.0)
    scalars['skipped_steps'] = self._monitor.skipped_steps
    self._writer.write_scalars(tick.step, scalars)
    self.history = []
    if failure:
      raise failure


def _write_samples(config, workdir, writer, sample_fn, tick: Tick):
  grid_images = sample_fn(tick.state.ema[0])
  if jax.process_index() == 0:
    grid = make_grid(grid_images, rows=config.sampling.grid_size)
    path = os.path.join(workdir, 'samples', f'samples_{tick.step:07d}.png')
    save_png(path, grid, upscale=max(1, 256 // grid.shape[0] + 1))
    writer.write_images(tick.step, {'samples': grid[None]})
    logging.info('wrote %s', path)


def _save_checkpoint(config, ckpt, monitor, window: MetricWindow, tick: Tick):
  if failure := monitor.check():   # never checkpoint past a bad step under 'stop'
    raise failure
  ckpt.save(tick.step, tick.state, {'data': tick.data_state,
                                    'config': run_dir.config_dict(config),
                                    'unlogged_metrics': _history_to_meta(window.history),
                                    **monitor.meta()})


def train(config, workdir: str, *, hooks: tuple[EvalHook, ...] = (),
          record: run_dir.RunRecord | None = None) -> TrainState:
  """Trains (resuming from WORKDIR/checkpoints when present) and returns the final state.

  hooks: periodic evaluations (see EvalHook), e.g. fid_scores.train_fid_hook.
  record: the CLI's run record (run_dir.RunRecord): begun only after every check that can
  refuse the run, undone if the run ends before its first step; with start_over nothing is
  restored. None (a library call): nothing is written besides the run's own outputs.

  Raises preemption.TrainingInterrupted after checkpointing the current step when stopped
  by a signal, nonfinite.NonFiniteError per config.training.on_nonfinite,
  errors.ConfigMismatchError when the checkpoints belong to a different config, and
  checkpoints.CheckpointError when none of them can be read.
  """
  record = record or run_dir.RunRecord(config, workdir, writes=False)
  with record.provisional():
    return _train(config, workdir, hooks, record)


def _train(config, workdir: str, hooks, record: run_dir.RunRecord) -> TrainState:
  record.check()   # the data described, other data than the resumed run's refused
  # --- set up: shapes, the hooks' inputs, the step compiled (refused if too big), data ----
  tc = config.training
  mesh = sharding.make_mesh(config)
  tx, schedule = make_optimizer(config)
  graphdef, target = abstract_model_and_state(config, tx, mesh)   # shapes: nothing allocated
  logging.info('model %s: %d parameters; mesh %s', config.model.name,
               count_params(target.params), dict(mesh.shape))
  logging.info('training state per device: %s', memory_per_device(target))
  memory_check.check_state_fits(target)   # before the data, the checkpoints and any write
  # First, so that a hook's missing input stops the run before it writes anything.
  evaluations = [h for h in (hook(config, graphdef, mesh, workdir) for hook in hooks) if h]
  shardings = jax.tree.map(lambda a: a.sharding, target)
  step_jit = compile_train_step(config, graphdef, tx, schedule, mesh, shardings=shardings)
  # The sampler (its check) and, for a new run, the initialiser compile in other threads
  # while this one compiles the step: much of an XLA compile runs on one core, so a second
  # core takes them off the way to the first step (benchmarks/warm_start.py).
  background = ThreadPoolExecutor(2, thread_name_prefix='compile')
  sampler_fits = background.submit(generate.check_sampler_fits, config, graphdef, mesh,
                                   target.ema[0], config.sampling.grid_size ** 2)
  init_compiled = None if run_dir.has_checkpoints(workdir) else background.submit(
      compile_init, config, tx, mesh, shardings)
  background.shutdown(wait=False)   # the threads end with their job
  with progress.phase('compiling the train step and the sampler'):   # refused if too big
    check_step_fits(config, step_jit, target, mesh)
    sampler_fits.result()
  # Then the data (main.py has checked that it exists): a broken one stops the run before
  # anything is written.
  with progress.phase('loading data'):
    data_it = data.make_train_iterator(config, process_index=jax.process_index(),
                                       process_count=jax.process_count())

  # --- restore: the newest intact checkpoint (none when starting over), or fresh parameters
  make_checkpointer = lambda: checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                                       keep=tc.keep_checkpoints)
  # Opened only where there is something to restore: the workdir is untouched until begin().
  ckpt = (make_checkpointer() if not record.start_over and run_dir.has_checkpoints(workdir)
          else None)
  with progress.phase('looking for checkpoints to restore'):
    restored = None if ckpt is None else restore(config, ckpt, tx, mesh, target)
  skipped_steps, unlogged = 0, []
  if restored is None:
    with progress.phase('initialising parameters'):
      state = init_state(config, tx, mesh, init_compiled and init_compiled.result())
  else:
    start, state, meta = restored
    data_it.set_state(meta['data'])
    skipped_steps = meta.get('skipped_steps', 0)
    unlogged = _history_from_meta(meta.get('unlogged_metrics', []))
    logging.info('resumed from step %d', start)
  start, k = int(state.step), tc.steps_per_call
  stops = [e[2] for e in evaluations if len(e) > 2]
  decided = start > 0 and any(stop(start) for stop in stops)   # stopped there before
  if decided:
    logging.info('the run decided at step %d (an evaluation hook stopped it); nothing to '
                 'train', start)
  if start % k:
    raise ConfigError(
        f'the run stopped at step {start}, not a multiple of training.steps_per_call={k}; '
        'resume with a training.steps_per_call that divides it (e.g. 1)')
  if start >= tc.num_steps:   # a finished run: nothing to do, exit code 0
    logging.warning('%s', _nothing_to_train(config, workdir, start))
    ckpt.close()
    return state

  # --- the run record: nothing above wrote into the workdir --------------------------------
  record.begin()   # provisional until the first step (a stop before it undoes it)
  ckpt = ckpt or make_checkpointer()
  if jax.process_index() == 0 and not config.data.per_process_read:
    run_dir.record_loaded_examples(workdir, len(data_it.images))   # skipped bad files

  # --- before the loop: writers, progress, and the periodic actions, built once -----------
  writer = tb_writer.create_writer(workdir, process_index=jax.process_index(),
                                   resume_step=start)
  if start == 0:
    writer.write_hparams({name: str(v) for name, v in _flatten(config.to_dict()).items()})
  step_fn = progress.time_first_call(step_jit, 'first train step')
  sample_fn = progress.time_first_call(generate.make_grid_sampler(config, graphdef, mesh),
                                       'sampling a grid')
  batches = sharding.prefetch_to_mesh(data_it, mesh, steps_per_call=k)
  monitor = nonfinite.NonFiniteMonitor(tc.on_nonfinite, tc.nonfinite_patience, skipped_steps,
                                       last_checkpoint=lambda: _newest_checkpoint(ckpt))
  stop = preemption.StopRequest()
  # Console progress; at most 2 calls in flight, so a stop is honoured within 2.
  bar = progress.TrainProgress(tc.num_steps, start, enabled=jax.process_index() == 0)
  in_flight = progress.InFlight(depth=2)
  window = MetricWindow(writer, bar, monitor, tc.batch_size, unlogged)
  # A stop logs only at a logging step (the resume logs the rest); it skips samples and
  # evaluations; it always checkpoints.
  log = Periodic(tc.log_every, window.log, at_stop='scheduled')
  extras = [Periodic(tc.sample_every,
                     functools.partial(_write_samples, config, workdir, writer, sample_fn)),
            *(Periodic(every, functools.partial(_write_evaluation, writer, fn))
              for every, fn, *_ in evaluations)]
  save = Periodic(tc.checkpoint_every,
                  functools.partial(_save_checkpoint, config, ckpt, monitor, window),
                  at_stop='always')

  # --- loop: one call of the step, then whatever periodic work is due ---------------------
  step, stopping, is_last = start, False, start == tc.num_steps
  end = start if decided else tc.num_steps
  try:
    for step in range(start + k, end + 1, k):   # `step`: the last step of the call
      batch, data_state = next(batches)
      state, metrics = step_fn(state, batch)
      record.confirm()   # a step trained: the records stay
      bar.update(step, loss=in_flight.push(metrics['loss']))   # console progress
      window.history.append(metrics)
      monitor.observe(step, metrics)
      stopping = stop.should_stop(step // k)   # call index: processes agree on calls
      is_last = step == tc.num_steps
      tick = Tick(step, state, data_state)
      if log.due(step, is_last, stopping):   # training time: it waits for the step
        log.fn(tick)
      with bar.excluded():   # not training time (console progress)
        for action in extras:
          if action.due(step, is_last, stopping):
            action.fn(tick)
        decided = not stopping and any(stop(step) for stop in stops)
        if save.due(step, is_last, stopping or decided):
          save.fn(tick)
      if stopping or decided:
        if decided:
          logging.info('the run decided at step %d (an evaluation hook stopped it)', step)
        break
  except BaseException:
    stop.close()   # a failed run: a SIGTERM now ends it at once, not at a step to come
    raise
  finally:
    bar.close()   # console progress, however the loop ended

  # --- finish: the last checkpoint written, the writers flushed ---------------------------
  try:
    ckpt.wait()
    ckpt.close()
    writer.flush()
  finally:
    stop.close()   # only now: a SIGTERM during the last write must not cut it short
  if stopping and not is_last:
    raise preemption.TrainingInterrupted(step, stop.signum)
  return state


def _write_evaluation(writer, evaluation, tick: Tick) -> None:
  writer.write_scalars(tick.step, evaluation(tick.state))


def _history_to_meta(history: list[dict]) -> list[dict]:
  """The metrics of steps not logged yet, as JSON: {name: [dtype, values]} per call."""
  return [{k: [str(v.dtype), v.tolist()] for k, v in h.items()}
          for h in jax.device_get(history)]


def _history_from_meta(entries: list[dict]) -> list[dict]:
  """_history_to_meta's inverse: the same values, dtypes and shapes (so the same means)."""
  return [{k: np.asarray(values, dtype) for k, (dtype, values) in h.items()} for h in entries]


def finished_run_message(config, workdir: str) -> str | None:
  """What to say instead of training when the newest intact checkpoint in WORKDIR (its
  folder looks whole: run_dir.newest_intact_step, read without Orbax) is already at or past
  training.num_steps; else None (a damaged newest step is for the restore to pass over)."""
  step = run_dir.newest_intact_step(workdir)
  if step is not None and step >= config.training.num_steps:
    return _nothing_to_train(config, workdir, step)
  return None


def _nothing_to_train(config, workdir: str, step: int) -> str:
  return (f'nothing to train: the run in {workdir} is at step {step} and '
          f'training.num_steps={config.training.num_steps}; raise training.num_steps to train '
          'further')


def _newest_checkpoint(ckpt: checkpoints.Checkpointer) -> int | None:
  """The step of the newest checkpoint on disk (after the write in flight), or None."""
  ckpt.wait()
  steps = ckpt.all_steps()
  return steps[-1] if steps else None


def summary(state: TrainState, finished) -> tuple[str, str]:
  """The CLI's last two lines after training (console/summary.py)."""
  return (f'trained to step {int(state.step)} in {finished.took}; checkpoints, sample grids, '
          f'metrics.jsonl and TensorBoard events in {finished.workdir}',
          f'{finished.command("sample")}  (or --mode=research); {finished.tensorboard()}')


MODE = Mode(name='train',
            run=functools.partial(train, hooks=(fid_scores.train_fid_hook, window_scoring.hook)),
            summary=summary, writes_record=True, nothing_to_do=finished_run_message)
