"""De-duplication of relaxed structures into basins (molecules by SMILES, crystals by StructureMatcher)."""

from __future__ import annotations

from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.build import make_supercell

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.screening.basins import (
    Basin,
    MolecularGraph,
    count_distinct_valid_molecules,
    crystal_key,
    deduplicate,
    molecule_graph,
    spacegroup,
)

RESOURCES = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan"
TRAINING = RESOURCES / "C5H12O_training.extxyz"
SIO2 = RESOURCES / "sio2"


@pytest.fixture(scope="module")
def training():
    return ase.io.read(TRAINING, index=":")


@pytest.fixture(scope="module")
def c6(training):
    """Two different C6H14O isomers (first two of the training set)."""
    isomers = [a for a in training if a.get_chemical_formula("hill") == "C6H14O"]
    return isomers[0], isomers[1]


def rotated(atoms, seed, rattle=0.02, shift=(0.0, 0.0, 0.0)):
    copy = atoms.copy()
    copy.rotate(float(seed * 37 % 360), "x", center="COM")
    copy.rotate(float(seed * 71 % 360), "z", center="COM")
    copy.translate(shift)
    copy.rattle(rattle, seed=seed)
    return copy


def read_target(name):
    return ase.io.read(SIO2 / f"{name}_target.extxyz")


# ---------------------------------------------------------------------------------------------- graphs
def test_molecule_graph_of_training_molecule(c6):
    graph = molecule_graph(c6[0])
    assert isinstance(graph, MolecularGraph)
    assert graph.valid and graph.connected and graph.n_fragments == 1 and graph.error is None
    assert graph.smiles == "COC(C)C(C)C"  # methyl 1,2-dimethylpropyl ether, hydrogens implicit
    assert "H" not in graph.smiles
    assert molecule_graph(c6[1]).smiles == "CC(C)CCCO"


def test_molecule_graph_ignores_box_without_pbc(c6):
    boxed = c6[0].copy()
    boxed.cell = np.eye(3) * 8.0
    boxed.pbc = False
    boxed.translate([20.0, -13.0, 7.0])  # far outside its box: irrelevant without periodicity
    assert molecule_graph(boxed).smiles == molecule_graph(c6[0]).smiles


def test_molecule_graph_unwraps_periodic_box(c6):
    wrapped = c6[0].copy()
    wrapped.cell = np.eye(3) * 7.0
    wrapped.pbc = True
    wrapped.wrap()  # the molecule is now split across cell faces
    graph = molecule_graph(wrapped)
    assert graph.connected and graph.valid
    assert graph.smiles == molecule_graph(c6[0]).smiles


def test_molecule_graph_fallen_apart(c6):
    broken = c6[0].copy()
    broken.positions[0] += [5.0, 0.0, 0.0]  # a carbon pulled away from its hydrogens and neighbour
    graph = molecule_graph(broken)
    assert not graph.connected
    assert graph.n_fragments > 1
    assert "." in graph.smiles
    # bond orders cannot be assigned to a neutral set of radicals: connectivity-only SMILES
    assert not graph.valid and graph.error
    # the lone carbon is a radical, not methane
    assert "[C]" in graph.smiles.split(".")


def test_count_distinct_valid_molecules(c6, training):
    broken = c6[0].copy()
    broken.positions[3] += [0.0, 5.0, 0.0]
    structures = [c6[0], rotated(c6[0], 3), c6[1], broken]
    count, smiles = count_distinct_valid_molecules(structures)
    assert count == 2
    assert smiles == sorted(["COC(C)C(C)C", "CC(C)CCCO"])
    # the training set is made of distinct isomers
    count, smiles = count_distinct_valid_molecules(StructureBatch.from_atoms(training))
    assert count == len(training) == len(set(smiles))


# ---------------------------------------------------------------------------------------------- molecules
def test_conformers_of_one_molecule_form_one_basin(c6):
    a = rotated(c6[0], 1)
    b = rotated(c6[0], 2, rattle=0.05, shift=(3.0, -2.0, 1.0))
    basins = deduplicate([a, b], [-10.0, -10.4])
    assert len(basins) == 1
    basin = basins[0]
    assert isinstance(basin, Basin)
    assert basin.count == 2
    assert basin.representative == 1 and basin.members == [1, 0]
    assert basin.energy == -10.4
    assert basin.kind == "molecule" and basin.key == "COC(C)C(C)C"
    assert basin.valid and basin.connected
    assert basin.formula == "C6H14O"


def test_isomers_form_two_basins_sorted_by_energy(c6):
    structures = [c6[0], c6[1], rotated(c6[1], 5), rotated(c6[0], 6)]
    energies = [-5.0, -7.0, -6.5, -5.5]
    basins = deduplicate(structures, energies, kind="molecule")
    assert [b.key for b in basins] == ["CC(C)CCCO", "COC(C)C(C)C"]
    assert [b.representative for b in basins] == [1, 3]
    assert [b.count for b in basins] == [2, 2]
    assert [b.energy for b in basins] == [-7.0, -5.5]
    assert sorted(i for b in basins for i in b.members) == [0, 1, 2, 3]


def test_fallen_apart_molecule_is_not_merged(c6):
    broken = c6[0].copy()
    broken.positions[20] += [0.0, 0.0, 5.0]  # one hydrogen atom moved 5 Å away
    assert molecule_graph(broken).n_fragments == 2
    # the broken one is lowest in energy; it must still not absorb the intact isomer
    basins = deduplicate([c6[0], broken, rotated(c6[0], 4)], [-1.0, -3.0, -2.0])
    assert len(basins) == 2
    fallen = [b for b in basins if not b.connected]
    intact = [b for b in basins if b.connected]
    assert len(fallen) == 1 and len(intact) == 1
    assert fallen[0].members == [1] and fallen[0].count == 1
    assert "." in fallen[0].key
    assert intact[0].members == [2, 0] and intact[0].key == "COC(C)C(C)C"
    assert basins[0] is fallen[0]  # sorted by energy, whatever the connectivity


# ---------------------------------------------------------------------------------------------- crystals
def test_spacegroup_symbols():
    assert spacegroup(read_target("mp-546546")) == "R32"
    assert spacegroup(read_target("mp-554151")) == "I-4"
    symbol = crystal_key(read_target("mp-546794"))
    assert symbol == "I-42d"
    from pymatgen.symmetry.groups import SpaceGroup

    assert SpaceGroup(symbol).int_number == 122
    with pytest.raises(ValueError, match="cell"):
        spacegroup(ase.Atoms("Si", positions=[[0, 0, 0]]))


def transformed_copy(atoms, seed=0):
    """The same crystal as a rotated, translated supercell with permuted atoms."""
    rng = np.random.default_rng(seed)
    copy = make_supercell(atoms, [[1, 1, 0], [0, 1, 0], [0, 0, 2]])
    copy = copy[rng.permutation(len(copy))]
    copy.rotate(33, "x", rotate_cell=True)
    copy.rotate(71, "z", rotate_cell=True)
    copy.translate([0.7, -1.2, 0.3])
    copy.wrap()
    copy.rattle(0.005, seed=seed)
    return copy


def test_same_crystal_one_basin():
    target = read_target("mp-546546")
    copy = transformed_copy(target)
    assert len(copy) == 2 * len(target)
    # the supercell is slightly lower per atom: it is the representative
    e0 = -66.7
    basins = deduplicate([target, copy], [e0, 2 * e0 - 0.01])
    assert len(basins) == 1
    basin = basins[0]
    assert basin.kind == "crystal" and basin.key == "R32"
    assert basin.count == 2 and basin.representative == 1 and basin.members == [1, 0]
    assert basin.energy == pytest.approx(2 * e0 - 0.01)
    assert basin.energy_per_atom == pytest.approx((2 * e0 - 0.01) / 18)
    # per atom, not total: twice the energy of a cell twice as big does not win by size alone
    basins = deduplicate([target, copy], [e0, 2 * e0 + 0.01])
    assert basins[0].representative == 0


def test_different_crystals_two_basins():
    first, second = read_target("mp-546546"), read_target("mp-554151")
    structures = [first, second, transformed_copy(second, seed=2)]
    energies = [-66.7, -89.0, -178.1]
    basins = deduplicate(structures, energies)  # kind inferred from pbc
    assert len(basins) == 2
    assert all(b.kind == "crystal" for b in basins)
    assert {b.key for b in basins} == {"R32", "I-4"}
    by_key = {b.key: b for b in basins}
    assert by_key["I-4"].members == [2, 1]
    assert by_key["R32"].members == [0]
    # sorted by energy per atom: I-4 (-178.1 / 24) is below R32 (-66.7 / 9)
    assert [b.key for b in basins] == ["I-4", "R32"]


# ---------------------------------------------------------------------------------------------- validation
def test_validation(c6):
    with pytest.raises(ValueError, match="length"):
        deduplicate([c6[0], c6[1]], [-1.0])
    with pytest.raises(ValueError, match="non-finite"):
        deduplicate([c6[0], c6[1]], [-1.0, float("nan")])
    with pytest.raises(ValueError, match="kind"):
        deduplicate([c6[0]], [-1.0], kind="liquid")
    with pytest.raises(ValueError, match="kind"):
        deduplicate([c6[0], read_target("mp-546546")], [-1.0, -2.0])  # mixed pbc: cannot infer
    with pytest.raises(TypeError, match="ase.Atoms"):
        deduplicate(["not a structure"], [0.0])
    assert deduplicate([], []) == []


def test_missing_or_non_finite_energies_name_the_structure(c6):
    labelled = c6[0].copy()
    labelled.info["label"] = "rep_02"
    with pytest.raises(ValueError, match=r"^energies: structure 1 has no energy"):
        deduplicate([c6[0], c6[1]], [-1.0, None])
    with pytest.raises(ValueError, match=r"^energies: structure 2 \('rep_02'\) has a non-finite energy \(nan\)"):
        deduplicate([c6[0], c6[1], labelled], [-1.0, -2.0, float("nan")])
    with pytest.raises(ValueError, match=r"^energies: structure 0 has a non-finite energy \(inf\)"):
        deduplicate([c6[0]], [float("inf")])
    with pytest.raises(ValueError, match=r"^energies: structure 0 has energy 'low'; expected a number"):
        deduplicate([c6[0]], ["low"])


def test_charge_separated_bonding_is_not_a_valid_molecule():
    """A neutral structure that RDKit can only describe with formal charges ([CH2-][OH+]...) is not
    counted as a new isomer."""
    from ase import Atoms

    # methanol with its O-H hydrogen moved onto the carbon side: RDKit needs charges to balance it
    ylide = Atoms(
        "COH4",
        positions=[[0, 0, 0], [1.43, 0, 0], [1.75, 0.9, 0.0], [-0.36, 1.0, 0.1], [-0.36, -0.5, 0.9], [1.8, -0.9, 0.0]],
    )
    graph = molecule_graph(ylide)
    assert graph.smiles == "[CH2-][OH2+]" and graph.connected
    assert not graph.valid and "formal charges on 2 atoms" in graph.error
    assert count_distinct_valid_molecules([ylide]) == (0, [])
    neutral = molecule_graph(
        Atoms(
            "CH4",
            positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]],
        )
    )
    assert neutral.valid and neutral.smiles == "C"


def test_reduced_structures_are_remembered_by_geometry_and_handed_out_as_copies():
    from ase.build import bulk

    from aiida_physgen.screening import basins

    conventional = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms; its primitive cell has 2
    first = basins.reduced_structure(conventional)
    assert len(first) == 2
    assert basins._geometry_key(conventional) in basins._REDUCED
    first.replace_species({"Si": "Ge"})  # a caller's change does not reach the remembered one
    again = basins.reduced_structure(conventional.copy())
    assert len(again) == 2 and again.composition.reduced_formula == "Si"
    moved = conventional.copy()
    moved.positions[0] += [0.6, 0.0, 0.0]  # another geometry, reduced on its own: no longer a 2-atom primitive
    assert basins._geometry_key(moved) != basins._geometry_key(conventional)
    assert len(basins.reduced_structure(moved)) == 8
