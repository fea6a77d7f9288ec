"""What the console shows while a run works: phases, a training progress bar, an honest ETA.

- `phase(name)`: one line when a phase starts ("compiling the train step") and one with its
  duration when it ends, so that the minutes before the first step are accounted for.
- `TrainProgress`: over the training steps, a tqdm bar (loss, steps/s, ETA) when stderr is a
  terminal, else a plain line every `interval` seconds, e.g.
  "step 120/1000  loss 0.5213  3.1 steps/s  ETA 4.7 min". Its rate and ETA count training
  time only: the first step (which includes compiling it) and whatever runs inside
  `excluded()` (sample grids, checkpoints, evaluation) are left out, so the ETA does not
  jump after each of them. Only the process given `enabled=True` (process 0) prints.
- `InFlight`: bounds how many steps the host dispatches ahead of the device (see its
  docstring), which makes Ctrl-C stop within a step or two and the step times real.

The clock is injected (`clock=`), so the arithmetic is tested without waiting.
"""

import collections
import contextlib
import math
import sys
import time
from typing import Callable

from absl import logging

Clock = Callable[[], float]
_BAR_SECONDS = 0.5   # the bar's numbers are recomputed at most this often


@contextlib.contextmanager
def phase(name: str, *, log: Callable[..., None] = logging.info, clock: Clock = time.monotonic):
  """Logs `name...` on entry and `name: 12.3 s` on exit (also when it raises)."""
  log('%s...', name)
  start = clock()
  try:
    yield
  finally:
    log('%s: %s', name, format_seconds(clock() - start))


def time_first_call(fn: Callable, name: str, **phase_kwargs) -> Callable:
  """`fn` whose first call runs inside `phase(name)`: a jitted function compiles there."""
  called = False

  def wrapper(*args, **kwargs):
    nonlocal called
    if called:
      return fn(*args, **kwargs)
    called = True
    with phase(name, **phase_kwargs):
      return fn(*args, **kwargs)

  return wrapper


def format_seconds(seconds: float) -> str:
  """12.3 s, 4.7 min or 2.1 h."""
  if seconds < 60:
    return f'{seconds:.1f} s'
  if seconds < 3600:
    return f'{seconds / 60:.1f} min'
  return f'{seconds / 3600:.1f} h'


class TrainProgress:
  """Progress over training steps `start`..`total` (see the module docstring).

  Call `update(step, loss)` after each dispatched call (`step`: the last step it ran;
  `loss`: a scalar or array whose mean is shown, read only when a line is drawn, so a
  device array costs nothing on the other steps), wrap non-training work in
  `excluded()`, and `close()` at the end.
  """

  def __init__(self, total: int, start: int = 0, *, enabled: bool = True,
               terminal: bool | None = None, interval: float = 15.0,
               clock: Clock = time.monotonic, write: Callable[[str], None] | None = None,
               bar_factory: Callable[..., object] | None = None):
    """
    Args:
      total: the last step of the run.
      start: the step training starts from (resume).
      enabled: False on every process but 0: nothing is drawn or written.
      terminal: draw a tqdm bar; None = whether stderr is a terminal (console/logs.py).
      interval: seconds between plain lines (terminal=False).
      clock: seconds, monotonic.
      write: where plain lines go (default: absl logging.info).
      bar_factory: tqdm-like class (tests).
    """
    self.total, self.start, self.enabled = total, start, enabled
    self._clock, self._interval = clock, interval
    self._write = write or (lambda line: logging.info('%s', line))
    self._step = start
    self._loss = None
    self._timed_from = None        # (time, step) after the first call: compile excluded
    self._excluded = 0.0           # seconds spent in excluded() since _timed_from
    self._last_line = None
    self._written_step = None
    self._bar = None
    self._restore_log = lambda: None
    if enabled:
      if terminal is None:
        from sparsediff_jax.console import logs
        terminal = logs.stderr_is_terminal()
      if terminal:
        self._bar = self._make_bar(bar_factory)

  def _make_bar(self, factory):
    if factory is None:
      from tqdm import tqdm as factory
    bar = factory(total=self.total, initial=self.start, file=sys.stderr, unit='step',
                  dynamic_ncols=True, mininterval=0.5, smoothing=0,
                  bar_format='{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {postfix}')
    bar.set_description_str('train ', refresh=False)
    self._log_above(bar)
    return bar

  def _log_above(self, bar) -> None:
    """Log lines (absl's handler, also from writer threads) clear the bar, print, and
    redraw it, instead of being glued to its end."""
    if not hasattr(bar, 'external_write_mode'):
      return
    handler = logging.get_absl_handler()
    emit = handler.emit

    def emit_above_bar(record):
      with bar.external_write_mode(file=sys.stderr):
        emit(record)

    handler.emit = emit_above_bar
    self._restore_log = lambda: vars(handler).pop('emit', None)

  # ---- the numbers ------------------------------------------------------------------
  def training_seconds(self, now: float | None = None) -> float:
    """Seconds spent training since the first call finished (exclusions left out)."""
    if self._timed_from is None:
      return 0.0
    now = self._clock() if now is None else now
    return max(now - self._timed_from[0] - self._excluded, 0.0)

  def steps_per_second(self, now: float | None = None) -> float | None:
    """Training steps per second since the first call; None before there is a rate."""
    if self._timed_from is None:
      return None
    seconds = self.training_seconds(now)
    steps = self._step - self._timed_from[1]
    return steps / seconds if steps > 0 and seconds > 0 else None

  def eta_seconds(self, now: float | None = None) -> float | None:
    rate = self.steps_per_second(now)
    return None if rate is None else (self.total - self._step) / rate

  def loss(self) -> float | None:
    if self._loss is None:
      return None
    value = self._loss
    if hasattr(value, 'mean'):
      value = value.mean()
    return float(value)

  def describe(self, now: float | None = None) -> str:
    """'step 120/1000  loss 0.5213  3.1 steps/s  ETA 4.7 min' (parts not yet known left out)."""
    return f'step {self._step}/{self.total}  ' + self._postfix(now)

  def _postfix(self, now=None) -> str:
    parts = []
    loss = self.loss()
    if loss is not None:
      parts.append(f'loss {loss:.4f}' if math.isfinite(loss) else f'loss {loss}')
    rate = self.steps_per_second(now)
    if rate is not None:
      parts.append(f'{rate:.3g} steps/s' if rate >= 0.1 else f'{1 / rate:.3g} s/step')
      parts.append(f'ETA {format_seconds(self.eta_seconds(now))}')
    return '  '.join(parts)

  # ---- events -----------------------------------------------------------------------
  def update(self, step: int, loss=None) -> None:
    """The calls up to `step` are dispatched (and, with InFlight, all but the last two
    done); `loss` of a finished step, or None."""
    now = self._clock()
    if self._timed_from is None:
      self._timed_from = (now, step)   # the first call: its compile is not training time
      self._last_line = now            # and the first plain line waits for a rate
    previous, self._step = self._step, step
    if loss is not None:
      self._loss = loss
    if not self.enabled:
      return
    if self._bar is not None:
      if self._last_line is None or now - self._last_line >= _BAR_SECONDS:
        self._last_line = now   # reading the loss only this often keeps the host free
        self._bar.set_postfix_str(self._postfix(now), refresh=False)
      self._bar.update(step - previous)
    elif now - self._last_line >= self._interval:
      self._last_line, self._written_step = now, step
      self._write(self.describe(now))

  @contextlib.contextmanager
  def excluded(self):
    """Time inside is not training time (sampling, checkpoints, evaluation)."""
    start = self._clock()
    try:
      yield
    finally:
      if self._timed_from is not None:
        self._excluded += self._clock() - start

  def close(self) -> None:
    """Draws the final state: the bar closed, or a last plain line."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.set_postfix_str(self._postfix(), refresh=False)
      self._bar.close()
      self._bar = None
      self._restore_log()
    elif self._step > self.start and self._written_step != self._step:
      self._written_step = self._step
      self._write(self.describe())


class CountProgress:
  """Progress over `total` items (images being sampled): a tqdm bar when stderr is a
  terminal, else a plain line every `interval` seconds and one at the end, e.g.
  "sampling 512/50000 img  34.1 img/s  ETA 24.2 min", so a log file gets lines and no
  carriage returns. Only the process given `enabled=True` (process 0) prints."""

  def __init__(self, total: int, desc: str, unit: str, *, enabled: bool = True,
               terminal: bool | None = None, interval: float = 15.0,
               clock: Clock = time.monotonic, write: Callable[[str], None] | None = None):
    self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
    self.done = 0
    self._clock, self._interval = clock, interval
    self._write = write or (lambda line: logging.info('%s', line))
    self._start = self._last_line = clock()
    self._bar = None
    if enabled:
      from sparsediff_jax.console import logs
      if logs.stderr_is_terminal() if terminal is None else terminal:
        from tqdm import tqdm
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                         dynamic_ncols=True)

  def describe(self, now: float) -> str:
    parts = [f'{self.desc} {self.done}/{self.total} {self.unit}']
    if self.done and now > self._start:
      rate = self.done / (now - self._start)
      parts += [f'{rate:.3g} {self.unit}/s',
                f'ETA {format_seconds((self.total - self.done) / rate)}']
    return '  '.join(parts)

  def update(self, n: int) -> None:
    self.done += n
    if self._bar is not None:
      self._bar.update(n)
    elif self.enabled and self._clock() - self._last_line >= self._interval:
      self._last_line = self._clock()
      self._write(self.describe(self._last_line))

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    elif self.enabled and self.done:
      self._write(f'{self.desc} {self.done}/{self.total} {self.unit} in '
                  f'{format_seconds(self._clock() - self._start)}')


class InFlight:
  """Keeps at most `depth` dispatched steps unfinished.

  jax dispatches asynchronously: without a bound, a host faster than the device queues
  steps until the input pipeline or memory runs out, and a stop request (Ctrl-C, SIGTERM)
  is honoured only after the queue drains (~20 steps of the default run on CPU). `push`
  takes a small output of the step just dispatched (the loss) and waits until the output
  pushed `depth` calls ago is ready, returning it: at most `depth` steps are queued.

  Cost: one host wait per step on a value the device has, with depth >= 2, usually
  computed already: with a step of milliseconds on an accelerator, the next step is
  queued while the current one runs, so the device never waits for the host
  (benchmarks/dispatch_bound.py measures it on CPU).
  """

  def __init__(self, depth: int = 2, wait: Callable | None = None):
    if depth < 1:
      raise ValueError(f'depth must be >= 1, got {depth}')
    self.depth = depth
    self._queue = collections.deque()
    self._wait = wait

  def push(self, value):
    """Queues `value`; returns the value pushed `depth` calls ago once it is ready (or
    None during the first `depth` calls)."""
    self._queue.append(value)
    if len(self._queue) <= self.depth:
      return None
    oldest = self._queue.popleft()
    return self._block(oldest)

  def drain(self) -> None:
    """Waits for every queued value."""
    while self._queue:
      self._block(self._queue.popleft())

  def _block(self, value):
    if self._wait is None:
      import jax
      self._wait = jax.block_until_ready
    return self._wait(value)
