"""A GPAW driver killed mid-relaxation (a real SIGKILL): the calculation ends on 330 ``ERROR_INTERRUPTED`` with its
last geometry and the base work chain restarts from it; bounded, after which it fails cleanly with 430. Unhandled
failures are retried once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import psutil  # installed by the set-up: missing is an error, not a skip
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.calculations.gpaw import GpawCalculation
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain


def si2_displaced() -> orm.StructureData:
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.25, -0.15, 0.1]
    return orm.StructureData(ase=atoms)


RELAX = {
    "calculation": "relax",
    "mode": "pw",
    "ecut": 250.0,
    "kpts": [2, 2, 2],
    "optimizer": "FIRE",
    "fmax": 0.05,
    "max_steps": 200,
}


class DriverKiller(threading.Thread):
    """SIGKILL the GPAW drivers running under ``root`` (this test's computer only, never anyone else's) once each
    has recorded ``after_frames`` steps, at most ``times`` of them."""

    def __init__(self, root: str, times: int = 1, after_frames: int = 3):
        super().__init__(daemon=True)
        self.root = str(Path(root).resolve())
        self.times = times
        self.after_frames = after_frames
        self.killed: list[int] = []
        self.stop = threading.Event()

    def _drivers(self):
        for process in psutil.process_iter(["pid", "cmdline"]):
            try:
                if "gpaw_driver.py" in (process.info["cmdline"] or []) and process.cwd().startswith(self.root):
                    yield process
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

    def run(self):
        while not self.stop.is_set() and len(self.killed) < self.times:
            for process in self._drivers():
                if process.pid in self.killed:
                    continue
                try:
                    trajectory = Path(process.cwd()) / "trajectory.extxyz"
                    if trajectory.exists() and trajectory.read_text().count("Lattice=") >= self.after_frames:
                        process.send_signal(signal.SIGKILL)
                        self.killed.append(process.pid)
                except (psutil.NoSuchProcess, FileNotFoundError):
                    continue
            time.sleep(0.05)


def run_with_killer(inputs, root, **kwargs):
    killer = DriverKiller(root, **kwargs)
    killer.start()
    try:
        return run_get_node(GpawBaseWorkChain, **inputs), killer
    finally:
        killer.stop.set()
        killer.join(timeout=10)


@pytest.mark.slow
def test_killed_driver_is_restarted_from_its_last_geometry(gpaw_code):
    inputs = {"gpaw": {"code": gpaw_code, "structure": si2_displaced(), "parameters": orm.Dict(RELAX)}}
    (results, node), killer = run_with_killer(inputs, gpaw_code.computer.get_workdir(), times=1)
    assert len(killer.killed) == 1, "the driver finished before it could be killed"
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    calcs = sorted(node.called, key=lambda n: n.ctime)
    calcs = [calc for calc in calcs if isinstance(calc, orm.CalcJobNode)]
    assert [calc.exit_status for calc in calcs] == [GpawCalculation.exit_codes.ERROR_INTERRUPTED.status, 0]
    first = calcs[0]
    assert first.outputs.output_parameters["status"] == "interrupted"
    assert first.outputs.output_trajectory.numsteps >= 3
    # the restart started where the killed run stopped, not from the input
    assert calcs[1].inputs.structure.uuid == first.outputs.output_structure.uuid
    assert results["output_parameters"]["relax_converged"] is True


@pytest.mark.slow
def test_killed_again_and_again_fails_cleanly(gpaw_code, monkeypatch):
    monkeypatch.setattr(GpawBaseWorkChain, "_max_interrupted_restarts", 1)
    inputs = {"gpaw": {"code": gpaw_code, "structure": si2_displaced(), "parameters": orm.Dict(RELAX)}}
    (_, node), killer = run_with_killer(inputs, gpaw_code.computer.get_workdir(), times=2, after_frames=2)
    assert len(killer.killed) == 2
    assert node.exit_status == GpawBaseWorkChain.exit_codes.ERROR_INTERRUPTED.status == 430
    calcs = [calc for calc in node.called if isinstance(calc, orm.CalcJobNode)]
    assert sorted(calc.exit_status for calc in calcs) == [330, 330]


@pytest.mark.slow
def test_unhandled_failure_is_retried_once(gpaw_code):
    """AiiDA's default would abort on the first unhandled failure; this chain defaults to 'restart_once'."""
    parameters = {"calculation": "static", "mode": "lcao", "basis": "qzp-nope"}  # no such basis: GPAW crashes
    from ase import Atoms

    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.75]])
    atoms.center(vacuum=2.5)
    inputs = {
        "gpaw": {"code": gpaw_code, "structure": orm.StructureData(ase=atoms), "parameters": orm.Dict(parameters)}
    }
    _, node = run_get_node(GpawBaseWorkChain, **inputs)
    assert node.exit_status == GpawBaseWorkChain.exit_codes.ERROR_UNHANDLED_FAILURE.status
    calcs = [calc for calc in node.called if isinstance(calc, orm.CalcJobNode)]
    assert [calc.exit_status for calc in calcs] == [302, 302]
    _, node = run_get_node(GpawBaseWorkChain, on_unhandled_failure=orm.Str("abort"), **inputs)
    assert len([calc for calc in node.called if isinstance(calc, orm.CalcJobNode)]) == 1
