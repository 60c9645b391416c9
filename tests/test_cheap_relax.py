"""The cheap relaxation tier (no AiiDA): real GFN2-xTB and CHGNet relaxations of tiny structures."""

import ase
import numpy as np
import pytest
from ase.build import bulk, molecule

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.screening.cheap_relax import INFO_KEYS, CheapSettings, check_batch, methods_for, relax_batch, summary


def _rattled(name, seed, box=None):
    atoms = molecule(name)
    atoms.rattle(0.1, seed=seed)
    if box:
        atoms.cell = [box] * 3
        atoms.center()
    atoms.pbc = False
    return atoms


def _xtb_energy(atoms):
    from tblite.ase import TBLite

    atoms = atoms.copy()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    return atoms.get_potential_energy()


def test_xtb_relaxes_molecules_and_flags_a_failure():
    """Rattled molecules relax downhill and converge; a C–O pair 0.001 Å apart fails its SCF without stopping the
    others."""
    good = [_rattled("H2O", 1), _rattled("CH3OH", 2, box=12.0), _rattled("CH4", 3)]
    broken = ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, 0.001]])
    structures = [good[0], broken, good[1], good[2]]
    batch = StructureBatch.from_atoms(structures)
    batch.info["tag"] = np.array([10, 11, 12, 13])
    seen = []
    relaxed = relax_batch(
        batch, CheapSettings(), progress=lambda done, total, result: seen.append((done, total, result))
    )

    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert set(INFO_KEYS) <= set(relaxed.info)
    np.testing.assert_array_equal(relaxed.info["tag"], [10, 11, 12, 13])
    np.testing.assert_array_equal(relaxed.info["cheap_failed"], [0, 1, 0, 0])
    np.testing.assert_array_equal(relaxed.info["cheap_converged"], [1, 0, 1, 1])
    assert "SCF" in seen[1][2].error
    assert np.isnan(relaxed.info["cheap_energy"][1]) and np.isnan(relaxed.info["cheap_fmax"][1])
    # the failed structure keeps its input positions; the others moved downhill to a converged minimum
    np.testing.assert_allclose(relaxed[1].positions, broken.positions)
    for out_index, atoms in zip([0, 2, 3], good):
        energy = relaxed.info["cheap_energy"][out_index]
        assert energy < _xtb_energy(atoms) - 1e-3
        assert energy == pytest.approx(_xtb_energy(relaxed[out_index]), abs=1e-6)
        assert relaxed.info["cheap_fmax"][out_index] <= 0.05
        assert relaxed.info["cheap_steps"][out_index] > 0
        assert relaxed.formulas()[out_index] == batch.formulas()[out_index]
    np.testing.assert_allclose(relaxed.cells, batch.cells)  # molecules keep their box (or none)
    assert not relaxed.pbc.any()
    assert "3 converged, 0 not converged, 1 failed" in summary(relaxed)
    assert "cheap_energy" not in batch.info  # the input batch is not modified


def test_not_converged_within_max_steps_is_not_failed():
    relaxed = relax_batch(StructureBatch.from_atoms([_rattled("CH3OH", 5)]), {"max_steps": 2})
    assert relaxed.info["cheap_failed"][0] == 0 and relaxed.info["cheap_converged"][0] == 0
    assert relaxed.info["cheap_steps"][0] == 2 and relaxed.info["cheap_fmax"][0] > 0.05


@pytest.mark.slow
def test_chgnet_relaxes_a_rattled_silicon_cell():
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.1, seed=4)
    batch = StructureBatch.from_atoms([si])
    assert methods_for(batch, CheapSettings()) == ["chgnet"]
    relaxed = relax_batch(batch, {"fmax": 0.05})
    assert relaxed.info["cheap_converged"][0] == 1 and relaxed.info["cheap_failed"][0] == 0
    assert relaxed.info["cheap_fmax"][0] <= 0.05
    np.testing.assert_allclose(relaxed.cells[0], si.cell[:])  # fix_cell: true by default
    # relaxed back towards the ideal diamond lattice: every Si has four neighbours near 2.35 Å
    atoms = relaxed[0]
    distances = atoms.get_all_distances(mic=True)
    nearest = np.sort(distances, axis=1)[:, 1:5]
    assert np.all(np.abs(nearest - 2.35) < 0.08)


@pytest.mark.slow
def test_chgnet_relaxes_the_cell_when_asked_and_predicts_stress_only_then():
    from aiida_physgen.screening.cheap_relax import chgnet_calculator

    si = bulk("Si", "diamond", a=5.75, cubic=True)  # strained by 6 %: the stress drives the cell back
    relaxed = relax_batch(StructureBatch.from_atoms([si]), {"fix_cell": False, "fmax": 0.05})
    assert relaxed.info["cheap_converged"][0] == 1
    volume = abs(np.linalg.det(relaxed.cells[0]))
    assert volume < 0.95 * si.get_volume()
    calc = chgnet_calculator()
    si.calc = calc
    si.get_forces()
    assert "stress" not in calc.results  # a fixed-cell relaxation never pays for the stress
    assert np.abs(si.get_stress()).max() > 0.01 and "stress" in calc.results
    start = si.copy()
    from aiida_physgen.screening.cheap_relax import chgnet_calculator

    start.calc = chgnet_calculator()
    assert relaxed.info["cheap_energy"][0] < start.get_potential_energy()


@pytest.mark.parametrize(
    "values, field",
    [
        ({"method": "dft"}, "settings.method"),
        ({"fmax": 0}, "settings.fmax"),
        ({"fmax": float("nan")}, "settings.fmax"),
        ({"max_steps": 0}, "settings.max_steps"),
        ({"max_steps": 2.5}, "settings.max_steps"),
        ({"optimizer": "LBFGSLineSearch"}, "settings.optimizer"),
        ({"fix_cell": "yes"}, "settings.fix_cell"),
        ({"accuracy": -1}, "settings.accuracy"),
        ({"electronic_temperature": -5}, "settings.electronic_temperature"),
        ({"max_iterations": 0}, "settings.max_iterations"),
        ({"charge": 0.5}, "settings.charge"),
        ({"fmaxx": 0.1}, "settings.fmaxx"),
    ],
)
def test_bad_settings_are_named(values, field):
    with pytest.raises(ValueError) as error:
        CheapSettings.from_dict(values)
    assert str(error.value).startswith(field) or f"'{field}'" in str(error.value)


def test_settings_defaults_and_normalisation():
    values = CheapSettings.from_dict({"method": "CHGNet", "optimizer": "bfgs", "fmax": 1})
    assert (values.method, values.optimizer, values.fmax) == ("chgnet", "BFGS", 1.0)
    defaults = CheapSettings()
    assert (defaults.method, defaults.fmax, defaults.max_steps, defaults.optimizer, defaults.fix_cell) == (
        "auto",
        0.05,
        300,
        "FIRE",
        True,
    )


def test_batch_checks_before_any_work():
    molecules = StructureBatch.from_atoms([_rattled("H2O", 1)])
    with pytest.raises(ValueError, match=r"^settings.method: 'chgnet' needs periodic structures"):
        relax_batch(molecules, {"method": "chgnet"})
    with pytest.raises(ValueError, match=r"^settings.charge: got 5"):
        relax_batch(StructureBatch.from_atoms([ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])]), {"charge": 5})
    heavy = ase.Atoms("U", cell=[5, 5, 5], pbc=False)
    with pytest.raises(ValueError, match=r"^settings.method: structure 0 has an element of atomic number 92"):
        check_batch(StructureBatch.from_atoms([heavy]), CheapSettings())
    si = bulk("Si", "diamond", a=5.43)
    mixed = StructureBatch.from_atoms([_rattled("H2O", 1), si])
    assert methods_for(mixed, CheapSettings()) == ["gfn2-xtb", "chgnet"]
    assert methods_for(mixed, CheapSettings(method="gfn2-xtb")) == ["gfn2-xtb", "gfn2-xtb"]
