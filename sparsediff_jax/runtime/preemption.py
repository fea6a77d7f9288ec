"""Clean stops on SIGTERM and SIGINT: a checkpoint at the current step, then exit.

Cloud TPU VMs and most schedulers announce preemption or maintenance with SIGTERM some time
before the machine goes away; Ctrl-C and a notebook's stop button send SIGINT.
`StopRequest`, created before the training loop and asked once per step, turns either into a
stop after the step in flight: the loop writes a checkpoint at that step, waits until it is
on disk, and `train()` raises `TrainingInterrupted` (the CLI then exits with 128 + the
signal number, the shell's code for "ended by that signal", so that job scripts do not take
the run for finished). Rerunning the same command resumes exactly (see checkpoints.py).
The time from the signal to the exit is the rest of the step in flight (and of a sample grid
or evaluation running at that step) plus one checkpoint write.

One process: Python handlers set a flag. A SIGINT after that ends the process at once, for
when even the checkpoint is not wanted (interrupts.py's watcher, one line and exit code
130; KeyboardInterrupt where the watcher is not installed, e.g. a notebook).

Several processes (after jax.distributed.initialize): all must stop at the same step, or the
collective checkpoint write would hang. JAX 0.10's preemption sync manager, which
jax.distributed.initialize creates unless jax_enable_preemption_service=False, installs a
C-level SIGTERM handler in every process. A notice on any process reaches the others through
the coordination service, which picks max(every process's current step) + 1 as the sync
point; `multihost_utils.reached_preemption_sync_point(step)`, called by every process at
every step (a local check, no collective, until a notice arrives), is then True on all
processes at that same step. Orbax's `CheckpointManager.reached_preemption` is a wrapper of
the same call. A Python SIGTERM handler would replace JAX's, so with several processes only
SIGINT gets one, which re-sends SIGTERM to its own process to join the same protocol. With
the preemption service disabled, processes cannot agree without a collective every step:
then a warning says so and SIGTERM ends the process as usual (resume then starts from the
newest periodic checkpoint).
"""

from absl import logging
import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

from sparsediff_jax.runtime import interrupts

HANDLED = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
  """The run stopped on a signal after writing the checkpoint of `step`."""

  def __init__(self, step: int, signum: int):
    self.step, self.signum = step, signum
    super().__init__(f'stopped by {signal.Signals(signum).name} at step {step} after writing '
                     'its checkpoint; run the same command again to resume')


class StopRequest:
  """Listens for SIGTERM/SIGINT from construction until `close()`."""

  def __init__(self):
    self.signum = None                       # the signal that asked to stop
    self._multi = jax.process_count() > 1
    self._sync_available = True
    self._previous = {}
    if threading.current_thread() is not threading.main_thread():
      logging.warning('training runs outside the main thread: SIGTERM/SIGINT cannot be caught '
                      'and will end it without a checkpoint')
      return
    if self._multi:
      self._install(signal.SIGINT, self._forward_to_jax)
    else:
      for signum in HANDLED:
        self._install(signum, self._on_signal)

  def _install(self, signum, handler):
    self._previous[signum] = signal.signal(signum, handler)

  def _on_signal(self, signum, frame):
    if self.signum is not None and signum == signal.SIGINT:
      if interrupts.watching():   # its watcher ends the process with one line
        return
      raise KeyboardInterrupt
    if self.signum is None:
      self.signum = signum
      logging.warning('received %s: stopping after this step with a checkpoint (Ctrl-C again '
                      'to quit without one)', signal.Signals(signum).name)

  def _forward_to_jax(self, signum, frame):
    if self.signum is not None:
      if interrupts.watching():
        return
      raise KeyboardInterrupt
    self.signum = signum
    logging.warning('received SIGINT: asking every process to stop at a common step')
    os.kill(os.getpid(), signal.SIGTERM)   # JAX's preemption notifier listens for SIGTERM

  def should_stop(self, step: int) -> bool:
    """Whether to checkpoint and stop after `step`; call it at every step on every process.

    `step` must grow by exactly 1 from one call to the next (the sync point is the largest
    reported value + 1, reached only on equality): with several steps per compiled call,
    pass the call's index."""
    if not self._multi:
      return self.signum is not None
    if not self._sync_available:
      return False
    try:
      reached = multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError as e:   # jax_enable_preemption_service=False
      logging.warning('%s: a SIGTERM will end the processes without a checkpoint', e)
      self._sync_available = False
      return False
    if reached and self.signum is None:
      self.signum = signal.SIGTERM
    return reached

  def close(self) -> None:
    """Puts the previous handlers back."""
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
