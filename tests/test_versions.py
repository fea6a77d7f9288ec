"""The version ranges pyproject.toml declares are bounded on both sides, the `lowest` CI
environment (.ci/lowest-constraints.txt) pins exactly their lower bounds, and the environment
running these tests lies inside them (CI runs this in both the lowest and the newest one)."""

import importlib.metadata
import os
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import REPO

PROJECT = tomllib.load(open(os.path.join(REPO, 'pyproject.toml'), 'rb'))['project']


def requirements():
  """Every requirement of the project and its extras (not the self-reference test -> tf)."""
  found = [Requirement(r) for r in PROJECT['dependencies']]
  for extra in PROJECT['optional-dependencies'].values():
    found += [Requirement(r) for r in extra if not r.startswith('sparsediff_jax')]
  return found


def lowest_pins() -> dict[str, Version]:
  pins = {}
  with open(os.path.join(REPO, '.ci', 'lowest-constraints.txt')) as f:
    for line in f:
      line = line.split('#')[0].strip()
      if line:
        name, _, version = line.partition('==')
        pins[canonicalize_name(name)] = Version(version)
  return pins


def bounds(specifier: SpecifierSet) -> tuple[Version | None, Version | None]:
  lower = [Version(s.version) for s in specifier if s.operator == '>=']
  upper = [Version(s.version) for s in specifier if s.operator == '<']
  return (lower[0] if lower else None), (upper[0] if upper else None)


def test_every_declared_range_has_a_lower_and_an_upper_bound():
  for requirement in [*requirements(), Requirement('python' + PROJECT['requires-python'])]:
    lower, upper = bounds(requirement.specifier)
    assert lower is not None and upper is not None and lower < upper, str(requirement)


def test_the_lowest_environment_pins_every_lower_bound():
  pins = lowest_pins()
  for requirement in requirements():
    if requirement.marker and not requirement.marker.evaluate():
      continue   # e.g. tensorflow (not tensorflow-cpu) off x86-64
    name = canonicalize_name(requirement.name)
    assert name in pins, f'{name} is not pinned in .ci/lowest-constraints.txt'
    assert pins[name] == bounds(requirement.specifier)[0], (
        f'{name}: .ci/lowest-constraints.txt pins {pins[name]}, pyproject.toml declares '
        f'{requirement.specifier}')
  # Colab's preinstalled set (googlecolab/backend-info) is that lowest set.
  assert pins['jax'] == Version('0.7.2') and pins['flax'] == Version('0.11.2')
  assert pins['orbax-checkpoint'] == Version('0.12.4')


def test_this_environment_is_inside_the_declared_ranges():
  assert SpecifierSet(PROJECT['requires-python']).contains(
      '.'.join(map(str, sys.version_info[:3])))
  for requirement in requirements():
    if requirement.marker and not requirement.marker.evaluate():
      continue
    try:
      installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
      continue   # an extra this environment does not have
    assert requirement.specifier.contains(installed, prereleases=True), (
        f'{requirement.name} {installed} is outside {requirement.specifier}')
