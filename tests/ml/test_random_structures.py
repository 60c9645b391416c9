"""The random baseline: min-distance rule (periodic images included), determinism, impossible densities."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from aiida_physgen.ml.composition import parse_composition
from aiida_physgen.ml.random_structures import random_structures
from aiida_physgen.resources import sio2_target


def test_molecule_box_composition_domain_and_min_distance():
    box = np.diag([7.0, 6.0, 5.0])
    batch = random_structures("C5H12O", box, False, 300, seed=3, min_distance=0.9)
    assert len(batch) == 300
    assert batch.n_atoms.tolist() == [18] * 300
    symbols = [atom.symbol for atom in batch[0]]
    assert symbols == parse_composition("C5H12O")
    assert batch.info["model_index"].tolist() == [0] * 300
    assert not batch.pbc.any()
    positions = batch.positions.reshape(300, 18, 3)
    # inside the box, and spread over all of it (uniform fractional coordinates)
    assert (positions >= 0).all() and (positions < np.diag(box)).all()
    assert np.allclose(positions.reshape(-1, 3).mean(0), np.diag(box) / 2, atol=0.15)
    assert batch.min_distances().min() >= 0.9
    # the rule is not vacuous: unconstrained draws in this box do break it
    loose = random_structures("C5H12O", box, False, 300, seed=3, min_distance=0.0)
    assert loose.min_distances().min() < 0.9


def test_periodic_images_respect_min_distance_in_a_skewed_cell():
    target, _ = sio2_target("mp-546546")  # triclinic, 9 atoms
    batch = random_structures("Si3O6", target.cell.array, True, 60, seed=11, min_distance=1.5)
    assert batch.min_distances().min() >= 1.5
    for atoms in batch:  # ASE's neighbour list counts every image, independently of our check
        assert atoms.pbc.all()
        assert neighbor_list("d", atoms, 1.5 - 1e-9).size == 0
    # a small cubic cell where wrapping matters: atoms near opposite faces are neighbours
    small = random_structures("Si2", np.eye(3) * 3.0, True, 200, seed=1, min_distance=1.4)
    for atoms in small:
        assert neighbor_list("d", atoms, 1.4 - 1e-9).size == 0


def test_same_seed_same_structures_other_seed_different():
    cell = np.eye(3) * 6.0
    first = random_structures("C5H12O", cell, False, 20, seed=5)
    again = random_structures("C5H12O", cell, False, 20, seed=5)
    other = random_structures("C5H12O", cell, False, 20, seed=6)
    assert np.array_equal(first.positions, again.positions)
    assert not np.allclose(first.positions, other.positions)


def test_impossible_density_names_min_distance():
    # molecule: no packing bound applies to an open box, so the attempts run out
    with pytest.raises(ValueError, match=r"^min_distance: could not place atom .* after 100 random trials"):
        random_structures("C5H12O", np.eye(3) * 2.5, False, 4, seed=0, min_distance=1.5, max_attempts=100)
    # periodic: more atoms than the densest packing allows is refused at once
    with pytest.raises(ValueError, match=r"^min_distance: 9 atoms at least 3.0 Å apart cannot fit"):
        random_structures("Si3O6", np.eye(3) * 5.0, True, 4, seed=0, min_distance=3.0)
    # periodic: an atom's own image is closer than the rule
    with pytest.raises(ValueError, match=r"^min_distance: every atom has a periodic image 2.000 Å away"):
        random_structures("Si", np.diag([2.0, 10.0, 10.0]), True, 1, seed=0, min_distance=2.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"composition": "C5H12Q"}, r"^composition: "),
        ({"cell": [[1, 0], [0, 1]]}, r"^cell: expected a 3x3"),
        ({"cell": np.zeros((3, 3))}, r"^cell: the cell has zero volume"),
        ({"pbc": [True, False]}, r"^pbc: expected three booleans"),
        ({"count": 0}, r"^count: got 0, expected a positive number"),
        ({"seed": -1}, r"^seed: got -1"),
        ({"min_distance": -0.1}, r"^min_distance: got -0.1"),
        ({"max_attempts": 0}, r"^max_attempts: got 0"),
    ],
)
def test_bad_input_names_the_field(kwargs, message):
    arguments = {"composition": "CH4", "cell": np.eye(3) * 5, "pbc": False, "count": 2, "seed": 0}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        random_structures(**arguments)
