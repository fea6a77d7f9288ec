"""Checks a config before anything compiles or touches the workdir.

Every problem becomes a `ConfigError` whose message names the field, the value and what is
allowed; the CLI prints it as one line and exits with code 2.
"""

import numbers


class ConfigError(ValueError):
  """A config value that cannot work, reported before any work starts."""


def _fail(field, value, allowed):
  raise ConfigError(f'config.{field}={value!r} is invalid: {allowed}')


def _get(config, field):
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def _choice(config, field, choices):
  value = _get(config, field)
  if value not in choices:
    _fail(field, value, f'choose one of {", ".join(map(repr, choices))}')


def _number(config, field, lo=None, hi=None, *, integer=False, lo_open=False, hi_open=True,
            allowed=None):
  """Checks that a field is a number (an integer if `integer`) within [lo, hi)."""
  value = _get(config, field)
  ok = (isinstance(value, numbers.Integral if integer else numbers.Real)
        and not isinstance(value, bool))
  if ok and lo is not None:
    ok = value > lo if lo_open else value >= lo
  if ok and hi is not None:
    ok = value < hi if hi_open else value <= hi
  if not ok:
    bounds = []
    if lo is not None:
      bounds.append(f'{">" if lo_open else ">="} {lo}')
    if hi is not None:
      bounds.append(f'{"<" if hi_open else "<="} {hi}')
    _fail(field, value, allowed or ' '.join(
        ['must be an integer' if integer else 'must be a number'] + [' and '.join(bounds)]))


def validate_config(config, num_devices: int) -> None:
  """Raises ConfigError for the first invalid field of `config`."""
  # Imported here so that `--help` and config errors stay fast.
  from sparsediff_jax import data, formulations, models, samplers

  _number(config, 'mask.ratio', 0.0, 1.0,
          allowed='the fraction of pixels dropped from the loss must be in [0, 1)')
  _choice(config, 'mask.normalize', ('kept', 'all'))
  _number(config, 'mask.patch_size', 1, integer=True)
  _choice(config, 'data.name', data.DATASETS)
  _choice(config, 'model.name', models.MODELS)
  _choice(config, 'model.dtype', tuple(models.DTYPES))
  _choice(config, 'diffusion.formulation', formulations.FORMULATIONS)
  _choice(config, 'diffusion.time_sampling', ('uniform', 'logit_normal'))
  _choice(config, 'diffusion.ddpm_schedule', ('linear', 'cosine'))
  _choice(config, 'sampling.sampler', samplers.SAMPLERS)
  _choice(config, 'optim.schedule', ('constant', 'cosine'))
  _number(config, 'model.dropout', 0.0, 1.0)
  for field in ('training.num_steps', 'training.batch_size', 'training.log_every',
                'data.image_size', 'model.channels', 'sampling.num_steps',
                'sampling.grid_size'):
    _number(config, field, 1, integer=True)
  for field in ('training.sample_every', 'training.checkpoint_every',
                'optim.warmup_steps', 'data.num_train_examples'):
    _number(config, field, 0, integer=True)
  _number(config, 'training.keep_checkpoints', 1, integer=True)
  k = config.training.steps_per_call
  _number(config, 'training.steps_per_call', 1, integer=True)
  for field in ('training.num_steps', 'training.log_every', 'training.sample_every',
                'training.checkpoint_every', 'eval.train_fid_every'):
    if _get(config, field) % k:
      _fail(field, _get(config, field),
            f'must be a multiple of training.steps_per_call={k} (the loop acts between calls)')
  _choice(config, 'training.on_nonfinite', ('skip', 'stop'))
  _number(config, 'training.nonfinite_patience', 0, integer=True)
  _choice(config, 'data.crop', data.preprocess.CROPS)
  _choice(config, 'data.on_bad_image', data.folders.BAD_IMAGE_POLICIES)
  _choice(config, 'data.num_channels', (3,))
  if config.data.name == 'shapes':
    # Smaller images leave no room for the objects, and more pairs make the layout search
    # of data/shapes.py restart forever (measured: 3 pairs at 16 px, 4 pairs at any size).
    _number(config, 'data.image_size', 16, integer=True,
            allowed='the shapes dataset needs images of at least 16 pixels')
    most = 3 if config.data.image_size >= 32 else 2
    _number(config, 'data.shapes_pairs', 1, most, integer=True, hi_open=False,
            allowed=f'the shapes dataset fits 1 to {most} mirrored pairs per image at '
                    f'data.image_size={config.data.image_size} (3 need at least 32 pixels)')
  _number(config, 'optim.learning_rate', 0.0, lo_open=True)

  for field in ('research.num_samples', 'research.batch_size', 'research.locality_images',
                'research.locality_times', 'research.memorization_grid'):
    _number(config, field, 1, integer=True)
  if config.research.batch_size % num_devices:
    _fail('research.batch_size', config.research.batch_size,
          f'must divide evenly over the {num_devices} devices')

  batch = config.training.batch_size
  if batch % num_devices:
    _fail('training.batch_size', batch,
          f'the global batch must divide evenly over the {num_devices} data shards (devices)')
  size, levels = config.data.image_size, len(config.model.channel_mult) - 1
  if size % config.mask.patch_size:
    _fail('mask.patch_size', config.mask.patch_size,
          f'must divide data.image_size={size}')
  if config.model.name == 'unet':
    if size % (2 ** levels):
      _fail('data.image_size', size,
            f'the U-Net halves the image {levels} times (model.channel_mult='
            f'{tuple(config.model.channel_mult)}), so it must be divisible by {2 ** levels}')
    if config.model.channels % 2:
      _fail('model.channels', config.model.channels, 'must be even (sinusoidal embedding)')
    _number(config, 'model.num_heads', 1, integer=True)
    if any(config.model.channels * m % config.model.num_heads
           for m in config.model.channel_mult):
      _fail('model.num_heads', config.model.num_heads,
            'must divide the channel count of every attention layer')
  else:   # the model's own check (registry.py); main.py maps this module's ConfigError
    from sparsediff_jax import errors, registry
    try:
      registry.MODELS.check(config.model.name, config)
    except errors.ConfigError as e:
      raise ConfigError(str(e)) from e
  if not config.optim.ema_decays:
    _fail('optim.ema_decays', config.optim.ema_decays, 'give at least one decay in [0, 1)')
  for d in config.optim.ema_decays:
    if not isinstance(d, numbers.Real) or not 0.0 <= d < 1.0:
      _fail('optim.ema_decays', config.optim.ema_decays, 'every decay must be in [0, 1)')
  _number(config, 'sharding.fsdp', 1, integer=True)
  if num_devices % config.sharding.fsdp:
    _fail('sharding.fsdp', config.sharding.fsdp,
          f'the fsdp mesh axis must divide the {num_devices} devices (e.g. 1 or {num_devices})')
  _validate_sampling_and_eval(config, num_devices)


def _validate_sampling_and_eval(config, num_devices: int) -> None:
  """The fields of config.sampling and config.eval (samplers, --mode=eval, training FID)."""
  from sparsediff_jax import samplers
  s = config.sampling
  why = samplers.sampler_mismatch(config.diffusion.formulation, s.sampler)
  if why:
    _fail('sampling.sampler', s.sampler, why)
  _choice(config, 'sampling.time_steps', samplers.TIME_STEPS)
  _number(config, 'sampling.rho', 0.0, lo_open=True)
  _number(config, 'sampling.sigma_min', 0.0, lo_open=True)
  _number(config, 'sampling.sigma_max', s.sigma_min, lo_open=True,
          allowed=f'must be > sampling.sigma_min={s.sigma_min}')
  for field in ('sampling.s_churn', 'sampling.s_min', 'sampling.s_max', 'sampling.s_noise'):
    _number(config, field, 0)
  for field in ('sampling.num_samples', 'eval.train_fid_every', 'eval.reference_features',
                'eval.memorization_samples'):
    _number(config, field, 0, integer=True)
  n_ema = len(config.optim.ema_decays)
  _number(config, 'sampling.ema_index', -1, n_ema, integer=True,
          allowed=f'-1 (raw parameters) or an index into optim.ema_decays (0..{n_ema - 1})')
  for field in ('eval.num_samples', 'eval.train_fid_samples'):
    _number(config, field, 2, integer=True,
            allowed='needs at least 2 samples (a covariance); FID is conventionally on 50000')
  _number(config, 'eval.batch_size', 1, integer=True)
  if config.eval.batch_size % num_devices:
    _fail('eval.batch_size', config.eval.batch_size,
          f'must divide evenly over the {num_devices} devices')
  _choice(config, 'eval.preprocessing', ('pytorch', 'tf'))
