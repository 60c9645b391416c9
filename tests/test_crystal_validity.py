"""The crystal funnel's pure stages (aiida_physgen.crystals.properties) on real crystals, without CHGNet."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from aiida_physgen.crystals import properties
from aiida_physgen.ml.batch import StructureBatch


def _batch(*structures, **info):
    batch = StructureBatch.from_atoms(list(structures))
    batch.info.update({k: np.asarray(v) for k, v in info.items()})
    return batch


def test_validity_flags_each_failure_for_its_reason():
    salt = bulk("NaCl", "rocksalt", a=5.64)  # charge balanced
    imbalance = Atoms(
        "Na2Cl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], cell=[5, 5, 5], pbc=True
    )
    metal = bulk("Al", "fcc", a=4.05)  # no anion former: not applicable
    crowded = bulk("Al", "fcc", a=4.05)
    crowded = crowded + Atoms("Al", positions=[[0.3, 0, 0]])
    airy = bulk("Al", "fcc", a=20.0)
    flags = properties.validity(_batch(salt, imbalance, metal, crowded, airy))
    assert list(flags["charge_balanced"]) == [1, 0, -1, -1, -1]
    assert list(flags["valid"]) == [1, 0, 1, 0, 0]
    assert flags["min_pair_distance"][3] == pytest.approx(0.3, abs=1e-6)
    assert flags["min_pair_distance"][2] == pytest.approx(4.05 / np.sqrt(2), abs=1e-6)  # one atom: its image
    assert flags["density"][2] == pytest.approx(2.70, abs=0.01)
    reasons = properties.validity_reasons(flags)
    assert reasons[0] == "" and "charge" in reasons[1] and "closer than 0.5" in reasons[3] and "density" in reasons[4]


def test_validity_refuses_bad_limits_naming_them():
    batch = _batch(bulk("Al", "fcc", a=4.05))
    with pytest.raises(ValueError, match="min_distance"):
        properties.validity(batch, min_distance=-1)
    with pytest.raises(ValueError, match="density_range"):
        properties.validity(batch, density_range=(5, 1))


def test_formation_energy_is_per_atom_against_the_references():
    salt = bulk("NaCl", "rocksalt", a=5.64)
    batch = _batch(salt, salt, cheap_energy=[-7.0, np.nan])
    ef = properties.formation_energies(batch, {"Na": -1.0, "Cl": -2.0})
    assert ef[0] == pytest.approx((-7.0 + 3.0) / 2) and np.isnan(ef[1])
    with pytest.raises(ValueError, match="Cl"):
        properties.formation_energies(batch, {"Na": -1.0})
    references = properties.elemental_reference_structures(["Cl", "Na", "Na"])
    assert len(references) == 2 and list(references.info["element"]) == [11, 17]
    references.info["cheap_energy"] = np.array([-1.3 * references.n_atoms[0], -1.8 * references.n_atoms[1]])
    assert properties.reference_energies(references) == pytest.approx({"Na": -1.3, "Cl": -1.8})


def test_uniqueness_keeps_the_lowest_energy_copy_and_novelty_compares_with_training():
    salt = bulk("NaCl", "rocksalt", a=5.64)
    shifted = salt.copy()
    shifted.translate([0.7, 0.1, 0.2])
    shifted.wrap()
    bigger = salt * (2, 1, 1)  # the same crystal in a supercell
    other = bulk("Si", "diamond", a=5.43)
    batch = _batch(salt, shifted, bigger, other, formation_energy=[-1.0, -1.5, -1.2, 0.1])
    marks = properties.uniqueness_and_novelty(batch, _batch(bulk("Si", "diamond", a=5.43)))
    assert list(marks["unique"]) == [0, 1, 0, 1]
    assert list(marks["group"]) == [1, 1, 1, 3]
    assert list(marks["novel"]) == [1, 1, 1, 0]
    assert list(properties.uniqueness_and_novelty(batch)["novel"]) == [-1] * 4
