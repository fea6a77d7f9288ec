"""Time to the first training step of the default run, cold (empty compilation cache) and
warm (the cache of the cold run), in fresh workdirs.

    python benchmarks/warm_start.py [--rounds 1] [-- extra CLI flags]

Each run is `python -m sparsediff_jax.main --config.training.log_every=1` (the default
shapes config otherwise; log_every changes only what the host logs, not the compiled
step) with SPARSEDIFF_CACHE in a temporary directory; the clock stops at the metric line
of step 1 (written after step 1 has run) and the process is killed. Prints the seconds of
each run, the phases it logged and the cold/warm ratio.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_STEP = re.compile(r'^\S+ step 1: ')   # the metric line of step 1 (plain console)
PHASE_END = re.compile(r'^\S+ ((?:compiling|initialising|loading)[^:]*): ([\d.]+ (?:s|min))$')


def time_to_first_step(cache: str, workdir: str, extra: list[str]) -> tuple[float, list]:
  env = {**os.environ, 'SPARSEDIFF_CACHE': cache, 'PYTHONPATH': REPO}
  cmd = [sys.executable, '-m', 'sparsediff_jax.main', f'--workdir={workdir}',
         '--config.training.log_every=1', *extra]
  start = time.monotonic()
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
  phases = []
  try:
    for line in proc.stderr:
      if m := PHASE_END.search(line.rstrip()):
        phases.append((m.group(1), m.group(2)))
      if FIRST_STEP.search(line):
        return time.monotonic() - start, phases
    raise RuntimeError(f'the run ended (code {proc.wait()}) before step 1')
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--rounds', type=int, default=1)
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != '--']
  print(f'load average at start: {os.getloadavg()}')
  for r in range(args.rounds):
    with tempfile.TemporaryDirectory() as tmp:
      cache = os.path.join(tmp, 'cache')
      cold, cold_phases = time_to_first_step(cache, os.path.join(tmp, 'cold'), extra)
      entries = len(os.listdir(os.path.join(cache, 'xla')))
      warm, warm_phases = time_to_first_step(cache, os.path.join(tmp, 'warm'), extra)
      print(f'round {r}: cold {cold:.1f} s {cold_phases}; warm {warm:.1f} s {warm_phases}; '
            f'cold/warm {cold / warm:.2f}; cache entries after cold {entries}')
  print(f'load average at end: {os.getloadavg()}')


if __name__ == '__main__':
  main()
