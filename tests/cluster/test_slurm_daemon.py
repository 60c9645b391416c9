"""Under a daemon, on SLURM over SSH (issue 26): jobs that hit their walltime and the restart chains that resume
them, and a screening whose relaxations are SLURM jobs.

A one-worker daemon on the test profile (the helpers of ``tests/reliability``) runs everything, submitted with
``aiida.engine.submit``; the test only waits for the database to say it is done (``test_slurm_ssh.py`` runs its
processes in the test's own interpreter, with ``run``).

SLURM's shortest walltime is one minute (``--time`` counts whole minutes; AiiDA writes ``--time=00:01:00`` for
``max_wallclock_seconds=60``). slurmctld looks for jobs over their limit every 30 s, so a one-minute job is ended
60 to about 90 s after it started: SIGCONT and SIGTERM to every process of the job, SIGKILL ``KillWait`` (5 s)
later, and ``CANCELLED AT ... DUE TO TIME LIMIT`` in the job's stderr, from which AiiDA's SLURM plugin reads
120 ``ERROR_SCHEDULER_OUT_OF_WALLTIME``; the calculation's parser then says more. The first job of each chain
stalls after a few steps (the test SIGSTOPs it, as a hung file system or a dead-locked library would) and sits in
its allocation, using no CPU, until SLURM ends it. Stalled, not long: with 30 s between SLURM's checks a job sure
to outlast its minute needs over 90 s of a core, and on a loaded machine (a third of the speed here) four or five
one-minute jobs for one relaxation.

* GPAW (``GpawBaseWorkChain``): the driver dies on SIGTERM; the parser reads the steps it recorded (330
  ``ERROR_INTERRUPTED`` in place of 120) and the chain resumes from the last geometry;
* training (``TrainingBaseWorkChain``): ``aiida-physgen train`` answers SIGTERM with a checkpoint and exit 75
  within ``KillWait`` (350 ``ERROR_INTERRUPTED``, reason ``SIGTERM``) and the next job resumes from it. A training
  that does not stall stops itself before SLURM would, at ``--max-seconds 54`` (walltime minus 10 %), also 350:
  tests/aiida/test_training_job.py checks that on the local computer;
* a screening (``tiny_screening``): trained and selected in the worker while the stalled jobs hold both cores of
  the node; its three relaxations queue behind them and run as SLURM jobs once they are gone.

The screening is submitted once both first jobs stalled, so the minute or more of waiting for SLURM is paid once.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import submit
from daemon_tools import (
    assert_nothing_left_running,
    describe,
    set_workers,
    stop_daemon,
    wait_terminated,
    wait_until,
)
from test_slurm_ssh import COMPUTER, OPTIONS, assert_ran_on_slurm, submit_script
from tiny_inputs import QUICK, TINY, tiny_screening, water_set

from aiida_physgen.calculations.gpaw import GpawCalculation
from aiida_physgen.calculations.training import TrainingCalculation, max_seconds_for
from aiida_physgen.ml.progress import read_progress_log
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain
from aiida_physgen.workflows.protocols import recursive_merge
from aiida_physgen.workflows.training_base import TrainingBaseWorkChain

pytestmark = pytest.mark.slow

#: SLURM's shortest walltime: one minute
WALLTIME = 60
WALLTIME_LINE = "#SBATCH --time=00:01:00"
#: what SLURM writes to the job's stderr when it kills it at its walltime
TIME_LIMIT = "DUE TO TIME LIMIT"
#: training steps: the first job stalls at its first checkpoint (step 100), the second trains the other 200 in
#: 4 s (20 s on a machine loaded to a fifth of its speed, still well within its minute)
TRAINING_STEPS = 300
#: set in the jobs of the two walltime chains only: the staller leaves every other job alone
STALL_MARK = "PHYSGEN_TEST_STALL"
#: scheduler options of the walltime chains' jobs
WALLTIME_OPTIONS = {**OPTIONS, "max_wallclock_seconds": WALLTIME, "environment_variables": {STALL_MARK: "1"}}


def water() -> orm.StructureData:
    """A rattled water molecule: about 65 steps of FIRE to 0.01 eV/Å in LCAO sz(dzp), h 0.3 Å, a few seconds."""
    from ase.build import molecule

    atoms = molecule("H2O")
    atoms.center(vacuum=2.5)
    atoms.rattle(0.05, seed=1)
    return orm.StructureData(ase=atoms)


def gpaw_stepped(cmdline: list[str], workdir: Path) -> bool:
    """A GPAW driver that has recorded three steps."""
    trajectory = workdir / "trajectory.extxyz"
    return "gpaw_driver.py" in cmdline and trajectory.exists() and trajectory.read_text().count("Lattice=") >= 3


def training_checkpointed(cmdline: list[str], workdir: Path) -> bool:
    """An ``aiida-physgen train`` that has written its first checkpoint."""
    progress = workdir / "checkpoints" / "progress.log"
    return (
        "aiida_physgen" in cmdline and "train" in cmdline and progress.exists() and "checkpoint" in progress.read_text()
    )


class Staller(threading.Thread):
    """SIGSTOP the first process of a job marked ``STALL_MARK`` running under ``root`` (this test's computer only)
    of which each of ``conditions`` holds, once (``condition(cmdline, working directory)``): its SLURM job then sits
    in its allocation, using no CPU, until SLURM ends it. ``stalled`` maps each condition's name to the SLURM job
    id of the process stopped."""

    def __init__(self, root: str, *conditions):
        super().__init__(daemon=True)
        self.root = str(Path(root).resolve())
        self.conditions = list(conditions)
        self.stalled: dict[str, str] = {}
        self.processes = []
        self.stop = threading.Event()

    def run(self):
        import psutil

        while not self.stop.is_set() and len(self.stalled) < len(self.conditions):
            for process in psutil.process_iter(["pid", "cmdline"]):
                try:
                    cmdline = process.info["cmdline"] or []
                    if not any("python" in part for part in cmdline[:1]):
                        continue
                    cwd = process.cwd()
                    if not cwd.startswith(self.root) or process.environ().get(STALL_MARK) != "1":
                        continue
                    for condition in self.conditions:
                        if condition.__name__ not in self.stalled and condition(cmdline, Path(cwd)):
                            job_id = process.environ()["SLURM_JOB_ID"]
                            process.suspend()
                            self.processes.append((job_id, process))
                            self.stalled[condition.__name__] = job_id
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, KeyError):
                    continue
            time.sleep(0.05)

    def release(self):
        """Stop looking; a process still stopped (the test failed before SLURM ended it) is cancelled."""
        import psutil

        self.stop.set()
        self.join(timeout=10)
        for job_id, process in self.processes:
            if process.is_running():
                subprocess.run(["scancel", job_id], check=False)
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()


def gpaw_builder(code):
    builder = GpawBaseWorkChain.get_builder()
    builder.gpaw.code = code
    builder.gpaw.structure = water()
    builder.gpaw.parameters = orm.Dict(
        {
            "calculation": "relax",
            "mode": "lcao",
            "basis": "sz(dzp)",
            "h": 0.3,
            "optimizer": "FIRE",
            "fmax": 0.01,
            "max_steps": 300,
        }
    )
    builder.gpaw.metadata.options = WALLTIME_OPTIONS
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
                **WALLTIME_OPTIONS,
                "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 1},
            }
        },
    }
    return builder


def screening_builder(code):
    builder = tiny_screening(code)
    # scheduler options of every relaxation: the protocol's gpaw.metadata.options, through relax_overrides; room
    # for every candidate to converge in one job (60 steps leave one in three restarting: a SLURM job more)
    overrides = {"gpaw": {"parameters": {"max_steps": 200}, "metadata": {"options": OPTIONS}}}
    builder.relax_overrides = orm.Dict(recursive_merge(QUICK, overrides))
    return builder


@pytest.fixture(scope="module")
def one_worker_daemon(daemon_client):
    """The daemon of the test profile with one worker, stopped afterwards."""
    set_workers(daemon_client, 1)
    try:
        yield daemon_client
    finally:
        stop_daemon(daemon_client)


@pytest.fixture(scope="module")
def submitted(slurm_gpaw_code, slurm_training_code, one_worker_daemon):
    """The two walltime chains and the screening, submitted to the daemon and terminated: the chains first, the
    screening once both their first jobs stalled."""
    staller = Staller(slurm_gpaw_code.computer.get_workdir(), gpaw_stepped, training_checkpointed)
    staller.start()
    nodes = {}
    try:
        nodes["gpaw"] = submit(gpaw_builder(slurm_gpaw_code))
        nodes["training"] = submit(training_builder(slurm_training_code))
        # the screening once both first jobs stall: its training and selection then use the minute they wait
        wait_until(
            lambda: len(staller.stalled) == 2, 180, "the first GPAW and training jobs to stall", one_worker_daemon
        )
        nodes["screening"] = submit(screening_builder(slurm_gpaw_code))
        wait_terminated(nodes.values(), 600, one_worker_daemon)
    finally:
        staller.release()
        for node in nodes.values():  # a failed test leaves no job behind
            for job in node.called_descendants:
                if isinstance(job, orm.CalcJobNode) and not job.is_terminated and job.get_job_id():
                    subprocess.run(["scancel", job.get_job_id()], check=False)
    return {**nodes, "stalled": staller.stalled}


def jobs_of(node) -> list:
    return sorted((c for c in node.called if isinstance(c, orm.CalcJobNode)), key=lambda n: n.ctime)


def describe_jobs(node) -> str:
    """One line per job of a chain: SLURM job id, exit status, the run time squeue last showed, the stop reason."""
    rows = []
    for job in jobs_of(node):
        info = job.get_last_job_info()
        seconds = info.wallclock_time_seconds if info is not None else None
        rows.append(
            f"{job.process_label}<{job.pk}> SLURM job {job.get_job_id()}: exit {job.exit_status}, ran {seconds} s"
        )
    return "\n".join(rows)


def logs_of(node) -> str:
    return "\n".join(log.message for log in orm.Log.collection.get_logs_for(node))


def test_a_gpaw_job_killed_at_its_walltime_is_resumed_from_its_last_geometry(submitted, node_name):
    node = submitted["gpaw"]
    assert node.is_finished_ok, (node.exit_status, node.exit_message, describe_jobs(node), logs_of(node))
    jobs = jobs_of(node)
    # one job stalled and killed at its walltime, the next one finished the relaxation
    interrupted = GpawCalculation.exit_codes.ERROR_INTERRUPTED.status
    assert [job.exit_status for job in jobs] == [interrupted, 0], describe_jobs(node)
    first, second = jobs
    assert first.get_job_id() == submitted["stalled"]["gpaw_stepped"]
    for job in jobs:
        assert WALLTIME_LINE in submit_script(job).splitlines()
    assert_ran_on_slurm(first, node_name, finished_ok=False)
    # SLURM killed it at its walltime, and AiiDA's SLURM plugin saw so (120) before the parser said more (330)
    stderr = first.outputs.retrieved.base.repository.get_object_content("_scheduler-stderr.txt", mode="r")
    assert TIME_LIMIT in stderr, stderr
    assert "scheduler parser returned exit code<120>" in logs_of(first), logs_of(first)
    assert first.outputs.output_parameters["status"] == "interrupted"
    assert first.outputs.output_parameters["trajectory_frames"] >= 2  # recorded before it stalled
    assert second.inputs.structure.uuid == first.outputs.output_structure.uuid  # from where it was killed
    assert_ran_on_slurm(second, node_name)
    parameters = node.outputs.output_parameters
    assert parameters["relax_converged"] is True and parameters["max_force"] < 0.01
    assert np.isfinite(parameters["energy"])


def test_a_training_job_killed_at_its_walltime_is_resumed_from_its_checkpoint(submitted, node_name):
    node = submitted["training"]
    assert node.is_finished_ok, (node.exit_status, node.exit_message, describe_jobs(node), logs_of(node))
    jobs = jobs_of(node)
    interrupted = TrainingCalculation.exit_codes.ERROR_INTERRUPTED.status
    assert [job.exit_status for job in jobs] == [interrupted, 0], describe_jobs(node)
    first, second = jobs
    assert first.get_job_id() == submitted["stalled"]["training_checkpointed"]
    max_seconds = max_seconds_for(WALLTIME)
    for job in jobs:
        script = submit_script(job)
        assert WALLTIME_LINE in script.splitlines() and f"'--max-seconds' '{max_seconds}'" in script
        assert_ran_on_slurm(job, node_name, finished_ok=job is second)
    # SLURM ended it at its walltime (120 first); the command answered SIGTERM with a checkpoint and exit 75 (350)
    stderr = first.outputs.retrieved.base.repository.get_object_content("_scheduler-stderr.txt", mode="r")
    assert TIME_LIMIT in stderr, stderr
    assert "scheduler parser returned exit code<120>" in logs_of(first), logs_of(first)
    status = json.loads(first.outputs.retrieved.base.repository.get_object_content("status.json", mode="r"))
    assert status["status"] == "interrupted" and status["exit_code"] == 75, status
    # SIGCONT and SIGTERM reach it together: the handler sees SIGTERM first, unless the step it was stopped in
    # ends first and finds its --max-seconds (54) long past
    assert status["reason"] in ("SIGTERM", f"--max-seconds {max_seconds} reached"), status
    assert 100 <= status["done"] < TRAINING_STEPS, status
    assert f"({status['reason']})" in first.exit_message and "restartable" in first.exit_message

    # the second job resumed from the first one's checkpoint, at the step it stopped at, and finished
    assert second.inputs.parent_folder.uuid == first.outputs.remote_folder.uuid
    progress = read_progress_log(second.outputs.retrieved.base.repository.get_object_content("progress.log", mode="r"))
    assert [resumed["step"] for resumed in progress["resumed"]] == [status["done"]], progress
    assert progress["done"] == TRAINING_STEPS and progress["end"].startswith("finished"), progress
    model = node.outputs.models["model_00"]
    assert model.steps == TRAINING_STEPS and model.verify_checksum()
    assert model.get_loss_curves()["steps"][-1] == TRAINING_STEPS


def test_a_screening_submitted_to_the_daemon_relaxes_on_slurm(submitted, node_name, one_worker_daemon):
    node = submitted["screening"]
    assert node.is_finished_ok, describe(node)
    assert_nothing_left_running(node, one_worker_daemon)
    assert node.outputs.report["n_relaxed"] == 3

    relaxations = [c for c in node.called_descendants if c.process_label == "GpawBaseWorkChain"]
    assert len(relaxations) == 3 and all(r.is_finished_ok for r in relaxations), describe(node)
    # every job of every relaxation was a SLURM job of its own, none of them stalled
    jobs = [c for c in node.called_descendants if c.process_label == "GpawCalculation"]
    job_ids = {assert_ran_on_slurm(job, node_name, finished_ok=False) for job in jobs}
    assert len(jobs) >= 3 and len(job_ids) == len(jobs), job_ids
    assert not job_ids & set(submitted["stalled"].values())
    for relaxation in relaxations:
        assert_ran_on_slurm(max(relaxation.called, key=lambda n: n.ctime), node_name)
    for job in jobs:
        assert "#SBATCH --time=00:05:00" in submit_script(job).splitlines()
    # only the relaxations went to the cluster; the training and selection ran in the daemon worker
    elsewhere = [c for c in node.called_descendants if isinstance(c, orm.CalcJobNode) and c.computer.label != COMPUTER]
    assert not elsewhere, [(c.process_label, c.computer.label) for c in elsewhere]
    assert set(node.outputs.minima) == {row["name"] for row in node.outputs.report["rows"]}
