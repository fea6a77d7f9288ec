"""benchmarks/tpu_compile_time.py: its part list and its HLO size count (no compile here)."""

import importlib

import pytest


def _script():
  return importlib.import_module('benchmarks.tpu_compile_time')


def test_parts_are_parsed_in_order_and_unknown_ones_refused_naming_the_choices():
  script = _script()
  assert script.parse_parts('sampler2,train') == ['sampler2', 'train']
  for bad in ('train,loss', ''):
    with pytest.raises(SystemExit, match='choose from train,call,sampler,sampler2'):
      script.parse_parts(bad)


def test_hlo_size_counts_instructions_not_headers_or_braces():
  text = ('HloModule m\n\nENTRY %main (p: f32[2]) -> f32[2] {\n'
          '  %p = f32[2]{0} parameter(0)\n  ROOT %n = f32[2]{0} negate(%p)\n}\n')
  assert _script()._hlo_lines(text) == 2
