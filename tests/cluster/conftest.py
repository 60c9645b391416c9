"""Fixtures of the cluster tests: a real scheduler and a real transport on this machine.

``scripts/localhost_cluster.sh`` sets up (once per session, quick when already done) a one-node SLURM
cluster (slurmctld, slurmd, munge) and an SSH server on localhost with a key of its own; the test profile
then gets the computer ``localhost-slurm`` (``core.slurm`` scheduler, ``core.ssh`` transport to
root@localhost) and two codes on it, set up as a cluster user would:

* ``gpaw-python@localhost-slurm``: a Python interpreter with ASE and GPAW (``physgen.gpaw``),
* ``physgen-python@localhost-slurm``: a Python interpreter with aiida-physgen (``physgen.train.job``).

When the cluster cannot be started the tests FAIL with the script's output: a skip would hide a broken
set-up in CI. Every test here is slow; run them with

    OMP_NUM_THREADS=1 python -m pytest tests/cluster -q -p no:cacheprovider
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "localhost_cluster.sh"
KEY = Path.home() / ".ssh" / "id_physgen_cluster"
COMPUTER = "localhost-slurm"

# the tiny inputs of the reliability suite (tests/ has no packages: its folder goes on the path)
sys.path.insert(0, str(REPO / "tests" / "reliability"))

#: What a cluster's admin puts in every job script: here a non-interactive matplotlib and one line naming the
#: allocation (job id, node, partition, CPUs) in the scheduler's stdout, which the tests read back.
PREPEND_TEXT = """\
export MPLBACKEND=Agg
echo "physgen: SLURM job ${SLURM_JOB_ID} on ${SLURMD_NODENAME}, partition ${SLURM_JOB_PARTITION}, \
${SLURM_CPUS_ON_NODE} CPU(s)"
"""
#: MPI through SLURM's own launcher (the physgen jobs run without MPI; set as on any SLURM cluster)
MPIRUN_COMMAND = ["srun", "--ntasks={tot_num_mpiprocs}"]


@pytest.fixture(autouse=True)
def _profile(aiida_profile):
    yield aiida_profile


@pytest.fixture(scope="session")
def localhost_cluster() -> str:
    """Run ``scripts/localhost_cluster.sh``; its one-line summary. Fails (never skips) when it fails."""
    try:
        result = subprocess.run(
            ["bash", str(SCRIPT)],
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PHYSGEN_CLUSTER_KEY": str(KEY)},
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(
            f"scripts/localhost_cluster.sh did not finish in {error.timeout} s:\n"
            f"{error.stdout or ''}{error.stderr or ''}",
            pytrace=False,
        )
    if result.returncode != 0:
        pytest.fail(
            f"the one-node SLURM cluster with SSH to localhost could not be set up: scripts/localhost_cluster.sh "
            f"exited with {result.returncode}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def slurm_computer(aiida_profile, localhost_cluster, tmp_path_factory):
    """The computer ``localhost-slurm``: SLURM through SSH to this machine, polled every second."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(COMPUTER)
    except NotExistent:
        computer = orm.Computer(
            label=COMPUTER,
            hostname="localhost",
            description="one-node SLURM cluster on this machine, reached over SSH (scripts/localhost_cluster.sh)",
            transport_type="core.ssh",
            scheduler_type="core.slurm",
            workdir=str(tmp_path_factory.mktemp("slurm-work")),
        )
        computer.set_prepend_text(PREPEND_TEXT)
        computer.set_mpirun_command(MPIRUN_COMMAND)
        computer.set_default_mpiprocs_per_machine(1)
        computer.store()
        # the default (10 s) would dominate jobs of a few seconds; a real cluster keeps 10 s or more
        computer.set_minimum_job_poll_interval(1.0)
    computer.configure(
        username=getpass.getuser(),
        port=22,
        look_for_keys=False,
        key_filename=str(KEY),
        allow_agent=False,
        timeout=30,
        load_system_host_keys=True,  # localhost is in ~/.ssh/known_hosts (the script put it there)
        key_policy="RejectPolicy",
        safe_interval=0.1,  # seconds between two connections; 5 s by default
    )
    # one connection now: a broken SSH login fails here with paramiko's own message, not as a paused process
    try:
        with computer.get_transport() as transport:
            transport.makedirs(computer.get_workdir(), ignore_existing=True)
            retval, stdout, stderr = transport.exec_command_wait("sinfo -h -o %P")
    except Exception as error:  # noqa: BLE001 - any failure to connect is the set-up's failure
        pytest.fail(f"{COMPUTER}: cannot connect over SSH with {KEY}: {type(error).__name__}: {error}", pytrace=False)
    if retval != 0 or "debug" not in stdout:
        pytest.fail(f"{COMPUTER}: `sinfo` over SSH gave {retval}: {stdout!r} {stderr!r}", pytrace=False)
    return computer


def _code(computer, label: str, plugin: str, prepend_text: str = ""):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        code = orm.InstalledCode(
            label=label,
            computer=computer,
            filepath_executable=sys.executable,
            default_calc_job_plugin=plugin,
            description=f"Python interpreter for {plugin}",
        )
        code.prepend_text = prepend_text
        return code.store()


@pytest.fixture(scope="session")
def slurm_gpaw_code(slurm_computer):
    """This Python interpreter (ASE and GPAW) on the SLURM computer; GPAW single-threaded."""
    return _code(slurm_computer, "gpaw-python", "physgen.gpaw", "export OMP_NUM_THREADS=1")


@pytest.fixture(scope="session")
def slurm_training_code(slurm_computer):
    """This Python interpreter (aiida-physgen) on the SLURM computer; the job sets its threads itself."""
    return _code(slurm_computer, "physgen-python", "physgen.train.job")


@pytest.fixture(scope="session")
def node_name(localhost_cluster) -> str:
    """The SLURM node: this host's short name."""
    return subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
