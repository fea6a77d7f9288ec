"""The values of --mode, one module each; each exports one `MODE` (base.Mode).

`MODES[name]` imports the mode's module on first use, so that naming the modes (the --mode
flag's choices, NAMES) imports neither JAX nor TensorFlow: a bad config is reported before
them. Only main.py imports modes; see modes/README.md for the contract.
"""

import importlib

from sparsediff_jax.modes.base import Mode

# --mode -> (the module under sparsediff_jax/modes/ that defines its MODE, what it does for
# --help), in --help order.
_MODULES = {
    'train': ('train', 'train, resuming from the newest checkpoint in --workdir'),
    'sample': ('sample', 'sample images of the newest checkpoint'),
    'research': ('research', "the run's research metrics (research_metrics.json)"),
    'fid_stats': ('fid_stats', 'FID reference statistics of the training images'),
    'eval': ('evaluate', 'FID, KID and precision/recall of the newest checkpoint'),
    'plan': ('plan', 'compile for the TPU slice --topology names, here: memory, cost, '
             'roofline (plan.json)'),
}
NAMES = tuple(_MODULES)
HELP = '; '.join(f'{name}: {what}' for name, (_, what) in _MODULES.items())


class _Table(dict):
  """name -> Mode, each module imported when its mode is first asked for."""

  def __missing__(self, name: str) -> Mode:
    if name not in _MODULES:
      raise KeyError(name)
    mode = importlib.import_module(f'{__name__}.{_MODULES[name][0]}').MODE
    if mode.name != name:
      raise ValueError(f'{_MODULES[name][0]}.MODE is named {mode.name!r}, not {name!r}')
    self[name] = mode
    return mode


MODES: dict[str, Mode] = _Table()
