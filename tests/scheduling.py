"""How the suite's tests are shared among pytest-xdist workers (``scripts/run_tests.sh``: ``--dist loadgroup``).

Every file is one xdist group, so its tests stay on one worker and its module fixtures are built once (as with
``--dist loadfile``), except the files in :data:`SPREAD_FILES`, whose tests go to the workers one by one.

Handing the longest files out first (by recorded seconds) was tried and measured: 1,126 s for the full suite on a
fresh clone against 1,007 s and 1,085 s in collection order; the suite is CPU-bound (the per-file seconds add up to
three workers busy all along), so the order cannot buy time and the heaviest files then contend with each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parent

#: files of long tests that share no module fixture (each runs a study script in its own subprocess): their tests
#: go to the workers one by one. The two files together were the longest unit of the suite (about 460 s on one
#: worker).
SPREAD_FILES = {"aiida/test_study_scripts.py", "aiida/test_study_scripts_sio2.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        relative = Path(str(item.path)).relative_to(ROOT).as_posix()
        if relative not in SPREAD_FILES:
            item.add_marker(pytest.mark.xdist_group(relative))
