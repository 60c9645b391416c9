"""Jobs that hit their SLURM walltime, and the restart chains that resume them (issue 26).

SLURM's shortest walltime is one minute (``--time`` counts whole minutes; AiiDA writes ``--time=00:01:00`` for
``max_wallclock_seconds=60``). slurmctld looks for jobs over their limit every 30 s, so a one-minute job is
stopped between 60 and about 90 s after it started (SIGTERM, then SIGKILL ``KillWait``, 5 s, later) and its
scheduler stderr says ``CANCELLED AT ... DUE TO TIME LIMIT``. Both jobs here run at the same time (one core
each on the two-core node) so that the minute or more of waiting is paid once:

* a GPAW relaxation (``GpawBaseWorkChain``) that needs more than 90 s is killed by SLURM mid-way; the parser
  reads what the killed driver left (330 ``ERROR_INTERRUPTED``, which takes the place of AiiDA's 120
  ``ERROR_SCHEDULER_OUT_OF_WALLTIME``) and the chain resumes from the last geometry;
* a training job (``TrainingBaseWorkChain``) is told ``--max-seconds 54`` (walltime minus 10 %, at least 5 s)
  and stops itself with a checkpoint (350 ``ERROR_INTERRUPTED``) a few seconds before SLURM would send SIGTERM
  (which it also answers with a checkpoint); the next job resumes from that checkpoint.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from test_slurm_ssh import OPTIONS, assert_ran_on_slurm, submit_script
from tiny_inputs import TINY, water_set

from aiida_physgen.calculations.gpaw import GpawCalculation
from aiida_physgen.calculations.training import TrainingCalculation, max_seconds_for
from aiida_physgen.ml.progress import read_progress_log
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain
from aiida_physgen.workflows.training_base import TrainingBaseWorkChain

pytestmark = pytest.mark.slow

#: SLURM's shortest walltime: one minute
WALLTIME = 60
WALLTIME_LINE = "#SBATCH --time=00:01:00"
#: what SLURM writes to the job's stderr when it kills it at its walltime
TIME_LIMIT = "DUE TO TIME LIMIT"
#: training steps: about 70 s of training on one idle core here (55 steps/s), more than the 54 s a one-minute job
#: may train, so the first job is always stopped; the next one trains the rest (a loaded machine needs a third)
TRAINING_STEPS = 4000


def butane() -> orm.StructureData:
    """trans-butane, rattled: a 14-atom relaxation of about 100 steps of FIRE (LCAO, h 0.2 Å): 100 s or more on
    one core, so a one-minute job is always killed before it converges, and the rest takes under a minute."""
    from ase.build import molecule

    atoms = molecule("trans-butane")
    atoms.center(vacuum=2.5)
    atoms.rattle(0.1, seed=1)
    return orm.StructureData(ase=atoms)


def gpaw_builder(code):
    builder = GpawBaseWorkChain.get_builder()
    builder.gpaw.code = code
    builder.gpaw.structure = butane()
    builder.gpaw.parameters = orm.Dict(
        {
            "calculation": "relax",
            "mode": "lcao",
            "basis": "sz(dzp)",
            "h": 0.2,
            "optimizer": "FIRE",
            "fmax": 0.01,
            "max_steps": 500,
        }
    )
    builder.gpaw.metadata.options = {**OPTIONS, "max_wallclock_seconds": WALLTIME}
    return builder


def training_builder(code):
    builder = TrainingBaseWorkChain.get_builder()
    builder.train = {
        "code": code,
        "training": water_set(),
        "family": orm.Str("logan"),
        "target": orm.Dict({"composition": "H2O", "cell": (5.0 * np.eye(3)).tolist(), "pbc": [False] * 3}),
        "seeds": orm.List([0]),
        "settings": orm.Dict({**TINY, "loop": {**TINY["loop"], "steps": TRAINING_STEPS}}),
        "metadata": {
            "options": {
                **OPTIONS,
                "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 1},
                "max_wallclock_seconds": WALLTIME,
            }
        },
    }
    return builder


def run_together(builders, timeout: float):
    """Run the processes of ``builders`` side by side in this interpreter (one event loop, no daemon); their
    nodes. On a timeout the SLURM jobs still queued or running are cancelled."""
    runner = get_manager().get_runner()
    processes = [instantiate_process(runner, builder) for builder in builders]
    tasks = [runner.loop.create_task(process.step_until_terminated()) for process in processes]
    try:
        runner.loop.run_until_complete(asyncio.wait_for(asyncio.gather(*tasks), timeout))
    except asyncio.TimeoutError:
        for process in processes:
            for job in process.node.called_descendants:
                if isinstance(job, orm.CalcJobNode) and not job.is_terminated and job.get_job_id():
                    subprocess.run(["scancel", job.get_job_id()], check=False)
        states = [process.node.process_state for process in processes]
        pytest.fail(f"the walltime chains did not finish in {timeout:.0f} s: {states}")
    return [process.node for process in processes]


@pytest.fixture(scope="module")
def walltime_chains(slurm_gpaw_code, slurm_training_code):
    """The GPAW and the training restart chains, each with a one-minute walltime, run together."""
    started = time.monotonic()
    gpaw, training = run_together([gpaw_builder(slurm_gpaw_code), training_builder(slurm_training_code)], 600)
    return {"gpaw": gpaw, "training": training, "seconds": time.monotonic() - started}


def jobs_of(node) -> list:
    return sorted((c for c in node.called if isinstance(c, orm.CalcJobNode)), key=lambda n: n.ctime)


def logs_of(node) -> str:
    return "\n".join(log.message for log in orm.Log.collection.get_logs_for(node))


def test_a_gpaw_job_killed_at_its_walltime_is_resumed_from_its_last_geometry(walltime_chains, node_name):
    node = walltime_chains["gpaw"]
    assert node.is_finished_ok, (node.exit_status, node.exit_message, logs_of(node))
    jobs = jobs_of(node)
    interrupted = GpawCalculation.exit_codes.ERROR_INTERRUPTED.status
    # killed once, or (on a loaded machine) twice; the last job finished the relaxation
    assert 2 <= len(jobs) <= 3 and [job.exit_status for job in jobs] == [interrupted] * (len(jobs) - 1) + [0]
    for job in jobs:
        assert WALLTIME_LINE in submit_script(job).splitlines()
    first, second = jobs[:2]
    assert_ran_on_slurm(first, node_name, finished_ok=False)
    # SLURM killed it at its walltime, and AiiDA's SLURM plugin saw so (120) before the parser said more (330)
    stderr = first.outputs.retrieved.base.repository.get_object_content("_scheduler-stderr.txt", mode="r")
    assert TIME_LIMIT in stderr, stderr
    assert "scheduler parser returned exit code<120>" in logs_of(first), logs_of(first)
    assert first.outputs.output_parameters["status"] == "interrupted"
    assert first.outputs.output_parameters["relax_steps"] >= 1
    assert second.inputs.structure.uuid == first.outputs.output_structure.uuid  # from where it was killed
    assert_ran_on_slurm(jobs[-1], node_name)
    parameters = node.outputs.output_parameters
    assert parameters["relax_converged"] is True and parameters["max_force"] < 0.01
    assert np.isfinite(parameters["energy"])


def test_a_training_job_at_its_walltime_is_resumed_from_its_checkpoint(walltime_chains, node_name):
    node = walltime_chains["training"]
    assert node.is_finished_ok, (node.exit_status, node.exit_message, logs_of(node))
    jobs = jobs_of(node)
    interrupted = TrainingCalculation.exit_codes.ERROR_INTERRUPTED.status
    assert len(jobs) >= 2 and [job.exit_status for job in jobs] == [interrupted] * (len(jobs) - 1) + [0]
    max_seconds = max_seconds_for(WALLTIME)
    assert max_seconds == 54
    done = []
    for job in jobs:
        script = submit_script(job)
        assert WALLTIME_LINE in script.splitlines() and f"'--max-seconds' '{max_seconds}'" in script
        assert_ran_on_slurm(job, node_name, finished_ok=job is jobs[-1])
        status = job.outputs.retrieved.base.repository.get_object_content("status.json", mode="r")
        progress = read_progress_log(job.outputs.retrieved.base.repository.get_object_content("progress.log", mode="r"))
        done.append(progress["done"])
        if job is not jobs[-1]:
            # stopped by its --max-seconds a few seconds before the walltime, or by SLURM's SIGTERM at the
            # walltime: a checkpoint either way
            assert f"--max-seconds {max_seconds} reached" in status or "SIGTERM" in status, status
    # every job got further than the one before, each resumed from the checkpoint of the one before
    assert 0 < done[0] < TRAINING_STEPS and done == sorted(set(done)) and done[-1] == TRAINING_STEPS, done
    for before, after in zip(jobs, jobs[1:]):
        assert after.inputs.parent_folder.uuid == before.outputs.remote_folder.uuid
    model = node.outputs.models["model_00"]
    assert model.steps == TRAINING_STEPS and model.verify_checksum()
    assert model.get_loss_curves()["steps"][-1] == TRAINING_STEPS
