"""Checks a config before anything compiles or touches the workdir.

One file: every cross-field rule in one place, so a reader sees all that a
config must satisfy; the single-field rules are in entry_checks.py.

Every problem becomes an `errors.ConfigError` whose message names the field, the value and
what is allowed; the CLI prints it as one line and exits with code 2. Three stages:
- `check_structure`: the config has every section and field of config_base (a config file
  that returns None or lacks a section is named with what is missing);
- `validate_fields`: every field's type and range, the names of plug-ins against the
  registry's declarations, and each selected plug-in's declared field check
  (entry_checks.py, e.g. the DiT's widths and the one keeps-nothing rule of the masks). Imports nothing heavy (no JAX, no TensorFlow), so the command
  line reports a bad value in about a second;
- `validate_for_devices` and `validate_entries`: what needs the device count, and each
  selected plug-in's own check of its fields (this imports the plug-in, so JAX).
`validate_config` runs them all, for library use.
"""

import math
import numbers
import os

from sparsediff_jax import registry
from sparsediff_jax.entry_checks import fail as _fail
from sparsediff_jax.errors import ConfigError

CROPS = ('center', 'none')               # data.crop (data/preprocess.py)
BAD_IMAGE_POLICIES = ('error', 'skip')   # data.on_bad_image (data/folders.py)
TIME_STEPS = ('default', 'edm', 'logsnr', 'uniform')   # sampling.time_steps (samplers.py)
# Formulations whose time is bounded, so that a grid uniform in t exists ('uniform').
UNIFORM_TIME_FORMULATIONS = ('flow_matching', 'ddpm_eps')
MAX_SEED = 2**31 - 1                     # seeds above this wrap in PRNG keys on some backends
MAX_SAMPLING_STEPS = 100_000             # sampling.num_steps: far beyond any sampler's use
# The plug-in kinds a config selects by name.
REGISTRIES = (registry.DATASETS, registry.MODELS, registry.FORMULATIONS, registry.SAMPLERS,
              registry.MASKS)
# Fields that no longer exist, and what replaces them: refused with this advice.
REMOVED = {
    'data.num_channels': 'every dataset is RGB (3 channels); remove the field',
}


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


def check_structure(config, base, where: str) -> None:
  """ConfigError unless `config` (from `where`) has every section and field of `base`."""
  if config is None or not hasattr(config, 'keys'):
    raise ConfigError(f'{where}: get_config() returned {type(config).__name__}, not a '
                      'ConfigDict; start from sparsediff_jax.config_base.get_config()')
  removed = [f for f in REMOVED if _has(config, f)]
  if removed:
    raise ConfigError(f'{where}: config.{removed[0]} was removed: {REMOVED[removed[0]]}')
  missing = [f'{s}' for s in base.keys() if s not in config.keys()]
  if missing:
    raise ConfigError(f'{where}: the config lacks the section(s) {", ".join(missing)}; '
                      'start from sparsediff_jax.config_base.get_config()')
  for section in base.keys():
    gone = [k for k in base[section].keys() if k not in config[section].keys()]
    if gone:
      raise ConfigError(f'{where}: config.{section} lacks the field(s) {", ".join(gone)}; '
                        'start from sparsediff_jax.config_base.get_config()')
    extra = [k for k in config[section].keys() if k not in base[section].keys()]
    if extra:
      raise ConfigError(f'{where}: config.{section}.{extra[0]} is not a field; the fields '
                        'are listed in sparsediff_jax/config_base.py')


def _has(config, field) -> bool:
  section, name = field.split('.')
  return section in config.keys() and name in config[section].keys()


def validate_config(config, num_devices: int) -> None:
  """Raises ConfigError for the first invalid field of `config` (all stages)."""
  validate_fields(config)
  validate_for_devices(config, num_devices)
  validate_entries(config)


def _positive_ints(config, field, allow_empty=False):
  value = _get(config, field)
  ok = isinstance(value, (tuple, list)) and (allow_empty or len(value) > 0) and all(
      isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value)
  if not ok:
    _fail(field, value, ('a tuple of integers >= 1' if allow_empty else
                         'a non-empty tuple of integers >= 1'))


def validate_fields(config) -> None:
  """Types and ranges of every field, and plug-in names; imports nothing heavy."""
  for reg in REGISTRIES:
    _choice(config, reg.field, reg.names())
  _validate_mask(config)
  _validate_data(config)
  _validate_model(config)
  _validate_training(config)
  _validate_optim(config)
  _validate_sampling_and_eval(config)
  for field in ('research.num_samples', 'research.batch_size', 'research.locality_images',
                'research.locality_times', 'research.memorization_grid'):
    _number(config, field, 1, integer=True)
  _choice(config, 'research.trajectory', (True, False))
  _choice(config, 'research.allow_other_data', (True, False))
  _validate_window(config)
  _number(config, 'sharding.fsdp', 1, integer=True)
  for reg in REGISTRIES:   # each selected entry's own fields (entry_checks.py: no JAX)
    reg.check_declared(_get(config, reg.field), config)


def check_environment(config, mode: str) -> None:
  """ConfigError naming what to set or install, before JAX (one line, not a traceback):
  $SPARSEDIFF_MEMORY_LIMIT_BYTES, the packages the data needs (entry_checks.py) for the
  modes that read the training data, and a URL's file system for the config's paths."""
  from sparsediff_jax import entry_checks
  entry_checks.memory_limit_override()
  if mode != 'sample':
    entry_checks.data_packages(config)
  for field in ('data.data_dir', 'eval.reference_stats', 'eval.inception_weights'):
    value = _get(config, field)
    if isinstance(value, str) and (missing := entry_checks.remote_backend(value)):
      raise ConfigError(f'config.{field}={value!r}: {missing}')


def _validate_window(config) -> None:
  """research.window_*: scoring while training (scoring/window_scoring.py)."""
  _number(config, 'research.window_every', 0, integer=True)
  _number(config, 'research.window_stop', 0.0, 1.0, hi_open=False,
          allowed='the memorized fraction that stops the run must be in [0, 1] (0 = never)')
  every, t = config.research.window_every, config.training
  if every and every % t.steps_per_call:
    _fail('research.window_every', every,
          f'must be a multiple of training.steps_per_call={t.steps_per_call}')
  if every > t.num_steps:
    _fail('research.window_every', every,
          f'scores nothing before the cap training.num_steps={t.num_steps}; lower it or '
          'raise the cap')


def _validate_mask(config) -> None:
  _number(config, 'mask.ratio', 0.0, 1.0,
          allowed='the fraction of pixels dropped from the loss must be in [0, 1)')
  _choice(config, 'mask.normalize', ('kept', 'all'))
  _number(config, 'mask.patch_size', 1, integer=True)
  _choice(config, 'mask.per_channel', (True, False))
  for field in ('mask.ratio_at_t0', 'mask.ratio_at_t1'):
    _number(config, field, 0.0, 1.0, allowed='a drop ratio in [0, 1)')
  size, patch = config.data.image_size, config.mask.patch_size
  if isinstance(size, int) and size % patch:
    _fail('mask.patch_size', patch, f'must divide data.image_size={size}')


def _validate_data(config) -> None:
  _number(config, 'data.image_size', 1, 65536, integer=True)
  _number(config, 'data.num_train_examples', 0, integer=True)
  _choice(config, 'data.random_flip', (True, False))
  _choice(config, 'data.download', (True, False))
  _choice(config, 'data.per_process_read', (True, False))
  _choice(config, 'data.crop', CROPS)
  _number(config, 'data.crop_size', 0, integer=True)
  _choice(config, 'data.on_bad_image', BAD_IMAGE_POLICIES)
  _choice(config, 'data.source', ('files', 'tfds'))
  _choice(config, 'data.class_balanced', (True, False))
  _number(config, 'data.shapes_seed', 0, MAX_SEED, integer=True, hi_open=False)
  check_host_memory(config)


def host_memory_bytes() -> int | None:
  """Physical memory of this machine, or None where it cannot be read."""
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def check_host_memory(config, n: int | None = None, bytes_per_example: int = 0,
                      field: str = 'data.image_size') -> None:
  """Refuses a training subset whose images would not fit in host memory (every dataset is
  held there), naming `field`. n: the subset size (default data.num_train_examples, where
  0 = 'all of it' is known only to the dataset's source, which calls this again);
  bytes_per_example: 0 = uint8 S x S x 3."""
  d = config.data
  n = d.num_train_examples if n is None else n
  if not n:
    return
  available = host_memory_bytes()
  need = n * (bytes_per_example or d.image_size ** 2 * 3)
  if available and need > 0.8 * available:
    _fail(field, _get(config, field),
          f'{n} images of {d.image_size}x{d.image_size}x3 need {need / 2**30:.1f} GiB of host '
          f'memory, more than 80% of this machine\'s {available / 2**30:.1f} GiB; lower '
          'data.image_size or data.num_train_examples')


def _validate_model(config) -> None:
  _choice(config, 'model.dtype', ('float32', 'bfloat16'))
  _number(config, 'model.dropout', 0.0, 1.0)
  _number(config, 'model.channels', 2, integer=True)
  if config.model.channels % 2:
    _fail('model.channels', config.model.channels, 'must be even (sinusoidal embedding)')
  _positive_ints(config, 'model.channel_mult')
  _positive_ints(config, 'model.attn_resolutions', allow_empty=True)
  _number(config, 'model.num_res_blocks', 1, integer=True)
  _number(config, 'model.num_heads', 1, integer=True)
  _choice(config, 'model.remat', (True, False))


def _validate_training(config) -> None:
  for field in ('training.num_steps', 'training.batch_size', 'training.log_every'):
    _number(config, field, 1, integer=True)
  for field in ('training.sample_every', 'training.checkpoint_every'):
    _number(config, field, 0, integer=True)
  _number(config, 'training.seed', 0, MAX_SEED, integer=True, hi_open=False)
  _number(config, 'training.keep_checkpoints', 1, integer=True)
  _number(config, 'training.steps_per_call', 1, integer=True)
  _choice(config, 'training.unroll_steps', (True, False))
  k = config.training.steps_per_call
  _number(config, 'eval.train_fid_every', 0, integer=True)
  for field in ('training.num_steps', 'training.log_every', 'training.sample_every',
                'training.checkpoint_every', 'eval.train_fid_every'):
    if _get(config, field) % k:
      _fail(field, _get(config, field),
            f'must be a multiple of training.steps_per_call={k} (the loop acts between calls)')
  _choice(config, 'training.on_nonfinite', ('skip', 'stop'))
  _number(config, 'training.nonfinite_patience', 0, integer=True)
  if not isinstance(config.training.resume_may_change, str):
    _fail('training.resume_may_change', config.training.resume_may_change,
          "a comma-separated string of fields, e.g. 'optim.learning_rate'")


def _validate_optim(config) -> None:
  _choice(config, 'optim.schedule', ('constant', 'cosine'))
  _finite(config, 'optim.learning_rate', 0.0, lo_open=True)
  _number(config, 'optim.warmup_steps', 0, integer=True)
  for field in ('optim.beta1', 'optim.beta2'):
    _finite(config, field, 0.0, 1.0, allowed='an Adam decay rate must be in [0, 1)')
  _finite(config, 'optim.eps', 0.0, lo_open=True)
  _finite(config, 'optim.weight_decay', 0.0)
  _finite(config, 'optim.grad_clip', 0.0,
          allowed='the gradient-norm clip must be >= 0 (0 = off); a negative one would flip '
                  'the gradient')
  decays = config.optim.ema_decays
  if not isinstance(decays, (tuple, list)) or not decays:
    _fail('optim.ema_decays', decays, 'give at least one decay in [0, 1)')
  for d in decays:
    if not isinstance(d, numbers.Real) or isinstance(d, bool) or not 0.0 <= d < 1.0:
      _fail('optim.ema_decays', decays, 'every decay must be in [0, 1)')


def _finite(config, field, lo=None, hi=None, **kwargs):
  _number(config, field, lo, hi, **kwargs)
  if not math.isfinite(_get(config, field)):
    _fail(field, _get(config, field), 'must be a finite number')


def validate_for_devices(config, num_devices: int) -> None:
  """The fields that must divide over the devices."""
  for field, what in (('training.batch_size', 'the global batch must divide evenly over the '
                       f'{num_devices} data shards (devices)'),
                      ('research.batch_size', f'must divide evenly over the {num_devices} '
                       'devices'),
                      ('eval.batch_size', f'must divide evenly over the {num_devices} devices')):
    if _get(config, field) % num_devices:
      _fail(field, _get(config, field), what)
  if num_devices % config.sharding.fsdp:
    _fail('sharding.fsdp', config.sharding.fsdp,
          f'the fsdp mesh axis must divide the {num_devices} devices (e.g. 1 or {num_devices})')


def validate_entries(config) -> None:
  """Each selected plug-in's own check of the fields it reads (imports the plug-ins)."""
  for reg in REGISTRIES:
    reg.check(_get(config, reg.field), config)


def _validate_sampling_and_eval(config) -> None:
  """The fields of config.sampling and config.eval (samplers, --mode=eval, training FID)."""
  s = config.sampling
  _number(config, 'sampling.num_steps', 1, MAX_SAMPLING_STEPS, integer=True, hi_open=False)
  _number(config, 'sampling.grid_size', 1, integer=True)
  _choice(config, 'sampling.time_steps', TIME_STEPS)
  if (s.time_steps == 'uniform'
      and config.diffusion.formulation not in UNIFORM_TIME_FORMULATIONS):
    _fail('sampling.time_steps', s.time_steps,
          f'a grid uniform in t needs a bounded time, i.e. diffusion.formulation one of '
          f'{", ".join(map(repr, UNIFORM_TIME_FORMULATIONS))}; for '
          f'{config.diffusion.formulation!r} (t = sigma, unbounded) choose one of '
          f'{", ".join(repr(g) for g in TIME_STEPS if g != "uniform")}')
  _number(config, 'sampling.rho', 0.0, lo_open=True)
  _number(config, 'sampling.sigma_min', 0.0, lo_open=True)
  _number(config, 'sampling.sigma_max', s.sigma_min, lo_open=True,
          allowed=f'must be > sampling.sigma_min={s.sigma_min}')
  for field in ('sampling.s_churn', 'sampling.s_min', 'sampling.s_max', 'sampling.s_noise'):
    _number(config, field, 0)
  _number(config, 'sampling.seed', 0, MAX_SEED, integer=True, hi_open=False)
  _choice(config, 'sampling.save_npz', (True, False))
  for field in ('sampling.num_samples', 'eval.reference_features',
                'eval.memorization_samples'):
    _number(config, field, 0, integer=True)
  n_ema = len(config.optim.ema_decays)
  _number(config, 'sampling.ema_index', -1, n_ema, integer=True,
          allowed=f'-1 (raw parameters) or an index into optim.ema_decays (0..{n_ema - 1})')
  for field in ('eval.num_samples', 'eval.train_fid_samples'):
    _number(config, field, 2, integer=True,
            allowed='needs at least 2 samples (a covariance); FID is conventionally on 50000')
  _number(config, 'eval.batch_size', 1, integer=True)
  _choice(config, 'eval.preprocessing', ('pytorch', 'tf'))
