"""Recover processes held by a dead daemon worker on aiida-core 2.9's ZeroMQ broker.

The built-in broker (``core.zeromq``) gives a dead worker's tasks back to the queue when its router
socket reports a disconnect and a ping to that worker then fails. The report can come before the
router has dropped the dead worker's pipe: the ping then seems to succeed, and the tasks stay
assigned to the dead worker until the next client disconnects, whoever it is. Seen here in CI (a
chain held by a SIGKILLed worker never resumed) and in the load test (a 12-minute stall that ended
when the load test's own connection closed).

The broker looks for dead workers on every client disconnect, so one client connecting and leaving
is enough: :func:`probe_dead_workers`. Without this module, ``verdi daemon restart`` does the same.
"""

from __future__ import annotations

__all__ = ["probe_dead_workers"]


def probe_dead_workers(profile=None) -> bool:
    """Make the profile's ZeroMQ broker look for dead workers now (connect one client, close it).

    Harmless when every worker is alive. Returns False without doing anything for another broker
    (RabbitMQ requeues by itself when a consumer's connection drops) and when the broker service is
    not running (no daemon: no worker holds a task)."""
    from aiida.brokers import ZeromqBroker
    from aiida.manage import get_manager

    profile = profile or get_manager().get_profile()
    if profile.process_control_backend != "core.zeromq":
        return False
    probe = ZeromqBroker(profile)
    if not probe.check_service_reachable():  # get_communicator would wait 10 s for it, then raise
        return False
    try:
        probe.get_communicator()
    finally:
        probe.close()
    return True
