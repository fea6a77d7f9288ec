"""A CLI subprocess in which some installed packages look uninstalled, as after the base
install without an extra: `env_without(env, folder, names)` puts a sitecustomize.py on
PYTHONPATH that makes `import NAME` raise ModuleNotFoundError and
`importlib.util.find_spec(NAME)` answer None (how code asks without importing, etils.epath
included) for each NAME and its submodules."""

import os

_SITECUSTOMIZE = '''\
import importlib.util
import sys

_HIDDEN = {names!r}


def _hidden(name):
  return name.split('.')[0] in _HIDDEN


class _Uninstalled:
  def find_spec(self, name, path=None, target=None):
    if _hidden(name):
      raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    return None


_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (
    None if _hidden(name) else _find_spec(name, package))
sys.meta_path.insert(0, _Uninstalled())
'''


def env_without(env: dict, folder: str, names) -> dict:
  """`env` with the packages `names` hidden (the sitecustomize.py is written into folder)."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, 'sitecustomize.py'), 'w') as f:
    f.write(_SITECUSTOMIZE.format(names=sorted(names)))
  return {**env, 'PYTHONPATH': os.pathsep.join([folder, env.get('PYTHONPATH', '')])}
