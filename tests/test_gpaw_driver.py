"""The standalone GPAW driver, run as a subprocess exactly as the calculation job runs it (no AiiDA involved)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiida_physgen.calculations import gpaw_driver

sys.path.insert(0, str(Path(__file__).resolve().parent / "references"))
import gpaw_energies  # noqa: E402

DRIVER = Path(gpaw_driver.__file__)


run_driver = gpaw_energies.run_driver


def h2(distance: float):
    from ase import Atoms

    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, distance]])
    atoms.center(vacuum=3.0)
    return atoms


def test_driver_does_not_import_aiida():
    """The driver must run where only ASE and GPAW exist."""
    source = DRIVER.read_text()
    assert "import aiida" not in source
    assert "from aiida" not in source


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"cutoff": 300}, "unknown key 'cutoff'"),
        ({"mode": "fd"}, "'mode' must be one of 'pw', 'lcao'"),
        ({"ecut": -10}, "'ecut' must be greater than 0"),
        ({"kpts": [2, 2]}, "'kpts' must be a list of three integers"),
        ({"kpts": [2, 2, 2], "kpoint_density": 3.0}, "mutually exclusive"),
        ({"mixer": {"beta": 2.0}}, "'mixer.beta' must be a number in (0, 1]"),
        ({"maxiter": 0}, "'maxiter' must be an integer of at least 1"),
        ({"relax_cell": True, "calculation": "relax", "mode": "lcao"}, "'relax_cell' requires 'mode' to be 'pw'"),
        ({"magmoms": 1.0}, "'magmoms' requires 'spinpol'"),
        ({"mode": "lcao", "ecut": 300}, "'ecut' only applies"),
    ],
)
def test_validate_settings_rejects(settings, fragment):
    problems = gpaw_driver.validate_settings(settings)
    assert any(fragment in problem for problem in problems), problems


def test_validate_settings_accepts_defaults_and_full_set():
    assert gpaw_driver.validate_settings({}) == []
    full = dict(gpaw_driver.DEFAULTS)
    full.update({"calculation": "relax", "kpts": [2, 2, 2], "gamma": True, "mixer": {"beta": 0.05, "nmaxold": 5}})
    assert gpaw_driver.validate_settings(full) == []


def test_validate_settings_for_structure():
    problems = gpaw_driver.validate_settings_for_structure({"kpts": [2, 2, 2]}, [False, False, False], 2)
    assert any("non-periodic direction 0" in problem for problem in problems)
    problems = gpaw_driver.validate_settings_for_structure({"magmoms": [1.0]}, [True] * 3, 2)
    assert any("'magmoms' has 1 values" in problem for problem in problems)


@pytest.mark.slow
def test_h2_static_with_dos(tmp_path):
    structure, settings = gpaw_energies.CASES["h2_lcao_static"]
    status, results = run_driver(tmp_path, structure(), settings)

    assert status == 0
    assert results["status"] == "ok"
    assert results["scf_converged"] is True
    assert results["relax_converged"] is None
    reference = gpaw_energies.recorded()["energies"]["h2_lcao_static"]
    assert results["energy"] == pytest.approx(reference, abs=gpaw_energies.TOLERANCE_EV)
    assert results["energy_per_atom"] == pytest.approx(results["energy"] / 2)
    assert np.array(results["forces"]).shape == (2, 3)
    assert results["band_gap"] > 5  # H2: bonding/antibonding gap of about 11 eV
    assert results["homo"] < results["fermi_energy"] < results["lumo"]
    assert results["wall_time"] > 0 and 0 < results["cpu_time"] < 2 * results["wall_time"]
    assert (tmp_path / gpaw_driver.LOG_FILENAME).is_file()
    assert (tmp_path / gpaw_driver.FINAL_STRUCTURE_FILENAME).is_file()
    assert not (tmp_path / gpaw_driver.TRAJECTORY_FILENAME).exists()

    dos = json.loads((tmp_path / gpaw_driver.DOS_FILENAME).read_text())
    energy, total = np.array(dos["energy"]), np.array(dos["dos"])
    assert energy.shape == total.shape == (301,)
    assert "dos_up" not in dos
    # Two electrons below the Fermi level, as the occupied bonding orbital holds both.
    below, values = energy[energy < 0], total[energy < 0]
    electrons = float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(below)))
    assert electrons == pytest.approx(2.0, abs=0.05)


@pytest.mark.slow
def test_si2_relax(tmp_path):
    structure, settings = gpaw_energies.CASES["si2_pw_relax"]
    status, results = run_driver(tmp_path, structure(), settings)

    assert status == 0, results["errors"]
    assert results["relax_converged"] is True
    assert results["relax_steps"] >= 1
    assert results["max_force"] < 0.05
    assert results["kpts"] == [2, 2, 2]
    reference = gpaw_energies.recorded()["energies"]["si2_pw_relax"]
    assert results["energy"] == pytest.approx(reference, abs=gpaw_energies.TOLERANCE_EV)

    from ase.io import read

    frames = read(tmp_path / gpaw_driver.TRAJECTORY_FILENAME, index=":")
    assert len(frames) == results["relax_steps"] + 1
    assert frames[0].get_potential_energy() > frames[-1].get_potential_energy()
    final = read(tmp_path / gpaw_driver.FINAL_STRUCTURE_FILENAME)
    assert np.allclose(final.positions, frames[-1].positions)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "expected_status", "expected_exit"),
    [
        ({"mode": "lcao", "maxiter": 2}, "scf_not_converged", 3),
        ({"mode": "lcao", "calculation": "relax", "max_steps": 1}, "relax_not_converged", 4),
        ({"mode": "lcao", "basis": "qzp-nope"}, "crashed", 1),  # GPAW finds no such basis file
        ({"mode": "lcao", "xc": "NOT-A-FUNCTIONAL"}, "invalid_input", 2),  # refused before GPAW starts
        ({"mode": "lcao", "cutoff": 300}, "invalid_input", 2),
    ],
)
def test_failure_statuses(tmp_path, settings, expected_status, expected_exit):
    status, results = run_driver(tmp_path, h2(0.9), settings)
    assert status == expected_exit
    assert results["status"] == expected_status
    assert results["exit_status"] == expected_exit
    assert results["errors"]
    if expected_status == "crashed":
        assert "qzp-nope" in (tmp_path / gpaw_driver.ERROR_FILENAME).read_text()
    if expected_status == "relax_not_converged":
        assert (tmp_path / gpaw_driver.FINAL_STRUCTURE_FILENAME).is_file()
        assert results["relax_steps"] == 1


def test_an_atom_at_the_edge_of_the_box_is_its_own_status(tmp_path):
    """An atom at the edge of a non-periodic box (GPAW's AtomsTooClose to the boundary at the start, GridBoundsError
    when a relaxation takes it there: a molecule coming apart) gets the status ``atom_left_box`` and exit 5, not
    ``crashed``."""
    from ase import Atoms

    atoms = Atoms("H2", positions=[[0.02, 2.0, 2.0], [0.76, 2.0, 2.0]], cell=[4.0, 4.0, 4.0], pbc=False)
    status, results = run_driver(tmp_path, atoms, {"mode": "lcao", "basis": "sz(dzp)", "h": 0.3})
    assert status == 5 and results["status"] == "atom_left_box" and results["exit_status"] == 5
    assert results["errors"][0] == "AtomsTooClose: Atoms too close to boundary"


@pytest.mark.slow
def test_killed_relaxation_leaves_its_progress(tmp_path):
    """SIGKILL mid-relaxation: no results.json, but every completed step is in the trajectory and the last one in
    final.extxyz (replaced atomically), so the parser can report an interrupted run with its last geometry."""
    import signal
    import time

    from ase.build import bulk
    from ase.io import read, write

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.25, -0.15, 0.1]
    settings = {
        "calculation": "relax",
        "mode": "pw",
        "ecut": 250.0,
        "kpts": [2, 2, 2],
        "optimizer": "FIRE",
        "fmax": 0.001,
        "max_steps": 200,
    }
    shutil.copy(DRIVER, tmp_path / "gpaw_driver.py")
    write(tmp_path / gpaw_driver.STRUCTURE_FILENAME, atoms, format="extxyz")
    (tmp_path / gpaw_driver.INPUT_FILENAME).write_text(json.dumps(settings))
    process = subprocess.Popen(
        [sys.executable, "gpaw_driver.py"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trajectory = tmp_path / gpaw_driver.TRAJECTORY_FILENAME
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if trajectory.exists() and trajectory.read_text().count("Lattice=") >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the relaxation ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)

    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / gpaw_driver.RESULTS_FILENAME).exists()
    frames = read(trajectory, index=":")
    assert len(frames) >= 3
    assert all(np.isfinite(frame.get_potential_energy()) for frame in frames)
    final = read(tmp_path / gpaw_driver.FINAL_STRUCTURE_FILENAME)
    # final.extxyz is the last recorded step (or, killed between the two writes, the one before it)
    assert any(np.allclose(final.positions, frame.positions) for frame in frames[-2:])
    assert not np.allclose(final.positions, atoms.positions)
