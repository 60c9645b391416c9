"""Counts the broker nudges of the daemon tests and prints them at the end of the run.

aiida-core 2.9's ZeroMQ broker can miss a SIGKILLed daemon worker (``aiida_physgen/broker.py``), and then nothing
resumes its processes until some client connects and leaves. The worker-kill tests wait first; only if nothing has
resumed by then do they make the broker look (``tests/reliability/daemon_tools.py:wait_terminated``). Every such nudge
is counted on the test's report (``user_properties``), and the summary says how many tests needed one, so a run that
recovered only with help is visible, not hidden behind a pass.

Register with ``pytest_plugins`` (``tests/conftest.py`` does).
"""

from __future__ import annotations

_nudged: list[tuple[str, int]] = []


def pytest_runtest_logreport(report):
    if report.when != "teardown":  # the count is put on the test at its teardown, so its last report has it
        return
    count = sum(value for name, value in report.user_properties if name == "broker_nudges")
    if count:
        _nudged.append((report.nodeid, count))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    if _nudged:
        terminalreporter.write_line(
            f"broker nudges: {sum(n for _, n in _nudged)} in {len(_nudged)} test(s) (the aiida-core ZeroMQ race; "
            "see aiida_physgen/broker.py)",
            yellow=True,
        )
        for nodeid, count in _nudged:
            terminalreporter.write_line(f"  {nodeid}: {count}")
