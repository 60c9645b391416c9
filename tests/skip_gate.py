"""No silent skips: the run counts its skips, prints them, and under ``CI=true`` fails on any that is not allowed.

A skipped test passes for nobody: a package the set-up installs that fails to import, a fixture that cannot
find its code, would otherwise leave the run green with part of the suite not run. So:

* the summary always ends with a line ``skips: N (M allowed)`` and one line per skip with its reason;
* with ``CI=true`` in the environment (``.ci/run`` sets it), a skip that is not in :data:`ALLOWED_SKIPS` fails
  the run (exit status 1), after every test has run, naming the test and its reason.

Register with ``pytest_plugins`` (``tests/conftest.py`` does).
"""

from __future__ import annotations

import os
import re

import pytest

#: the only skips allowed under ``CI=true``: a regular expression of test ids → why the CI machine may skip it
ALLOWED_SKIPS: dict[str, str] = {
    r"tests/ml/test_training\.py::test_devices_without_cuda$": "checks the CPU fallback, so it cannot run where "
    "CUDA is present (a GPU machine)",
}

_skips: list[tuple[str, str]] = []


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed(nodeid: str) -> bool:
    return any(re.search(pattern, nodeid) for pattern in ALLOWED_SKIPS)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_runtest_logreport(report):
    # skips are reported at setup (skip marks, importorskip in a fixture) or in the call (pytest.skip)
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _reason(report)))


def pytest_collectreport(report):
    # a module-level importorskip skips the whole file at collection
    if report.skipped:
        _skips.append((report.nodeid, _reason(report)))


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")  # pytest-xdist: the controller gets every worker's reports


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _is_worker(config):
        return
    allowed_count = sum(allowed(nodeid) for nodeid, _ in _skips)
    terminalreporter.write_line(f"skips: {len(_skips)} ({allowed_count} allowed)")
    for nodeid, reason in _skips:
        mark = "allowed" if allowed(nodeid) else "NOT ALLOWED under CI=true" if in_ci() else "skipped"
        terminalreporter.write_line(f"  {mark}: {nodeid}: {reason}")
    refused = len(_skips) - allowed_count
    if refused and in_ci():
        terminalreporter.write_line(
            f"FAILED: {refused} skip(s) not on the allow-list (tests/skip_gate.py ALLOWED_SKIPS) under CI=true",
            red=True,
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _is_worker(session.config) or not in_ci():
        return
    refused = [nodeid for nodeid, _ in _skips if not allowed(nodeid)]
    if refused and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
