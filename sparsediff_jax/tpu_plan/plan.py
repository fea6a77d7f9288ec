"""The plan of one config on one TPU slice: compile, measure, bound, and say it in lines.

`make_plan(config, tpu_slice)` compiles the config's train step (and, with plan.sampler,
its sampler and one network call) for the slice (compile.py) and returns a JSON-able dict:
per-chip state bytes, compiled memory against the chip's HBM, FLOPs and HBM bytes per step,
the collectives, and the roofline bound (roofline.py) turned into images/s, hours and
chip-hours to training.num_steps, and the time of plan.num_samples samples. `lines(plan)`
words it for the console. `find_batch` searches the largest per-chip batch and the
smallest fsdp that fit, by compiling.
"""

import copy
import time

from absl import logging

from sparsediff_jax import errors
from sparsediff_jax.tpu_plan import compile as tpu_compile
from sparsediff_jax.tpu_plan import roofline

MIB, GIB = 2**20, 2**30


def _versions() -> dict:
  import importlib.metadata as md
  import jax
  out = {'jax': jax.__version__}
  try:
    out['libtpu'] = md.version('libtpu')
  except md.PackageNotFoundError:
    pass
  return out


def _timed(what: str, fn, *args):
  start = time.monotonic()
  logging.info('compiling %s for the TPU slice...', what)
  result = fn(*args)
  seconds = time.monotonic() - start
  logging.info('compiled %s in %.0f s', what, seconds)
  return result, seconds


def _per_step(measured: dict, steps: int) -> dict:
  """FLOPs, bytes and interconnect traffic of one training step (a call runs `steps`)."""
  return {'flops': measured['flops'] / steps, 'hbm_bytes': measured['hbm_bytes'] / steps,
          'ici_bytes': measured['collectives']['traffic_bytes'] / steps}


def _with_config(config, **fields):
  """A copy of `config` with 'section.field' values replaced (section__field=value)."""
  c = copy.deepcopy(config)
  for key, value in fields.items():
    section, name = key.split('__')
    c[section][name] = value
  return c


def train_part(config, tpu_slice, devices) -> dict:
  """The train step's entry of a plan (on the mesh config.sharding.fsdp gives)."""
  chip, fsdp = tpu_slice.chip, config.sharding.fsdp
  mesh = tpu_compile.make_mesh(devices, fsdp)
  (measured, parts), seconds = _timed('the train step', tpu_compile.train_step, config, mesh)
  steps, t = config.training.steps_per_call, config.training
  per_step = _per_step(measured, steps)
  bound = roofline.bound(chip, per_step['flops'], per_step['hbm_bytes'],
                         per_step['ici_bytes'])
  return {
      'global_batch': t.batch_size, 'per_chip_batch': t.batch_size // tpu_slice.chips,
      'mesh': {'data': tpu_slice.chips // fsdp, 'fsdp': fsdp},
      'state_bytes': {**parts, 'total': sum(parts.values())},
      'memory': measured['memory'], 'fits': measured['memory']['need'] <= chip.hbm_bytes,
      **per_step,
      'arithmetic_intensity': roofline.arithmetic_intensity(per_step['flops'],
                                                            per_step['hbm_bytes']),
      'collectives': measured['collectives'],
      'bound': {'compute_s': bound.compute_s, 'memory_s': bound.memory_s,
                'interconnect_s': bound.interconnect_s},
      'roofline': roofline.training(bound, t.batch_size, t.num_steps, tpu_slice.chips),
      'num_steps': t.num_steps, 'compile_seconds': seconds}


def sampler_part(config, tpu_slice, devices) -> dict:
  """The sampler's entry: its compiled memory, and its time per plan.num_samples from the
  cost of one network call times the NFE."""
  from sparsediff_jax import formulations, samplers
  chip, s = tpu_slice.chip, config.sampling
  mesh = tpu_compile.make_mesh(devices, config.sharding.fsdp)
  whole, seconds = _timed('the sampler', tpu_compile.sampler, config, mesh)
  call, call_seconds = _timed('one network call', tpu_compile.network_call, config, mesh)
  nfe = samplers.num_evaluations(formulations.get_formulation(config.diffusion), s.sampler,
                                 s.num_steps)
  bound = roofline.bound(chip, call['flops'], call['hbm_bytes'],
                         call['collectives']['traffic_bytes'])
  batch = tpu_compile.sampling_batch(config, tpu_slice.chips)
  return {'sampler': s.sampler, 'memory': whole['memory'],
          'fits': whole['memory']['need'] <= chip.hbm_bytes,
          'collectives': whole['collectives'],
          'call': {'flops': call['flops'], 'hbm_bytes': call['hbm_bytes'],
                   'ici_bytes': call['collectives']['traffic_bytes']},
          'roofline': roofline.sampling(bound, nfe, batch, config.plan.num_samples),
          'compile_seconds': seconds + call_seconds}


def make_plan(config, tpu_slice) -> dict:
  """The plan of `config` on `tpu_slice` (topology.Slice); see the module docstring."""
  tpu_compile.require_libtpu()
  devices = tpu_compile.slice_devices(tpu_slice)
  chip = tpu_slice.chip
  plan = {
      'topology': tpu_slice.name, 'slice': tpu_slice.topology,
      'accelerator_type': tpu_slice.cloud_name, 'generation': tpu_slice.generation,
      'chips': tpu_slice.chips,
      'hosts': len({d.process_index for d in devices}),   # libtpu's count of host VMs
      'chip': {'peak_bf16_flops': chip.peak_bf16_flops, 'hbm_bytes': chip.hbm_bytes,
               'hbm_bytes_per_s': chip.hbm_bytes_per_s,
               'ici_bytes_per_s': chip.ici_bytes_per_s,
               'ridge_flops_per_byte': roofline.ridge(chip)},
      'train': train_part(config, tpu_slice, devices),
      'sampling': sampler_part(config, tpu_slice, devices) if config.plan.sampler else None,
      'versions': _versions(),
      'note': 'a lower bound from the compiler\'s own counts (cost and memory analysis of '
              'the compiled TPU program), not a measurement'}
  if config.plan.find_batch:
    plan['find_batch'] = find_batch(config, tpu_slice, devices, plan['train']['fits'])
  return plan


def _fits(config, tpu_slice, devices) -> bool:
  mesh = tpu_compile.make_mesh(devices, config.sharding.fsdp)
  (measured, _), _ = _timed(f'the train step at batch {config.training.batch_size}, fsdp '
                            f'{config.sharding.fsdp}', tpu_compile.train_step, config, mesh)
  return measured['memory']['need'] <= tpu_slice.chip.hbm_bytes


def largest_batch(fits, start: int, fits_at_start: bool, most: int) -> int:
  """The largest b in [1, most] with fits(b), given fits(start) == fits_at_start and that
  fitting is monotone in b (0 if even 1 does not fit). Doubles, then bisects."""
  lo, hi = (start, None) if fits_at_start else (0, start)
  while hi is None:   # double until it no longer fits
    b = min(2 * lo, most)
    if b == lo:
      return lo
    if fits(b):
      lo = b
    else:
      hi = b
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if fits(mid) else (lo, mid)
  return lo


def find_batch(config, tpu_slice, devices, fits_as_is: bool) -> dict:
  """The largest per-chip batch that fits at config.sharding.fsdp, and the smallest fsdp
  (a divisor of the chip count) that fits at config.training.batch_size, by compiling;
  fits_as_is: whether the config itself fits (compiled already)."""
  chips, fsdp_now = tpu_slice.chips, config.sharding.fsdp
  per_chip = config.training.batch_size // chips

  def fits_batch(b):
    return _fits(_with_config(config, training__batch_size=b * chips), tpu_slice, devices)

  def fits_fsdp(f):
    return fits_as_is if f == fsdp_now else _fits(_with_config(config, sharding__fsdp=f),
                                                  tpu_slice, devices)

  best = largest_batch(fits_batch, per_chip, fits_as_is, config.plan.max_batch_per_chip)
  fsdp = next((f for f in range(1, chips + 1) if chips % f == 0 and fits_fsdp(f)), None)
  return {'largest_per_chip_batch': best, 'largest_global_batch': best * chips,
          'smallest_fsdp': fsdp, 'at_fsdp': config.sharding.fsdp,
          'at_global_batch': config.training.batch_size}


def refusal(plan: dict) -> str | None:
  """The one line saying what does not fit on the slice, or None when everything fits."""
  parts = (('train step', plan['train']), ('sampler', plan['sampling']))
  over = [(name, part) for name, part in parts if part and not part['fits']]
  if not over:
    return None
  hbm = plan['chip']['hbm_bytes']
  what = '; '.join(f'the {name} needs {part["memory"]["need"] / GIB:.2f} GiB per chip'
                   for name, part in over)
  found = plan.get('find_batch')
  if found:
    advice = (f'the largest per-chip batch that fits is {found["largest_per_chip_batch"]} '
              f'(training.batch_size={found["largest_global_batch"]}); ' +
              (f'sharding.fsdp={found["smallest_fsdp"]} fits at batch '
               f'{found["at_global_batch"]}' if found['smallest_fsdp'] else
               'no sharding.fsdp fits at this batch'))
  else:
    advice = ('lower training.batch_size (or eval.batch_size), raise sharding.fsdp, or run '
              'with --config.plan.find_batch=True to find what fits')
  return (f'{what}, more than the {hbm / GIB:.0f} GiB of a {plan["generation"]} chip on '
          f'{plan["topology"]}; {advice}')


def _seconds(s: float) -> str:
  return f'{s * 1e3:.3g} ms' if s < 1 else f'{s:.3g} s'


def _collective_text(summary: dict) -> str:
  parts = [f'{kind} x{e["count"]} ({e["bytes"] / MIB:.2f} MiB)'
           for kind, e in sorted(summary['by_kind'].items())]
  return ', '.join(parts) or 'none'


def lines(plan: dict) -> list[str]:
  """The plan worded for the console, per chip."""
  t, c = plan['train'], plan['chip']
  m, r, b = t['memory'], t['roofline'], t['bound']
  hbm = c['hbm_bytes']
  out = [
      f'{plan["topology"]}: {plan["chips"]} {plan["generation"]} chips ({plan["slice"]}, '
      f'{plan["accelerator_type"]}), {plan["hosts"]} host VM(s); mesh data '
      f'{t["mesh"]["data"]} x fsdp {t["mesh"]["fsdp"]}; global batch {t["global_batch"]} '
      f'({t["per_chip_batch"]} per chip)',
      'per chip: state ' + ', '.join(f'{k} {v / MIB:.1f} MiB'
                                      for k, v in t['state_bytes'].items()),
      f'per chip: train step memory {m["need"] / GIB:.2f} GiB of {hbm / GIB:.0f} GiB HBM '
      f'(arguments {m["arguments"] / MIB:.0f} MiB, temporaries {m["temporaries"] / MIB:.0f} '
      f'MiB, outputs {m["outputs"] / MIB:.0f} MiB, {m["aliased"] / MIB:.0f} MiB of them in '
      f'donated arguments): {"fits" if t["fits"] else "DOES NOT FIT"}',
      f'per chip per step: {t["flops"] / 1e9:.3g} GFLOP, {t["hbm_bytes"] / 1e9:.3g} GB of HBM '
      f'traffic ({t["arithmetic_intensity"]:.3g} FLOP/byte; compute-bound from '
      f'{c["ridge_flops_per_byte"]:.0f}), {t["ici_bytes"] / 1e6:.3g} MB over ICI',
      f'collectives: {_collective_text(t["collectives"])}',
      f'bound per step: compute {_seconds(b["compute_s"])}, HBM {_seconds(b["memory_s"])}, '
      f'ICI {_seconds(b["interconnect_s"])} -> at least {_seconds(r["step_seconds"])} '
      f'({r["limited_by"]}-bound), MFU at most {100 * r["mfu_bound"]:.1f}%, at most '
      f'{r["images_per_second"]:.4g} images/s',
      f'{t["num_steps"]} steps: at least {r["hours"]:.3g} h, {r["chip_hours"]:.4g} chip-hours',
  ]
  s = plan.get('sampling')
  if s:
    sr = s['roofline']
    out += [f'sampler ({s["sampler"]}, {sr["nfe"]} NFE, batch {sr["batch"]}): memory '
            f'{s["memory"]["need"] / GIB:.2f} GiB per chip: '
            f'{"fits" if s["fits"] else "DOES NOT FIT"}; {sr["num_samples"]} samples in at '
            f'least {sr["seconds"] / 60:.3g} min ({sr["limited_by"]}-bound, '
            f'{sr["images_per_second"]:.4g} images/s)']
  if found := plan.get('find_batch'):
    out += [f'largest per-chip batch that fits: {found["largest_per_chip_batch"]} (global '
            f'{found["largest_global_batch"]}); smallest fsdp that fits at batch '
            f'{found["at_global_batch"]}: {found["smallest_fsdp"]}']
  out += [f'(a bound from the compiler\'s own counts, not a measurement)']
  return out


def check(plan: dict) -> None:
  """errors.ConfigError with refusal(plan) when something does not fit."""
  if message := refusal(plan):
    raise errors.ConfigError(message)
