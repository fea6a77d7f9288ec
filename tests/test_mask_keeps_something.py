"""One keeps-nothing rule for every mask strategy, over its whole noise range, checked
before JAX is needed (each strategy declares its highest drop ratio in registry.py)."""

import pytest

from sparsediff_jax import registry, validation

NEAR_ONE = 0.9999999   # a 16x16 batch of 8 keeps 2048 * 1e-7 draws: nothing


@pytest.mark.parametrize('strategy', registry.MASKS.names())
def test_every_strategy_is_refused_at_its_highest_drop_ratio(tiny_config, strategy):
  config = tiny_config({'mask.strategy': strategy})
  validation.validate_fields(config)   # the tiny config's ratios keep plenty
  field, _ = registry.MASKS.max_drop[strategy](config.mask)
  section, name = field.split('.')
  config[section][name] = NEAR_ONE
  with pytest.raises(validation.ConfigError, match=rf'^config\.{field}={NEAR_ONE} is invalid: '
                     r'keeps .* of the 2048 mask draws of a batch'):
    validation.validate_fields(config)


@pytest.mark.parametrize('t0, t1, field', [(NEAR_ONE, NEAR_ONE, 'ratio_at_t0'),
                                           (0.0, NEAR_ONE, 'ratio_at_t1'),
                                           (NEAR_ONE, 0.5, 'ratio_at_t0')])
def test_noise_schedule_is_checked_at_either_end_of_the_noise_range(tiny_config, t0, t1,
                                                                     field):
  config = tiny_config({'mask.strategy': 'noise_schedule', 'mask.ratio_at_t0': t0,
                        'mask.ratio_at_t1': t1})
  with pytest.raises(validation.ConfigError, match=rf'config\.mask\.{field}='):
    validation.validate_fields(config)


def test_the_same_ratio_gets_the_same_verdict_under_both_strategies(tiny_config):
  for ratio, refused in ((0.999, False), (0.9999, True)):   # 2.05 and 0.205 draws kept
    verdicts = []
    for overrides in ({'mask.ratio': ratio},
                      {'mask.strategy': 'noise_schedule', 'mask.ratio_at_t0': ratio,
                       'mask.ratio_at_t1': ratio}):
      try:
        validation.validate_fields(tiny_config(overrides))
        verdicts.append(False)
      except validation.ConfigError:
        verdicts.append(True)
    assert verdicts == [refused, refused], (ratio, verdicts)


def test_a_strategy_cannot_be_declared_without_its_highest_drop_ratio():
  masks = registry.MaskRegistry('mask strategy', 'mask.strategy')
  with pytest.raises(TypeError, match='max_drop'):
    masks.declare('fancy', 'somewhere.fancy')
