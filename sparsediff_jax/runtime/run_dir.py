"""The run directory (WORKDIR): can it be written, may this config continue the run it
holds, which fields the modes that read a run take from it, and undoing the run record
when bad input ends a run before it did anything.

One file: the workdir's rules (writable, the same run, the fields a reader
takes, undoing a record) must agree with each other, so they live together.

ONE rule says what "the same run" is: every field is run-defining except those in
MAY_CHANGE. Resuming (`check_same_run`) refuses a change of a run-defining field; the modes
that read a run (sample, eval, research: `bind_to_run`) take the run-defining fields from
the run's saved config and refuse a command-line override that contradicts them.

Resuming with a different config would silently mix two experiments in one run, or fail
deep inside Orbax on mismatched shapes. A run's config is saved twice: WORKDIR/config.json
(written by the CLI once the run's set-up passed: RunRecord) and the `config` entry of every checkpoint's meta. Before
anything is written, the CLI compares the new config with config.json when the workdir holds
checkpoints; `train()` compares it with the restored checkpoint's meta (which also covers a
lost config.json and library use). Every field must be equal except those in MAY_CHANGE:
what the run logs, samples, evaluates and how long it runs, never what it trains (model,
formulation, mask, data, batch, seed, optimiser). A field that only one of the two configs
has (a field added to the code since) is passed over with a warning.
"""

from absl import logging
import contextlib
import json
import os

from etils import epath   # local paths and gs:// alike

from sparsediff_jax.runtime import atomic_io, metrics_file
from sparsediff_jax.errors import ConfigMismatchError, WorkdirError

# Fields a resumed run may change; a trailing '.' covers a whole section. Note that with
# optim.schedule='cosine' the decay is laid out over training.num_steps, so changing it
# reshapes the learning rate of the steps still to come.
MAY_CHANGE = (
    'training.num_steps', 'training.log_every', 'training.sample_every',
    'training.checkpoint_every', 'training.keep_checkpoints', 'training.on_nonfinite',
    'training.steps_per_call', 'training.unroll_steps',
    'training.nonfinite_patience', 'training.resume_may_change',
    'training.compilation_cache',
    'data.data_dir', 'data.download', 'data.manual_dir', 'data.on_bad_image',
    'sampling.', 'eval.', 'research.', 'sharding.', 'plan.',
)


def with_suffix(path: str, suffix: str) -> str:
  """'a/b.json', '-2' -> 'a/b-2.json': the name of a run's output file of the suffix ('',
  '-2', ...) that each `--mode=research` of the run writes under."""
  root, ext = os.path.splitext(path)
  return root + suffix + ext


def config_dict(config) -> dict:
  """The config as plain JSON data (tuples become lists), as config.json stores it."""
  return json.loads(config.to_json_best_effort())


def flatten(d: dict, prefix: str = '') -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _matches(field: str, patterns) -> bool:
  return any(field == m or (m.endswith('.') and field.startswith(m)) for m in patterns)


def config_differences(saved: dict, current: dict) -> list[str]:
  """'field: saved -> current' for every field that differs and may not change: those in
  MAY_CHANGE and in current's training.resume_may_change may."""
  a, b = flatten(saved), flatten(current)
  extra = [f.strip() for f in b.get('training.resume_may_change', '').split(',') if f.strip()]
  may_change = lambda f: _matches(f, MAY_CHANGE) or _matches(f, extra)
  one_sided = sorted(f for f in a.keys() ^ b.keys() if not may_change(f))
  if one_sided:
    logging.warning('fields in only one of the saved and the new config, not compared: %s',
                    ', '.join(one_sided))
  return [f'{f}: {a[f]!r} -> {b[f]!r}' for f in sorted(a.keys() & b.keys())
          if a[f] != b[f] and not may_change(f)]


# The advice of a ConfigMismatchError to a mode that only reads the run.
READER_ADVICE = ('give this mode the config the run was trained with (the same --config and '
                 'overrides), or point --workdir at a run trained with this config')


def check_same_run(saved: dict | None, config, where: str, advice: str | None = None) -> None:
  """Raises ConfigMismatchError unless `config` may continue the run saved with `saved`.
  advice: what the message tells the user to do (default: a training run's options)."""
  if saved is None:
    return
  diffs = config_differences(saved, config_dict(config))
  if diffs:
    raise ConfigMismatchError(
        f'{where} holds a run trained with a different config ({"; ".join(diffs)}); ' + (
            advice or 'resume with the saved values, list the fields in '
            '--config.training.resume_may_change to change them knowingly, or use a new '
            f'--workdir (always allowed to change: {", ".join(MAY_CHANGE)})'))


def is_run_defining(field: str) -> bool:
  """Whether `field` ('section.name') defines what a run trains (not in MAY_CHANGE)."""
  return not _matches(field, MAY_CHANGE)


def saved_config(workdir: str, quiet: bool = False) -> dict | None:
  """WORKDIR/config.json as a dict, or None when it is missing or unreadable (with a
  warning unless `quiet`)."""
  path = os.path.join(workdir, 'config.json')
  try:
    text = atomic_io.read_text(path)
    if text is None:
      return None
    saved = json.loads(text)
    if not isinstance(saved, dict):
      raise ValueError(f'a JSON {type(saved).__name__}, not an object')
    return saved
  except (OSError, ValueError) as e:
    if not quiet:
      logging.warning('cannot read %s (%s)', path, e)
    return None


def checkpointed_config(workdir: str) -> tuple[int, dict] | None:
  """(step, config) that the newest committed checkpoint's meta records, or None. Reads
  the meta item's JSON (Orbax's `STEP/meta/metadata`) only, never an in-flight write."""
  try:
    steps = checkpoint_steps(workdir)[::-1]
  except OSError:
    return None
  for step in steps:
    config = (_step_meta(workdir, step) or {}).get('config')
    if isinstance(config, dict):
      return step, config
  return None


def _step_meta(workdir: str, step: int) -> dict | None:
  """Checkpoint `step`'s meta item (Orbax's `STEP/meta/metadata` JSON), or None when it is
  missing or damaged."""
  path = epath.Path(workdir) / 'checkpoints' / str(step) / 'meta' / 'metadata'
  try:
    meta = json.loads(atomic_io.read_text(path))
  except (OSError, TypeError, ValueError):
    return None
  return meta if isinstance(meta, dict) else None


def newest_intact_step(workdir: str) -> int | None:
  """The newest checkpoint step whose folder looks whole, read without Orbax: its meta
  parses and its state folder holds files (a damaged newest step is passed over as the
  restore would pass it over); None when none does."""
  for step in checkpoint_steps(workdir)[::-1]:
    state = epath.Path(workdir) / 'checkpoints' / str(step) / 'state'
    if _step_meta(workdir, step) is not None and state.is_dir() and not _is_empty_dir(state):
      return step
  return None


def reader_config(workdir: str) -> dict | None:
  """The run's config for a mode that reads it: WORKDIR/config.json, or when that is
  unreadable the newest checkpoint's record of it (with a warning saying so)."""
  saved = saved_config(workdir, quiet=True)
  path = os.path.join(workdir, 'config.json')
  if saved is not None or not atomic_io.exists(path):
    return saved
  fallback = checkpointed_config(workdir)
  if fallback is None:
    logging.warning('cannot read %s and no checkpoint records the config; this mode uses '
                    'the config it is given (a training run in this workdir writes %s again)',
                    path, path)
    return None
  logging.warning('cannot read %s; the run\'s fields are taken from the config that '
                  'checkpoint %d records (a training run in this workdir writes %s again)',
                  path, fallback[0], path)
  return fallback[1]


def bind_to_run(config, workdir: str, overrides=()) -> list[str]:
  """For the modes that read a run: sets each run-defining field of `config` to the value
  WORKDIR/config.json saved, and returns the fields that changed.

  overrides: the fields given on the command line ('section.name'); one of them that is
  run-defining and contradicts the saved value raises ConfigMismatchError naming it (a
  formulation or model other than the trained one would sample noise). Without a saved
  config nothing changes (the checkpoint restore still checks its meta).
  """
  check_reachable(workdir)
  saved = reader_config(workdir)
  if saved is None:
    return []
  flat, current = flatten(saved), flatten(config_dict(config))
  for field in sorted(overrides):
    if field in flat and is_run_defining(field) and flat[field] != current.get(field):
      raise ConfigMismatchError(
          f'--config.{field}={current.get(field)!r} contradicts the run in {workdir}, trained '
          f'with {field}={flat[field]!r}; drop the override (this mode takes the run\'s '
          'own values) or use the workdir of a run trained with it')
  taken = []
  for field, value in flat.items():
    section, _, name = field.partition('.')
    if (not is_run_defining(field) or field not in current or current[field] == value
        or section not in config or name not in config[section]):
      continue
    if isinstance(config[section][name], tuple):
      value = tuple(value)
    config[section][name] = value
    taken.append(field)
  if taken:
    logging.info('fields taken from the run in %s: %s', workdir, ', '.join(taken))
  return taken


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of WORKDIR/checkpoints' numbered folders, ascending ([] when none); read
  from the names alone, without opening a checkpoint."""
  return sorted(int(n) for n in _listing(epath.Path(workdir) / 'checkpoints') if n.isdigit())


def has_checkpoints(workdir: str) -> bool:
  return bool(checkpoint_steps(workdir))


def check_can_resume(config, workdir: str) -> None:
  """The CLI's check before it writes anything: config.json against `config`."""
  saved = _record_of_run(workdir, 'config.json', 'the checkpoint meta will be compared '
                         'instead')
  if saved is not None:
    check_same_run(saved, config, workdir)


def _record_of_run(workdir: str, name: str, otherwise: str) -> dict | None:
  """WORKDIR/NAME as JSON when the workdir holds checkpoints (a run to continue), else
  None; an unreadable file is None with a warning ending in `otherwise`."""
  path = os.path.join(workdir, name)
  if not has_checkpoints(workdir):
    return None
  try:
    text = atomic_io.read_text(path)
    return None if text is None else json.loads(text)
  except (OSError, ValueError) as e:
    logging.warning('cannot read %s (%s); %s', path, e, otherwise)
    return None


# What a run writes into its workdir (names, or prefixes ending in '*'): one run's records.
# Reference statistics (fid_stats/) serve any run of the dataset and are not among them.
RUN_RECORDS = ('config.json', 'dataset.json', 'metrics.jsonl', 'samples', 'eval', 'research',
               'research_metrics*', 'checkpoints', 'events.out.tfevents.*')
SET_ASIDE_PREFIX = 'previous-'   # + YYYYmmdd-HHMMSS: where --start_over moves a run


def run_records(workdir: str) -> list[str]:
  """The names in WORKDIR that are records of a run (RUN_RECORDS), sorted."""
  names = _listing(epath.Path(workdir))
  return sorted(n for n in names if any(
      n == r or (r.endswith('*') and n.startswith(r[:-1])) for r in RUN_RECORDS))


def trained_steps(workdir: str) -> int:
  """The last step WORKDIR's records say was trained: metrics.jsonl's rows and the sample
  grids' names (0 when none)."""
  path = os.path.join(workdir, metrics_file.FILE)
  rows = metrics_file.read(path) if atomic_io.exists(path) else []
  steps = [r.get('step', 0) for r in rows if isinstance(r.get('step', 0), int)]
  steps += [int(n[len('samples_'):-len('.png')]) for n in _listing(epath.Path(workdir) / 'samples')
            if n.startswith('samples_') and n.endswith('.png') and n[8:-4].isdigit()]
  return max(steps, default=0)


def _read_by_others(workdir: str) -> bool:
  """Whether a reader (eval, research, sample) wrote results of the run."""
  names = _listing(epath.Path(workdir))
  return bool({'eval', 'research'} & names) or any(
      n.startswith('research_metrics') for n in names) or any(
      n.startswith('sample_mode_') for n in _listing(epath.Path(workdir) / 'samples'))


def _unprovable_restart(config, workdir: str) -> str | None:
  """Why WORKDIR's records without a checkpoint may not be rewritten by a run from step 0,
  or None when they may: nothing was trained (a run stopped before its first step), or
  this same run (config.json differs in no run-defining field) stopped before its first
  checkpoint could commit, as the workdir proves: its checkpoints/ folder is there (a run
  makes it before its first step; a moved one says the steps had checkpoints) and the
  records end by the second checkpoint due under the SAVED run's schedule (the loop waits
  for the first write to commit before it starts the second, and a kill may end that wait).
  """
  trained = trained_steps(workdir)
  if not trained and not _read_by_others(workdir):
    return None
  saved = saved_config(workdir, quiet=True)
  if saved is None or config_differences(saved, config_dict(config)):
    return 'another run'
  if not atomic_io.is_remote(workdir) and not os.path.isdir(os.path.join(workdir,
                                                                           'checkpoints')):
    return (f'this run up to step {trained}, whose checkpoints/ folder is gone (a restart '
            'from step 0 would overwrite steps that had checkpoints)')
  t = flatten(saved)
  every, total = t.get('training.checkpoint_every'), t.get('training.num_steps')
  first_due = min(every or total, total) if isinstance(total, int) else every
  if not isinstance(first_due, int) or trained > 2 * first_due:
    return (f'this run up to step {trained}, past step {2 * first_due if first_due else 0} '
            'by which its saved schedule had committed a checkpoint (a restart from step 0 '
            'would overwrite steps that had checkpoints)')
  if _read_by_others(workdir):
    return 'a run that other modes have read'
  return None


def check_one_run(config, workdir: str) -> None:
  """A workdir holds one run: raises WorkdirError when WORKDIR holds records of trained
  steps (RUN_RECORDS) but no checkpoint to resume, unless the workdir proves a restart from
  step 0 overwrites nothing that had a checkpoint (_unprovable_restart). --start_over
  (set_aside_run) moves them away."""
  if has_checkpoints(workdir):   # a resume: check_can_resume compares
    return
  records = [n for n in run_records(workdir) if n != 'checkpoints']
  why = _unprovable_restart(config, workdir) if records else None
  if why is None:
    return
  raise WorkdirError(
      f'--workdir={workdir} holds the records of {why} ({", ".join(records)}) but no '
      'checkpoint to resume, and a workdir holds one run: use a new --workdir, or add '
      f'--start_over to move those records into {os.path.join(workdir, SET_ASIDE_PREFIX)}'
      'YYYYmmdd-HHMMSS/ and start a new run there')


def _check_can_set_aside(workdir: str) -> None:
  if atomic_io.is_remote(workdir) and run_records(workdir):   # no folder rename there
    raise WorkdirError(f'--start_over cannot move records on --workdir={workdir} (a remote '
                       'file system has no folder rename); use a new --workdir')


def set_aside_run(workdir: str) -> str | None:
  """Moves every record of a run in WORKDIR (RUN_RECORDS, checkpoints included) into
  WORKDIR/previous-YYYYmmdd-HHMMSS/ (local time) and returns that folder; None when there
  is nothing to move. The caller holds the workdir's lock."""
  import time
  records = run_records(workdir)
  if not records:
    return None
  _check_can_set_aside(workdir)
  stamp = time.strftime('%Y%m%d-%H%M%S')
  target, k = os.path.join(workdir, SET_ASIDE_PREFIX + stamp), 1
  while os.path.exists(target):
    k += 1
    target = os.path.join(workdir, f'{SET_ASIDE_PREFIX}{stamp}-{k}')
  os.mkdir(target)
  for name in records:
    os.rename(os.path.join(workdir, name), os.path.join(target, name))
  logging.warning('--start_over: moved the previous run\'s %s into %s', ', '.join(records),
                  target)
  return target


class RunRecord:
  """The records `--mode=train` starts a run with: config.json and dataset.json, and with
  --start_over the old run moved aside first. Written only once every check that can refuse
  the run has passed, and provisional until the run's first step.

  train() calls `check()` first (the data described; other data than the resumed run's
  refused), then everything else that can refuse the run (memory, evaluation hooks, data,
  checkpoints), then `begin()`, and `confirm()` once its first step is trained. Between
  begin and confirm, an exception, or a signal that ends the process (interrupts.py), puts
  the workdir back as check() found it: the records, metrics.jsonl, event files and empty
  folders made since removed, the old records (and a run --start_over moved) back in place.
  So a refused run changes nothing, and a run stopped before its first step leaves nothing
  that blocks a corrected rerun.

  writes: whether this process writes the record (process 0 of the CLI); a RunRecord that
  does not write only tells train() whether to start over (library calls: start_over
  False, nothing written).
  """

  def __init__(self, config, workdir: str, *, start_over: bool = False, writes: bool = True):
    self.config, self.workdir, self.start_over, self.writes = config, workdir, start_over, writes
    self.dataset = None      # data.describe_dataset, once checked
    self._before = None      # (names, {record file: bytes or None}) while provisional
    self._moved = None       # the previous-* folder --start_over moved the old run into
    self._forget = lambda: None

  def _root(self) -> epath.Path:
    return epath.Path(self.workdir if atomic_io.is_remote(self.workdir)
                      else os.path.abspath(self.workdir))

  def check(self) -> None:
    """Describes the data (a missing dataset or an unsatisfiable config value: UserError)
    and, unless starting over, refuses other data than the run being resumed trained on."""
    if not self.writes:
      return
    from sparsediff_jax import data
    from sparsediff_jax.errors import ConfigError, UserError
    try:
      self.dataset = data.describe_dataset(self.config)
    except UserError:
      raise
    except ValueError as e:   # a config value the data cannot satisfy
      raise ConfigError(str(e)) from e
    if self.start_over:
      _check_can_set_aside(self.workdir)
    else:
      check_same_data(self.dataset, self.workdir)

  def begin(self) -> None:
    """Moves the old run aside (--start_over) and writes config.json and dataset.json;
    provisional until confirm(). Every process calls it (the others wait for process 0)."""
    if self.writes:
      if self.dataset is None:
        self.check()
      from sparsediff_jax.runtime import interrupts
      root = self._root()
      self._before = (_listing(root), {n: atomic_io.read_bytes(root / n) for n in RECORD_FILES})
      self._forget = interrupts.at_interrupt(self.undo)
      if self.start_over:
        self._moved = set_aside_run(self.workdir)
      atomic_io.write_text(root / 'config.json', self.config.to_json_best_effort(indent=2))
      atomic_io.write_text(root / 'dataset.json', json.dumps(self.dataset, indent=2))
    import jax
    if self.start_over and jax.process_count() > 1:   # nobody opens the old checkpoints
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('sparsediff_jax run record')

  def confirm(self) -> None:
    """The run trained its first step: its records stay, whatever happens next."""
    self._before = None
    self._forget()

  @contextlib.contextmanager
  def provisional(self):
    """The body's exceptions undo a record not confirmed yet (see the class docstring)."""
    try:
      yield self
    except BaseException:
      try:
        self.undo()
      except OSError as e:   # the original error matters more
        logging.warning('could not undo the run record in %s: %s', self.workdir, e)
      raise
    finally:
      self._forget()

  def undo(self) -> None:
    """Puts the workdir back as begin() found it, if the run has not trained a step."""
    if self._before is None:
      return
    (names, records), self._before = self._before, None
    root = self._root()
    moved = self._moved and epath.Path(self._moved)
    for name in _listing(root) - names:
      path = root / name
      if name in RECORD_FILES or name == 'metrics.jsonl' or name.startswith(
          'events.out.tfevents.'):
        path.unlink(missing_ok=True)
      elif _is_empty_dir(path):
        path.rmdir()
    if moved:   # the records move back whole: a rename each
      for name in RECORD_FILES:
        (root / name).unlink(missing_ok=True)
      for path in moved.iterdir():
        path.rename(root / path.name)
      moved.rmdir()
    for name, content in records.items():
      if content is not None and atomic_io.read_bytes(root / name) != content:
        atomic_io.write_bytes(root / name, content)
    logging.info('the run stopped before its first step: %s is as it was', self.workdir)


REMOTE_TIMEOUT_S = 15.0   # the first access to a remote workdir: no answer by then, refused


def check_reachable(workdir: str) -> None:
  """Raises WorkdirError (one line) unless a remote WORKDIR (gs://...) can be reached: its
  file system installed (entry_checks.remote_backend), and a first look at it answered
  within REMOTE_TIMEOUT_S (no network or no credentials otherwise end in a retrying
  library's traceback after tens of seconds). Local paths pass at once."""
  if not atomic_io.is_remote(workdir):
    return
  import threading
  from sparsediff_jax import entry_checks
  if missing := entry_checks.remote_backend(workdir):
    raise WorkdirError(f'--workdir={workdir}: {missing}')
  outcome = []
  def look():
    try:
      epath.Path(workdir).exists()
      outcome.append(None)
    except BaseException as e:  # noqa: BLE001 - reported below, on the main thread
      outcome.append(e)
  probe = threading.Thread(target=look, name='remote-workdir-probe', daemon=True)
  probe.start()
  probe.join(REMOTE_TIMEOUT_S)
  advice = ('check the network and the credentials (gcloud auth application-default login), '
            'or use a local --workdir')
  if not outcome:
    raise WorkdirError(f'--workdir={workdir}: no answer within {REMOTE_TIMEOUT_S:g} s; '
                       + advice)
  if outcome[0] is not None:
    error = outcome[0]
    detail = ' '.join((str(error).splitlines() or [''])[0].split())[:300]
    raise WorkdirError(f'--workdir={workdir}: cannot be reached ({type(error).__name__}: '
                       f'{detail}); {advice}')


def check_writable(workdir: str) -> None:
  """Raises WorkdirError unless `workdir` is, or can be made as, a writable directory
  (remote ones: reachable, check_reachable; their first write tells the rest)."""
  if '://' in workdir:
    check_reachable(workdir)
    return
  path = os.path.abspath(workdir)
  try:   # else the first checkpoint fails deep inside Orbax and TensorBoard
    path.encode('utf-8')
  except UnicodeEncodeError:
    shown = os.fsencode(workdir).decode('utf-8', 'backslashreplace')
    raise WorkdirError(f'--workdir={shown}: its path is not valid UTF-8 (the bytes shown as '
                       '\\xNN); checkpoints and TensorBoard events need '
                       'UTF-8 file names: rename it or choose another --workdir') from None
  while not os.path.exists(path):
    path = os.path.dirname(path)
  what = 'it' if path == os.path.abspath(workdir) else f'its ancestor {path}'
  if not os.path.isdir(path):
    raise WorkdirError(f'--workdir={workdir}: {what} is a file, not a directory; choose '
                       'another --workdir')
  if not os.access(path, os.W_OK | os.X_OK):
    raise WorkdirError(f'--workdir={workdir}: {what} is not writable; choose another '
                       '--workdir or fix its permissions')


RECORD_FILES = ('config.json', 'dataset.json')


@contextlib.contextmanager
def undo_record_on(is_bad_input, workdir: str):
  """Runs the body; when it raises an error for which `is_bad_input(error)` is true before
  anything but the run record (RECORD_FILES) and empty directories appeared in `workdir`,
  puts the workdir back as it was (the run record restored or removed, the directories this
  run made removed). On gs:// the same, less the directories (an object store has no empty
  ones)."""
  remote = atomic_io.is_remote(workdir)
  root = epath.Path(workdir if remote else os.path.abspath(workdir))
  existing = root
  while not remote and not existing.exists():
    existing = existing.parent
  before = {n: atomic_io.read_bytes(root / n) for n in RECORD_FILES}
  listing = _listing(root)
  try:
    yield
  except Exception as e:
    new = _listing(root) - listing - set(RECORD_FILES)
    if is_bad_input(e) and all(_is_empty_dir(root / n) for n in new):
      try:
        _undo(root, existing, before, new)
      except OSError as undo_error:   # the original error matters more
        logging.warning('could not undo the run record in %s: %s', workdir, undo_error)
    raise


def _undo(root: epath.Path, existing: epath.Path, before: dict, new: set) -> None:
  for name, content in before.items():
    if content is not None:
      atomic_io.write_bytes(root / name, content)
    else:
      (root / name).unlink(missing_ok=True)
  for name in new:
    (root / name).rmdir()
  path = root
  while path != existing:   # the directories this run made, if it got to make them
    if _is_empty_dir(path):
      path.rmdir()
    elif path.exists():
      break
    path = path.parent


def _is_empty_dir(path: epath.Path) -> bool:
  return path.is_dir() and not any(True for _ in path.iterdir())


def _listing(directory: epath.Path) -> set:
  return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def check_same_data(dataset: dict, workdir: str,
                    remedy: str = 'or use a new --workdir') -> None:
  """Refuses to continue a run on other training data: WORKDIR/dataset.json (the record of
  what the run trained on) against `dataset` (data.describe_dataset of this config), when
  the workdir holds checkpoints. Compares the number of examples, the selection (ids) and
  the contents' SHA-256. `remedy`: the message's alternative to restoring the data."""
  saved = _record_of_run(workdir, 'dataset.json', 'the training data is not compared')
  if saved is None:
    return
  selected = saved.get('num_examples_selected', saved.get('num_examples'))
  for key in ('selection_sha256', 'content_sha256'):
    if key in saved and saved[key] != dataset.get(key):
      what = 'which examples' if key == 'selection_sha256' else 'the contents of the examples'
      count = (f', {selected} -> {dataset.get("num_examples")} examples'
               if selected != dataset.get('num_examples') else '')
      raise ConfigMismatchError(
          f'{workdir} holds a run trained on other data ({what} changed{count}: dataset.json '
          f'{key} {saved[key][:12]}... -> {str(dataset.get(key))[:12]}...); restore the '
          f'data it was trained on, {remedy}')


def record_loaded_examples(workdir: str, loaded: int) -> None:
  """Corrects WORKDIR/dataset.json when fewer examples were loaded than selected (image
  files skipped under data.on_bad_image='skip'): num_examples becomes what is trained on,
  num_examples_selected and num_examples_skipped say the rest."""
  path = os.path.join(workdir, 'dataset.json')
  text = atomic_io.read_text(path)
  if text is None:
    return
  record = json.loads(text)
  selected = record.get('num_examples_selected', record.get('num_examples'))
  if selected is None or selected == loaded:
    return
  record.update(num_examples=loaded, num_examples_selected=selected,
                num_examples_skipped=selected - loaded)
  atomic_io.write_json(path, record)
