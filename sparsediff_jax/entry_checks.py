"""The config checks of the registered plug-ins that need no JAX: registry.py names them in
its declaration lines, so the command line runs them before JAX is imported (a bad
model.hidden_size is reported in about a second, not after the heavy imports).

A check is `check(config) -> None` raising errors.ConfigError that names the field, its
value and what is allowed. This module imports nothing heavy, and nothing of the project
but errors.py.

Mask strategies declare instead `max_drop(mask_config) -> (field, ratio)`: the highest drop
ratio the strategy uses anywhere on its noise range, and the field that sets it. One rule,
`keeps_something`, refuses for every strategy a ratio at which a batch would keep less than
one element on average (a zero loss and no gradient: training on nothing).
"""

import numbers

from sparsediff_jax.errors import ConfigError


def fail(field, value, allowed):
  """Raises the one form of a bad-field error (validation.py raises it too)."""
  raise ConfigError(f'config.{field}={value!r} is invalid: {allowed}')


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


# ---- models ---------------------------------------------------------------------------------
def unet_fields(config) -> None:
  """The U-Net halves the image len(channel_mult) - 1 times; attention splits channels."""
  m, size = config.model, config.data.image_size
  levels = len(m.channel_mult) - 1
  if size % (2 ** levels):
    fail('data.image_size', size,
          f'the U-Net halves the image {levels} times (model.channel_mult='
          f'{tuple(m.channel_mult)}), so it must be divisible by {2 ** levels}')
  if any(m.channels * mult % m.num_heads for mult in m.channel_mult):
    fail('model.num_heads', m.num_heads,
          'must divide the channel count of every attention layer')


def dit_fields(config) -> None:
  """The DiT cuts the image into patches; its width splits into heads and sin-cos axes."""
  m, size = config.model, config.data.image_size
  for field in ('patch_size', 'depth', 'hidden_size', 'num_heads'):
    if not _is_int(m[field]) or m[field] < 1:
      fail(f'model.{field}', m[field], 'must be an integer >= 1')
  if not _is_number(m.mlp_ratio) or not m.mlp_ratio > 0:
    fail('model.mlp_ratio', m.mlp_ratio, 'must be a number > 0 (MLP width / hidden_size)')
  if size % m.patch_size:
    fail('model.patch_size', m.patch_size,
          f'must divide data.image_size={size} (the DiT cuts the image into patches)')
  if m.hidden_size % 4:
    fail('model.hidden_size', m.hidden_size,
          'must be divisible by 4 (2-D sin-cos position embeddings: half the width per '
          'axis, sines and cosines)')
  if m.hidden_size % m.num_heads:
    fail('model.num_heads', m.num_heads,
          f'must divide model.hidden_size={m.hidden_size} (equal attention heads)')


# ---- formulations ---------------------------------------------------------------------------
def flow_matching_fields(config) -> None:
  if config.diffusion.time_sampling not in ('uniform', 'logit_normal'):
    fail('diffusion.time_sampling', config.diffusion.time_sampling,
          "choose one of 'uniform', 'logit_normal'")


def ddpm_eps_fields(config) -> None:
  if config.diffusion.ddpm_schedule not in ('linear', 'cosine'):
    fail('diffusion.ddpm_schedule', config.diffusion.ddpm_schedule,
          "choose one of 'linear', 'cosine'")


def edm_fields(config) -> None:
  for field in ('edm_sigma_data', 'edm_p_std'):
    value = config.diffusion[field]
    if not (_is_number(value) and value > 0):
      fail(f'diffusion.{field}', value, 'must be a number > 0')


# ---- mask strategies ------------------------------------------------------------------------
def iid_max_drop(mask) -> tuple[str, float]:
  """'iid' drops mask.ratio at every noise level."""
  return 'mask.ratio', mask.ratio


def noise_schedule_max_drop(mask) -> tuple[str, float]:
  """'noise_schedule' is linear in the level, so its highest ratio is at an end."""
  return max(('mask.ratio_at_t0', mask.ratio_at_t0), ('mask.ratio_at_t1', mask.ratio_at_t1),
             key=lambda pair: pair[1])


def mask_draws_per_batch(config) -> int:
  """Independent keep/drop draws in one training batch (elements, pixels or patches)."""
  m, size = config.mask, config.data.image_size
  return config.training.batch_size * (size // m.patch_size) ** 2 * (3 if m.per_channel else 1)


def keeps_something(config, max_drop) -> None:
  """The one keeps-nothing rule: at the strategy's highest drop ratio a batch must keep at
  least one mask draw on average, else most steps supervise nothing."""
  field, ratio = max_drop(config.mask)
  draws = mask_draws_per_batch(config)
  if (1.0 - ratio) * draws < 1.0:
    fail(field, ratio,
          f'keeps {(1.0 - ratio) * draws:.3g} of the {draws} mask draws of a batch on average '
          f'at its highest drop ratio (mask.strategy={config.mask.strategy!r}; '
          'training.batch_size x draws per image): most steps would supervise nothing; lower '
          'it or raise the batch')


# ---- optional packages ----------------------------------------------------------------------
# The datasets read through TensorFlow Datasets (registry.py declares them from this list).
TFDS_DATASETS = ('celeba', 'cifar10', 'imagenet32', 'imagenet64', 'lsun_bedroom')
TF_EXTRA = "pip install -e '.[tf]'"   # the extra that brings every package below


def installed(package: str) -> bool:
  """Whether `package` can be imported, asked without importing it."""
  import importlib.util
  try:
    return importlib.util.find_spec(package) is not None
  except (ImportError, ValueError):
    return False


def _missing(packages) -> list[str]:
  return [p for p in packages if not installed(p)]


def data_packages(config) -> None:
  """ConfigError naming the extra when the data of `config` needs packages that are not
  installed: TFDS datasets (and fashion_mnist/mnist with data.source='tfds') need
  tensorflow and tensorflow_datasets, a TFDS download importlib_resources too (TFDS imports
  it to build a dataset), image folders tensorflow (their resize)."""
  d = config.data
  what = f'config.data.name={d.name!r}'
  if d.name in ('fashion_mnist', 'mnist') and d.source == 'tfds':
    what += " with data.source='tfds'"
  if d.name in TFDS_DATASETS or 'source=' in what:
    needs = ['tensorflow', 'tensorflow_datasets']
    if d.download:
      needs.append('importlib_resources')
      what += ' and data.download=True'
  else:
    needs = ['tensorflow'] if d.name == 'folder' else []
  missing = _missing(needs)
  if missing:
    raise ConfigError(f'{what} needs {", ".join(missing)}, not installed: {TF_EXTRA} (the '
                      '[tf] extra; the base install runs shapes, digits and fashion_mnist '
                      'from its IDX files)')


def remote_backend(path: str) -> str | None:
  """What to install before a gs:// (or other URL) `path` can be read, or None: etils.epath
  serves URLs through TensorFlow's file systems, else through fsspec (gcsfs for gs://)."""
  if '://' not in path or installed('tensorflow'):
    return None
  scheme = path.split('://', 1)[0]
  package = {'gs': 'gcsfs', 's3': 's3fs'}.get(scheme)
  if package is None or installed(package):
    return None
  return (f'{scheme}:// paths need TensorFlow ({TF_EXTRA}) or {package} (pip install '
          f'{package}), neither of which is installed')


# ---- environment ----------------------------------------------------------------------------
MEMORY_LIMIT_ENV = 'SPARSEDIFF_MEMORY_LIMIT_BYTES'   # a lower per-device memory limit


def memory_limit_override() -> int | None:
  """$SPARSEDIFF_MEMORY_LIMIT_BYTES as bytes (None when unset or empty): a whole number
  > 0, written as an integer or in e-notation (8e9); ConfigError otherwise."""
  import math
  import os
  text = os.environ.get(MEMORY_LIMIT_ENV, '').strip()
  if not text:
    return None
  try:
    value = float(text) if any(c in text for c in '.eE') else int(text)
  except ValueError:
    value = None
  if (value is None or not math.isfinite(value) or value <= 0 or value != int(value)
      or value >= 2**63):
    raise ConfigError(f'${MEMORY_LIMIT_ENV}={text!r} is invalid: a whole number of bytes > 0 '
                      '(e.g. 8000000000 or 8e9); unset it to use the device\'s own memory')
  return int(value)
