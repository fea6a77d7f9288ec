"""A CLI subprocess in which one function of the package takes longer, so that a test can
signal the process while that phase runs: `env_slowed(env, folder, module, function, s)`
puts a sitecustomize.py on PYTHONPATH that wraps `module.function` to sleep s seconds
first, as soon as `module` is imported (before any other module binds the name)."""

import os

_SITECUSTOMIZE = '''\
import importlib.util
import sys
import time


class _Slowed:
  def find_spec(self, name, path=None, target=None):
    if name != {module!r}:
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    run = spec.loader.exec_module

    def exec_module(module):
      run(module)
      real = getattr(module, {function!r})

      def slowed(*args, **kwargs):
        time.sleep({seconds!r})
        return real(*args, **kwargs)
      setattr(module, {function!r}, slowed)
    spec.loader.exec_module = exec_module
    return spec


sys.meta_path.insert(0, _Slowed())
'''


def env_slowed(env: dict, folder: str, module: str, function: str, seconds: float) -> dict:
  """`env` in which module.function sleeps `seconds` before it runs."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, 'sitecustomize.py'), 'w') as f:
    f.write(_SITECUSTOMIZE.format(module=module, function=function, seconds=seconds))
  return {**env, 'PYTHONPATH': os.pathsep.join([folder, env.get('PYTHONPATH', '')])}
