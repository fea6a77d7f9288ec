"""What the tests share: the tiny config, fakes of data and checkpoints, CLI runners, and the
scripts tests start as subprocesses (`python -m tests.helpers.NAME` from the repository root).
Imported one way everywhere: `from tests.helpers import tiny`."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
