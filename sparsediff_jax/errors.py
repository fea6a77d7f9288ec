"""Every exception that means bad input or a failed run, in one module that imports nothing.

The command line maps exception TYPES to exit codes (main.py): a `UserError` is bad input
(a config value, a path, a dataset, a workdir that holds another run): its message is
printed as one `error:` line and the process exits with code 2, the workdir left as it was.
A `RunFailedError` is a run that failed on its own (NaN under on_nonfinite='stop', a full
disk): one `error:` line, exit code 1, the newest checkpoint being the last good state.
Modules raise these (or subclasses defined next to their code that derive from them).
"""


class UserError(Exception):
  """Bad input: one `error:` line, exit code 2, nothing on disk changed."""


class RunFailedError(Exception):
  """The run itself failed: one `error:` line, exit code 1."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work, reported before any work starts."""


class ConfigMismatchError(ConfigError):
  """The workdir holds a run whose config differs in a field that may not change."""


class WorkdirError(UserError, ValueError):
  """The workdir cannot be created or written, or is in use by another run."""


class CheckpointError(UserError, RuntimeError):
  """Checkpoints exist but none of them can be restored, or the checkpoint folder is not
  one."""


class MissingCheckpointError(UserError, FileNotFoundError):
  """A mode that needs trained parameters found no checkpoint in the workdir."""


class NonFiniteSamplesError(UserError, ValueError):
  """Generated samples contain NaN or inf (a diverged model or an unstable sampler)."""


class EvalInputError(UserError, ValueError):
  """Evaluation input that cannot work: too few samples, missing or unreadable statistics."""


class StatsMismatchError(UserError, ValueError):
  """Two sets of Inception statistics that were computed differently."""


class InceptionWeightsError(UserError, RuntimeError):
  """The Inception weights file is missing, cannot be fetched or has the wrong hash."""


class DatasetUnavailableError(UserError):
  """A dataset that is not prepared (TFDS) or cannot be found."""


class BadImageError(UserError, ValueError):
  """An image file that does not decode."""


class DistributedError(UserError, RuntimeError):
  """Multi-process flags or environment that cannot work."""


class NonFiniteError(RunFailedError):
  """NaN or inf in the loss, gradient, update or a state about to be saved."""


class DiskFullError(RunFailedError):
  """A write failed for lack of space."""
