"""A quiet console for the command line: the run's own lines, not the libraries' start-up noise.

`plain_log_lines(argv)` drops absl's prefix (`I1206 01:41:10.330996 139888818944896
main.py:199]`) from the run's log lines: '01:41:10 message', and 'warning: ' or 'error: '
before the message at those levels; `--verbosity=1` keeps absl's format.

`quiet(argv)` runs first in the CLI, before jax or TensorFlow are imported (what it sets is
read by them at import), and does nothing with `--verbosity=1` or higher (absl's flag, also
`-v 1`), where every line shows as before. Otherwise:

- TF_CPP_MIN_LOG_LEVEL=1 (TensorFlow's C++ INFO lines), unless the user set it.
- JAX_PLATFORMS from the hardware present, unless the user set it: jax otherwise probes TPU
  on every machine and logs "Unable to initialize backend 'tpu'" where there is none.
  `choose_platforms` leaves it unset when a TPU (libtpu and /dev/accel* or /dev/vfio) or a
  jax plug-in it does not know is present.
- Native stderr lines that no setting silences go through a filter (`NoiseFilter`, run in
  a forked process that owns the real stderr): absl's "All log messages before
  absl::InitializeLog()" notice and TensorFlow's oneDNN notice (printed at import, before
  any log level applies), and XLA's slow-operation banners ("Very slow compile?",
  "Constant folding an instruction is taking > 1s"). Everything else passes unchanged and
  at once (tqdm's carriage returns included). The filter process ignores SIGINT/SIGTERM and
  exits when the last writer of the pipe closes it, so a crash's last lines still arrive.

Where stderr was a terminal before the filter took it over is kept in
`stderr_is_terminal()`, for the progress bar (progress.py).
"""

import glob
import importlib.util
import logging as pylogging
import os
import re
import select
import signal
import sys
import time

_STDERR_WAS_TERMINAL = None   # set by quiet() before fd 2 becomes a pipe

# Lines dropped on their own.
_NOISE_LINES = (
    re.compile(rb'All log messages before absl::InitializeLog\(\) is called'),
    re.compile(rb'port\.cc:\d+\] oneDNN custom operations are on'),
)
# A record of XLA's slow-operation alarm: dropped from its first line to the line that
# ends its advice (and the '****' separator after that, when there is one).
_ALARM_START = re.compile(rb'slow_operation_alarm\.cc:\d+\]')
_ALARM_END = re.compile(rb'attach the results\.')
_LOG_RECORD = re.compile(rb'^[IWEF]\d{4} ')   # a new absl/glog record
_STARS = re.compile(rb'^\*{8,}\s*$')
_MAX_ALARM_LINES = 400
# A partial line that may grow into a noise line is held back this long at most (s).
HOLD_SECONDS = 0.2


class NoiseFilter:
  """Byte stream in, the same stream without the noise records out.

  `feed(data)` returns what can be written now; `flush()` what is held back (a partial
  line that starts like a log record). Pure: no I/O, so it is tested on its own.
  """

  def __init__(self):
    self._partial = b''
    self._alarm_lines = 0     # > 0: inside a slow-operation record
    self._after_alarm = False  # just past one: a separator line is part of it

  def feed(self, data: bytes) -> bytes:
    self._partial += data
    *lines, self._partial = self._partial.split(b'\n')
    out = [line + b'\n' for line in lines if self._keep(line)]
    if self._partial and not self._alarm_lines and not self._may_be_noise(self._partial):
      out.append(self._partial)   # a progress bar or a prompt: show it now
      self._partial = b''
    return b''.join(out)

  def flush(self) -> bytes:
    partial, self._partial = self._partial, b''
    return b'' if self._alarm_lines else partial

  @staticmethod
  def _may_be_noise(partial: bytes) -> bool:
    return partial[:1] in (b'I', b'W', b'E', b'F', b'*')

  def _keep(self, line: bytes) -> bool:
    if self._alarm_lines:
      if _LOG_RECORD.match(line) and not _ALARM_START.search(line):
        self._alarm_lines = 0   # the record ended without its usual last line
      else:
        self._alarm_lines += 1
        if _ALARM_END.search(line) or self._alarm_lines > _MAX_ALARM_LINES:
          self._alarm_lines, self._after_alarm = 0, True
        return False
    if self._after_alarm:
      self._after_alarm = False
      if _STARS.match(line):
        return False
    if _ALARM_START.search(line):
      self._alarm_lines = 1
      return False
    return not any(p.search(line) for p in _NOISE_LINES)


def verbosity_from_argv(argv) -> int:
  """absl's --verbosity (also -v, --v) as given on the command line; 0 when absent or not
  a number (absl reports a bad value itself)."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    name, eq, rest = arg.partition('=')
    if name in ('--verbosity', '-verbosity', '-v', '--v'):
      value = rest if eq else (argv[i + 1] if i + 1 < len(argv) else None)
  try:
    return int(value) if value is not None else 0
  except ValueError:
    return 0


# jax plug-in modules this chooser knows; any other one makes it leave JAX_PLATFORMS alone.
_CUDA_PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin')


def choose_platforms(environ, *, exists=os.path.exists, glob_fn=glob.glob,
                     has_module=None, plugins=None) -> str | None:
  """The JAX_PLATFORMS value for the hardware present, or None to leave jax's default.

  None when the user chose (JAX_PLATFORMS or JAX_PLATFORM_NAME set), when a TPU may be
  present (libtpu installed and a TPU device file present), or when a jax plug-in other
  than CUDA is installed. 'cuda,cpu' with the CUDA plug-in and an NVIDIA device; else 'cpu'.
  """
  has_module = has_module or (lambda name: importlib.util.find_spec(name) is not None)
  if environ.get('JAX_PLATFORMS') is not None or environ.get('JAX_PLATFORM_NAME'):
    return None
  if has_module('libtpu') and (glob_fn('/dev/accel*') or glob_fn('/dev/vfio/[0-9]*')):
    return None
  plugins = _installed_plugins() if plugins is None else plugins
  if any(p not in _CUDA_PLUGINS for p in plugins):
    return None
  if any(p in _CUDA_PLUGINS for p in plugins) and (exists('/dev/nvidiactl')
                                                    or glob_fn('/dev/nvidia[0-9]*')):
    return 'cuda,cpu'
  return 'cpu'


def _installed_plugins() -> list[str]:
  """Names of installed jax plug-ins (the jax_plugins namespace and *_plugin packages)."""
  names = []
  spec = importlib.util.find_spec('jax_plugins')
  for path in (spec.submodule_search_locations or []) if spec else []:
    names += [n for n in os.listdir(path) if not n.startswith(('_', '.'))]
  names += [p for p in _CUDA_PLUGINS + ('jax_rocm60_plugin', 'jax_rocm7_plugin')
            if importlib.util.find_spec(p) is not None]
  # jax_plugins/xla_cuda12 and the jax_cuda12_plugin package are the same plug-in.
  return sorted({'jax_cuda12_plugin' if n == 'xla_cuda12' else
                 'jax_cuda13_plugin' if n == 'xla_cuda13' else n for n in names})


def stderr_is_terminal() -> bool:
  """Whether the user's stderr is a terminal (also after quiet() made fd 2 a pipe)."""
  if _STDERR_WAS_TERMINAL is not None:
    return _STDERR_WAS_TERMINAL
  try:
    return os.isatty(sys.stderr.fileno())
  except (AttributeError, OSError, ValueError):
    return False


class PlainFormatter(pylogging.Formatter):
  """'HH:MM:SS message' (local time); 'HH:MM:SS warning: message' from WARNING up."""

  def format(self, record: pylogging.LogRecord) -> str:
    level = f'{record.levelname.lower()}: ' if record.levelno >= pylogging.WARNING else ''
    text = f'{time.strftime("%H:%M:%S", time.localtime(record.created))} {level}'
    text += record.getMessage()
    if record.exc_info:
      text += '\n' + self.formatException(record.exc_info)
    return text


def plain_log_lines(argv) -> None:
  """absl's log lines without their prefix (see the module docstring), unless --verbosity
  is 1 or more."""
  if verbosity_from_argv(argv) >= 1:
    return
  from absl import logging
  logging.get_absl_handler().setFormatter(PlainFormatter())


def quiet(argv, environ=None) -> None:
  """Sets the environment and the stderr filter described above; call it before jax/TF
  are imported, once, from the command line's entry point only (it forks)."""
  environ = os.environ if environ is None else environ
  if verbosity_from_argv(argv) >= 1:
    return
  environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  platforms = choose_platforms(environ)
  if platforms:
    environ['JAX_PLATFORMS'] = platforms
  if 'jax' in sys.modules or 'tensorflow' in sys.modules:
    return   # too late for the import-time lines; not worth a process
  _filter_stderr()


def _filter_stderr() -> None:
  """fd 2 becomes a pipe into a forked process that writes the filtered stream to the
  original stderr."""
  global _STDERR_WAS_TERMINAL
  try:
    _STDERR_WAS_TERMINAL = os.isatty(2)
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
  except OSError:
    return   # no stderr or no fork: keep the console as it is
  if pid == 0:   # the filter
    os.close(write_fd)
    for signum in (signal.SIGINT, signal.SIGTERM):
      signal.signal(signum, signal.SIG_IGN)
    code = 0
    try:
      _pump(read_fd, 2)
    except BaseException:   # never a traceback of its own; the stream simply ends
      code = 1
    os._exit(code)
  os.close(read_fd)
  os.dup2(write_fd, 2)
  os.close(write_fd)


def _pump(read_fd: int, out_fd: int) -> None:
  noise = NoiseFilter()
  while True:
    ready, _, _ = select.select([read_fd], [], [], HOLD_SECONDS)
    data = os.read(read_fd, 65536) if ready else None
    if data == b'':   # every writer closed the pipe: the run is over
      _write_all(out_fd, noise.flush())
      return
    _write_all(out_fd, noise.feed(data) if data else noise.flush())


def _write_all(fd: int, data: bytes) -> None:
  while data:
    try:
      data = data[os.write(fd, data):]
    except BlockingIOError:
      select.select([], [fd], [])
