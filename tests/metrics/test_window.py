"""The memorization window (metrics/window.py) on synthetic trajectories, and the stop
rule of scoring/window_scoring.py as the training loop applies it."""

import json
import math
import os
import signal

import jax
import numpy as np
import pytest

from sparsediff_jax.runtime import preemption
from sparsediff_jax.modes import train
from sparsediff_jax.metrics import window
from sparsediff_jax.scoring import window_scoring
from tests.helpers.tiny import tiny_config
from tests.helpers.states import assert_same_state


def _trajectory(steps, memorized, fd=None, confidence=None):
  out = []
  for i, step in enumerate(steps):
    e = {'step': step, 'pixel_memorized_fraction': memorized[i]}
    if fd is not None:
      e['digits_fd'] = fd[i]
    if confidence is not None:
      e['digits_confidence'] = confidence[i]
    out.append(e)
  return out


def test_crossings_are_interpolated_between_scored_steps():
  steps = [100, 200, 300, 400]
  # memorized 0 -> 0.2 -> 0.6 -> 0.9: 0.1 is crossed half way 100..200, 0.5 at 3/4 of 200..300.
  t = _trajectory(steps, [0.0, 0.2, 0.6, 0.9], fd=[40.0, 20.0, 12.0, 10.0],
                  confidence=[0.3, 0.7, 0.9, 0.9])
  assert window.tau_mem(t, 0.1) == window.Crossing(150.0, False)
  assert window.tau_mem(t, 0.5) == window.Crossing(275.0, False)
  # digits_fd is lower-better: 16 lies half way between 20 (200) and 12 (300).
  assert window.tau_gen(t, 'digits_fd', 16.0) == window.Crossing(250.0, False)
  # digits_confidence is higher-better: 0.8 half way 0.7 (200) .. 0.9 (300).
  assert window.tau_gen(t, 'digits_confidence', 0.8).step == pytest.approx(250.0)
  s = window.summarize(t, {'digits_fd': 16.0}, levels=(0.1, 0.5))
  assert s['window_digits_fd_0.5'] == pytest.approx(275.0 / 250.0)
  assert s['window_digits_fd_0.1'] == pytest.approx(150.0 / 250.0)
  assert s['window_spacing'] == 100.0 and s['window_cap'] == 400.0
  assert s['tau_mem_0.5_censored'] == 0.0


def test_a_threshold_met_at_the_first_scored_step_is_that_step():
  t = _trajectory([100, 200], [0.7, 0.9])
  mem = window.tau_mem(t, 0.5)
  assert mem == window.Crossing(100.0, False, at_first=True) and mem.show() == '<= 100'
  assert window.summarize(t, {})['tau_mem_0.5_at_first'] == 1.0


def test_nan_entries_are_skipped():
  assert window.first_crossing([1, 2, 3], [0.0, float('nan'), 1.0], 0.5) == \
      window.Crossing(2.0, False)


def test_censored_runs_are_marked_never_numbers():
  # Never memorizes half its samples by the cap of 600: tau_mem(0.5) is '> 600'.
  t = _trajectory([200, 400, 600], [0.0, 0.05, 0.2], fd=[30.0, 15.0, 12.0])
  mem = window.tau_mem(t, 0.5)
  assert mem.censored and mem.step == 600 and mem.show() == '> 600'
  s = window.summarize(t, {'digits_fd': 16.0})
  assert s['tau_mem_0.5_censored'] == 1.0 and s['tau_mem_0.1_censored'] == 0.0
  # tau_gen is reached, tau_mem is not: the window is a lower bound.
  value, bound = window.ratio(mem, window.tau_gen(t, 'digits_fd', 16.0))
  assert bound == 'lower' and value == pytest.approx(600 / (200 + 200 * 14 / 15))
  # Quality never reached: no window at all.
  gen = window.tau_gen(t, 'digits_fd', 5.0)
  assert gen.censored
  assert math.isnan(window.ratio(mem, gen)[0])
  assert math.isnan(window.summarize(t, {'digits_fd': 5.0})['window_digits_fd_0.5'])


def test_pixels_seen_puts_masked_and_batch_matched_runs_on_one_axis():
  pixels = 8 * 8 * 3
  masked = window.units_per_step(16, 1.0 - 0.9, pixels)
  matched = window.units_per_step(2, 1.0, pixels)
  dense = window.units_per_step(16, 1.0, pixels)
  assert masked['pixels_seen'] == pytest.approx(16 * 0.1 * 192)
  assert matched['pixels_seen'] == 2 * 192
  # Same supervision per step within the rounding of the matched batch (1.6 -> 2) ...
  assert masked['pixels_seen'] / matched['pixels_seen'] == pytest.approx(0.8)
  # ... but the masked step pushes the whole batch through the network.
  assert masked['images_seen'] == dense['images_seen'] == 16 and matched['images_seen'] == 2


def test_value_at_interpolates_and_is_nan_outside():
  t = _trajectory([100, 200], [0.0, 0.4])
  assert window.value_at(t, 'pixel_memorized_fraction', 150) == pytest.approx(0.2)
  assert math.isnan(window.value_at(t, 'pixel_memorized_fraction', 250))


@pytest.mark.parametrize('spec, fragment', [
    ('fid=3', 'unknown quality metric'), ('digits_fd=nan', 'finite'),
    ('digits_fd', 'finite'), ('digits_confidence=1.5', r'in \[0, 1\]'), ('', 'no quality')])
def test_bad_quality_specs_name_the_problem(spec, fragment):
  with pytest.raises(ValueError, match=fragment):
    window.parse_quality(spec)


@pytest.mark.parametrize('spec', ['0', '1.5', 'nan', 'x', ''])
def test_bad_levels_are_refused(spec):
  with pytest.raises(ValueError):
    window.parse_levels(spec)


def test_quality_metric_must_belong_to_the_dataset():
  window.check_dataset({'digits_fd': 16.0}, 'digits')
  with pytest.raises(ValueError, match="data.name='shapes'"):
    window.check_dataset({'digits_fd': 16.0}, 'shapes')


def test_decided_reads_only_steps_up_to_the_asked_one():
  t = _trajectory([100, 200, 300], [0.1, 0.6, 0.9])
  assert not window_scoring.decided(t, 100, 0.5)
  assert window_scoring.decided(t, 200, 0.5)
  assert not window_scoring.decided(t, 300, 0.0)   # 0: never stops



def test_the_cap_factor_waits_for_quality_then_stops_at_its_own_multiple():
  """Quality (confidence >= 0.8) reached at step 150; memorized 0.5 at step 300."""
  t = _trajectory([100, 200, 300, 400, 500, 600, 700], [0.0, 0.6, 0.5, 0.2, 0.2, 0.2, 0.2],
                  confidence=[0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
  quality = {'digits_confidence': 0.8}
  # Memorized at 200, but quality is reached only at 150 <= 200: decided at 200.
  assert window_scoring.decided(t, 200, 0.5, 4.0, quality)
  assert not window_scoring.decided(t, 100, 0.5, 4.0, quality)
  never = _trajectory([100, 200, 300, 400, 500, 600, 700], [0.0] * 7,
                      confidence=[0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
  # Never memorized: stops at the first scored step >= 4 x 150 = 600, not before.
  assert [s for s in (500, 600, 700) if window_scoring.decided(never, s, 0.5, 4.0, quality)] \
      == [600, 700]
  # Memorized before quality: does not stop until quality is reached.
  early = _trajectory([100, 200, 300], [0.9, 0.9, 0.9], confidence=[0.5, 0.6, 0.9])
  assert not window_scoring.decided(early, 200, 0.5, 4.0, quality)
  assert window_scoring.decided(early, 300, 0.5, 4.0, quality)
  assert window_scoring.decided(early, 100, 0.5)   # without the factor: the old rule


# ---- the quality target that copies cannot meet (real digits) ----

@pytest.fixture(scope='module')
def digits_scores():
  """{name: (memorization, quality, novel quality)} of 128 'samples' scored as a digits run
  at 8x8 scores them: each training subset of the experiment (n=16, 32, 64) repeated into
  128 samples, and 128 held-out digits."""
  from sparsediff_jax import data
  from sparsediff_jax.data.digits import source as digits
  from sparsediff_jax.metrics import memorization
  from sparsediff_jax.scoring import sample_scores
  out = {}
  for n in (16, 32, 64):
    config = tiny_config({'data.name': 'digits', 'data.image_size': 8,
                          'data.num_train_examples': n})
    train_images = data.load_train_images(config)
    for name, samples in ((f'train{n}', np.resize(train_images, (128, 8, 8, 3))),
                          (f'heldout{n}', digits.load_split('heldout', 8)[0][:128])):
      mem, neighbours = memorization.memorization_report(samples, train_images)
      out[name] = (mem, sample_scores.dataset_metrics(config, samples, train_images),
                   window_scoring.novel_quality(config, samples, train_images, neighbours))
  return out


def _passes(scores, metric):
  mem, quality, novel = scores
  value = {**quality, **novel}.get(metric)
  target = window.DEFAULT_TARGETS[metric]
  if value is None:
    return False
  return value <= target if window.quality_metric(metric)[1] == 'le' else value >= target


@pytest.mark.slow   # the digits classifier (trained on first use) and 6 scorings
@pytest.mark.parametrize('n', [16, 32, 64])
def test_the_training_set_sampled_back_fails_the_copy_proof_targets(digits_scores, n):
  mem, quality, novel = digits_scores[f'train{n}']
  assert mem['pixel_memorized_fraction'] == 1.0 and novel['novel_count'] == 0
  assert novel['novel_digits_confidence'] is None
  assert not _passes(digits_scores[f'train{n}'], 'novel_digits_confidence')
  assert not _passes(digits_scores[f'train{n}'], 'digits_fd'), quality['digits_fd']
  # The experiment's first target does not tell copies apart: the copies pass it.
  assert _passes(digits_scores[f'train{n}'], 'digits_confidence')
  # Real digits the model never saw pass both.
  held = digits_scores[f'heldout{n}']
  assert held[0]['pixel_memorized_fraction'] < 0.05 and held[2]['novel_count'] >= 120
  assert _passes(held, 'novel_digits_confidence') and _passes(held, 'digits_fd')


def test_novel_metrics_need_min_novel_samples(monkeypatch):
  """Counted over the samples with d1/d2 >= 1/3 only; None below window.MIN_NOVEL."""
  from sparsediff_jax.scoring import sample_scores
  seen = []

  def fake_metrics(config, samples, train_images):
    seen.append(len(samples))
    return {'digits_confidence': float(samples.mean()), 'digits_fd': 1.0, 'other': 2.0}
  monkeypatch.setattr(sample_scores, 'dataset_metrics', fake_metrics)
  config = tiny_config({'data.name': 'digits'})
  samples = np.zeros((40, 2, 2, 3), np.uint8)
  samples[:20] = 9   # the novel ones
  d1 = np.where(np.arange(40) < 20, 1.0, 0.1)
  out = window_scoring.novel_quality(config, samples, None, {'d1': d1, 'd2': np.ones(40)})
  assert seen == [20] and out['novel_count'] == 20
  assert out['novel_digits_confidence'] == 9.0 and out['novel_digits_fd'] == 1.0
  assert 'novel_other' not in out
  d1[:10] = 0.1   # 10 novel < MIN_NOVEL
  out = window_scoring.novel_quality(config, samples, None, {'d1': d1, 'd2': np.ones(40)})
  assert out == {'novel_count': 10, 'novel_digits_confidence': None, 'novel_digits_fd': None}
  assert seen == [20]


# ---- the stop rule in the training loop ----

STOP_AT = 6


def _stop_hook(calls):
  """An EvalHook that scores every 2 steps and has decided from step STOP_AT on."""
  def factory(config, graphdef, mesh, workdir):
    def score(state):
      calls.append(int(state.step))
      return {'scored': float(state.step)}
    return 2, score, lambda step: step >= STOP_AT
  return factory


def _losses(workdir):
  with open(workdir / 'metrics.jsonl') as f:
    return {r['step']: r['loss'] for r in map(json.loads, f) if 'loss' in r}


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """(final state, workdir) of the run trained straight to STOP_AT, without hooks."""
  workdir = tmp_path_factory.mktemp('straight')
  state = train.train(tiny_config(training__num_steps=STOP_AT, training__log_every=1,
                                  training__checkpoint_every=4), str(workdir))
  return state, workdir


@pytest.mark.slow   # two tiny trainings
def test_a_stopped_run_is_the_run_trained_straight_to_that_step(tmp_path, straight):
  straight, straight_dir = straight
  cap = tiny_config(training__num_steps=12, training__log_every=1,
                    training__checkpoint_every=4)
  calls = []
  stopped = train.train(cap, str(tmp_path / 'stopped'), hooks=(_stop_hook(calls),))
  assert int(stopped.step) == STOP_AT and calls == [2, 4, 6]
  assert_same_state(stopped, straight)
  assert _losses(tmp_path / 'stopped') == _losses(straight_dir)
  assert sorted(_losses(tmp_path / 'stopped')) == list(range(1, STOP_AT + 1))
  # The stop step is checkpointed though not a multiple of checkpoint_every; a rerun of the
  # decided run trains nothing.
  again = train.train(cap, str(tmp_path / 'stopped'), hooks=(_stop_hook(calls),))
  assert int(again.step) == STOP_AT and calls == [2, 4, 6]
  assert_same_state(again, straight)


@pytest.mark.slow   # tiny trainings, one interrupted
def test_a_preempted_run_resumes_and_stops_at_the_same_step(tmp_path, monkeypatch, straight):
  straight, straight_dir = straight
  cap = tiny_config(training__num_steps=12, training__log_every=1,
                    training__checkpoint_every=4)
  real = preemption.StopRequest.should_stop

  def sigterm_at_step_3(self, step):   # as if SIGTERM arrived during step 3
    if step == 3:
      self.signum = signal.SIGTERM
    return real(self, step)

  monkeypatch.setattr(preemption.StopRequest, 'should_stop', sigterm_at_step_3)
  calls = []
  with pytest.raises(preemption.TrainingInterrupted):
    train.train(cap, str(tmp_path / 'run'), hooks=(_stop_hook(calls),))
  monkeypatch.setattr(preemption.StopRequest, 'should_stop', real)
  resumed = train.train(cap, str(tmp_path / 'run'), hooks=(_stop_hook(calls),))
  assert int(resumed.step) == STOP_AT and calls == [2, 4, 6]
  assert_same_state(resumed, straight)
  assert _losses(tmp_path / 'run') == _losses(straight_dir)


# ---- the tables, from kept results alone ----

def _kept_run(results, name, group, n, seed, ratio, batch, trajectory, x=None, dropout=0.0):
  folder = results / name
  folder.mkdir(parents=True)
  config = {'data': {'name': 'digits', 'num_train_examples': n, 'image_size': 8},
            'training': {'seed': seed, 'batch_size': batch, 'num_steps': 1000},
            'mask': {'ratio': ratio}, 'model': {'dropout': dropout}}
  (folder / 'config.json').write_text(json.dumps(config))
  (folder / 'sweep_run.json').write_text(json.dumps({'group': group, 'x': x}))
  (folder / 'window_trajectory.json').write_text(json.dumps(trajectory))


def _synthetic_results(results):
  """Dense: memorizes half its samples at step 10 n (tau_mem proportional to n); mask 0.9
  never does by its cap of 1000 steps. Both reach digits_fd 16 at step 150 (18 -> 14)."""
  for n in (16, 32, 64):
    for seed in range(3):
      steps = list(range(100, 1001, 100))
      fd = [18.0 if s < 200 else 14.0 for s in steps]
      dense = [{'step': s, 'pixel_memorized_fraction': min(1.0, 0.5 * s / (10 * n)),
                'digits_fd': f} for s, f in zip(steps, fd)]
      masked = [{'step': s, 'pixel_memorized_fraction': 0.0, 'digits_fd': f}
                for s, f in zip(steps, fd)]
      _kept_run(results, f'dense_n{n}_s{seed}', 'grid', n, seed, 0.0, 16, dense)
      _kept_run(results, f'mask_n{n}_s{seed}', 'grid', n, seed, 0.9, 16, masked)


def test_window_table_from_kept_results(tmp_path):
  from sparsediff_jax.sweeps import window_table
  _synthetic_results(tmp_path / 'runs')
  rc = window_table.main([f'--results={tmp_path / "runs"}', '--quality=digits_fd=16',
                          '--levels=0.5', '--planned=48'])
  assert rc == 0
  md = (tmp_path / 'window.md').read_text()
  assert '18 runs of the 48 planned' in md
  assert '| mask 0.9 | 32 | 3 | 100 | 150 ± 0 | > 1000 | >= 6.67 ± 0.00 (3 lower bounds) |' in md
  # n=16: 0.5 memorized at step 160 (interpolated 100..200); the window is 160 / 150.
  assert '| dense | 16 | 3 | 100 | 150 ± 0 | 160 ± 0 | 1.07 ± 0.00 |' in md
  # tau_mem proportional to n: a slope of 1 over the nine dense runs (n=16 at step 160 is
  # interpolated: still exactly 10 n).
  rows = [window_table.run_row(r, {'digits_fd': 16.0}, (0.5,))
          for r in window_table.read_results(str(tmp_path / 'runs'))]
  slope, err, k = window_table.slopes(rows)['dense']
  assert k == 9 and slope == pytest.approx(1.0) and err == pytest.approx(0.0, abs=1e-6)
  assert math.isnan(window_table.slopes(rows)['mask 0.9'][0])   # all censored
  for name in ('window.csv', 'window_vs_n.png', 'window_ratio.png', 'trajectories_n32.png'):
    assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize('flag, fragment', [
    ('--quality=fid=3', '--quality'), ('--quality=digits_fd=nan', '--quality'),
    ('--levels=0', '--levels'), ('--quality=consistent_fraction=0.5', "data.name='digits'")])
def test_window_table_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, flag,
                                                               fragment):
  from sparsediff_jax.sweeps import window_table
  _synthetic_results(tmp_path / 'runs')
  before = sorted(os.listdir(tmp_path))
  assert window_table.main([f'--results={tmp_path / "runs"}', flag]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and fragment in err and err.count('\n') == 1
  assert sorted(os.listdir(tmp_path)) == before


def test_welch_matches_scipy_on_log_windows_and_holm_adjusts():
  from scipy import stats
  from sparsediff_jax.sweeps import window_table
  a, b = [4.0, 4.4, 3.6, 4.1], [2.0, 2.2, 1.8]
  t = window_table.welch(a, b)
  assert t['p'] == pytest.approx(stats.ttest_ind(np.log(a), np.log(b), equal_var=False).pvalue)
  gm = math.exp(np.mean(np.log(a)) - np.mean(np.log(b)))
  assert t['effect'] == pytest.approx(gm) and t['low'] < gm < t['high']
  raw = window_table.welch(a, b, log=False)
  assert raw['effect'] == pytest.approx(np.mean(a) - np.mean(b))
  assert math.isnan(window_table.welch([1.0], b)['p'])
  assert window_table.holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])


def test_decisions_read_each_setting_against_dense_and_its_control():
  """mask 0.9's window is 2x dense's (decided wider); its control's equals mask 0.9's to
  within 1% (no different); mask 0.5 has one run without tau_gen and one censored."""
  from sparsediff_jax.sweeps import window_table
  rows = []

  def add(setting, windows, memorized=0.0):
    for seed, w in enumerate(windows):
      bound = 'none' if w is None else 'lower' if w < 0 else 'exact'
      rows.append({'setting': setting, 'n': 64, 'seed': seed,
                   'window_digits_confidence_0.5': (abs(w) if w else math.nan, bound),
                   'memorized_at_gen_digits_confidence': memorized + 0.01 * seed})
  add('dense', [2.0, 2.2, 1.8, 2.1, 1.9], 0.05)
  add('mask 0.9', [4.0, 4.4, 3.6, 4.2, 3.8])
  add('dense, batch-matched 0.9', [4.04, 4.44, 3.64, 4.24, 3.84])
  add('mask 0.5', [2.0, None, -2.4])
  lines = window_table.decision_lines(rows, {'digits_confidence': 0.815}, (0.5,))
  table = {tuple(c.strip() for c in l.split('|')[2:4]): [c.strip() for c in l.split('|')[1:-1]]
           for l in lines if l.startswith('| 64')}
  wider = table[('mask 0.9', 'dense')]
  assert wider[3] == '5 / 5' and wider[4] == '2.00' and wider[8] == 'wider'
  assert wider[9].startswith('-0.050')   # memorized at tau_gen: 0.07 against 0.07 + 0.05
  same = table[('mask 0.9', 'dense, batch-matched 0.9')]
  assert same[4] == '0.99' and same[8] == 'no different'
  half = table[('mask 0.5', 'dense')]
  assert half[3] == '2 / 5' and half[4].endswith('*') and half[8] == 'undecided'


def test_a_lower_bound_on_the_smaller_side_leaves_the_direction_open():
  from sparsediff_jax.sweeps import window_table
  test = {'effect': 2.0, 'low': 1.5, 'high': 2.6, 'p': 0.001}
  assert window_table.reading(test, 0.01) == 'wider'
  assert window_table.reading(test, 0.01, (True, False)) == 'wider'   # larger side: stands
  assert window_table.reading(test, 0.01, (False, True)) == 'undecided (censored)'
  same = {'effect': 1.0, 'low': 0.9, 'high': 1.1, 'p': 0.9}
  assert window_table.reading(same, 0.9) == 'no different'
  assert window_table.reading(same, 0.9, (True, False)) == 'undecided'
