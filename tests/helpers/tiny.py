"""The ONE tiny configuration of the tests, and the one way to turn overrides into flags.

Every test starts from `TINY` (the shapes config shrunk so that a step compiles and runs in
about a second on CPU) and states what it needs beyond it as overrides keyed by
'section.field':

    tiny_config({'mask.ratio': 0.0})           # a ConfigDict, for in-process tests
    as_flags({**TINY, 'training.batch_size': 4})  # ['--config.data.image_size=16', ...]

`tiny_config(mask__ratio=0.0)` (a double underscore for the dot) is accepted too.
conftest.py exposes `tiny_config` as a fixture.
"""

from sparsediff_jax import config_base

TINY = {
    'data.image_size': 16,
    'data.num_train_examples': 64,
    'data.shapes_pairs': 1,
    'model.channels': 8,
    'model.channel_mult': (1, 2),
    'model.attn_resolutions': (8,),
    'training.batch_size': 8,
    'training.num_steps': 4,
    'training.log_every': 2,
    'training.sample_every': 0,
    'training.checkpoint_every': 2,
    'optim.warmup_steps': 2,
    'sampling.sampler': 'heun',          # the step counts the tests assert are Heun's
    'sampling.time_steps': 'default',
    'sampling.num_steps': 2,
    'sampling.grid_size': 2,
}


def tiny_config(overrides: dict | None = None, **kwargs):
  """config_base's config with TINY, then `overrides` ('section.field' -> value) applied."""
  c = config_base.get_config()
  changes = {**TINY, **(overrides or {}),
             **{k.replace('__', '.'): v for k, v in kwargs.items()}}
  for key, value in changes.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _flag_value(value) -> str:
  if isinstance(value, tuple):
    return '(' + ','.join(map(str, value)) + (',' if len(value) == 1 else '') + ')'
  return str(value)


def as_flags(overrides: dict) -> list[str]:
  """['--config.section.field=value', ...] for the CLI (tuples as '(1,2)', '()', '(8,)')."""
  return [f'--config.{k}={_flag_value(v)}' for k, v in overrides.items()]


TINY_FLAGS = as_flags(TINY)
