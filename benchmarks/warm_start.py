"""Time to the first training step of the default run, cold (empty compilation cache and a
fresh HOME) and warm (the cache and HOME of the cold run), in fresh workdirs.

    python benchmarks/warm_start.py [--rounds 1] [--baseline REV] [-- extra CLI flags]

Each run is `python -m sparsediff_jax.main --config.training.log_every=1` (the default
shapes config otherwise; log_every changes only what the host logs, not the compiled
step) with SPARSEDIFF_CACHE and HOME in a temporary directory; the clock stops at the
metric line of step 1 (written after step 1 has run) and the process is killed. Prints the
seconds of each run, the phases it logged and the cold/warm ratio.

--baseline REV also times the code of git revision REV (exported with `git archive` into a
temporary folder) in the same rounds, alternating with the working tree's runs, so that
the two are compared under the same load: the ratios, not the absolute seconds, are what a
shared machine can tell.
"""

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_STEP = re.compile(r'^\S+ step 1: ')   # the metric line of step 1 (plain console)
PHASE_END = re.compile(r'^\S+ ((?:compiling|initialising|loading)[^:]*): ([\d.]+ (?:s|min))$')


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def time_to_first_step(code: str, home: str, workdir: str,
                       extra: list[str]) -> tuple[float, float, list]:
  """(seconds from launch to step 1's metric line, CPU seconds the run used until then, the
  phases it logged) of the code in folder `code`, with HOME and the compilation cache in
  `home`. The CPU seconds depend less on the machine's load than the wall time: on an idle
  machine with N cores the wall time is at least CPU / N."""
  env = {**os.environ, 'HOME': home, 'SPARSEDIFF_CACHE': os.path.join(home, 'cache'),
         'PYTHONPATH': code}
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  cmd = [sys.executable, '-m', 'sparsediff_jax.main', f'--workdir={workdir}',
         '--config.training.log_every=1', *extra]
  start, cpu = time.monotonic(), _children_cpu()
  proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
  phases, seconds = [], None
  try:
    for line in proc.stderr:
      if m := PHASE_END.search(line.rstrip()):
        phases.append((m.group(1), m.group(2)))
      if FIRST_STEP.search(line):
        seconds = time.monotonic() - start
        break
    else:
      raise RuntimeError(f'the run of {code} ended (code {proc.wait()}) before step 1')
  finally:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
  return seconds, _children_cpu() - cpu, phases


def export_revision(rev: str, dest: str) -> str:
  """The files of git revision `rev` of this repository, written into `dest`."""
  archive = subprocess.run(['git', '-C', REPO, 'archive', rev], check=True,
                           capture_output=True).stdout
  subprocess.run(['tar', '-x', '-C', dest], input=archive, check=True)
  return dest


def load() -> str:
  return '/'.join(f'{x:.1f}' for x in os.getloadavg())


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--rounds', type=int, default=1)
  parser.add_argument('--baseline', default='',
                      help='a git revision to time alongside the working tree')
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != '--']
  print(f'load average (1/5/15 min) at start: {load()}', flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    codes = {'this tree': REPO}
    if args.baseline:
      baseline = os.path.join(tmp, 'baseline')
      os.makedirs(baseline)
      codes = {f'baseline {args.baseline}': export_revision(args.baseline, baseline), **codes}
    for r in range(args.rounds):
      for name, code in codes.items():
        home = tempfile.mkdtemp(dir=tmp)
        cold, cold_cpu, cold_phases = time_to_first_step(code, home,
                                                         os.path.join(home, 'cold'), extra)
        entries = len(os.listdir(os.path.join(home, 'cache', 'xla')))
        cold_load = load()
        warm, warm_cpu, warm_phases = time_to_first_step(code, home,
                                                         os.path.join(home, 'warm'), extra)
        print(f'round {r}, {name}: cold {cold:.1f} s, CPU {cold_cpu:.1f} s (load {cold_load}) '
              f'{cold_phases}; warm {warm:.1f} s, CPU {warm_cpu:.1f} s (load {load()}) '
              f'{warm_phases}; cold/warm {cold / warm:.2f}; cache entries after cold '
              f'{entries}', flush=True)
  print(f'load average at end: {load()}')


if __name__ == '__main__':
  main()
