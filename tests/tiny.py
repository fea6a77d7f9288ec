"""A tiny configuration shared by the tests: compiles and steps in about a second on CPU."""

from sparsediff_jax import config_base


def tiny_config(**overrides):
  """The shapes config shrunk to 16x16 images and a two-level, 8-channel U-Net.

  `overrides` maps 'section.field' (with '.' written as '__') to a value.
  """
  c = config_base.get_config()
  c.data.image_size = 16
  c.data.num_train_examples = 64
  c.data.shapes_pairs = 1
  c.model.channels = 8
  c.model.channel_mult = (1, 2)
  c.model.attn_resolutions = (8,)
  c.training.batch_size = 8
  c.training.num_steps = 4
  c.training.log_every = 2
  c.training.sample_every = 0
  c.training.checkpoint_every = 2
  c.optim.warmup_steps = 2
  c.sampling.num_steps = 2
  c.sampling.grid_size = 2
  for key, value in overrides.items():
    section, field = key.split('__')
    c[section][field] = value
  return c


# The same shrink as command-line overrides, for CLI tests.
TINY_FLAGS = [
    '--config.data.image_size=16', '--config.data.num_train_examples=64',
    '--config.data.shapes_pairs=1', '--config.model.channels=8',
    '--config.model.channel_mult=(1,2)', '--config.model.attn_resolutions=(8,)',
    '--config.training.batch_size=8', '--config.training.log_every=2',
    '--config.training.sample_every=0', '--config.training.checkpoint_every=2',
    '--config.optim.warmup_steps=2', '--config.sampling.num_steps=2',
    '--config.sampling.grid_size=2',
]
