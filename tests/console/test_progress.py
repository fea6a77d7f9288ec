"""progress.py: phases, the training progress reporter (rate and ETA over training time
only) and the bound on steps in flight; driven by a fake clock, no waiting."""

import pytest

from sparsediff_jax.console import progress


class FakeClock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_phase_logs_start_and_duration_also_on_error():
  clock, lines = FakeClock(), []
  log = lambda fmt, *args: lines.append(fmt % args)
  with progress.phase('compiling the train step', log=log, clock=clock):
    clock.now += 95.0
  with pytest.raises(RuntimeError):
    with progress.phase('loading data', log=log, clock=clock):
      clock.now += 2.5
      raise RuntimeError('boom')
  assert lines == ['compiling the train step...', 'compiling the train step: 1.6 min',
                   'loading data...', 'loading data: 2.5 s']


def test_time_first_call_wraps_only_the_first_call():
  lines, calls = [], []
  fn = progress.time_first_call(lambda x: calls.append(x) or x * 2, 'compiling',
                                log=lambda fmt, *a: lines.append(fmt % a), clock=FakeClock())
  assert [fn(1), fn(2), fn(3)] == [2, 4, 6]
  assert calls == [1, 2, 3] and len(lines) == 2 and lines[0] == 'compiling...'


def test_rate_and_eta_exclude_the_first_call_and_excluded_time():
  clock = FakeClock()
  p = progress.TrainProgress(1000, 0, terminal=False, clock=clock, write=lambda s: None)
  clock.now += 120.0            # compiling inside the first call
  p.update(1)
  assert p.steps_per_second() is None and p.eta_seconds() is None
  for step in range(2, 101):    # 99 steps at 0.5 s
    clock.now += 0.5
    p.update(step)
  with p.excluded():            # a sample grid
    clock.now += 30.0
  for step in range(101, 201):  # 100 more at 0.5 s
    clock.now += 0.5
    p.update(step)
  assert p.training_seconds() == pytest.approx(99.5)
  assert p.steps_per_second() == pytest.approx(2.0)
  assert p.eta_seconds() == pytest.approx(800 / 2.0)


def test_eta_does_not_jump_after_a_checkpoint():
  clock = FakeClock()
  p = progress.TrainProgress(200, 0, terminal=False, clock=clock, write=lambda s: None)
  p.update(1)
  for step in range(2, 51):
    clock.now += 1.0
    p.update(step)
  before = p.eta_seconds()
  with p.excluded():
    clock.now += 600.0
  clock.now += 1.0
  p.update(51)
  assert p.eta_seconds() == pytest.approx(before - 1.0)


def test_plain_lines_every_interval_with_loss_rate_and_eta():
  clock, lines = FakeClock(), []
  p = progress.TrainProgress(1000, 100, terminal=False, interval=15.0, clock=clock,
                             write=lines.append)
  p.update(101, loss=0.9)                       # first call: no line, no rate
  for step in range(102, 161):
    clock.now += 0.5
    p.update(step, loss=0.52)
  # 29.5 s of training: lines at 15 s and 30 s would be due; 30 s is not reached yet.
  assert len(lines) == 1
  assert lines[0] == 'step 131/1000  loss 0.5200  2 steps/s  ETA 7.2 min'
  p.close()
  assert lines[-1].startswith('step 160/1000  loss 0.5200  2 steps/s  ETA ')
  p.close()
  assert len(lines) == 2   # no duplicate of the same step


def test_loss_array_is_averaged_and_slow_steps_show_seconds_per_step():
  np = pytest.importorskip('numpy')
  clock = FakeClock()
  p = progress.TrainProgress(10, 0, terminal=False, clock=clock, write=lambda s: None)
  p.update(1, loss=np.array([1.0, 3.0]))
  clock.now += 40.0
  p.update(2)
  assert p.describe() == 'step 2/10  loss 2.0000  40 s/step  ETA 5.3 min'


def test_disabled_reporter_writes_nothing():
  clock, lines = FakeClock(), []
  p = progress.TrainProgress(10, 0, enabled=False, terminal=False, interval=0.0, clock=clock,
                             write=lines.append)
  for step in range(1, 11):
    clock.now += 1.0
    p.update(step, loss=1.0)
  p.close()
  assert lines == [] and p.steps_per_second() == pytest.approx(1.0)


class FakeBar:
  instances = []

  def __init__(self, total, initial, **kwargs):
    self.total, self.n, self.postfix, self.closed = total, initial, '', False
    FakeBar.instances.append(self)

  def set_description_str(self, s, refresh=True):
    pass

  def set_postfix_str(self, s, refresh=True):
    self.postfix = s

  def update(self, n):
    self.n += n

  def close(self):
    self.closed = True


def test_terminal_bar_counts_steps_and_shows_the_numbers():
  clock = FakeClock()
  p = progress.TrainProgress(100, 10, terminal=True, clock=clock, bar_factory=FakeBar)
  bar = FakeBar.instances[-1]
  p.update(11, loss=2.0)
  for step in range(12, 31):
    clock.now += 0.25
    p.update(step, loss=1.5)
  p.close()
  assert bar.n == 30 and bar.closed
  assert bar.postfix == 'loss 1.5000  4 steps/s  ETA 17.5 s'


def test_in_flight_waits_for_the_value_pushed_depth_calls_ago():
  waited = []
  bound = progress.InFlight(depth=2, wait=lambda v: waited.append(v) or v)
  assert [bound.push(i) for i in range(5)] == [None, None, 0, 1, 2]
  assert waited == [0, 1, 2]
  bound.drain()
  assert waited == [0, 1, 2, 3, 4]
  with pytest.raises(ValueError):
    progress.InFlight(depth=0)


def test_in_flight_with_jax_returns_ready_arrays():
  jax = pytest.importorskip('jax')
  f = jax.jit(lambda x: x + 1)
  bound, x, done = progress.InFlight(depth=2), jax.numpy.zeros(()), []
  for _ in range(6):
    x = f(x)
    out = bound.push(x)
    if out is not None:
      done.append(float(out))
  assert done == [1.0, 2.0, 3.0, 4.0]


def test_count_progress_off_a_terminal_writes_plain_lines_and_a_last_one():
  clock, lines = FakeClock(), []
  p = progress.CountProgress(100, 'sampling', 'img', terminal=False, interval=10.0,
                             clock=clock, write=lines.append)
  for _ in range(10):
    clock.now += 4.0
    p.update(8)
  p.close()
  assert lines == ['sampling 24/100 img  2 img/s  ETA 38.0 s',
                   'sampling 48/100 img  2 img/s  ETA 26.0 s',
                   'sampling 72/100 img  2 img/s  ETA 14.0 s',
                   'sampling 80/100 img in 40.0 s']


def test_count_progress_disabled_writes_nothing():
  lines = []
  p = progress.CountProgress(10, 'sampling', 'img', enabled=False, terminal=True,
                             interval=0.0, write=lines.append)
  p.update(5)
  p.close()
  assert lines == [] and p.done == 5


def test_sampling_writes_no_carriage_return_into_a_log(capsys):
  """generate.sample_batches with stderr a file (as under pytest): lines, no tqdm bar."""
  import numpy as np
  from sparsediff_jax import generate
  batches = list(generate.sample_batches(lambda params, idx: idx, None, 10, 4))
  assert [list(i) for _, i in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
  assert np.all(batches[-1][0] == [8, 9, 9, 9])
  err = capsys.readouterr().err
  assert '\r' not in err and '%|' not in err
