"""Helpers of the reliability suite: daemon workers, waiting with timeouts, readable failures."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest


def worker_pids(client) -> list[int]:
    """PIDs of the daemon's workers, from circus' statistics of the worker watcher."""
    return sorted(int(pid) for pid in client.get_worker_info().get("info", {}))


def daemon_log_tail(client, lines: int = 60) -> str:
    try:
        text = Path(client.daemon_log_file).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(no daemon log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def broker_log_tail(lines: int = 30) -> str:
    """The last lines of the ZeroMQ broker service's log (the test fixture runs it beside the daemon)."""
    from aiida.brokers import ZeromqBroker
    from aiida.manage import get_manager

    broker = get_manager().get_broker()
    if not isinstance(broker, ZeromqBroker):
        return "(not a ZeroMQ broker)"
    from aiida.manage.configuration import get_config

    logs = [
        path
        for path in (
            Path(broker._service_dir) / "broker.log",
            Path(get_config().filepaths(get_manager().get_profile())["broker_service"]["log"]),
        )
        if path.exists()
    ]
    if not logs:
        return f"(no broker log in {broker._service_dir})"
    text = logs[-1].read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


#: one entry per nudge of this process (tests/broker_nudges.py counts them per test)
NUDGES: list[float] = []


def nudge_broker() -> None:
    """Make the ZeroMQ broker look for dead workers now (:func:`aiida_physgen.broker.probe_dead_workers`: an
    aiida-core 2.9 race can leave a SIGKILLed worker's tasks assigned to it until another client disconnects)."""
    from aiida_physgen.broker import probe_dead_workers

    probe_dead_workers()


def describe(node) -> str:
    """A node and every process below it with its state, for failure messages."""
    rows = [f"{node.process_label}<{node.pk}> {node.process_state} exit {node.exit_status} {node.exit_message or ''}"]
    if node.is_excepted:
        rows.append(f"  exception: {(node.exception or '').strip().splitlines()[-1:]}")
    for child in node.called_descendants:
        caller = child.caller
        rows.append(
            f"  {child.process_label}<{child.pk}> {child.process_state} exit {child.exit_status} "
            f"(called by {caller.process_label}<{caller.pk}> at {child.ctime:%H:%M:%S.%f})"
        )
    return "\n".join(rows)


def wait_until(condition, timeout: float, what: str, client=None, interval: float = 0.5):
    """Poll ``condition`` until it is true; on timeout fail naming ``what`` (and the daemon log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    log = f"\n--- daemon log (tail) ---\n{daemon_log_tail(client)}" if client is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{log}")


def wait_terminated(nodes, timeout: float, client=None, nudge_after: float | None = None) -> None:
    """Wait until every node is terminated (finished, excepted or killed).

    ``nudge_after`` (s): after a worker was killed, if something is still running by then, make the broker look
    for dead workers once (:func:`nudge_broker`, an aiida-core race) and say so in a warning."""
    nodes = list(nodes)
    if nudge_after is not None:
        start = time.monotonic()
        while time.monotonic() - start < nudge_after and any(not n.is_terminated for n in nodes):
            time.sleep(0.5)
        if any(not n.is_terminated for n in nodes):
            import warnings

            warnings.warn(
                f"nothing resumed {nudge_after:.0f} s after a worker was killed: the broker missed the dead "
                f"worker (aiida-core race); nudged it. Broker log:\n{broker_log_tail(10)}",
                stacklevel=2,
            )
            nudge_broker()
            NUDGES.append(time.monotonic())
        timeout = max(timeout - nudge_after, 60)

    def pending():
        return [n for n in nodes if not n.is_terminated]

    def done():
        return not pending()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        time.sleep(0.5)
    if not done():
        left = pending()
        states = "\n".join(describe(n) for n in left[:5])
        pytest.fail(
            f"timed out after {timeout:.0f} s: {len(left)} of {len(nodes)} processes not terminated:\n"
            f"{states}\n--- daemon log (tail) ---\n{daemon_log_tail(client) if client else ''}"
            f"\n--- broker log (tail) ---\n{broker_log_tail()}"
        )


def stop_daemon(client, timeout: float = 60) -> None:
    """Stop the daemon and wait until its PID file is gone (``is_daemon_running`` lags behind a stop)."""
    if client.is_daemon_running:
        client.stop_daemon(wait=True)
    wait_until(lambda: not client.is_daemon_running, timeout, "the daemon to stop", client)


def set_workers(client, number: int, timeout: float = 60) -> list[int]:
    """Start the daemon if needed and bring it to exactly ``number`` live workers; returns their PIDs."""
    from aiida.engine.daemon.client import DaemonException

    try:
        current = len(worker_pids(client)) if client.is_daemon_running else None
    except DaemonException:  # a daemon that is stopping, or died: start afresh
        current = None
    if current is None:
        stop_daemon(client, timeout)
        client.start_daemon(number_workers=number)
    elif current < number:
        client.increase_workers(number - current)
    elif current > number:
        client.decrease_workers(current - number)
    return wait_until(
        lambda: (lambda p: p if len(p) == number else None)(worker_pids(client)),
        timeout,
        f"{number} daemon workers",
        client,
    )


def kill_worker(client, pid: int, timeout: float = 60) -> list[int]:
    """SIGKILL one worker and wait until circus has replaced it; returns the new worker PIDs."""
    before = worker_pids(client)
    assert pid in before, f"{pid} is not a daemon worker ({before})"
    os.kill(pid, signal.SIGKILL)
    return wait_until(
        lambda: (lambda p: p if len(p) == len(before) and pid not in p else None)(worker_pids(client)),
        timeout,
        f"circus to replace the killed worker {pid}",
        client,
    )


def assert_nothing_left_running(node, client=None) -> None:
    """No process below ``node`` may stay non-terminal once ``node`` has terminated."""
    stuck = [c for c in node.called_descendants if not c.is_terminated]
    if stuck:
        log = f"\n--- daemon log (tail) ---\n{daemon_log_tail(client, 120)}" if client is not None else ""
        pytest.fail(
            f"{len(stuck)} process(es) left non-terminal below {node.process_label}<{node.pk}>: "
            f"{[f'{c.process_label}<{c.pk}> {c.process_state}' for c in stuck]}\n{describe(node)}{log}"
        )
