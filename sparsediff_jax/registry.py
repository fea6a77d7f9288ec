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

A dataset is one package under data/ that registers ONE `Dataset` record carrying
everything the rest of the code asks of it (its images, fresh images, metrics, headline
metrics, window quality metrics, classifier, config check): `DATASETS.add(name, Dataset(...))`
at the bottom of the package, plus its declaration line here (data/README.md).
"""

import collections.abc
import dataclasses
import importlib
from typing import Any, Callable, Mapping

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


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Everything the code asks of one dataset (config.data.name), registered once.

  Registering imports neither JAX nor TensorFlow (the command line checks a config with
  the record's `check` before either loads): parts that need them are named with `later`.
  """
  # source(config) -> data.source.Source: the training split, described without reading.
  source: Callable[[Any], Any]
  # fresh(config, num, num_train) -> uint8 [n <= num, S, S, 3]: real images outside the
  # first num_train (the training subset) that no model has seen, the floor of the
  # memorization measure. None: no floor.
  fresh: Callable[[Any, int, int], Any] | None = None
  # metrics(config, samples uint8 [N, S, S, 3], train_images or None) -> {name: float}:
  # the dataset's own sample metrics, reported by --mode=research and --mode=eval.
  metrics: Callable[[Any, Any, Any], dict] | None = None
  # The metrics of this dataset that a sweep table shows before the generic ones
  # (sweeps/sweep_table.headline); launch/sweep.py --headline overrides them.
  headline: tuple[str, ...] = ()
  # Quality metrics the memorization window may target: name -> 'le' (lower is better) or
  # 'ge' (higher is better) (metrics/window.py). Each must be a headline metric, i.e. one
  # that `metrics` reports (checked when the record is made).
  quality: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # classifier(data_config or None) -> metrics.classifier.Spec: the domain classifier of a
  # labelled dataset (metrics/classifier.py). None: no classifier.
  classifier: Callable[[Any], Any] | None = None
  # check(config) -> None, raising errors.ConfigError naming the data.* field it refuses.
  check: Callable[[Any], None] | None = None

  def __post_init__(self):
    for name, direction in self.quality.items():
      if name not in self.headline:
        raise ValueError(f'quality metric {name!r} is not among the headline metrics '
                         f'{self.headline}: a window target must be a metric it reports')
      if direction not in ('le', 'ge'):
        raise ValueError(f'quality metric {name!r}: direction {direction!r} is not le or ge')


def later(module: str, name: str) -> Callable:
  """The function `name` of `module`, imported at the first call: how a Dataset record
  names a part that imports JAX (metrics, classifier) without importing it itself."""
  def call(*args, **kwargs):
    return getattr(importlib.import_module(module), name)(*args, **kwargs)
  call.__qualname__ = call.__name__ = f'{module}.{name}'
  call.target = (module, name)
  return call


class DatasetRegistry(Registry):
  """Dataset records. A package adds its record when imported; a record added from
  elsewhere (a test, a notebook) needs no declaration line."""

  def add(self, name: str, dataset: Dataset) -> Dataset:
    if not isinstance(dataset, Dataset):
      raise TypeError(f'dataset {name!r}: expected a registry.Dataset, got {dataset!r}')
    self._modules.setdefault(name, getattr(dataset.source, '__module__', ''))
    self._entries[name] = Entry(dataset, dataset.check)
    return dataset

  def register(self, name: str, *, check=None):
    raise TypeError(f'dataset {name!r}: a dataset registers ONE record, '
                    'DATASETS.add(name, registry.Dataset(source=..., ...))')

  def remove(self, name: str) -> None:
    """Forgets dataset `name` (a record added for a while, e.g. by a test)."""
    self._modules.pop(name, None)
    self._entries.pop(name, None)

  def check_declared(self, name: str, config) -> None:
    """The record's own check: dataset packages import nothing heavy, so it runs early."""
    self.check(name, config)

  def check(self, name: str, config) -> None:
    check = self.entry(name).check
    if check is not None:
      check(config)


class DatasetField:
  """One field of every dataset record as a lookup by data.name (None counts as absent),
  e.g. `name in DATASET_FRESH` and `DATASET_FRESH.get(name)(config, num, num_train)`."""

  def __init__(self, field: str):
    self.field = field

  def __contains__(self, name) -> bool:
    return name in DATASETS and getattr(DATASETS.get(name), self.field) is not None

  def get(self, name: str):
    value = getattr(DATASETS.get(name), self.field)
    if value is None:
      raise KeyError(f'dataset {name!r} registers no {self.field}')
    return value


class QualityMetrics(collections.abc.Mapping):
  """Every registered dataset's window quality metrics: name -> (data.name, 'le' | 'ge').
  Read from the records at each lookup (so a dataset added later is included)."""

  def _table(self) -> dict[str, tuple[str, str]]:
    return {metric: (name, direction) for name in DATASETS.names()
            for metric, direction in DATASETS.get(name).quality.items()}

  def __getitem__(self, metric):
    return self._table()[metric]

  def __iter__(self):
    return iter(self._table())

  def __len__(self):
    return len(self._table())


MODELS = Registry('model', 'model.name')
FORMULATIONS = Registry('formulation', 'diffusion.formulation')
SAMPLERS = Registry('sampler', 'sampling.sampler')
MASKS = MaskRegistry('mask strategy', 'mask.strategy')
DATASETS = DatasetRegistry('dataset', 'data.name')
# Views of the dataset records by data.name: fresh images (the memorization floor) and the
# dataset's own sample metrics; `in` is False for a dataset without them.
DATASET_FRESH = DatasetField('fresh')
DATASET_METRICS = DatasetField('metrics')
QUALITY_METRICS = QualityMetrics()

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

# Datasets: the package (or module) that adds the record (data/README.md).
DATASETS.declare('shapes', 'sparsediff_jax.data.shapes')
for _name in entry_checks.TFDS_DATASETS:
  DATASETS.declare(_name, 'sparsediff_jax.data.tfds_sources')
DATASETS.declare('folder', 'sparsediff_jax.data.folders')
DATASETS.declare('digits', 'sparsediff_jax.data.digits')
for _name in ('fashion_mnist', 'mnist'):
  DATASETS.declare(_name, 'sparsediff_jax.data.fashion_mnist')
