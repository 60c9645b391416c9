"""``probe-broker``: free the processes a dead daemon worker still holds on aiida-core 2.9's ZeroMQ broker."""

from __future__ import annotations

import click

from ._common import InputError
from .options import profile_option

__all__ = ["probe_broker"]


@click.command("probe-broker")
@profile_option
def probe_broker(profile):
    """Make the profile's ZeroMQ broker look for dead daemon workers now, so that the processes a killed worker
    held go back to the queue (an aiida-core 2.9 race, see docs/reliability.md). Harmless when every worker is
    alive; does nothing for a RabbitMQ profile."""
    from aiida import load_profile

    from ..broker import probe_dead_workers

    try:
        loaded = load_profile(profile, allow_switch=True)
    except Exception as error:  # noqa: BLE001 - ProfileConfigurationError, ConfigurationError, ...
        raise InputError(f"--profile: cannot load the AiiDA profile {profile or '(default)'!r} ({error})") from None
    if probe_dead_workers(loaded):
        click.echo(
            f"{loaded.name}: the ZeroMQ broker looked for dead workers (what a dead one held goes back to the queue)"
        )
    elif loaded.process_control_backend == "core.zeromq":
        click.echo(f"{loaded.name}: the ZeroMQ broker is not running (no daemon); nothing to do")
    else:
        click.echo(f"{loaded.name}: broker {loaded.process_control_backend!r} requeues by itself; nothing to do")
