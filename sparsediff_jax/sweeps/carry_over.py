"""Sweep results that carry over between sittings and machines (used by launch/sweep.py).

A sweep run's config is resolved in-process exactly as `python -m sparsediff_jax.main`
resolves it (the config file, then the --config.FIELD=VALUE overrides, parsed by
ml_collections' config flags; then validation.validate_fields), without importing JAX.
`launch/sweep.py --results=DIR` keeps each finished run's result in DIR/<run name>/
(`RESULT_FILES`: research_metrics.json, the run's config.json, its window trajectory, ...)
and skips a run whose kept config.json matches the run's resolved config (`same_config`):
every field both have must be equal, a field the kept config lacks must be at its default
(a field added since, which changes nothing), and a field only the kept config has (removed
since) is a mismatch. So a changed default (a sampler, its steps) reruns the run instead of
mixing two settings in one table.
"""

import json
import math
import os
import shutil

from absl import flags
from ml_collections import config_flags

from sparsediff_jax import config_base, validation
from sparsediff_jax.errors import ConfigError
from sparsediff_jax.runtime.run_dir import flatten

CONFIG_FILE = 'config.json'
# Copied from the run folder into the results folder (those the run has): the metrics, the
# resolved config, the sweep's record, the window trajectory and the grid at tau_gen.
RESULT_FILES = ('research_metrics.json', CONFIG_FILE, 'sweep_run.json',
                os.path.join('research', 'window_trajectory.json'),
                os.path.join('research', 'window_tau_gen.png'))


def resolve_config(config_path: str | None, overrides: dict[str, str]):
  """The ConfigDict the CLI would run with `--config=config_path --config.K=V ...`.

  Raises ConfigError (one line, naming the field) for an unknown field, a value that does
  not parse, or one that validation.validate_fields refuses.
  """
  path = config_path or config_base.__file__
  argv = ['sweep', f'--config={path}'] + [f'--config.{k}={v}' for k, v in overrides.items()]
  values = flags.FlagValues()
  try:
    # sys_argv: ml_collections finds the config file (and so its fields) in it.
    config_flags.DEFINE_config_file('config', path, 'config file', flag_values=values,
                                    lock_config=True, sys_argv=argv)
    values(argv)
  except flags.Error as e:
    raise ConfigError(str(e).splitlines()[0]) from None
  except (KeyError, AttributeError) as e:   # ml_collections: an override of no field
    detail = ' '.join(str(e.args[0] if e.args else e).split())
    raise ConfigError(f'unknown config field in {" ".join(argv[2:])}: {detail}; the fields '
                      'are listed in sparsediff_jax/config_base.py') from None
  config = values.config
  validation.check_structure(config, config_base.get_config(), f'--config={path}')
  validation.validate_fields(config)
  return config


def as_dict(config) -> dict:
  """The config as config.json holds it (JSON types: tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def _equal(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  return a == b


def differences(kept: dict, current: dict) -> list[str]:
  """The fields in which a kept config.json and a run's resolved config (both as dicts)
  differ; [] when the kept result is this run's (see the module docstring)."""
  kept, current = flatten(kept), flatten(current)
  defaults = flatten(as_dict(config_base.get_config()))
  out = [k for k in kept if k not in current or not _equal(kept[k], current[k])]
  out += [k for k in current if k not in kept
          and not (k in defaults and _equal(defaults[k], current[k]))]
  return sorted(out)


def flag_value(value) -> str:
  """A config value (as config.json holds it) as the --config.FIELD= string that parses back
  to it: tuples and lists as '(1,2)', '(8,)', '()'; strings inside them quoted."""
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, (list, tuple)):
    items = [repr(v) if isinstance(v, str) else flag_value(v) for v in value]
    return '(' + ','.join(items) + (',' if len(items) == 1 else '') + ')'
  return repr(value) if isinstance(value, float) else str(value)


def overrides_for(kept: dict, config_path: str | None) -> dict[str, str]:
  """The --config.FIELD=VALUE overrides under which CONFIG_PATH resolves to a kept config,
  i.e. how to run a kept result again. Raises ConfigError when none reproduce it (a field
  removed since, or one the config file cannot set)."""
  base = flatten(as_dict(resolve_config(config_path, {})))
  overrides = {k: flag_value(v) for k, v in flatten(kept).items()
               if k in base and not _equal(base[k], v)}
  diff = differences(kept, as_dict(resolve_config(config_path, overrides)))
  if diff:
    raise ConfigError(f'the kept config cannot be made from {config_path or "the defaults"}: '
                      f'it differs in {", ".join(diff)}')
  return overrides


def read_kept_config(results: str, name: str) -> dict | None:
  """RESULTS/NAME/config.json, or None when the run has no kept result."""
  try:
    with open(os.path.join(results, name, CONFIG_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def keep(workdir: str, results: str, name: str) -> str:
  """Copies the run's RESULT_FILES into RESULTS/NAME (replacing an older copy whole)."""
  dest = os.path.join(results, name)
  tmp = dest + '.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for rel in RESULT_FILES:
    src = os.path.join(workdir, rel)
    if os.path.isfile(src):
      shutil.copyfile(src, os.path.join(tmp, os.path.basename(rel)))
  shutil.rmtree(dest, ignore_errors=True)
  os.replace(tmp, dest)
  return dest
