"""``physgen.generate_random``: the random baseline as a calcfunction on the test profile."""

import numpy as np
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.neighborlist import neighbor_list

from aiida_physgen.calculations.baseline import generate_random
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.random_structures import random_structures
from aiida_physgen.resources import sio2_target


def test_molecule_baseline_outputs_attributes_and_provenance():
    # the target as a user writes it: integers in the cell, one pbc flag
    target = orm.Dict({"composition": "C5H12O", "cell": [[8, 0, 0], [0, 8, 0], [0, 0, 8]], "pbc": False})
    result, node = run_get_node(
        generate_random,
        family=orm.Str("logan"),
        target=target,
        count=orm.Int(40),
        seed=orm.Int(7),
        min_distance=orm.Float(0.9),
    )
    assert node.is_finished_ok
    assert isinstance(result, StructureSet) and len(result) == 40
    assert result.base.attributes.get("generator") == "random"
    assert result.base.attributes.get("min_distance") == 0.9
    assert result.base.attributes.get("target") == {
        "composition": "C5H12O",
        "cell": [[8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]],
        "pbc": [False] * 3,
    }
    assert result.get_array("model_index").tolist() == [0] * 40
    batch = result.get_batch()
    assert batch.formula_counts() == {"C5H12O": 40}
    assert batch.min_distances().min() >= 0.9
    # the node holds exactly what the plain function gives for the same seed
    expected = random_structures("C5H12O", np.eye(3) * 8, False, 40, 7, min_distance=0.9)
    assert np.array_equal(batch.positions, expected.positions)
    assert {link.link_label for link in node.base.links.get_incoming().all()} >= {
        "target",
        "count",
        "seed",
        "min_distance",
    }


def test_entry_point_and_crystal_target_with_default_min_distance():
    assert CalculationFactory("physgen.generate_random") is generate_random
    target_atoms, _ = sio2_target("mp-546794")
    target = orm.Dict(
        {
            "composition": target_atoms.get_chemical_formula(),
            "cell": target_atoms.cell.array.tolist(),
            "pbc": [True, True, True],
        }
    )
    result, node = run_get_node(
        generate_random, family=orm.Str("logan"), target=target, count=orm.Int(5), seed=orm.Int(1)
    )
    assert node.is_finished_ok
    assert result.base.attributes.get("min_distance") == 0.5
    assert result.formula_counts == {target_atoms.get_chemical_formula("hill"): 5}
    for atoms in result:
        assert atoms.pbc.all() and np.allclose(atoms.cell.array, target_atoms.cell.array)
        assert neighbor_list("d", atoms, 0.5 - 1e-9).size == 0


def test_bad_input_ends_on_exit_code_300_naming_the_field():
    good = {"composition": "CH4", "cell": np.eye(3).tolist(), "pbc": False}
    cases = [
        ({"target": orm.Dict({**good, "composition": "CH4Q"})}, "target.composition:"),
        ({"target": orm.Dict({**good, "cell": [[1, 0, 0]]})}, "target.cell:"),
        ({"count": orm.Int(0)}, "count: got 0"),
        ({"min_distance": orm.Float(-1.0)}, "min_distance: got -1.0"),
        ({"min_distance": orm.Float(3.0), "target": orm.Dict({**good, "composition": "C20"})}, "min_distance: "),
    ]
    for change, message in cases:
        inputs = {
            "family": orm.Str("logan"),
            "target": orm.Dict(good),
            "count": orm.Int(2),
            "seed": orm.Int(0),
            **change,
        }
        _, node = run_get_node(generate_random, **inputs)
        assert node.exit_status == 300, change
        assert message in node.exit_message, (change, node.exit_message)
        assert not node.base.links.get_outgoing().all()
    assert 300 in {code.status for code in generate_random.process_class.spec().exit_codes.values()}


def test_a_target_without_composition_and_cell_cannot_be_drawn_at_random():
    """The baseline asks the family to read the target; a crystal-GAN target (space groups) has no cell to fill."""
    _, node = run_get_node(
        generate_random,
        family=orm.Str("crystal_gan"),
        target=orm.Dict({"space_groups": [216]}),
        count=orm.Int(2),
        seed=orm.Int(0),
    )
    assert node.exit_status == 300
    assert (
        "the random baseline draws atoms of a composition in a cell; the crystal_gan target has no" in node.exit_message
    )
