"""A screening submitted to a real daemon whose GPAW relaxations run as SLURM jobs over SSH (issue 26).

``test_slurm_ssh.py`` runs its screening in this process (``run``); here it is ``submit``ted and a one-worker
daemon on the test profile (the helpers of ``tests/reliability``) does everything: the training and selection in
the worker, each relaxation as a SLURM job that the worker uploads, submits with ``sbatch``, polls with ``squeue``
and retrieves, all through its own SSH connection to the cluster. The test only waits for the database to say the
screening is done.
"""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import submit
from daemon_tools import assert_nothing_left_running, describe, set_workers, stop_daemon, wait_terminated
from test_slurm_ssh import COMPUTER, OPTIONS, assert_ran_on_slurm, submit_script
from tiny_inputs import QUICK, tiny_screening

from aiida_physgen.workflows.protocols import recursive_merge

pytestmark = pytest.mark.slow


@pytest.fixture
def one_worker_daemon(daemon_client):
    """The daemon of the test profile with one worker, stopped afterwards."""
    set_workers(daemon_client, 1)
    try:
        yield daemon_client
    finally:
        stop_daemon(daemon_client)


def test_a_screening_submitted_to_the_daemon_relaxes_on_slurm(slurm_gpaw_code, node_name, one_worker_daemon):
    builder = tiny_screening(slurm_gpaw_code)
    builder.relax_overrides = orm.Dict(recursive_merge(QUICK, {"gpaw": {"metadata": {"options": OPTIONS}}}))
    node = submit(builder)
    wait_terminated([node], 600, one_worker_daemon)
    assert node.is_finished_ok, describe(node)
    assert_nothing_left_running(node, one_worker_daemon)
    assert node.outputs.report["n_relaxed"] == 3

    relaxations = [c for c in node.called_descendants if c.process_label == "GpawBaseWorkChain"]
    assert len(relaxations) == 3 and all(r.is_finished_ok for r in relaxations), describe(node)
    jobs = [c for c in node.called_descendants if c.process_label == "GpawCalculation"]
    job_ids = {assert_ran_on_slurm(job, node_name, finished_ok=False) for job in jobs}
    assert len(jobs) >= 3 and len(job_ids) == len(jobs), job_ids
    for relaxation in relaxations:
        assert_ran_on_slurm(max(relaxation.called, key=lambda n: n.ctime), node_name)
    for job in jobs:
        assert "#SBATCH --time=00:05:00" in submit_script(job).splitlines()
    # only the relaxations went to the cluster; the training ran in the daemon worker
    elsewhere = [c for c in node.called_descendants if isinstance(c, orm.CalcJobNode) and c.computer.label != COMPUTER]
    assert not elsewhere, [(c.process_label, c.computer.label) for c in elsewhere]
    assert set(node.outputs.minima) == {row["name"] for row in node.outputs.report["rows"]}
