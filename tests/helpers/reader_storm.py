"""Reader storm: readers started at random moments beside a live training run harm nothing.

One tiny CLI training run checkpoints every 2 steps. While it trains, `readers` processes of
`--mode=sample`, `--mode=eval` (seeded Inception weights, a small reference made first by
`--mode=fid_stats`) and `--mode=research` start at seeded random moments (during start-up
or at a random step of the first three quarters of training), at most one sample and one
eval reader at a time and up to three research readers (a research reader starts together
with a second one while there is room, so that two always race for the same output name
at least once). Each reader has its own sampling seed, which its output records
(sample's .npz, eval's metrics_STEP.json, research_metrics.json), so every output is traced
to its reader. At the end:
  * the trainer exited 0, and its metrics.jsonl holds the losses of an undisturbed run of
    the same command (the reference, run first), every step once;
  * every committed checkpoint restores whole, the last equal to the reference's, and no
    step folder was renamed, half-written or left behind;
  * every reader either exited 0 with one output made from a committed checkpoint, or
    exited 2 with one `error:` line (e.g. no checkpoint yet) and no traceback; so readers
    that ran at once each kept their own output (its own reserved suffix, none
    overwritten), and no reservation marker (.NAME.reserved) is left.

python -m tests.helpers.reader_storm [READERS] [SEED] [STEPS] prints the counts
(docs/troubleshooting.md, "Reader storm"); `python -m tests.helpers.reader_storm 20` runs the
20-reader storm (the slow test runs 9). All processes share one persistent JAX compilation
cache.
"""

import glob
import json
import os
import random
import re
import sys
import tempfile
import time

import numpy as np

from tests.helpers.cli_runs import TINY, env, error_lines, run, start, timing

EVERY = 2   # checkpoint interval, steps
SEED0 = 100  # reader i samples with sampling.seed = SEED0 + i
KINDS = ('sample', 'eval', 'research')
AT_ONCE = {'sample': 1, 'eval': 1, 'research': 3}   # readers of each mode running at a time


def reader_args(kind: str, eval_args: list[str]) -> list[str]:
  if kind == 'sample':
    return ['--mode=sample', '--config.sampling.num_samples=4',
            '--config.sampling.save_npz=True', '--config.eval.batch_size=4']
  if kind == 'research':
    return ['--mode=research', '--config.research.num_samples=4',
            '--config.research.batch_size=4', '--config.research.locality_images=1',
            '--config.research.locality_times=1', '--config.research.memorization_grid=2']
  return ['--mode=eval', '--config.eval.num_samples=4', '--config.eval.batch_size=4',
          '--config.eval.reference_features=0', '--config.eval.memorization_samples=0',
          *eval_args]


def reader_outputs(workdir: str) -> dict[int, list[int]]:
  """{sampling seed: [checkpoint steps of the outputs that seed made]} of every reader."""
  found: dict[int, list[int]] = {}
  for path in glob.glob(os.path.join(workdir, 'samples', 'sample_mode_*.npz')):
    with np.load(path) as f:
      found.setdefault(int(f['seed']), []).append(int(f['step']))
  for path in glob.glob(os.path.join(workdir, 'eval', 'metrics_*.json')):
    with open(path) as f:
      m = json.load(f)
    found.setdefault(int(m['seed']), []).append(int(m['step']))
  for path in glob.glob(os.path.join(workdir, 'research_metrics*.json')):
    with open(path) as f:
      m = json.load(f)
    found.setdefault(int(m['sampling_seed']), []).append(int(m['step']))
  return found


def _logged(workdir: str) -> int:
  """Lines in WORKDIR/metrics.jsonl (one per step): how far the trainer is."""
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      return f.read().count('\n')
  except FileNotFoundError:
    return 0


def _step_folders(workdir: str) -> list[str]:
  return sorted(os.listdir(os.path.join(workdir, 'checkpoints')))


def _restore(workdir: str, step: int):
  import jax
  import orbax.checkpoint as ocp
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  return jax.device_get(ocp.StandardCheckpointer().restore(path))


def _make_reference_stats(root: str, cli_env: dict, args) -> list[str]:
  """Seeded Inception weights and reference statistics: the eval readers' flags."""
  from tests.helpers.eval_fakes import seeded_inception_state_dict, write_torch_zip
  from sparsediff_jax.metrics.fid import inception_weights
  weights = write_torch_zip(os.path.join(root, 'seeded_inception.pth'),
                            seeded_inception_state_dict())
  flags = [f'--config.eval.inception_weights={weights}',
           f'--config.eval.inception_sha256={inception_weights.sha256_file(weights)}']
  result = run(*args, '--mode=fid_stats', f'--workdir={os.path.join(root, "ref")}', *flags,
               '--config.eval.batch_size=8', env=cli_env, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  reference, = glob.glob(os.path.join(root, 'ref', 'fid_stats', '*.npz'))
  return [*flags, f'--config.eval.reference_stats={reference}']


def storm(root: str, readers: int = 20, seed: int = 0, num_steps: int = 100) -> dict:
  """Runs the storm in the folder `root`; returns the counts and the checks' results."""
  rng = random.Random(seed)
  cli_env = {**env(root, jax_cache=os.path.join(root, 'jax_cache')),
             'SPARSEDIFF_CACHE': os.path.join(root, 'cache')}
  args = (*TINY, f'--config.training.num_steps={num_steps}')
  t0 = time.time()
  reference = os.path.join(root, 'reference')
  result = run(*args, f'--workdir={reference}', f'--config.training.checkpoint_every={num_steps}',
               env=cli_env, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  t_reference = time.time() - t0
  eval_args = _make_reference_stats(root, cli_env, args)

  workdir = os.path.join(root, 'run')
  trainer = start(*args, f'--workdir={workdir}', f'--config.training.checkpoint_every={EVERY}',
                  env=cli_env, log_path=os.path.join(root, 'trainer.log'))
  # Reader i starts once the trainer has logged moments[i] steps (and its mode is free):
  # spread over start-up (0) and the first three quarters of training.
  moments = sorted(0 if rng.random() < 1 / 6 else rng.randint(1, num_steps * 3 // 4)
                   for _ in range(readers))
  started = []   # dicts: kind, seed, proc, log
  most_research = 0   # research readers running at once, at most
  while trainer.poll() is None and len(started) < readers:
    running = [r['kind'] for r in started if r['proc'].poll() is None]
    room = {k: AT_ONCE[k] - running.count(k) for k in KINDS}
    free = [k for k in KINDS if room[k] > 0]
    if not free or _logged(workdir) < moments[len(started)]:
      time.sleep(0.05)
      continue
    kind = rng.choice(free)
    if 'research' in free and len(started) >= readers - 2 and (
        'research' not in [r['kind'] for r in started]):
      kind = 'research'   # the last chance for two research readers at once
    together = min(2, room[kind], readers - len(started)) if kind == 'research' else 1
    for _ in range(together):
      reader_seed = SEED0 + len(started)
      log = os.path.join(root, f'reader{len(started)}-{kind}.log')
      proc = start(*args, f'--workdir={workdir}', *reader_args(kind, eval_args),
                   f'--config.sampling.seed={reader_seed}', env=cli_env, log_path=log)
      started.append(dict(kind=kind, seed=reader_seed, proc=proc, log=log))
    if kind == 'research':
      most_research = max(most_research, together + running.count('research'))
  trainer_code = trainer.wait(timeout=1800)
  for r in started:
    r['code'] = r['proc'].wait(timeout=900)

  with open(os.path.join(root, 'trainer.log')) as f:
    trainer_log = f.read()
  folders = _step_folders(workdir)
  committed = [int(n) for n in folders if n.isdigit()]
  outputs = reader_outputs(workdir)
  counts = {'readers': len(started), 'succeeded': 0, 'refused_in_one_line': 0,
            'bad_readers': [], 'by_kind': {}, 'steps_read': []}
  for r in started:
    with open(r['log']) as f:
      text = f.read()
    steps = outputs.get(r['seed'], [])
    ok = r['code'] == 0 and len(steps) == 1 and steps[0] % EVERY == 0 and (
        0 < steps[0] <= num_steps) and 'Traceback' not in text
    refused = r['code'] == 2 and len(error_lines(text)) == 1 and 'Traceback' not in text
    counts['succeeded'] += ok
    counts['refused_in_one_line'] += refused and not steps
    counts['steps_read'] += steps if ok else []
    counts['by_kind'][r['kind']] = counts['by_kind'].get(r['kind'], 0) + 1
    if not (ok or (refused and not steps)):
      counts['bad_readers'].append((r['kind'], r['code'], steps, text[-1500:]))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    got = [(r['step'], r['loss']) for r in map(json.loads, f.read().splitlines()) if 'loss' in r]
  with open(os.path.join(reference, 'metrics.jsonl')) as f:
    want = [(r['step'], r['loss']) for r in map(json.loads, f.read().splitlines()) if 'loss' in r]
  intact = True
  for step in committed:
    try:
      state = _restore(workdir, step)
    except Exception:  # noqa: BLE001 - any failure to read is damage
      intact = False
      continue
    if step == num_steps:
      import jax
      same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), state,
                                          _restore(reference, num_steps)))
      intact = intact and all(same)
  counts.update(
      trainer_exit_code=trainer_code,
      trainer_clean='Traceback' not in trainer_log and not re.search(r'^error:', trainer_log,
                                                                      re.M),
      losses_equal=got == want and [s for s, _ in got] == list(range(1, num_steps + 1)),
      checkpoints=folders, checkpoints_intact=intact and num_steps in committed,
      only_committed_steps=all(n.isdigit() for n in folders),
      most_research_at_once=most_research,
      markers_left=sorted(os.path.relpath(p, workdir) for p in glob.glob(
          os.path.join(workdir, '**', '.*.reserved'), recursive=True)),
      steps=num_steps, **timing(t0, t_reference))
  return counts


if __name__ == '__main__':
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
  seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
  steps = int(sys.argv[3]) if len(sys.argv) > 3 else 100
  with tempfile.TemporaryDirectory() as tmp:
    print(json.dumps(storm(tmp, readers=n, seed=seed, num_steps=steps), indent=2,
                     default=str))
