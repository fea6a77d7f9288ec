"""--start_over under readers: research and sample readers started on a finished tiny run
while `--start_over` retrains in the same workdir never write into the new run what they
read from the old one, and the old run's files stay whole under WORKDIR/previous-*/.

Each reader either read the old run (its output, made from step 2 or 4, is under
previous-*/, or it exited 2 with one line saying the run changed), found no checkpoint
yet (exit 2, one line) or read the new run (its output, from step 3 or 6, is in the new
run's folders): the two runs checkpoint at different steps, so an output tells which run
it came from. All processes share one persistent JAX compilation cache."""

import glob
import os
import time

import pytest

from tests.helpers.cli_runs import TINY, env, error_lines, run, snapshot, start
from tests.helpers.reader_storm import SEED0, reader_args, reader_outputs

OLD = ('--config.training.num_steps=4', '--config.training.checkpoint_every=2')
NEW = ('--config.training.num_steps=6', '--config.training.checkpoint_every=3')
READERS = ('research', 'research', 'sample')   # the last starts after the move


@pytest.mark.slow
def test_readers_never_write_into_a_run_that_start_over_replaced(tmp_path):
  root, workdir = str(tmp_path), str(tmp_path / 'run')
  cli_env = env(root, jax_cache=os.path.join(root, 'jax_cache'))
  old = run(*TINY, *OLD, f'--workdir={workdir}', env=cli_env)
  assert old.returncode == 0, old.stderr[-3000:]
  before = snapshot(workdir)

  trainer = start(*TINY, *NEW, f'--workdir={workdir}', '--start_over', env=cli_env,
                  log_path=os.path.join(root, 'trainer.log'))
  readers = []   # (process, sampling seed)

  def start_reader(kind):
    seed = SEED0 + len(readers)
    readers.append((start(*TINY, *NEW, f'--workdir={workdir}', *reader_args(kind, []),
                          f'--config.sampling.seed={seed}', env=cli_env,
                          log_path=os.path.join(root, f'reader{seed - SEED0}.log')), seed))

  for kind in READERS[:-1]:   # with the trainer: they meet the old run
    start_reader(kind)
  while not glob.glob(os.path.join(workdir, 'previous-*')) and trainer.poll() is None:
    time.sleep(0.05)
  start_reader(READERS[-1])   # once it is moved: the new run, with or without a checkpoint
  assert trainer.wait(timeout=600) == 0, open(os.path.join(root, 'trainer.log')).read()[-3000:]
  codes = [proc.wait(timeout=600) for proc, _ in readers]

  previous, = glob.glob(os.path.join(workdir, 'previous-*'))
  moved = snapshot(previous)
  assert {k: moved.get(k) for k in before if k != '.lock'} == {
      k: v for k, v in before.items() if k != '.lock'}   # the old run's files, whole
  in_old, in_new = reader_outputs(previous), reader_outputs(workdir)
  print({'exit codes': codes, 'outputs under previous-*': in_old, 'outputs in the new run':
         in_new})
  for (_, seed), code in zip(readers, codes):
    with open(os.path.join(root, f'reader{seed - SEED0}.log')) as f:
      log = f.read()
    assert 'Traceback' not in log, log[-3000:]
    assert set(in_new.get(seed, [])) <= {3, 6}, (seed, in_new, log[-3000:])   # new run's
    assert set(in_old.get(seed, [])) <= {2, 4}, (seed, in_old, log[-3000:])
    made = in_new.get(seed, []) + in_old.get(seed, [])
    if code == 0:
      assert len(made) == 1, (seed, made, log[-3000:])
    else:
      assert code == 2 and len(error_lines(log)) == 1 and not made, (code, made, log[-3000:])
  assert not glob.glob(os.path.join(workdir, '**', '.*.reserved'), recursive=True)
