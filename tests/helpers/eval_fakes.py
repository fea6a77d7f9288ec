"""Test helpers for sampling and evaluation: closed-form denoisers of Gaussian data, a tiny
run config with parameters and checkpoints that need no compilation, and a full-size FID
Inception weights file with seeded values.

`write_torch_zip` writes a state_dict in torch.save's zip layout without torch (pickle
opcodes by hand), so the whole weights path (hash, reader, conversion, cache) runs on
seeded weights instead of the 95 MB download.
"""

import json
import struct
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from flax import nnx

from sparsediff_jax import formulations
from sparsediff_jax.models import build_model

from tests.helpers import tiny
from tests.helpers.fixtures import seeded_inception

FIXTURES = Path(__file__).parent / 'fixtures'


# ---- closed-form network outputs for data ~ N(0, s^2 I) ------------------------------------


def gaussian_net(formulation, s: float):
  """net_fn(net_input, cond) -> the exact optimal raw output of `formulation` for N(0, s^2)."""
  def b(v):
    return v[:, None, None, None]

  if isinstance(formulation, formulations.FlowMatching):
    def net(x, t):      # E[eps - x0 | x_t], x_t = (1 - t) x0 + t eps
      t = b(t)
      return (t - (1 - t) * s * s) / ((1 - t) ** 2 * s * s + t * t) * x
  elif isinstance(formulation, formulations.DDPMEps):
    def net(x, t):      # E[eps | x_t], x_t = sqrt(a) x0 + sqrt(1 - a) eps
      a = b(jnp.exp(formulation.log_alpha_bar(t)))
      return jnp.sqrt(1 - a) / (a * s * s + 1 - a) * x
  else:
    def net(x_in, cond):   # EDM: F with D = c_skip x + c_out F = s^2 / (s^2 + sigma^2) x
      sigma, sd = b(jnp.exp(4.0 * cond)), formulation.sigma_data
      x = x_in * jnp.sqrt(sigma**2 + sd**2)
      c_skip = sd**2 / (sigma**2 + sd**2)
      c_out = sigma * sd / jnp.sqrt(sigma**2 + sd**2)
      return (s * s / (s * s + sigma**2) * x - c_skip * x) / c_out
  return net


# ---- a tiny run ----------------------------------------------------------------------------


def tiny_config(**overrides):
  """The tests' tiny config (tiny.py) shrunk further to a few-second CPU run: a one-level
  U-Net without attention, 12 images, batch 4; `overrides` maps 'section.field' -> value."""
  return tiny.tiny_config({
      'data.num_train_examples': 12, 'model.channel_mult': (1,),
      'model.attn_resolutions': (), 'training.num_steps': 2, 'training.batch_size': 4,
      'training.log_every': 1, 'training.checkpoint_every': 0, 'optim.warmup_steps': 1,
      'eval.batch_size': 4, 'eval.num_samples': 10, 'eval.reference_features': 8,
      **overrides})


def _filled(tree, seed: int):
  """Arrays shaped like `tree`: floats ~ N(0, 0.05^2) from `seed`, everything else zero.

  Stands in for trained parameters in tests: the network's jitted random init alone costs
  about 20 s of CPU compilation, and sampling and evaluation only need some fixed weights.
  """
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: (0.05 * rng.standard_normal(s.shape)).astype(s.dtype)
      if jnp.issubdtype(s.dtype, jnp.floating) else np.zeros(s.shape, s.dtype), tree)


def fake_params(config, seed: int = 0):
  """(graphdef, parameters) of config.model with seeded values, without compiling."""
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build_model(config, 0)))
  return graphdef, _filled(abstract, seed)


def write_checkpoint(config, workdir, step: int = 3, seed: int = 0):
  """Saves a TrainState of seeded values as checkpoint `step` of WORKDIR/checkpoints.

  The EMA copies get different values from the raw parameters, so choosing one matters.
  """
  from sparsediff_jax.runtime import checkpoints, sharding
  from sparsediff_jax.train_state import init_state, make_optimizer
  tx, _ = make_optimizer(config)
  abstract = jax.eval_shape(lambda: init_state(config, tx, sharding.make_mesh()))
  state = _filled(abstract, seed).replace(
      step=np.int32(step), ema=tuple(_filled(abstract.params, seed + 1 + i)
                                     for i in range(len(abstract.ema))))
  ckpt = checkpoints.Checkpointer(str(Path(workdir) / 'checkpoints'), async_save=False)
  ckpt.save(step, state, {'data': {}})
  ckpt.wait()
  ckpt.close()
  return state


# ---- seeded Inception weights in torch's file format --------------------------------------


def seeded_inception_state_dict() -> dict:
  """pytorch-fid's state_dict names and shapes, filled with seeded values."""
  spec = json.loads(str(np.load(FIXTURES / 'inception_parity.npz')['spec']))
  return seeded_inception.seeded_state_dict(spec)


_STORAGE = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.int64): 'LongStorage'}


def _global(module: str, name: str) -> bytes:
  return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _text(s: str) -> bytes:
  raw = s.encode()
  return b'X' + struct.pack('<I', len(raw)) + raw


def _int(i: int) -> bytes:
  return b'J' + struct.pack('<i', int(i))


def _tuple(items) -> bytes:
  return b'(' + b''.join(items) + b't'


def write_torch_zip(path, state_dict: dict) -> Path:
  """Writes {name: float32/int64 array} as torch.save would (zip layout, protocol 2)."""
  pkl = [b'\x80\x02', _global('collections', 'OrderedDict'), b')R(']
  storages = {}
  for i, (name, array) in enumerate(state_dict.items()):
    array = np.array(array, order='C')   # (ascontiguousarray would make 0-d arrays 1-d)
    storages[str(i)] = array.astype(array.dtype.newbyteorder('<')).tobytes()
    strides = [s // array.itemsize for s in array.strides]
    storage_id = _tuple([_text('storage'), _global('torch', _STORAGE[array.dtype]),
                         _text(str(i)), _text('cpu'), _int(max(array.size, 1))]) + b'Q'
    pkl += [_text(name), _global('torch._utils', '_rebuild_tensor_v2'), b'(', storage_id,
            _int(0), _tuple(map(_int, array.shape)), _tuple(map(_int, strides)), b'\x89',
            _global('collections', 'OrderedDict'), b')R', b't', b'R']
  pkl += [b'u', b'.']
  path = Path(path)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    zf.writestr('archive/data.pkl', b''.join(pkl))
    zf.writestr('archive/byteorder', 'little')
    zf.writestr('archive/version', '3\n')
    for key, raw in storages.items():
      zf.writestr(f'archive/data/{key}', raw)
  return path
