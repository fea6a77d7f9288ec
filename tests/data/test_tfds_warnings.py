"""An unprepared TFDS dataset is one error, not also TFDS's warning about a version folder
that does not exist (it names a path the user never made); a folder that exists but is not
a prepared dataset is still reported."""

import logging

import ml_collections
import pytest
from absl import logging as absl_logging

from sparsediff_jax import errors
from sparsediff_jax.data import tfds_sources


def folder_warnings(data_dir) -> list:
  """The folders of TFDS's 'Variant folder ...' warnings while cifar10 is looked up."""
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  absl_logging.get_absl_logger().addHandler(handler)
  data = ml_collections.ConfigDict(dict(data_dir=str(data_dir), download=False))
  try:
    with pytest.raises(errors.DatasetUnavailableError, match='is not prepared in'):
      tfds_sources.prepared_builder('cifar10', data)
  finally:
    absl_logging.get_absl_logger().removeHandler(handler)
  return [str(r.args[0]) for r in records if str(r.msg).startswith('Variant folder')]


def test_no_warning_names_a_folder_that_does_not_exist(tmp_path):
  assert folder_warnings(tmp_path) == []
  assert list(tmp_path.iterdir()) == []


def test_a_folder_that_exists_without_the_dataset_is_still_reported(tmp_path):
  version = tmp_path / 'cifar10' / '3.0.2'
  version.mkdir(parents=True)
  assert folder_warnings(tmp_path) == [str(version)]
