"""Fault-injection soak of the real CLI: a tiny run killed again and again, then compared.

A training run with a checkpoint every 2 steps is started, killed with SIGKILL or SIGTERM at
a seeded random moment, and restarted with the same command, `faults` times; the last
restart runs to the end. The moments are drawn from three kinds: a random time after the
start (mostly during start-up and compilation), while a checkpoint is being written (its
`*.orbax-checkpoint-tmp*` folder exists), and a random number of steps after the last
restart's first step (around the asynchronous saves). At the end metrics.jsonl must hold
every step once, with the same `loss` as an uninterrupted run.

python -m tests.helpers.soak_runs [FAULTS] [SEED] prints the counts (docs/troubleshooting.md,
"Fault injection"). All runs share one persistent JAX compilation cache, so a restart costs
the Python and JAX start-up, not a compilation.
"""

import json
import os
import random
import signal
import sys
import tempfile
import time

from tests.helpers.cli_runs import TINY, env, run, start, timing

EVERY = 2   # checkpoint interval, steps


def _steps(workdir: str) -> list[int]:
  """The steps in metrics.jsonl, in file order (a line still being written is skipped)."""
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return []
  out = []
  for line in lines:
    try:
      out.append(json.loads(line)['step'])
    except ValueError:
      pass
  return out


def _losses(workdir: str) -> list[tuple[int, float]]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [(r['step'], r['loss']) for r in map(json.loads, f.read().splitlines())]


def _committed(workdir: str) -> list[int]:
  directory = os.path.join(workdir, 'checkpoints')
  try:
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())
  except FileNotFoundError:
    return []


def _saving(workdir: str) -> bool:
  directory = os.path.join(workdir, 'checkpoints')
  try:
    return any('orbax-checkpoint-tmp' in n for n in os.listdir(directory))
  except FileNotFoundError:
    return False


def _wait_for(condition, proc, timeout: float) -> bool:
  """Polls `condition` every 5 ms; False if the process ended or time ran out first."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if condition():
      return True
    time.sleep(0.005)
  return False


def soak(root: str, faults: int = 20, seed: int = 0, num_steps: int = 80) -> dict:
  """Runs the soak in the folder `root`; returns the counts and whether the losses match."""
  rng = random.Random(seed)
  cli_env = env(root, jax_cache=os.path.join(root, 'jax_cache'))
  args = (*TINY, f'--config.training.num_steps={num_steps}',
          f'--config.training.checkpoint_every={EVERY}')
  t0 = time.time()
  reference = os.path.join(root, 'reference')
  result = run(*args, f'--workdir={reference}', env=cli_env)
  assert result.returncode == 0, result.stderr[-3000:]
  t_reference = time.time() - t0

  workdir = os.path.join(root, 'run')
  counts = {'faults_injected': 0, 'survived': 0, 'steps_lost': 0, 'restarts': 0,
            'by_kind': {}, 'by_signal': {}}
  pending = False   # a fault was injected into the previous run
  attempt = 0
  while True:
    attempt += 1
    log = os.path.join(root, f'run{attempt}.log')
    proc = start(*args, f'--workdir={workdir}', env=cli_env, log_path=log)
    counts['restarts'] += attempt > 1
    injecting = counts['faults_injected'] < faults
    kind = rng.choice(('time', 'saving', 'steps')) if injecting else None
    signum = rng.choice((signal.SIGKILL, signal.SIGTERM)) if injecting else None
    hit = False
    if kind == 'time':
      hit = not _wait_for(lambda: False, proc, rng.uniform(0.5, 8.0))
    elif kind == 'saving':
      hit = _wait_for(lambda: _saving(workdir), proc, 120)
    elif kind == 'steps':
      base = len(_steps(workdir))
      k = rng.randint(1, 5)
      hit = _wait_for(lambda: len(_steps(workdir)) >= base + k, proc, 120)
    if hit and proc.poll() is None:
      proc.send_signal(signum)
    code = proc.wait(timeout=300)
    with open(log) as f:
      text = f.read()
    expected = code in (0, -signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM)
    clean = expected and 'Traceback' not in text and '\nerror:' not in text
    if pending:   # the previous fault is survived when this run went on without an error
      counts['survived'] += clean
      pending = False
    if code == 0:
      break
    assert clean, (code, text[-3000:])
    assert hit, f'run {attempt} ended with {code} before the fault was injected'
    counts['faults_injected'] += 1
    counts['by_kind'][kind] = counts['by_kind'].get(kind, 0) + 1
    name = signal.Signals(signum).name
    counts['by_signal'][name] = counts['by_signal'].get(name, 0) + 1
    # Lost: steps logged before the fault that the next run must train again, i.e. those
    # after the newest committed checkpoint.
    seen, committed = _steps(workdir), _committed(workdir)
    counts['steps_lost'] += max(0, (seen[-1] if seen else 0) - (committed[-1] if committed else 0))
    pending = True

  got, want = _losses(workdir), _losses(reference)
  steps = [s for s, _ in got]
  counts.update(
      steps=num_steps, each_step_once=steps == list(range(1, num_steps + 1)),
      losses_equal=got == want, **timing(t0, t_reference))
  return counts


if __name__ == '__main__':
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
  seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
  with tempfile.TemporaryDirectory() as tmp:
    print(json.dumps(soak(tmp, faults=n, seed=seed), indent=2))
