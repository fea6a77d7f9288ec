"""How fast a bad config value is reported, against the cost of importing jax.

    python benchmarks/config_error_latency.py [--rounds 5]

Times `python -m sparsediff_jax.main --config.mask.ratio=1.5` (one `error:` line, exit 2)
and `python -c "import jax"`, alternating, and prints each time, the medians and their
ratio. A ratio well below 1 means the value is checked before jax is imported.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    'bad mask.ratio (CLI)': [sys.executable, '-m', 'sparsediff_jax.main',
                             '--config.mask.ratio=1.5'],
    'import jax': [sys.executable, '-c', 'import jax'],
}


def timed(cmd, cwd, expect: int) -> float:
  start = time.perf_counter()
  result = subprocess.run(cmd, cwd=cwd, env={**os.environ, 'PYTHONPATH': REPO},
                          capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if result.returncode != expect:
    raise RuntimeError(f'{cmd}: exit {result.returncode}, expected {expect}:\n'
                       f'{result.stderr[-2000:]}')
  return seconds


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  times = {name: [] for name in COMMANDS}
  print(f'load average at start {os.getloadavg()}')
  with tempfile.TemporaryDirectory() as cwd:   # the CLI must not find or write runs/ here
    for r in range(args.rounds):
      for name, cmd in (COMMANDS.items() if r % 2 == 0 else reversed(COMMANDS.items())):
        times[name].append(timed(cmd, cwd, 2 if 'CLI' in name else 0))
  for name, values in times.items():
    print(f'{name:22s} median {statistics.median(values):6.2f} s  '
          f'({", ".join(f"{v:.2f}" for v in values)})')
  cli, jax = (statistics.median(v) for v in times.values())
  print(f'CLI error / import jax: {cli / jax:.2f}')
  print(f'load average at end {os.getloadavg()}')


if __name__ == '__main__':
  main()
