"""The porous-graphene lattice: geometry, random sheets, both encodings, exact round trips with atoms."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from aiida_physgen.ml import graphene
from aiida_physgen.ml.batch import StructureBatch


def test_paper_lattice_sizes():
    lattice = graphene.Lattice()
    assert lattice.zigzag_shape == (24, 28)
    assert lattice.pair_shape == (14, 16)
    assert lattice.n_sites == 448 == lattice.mask().sum()
    lx, ly = lattice.lengths
    assert 34 < lx < 35 and 34 < ly < 35  # the paper's ≈ 35 Å × 35 Å


def test_pristine_sheet_is_graphene():
    atoms = graphene.occupancy_to_atoms(graphene.Lattice().mask())
    i, d = neighbor_list("id", atoms, 1.6)
    assert np.bincount(i).tolist() == [3] * len(atoms)  # every atom three-fold, across the boundary too
    assert np.allclose(d, graphene.CC_BOND)
    assert (graphene.coordination(graphene.Lattice().mask())[graphene.Lattice().mask()] == 3).all()


def test_random_sheets_are_seeded_porous_and_pruned():
    sheets = graphene.random_sheets(30, seed=4)
    again = graphene.random_sheets(30, seed=4)
    assert (sheets == again).all()
    assert not (sheets == graphene.random_sheets(30, seed=5)).all()
    counts = sheets.reshape(30, -1).sum(1)
    assert (counts < 448).all() and len(set(counts.tolist())) > 10  # holes of random number and size
    for occ in sheets:
        assert (graphene.coordination(occ)[occ] >= 2).all()  # no dangling atoms or chains
        atoms = graphene.occupancy_to_atoms(occ)
        assert (
            np.bincount(neighbor_list("i", atoms, 1.6), minlength=len(atoms)) == graphene.coordination(occ)[occ]
        ).all()


def test_encodings_round_trip_exactly():
    sheets = graphene.random_sheets(20, seed=1, prune=False)
    pairs = graphene.zigzag_to_pair(sheets)
    assert pairs.shape == (20, 14, 16) and set(np.unique(pairs)) <= {0, 1, 2, 3}
    assert (graphene.pair_to_zigzag(pairs) == sheets).all()
    values = graphene.encode_zigzag(sheets)
    assert set(np.unique(values)) == {-1.0, 1.0}
    assert (graphene.decode_zigzag(values) == sheets).all()


def test_atoms_round_trip_exactly_and_after_a_shift():
    sheets = graphene.random_sheets(10, seed=2)
    batch = graphene.sheets_to_batch(sheets, info={"energy": np.arange(10.0)})
    back, lattice = graphene.batch_to_sheets(batch)
    assert (back == sheets).all() and lattice == graphene.Lattice()
    for occ, atoms in zip(sheets, batch):
        atoms.translate([0.13, -0.1, 0.4])  # rigid shifts below the site tolerance
        assert (graphene.atoms_to_occupancy(atoms)[0] == occ).all()


def test_tiling_gives_the_scaled_lattice():
    occ = graphene.random_sheets(1, seed=3)[0]
    tiled = np.tile(occ, (2, 2))
    lattice = graphene.Lattice().scaled(2)
    assert tiled.shape == lattice.zigzag_shape
    assert (tiled & ~lattice.mask()).sum() == 0
    assert np.isclose(lattice.area, 4 * graphene.Lattice().area)
    assert (np.tile(graphene.zigzag_to_pair(occ), (2, 2)) == graphene.zigzag_to_pair(tiled)).all()


@pytest.mark.parametrize("shape", [(23, 28), (24, 27)])
def test_grid_that_does_not_fit_the_lattice(shape):
    with pytest.raises(ValueError, match="does not fit the honeycomb lattice"):
        graphene.encode_zigzag(np.zeros(shape, dtype=bool))


def test_atom_on_a_hexagon_centre_is_refused():
    occ = np.zeros((24, 28), dtype=bool)
    occ[2, 0] = True  # (r - i%2) % 3 == 2: a hexagon centre
    with pytest.raises(ValueError, match="hexagon-centre"):
        graphene.zigzag_to_pair(occ)


def test_sheets_that_do_not_fit_name_the_problem():
    atoms = graphene.occupancy_to_atoms(graphene.random_sheets(1, seed=0)[0])
    moved = atoms.copy()
    moved.positions[3] += [0.6, 0.0, 0.0]
    with pytest.raises(ValueError, match="atom 3 is 0.60 Å from the nearest honeycomb site"):
        graphene.atoms_to_occupancy(moved)
    flat = atoms.copy()
    flat.pbc = [True, False, False]
    with pytest.raises(ValueError, match="not periodic in x and y"):
        graphene.atoms_to_occupancy(flat)
    odd = atoms.copy()
    odd.set_cell(np.diag([30.0, 34.08, 15.0]))
    with pytest.raises(ValueError, match="not a whole number of orthogonal graphene cells"):
        graphene.atoms_to_occupancy(odd)
    silicon = atoms.copy()
    silicon.symbols[0] = "Si"
    with pytest.raises(ValueError, match="all-carbon"):
        graphene.atoms_to_occupancy(silicon)


def test_a_set_of_sheets_on_two_lattices_is_refused():
    small = graphene.sheets_to_batch(graphene.random_sheets(2, 0, graphene.Lattice(4, 2), radius=(1.0, 2.0)))
    large = graphene.sheets_to_batch(graphene.random_sheets(2, 0))
    with pytest.raises(ValueError, match=r"training\[2\]: its cell differs from sheet 0's"):
        graphene.batch_to_sheets(StructureBatch.concatenate([small, large]))


def test_sheet_settings_check_their_fields():
    with pytest.raises(ValueError, match="lattice.nx"):
        graphene.SheetSettings(nx=0)
    with pytest.raises(ValueError, match="radius"):
        graphene.SheetSettings(radius=(3.0, 1.0))
    with pytest.raises(ValueError, match="holes"):
        graphene.SheetSettings(holes=(3, 1))
    assert graphene.SheetSettings(nx=4, ny=2, radius=(1.0, 2.0)).make(3, 0).shape == (3, 6, 8)
