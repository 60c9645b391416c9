"""The ML-free stages of the crystal funnel, on real crystals (half-Heusler CIFs, ASE-built solids)."""

import itertools
import math

import ase.io
import numpy as np
import pytest
from ase.build import bulk, make_supercell

from aiida_physgen.crystals import properties as cf
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.crystal_data import EXAMPLE_FOLDER as CIFS  # the half-Heusler CIFs the package ships


def half_heusler(name="567800"):  # 567800: AlBPt, Pt at 4a, B at 4c, Al at 4d
    return ase.io.read(CIFS / f"{name}.cif")


def brute_force_min_distance(atoms, reach=3):
    """Shortest distance over all pairs and images up to ``reach`` cells away (no minimum image)."""
    best = math.inf
    for shift in itertools.product(range(-reach, reach + 1), repeat=3):
        offset = np.asarray(shift) @ atoms.cell.array
        d = np.linalg.norm(atoms.positions[None, :] + offset - atoms.positions[:, None], axis=-1)
        if shift == (0, 0, 0):
            d[np.diag_indices(len(atoms))] = np.inf
        best = min(best, d.min())
    return best


# ---------------------------------------------------------------------------------------------- validity
def test_half_heuslers_are_valid_and_match_pymatgen():
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = [half_heusler(n) for n in ("567800", "567801", "567802")]
    result = cf.validity(StructureBatch.from_atoms(atoms))
    assert result["valid"].tolist() == [1, 1, 1]
    assert result["charge_balanced"].tolist() == [-1, -1, -1]  # Pt intermetallics: no anion former
    # asked of every composition all the same: AlBPt and friends have no neutral assignment (97 of the 99 shipped)
    assert result["charge_neutral"].tolist() == [0, 0, 0]
    for a, d, rho in zip(atoms, result["min_pair_distance"], result["density"]):
        structure = AseAtomsAdaptor.get_structure(a)
        matrix = structure.distance_matrix + np.diag(np.full(len(a), np.inf))
        assert d == pytest.approx(min(matrix.min(), structure.lattice.abc[0]), abs=1e-6)
        assert rho == pytest.approx(structure.density, abs=0.01)
    assert cf.validity_reasons(result) == ["", "", ""]


def test_broken_copies_are_invalid_with_reasons():
    good = half_heusler()
    close = good.copy()
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    dense = good.copy()
    dense.set_cell(dense.cell * 0.5, scale_atoms=True)
    sparse = good.copy()
    sparse.set_cell(sparse.cell * 3.0, scale_atoms=True)
    result = cf.validity(StructureBatch.from_atoms([good, close, dense, sparse]))
    assert result["valid"].tolist() == [1, 0, 0, 0]
    assert result["min_pair_distance"][1] == pytest.approx(0.3, abs=1e-9)
    assert result["density"][2] == pytest.approx(8 * result["density"][0])
    reasons = cf.validity_reasons(result)
    ratio = result["min_radius_ratio"][1]
    assert (
        reasons[0] == ""
        and reasons[1] == f"pair closer than 0.5 Å (0.30 Å); pair closer than 0.7 × the covalent radii ({ratio:.2f})"
    )
    assert result["min_radius_ratio"][0] >= 0.78 and ratio < 0.15
    # halving the cell halves every distance: 0.5 × the good crystal's ratio, below 0.7 (and eight times the density)
    assert result["min_radius_ratio"][2] == pytest.approx(0.5 * result["min_radius_ratio"][0])
    assert reasons[2] == (
        f"pair closer than 0.7 × the covalent radii ({result['min_radius_ratio'][2]:.2f}); "
        f"density {result['density'][2]:.3g} g/cm³ outside [1, 25]"
    )
    assert reasons[3].startswith("density 0.") and reasons[3].endswith("outside [1, 25]")
    # the limits travel with the result
    strict = cf.validity(StructureBatch.from_atoms([good]), min_distance=2.5)
    assert strict["valid"].tolist() == [0]
    # the radius rule alone: a crystal squeezed to 0.8 of its cell passes 0.5 Å but not 0.75 × the radii
    squeezed = good.copy()
    squeezed.set_cell(squeezed.cell * 0.8, scale_atoms=True)
    rules = cf.validity(StructureBatch.from_atoms([squeezed]), radius_scale=0.75)
    assert rules["min_pair_distance"][0] > 1.5 and rules["min_radius_ratio"][0] < 0.75
    assert rules["valid"].tolist() == [0] and "× the covalent radii" in cf.validity_reasons(rules)[0]
    assert cf.validity(StructureBatch.from_atoms([squeezed]), radius_scale=0.0)["valid"].tolist() == [1]
    with pytest.raises(ValueError, match=r"^radius_scale: got -1"):
        cf.validity(StructureBatch.from_atoms([good]), radius_scale=-1)
    assert cf.validity_reasons(strict)[0].startswith("pair closer than 2.5 Å (2.40 Å)")


def test_charge_balance_applies_only_with_an_anion_former():
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    na2cl = bulk("ClNa2", "fluorite", a=5.5)  # made up: Cl would need -2
    alni = bulk("AlNi", "cesiumchloride", a=2.88)  # intermetallic
    mgo = bulk("MgO", "rocksalt", a=4.21)
    batch = StructureBatch.from_atoms([nacl, na2cl, alni, make_supercell(mgo, 2 * np.eye(3))])
    result = cf.validity(batch)
    assert result["charge_balanced"].tolist() == [1, 0, -1, 1]
    assert result["valid"].tolist() == [1, 0, 1, 1]
    assert cf.validity_reasons(result)[1] == "no charge-balanced oxidation states"
    unchecked = cf.validity(batch, charge_balance=False)
    assert unchecked["charge_balanced"].tolist() == [-1] * 4 and unchecked["valid"].tolist() == [1] * 4


def test_min_distance_counts_periodic_images_in_small_skewed_cells():
    rng = np.random.default_rng(3)
    structures = [bulk("Na", "bcc", a=4.23), bulk("Cu", "fcc", a=3.61)]  # one atom per cell
    for _ in range(4):  # strongly skewed one- and two-atom cells where the minimum image is wrong
        cell = np.eye(3) * rng.uniform(2.5, 4.0, 3) + np.triu(rng.uniform(1.5, 3.0, (3, 3)), 1)
        n = int(rng.integers(1, 3))
        structures.append(ase.Atoms(["Si"] * n, scaled_positions=rng.random((n, 3)), cell=cell, pbc=True))
    structures.append(ase.Atoms("He", cell=[7.0, 8.0, 9.0], pbc=True))  # nothing within 3 Å
    result = cf.validity(StructureBatch.from_atoms(structures))
    expected = [brute_force_min_distance(a) for a in structures]
    np.testing.assert_allclose(result["min_pair_distance"], expected, atol=1e-9)
    assert result["min_pair_distance"][0] == pytest.approx(4.23 * math.sqrt(3) / 2)
    assert result["min_pair_distance"][-1] == pytest.approx(7.0)


def test_validity_rejects_bad_arguments():
    batch = StructureBatch.from_atoms([bulk("Cu")])
    for kwargs, start in (
        ({"min_distance": -1}, "min_distance: got -1, expected a positive distance in Å"),
        ({"min_distance": float("nan")}, "min_distance"),
        ({"density_range": (5, 1)}, "density_range"),
        ({"density_range": 3}, "density_range"),
        ({"charge_balance": "yes"}, "charge_balance"),
    ):
        with pytest.raises(ValueError) as error:
            cf.validity(batch, **kwargs)
        assert str(error.value).startswith(start)
    with pytest.raises(ValueError, match="^batch: got list"):
        cf.validity([bulk("Cu")])
    molecule = StructureBatch.from_atoms([ase.Atoms("H2", positions=[(0, 0, 0), (0, 0, 0.74)])])
    with pytest.raises(ValueError, match="^batch: structure 0 is not a crystal"):
        cf.validity(molecule)
    with pytest.raises(ValueError, match="^result"):
        cf.validity_reasons({"valid": np.ones(1)})


# ---------------------------------------------------------------------------------------------- references
def test_elemental_reference_structures():
    refs = cf.elemental_reference_structures(["O", "Si", "Al", "N", "Al", "He", "Mn", "Se"])
    assert refs.info["element"].tolist() == [2, 7, 8, 13, 14, 25, 34]
    assert refs.formulas() == ["He", "N2", "O2", "Al", "Si2", "Mn29", "Se3"]
    assert refs.pbc.all()
    for index, bond in ((1, 1.10), (2, 1.21)):  # gas dimers in a 10 Å cube
        np.testing.assert_allclose(refs.cells[index], 10.0 * np.eye(3))
        atoms = refs[index]
        assert atoms.get_distance(0, 1) == pytest.approx(bond)
    al = refs[3]
    assert al.get_volume() == pytest.approx(bulk("Al").get_volume())  # ASE's fcc Al
    result = cf.validity(refs, charge_balance=False)
    assert result["min_pair_distance"][5] == pytest.approx(2.26, abs=0.01)  # α-Mn, 58-atom cubic cell
    assert result["density"][4] == pytest.approx(2.33, abs=0.02)  # diamond Si
    assert result["density"][5] == pytest.approx(7.47, abs=0.05)  # α-Mn


def test_every_element_up_to_plutonium_has_a_sensible_reference():
    from ase.data import chemical_symbols

    refs = cf.elemental_reference_structures(chemical_symbols[1:95])
    assert refs.info["element"].tolist() == list(range(1, 95))
    assert all(len(set(refs.numbers[refs.offsets[i] : refs.offsets[i + 1]])) == 1 for i in range(len(refs)))
    distances = cf.validity(refs, charge_balance=False)["min_pair_distance"]
    assert distances.min() >= 0.74 - 1e-9  # H2
    assert np.all(distances[refs.n_atoms > 1] < 6.0)


@pytest.mark.parametrize("elements", [["Al", "Xx"], "Al", [], ["X"], [13]])
def test_elemental_reference_structures_rejects_unknown_symbols(elements):
    with pytest.raises(ValueError, match="^elements: "):
        cf.elemental_reference_structures(elements)


def _labelled(structures, energies):
    batch = StructureBatch.from_atoms(structures)
    batch.info["cheap_energy"] = np.asarray(energies, dtype=float)
    return batch


def test_reference_energies_take_the_lowest_finite_energy_per_atom():
    refs = _labelled(
        [
            bulk("Al"),
            make_supercell(bulk("Al"), 2 * np.eye(3)),
            bulk("Si"),
            bulk("NaCl", "rocksalt", a=5.64),
            bulk("Cu"),
            bulk("Cu", "bcc", a=2.87),
        ],
        [-3.5, -8 * 3.7, -10.8, -99.0, np.nan, -4.0],
    )
    assert cf.reference_energies(refs) == {"Al": pytest.approx(-3.7), "Si": pytest.approx(-5.4), "Cu": -4.0}
    only_nan = _labelled([bulk("Al"), bulk("Si")], [-3.7, np.nan])
    with pytest.raises(ValueError, match=r"^relaxed_references: .*element\(s\) Si$"):
        cf.reference_energies(only_nan)
    with pytest.raises(ValueError, match="^key: "):
        cf.reference_energies(refs, key="energy")
    with pytest.raises(ValueError, match="^relaxed_references: no single-element"):
        cf.reference_energies(_labelled([bulk("NaCl", "rocksalt", a=5.64)], [-7.0]))


def test_formation_energies():
    mu = {"Na": -1.3, "Cl": -1.8, "Mg": -1.5, "O": -4.9}
    batch = _labelled(
        [
            bulk("NaCl", "rocksalt", a=5.64),
            make_supercell(bulk("MgO", "rocksalt", a=4.21), 2 * np.eye(3)),
            bulk("NaCl", "rocksalt", a=5.64),
        ],
        [-7.3, 16 * -6.0, np.nan],
    )
    energies = cf.formation_energies(batch, mu)
    np.testing.assert_allclose(energies[:2], [(-7.3 + 1.3 + 1.8) / 2, -6.0 + (1.5 + 4.9) / 2])
    assert np.isnan(energies[2])
    with pytest.raises(ValueError, match="^references: no reference energy for element.*Cl"):
        cf.formation_energies(batch, {"Na": -1.3, "Mg": -1.5, "O": -4.9})
    with pytest.raises(ValueError, match="^references: "):
        cf.formation_energies(batch, {**mu, "O": float("nan")})
    with pytest.raises(ValueError, match="^key: "):
        cf.formation_energies(batch, mu, key="dft_energy")


def test_chgnet_formation_energy_of_rock_salt_is_about_minus_two():
    """A real CHGNet relaxation (cell free) of Na, Cl2 and NaCl through cheap_relax (≈4 s here)."""
    from aiida_physgen.screening.cheap_relax import relax_batch

    refs = cf.elemental_reference_structures(["Cl", "Na"])
    nacl = StructureBatch.from_atoms([bulk("NaCl", "rocksalt", a=5.64)])
    relaxed = relax_batch(StructureBatch.concatenate([refs, nacl]), {"method": "chgnet", "fix_cell": False})
    assert relaxed.info["cheap_failed"].tolist() == [0, 0, 0]
    mu = cf.reference_energies(relaxed)
    assert set(mu) == {"Na", "Cl"}
    energy = cf.formation_energies(relaxed, mu)[2]
    assert -2.5 < energy < -1.7  # Materials Project: about -2.1 eV/atom


# ---------------------------------------------------------------------------------------------- uniqueness
def _swap(atoms, a, b):
    swapped = atoms.copy()
    symbols = np.array(swapped.get_chemical_symbols())
    swapped.set_chemical_symbols(np.where(symbols == a, b, np.where(symbols == b, a, symbols)))
    return swapped


def test_duplicates_are_grouped_and_novelty_is_against_training():
    albpt = half_heusler()  # Pt on the 8-fold site 4a
    translated = albpt.copy()
    translated.positions += [0.9, 0.4, 1.3]
    translated.wrap()
    supercell = make_supercell(albpt, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    strained = albpt.copy()
    strained.set_cell(albpt.cell.array @ np.diag([1.01, 0.99, 1.0]), scale_atoms=True)
    strained.rattle(0.02, seed=1)
    al_b = _swap(albpt, "Al", "B")  # 4c <-> 4d: the same crystal (related by an inversion)
    al_pt = _swap(albpt, "Al", "Pt")  # Al on the 8-fold site: a different crystal of the same formula
    other = half_heusler("567801")
    generated = StructureBatch.from_atoms([albpt, translated, al_pt, supercell, other, strained, al_b])
    result = cf.uniqueness_and_novelty(generated)
    assert result["group"].tolist() == [0, 0, 2, 0, 4, 0, 0]
    assert result["unique"].tolist() == [1, 0, 1, 0, 1, 0, 0]
    assert result["novel"].tolist() == [-1] * 7
    # the lowest formation energy represents its group; NaN counts as highest
    generated.info["formation_energy"] = np.array([0.1, np.nan, 0.0, -0.2, 0.3, -0.2, 0.5])
    ranked = cf.uniqueness_and_novelty(generated)
    assert ranked["group"].tolist() == [3, 3, 2, 3, 4, 3, 3]
    assert ranked["unique"].tolist() == [0, 0, 1, 1, 1, 0, 0]
    training = StructureBatch.from_atoms([half_heusler("567802"), albpt])
    novelty = cf.uniqueness_and_novelty(generated, training)
    assert novelty["novel"].tolist() == [0, 0, 1, 0, 1, 0, 0]
    assert novelty["group"].tolist() == ranked["group"].tolist()


def test_uniqueness_rejects_bad_arguments():
    batch = StructureBatch.from_atoms([bulk("Cu")])
    with pytest.raises(ValueError, match="^ltol: got 0, expected a positive tolerance"):
        cf.uniqueness_and_novelty(batch, ltol=0)
    with pytest.raises(ValueError, match="^angle_tol: "):
        cf.uniqueness_and_novelty(batch, angle_tol=-5)
    with pytest.raises(ValueError, match="^training: got list"):
        cf.uniqueness_and_novelty(batch, training=[bulk("Cu")])
    with pytest.raises(ValueError, match="^batch: "):
        cf.uniqueness_and_novelty("Cu")
