"""A dataset registered from outside the package: one record is all the code needs.

The toy dataset below lives only in this test: its images, its fresh images, its metric,
its headline and its config check. It is trained on, scored by --mode=research's
evaluate_run, checked by validation and shown by the sweep table, none of which names it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sparsediff_jax import errors, main, registry, validation
from sparsediff_jax.data.source import Source
from sparsediff_jax.modes import research, train
from sparsediff_jax.sweeps import sweep_table

from tests.helpers import tiny

NAME = 'toy_stripes'


def toy_image(index: int, size: int) -> np.ndarray:
  """uint8 [size, size, 3]: vertical stripes whose period and colour follow the index."""
  period = 2 + index % 3
  stripes = (np.arange(size) // period) % 2 == 0
  colour = np.array([40 + 50 * (index % 4), 200, 255 - 30 * (index % 5)], np.uint8)
  image = np.zeros((size, size, 3), np.uint8)
  image[:, stripes] = colour
  return image


def toy_images(lo: int, hi: int, size: int) -> np.ndarray:
  return np.stack([toy_image(i, size) for i in range(lo, hi)])


def open_toy(config) -> Source:
  size = config.data.image_size
  return Source(available=100, order='index', ids=lambda n: [f'toy/{i}' for i in range(n)],
                load=lambda lo, hi: toy_images(lo, hi, size),
                facts={'source': 'toy stripes', 'split': 'all', 'preprocessing': 'none'})


def fresh_toy(config, num: int, num_train: int) -> np.ndarray:
  return toy_images(num_train, num_train + num, config.data.image_size)


def toy_metrics(config, samples, train_images) -> dict[str, float]:
  """toy_brightness: mean of the samples in [0, 1]; toy_num_scored: how many were scored."""
  del config, train_images
  return {'toy_brightness': float(np.asarray(samples).mean() / 255.0),
          'toy_num_scored': float(len(samples))}


def check_toy(config) -> None:
  if config.data.image_size % 4:
    raise errors.ConfigError(f'config.data.image_size={config.data.image_size} is invalid: '
                             'the toy stripes need a multiple of 4')


@pytest.fixture
def toy_dataset():
  registry.DATASETS.add(NAME, registry.Dataset(
      source=open_toy, fresh=fresh_toy, metrics=toy_metrics,
      headline=('toy_brightness',), quality={'toy_brightness': 'ge'}, check=check_toy))
  yield NAME
  registry.DATASETS.remove(NAME)
  assert NAME not in registry.DATASETS


def toy_config():
  return tiny.tiny_config({
      'data.name': NAME, 'data.num_train_examples': 16, 'model.attn_resolutions': (),
      'training.batch_size': 4, 'training.num_steps': 2, 'training.checkpoint_every': 2,
      'sampling.sampler': 'euler', 'research.num_samples': 4, 'research.batch_size': 4,
      'research.locality_images': 1, 'research.locality_times': 1,
      'research.memorization_grid': 2})


def test_the_record_is_found_everywhere_by_name(toy_dataset):
  config = toy_config()
  validation.validate_fields(config)   # the name is known, its check passes
  assert NAME in registry.DATASET_FRESH and NAME in registry.DATASET_METRICS
  assert registry.QUALITY_METRICS['toy_brightness'] == (NAME, 'ge')
  assert sweep_table.headline([NAME])[0] == 'toy_brightness'
  config.data.image_size = 18
  with pytest.raises(errors.ConfigError, match=r'data.image_size=18 .* multiple of 4'):
    validation.validate_fields(config)


def test_a_dataset_the_registry_does_not_know_is_refused_by_name():
  config = toy_config()
  with pytest.raises(errors.ConfigError, match=f"config.data.name='{NAME}' is invalid"):
    validation.validate_fields(config)


def test_registering_every_dataset_imports_neither_jax_nor_tensorflow():
  """The contract of data/README.md: the command line reads records (checks, headlines,
  window targets) before JAX or TensorFlow is loaded."""
  code = ('import sys\n'
          'from sparsediff_jax import registry\n'
          'records = [registry.DATASETS.get(n) for n in registry.DATASETS.names()]\n'
          'print(len(records), len(registry.QUALITY_METRICS), '
          '"jax" in sys.modules, "tensorflow" in sys.modules)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, timeout=120)
  count, quality, jax_loaded, tf_loaded = out.stdout.split()
  assert int(count) >= 10 and int(quality) >= 3
  assert (jax_loaded, tf_loaded) == ('False', 'False')


@pytest.mark.slow   # trains, samples and measures locality: ~30 s on two shared cores
def test_a_toy_dataset_trains_and_reports_its_metric_and_headline(toy_dataset, tmp_path):
  config = toy_config()
  validation.validate_config(config, num_devices=1)
  root = tmp_path / 'sweep'
  workdir = str(root / 'toy_run')
  os.makedirs(workdir)
  main.write_run_record(config, workdir)
  assert json.load(open(os.path.join(workdir, 'dataset.json')))['name'] == NAME
  train.train(config, workdir)

  metrics = research.evaluate_run(config, workdir)
  assert metrics['toy_num_scored'] == 4.0
  assert 0.0 <= metrics['toy_brightness'] <= 1.0
  assert 'reference_pixel_memorized_fraction' in metrics   # the floor from its fresh images
  with open(os.path.join(workdir, sweep_table.RUN_FILE), 'w') as f:
    json.dump({'name': 'toy_run', 'group': 'grid', 'series': 'grid', 'label': 'toy',
               'overrides': {}, 'x': 0.0, 'seed_key': 'training.seed'}, f)

  table = open(sweep_table.summarize(str(root))['markdown']).read()
  header = table.splitlines()[0]
  assert header.startswith('| setting | n | toy_brightness | pixel_memorized_fraction')
  assert 'toy_num_scored' not in header   # not a headline metric: only in the CSV


def test_every_window_quality_metric_is_one_its_dataset_reports():
  """A quality target names a metric the dataset's scoring writes (else tau_gen would be
  censored in every run without a word): each is among the dataset's headline metrics, and
  the shapes metric is in what its scoring returns on real shapes."""
  from sparsediff_jax.data.shapes import consistency, make_shapes
  from tests.helpers import tiny
  for name, (dataset, _) in registry.QUALITY_METRICS.items():
    assert name in registry.DATASETS.get(dataset).headline, (name, dataset)
  config = tiny.tiny_config()
  scores = consistency.shapes_sample_metrics(
      config, make_shapes(8, config.data.image_size, config.data.shapes_pairs, seed=0), None)
  shapes_quality = [m for m, (d, _) in registry.QUALITY_METRICS.items() if d == 'shapes']
  assert shapes_quality and set(shapes_quality) <= set(scores)


def test_a_record_whose_quality_metric_it_does_not_report_is_refused():
  with pytest.raises(ValueError, match="quality metric 'toy_sharpness' is not among"):
    registry.Dataset(source=lambda c: None, headline=('toy_brightness',),
                     quality={'toy_sharpness': 'ge'})
  with pytest.raises(ValueError, match="direction 'up'"):
    registry.Dataset(source=lambda c: None, headline=('toy_brightness',),
                     quality={'toy_brightness': 'up'})
