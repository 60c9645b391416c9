"""Many concurrent launches of the same generation with caching enabled in the daemon: every one
finishes OK with identical results, and a launch after them reuses the training from the cache."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import submit
from daemon_tools import describe, set_workers, stop_daemon, wait_terminated
from tiny_inputs import tiny_generation, water_set

N_LAUNCHES = 8
PHYSGEN_CALCFUNCTIONS = [
    f"aiida.calculations:physgen.{name}" for name in ("train", "generate", "select_representatives")
]


@pytest.fixture
def caching_daemon(aiida_profile, aiida_config, daemon_client):
    """Two workers started with caching enabled for physgen's calcfunctions (workers read the option
    when they start); the option is removed and the workers restarted afterwards."""
    aiida_config.set_option("caching.enabled_for", PHYSGEN_CALCFUNCTIONS, scope=aiida_profile.name)
    aiida_config.store()
    stop_daemon(daemon_client)
    set_workers(daemon_client, 2)
    try:
        yield daemon_client
    finally:
        aiida_config.unset_option("caching.enabled_for", scope=aiida_profile.name)
        aiida_config.store()
        stop_daemon(daemon_client)


def step(node, label: str):
    [calc] = [c for c in node.called if c.process_label == label]
    return calc


@pytest.mark.slow
def test_concurrent_identical_launches_with_caching_give_identical_results(caching_daemon):
    training = water_set().store()
    nodes = [submit(tiny_generation(training)) for _ in range(N_LAUNCHES)]
    wait_terminated(nodes, 300, caching_daemon)
    failed = [describe(n) for n in nodes if not n.is_finished_ok]
    assert not failed, "\n".join(failed)

    reference = nodes[0].outputs
    positions = reference.candidates.get_batch().positions
    [model] = reference.models.values()
    for node in nodes[1:]:
        np.testing.assert_array_equal(
            node.outputs.candidates.get_batch().positions, positions, err_msg=f"{node.pk}: other candidates"
        )
        np.testing.assert_array_equal(
            node.outputs.representatives.get_batch().positions,
            reference.representatives.get_batch().positions,
            err_msg=f"{node.pk}: other representatives",
        )
        assert [m.checksum for m in node.outputs.models.values()] == [model.checksum]
    # a cache hit is a copy of a finished original with the same hash
    for node in nodes:
        for calc in node.called:
            source = calc.base.caching.get_cache_source()
            if source is not None:
                original = orm.load_node(source)
                assert original.is_finished_ok and original.base.caching.get_hash() == calc.base.caching.get_hash()

    # once they have finished, the same launch again trains nothing: every step comes from the cache
    again = submit(tiny_generation(training))
    wait_terminated([again], 120, caching_daemon)
    assert again.is_finished_ok, describe(again)
    for label in ("train", "generate", "select_representatives"):
        assert step(again, label).base.caching.is_created_from_cache, (
            f"{label} of {again.pk} was not taken from the cache"
        )
    np.testing.assert_array_equal(again.outputs.candidates.get_batch().positions, positions)
