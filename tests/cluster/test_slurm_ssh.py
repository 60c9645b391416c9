"""The plugin's jobs on a real scheduler over a real transport: SLURM on this machine, reached by SSH.

* a GPAW relaxation (``GpawBaseWorkChain`` → ``GpawCalculation``) of H2,
* a training job (``physgen.train.job``) of a few steps,
* a job the node cannot hold, and a ``scancel``led one.

A screening whose relaxations go to the cluster runs under the daemon in ``test_slurm_daemon.py``.

Resources, walltime, memory and partition are the calculations' ``metadata.options`` as a cluster user sets
them; the computer adds its ``prepend_text`` (one line naming the SLURM allocation, read back from the
scheduler's stdout), the codes theirs. Everything runs in this process (``run_get_node``), no daemon.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.schedulers.datastructures import JobState
from tiny_inputs import QUICK, TINY, water_set

from aiida_physgen.calculations.gpaw import GpawCalculation
from aiida_physgen.calculations.training import TrainingCalculation, max_seconds_for, threads_for
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "references"))
import gpaw_energies  # noqa: E402

pytestmark = pytest.mark.slow

COMPUTER = "localhost-slurm"  # made by the slurm_computer fixture (conftest.py)

#: what a user asks of the cluster for one small job: one core, five minutes, 2 GB, the `debug` partition
ONE_CORE = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
OPTIONS = {"resources": ONE_CORE, "max_wallclock_seconds": 300, "max_memory_kb": 2 * 1024 * 1024, "queue_name": "debug"}
#: the submit-script lines these options give with AiiDA's SLURM plugin
OPTION_LINES = [
    "#SBATCH --nodes=1",
    "#SBATCH --ntasks-per-node=1",
    "#SBATCH --time=00:05:00",
    "#SBATCH --mem=2048",
    "#SBATCH --partition=debug",
]


def h2() -> orm.StructureData:
    from ase import Atoms

    return orm.StructureData(ase=Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.8]], cell=[5.0] * 3, pbc=False))


def submit_script(job) -> str:
    return job.base.repository.get_object_content("_aiidasubmit.sh", mode="r")


def scheduler_stdout(job) -> str:
    return job.outputs.retrieved.base.repository.get_object_content("_scheduler-stdout.txt", mode="r")


def assert_ran_on_slurm(job, node_name: str, cpus: int = 1, finished_ok: bool = True) -> str:
    """``job`` ran as a SLURM job of the cluster computer, in partition debug, and says so itself (and finished
    OK, unless ``finished_ok`` is false); its job id."""
    if finished_ok:
        assert job.is_finished_ok, (job.process_label, job.exit_status, job.exit_message)
    assert job.computer.label == COMPUTER and job.computer.scheduler_type == "core.slurm"
    assert job.computer.transport_type == "core.ssh"
    job_id = job.get_job_id()
    assert job_id is not None and job_id.isdigit(), job_id
    assert job.get_scheduler_state() == JobState.DONE
    info = job.get_last_job_info()
    assert info is not None and str(info.job_id) == job_id and info.queue_name == "debug"
    # the computer's prepend_text ran inside the allocation: SLURM's own variables name this very job
    line = f"physgen: SLURM job {job_id} on {node_name}, partition debug, {cpus} CPU(s)"
    assert line in scheduler_stdout(job), scheduler_stdout(job)
    return job_id


def test_gpaw_relaxation_runs_through_slurm_over_ssh(slurm_gpaw_code, node_name):
    builder = GpawBaseWorkChain.get_builder_from_protocol(
        slurm_gpaw_code, h2(), protocol="fast", overrides=QUICK, options=OPTIONS
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    (job,) = [c for c in node.called if c.process_label == "GpawCalculation"]
    assert_ran_on_slurm(job, node_name)

    script = submit_script(job)
    for line in OPTION_LINES:
        assert line in script.splitlines(), (line, script)
    # the computer's prepend_text, then the code's, then the command: in that order
    echo, threads, command = (
        script.index(s) for s in ('echo "physgen: SLURM job', "export OMP_NUM_THREADS=1", "'gpaw_driver.py'")
    )
    assert echo < threads < command

    parameters = results["output_parameters"].get_dict()
    assert parameters["relax_converged"] is True
    assert np.isfinite(parameters["energy"]) and parameters["energy"] < 0
    assert parameters["energy_per_atom"] == pytest.approx(parameters["energy"] / 2)
    distance = results["output_structure"].get_ase().get_distance(0, 1)
    assert 0.6 < distance < 0.9
    assert results["output_parameters"].uuid == job.outputs.output_parameters.uuid
    assert node.outputs.remote_folder.computer.label == COMPUTER


def test_training_job_runs_through_slurm_over_ssh(slurm_training_code, node_name):
    # threads come from the allocation: one core per process here (the tests keep torch single-threaded)
    resources = {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 1}
    options = {**OPTIONS, "resources": resources, "max_wallclock_seconds": 600}
    steps = 3
    inputs = {
        "code": slurm_training_code,
        "training": water_set(),
        "family": orm.Str("logan"),
        "target": orm.Dict({"composition": "H2O", "cell": (5.0 * np.eye(3)).tolist(), "pbc": [False] * 3}),
        "seeds": orm.List([0]),
        "settings": orm.Dict({**TINY, "loop": {**TINY["loop"], "steps": steps}}),
        "metadata": {"options": options},
    }
    outputs, job = run_get_node(TrainingCalculation, **inputs)
    assert_ran_on_slurm(job, node_name, cpus=1)

    assert sorted(outputs["models"]) == ["model_00"]
    model = outputs["models"]["model_00"]
    assert model.is_stored and model.steps == steps and model.family == "logan" and model.verify_checksum()
    assert model.get_loss_curves()["steps"][-1] == steps

    script = submit_script(job)
    assert "#SBATCH --cpus-per-task=1" in script.splitlines()
    assert "#SBATCH --time=00:10:00" in script.splitlines()
    assert f"export OMP_NUM_THREADS={threads_for(resources)}" in script
    assert f"'--max-seconds' '{max_seconds_for(600)}'" in script
    progress = job.outputs.retrieved.base.repository.get_object_content("progress.log", mode="r")
    assert "finished: 1 model(s)" in progress


@pytest.fixture
def fail_fast(aiida_config, aiida_profile):
    """Transport tasks tried once, 1 s apart (AiiDA: 5 attempts from 20 s on, 5 minutes before a pause)."""
    names = ("transport.task_maximum_attempts", "transport.task_retry_initial_interval")
    before = {name: aiida_config.get_option(name, scope=aiida_profile.name, default=False) for name in names}
    for name in names:
        aiida_config.set_option(name, 1, scope=aiida_profile.name)
    yield
    for name, value in before.items():
        if value is None:
            aiida_config.unset_option(name, scope=aiida_profile.name)
        else:
            aiida_config.set_option(name, value, scope=aiida_profile.name)


def test_a_job_the_node_cannot_hold_pauses_with_sbatchs_reason(slurm_gpaw_code, node_name, fail_fast):
    """More CPUs than the node has: sbatch refuses the job. AiiDA ends no CalcJob on a refused submission
    (except an invalid account, 131): it retries, then pauses the process, and says why. Not a hang."""
    import asyncio
    import subprocess

    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    from aiida_physgen.calculations.gpaw import GpawCalculation

    sinfo = subprocess.run(["sinfo", "-h", "-N", "-n", node_name, "-o", "%c"], capture_output=True, text=True)
    cpus = int(sinfo.stdout.split()[0])
    builder = GpawCalculation.get_builder()
    builder.code = slurm_gpaw_code
    builder.structure = h2()
    builder.parameters = orm.Dict({"mode": "lcao", "basis": "sz(dzp)", "h": 0.3, "calculation": "static"})
    builder.metadata.options = {**OPTIONS, "resources": {**ONE_CORE, "num_cores_per_mpiproc": 8 * cpus}}

    runner = get_manager().get_runner()
    process = instantiate_process(runner, builder)
    node = process.node
    task = runner.loop.create_task(process.step_until_terminated())

    async def until_paused(timeout: float = 60.0):
        deadline = runner.loop.time() + timeout
        while not (process.paused or process.has_terminated()) and runner.loop.time() < deadline:
            await asyncio.sleep(0.1)

    runner.loop.run_until_complete(until_paused())
    try:
        assert process.paused and not node.is_terminated, (node.process_state, node.process_status)
        assert node.get_job_id() is None
        assert "submit_calculation failed" in node.process_status, node.process_status
        logs = "\n".join(log.message for log in orm.Log.collection.get_logs_for(node))
        # sbatch's own words: "Batch job submission failed: More processors requested than permitted"
        assert "Batch job submission failed" in logs and "processors" in logs, logs
    finally:
        if node.get_job_id():  # accepted after all: never leave a job pending on the node
            subprocess.run(["scancel", node.get_job_id()], check=False)
        # a paused process waits to be played: killed for good, its stepping task is then cancelled
        process.kill("the test is done with it", force_kill=True)
        task.cancel()
        runner.loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    assert node.is_killed


class Scanceller(threading.Thread):
    """``scancel`` the SLURM job of the first GPAW driver running under ``root`` (this test's computer only) once
    it has recorded ``after_frames`` steps: what a user or an admin does to a running job."""

    def __init__(self, root: str, after_frames: int = 2):
        super().__init__(daemon=True)
        self.root = str(Path(root).resolve())
        self.after_frames = after_frames
        self.cancelled: list[str] = []
        self.stop = threading.Event()

    def run(self):
        import psutil

        while not self.stop.is_set() and not self.cancelled:
            for process in psutil.process_iter(["pid", "cmdline"]):
                try:
                    if "gpaw_driver.py" not in (process.info["cmdline"] or []):
                        continue
                    cwd = process.cwd()
                    trajectory = Path(cwd) / "trajectory.extxyz"
                    if not cwd.startswith(self.root) or not trajectory.exists():
                        continue
                    if trajectory.read_text().count("Lattice=") >= self.after_frames:
                        job_id = process.environ()["SLURM_JOB_ID"]
                        subprocess.run(["scancel", job_id], check=True)
                        self.cancelled.append(job_id)
                        break
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, KeyError):
                    continue
            time.sleep(0.05)


def test_a_scancelled_gpaw_job_is_restarted_from_its_last_geometry(slurm_gpaw_code, node_name):
    """A running relaxation cancelled through the scheduler (scancel) is read as interrupted (330) and the
    restart chain resubmits it from the last geometry it recorded; the second job finishes the relaxation."""
    structure, settings = gpaw_energies.CASES["si2_pw_relax"]
    inputs = {
        "gpaw": {
            "code": slurm_gpaw_code,
            "structure": orm.StructureData(ase=structure()),
            "parameters": orm.Dict({**settings, "optimizer": "FIRE", "fmax": 0.01, "max_steps": 200}),
            "metadata": {"options": OPTIONS},
        }
    }
    killer = Scanceller(slurm_gpaw_code.computer.get_workdir())
    killer.start()
    try:
        results, node = run_get_node(GpawBaseWorkChain, **inputs)
    finally:
        killer.stop.set()
        killer.join(timeout=10)
    assert len(killer.cancelled) == 1, "the relaxation finished before it could be cancelled"
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    jobs = sorted((c for c in node.called if isinstance(c, orm.CalcJobNode)), key=lambda n: n.ctime)
    assert [job.exit_status for job in jobs] == [GpawCalculation.exit_codes.ERROR_INTERRUPTED.status, 0]
    first, second = jobs
    assert first.get_job_id() == killer.cancelled[0]
    assert first.outputs.output_parameters["status"] == "interrupted"
    assert second.inputs.structure.uuid == first.outputs.output_structure.uuid  # from where it was stopped
    assert_ran_on_slurm(second, node_name)
    assert results["output_parameters"]["relax_converged"] is True
