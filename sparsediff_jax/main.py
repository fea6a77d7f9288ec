"""Command line: `python -m sparsediff_jax.main --config=configs/X.py --workdir=DIR --mode=M`.

With no --config the embedded `shapes` run is used; with no --workdir runs go to
runs/<config name>/. Any config field can be overridden: --config.mask.ratio=0.5.

The same command runs on several hosts: detected on Cloud TPU, SLURM and Open MPI, else with
--coordinator_address, --num_processes and --process_id on every process (docs/launch.md).
Exit codes: 0 done; 2 bad input (a config value, a missing file or dataset, a workdir
holding another run or only damaged checkpoints: --start_over moves such a run aside),
reported as one line on stderr, with the workdir left as it was (see
run_dir.undo_record_on); 1 the run failed (e.g. NaN under
training.on_nonfinite='stop'; the newest checkpoint is the last good state); 128 + N stopped
by signal N (143 SIGTERM, 130 SIGINT): in the training loop after writing a checkpoint,
elsewhere at once with one line (interrupts.py); rerun to resume. A resume already at
training.num_steps says so and exits 0.
docs/troubleshooting.md lists the errors and what to do about each.
"""

import contextlib
import difflib
import importlib.util
import logging as pylogging
import os
import re
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from sparsediff_jax import config_base, errors, modes, validation

# The embedded default is config_base.py itself, so overrides such as
# --config.training.num_steps=100 work without a --config file too. parse_flags supplies it:
# a default given here would be loaded when this module is imported, where a mistyped
# override could only end in a traceback.
_CONFIG = config_flags.DEFINE_config_file(
    'config', None,
    'Python config file with get_config() (default: the embedded shapes run, '
    f'{config_base.__file__}).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Run directory (default: runs/<config name>/).')
_MODE = flags.DEFINE_enum('mode', 'train', modes.NAMES, f'What to do: {modes.HELP}.')
# Multi-process runs. Cloud TPU VMs, SLURM and Open MPI need none of these (detected).
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'HOST:PORT of process 0, for a multi-process run that is '
    'not detected automatically (a GPU cluster, several processes on one machine).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Number of processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'This process: 0..num_processes-1 (0 runs the coordinator).')
_START_OVER = flags.DEFINE_boolean(
    'start_over', False, '--mode=train: move the records of the run already in --workdir '
    '(config.json, metrics, samples, checkpoints, eval and research results) into '
    'WORKDIR/previous-YYYYmmdd-HHMMSS/ and start a new run there. Without it a workdir '
    'holding another run is refused.')
_TOPOLOGY = flags.DEFINE_string(
    'topology', None, '--mode=plan: the TPU slice to compile for, a Cloud accelerator type '
    '(v4-8, v5e-8, v5p-8, v6e-256, ...) or GEN:AxB[xC] (v5e:4x4, v4:2x2x1).')
_INIT_TIMEOUT = flags.DEFINE_integer(
    'initialization_timeout', 300,
    'Seconds to wait for every process of a multi-process run to connect.')

EXIT_USAGE = 2
_BAD_MODE = re.compile(r'flag --mode=(.*): value should be one of ')   # absl's enum error


def usage_error(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(EXIT_USAGE)


def _config_paths(argv) -> list[str]:
  """The values of every --config=PATH (or --config PATH) in argv."""
  paths = []
  for i, arg in enumerate(argv):
    if arg.startswith(('--config=', '-config=')):
      paths.append(arg.split('=', 1)[1])
    elif arg in ('--config', '-config') and i + 1 < len(argv):
      paths.append(argv[i + 1])
  return paths


def _config_path(argv) -> str | None:
  paths = _config_paths(argv)
  return paths[-1] if paths else None


def config_overrides(argv) -> set[str]:
  """The fields overridden on the command line: {'section.name', ...}."""
  return {a.split('=', 1)[0].lstrip('-')[len('config.'):] for a in argv
          if a.startswith(('--config.', '-config.'))}


def _check_flag_values(argv) -> None:
  """Refuses a flag that takes a value but was given none: `--workdir --config=X` would
  otherwise read '--config=X' as the workdir (and lose the config file), `--workdir
  --workdir=X` would train in a folder named '--workdir=X'. No value of such a flag starts
  with '--'."""
  for i, arg in enumerate(argv[1:], 1):
    name, has_value, value = arg.lstrip('-').partition('=')
    if not arg.startswith('-') or name not in flags.FLAGS or flags.FLAGS[name].boolean:
      continue
    if not has_value:   # absl takes the next argument as the value
      following = argv[i + 1] if i + 1 < len(argv) else ''
      if following.startswith('--') or not following:
        usage_error(f'--{name} needs a value: --{name}=VALUE'
                    + (f' (the next argument, {following!r}, is a flag)' if following else ''))
    elif value.startswith('--'):
      usage_error(f"--{name}={value!r} is refused: a value of --{name} cannot start with '--'")


def _unknown_field(config, overrides) -> str | None:
  """The first --config.X override that names no field of `config`, as one line with the
  closest field (difflib), or None when every override names a field."""
  for override in overrides:
    path = override.split('=', 1)[0].lstrip('-')[len('config.'):]
    node, done = config, []
    for part in path.split('.'):
      if not hasattr(node, 'keys'):
        return (f"unknown config field '{path}': config.{'.'.join(done)} is a value, not a "
                'section')
      if part not in node.keys():
        close = difflib.get_close_matches(part, list(node.keys()), n=1)
        rest = path.split('.')[len(done) + 1:]
        hint = (f"; did you mean '{'.'.join([*done, close[0], *rest])}'?" if close else
                '; the fields are listed in sparsediff_jax/config_base.py')
        return f"unknown config field '{path}'{hint}"
      node, done = node[part], [*done, part]
  return None


def _load_config(path: str | None):
  """get_config() of the config file (absl's `path[:argument]`), or of config_base."""
  if path is None:
    return config_base.get_config()
  file, *argument = path.split(':', 1)
  spec = importlib.util.spec_from_file_location('sparsediff_user_config', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*argument)


def parse_flags(argv):
  """absl's parser, but a bad flag or config file is one line and exit code 2."""
  _check_flag_values(argv)
  paths = _config_paths(argv)
  if len(paths) > 1:
    usage_error(f'--config is given {len(paths)} times ({", ".join(paths)}); give one config '
                'file and override its fields with --config.SECTION.FIELD=VALUE')
  path = paths[0] if paths else None
  if path is None:
    argv = [argv[0], f'--config={config_base.__file__}', *argv[1:]]
  elif not os.path.isfile(path.split(':', 1)[0]):
    usage_error(f'--config={path}: no such file (expected a Python file with get_config(), '
                'e.g. configs/celeba.py)')
  overrides = [a for a in argv if a.startswith(('--config.', '-config.'))]
  removed = sorted(config_overrides(argv) & validation.REMOVED.keys())
  if removed:
    usage_error(f'--config.{removed[0]} was removed: {validation.REMOVED[removed[0]]}')
  try:
    parsed = flags.FLAGS(argv)
  except flags.Error as e:
    if bad_mode := _BAD_MODE.match(str(e)):
      usage_error(f'--mode={bad_mode[1]!r} is unknown; choose one of {", ".join(modes.NAMES)}')
    cause = _config_load_cause(str(e))
    usage_error(f'--config={path}: cannot load it ({cause}); it must define get_config()'
                if cause else str(e).splitlines()[0])
  except (KeyError, AttributeError) as e:
    try:   # raised by the config file itself, or ml_collections' answer to an unknown field
      config = _load_config(path)
      validation.check_structure(config, config_base.get_config(),
                                 f'--config={path or config_base.__file__}')
    except errors.ConfigError as structure_error:   # e.g. get_config() returned None
      usage_error(str(structure_error))
    except Exception as load_error:
      usage_error(_cannot_load(path, load_error))
    usage_error(_unknown_field(config, overrides) or _cannot_load(path, e))
  except Exception as e:  # the config file itself failed to load
    usage_error(_cannot_load(path, e))
  try:
    validation.check_structure(_CONFIG.value, config_base.get_config(),
                               f'--config={path or config_base.__file__}')
  except errors.ConfigError as e:
    usage_error(str(e))
  return parsed


def _cannot_load(path, e: BaseException) -> str:
  message = str(e).splitlines()[0] if str(e) else ''
  return (f'--config={path}: cannot load it ({type(e).__name__}: {message}); it must define '
          'get_config()')


def _config_load_cause(message: str) -> str | None:
  """'Type: message' of the exception that absl reports as 'Error whilst parsing config
  file:' followed by its traceback (the cause absl's first line drops), else None."""
  if 'Error whilst parsing config file' not in message:
    return None
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[-1] if len(lines) > 1 else None


def config_name(argv_config_path: str | None) -> str:
  """The run's name: the config file's stem, or 'shapes' for the embedded default."""
  if argv_config_path is None:
    return 'shapes'
  return os.path.splitext(os.path.basename(argv_config_path.split(':', 1)[0]))[0]


def write_run_record(config, workdir, start_over: bool = False):
  """WORKDIR/config.json (the resolved config) and dataset.json (which images) at once; with
  start_over, first moves the run already there aside (run_dir.RunRecord)."""
  from sparsediff_jax.runtime import run_dir
  record = run_dir.RunRecord(config, workdir, start_over=start_over)
  record.check()
  record.begin()
  record.confirm()


def _quiet_library_info(record) -> bool:
  """Drops Orbax's per-save INFO chatter from the console; warnings still show."""
  return record.levelno >= pylogging.WARNING or 'orbax' not in record.pathname


def is_bad_input(error: BaseException) -> bool:
  """Bad input (exit 2) rather than a bug: errors.UserError, or a named missing file."""
  return isinstance(error, (errors.UserError, FileNotFoundError))


def ends_before_work(error: BaseException) -> bool:
  """Errors after which the run record is undone when nothing else was written yet: bad
  input, and a disk too full to take the record."""
  return is_bad_input(error) or isinstance(error, errors.DiskFullError)


def main(argv):
  if len(argv) > 1:
    usage_error(f'unexpected arguments {argv[1:]}; flags are --config, --workdir, --mode '
                '(and --coordinator_address, --num_processes, --process_id for several processes)')
  config, name = _CONFIG.value, config_name(_config_path(sys.argv))
  workdir = _WORKDIR.value or os.path.join('runs', name)
  if '://' not in workdir:   # 'a/b/../c' would leave an empty a/b behind when created
    workdir = os.path.normpath(workdir)
  try:   # the config alone, before JAX is imported: a typo is reported in about a second
    validation.validate_fields(config)
    validation.check_environment(config, _MODE.value)   # e.g. TFDS without TensorFlow
  except errors.ConfigError as e:
    usage_error(str(e))
  logging.get_absl_handler().addFilter(_quiet_library_info)
  if _TOPOLOGY.value and _MODE.value != 'plan':
    usage_error(f'--topology is for --mode=plan only (this is --mode={_MODE.value})')
  if _MODE.value == 'plan':   # libtpu reads its environment when JAX starts its backends
    from sparsediff_jax.tpu_plan.compile import prepare_environment
    prepare_environment()
  import jax
  from sparsediff_jax.runtime import checkpoints, distributed, preemption, run_dir, workdir_lock
  try:
    logging.info('processes: %s', distributed.initialize(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _INIT_TIMEOUT.value))
  except errors.DistributedError as e:
    usage_error(str(e))
  from sparsediff_jax.runtime import compile_cache  # before the first compile
  compile_cache.enable(config.training.compilation_cache)
  mode = modes.MODES[_MODE.value]   # imports its module (and the libraries it needs)
  started = time.monotonic()
  writes_record = mode.writes_record and jax.process_index() == 0
  try:
    if mode.reads_run:
      run_dir.bind_to_run(config, workdir, config_overrides(sys.argv))
    validation.validate_for_devices(config, jax.device_count())
    validation.validate_entries(config)
    if not mode.writes_record and _START_OVER.value:
      usage_error(f'--start_over is for --mode=train only (this is --mode={mode.name})')
    if mode.writes_record:   # before anything is written
      run_dir.check_writable(workdir)
      if not _START_OVER.value:   # else the run there is moved aside
        run_dir.check_can_resume(config, workdir)
        run_dir.check_one_run(config, workdir)
        checkpoints.check_checkpoint_dir(workdir)   # a file named checkpoints
    if mode.nothing_to_do and not _START_OVER.value:
      if message := mode.nothing_to_do(config, workdir):   # before any write
        logging.warning('%s', message)
        return
    logging.info('mode %s, workdir %s', mode.name, workdir)
    # One run per workdir, taken before anything is written (workdir_lock.py).
    with (workdir_lock.hold(workdir, before_release=checkpoints.wait_for_saves)
          if writes_record else contextlib.nullcontext()):
      with (run_dir.undo_record_on(ends_before_work, workdir) if writes_record
            else contextlib.nullcontext()):
        # A mode that writes the record writes it once nothing can refuse the run.
        result = mode.run(config, workdir, **({'record': run_dir.RunRecord(
            config, workdir, start_over=_START_OVER.value, writes=writes_record)}
            if mode.writes_record else {}))
    if jax.process_index() == 0:   # what was done, where, and what to run next
      from sparsediff_jax.console import summary
      for line in summary.lines(mode, result, workdir, time.monotonic() - started,
                                _config_path(sys.argv)):
        logging.info('%s', line)
  except preemption.TrainingInterrupted as e:
    logging.warning('%s', e)
    sys.exit(128 + e.signum)
  except errors.RunFailedError as e:   # the run failed, not its input: exit code 1
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(1)
  except Exception as e:
    if not is_bad_input(e):
      cause = checkpoints.disk_full_cause(e)   # a write outside atomic_io hit a full disk
      if cause is None:
        raise
      print(f'error: no space left on device (ENOSPC): {" ".join(str(cause).split())}; free '
            'space there and run the same command again', file=sys.stderr)
      sys.exit(1)
    usage_error(' '.join(str(e).split()))   # one line
  finally:   # however the run ended, a checkpoint being written is finished first
    if 'sparsediff_jax.runtime.checkpoints' in sys.modules:
      sys.modules['sparsediff_jax.runtime.checkpoints'].wait_for_saves()


def run():
  from sparsediff_jax.console import logs
  from sparsediff_jax.runtime import interrupts  # before jax and TensorFlow are imported
  logs.quiet(sys.argv)
  logs.plain_log_lines(sys.argv)
  interrupts.install()   # Ctrl-C and SIGTERM: one line and 130/143 in every phase
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
