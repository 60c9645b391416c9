"""Many small processes submitted at once to a real two-worker daemon: every one finishes OK, none
is lost, no worker dies, and every process below them is terminated."""

from __future__ import annotations

import time

import pytest
from aiida.engine import submit
from daemon_tools import describe, wait_terminated, worker_pids
from tiny_inputs import tiny_generation, water_set

#: 16 chains (it was 30; 16 keep both workers busy with eight chains each, at about half the suite time)
N_PROCESSES = 16


@pytest.mark.slow
def test_sixteen_generation_chains_on_two_workers_all_finish_ok(two_workers):
    workers = worker_pids(two_workers)
    training = water_set().store()
    start = time.monotonic()
    # distinct generation seeds: 16 different results, none can be served by another
    nodes = [submit(tiny_generation(training, generation_seed=seed)) for seed in range(N_PROCESSES)]
    wait_terminated(nodes, 420, two_workers)
    elapsed = time.monotonic() - start
    failed = [describe(n) for n in nodes if not n.is_finished_ok]
    assert not failed, f"{len(failed)} of {N_PROCESSES} chains did not finish OK:\n" + "\n".join(failed[:5])
    assert worker_pids(two_workers) == workers, "a daemon worker died or was replaced during the run"
    for node in nodes:
        assert node.outputs.representatives.count == 3, describe(node)
        assert len(node.outputs.candidates) == 40, describe(node)
        stuck = [describe(c) for c in node.called_descendants if not c.is_terminated]
        assert not stuck, f"non-terminal processes below {node.pk}: {stuck}"
    # each chain made its own candidates: no two results are the same node or the same content
    assert len({n.outputs.candidates.uuid for n in nodes}) == N_PROCESSES
    print(f"{N_PROCESSES} chains on 2 workers: {elapsed:.0f} s")
