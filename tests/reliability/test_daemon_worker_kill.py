"""A daemon worker SIGKILLed in the middle of a run: the run ends as if nothing had happened.

* mid-screening (GPAW relaxations under way) → the same minima as an uninterrupted run;
* inside the training calcfunction of a generation chain → the chain still finishes OK, and no
  process node below it is left "Running" for ever.

The daemon runs ONE worker here, so the killed worker is certainly the one holding the process;
circus starts a replacement, which picks the process up from its last checkpoint.
"""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node, submit

from daemon_tools import describe, kill_worker, set_workers, wait_terminated, wait_until, worker_pids
from tiny_inputs import TINY, tiny_generation, tiny_screening, water_set


def minima_summary(node) -> list[tuple]:
    """What a screening found: per basin its formula, multiplicity and energy (meV precision)."""
    rows = node.outputs.report["rows"]
    formulae = {name: node.outputs.minima[name].get_formula() for name in node.outputs.minima}
    return sorted((formulae.get(row["name"]), row["count"], round(row["energy"], 3)) for row in rows)


def running_descendant(node, label: str):
    """The first non-terminated descendant process of ``node`` with this process label, if any."""
    return next((c for c in node.called_descendants if c.process_label == label and not c.is_terminated), None)


@pytest.mark.slow
def test_worker_killed_mid_screening_gives_the_same_minima(gpaw_code, daemon_client):
    _, reference = run_get_node(tiny_screening(gpaw_code))
    assert reference.is_finished_ok, describe(reference)

    set_workers(daemon_client, 1)
    node = submit(tiny_screening(gpaw_code))
    job = wait_until(lambda: running_descendant(node, "GpawCalculation"), 300,
                     "a GPAW relaxation of the screening to be under way", daemon_client)
    assert not node.is_terminated
    [worker] = worker_pids(daemon_client)
    kill_worker(daemon_client, worker)
    assert not job.is_terminated and not node.is_terminated, "the run finished before the worker was killed"
    wait_terminated([node], 420, daemon_client)

    assert node.is_finished_ok, describe(node)
    assert minima_summary(node) == minima_summary(reference)
    assert node.outputs.report["n_relaxed"] == reference.outputs.report["n_relaxed"] == 3
    stuck = [describe(c) for c in node.called_descendants if not c.is_terminated]
    assert not stuck, f"processes left non-terminal after the kill: {stuck}"


@pytest.fixture(scope="module")
def killed_in_training(daemon_client):
    """A generation chain whose only daemon worker was SIGKILLed while ``physgen.train`` ran."""
    set_workers(daemon_client, 1)
    # long enough training (~10 s) that the kill lands inside the calcfunction
    settings = {**TINY, "loop": {"steps": 300, "batch_size": 4}}
    node = submit(tiny_generation(water_set().store(), settings=settings))
    training = wait_until(lambda: running_descendant(node, "train"), 300,
                          "the training calcfunction to be running", daemon_client, interval=0.2)
    [worker] = worker_pids(daemon_client)
    kill_worker(daemon_client, worker)
    assert not node.is_terminated, "the chain finished before the worker was killed"
    wait_terminated([node], 420, daemon_client)
    return node, training


@pytest.mark.slow
def test_worker_killed_in_training_the_chain_still_finishes_ok(killed_in_training):
    node, first_training = killed_in_training
    assert node.is_finished_ok, describe(node)
    trainings = [c for c in node.called if c.process_label == "train"]
    assert len(trainings) == 2, f"expected the killed training and its re-run: {describe(node)}"
    assert node.outputs.representatives.count == 3
    models = node.outputs.models
    assert [models[k].steps for k in models] == [300]


@pytest.mark.slow
def test_worker_killed_in_training_leaves_no_process_running(killed_in_training):
    node, first_training = killed_in_training
    first_training = orm.load_node(first_training.pk)
    stuck = [describe(c) for c in node.called_descendants if not c.is_terminated]
    assert not stuck, f"process nodes of the chain left non-terminal by the killed worker: {stuck}"
    assert first_training.is_terminated
