"""``aiida_physgen.broker.probe_dead_workers``: one client connecting to the ZeroMQ broker and leaving.

Whether it frees a dead worker's tasks depends on an aiida-core race that a test cannot force; the load test
(``benchmarks/load_test.py``) counts the stalls where it was needed. Here: it talks to the real broker of the
test profile, can be called again, and leaves other brokers alone."""

from __future__ import annotations

import copy

from aiida.manage import get_manager
from aiida.manage.configuration.profile import Profile

from aiida_physgen.broker import probe_dead_workers


def test_probe_connects_to_the_zeromq_broker_and_the_broker_keeps_serving(aiida_profile):
    profile = get_manager().get_profile()
    assert profile.process_control_backend == "core.zeromq"
    assert probe_dead_workers() is True
    assert probe_dead_workers(profile) is True
    # the profile's own communicator still answers after two clients came and went
    communicator = get_manager().get_communicator()
    assert communicator is not None
    assert probe_dead_workers() is True


def test_probe_leaves_a_rabbitmq_profile_alone(aiida_profile):
    profile = get_manager().get_profile()
    config = copy.deepcopy(profile.dictionary)
    config["process_control"] = {"backend": "core.rabbitmq", "config": {"broker_host": "unreachable.invalid"}}
    rabbit = Profile("physgen-rabbit", config, validate=False)
    assert rabbit.process_control_backend == "core.rabbitmq"
    assert probe_dead_workers(rabbit) is False  # and no connection tried: the host does not exist


def test_probe_broker_command(aiida_profile):
    from click.testing import CliRunner

    from aiida_physgen.cli import main

    name = get_manager().get_profile().name
    result = CliRunner().invoke(main, ["probe-broker", "--profile", name])
    assert result.exit_code == 0, result.output
    assert f"{name}: the ZeroMQ broker looked for dead workers" in result.output

    result = CliRunner().invoke(main, ["probe-broker", "--profile", "no-such-profile"])
    assert result.exit_code == 2
    assert "--profile: cannot load the AiiDA profile 'no-such-profile'" in result.output
