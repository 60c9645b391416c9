"""How the suite's tests are shared among pytest-xdist workers (``scripts/run_tests.sh``: ``--dist loadgroup``).

* Every file is one xdist group, so its tests stay on one worker and its module fixtures are built once (as with
  ``--dist loadfile``), except the files in :data:`SPREAD_FILES`, whose tests go to the workers one by one.
* The units of work (a file, or a test of a spread file) are handed out longest first, from the seconds each took in
  a recorded run (``tests/durations.json``): the longest-processing-time-first rule, so that a long unit does not
  start last and run alone at the end. A unit missing from the record keeps its collection order after the
  recorded ones. The order applies only under xdist; a plain ``pytest`` runs in collection order.

Record the seconds again after the suite has changed much (the file is read, never required)::

    PHYSGEN_RECORD_DURATIONS=tests/durations.json bash scripts/run_tests.sh
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).parent
DURATIONS = ROOT / "durations.json"

#: files of long tests that share no module fixture (each runs a study script in its own subprocess): their tests
#: go to the workers one by one. The two files together were the longest unit of the suite (about 460 s on one
#: worker).
SPREAD_FILES = {"aiida/test_study_scripts.py", "aiida/test_study_scripts_sio2.py"}

_seconds: dict[str, float] = defaultdict(float)


def _file(nodeid: str) -> str:
    """The file of a node id, relative to ``tests/``."""
    path = nodeid.split("::")[0]
    return path[len("tests/") :] if path.startswith("tests/") else path


def unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or the test itself in a spread file."""
    relative = _file(nodeid)
    return nodeid.split("@")[0] if relative in SPREAD_FILES else relative


def recorded() -> dict[str, float]:
    try:
        return json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        relative = Path(str(item.path)).relative_to(ROOT).as_posix()
        if relative not in SPREAD_FILES:
            item.add_marker(pytest.mark.xdist_group(relative))
    if not hasattr(config, "workerinput"):  # not an xdist worker: keep the collection order
        return
    seconds = recorded()
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        first.setdefault(unit(item.nodeid), index)
    # every worker sorts the same collection the same way, as xdist requires
    items.sort(key=lambda item: (-seconds.get(unit(item.nodeid), 0.0), first[unit(item.nodeid)]))


def pytest_runtest_logreport(report):
    if os.environ.get("PHYSGEN_RECORD_DURATIONS"):
        _seconds[unit(report.nodeid)] += report.duration  # setup, call and teardown


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("PHYSGEN_RECORD_DURATIONS")
    if target and not hasattr(session.config, "workerinput") and _seconds:
        ordered = dict(sorted(((k, round(v, 1)) for k, v in _seconds.items()), key=lambda kv: -kv[1]))
        Path(target).write_text(json.dumps(ordered, indent=1) + "\n")
