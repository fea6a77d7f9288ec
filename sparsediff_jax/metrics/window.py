"""The memorization window of a run, from its scored checkpoints (pure functions, no I/O).

Two time scales of a diffusion model trained on n images: tau_gen, the training time until
its samples reach the quality of the population (roughly independent of n), and tau_mem,
the time at which samples become copies of training images (growing with n). Between them
the model generalizes; a method widens that window when it delays tau_mem more than
tau_gen. From one run's trajectory (a list of {'step', <metric>: value} entries, ascending
steps, e.g. what `window_scoring` records while training):

  tau_gen(metric, target)   first step at which the quality metric reaches the target
                            (`digits_fd` <= target; `digits_confidence` >= target);
  tau_mem(q)                first step at which the memorized fraction (d1/d2 < 1/3)
                            reaches q;
  window = tau_mem(q) / tau_gen.

Crossings are linearly interpolated between the two scored steps around them, so their
resolution is the scoring spacing (research.window_every). A run whose trajectory never
reaches a threshold is censored: the crossing is `Crossing(censored=True, step=cap)` and is
shown as "> cap", never as a number. Each crossing is also given on two other axes:
supervised pixels seen (steps x batch x kept fraction x pixels per image) and compute
(images through the network: steps x batch; a masked step costs a full forward and
backward).
"""

import dataclasses
import math

from sparsediff_jax import registry

MEMORIZED_KEY = 'pixel_memorized_fraction'
LEVELS = (0.1, 0.5)          # the memorized fractions q of tau_mem(q).
# The quality metrics a window can be measured with: name -> (dataset, direction), where
# 'le' means lower is better (reached when value <= target), 'ge' higher is better; each
# dataset registers its own (registry.Dataset.quality), read at lookup.
QUALITY_METRICS = registry.QUALITY_METRICS
# A quality target that copies cannot meet. `novel_<metric>` is <metric> counted over the
# samples that are NOT copies (d1/d2 >= 1/3), recorded while training (window_scoring.py)
# and None when fewer than MIN_NOVEL samples are novel: the training set itself, sampled
# back, has no novel sample and never reaches it, at any n.
NOVEL_PREFIX = 'novel_'
MIN_NOVEL = 16
# The targets of the memorization-window experiment (docs/results/memorization_window/),
# the first one of a dataset being its headline:
# * novel_digits_confidence >= 0.815: 0.9 x the confidence of real digits (0.906 +- 0.012,
#   benchmarks/window_floor.py), over the novel samples only;
# * digits_fd <= 9.5 against the 297 HELD-OUT digits: the training subsets of the
#   experiment, repeated into 128 samples, score 14.9 (n=16), 10.2 (n=32) and 10.8 (n=64)
#   (tests/metrics/test_window.py), so a model that only copies them fails it at
#   n <= 64; blocks of 128 real digits that are not training images score 8.42 +- 2.48
#   (benchmarks/window_floor.py). Recomputable from every committed trajectory. It is not
#   copy-proof at n >= 128, where the training set is itself a real 128-digit block;
# * digits_confidence >= 0.815 (mean over every sample): the target the experiment first
#   used; the training digits, sampled back, score 0.89-0.90 and pass it, so a crossing of
#   it may be a memorization time. Kept for comparison, not as a quality target.
# Fashion-MNIST 16x16 (docs/results/fashion_mnist_metrics.md): confidence at least 0.9 x
# that of 1,000 real training images (0.734), over the novel samples
# (novel_fashion_mnist_confidence, copy-proof), and over every sample (not copy-proof: the
# training garments score about that of real ones). At 28x28 real images score higher
# (0.84), pass --quality there. No fashion_mnist_fd target: its floor depends on n (the 16
# training images of a run at n=16 score 7.6 against the test images, 128 score 1.24).
DEFAULT_TARGETS = {'novel_digits_confidence': 0.815, 'digits_fd': 9.5,
                   'digits_confidence': 0.815,
                   'novel_fashion_mnist_confidence': 0.66,
                   'fashion_mnist_confidence': 0.66}


def quality_metric(name: str) -> tuple[str, str]:
  """(dataset, 'le' | 'ge') of a quality metric, `novel_<metric>` as its metric; KeyError
  for an unknown one."""
  base = name[len(NOVEL_PREFIX):] if name.startswith(NOVEL_PREFIX) else name
  return QUALITY_METRICS[base]


def quality_names() -> list[str]:
  """Every quality metric a target can name: the registered ones and their novel_ forms."""
  names = list(QUALITY_METRICS)
  return names + [NOVEL_PREFIX + m for m in names]


@dataclasses.dataclass(frozen=True)
class Crossing:
  step: float        # interpolated crossing step; censored: the last scored step (the cap)
  censored: bool     # the trajectory never reached the threshold
  at_first: bool = False   # reached at the first scored step: the crossing is at or before it

  def show(self, fmt: str = '{:.0f}') -> str:
    prefix = '> ' if self.censored else '<= ' if self.at_first else ''
    return prefix + fmt.format(self.step)


def parse_quality(spec: str) -> dict[str, float]:
  """'digits_fd=17.4,digits_confidence=0.8' -> {'digits_fd': 17.4, ...}.

  Raises ValueError (naming the metric or value) for an unknown metric, a missing or
  non-finite target, or a confidence-like target outside [0, 1].
  """
  out = {}
  for item in filter(None, (s.strip() for s in spec.split(','))):
    name, sep, value = item.partition('=')
    if name not in quality_names():
      raise ValueError(f'unknown quality metric {name!r}; choose from '
                       f'{", ".join(quality_names())}')
    try:
      target = float(value) if sep else float('nan')
    except ValueError:
      target = float('nan')
    if not math.isfinite(target) or target < 0:
      raise ValueError(f'{name}: target {value!r} must be a finite number >= 0, e.g. '
                       f'{name}={DEFAULT_TARGETS.get(name, 1.0)}')
    if quality_metric(name)[1] == 'ge' and target > 1:
      raise ValueError(f'{name}: target {target} must be in [0, 1]')
    out[name] = target
  if not out:
    raise ValueError('no quality metric given, e.g. digits_fd=16.8')
  return out


def parse_levels(spec: str) -> tuple[float, ...]:
  """'0.1,0.5' -> (0.1, 0.5); each q must be in (0, 1] (ValueError otherwise)."""
  out = []
  for item in filter(None, (s.strip() for s in spec.split(','))):
    try:
      q = float(item)
    except ValueError:
      q = float('nan')
    if not 0 < q <= 1:
      raise ValueError(f'memorized fraction {item!r} must be a number in (0, 1]')
    out.append(q)
  if not out:
    raise ValueError('no memorized fraction given, e.g. 0.1,0.5')
  return tuple(out)


def check_dataset(quality: dict[str, float], dataset: str) -> None:
  """ValueError when a quality metric is not one the dataset provides."""
  for name in quality:
    if quality_metric(name)[0] != dataset:
      raise ValueError(f'quality metric {name!r} is measured on {quality_metric(name)[0]}, '
                       f'not on data.name={dataset!r}')


def first_crossing(steps, values, target: float, direction: str = 'ge') -> Crossing:
  """The first step at which `values` reaches `target`, linearly interpolated.

  Args:
    steps: the scored steps, ascending.
    values: the metric at each step (NaN entries are skipped).
    target: the threshold.
    direction: 'ge' (reached when value >= target) or 'le' (value <= target).
  Returns:
    Crossing: the step where the line between the last scored step below the target and
    the first at or past it meets the target (the first step itself when it is the first
    scored one, marked at_first: the run may have crossed it anywhere before); censored at
    the last step when no step reaches it.
  """
  sign = 1.0 if direction == 'ge' else -1.0
  prev = None
  for step, value in zip(steps, values):
    if value is None or not math.isfinite(value):
      continue
    gap = sign * (value - target)
    if gap >= 0:
      if prev is None:
        return Crossing(float(step), False, at_first=True)
      s0, g0 = prev   # g0 < 0 <= gap
      return Crossing(s0 + (step - s0) * (-g0) / (gap - g0), False)
    prev = (step, gap)
  return Crossing(float(steps[-1]) if len(steps) else 0.0, True)


def tau_gen(trajectory: list[dict], metric: str, target: float) -> Crossing:
  """First step at which `metric` reaches `target` (direction from quality_metric)."""
  return first_crossing([e['step'] for e in trajectory],
                        [e.get(metric) for e in trajectory], target,
                        quality_metric(metric)[1])


def recorded(trajectory: list[dict], metric: str) -> bool:
  """Whether the run scored `metric` at all (a novel_ metric is recorded, as None when too
  few samples were novel, by runs scored since it was added)."""
  return any(metric in e for e in trajectory)


def tau_mem(trajectory: list[dict], q: float) -> Crossing:
  """First step at which the memorized fraction reaches q."""
  return first_crossing([e['step'] for e in trajectory],
                        [e.get(MEMORIZED_KEY) for e in trajectory], q, 'ge')


def ratio(mem: Crossing, gen: Crossing) -> tuple[float, str]:
  """(window tau_mem / tau_gen, how it is bounded): 'exact'; 'lower' (tau_mem censored, or
  tau_gen reached at the first scored step: the window is at least this); 'none' (tau_gen
  censored: no window, NaN)."""
  if gen.censored or gen.step <= 0:
    return float('nan'), 'none'
  return mem.step / gen.step, 'lower' if mem.censored or gen.at_first else 'exact'


def units_per_step(batch_size: int, kept_fraction: float, pixels: int) -> dict[str, float]:
  """Conversion factors of one step: supervised pixel values and images through the net.

  Args:
    batch_size: the global batch.
    kept_fraction: the fraction of the loss's values the mask keeps (1 - mask.ratio).
    pixels: values per image (height x width x channels).
  """
  return {'pixels_seen': batch_size * kept_fraction * pixels, 'images_seen': batch_size}


def summarize(trajectory: list[dict], quality: dict[str, float],
              levels=LEVELS) -> dict[str, float]:
  """The run's window as flat floats (research_metrics.json; sweep tables).

  Keys, for each quality metric M and level q: tau_gen_M, tau_mem_q (steps; a censored
  crossing has the cap as value and <key>_censored = 1.0; one reached at the first scored
  step has <key>_at_first = 1.0), window_M_q (tau_mem / tau_gen; NaN when tau_gen is
  censored; a lower bound when tau_mem is censored or tau_gen at_first), window_cap (the
  last scored step) and window_spacing (the largest gap between scored steps: the
  resolution).
  """
  steps = [e['step'] for e in trajectory]
  out = {'window_cap': float(steps[-1]) if steps else float('nan'),
         'window_spacing': float(max((b - a for a, b in zip(steps, steps[1:])),
                                     default=float('nan')))}
  mems = {q: tau_mem(trajectory, q) for q in levels}
  for q, mem in mems.items():
    out[f'tau_mem_{q:g}'] = mem.step
    out[f'tau_mem_{q:g}_censored'] = float(mem.censored)
    out[f'tau_mem_{q:g}_at_first'] = float(mem.at_first)
  for metric, target in quality.items():
    gen = tau_gen(trajectory, metric, target)
    out[f'tau_gen_{metric}'] = gen.step
    out[f'tau_gen_{metric}_censored'] = float(gen.censored)
    out[f'tau_gen_{metric}_at_first'] = float(gen.at_first)
    for q, mem in mems.items():
      out[f'window_{metric}_{q:g}'] = ratio(mem, gen)[0]
  return out


def value_at(trajectory: list[dict], key: str, step: float) -> float:
  """`key` linearly interpolated at `step` (e.g. the memorized fraction at tau_gen);
  NaN outside the scored steps."""
  points = [(e['step'], e[key]) for e in trajectory if key in e]
  for (s0, v0), (s1, v1) in zip(points, points[1:]):
    if s0 <= step <= s1:
      return v0 if s1 == s0 else v0 + (v1 - v0) * (step - s0) / (s1 - s0)
  if points and step == points[-1][0]:
    return points[-1][1]
  return float('nan')
