"""What the tests share: the tiny config, fakes of data and checkpoints, CLI runners, and the
scripts tests start as subprocesses. Imported one way everywhere:
`from tests.helpers import tiny`. A script that imports other helpers runs as
`python -m tests.helpers.NAME` from the repository root (reader_storm, soak_runs,
run_tiny_steps, dit_devices_worker); the others import the package only and run by path,
with the repository on PYTHONPATH."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
