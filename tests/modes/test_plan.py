"""--mode=plan: TPU slice names, the roofline arithmetic, the HLO collectives, the batch
search and the refusal lines (fast); one slow test compiles the tiny config for a one-host
and a four-host v5e slice with libtpu."""

import importlib.util
import json
import math
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from sparsediff_jax import errors
from sparsediff_jax.tpu_plan import collectives, roofline, topology
from sparsediff_jax.tpu_plan import compile as tpu_compile
from sparsediff_jax.tpu_plan import plan as tpu_plan
from tests.helpers import cli_runs, tiny


@pytest.mark.parametrize('name, generation, chips, slice_name, hosts', [
    ('v4-8', 'v4', 4, 'v4:2x2x1', 1),          # v4 names count TensorCores: 2 per chip
    ('v4-32', 'v4', 16, 'v4:2x2x4', 4),
    ('v5p-8', 'v5p', 4, 'v5p:2x2x1', 1),
    ('v5p-128', 'v5p', 64, 'v5p:4x4x4', 16),
    ('v5e-8', 'v5e', 8, 'v5e:2x4', 1),         # v5e and v6e names count chips
    ('v5litepod-16', 'v5e', 16, 'v5e:4x4', 4),
    ('V5E-16', 'v5e', 16, 'v5e:4x4', 4),
    ('v6e-8', 'v6e', 8, 'v6e:2x4', 1),
    ('v6e-256', 'v6e', 256, 'v6e:16x16', 64),
    ('v5e:4x4', 'v5e', 16, 'v5e:4x4', 4),
    ('v4:2x2x1', 'v4', 4, 'v4:2x2x1', 1),
    ('v5e:2x2', 'v5e', 4, 'v5e:2x2', 1),
])
def test_slice_names_give_generation_chips_topology_and_hosts(name, generation, chips,
                                                              slice_name, hosts):
  s = topology.parse(name)
  assert (s.generation, s.chips, s.topology, s.hosts) == (generation, chips, slice_name, hosts)


def test_every_known_name_parses_back_to_itself():
  for name in topology.known_names():
    s = topology.parse(name)
    assert s.cloud_name == name
    assert topology.parse(s.topology).chips == s.chips
  assert {'v4-8', 'v5e-8', 'v5p-8', 'v6e-8', 'v6e-256'} <= set(topology.known_names())


@pytest.mark.parametrize('name', ['v3-8', 'v5e-12', 'v4-6', 'v4-7', 'v5e:2x2x1', 'v4:2x2',
                                  'tpu', '', 'v7x-8', 'v5e:0x4'])
def test_an_unknown_slice_is_one_line_listing_the_known_ones(name):
  with pytest.raises(topology.UnknownTopologyError) as e:
    topology.parse(name)
  message = str(e.value)
  assert '\n' not in message and repr(name) in message
  assert 'v5e-8' in message and 'v4-8' in message and 'GEN:AxB' in message
  assert isinstance(e.value, errors.ConfigError)   # exit code 2


def test_chip_figures_are_the_documented_ones():
  c = topology.CHIPS
  assert c['v5e'].peak_bf16_flops == 197e12 and c['v5e'].hbm_bytes_per_s == 819e9
  assert c['v6e'].peak_bf16_flops == 918e12 and c['v6e'].hbm_bytes == 32 * topology.GIB
  assert c['v4'].peak_bf16_flops == 275e12 and c['v5p'].hbm_bytes == 95 * topology.GIB
  # the ridge the issue quotes: ~240 FLOP/byte on v5e, ~560 on v6e
  assert round(roofline.ridge(c['v5e'])) == 241 and round(roofline.ridge(c['v6e'])) == 560


def test_the_bound_is_the_slowest_of_compute_memory_and_interconnect():
  chip = topology.CHIPS['v5e']
  b = roofline.bound(chip, flops=197e12 * 0.011, hbm_bytes=819e9 * 0.033,
                     ici_bytes=400e9 * 0.002)
  assert b.limited_by == 'memory'
  assert b.seconds == pytest.approx(0.033)
  assert b.mfu == pytest.approx(0.011 / 0.033)
  t = roofline.training(b, global_batch=128, num_steps=300_000, chips=8)
  assert t['images_per_second'] == pytest.approx(128 / 0.033)
  assert t['hours'] == pytest.approx(300_000 * 0.033 / 3600)
  assert t['chip_hours'] == pytest.approx(8 * t['hours'])
  ici = roofline.bound(chip, flops=1.0, hbm_bytes=1.0, ici_bytes=400e9)
  assert ici.limited_by == 'interconnect' and ici.seconds == pytest.approx(1.0)
  assert roofline.bound(chip, 0, 0, 0).mfu == 0.0


def test_sampling_time_counts_whole_batches_of_nfe_calls():
  call = roofline.bound(topology.CHIPS['v6e'], flops=918e12 * 0.002, hbm_bytes=0.0)
  s = roofline.sampling(call, nfe=10, batch=256, num_samples=50_000)
  assert s['seconds'] == pytest.approx(math.ceil(50_000 / 256) * 10 * 0.002)
  assert s['limited_by'] == 'compute'


HLO = '\n'.join([
    'ENTRY %main {',
    '  %all-reduce = f32[256,256]{1,0:T(8,128)} all-reduce(%fusion), channel_id=1, '
    'replica_groups=[1,4]<=[4], to_apply=%add',
    '  %all-reduce.1 = (f32[10]{0}, bf16[4,8]{1,0}) all-reduce(%a, %b), '
    'replica_groups={{0,1},{2,3}}, to_apply=%add',
    "  %ag = (f32[2,8]{1,0}, f32[8,8]{1,0}) all-gather-start(%p), "
    "replica_groups=mesh['axis_0'=2,'axis_1'=2] {'axis_1'}, dimensions={0}",
    '  %agd = f32[8,8]{1,0} all-gather-done(%ag)',
    '  %cp = f32[16]{0} collective-permute(%q), source_target_pairs={{0,1}}',
    '  // %fake = f32[99]{0} all-reduce(%x)',
    '}'])


def test_collectives_are_read_from_the_hlo_with_bytes_and_group_sizes():
  found = collectives.parse(HLO, chips=4)
  assert [c['kind'] for c in found] == ['all-reduce', 'all-reduce', 'all-gather',
                                        'collective-permute']
  assert [c['bytes'] for c in found] == [256 * 256 * 4, 10 * 4 + 32 * 2, 8 * 8 * 4, 64]
  assert [c['group'] for c in found] == [4, 2, 2, 4]
  summary = collectives.summarize(found)
  assert summary['by_kind']['all-reduce']['count'] == 2
  expected = 2 * 3 / 4 * 262144 + 2 * 1 / 2 * 104 + 1 / 2 * 256 + 64
  assert summary['traffic_bytes'] == pytest.approx(expected)


def test_the_largest_batch_search_finds_the_edge_from_either_side():
  asked = []

  def fits(b):
    asked.append(b)
    return b <= 37

  assert tpu_plan.largest_batch(fits, 8, True, most=1024) == 37
  assert tpu_plan.largest_batch(fits, 64, False, most=1024) == 37
  assert tpu_plan.largest_batch(fits, 16, True, most=20) == 20   # capped
  assert tpu_plan.largest_batch(lambda b: False, 4, False, most=1024) == 0
  assert len(asked) < 20   # a bisection, not a scan


def _plan(fits=True, find=None):
  gib = topology.GIB
  part = {'fits': fits, 'memory': {'need': 20 * gib}}
  out = {'train': part, 'sampling': None, 'generation': 'v5e', 'topology': 'v5e-8',
         'chip': {'hbm_bytes': 16 * gib}}
  if find:
    out['find_batch'] = find
  return out


def test_a_plan_that_does_not_fit_is_refused_in_one_line_naming_what_would():
  assert tpu_plan.refusal(_plan(fits=True)) is None
  line = tpu_plan.refusal(_plan(fits=False))
  assert '\n' not in line and '20.00 GiB per chip' in line and '16 GiB' in line
  assert 'plan.find_batch=True' in line
  found = {'largest_per_chip_batch': 6, 'largest_global_batch': 48, 'smallest_fsdp': 4,
           'at_global_batch': 128, 'at_fsdp': 1}
  line = tpu_plan.refusal(_plan(fits=False, find=found))
  assert 'training.batch_size=48' in line and 'sharding.fsdp=4' in line
  with pytest.raises(errors.ConfigError):
    tpu_plan.check(_plan(fits=False))


def test_missing_libtpu_is_one_line_saying_how_to_install_it(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'libtpu' else real(name, *a))
  with pytest.raises(errors.ConfigError, match=r"pip install -e '\.\[tpu\]'"):
    tpu_compile.require_libtpu()


@pytest.fixture
def plan_mode():
  import sparsediff_jax.main  # noqa: F401  (defines --topology)
  from sparsediff_jax.modes import plan
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return plan


@pytest.mark.parametrize('name, message', [('v9-8', 'not a known TPU slice'),
                                           (None, 'needs --topology')])
def test_the_mode_refuses_a_bad_slice_before_compiling_and_writes_nothing(
    plan_mode, tmp_path, monkeypatch, name, message):
  monkeypatch.setattr(tpu_plan, 'make_plan', lambda *a: pytest.fail('compiled'))
  workdir = tmp_path / 'run'
  with flagsaver.flagsaver(topology=name):
    with pytest.raises(errors.ConfigError, match=message):
      plan_mode.run_plan_mode(tiny.tiny_config(), str(workdir))
  assert not workdir.exists()


def test_the_mode_without_libtpu_writes_nothing(plan_mode, tmp_path, monkeypatch):
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None)
  workdir = tmp_path / 'run'
  with flagsaver.flagsaver(topology='v5e-8'):
    with pytest.raises(errors.ConfigError, match='libtpu'):
      plan_mode.run_plan_mode(tiny.tiny_config(), str(workdir))
  assert not workdir.exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                    reason="libtpu is not installed (pip install -e '.[tpu]')")
def test_the_tiny_config_compiles_for_a_one_host_and_a_four_host_v5e_slice(tmp_path):
  env = cli_runs.env(str(tmp_path))
  for name, hosts, sampler in (('v5e:2x2', 1, True), ('v5e:4x4', 4, False)):
    workdir = tmp_path / name.replace(':', '_')
    flags_ = tiny.as_flags({**tiny.TINY, 'training.batch_size': 16, 'eval.batch_size': 16,
                            'plan.sampler': sampler})
    result = cli_runs.run('--mode=plan', f'--topology={name}', f'--workdir={workdir}',
                          *flags_, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads((workdir / 'plan.json').read_text())
    train = plan['train']
    assert (plan['hosts'], plan['chips']) == (hosts, 16 if hosts == 4 else 4)
    assert train['memory']['need'] > 0 and train['memory']['arguments'] > 0
    assert train['state_bytes']['params'] > 0 and train['fits']
    assert train['flops'] > 0 and train['hbm_bytes'] > 0
    # the gradients are summed over the data axis
    assert train['collectives']['by_kind']['all-reduce']['count'] >= 1
    assert train['roofline']['step_seconds'] > 0 and 0 < train['roofline']['mfu_bound'] <= 1
    if sampler:
      assert plan['sampling']['fits'] and plan['sampling']['call']['flops'] > 0
      assert plan['sampling']['roofline']['nfe'] == 3   # Heun, 2 steps
    assert 'bound per step' in result.stderr + result.stdout


def test_find_batch_searches_the_batch_per_chip_and_the_smallest_fsdp(monkeypatch):
  # a model that fits when 32 images per chip or fewer, or when its state is split 4 ways
  compiled = []

  def fits(config, tpu_slice, devices):
    compiled.append((config.training.batch_size, config.sharding.fsdp))
    return config.sharding.fsdp >= 4 or config.training.batch_size // tpu_slice.chips <= 32

  monkeypatch.setattr(tpu_plan, '_fits', fits)
  config = tiny.tiny_config({'training.batch_size': 8 * 64})
  found = tpu_plan.find_batch(config, topology.parse('v5e-8'), None, fits_as_is=False)
  assert found == {'largest_per_chip_batch': 32, 'largest_global_batch': 256,
                   'smallest_fsdp': 4, 'at_fsdp': 1, 'at_global_batch': 512}
  assert (512, 1) not in compiled   # the config as it is was compiled already
  assert config.training.batch_size == 512 and config.sharding.fsdp == 1   # not changed


def _load_table_script():
  return importlib.import_module('benchmarks.tpu_plan_table')


def _cell(config, topology_name, fits):
  s = topology.parse(topology_name)
  b = roofline.bound(s.chip, flops=2e12, hbm_bytes=27e9, ici_bytes=1e8)
  memory = {'need': 3 * topology.GIB}
  train = {'global_batch': 128, 'fits': fits, 'memory': memory, 'flops': 2e12,
           'hbm_bytes': 27e9, 'ici_bytes': 1e8, 'arithmetic_intensity': 2e12 / 27e9,
           'num_steps': 300_000, 'roofline': roofline.training(b, 128, 300_000, s.chips)}
  return {'config': config, 'topology': topology_name, 'seconds': 60,
          'refusal': None if fits else 'the train step needs 3.00 GiB per chip, ...',
          'plan': {'chips': s.chips, 'generation': s.generation, 'train': train,
                   'sampling': None}}


def test_the_table_is_rebuilt_from_the_cells_and_kept_cells_are_not_compiled(tmp_path,
                                                                             monkeypatch):
  table = _load_table_script()
  monkeypatch.setattr(table, 'OUT', str(tmp_path))
  monkeypatch.setattr(table, 'CELLS', str(tmp_path / 'cells'))
  os.makedirs(tmp_path / 'cells')
  for config, name, fits in (('celeba', 'v5e-8', True), ('digits', 'v6e-8', False)):
    (tmp_path / 'cells' / f'{config}__{name}.json').write_text(
        json.dumps(_cell(config, name, fits)))
  monkeypatch.setattr(table.subprocess, 'run', lambda *a, **k: pytest.fail('compiled'))
  monkeypatch.setattr('sys.argv', ['tpu_plan_table.py', '--configs=celeba',
                                   '--topologies=v5e-8'])
  table.main()
  text = (tmp_path / 'README.md').read_text()
  rows = [line for line in text.splitlines() if line.startswith(('digits |', 'celeba |'))]
  assert [r.split(' | ')[:5] for r in rows] == [
      ['digits', 'v6e-8', '8', '128', '**no**'], ['celeba', 'v5e-8', '8', '128', 'yes']]
  assert 'memory' in rows[1]   # 27 GB at 819 GB/s outweighs 2 TFLOP at 197 TFLOP/s
  assert 'digits on v6e-8: the train step needs' in text


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (('--mode=plan', '--topology=v5e-12'), "--topology='v5e-12' is not a known TPU slice"),
    (('--mode=train', '--topology=v5e-8'), '--topology is for --mode=plan only'),
])
def test_the_cli_refuses_a_bad_topology_in_one_line_and_writes_nothing(tmp_path, args,
                                                                      message):
  workdir = tmp_path / 'run'
  result = cli_runs.run(*args, f'--workdir={workdir}', *cli_runs.TINY,
                        env=cli_runs.env(str(tmp_path)), timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  errors_ = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors_) == 1 and message in errors_[0]
  assert not workdir.exists()
