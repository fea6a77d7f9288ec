"""The last two lines of every mode: what was done, how long it took and where the outputs
are, then the command a user would run next. Pure: the CLI logs what these return."""

import shlex

from sparsediff_jax.console.progress import format_seconds

_CLI = 'python -m sparsediff_jax.main'


def _command(mode: str, workdir: str, config_path: str | None) -> str:
  config = f' --config={shlex.quote(config_path)}' if config_path else ''
  return f'{_CLI}{config} --mode={mode} --workdir={shlex.quote(workdir)}'


def _tensorboard(workdir: str) -> str:
  return f'tensorboard --logdir {shlex.quote(workdir)}'


def lines(mode: str, result, workdir: str, seconds: float,
          config_path: str | None = None) -> tuple[str, str]:
  """('done: ...', 'next: ...') for `mode`, given what the mode returned (train: the final
  TrainState; sample: the written paths; research and eval: their metrics dicts;
  fid_stats: the statistics' path) and its wall time in seconds."""
  took = format_seconds(seconds)
  if mode == 'train':
    done = (f'trained to step {int(result.step)} in {took}; checkpoints, sample grids, '
            f'metrics.jsonl and TensorBoard events in {workdir}')
    after = (f'{_command("sample", workdir, config_path)}  (or --mode=research); '
             f'{_tensorboard(workdir)}')
  elif mode == 'sample':
    done = f'sampled in {took}; wrote {", ".join(result)}'
    after = _command('research', workdir, config_path)
  elif mode == 'research':
    written = result.get('metrics_file', f'{workdir}/research_metrics.json')
    done = (f'research metrics of step {result.get("step")} in {took}; wrote '
            f'{written} and {workdir}/research/')
    after = _tensorboard(workdir)
  elif mode == 'fid_stats':
    done = f'reference statistics in {took}; wrote {result}'
    after = _command('eval', workdir, config_path)
  elif mode == 'eval':
    fid = result.get('fid')
    score = f'FID {fid:.3f}' if isinstance(fid, (int, float)) else 'evaluated'
    done = (f'{score} at step {result.get("step")} over {result.get("num_samples")} samples '
            f'in {took}; wrote {workdir}/eval/')
    after = _tensorboard(workdir)
  else:
    raise ValueError(f'unknown mode {mode!r}')
  return f'done: {done}', f'next: {after}'
