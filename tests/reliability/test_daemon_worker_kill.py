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

from daemon_tools import assert_nothing_left_running, describe, kill_worker, set_workers, wait_terminated, wait_until, worker_pids
from tiny_inputs import TINY, tiny_generation, tiny_screening, water_set


def minima_summary(node) -> list[tuple]:
    """What a screening found: per basin its formula, multiplicity and energy (meV precision)."""
    rows = node.outputs.report["rows"]
    formulae = {name: node.outputs.minima[name].get_formula() for name in node.outputs.minima}
    return sorted((formulae.get(row["name"]), row["count"], round(row["energy"], 3)) for row in rows)


def relaxations_under_way(node, number: int):
    """The GPAW calculations below ``node`` once ``number`` of them run under the scheduler, else None."""
    jobs = [c for c in node.called_descendants if c.process_label == "GpawCalculation"]
    if len(jobs) >= number and all(job.get_job_id() is not None and not job.is_terminated for job in jobs):
        return jobs
    return None


def running_descendant(node, label: str):
    """The first non-terminated descendant process of ``node`` with this process label, if any."""
    return next((c for c in node.called_descendants if c.process_label == label and not c.is_terminated), None)


@pytest.mark.slow
def test_worker_killed_mid_screening_gives_the_same_minima(gpaw_code, daemon_client):
    _, reference = run_get_node(tiny_screening(gpaw_code))
    assert reference.is_finished_ok, describe(reference)

    set_workers(daemon_client, 1)
    node = submit(tiny_screening(gpaw_code))
    # mid-screening: every relaxation submitted to the scheduler and running (a kill while the chains
    # are still submitting their jobs is a different, racy case: see docs/reliability.md)
    jobs = wait_until(lambda: relaxations_under_way(node, 3), 300,
                      "the 3 GPAW relaxations of the screening to be running", daemon_client, interval=0.2)
    [worker] = worker_pids(daemon_client)
    kill_worker(daemon_client, worker)
    assert not node.is_terminated, "the screening finished before the worker was killed"
    assert not all(job.is_terminated for job in jobs), "the relaxations finished before the worker was killed"
    wait_terminated([node], 420, daemon_client)

    assert node.is_finished_ok, describe(node)
    assert minima_summary(node) == minima_summary(reference)
    assert node.outputs.report["n_relaxed"] == reference.outputs.report["n_relaxed"] == 3
    assert_nothing_left_running(node, daemon_client)


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
    """Fixed by aiida_physgen.workflows.orphans (the chain ends the calcfunction the dead worker left);
    without it the first ``train`` node stays 'Running' for ever."""
    node, first_training = killed_in_training
    assert_nothing_left_running(node)
    first_training = orm.load_node(first_training.pk)
    assert first_training.is_excepted and "daemon worker" in (first_training.exception or ""), describe(node)
    # the models come from the re-run, not from the dead one
    assert not first_training.base.links.get_outgoing().all()
