"""Running a kept result again (sweeps/carry_over.overrides_for) and the equal-quality
replay of benchmarks/locality_at_quality.py: which step, which runs, and the table."""

import glob
import importlib.util
import json
import os

import pytest

from sparsediff_jax.errors import ConfigError
from sparsediff_jax.sweeps import carry_over
from tests.helpers import REPO

_spec = importlib.util.spec_from_file_location(
    'locality_at_quality', os.path.join(REPO, 'benchmarks', 'locality_at_quality.py'))
laq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(laq)
DIGITS = os.path.join(REPO, 'configs', 'digits.py')
WINDOW_RUNS = os.path.join(REPO, 'docs', 'results', 'memorization_window', 'runs')


@pytest.mark.parametrize('value, text', [
    ((1, 2), '(1,2)'), ([0.995], '(0.995,)'), ([], '()'), (True, 'True'), (None, 'None'),
    ('heun', 'heun'), (0.004, '0.004'), (5600, '5600'), (('a', 'b'), "('a','b')")])
def test_flag_value_writes_what_the_cli_parses_back(value, text):
  assert carry_over.flag_value(value) == text


def test_every_committed_window_config_is_made_again_from_its_config_file():
  configs = sorted(glob.glob(os.path.join(WINDOW_RUNS, '*model.name=dit*', 'config.json')))
  configs += sorted(glob.glob(os.path.join(WINDOW_RUNS, '*examples=32__training.seed=0*',
                                           'config.json')))
  assert len(configs) >= 10
  for path in configs:
    with open(path) as f:
      kept = json.load(f)
    overrides = carry_over.overrides_for(kept, DIGITS)
    assert overrides['data.image_size'] == '8'
    assert carry_over.differences(
        kept, carry_over.as_dict(carry_over.resolve_config(DIGITS, overrides))) == []


def test_a_kept_config_no_override_can_make_is_refused():
  kept = carry_over.as_dict(carry_over.resolve_config(DIGITS, {'mask.ratio': '0.5'}))
  kept['research']['gone'] = 3                       # a field removed since
  with pytest.raises(ConfigError, match='research.gone'):
    carry_over.overrides_for(kept, DIGITS)


def test_replay_step_is_the_first_scored_step_at_or_after_tau_gen():
  t = [{'step': s} for s in (200, 400, 600)]
  assert laq.replay_step(t, 380.5) == 400
  assert laq.replay_step(t, 400.0) == 400
  assert laq.replay_step(t, 150.0) == 200


def _kept(folder, name, model, group, ratio):
  os.makedirs(folder / name)
  (folder / name / 'config.json').write_text(json.dumps(
      {'model': {'name': model}, 'mask': {'ratio': ratio}}))
  (folder / name / 'sweep_run.json').write_text(json.dumps({'group': group}))


def test_runs_are_selected_by_name_backbone_group_and_ratio(tmp_path):
  _kept(tmp_path, 'a_n32_unet_0', 'unet', 'grid', 0.0)
  _kept(tmp_path, 'a_n32_unet_0.9', 'unet', 'grid', 0.9)
  _kept(tmp_path, 'a_n32_unet_0.5', 'unet', 'grid', 0.5)
  _kept(tmp_path, 'a_n32_matched', 'unet', 'batch_matched0.9', 0.0)
  _kept(tmp_path, 'a_n32_dit_0', 'dit', 'grid', 0.0)
  _kept(tmp_path, 'a_n16_dit_0', 'dit', 'grid', 0.0)
  assert laq.selected_runs(str(tmp_path), ['n32'], ['unet', 'dit'], ['grid'], [0, 0.9]) == [
      'a_n32_dit_0', 'a_n32_unet_0', 'a_n32_unet_0.9']
  assert laq.selected_runs(str(tmp_path), [], ['unet'], ['batch_matched0.9'], [0]) == [
      'a_n32_matched']


def test_table_averages_the_seeds_that_reached_quality_and_counts_the_others():
  def entry(model, seed, reached=True, matches=True, radius=4.0, far=0.3, mem=0.2, step=800):
    e = {'run': f'{model}{seed}', 'model': model, 'group': 'grid', 'mask_ratio': 0.0,
         'seed': seed, 'reached': reached}
    if reached:
      e.update(replay_matches=matches, step=step, locality_radius90=radius,
               locality_far_fraction=far, pixel_memorized_fraction=mem)
    return e
  md = laq.table([entry('unet', 0, radius=4.0), entry('unet', 1, radius=5.0),
                  entry('unet', 2, matches=False, radius=99.0),
                  entry('dit', 0, radius=3.0, step=5400), entry('dit', 1, reached=False)],
                 'digits_confidence')
  rows = md.splitlines()
  assert rows[0].startswith('| backbone | sweep group | mask ratio | seeds at the '
                            'digits_confidence target |')
  assert '| unet | grid | 0.0 | 2 of 3 | 800 ± 0 | 4.50 ± 0.71 |' in md
  assert '| dit | grid | 0.0 | 1 of 2 | 5400 ± 0 | 3.00 ± 0.00 |' in md


@pytest.mark.parametrize('flags, fragment', [
    (['--metric=fid'], "--metric='fid' is not a quality metric"),
    (['--ratios=0,x'], '--ratios'),
    (['--results=/nonexistent'], "--results='/nonexistent' is not a folder"),
    (['--select=no_such_run'], 'no kept result in'),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, flags, fragment):
  _kept(tmp_path / 'kept', 'a_n32_unet_0', 'unet', 'grid', 0.0)
  args = [f'--results={tmp_path / "kept"}', f'--root={tmp_path / "root"}',
          f'--out={tmp_path / "out"}']
  assert laq.main(args + flags) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and fragment in err and err.count('\n') == 1
  assert sorted(os.listdir(tmp_path)) == ['kept']


@pytest.mark.slow   # three tiny CLI runs
def test_a_replayed_run_scores_what_its_committed_trajectory_holds(tmp_path, monkeypatch):
  """A tiny shapes run scored every 2 steps is kept as a committed result (its tau_gen put at
  step 3); the replay trains it again to step 4 (the first scored step at or after 3) and
  research mode there gives the trajectory's numbers, plus the locality."""
  from tests.helpers import cli_runs
  env = cli_runs.env(str(tmp_path), jax_cache=str(tmp_path / 'jax_cache'))
  flags = [*cli_runs.TINY, '--config.training.num_steps=6',
           '--config.training.checkpoint_every=2', '--config.research.window_every=2',
           '--config.research.num_samples=8', '--config.research.batch_size=8']
  original = tmp_path / 'original'
  result = cli_runs.run(*flags, f'--workdir={original}', '--mode=train', env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  kept = tmp_path / 'results' / 'tiny'
  os.makedirs(kept)
  for name, source in (('config.json', original / 'config.json'),
                       ('window_trajectory.json', original / 'research' /
                        'window_trajectory.json')):
    (kept / name).write_text(source.read_text())
  trajectory = json.loads((kept / 'window_trajectory.json').read_text())
  assert [e['step'] for e in sorted(trajectory, key=lambda e: e['step'])] == [2, 4, 6]
  (kept / 'sweep_run.json').write_text(json.dumps({'group': 'grid'}))
  (kept / 'research_metrics.json').write_text(json.dumps(
      {'tau_gen_consistent_fraction': 3.0, 'tau_gen_consistent_fraction_censored': 0.0}))
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  config = json.loads((kept / 'config.json').read_text())
  out = tmp_path / 'at_quality'
  assert laq.main([
      f'--results={tmp_path / "results"}', '--groups=grid',
      f'--models={config["model"]["name"]}', f'--ratios={config["mask"]["ratio"]}',
      '--metric=consistent_fraction', '--locality_images=1', '--locality_times=1',
      f'--config={os.path.join(REPO, "sparsediff_jax", "config_base.py")}',
      f'--root={tmp_path / "replays"}', f'--out={out}']) == 0
  (entry,) = json.loads((tmp_path / 'at_quality.json').read_text())
  assert entry['reached'] and entry['step'] == 4
  assert entry['replay_matches'], entry
  assert entry['pixel_memorized_fraction'] == entry['committed_pixel_memorized_fraction']
  assert 0 < entry['locality_radius90'] and 0 <= entry['locality_far_fraction'] <= 1
  assert '| 1 of 1 |' in (tmp_path / 'at_quality.md').read_text()
  assert (tmp_path / 'at_quality_maps' / 'tiny.png').stat().st_size > 0
