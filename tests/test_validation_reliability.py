"""validate_config on the fields of the reliability features and the inputs that used to hang
or crash later (a shapes dataset too small to draw)."""

import pytest

from sparsediff_jax import config_base, validation


def _error(**fields) -> str:
  config = config_base.get_config()
  for dotted, value in fields.items():
    section, name = dotted.split('__')
    config[section][name] = value
  with pytest.raises(validation.ConfigError) as info:
    validation.validate_config(config, 1)
  return str(info.value)


def test_the_defaults_are_valid():
  validation.validate_config(config_base.get_config(), 1)


@pytest.mark.parametrize('fields, message', [
    ({'sampling__num_steps': 2**32 + 1},   # an OverflowError traceback before the bound
     'config.sampling.num_steps=4294967297 is invalid: must be an integer >= 1 and <= 100000'),
    ({'training__on_nonfinite': 'ignore'},
     "config.training.on_nonfinite='ignore' is invalid: choose one of 'skip', 'stop'"),
    ({'training__nonfinite_patience': -1},
     'config.training.nonfinite_patience=-1 is invalid: must be an integer >= 0'),
    ({'data__crop': 'random'}, "config.data.crop='random' is invalid: choose one of 'center'"),
    ({'data__on_bad_image': 'ignore'},
     "config.data.on_bad_image='ignore' is invalid: choose one of 'error', 'skip'"),
    ({'data__image_size': 8},
     'config.data.image_size=8 is invalid: the shapes dataset needs images of at least 16'),
    ({'data__image_size': 16, 'data__shapes_pairs': 3},
     'config.data.shapes_pairs=3 is invalid: the shapes dataset fits 1 to 2 mirrored pairs'),
    ({'data__shapes_pairs': 4},
     'config.data.shapes_pairs=4 is invalid: the shapes dataset fits 1 to 3 mirrored pairs'),
])
def test_bad_values_name_the_field_and_what_is_allowed(fields, message):
  assert _error(**fields).startswith(message)
