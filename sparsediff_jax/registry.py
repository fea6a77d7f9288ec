"""Plug-in registries: models, formulations, samplers, mask strategies, datasets and
per-dataset metrics. No if/elif chains: the code looks an entry up by its config name.

Adding an entry is its own file (or function) plus ONE declaration line at the bottom of
this module, `REGISTRY.declare(name, 'module.path', check=...)`. The declaration lets the
command line check names, and the entry's own fields with `check` (a function of a module
that does not import JAX, e.g. entry_checks.py), before JAX is imported; the module
registers the implementation with a decorator (optionally with a further check that needs
the implementation):

    @registry.MODELS.register('unet')
    def build_unet(config, seed): ...

`check(config)` raises errors.ConfigError naming the field; it runs for the entry the
config selects, after the generic checks of validation.py. A mask strategy declares
instead the highest drop ratio it uses (`MASKS.declare(name, module, max_drop=...)`), and
one rule (entry_checks.keeps_something) checks every strategy. `REGISTRY.get(name)` imports
the declaring module on first use and returns the registered object.
"""

import dataclasses
import importlib
from typing import Any, Callable

from sparsediff_jax import entry_checks
from sparsediff_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Entry:
  value: Any                                  # the registered function or class
  check: Callable[[Any], None] | None = None  # check(config) -> None or ConfigError


class Registry:
  """Names of one kind of plug-in, the modules that implement them, and the entries."""

  def __init__(self, kind: str, field: str | None = None):
    self.kind = kind          # 'model', 'sampler', ... (for messages)
    self.field = field        # the config field that selects an entry, e.g. 'model.name'
    self._modules: dict[str, str] = {}
    self._entries: dict[str, Entry] = {}
    self._declared_checks: dict[str, Callable[[Any], None]] = {}

  def declare(self, name: str, module: str, *,
              check: Callable[[Any], None] | None = None) -> None:
    """The registration line: entry `name` is implemented in `module`; `check(config)`,
    if given, checks its fields without importing `module` (so it must not need JAX)."""
    self._modules[name] = module
    if check is not None:
      self._declared_checks[name] = check

  def names(self) -> tuple[str, ...]:
    return tuple(self._modules)

  def __contains__(self, name) -> bool:
    return name in self._modules

  def register(self, name: str, *, check: Callable[[Any], None] | None = None):
    """Decorator: registers the decorated object as entry `name` (declared above)."""
    def deco(value):
      self._entries[name] = Entry(value, check)
      return value
    return deco

  def entry(self, name: str) -> Entry:
    if name not in self._modules:
      where = f'config.{self.field}={name!r} is invalid: ' if self.field else ''
      raise ConfigError(f'{where}unknown {self.kind} {name!r}; choose one of '
                        f'{", ".join(map(repr, self._modules))}')
    if name not in self._entries:
      importlib.import_module(self._modules[name])
    if name not in self._entries:
      raise RuntimeError(f'{self._modules[name]} declares no {self.kind} {name!r}')
    return self._entries[name]

  def get(self, name: str) -> Any:
    """The registered object of `name` (imports its module on first use)."""
    return self.entry(name).value

  def check_declared(self, name: str, config) -> None:
    """Runs entry `name`'s declared check, if any, without importing its module."""
    if name in self._declared_checks:
      self._declared_checks[name](config)

  def check(self, name: str, config) -> None:
    """Runs entry `name`'s own config checks: the declared one and the registered one."""
    self.check_declared(name, config)
    check = self.entry(name).check
    if check is not None:
      check(config)


class MaskRegistry(Registry):
  """Mask strategies: each declares `max_drop(mask_config) -> (field, ratio)`, the highest
  drop ratio it uses over the whole noise range, and entry_checks.keeps_something applies
  the same keeps-nothing rule to all of them."""

  def __init__(self, kind: str, field: str):
    super().__init__(kind, field)
    self.max_drop: dict[str, Callable] = {}   # name -> max_drop(mask_config)

  def declare(self, name: str, module: str, *, max_drop=None, check=None) -> None:
    if max_drop is None:
      raise TypeError(f'mask strategy {name!r} must declare max_drop(mask_config)')
    self.max_drop[name] = max_drop

    def checks(config):
      entry_checks.keeps_something(config, max_drop)
      if check is not None:
        check(config)
    super().declare(name, module, check=checks)


MODELS = Registry('model', 'model.name')
FORMULATIONS = Registry('formulation', 'diffusion.formulation')
SAMPLERS = Registry('sampler', 'sampling.sampler')
MASKS = MaskRegistry('mask strategy', 'mask.strategy')
DATASETS = Registry('dataset', 'data.name')
# Per-dataset sample metrics: fn(config, samples uint8 [N, H, W, 3], train_images) -> dict
# of floats, reported by --mode=research and --mode=eval. Keyed by data.name; optional.
DATASET_METRICS = Registry('dataset metric', None)
# Fresh real images, the floor of the memorization measure: fn(config, num, num_train) ->
# uint8 [n <= num, S, S, 3] images of the dataset outside its first num_train (the training
# subset), which no model has seen. Keyed by data.name; optional (no floor without it).
DATASET_FRESH = Registry('source of fresh images', None)

# ---- declarations: one line per entry ----------------------------------------------------
MODELS.declare('unet', 'sparsediff_jax.models.unet', check=entry_checks.unet_fields)
MODELS.declare('dit', 'sparsediff_jax.models.dit', check=entry_checks.dit_fields)

FORMULATIONS.declare('flow_matching', 'sparsediff_jax.formulations',
                     check=entry_checks.flow_matching_fields)
FORMULATIONS.declare('ddpm_eps', 'sparsediff_jax.formulations',
                     check=entry_checks.ddpm_eps_fields)
FORMULATIONS.declare('edm', 'sparsediff_jax.formulations', check=entry_checks.edm_fields)

SAMPLERS.declare('euler', 'sparsediff_jax.samplers')
SAMPLERS.declare('heun', 'sparsediff_jax.samplers')
SAMPLERS.declare('ddim', 'sparsediff_jax.samplers')
SAMPLERS.declare('ancestral', 'sparsediff_jax.samplers')
SAMPLERS.declare('churn', 'sparsediff_jax.samplers')
SAMPLERS.declare('dpmpp_2m', 'sparsediff_jax.multistep')
SAMPLERS.declare('dpmpp_3m', 'sparsediff_jax.multistep')

MASKS.declare('iid', 'sparsediff_jax.masking', max_drop=entry_checks.iid_max_drop)
MASKS.declare('noise_schedule', 'sparsediff_jax.masking',
              max_drop=entry_checks.noise_schedule_max_drop)

DATASETS.declare('shapes', 'sparsediff_jax.data.shapes')
for _name in ('celeba', 'cifar10', 'imagenet32', 'imagenet64', 'lsun_bedroom'):
  DATASETS.declare(_name, 'sparsediff_jax.data.tfds_sources')
DATASETS.declare('folder', 'sparsediff_jax.data.folders')

DATASET_METRICS.declare('shapes', 'sparsediff_jax.data.consistency')
DATASETS.declare('digits', 'sparsediff_jax.data.digits', check=entry_checks.digits_fields)
DATASET_METRICS.declare('digits', 'sparsediff_jax.data.digits_metrics')
for _name in ('fashion_mnist', 'mnist'):
  DATASETS.declare(_name, 'sparsediff_jax.data.fashion_mnist')
  DATASET_FRESH.declare(_name, 'sparsediff_jax.data.fashion_mnist')
  DATASET_METRICS.declare(_name, 'sparsediff_jax.data.fashion_metrics')

DATASET_FRESH.declare('shapes', 'sparsediff_jax.data.shapes')
DATASET_FRESH.declare('digits', 'sparsediff_jax.data.digits')
