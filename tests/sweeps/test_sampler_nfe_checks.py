"""benchmarks/sampler_nfe.py: a sampler setting counts as matching the reference only when
its quality metric AND its memorized fraction match the reference's."""

import importlib.util
import os

from tests.helpers import REPO


_spec = importlib.util.spec_from_file_location(
    'sampler_nfe', os.path.join(REPO, 'benchmarks', 'sampler_nfe.py'))
b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(b)


def _row(nfe, fd, memorized=None):
  row = {'nfe': nfe, 'digits_fd': fd, 'reference_digits_fd': 10.0}
  if memorized is not None:
    row.update(pixel_memorized_fraction=memorized, reference_pixel_memorized_fraction=0.30)
  return row


def test_the_memorized_fraction_must_match_as_well_as_the_quality():
  # fd within 5% from NFE 8 on; the memorized fraction 0.07 above the reference until 16.
  rows = [_row(6, 11.0, 0.30), _row(8, 10.3, 0.37), _row(10, 10.2, 0.36),
          _row(16, 10.1, 0.34), _row(24, 10.0, 0.31)]
  assert b.cheapest_within(rows, 'digits_fd') == 16
  # Without the memorized fraction recorded (older rows), the quality alone decides.
  assert b.cheapest_within([_row(r['nfe'], r['digits_fd']) for r in rows], 'digits_fd') == 8
  # A later NFE that drifts out again moves the answer past it.
  rows.append(_row(35, 10.0, 0.24))
  assert b.cheapest_within(rows, 'digits_fd') is None
