"""Exceptions that mean bad input rather than a bug.

The command line prints their message as one line and exits with code 2 (main.USER_ERRORS).
This module imports nothing heavy, so the CLI can name these types before importing JAX.
"""


class MissingCheckpointError(FileNotFoundError):
  """A mode that needs trained parameters found no checkpoint in the workdir."""


class NonFiniteSamplesError(ValueError):
  """Generated samples contain NaN or inf (a diverged model or an unstable sampler)."""


class EvalInputError(ValueError):
  """Evaluation input that cannot work: too few samples, missing or unreadable statistics."""
