"""Shared fixtures. The quick check is `python -m pytest -q -m "not slow" tests`; the full
suite (CI) runs everything. Tests marked slow start subprocesses of the CLI, several
processes, notebooks or soaks, or take more than about 20 s on 2 CPU cores."""

import pytest

from tests.helpers import tiny


@pytest.fixture
def tiny_config():
  """tiny.tiny_config: fn(overrides=None, **section__field) -> a fresh tiny ConfigDict."""
  return tiny.tiny_config
