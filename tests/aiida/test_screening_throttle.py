"""The screening's throttle (at most N relaxations in flight) and its skip-if-done on a second launch."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from ase.build import molecule
from test_screening import QUICK, TINY, summary, water_like_training

from aiida_physgen.launch import screening_builder
from aiida_physgen.workflows.relaxation_reuse import RELAXATION_KEY, finished_relaxation, relaxation_key


def _structure(name="H2O", shift=0.0):
    atoms = molecule(name)
    atoms.center(vacuum=3.0)
    atoms.positions[0, 0] += shift
    return orm.StructureData(ase=atoms).store()


def test_relaxation_key_follows_content_and_settings(gpaw_code):
    first, again, moved = _structure(), _structure(), _structure(shift=0.1)
    key = relaxation_key(first, "gpaw", gpaw_code, "fast", {"vacuum": 2.0}, True)
    assert relaxation_key(again, "gpaw", gpaw_code, "fast", {"vacuum": 2.0}, True) == key  # another node, same content
    assert relaxation_key(moved, "gpaw", gpaw_code, "fast", {"vacuum": 2.0}, True) != key
    assert relaxation_key(first, "gpaw", gpaw_code, "balanced", {"vacuum": 2.0}, True) != key
    assert relaxation_key(first, "gpaw", gpaw_code, "fast", {"vacuum": 3.0}, True) != key
    assert relaxation_key(first, "gpaw", gpaw_code, "fast", {"vacuum": 2.0}, False) != key
    assert relaxation_key(first, "vasp", gpaw_code, "fast", {"vacuum": 2.0}, True) != key


def _process_with_key(key: str, exit_status: int | None, state: str = "finished") -> orm.WorkflowNode:
    from plumpy import ProcessState

    node = orm.WorkflowNode()
    node.set_process_state(ProcessState(state))
    if exit_status is not None:
        node.set_exit_status(exit_status)
    node.store()
    node.base.extras.set(RELAXATION_KEY, key)
    return node


def test_only_a_relaxation_that_finished_ok_is_reused():
    assert finished_relaxation("no-such-key") is None
    _process_with_key("k-failed", 402)
    _process_with_key("k-running", None, "running")
    _process_with_key("k-excepted", None, "excepted")
    assert finished_relaxation("k-failed") is None
    assert finished_relaxation("k-running") is None
    assert finished_relaxation("k-excepted") is None
    old = _process_with_key("k-ok", 0)
    new = _process_with_key("k-ok", 0)
    _process_with_key("k-ok", 300)
    assert finished_relaxation("k-ok").pk == new.pk != old.pk  # the newest good one


def test_a_limit_below_one_is_refused_at_launch(gpaw_code):
    builder = screening_builder(
        water_like_training(),
        "H2O",
        box=5.0,
        code=gpaw_code,
        seeds=[0],
        settings=TINY,
        count=8,
        n_clusters=2,
        n_components=2,
        relax_overrides=QUICK,
        funnel=False,
        max_concurrent_relaxations=0,
    )
    with pytest.raises(ValueError, match="max_concurrent_relaxations: got 0, expected a positive number"):
        run_get_node(builder)


def test_the_default_limit_follows_the_computer(gpaw_code, aiida_computer):
    """No limit given: as many relaxations as the computer has cores on localhost (each relaxation takes one),
    50 on a computer whose scheduler queues the jobs."""
    import os

    from aiida_physgen.workflows.relax_set import SCHEDULED_CONCURRENCY, default_concurrency

    spec = WorkflowFactory("physgen.screening").spec()
    assert not spec.inputs["max_concurrent_relaxations"].required
    assert spec.inputs["reuse_relaxations"].default().value is True
    assert default_concurrency(gpaw_code) == len(os.sched_getaffinity(0))  # localhost: its cores
    workstation = aiida_computer(
        label="workstation", hostname="ws", transport_type="core.ssh", default_mpiprocs_per_machine=16
    )
    assert (
        default_concurrency(orm.InstalledCode(computer=workstation, filepath_executable="/usr/bin/python3", label="py"))
        == 16
    )
    cluster = aiida_computer(
        label="cluster-with-slurm", hostname="cluster", scheduler_type="core.slurm", transport_type="core.ssh"
    )
    code = orm.InstalledCode(computer=cluster, filepath_executable="/usr/bin/python3", label="py")
    assert default_concurrency(code) == SCHEDULED_CONCURRENCY == 50


def _relaxations(node) -> list:
    return sorted((c for c in node.called_descendants if c.process_label == "GpawBaseWorkChain"), key=lambda c: c.ctime)


def _relax_set_logs(node) -> str:
    (relax_set,) = [c for c in node.called if c.process_label == "RelaxSetWorkChain"]
    return " ".join(log.message for log in orm.Log.collection.get_logs_for(relax_set))


@pytest.mark.slow
def test_one_in_flight_then_a_second_launch_reuses_every_relaxation(gpaw_code):
    def builder(**extra):
        return screening_builder(
            water_like_training(),
            "H2O",
            box=5.0,
            code=gpaw_code,
            seeds=[0],
            settings=TINY,
            count=8,
            n_clusters=2,
            n_components=2,
            relax_overrides=QUICK,
            funnel=False,
            generation_seed=7,
            **extra,
        )

    _, first = run_get_node(builder(max_concurrent_relaxations=1))
    assert first.is_finished_ok, (first.exit_status, first.exit_message)
    relaxations = _relaxations(first)
    assert len(relaxations) == 2
    # one in flight: the second relaxation was created only once the first had terminated
    assert relaxations[1].ctime >= relaxations[0].mtime
    # submitted one at a time, the molecules still share the box made for the whole set (comparable energies)
    cells = {
        tuple(np.round(c.inputs.structure.cell, 6).ravel())
        for c in first.called_descendants
        if c.process_label == "GpawCalculation"
    }
    assert len(cells) == 1, cells
    assert all(r.base.extras.get(RELAXATION_KEY) for r in relaxations)
    assert "1 gpaw relaxation(s) in flight (at most 1), 1 waiting" in _relax_set_logs(first)

    # the same screening again (a re-run generation makes new nodes with the same content): nothing to relax
    _, second = run_get_node(builder())
    assert second.is_finished_ok, (second.exit_status, second.exit_message)
    assert _relaxations(second) == []
    assert summary(second) == summary(first)
    reused = {second.outputs.minima[name].base.extras.get("relaxation_pk") for name in second.outputs.minima}
    assert reused <= {r.pk for r in relaxations}
    logs = _relax_set_logs(second)
    assert "reusing 2 finished relaxation(s)" in logs and "0 run here, 2 reused" in logs
