"""The random baseline through the generation chain: no training, the same budget and selection."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import run_get_node
from ase.build import molecule

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.workflows.generation import GenerationWorkChain


def test_baseline_draws_random_candidates_and_selects():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase([molecule("H2O"), molecule("H2O2")])
    builder.target = orm.Dict({"composition": "H2O", "cell": (np.eye(3) * 7).tolist(), "pbc": False})
    builder.seeds = orm.List([0, 1])
    builder.count = orm.Int(10)
    builder.selection_settings = orm.Dict(
        {"n_components": 2, "n_clusters": 3, "min_distance": 0.7, "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2}}
    )
    builder.baseline = orm.Bool(True)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert "models" not in results
    candidates = results["candidates"]
    assert len(candidates) == 20 and candidates.base.attributes.get("generator") == "random"
    assert candidates.base.attributes.get("min_distance") == 0.7
    for atoms in candidates:
        distances = atoms.get_all_distances()
        assert distances[np.triu_indices(len(atoms), 1)].min() >= 0.7 - 1e-9
    assert [c.process_label for c in sorted(node.called, key=lambda n: n.ctime)] == [
        "generate_random",
        "select_representatives",
    ]
    assert len(results["structures"]) == 3
    # no model: the representatives say which candidate they are, and nothing about a model
    extras = results["structures"]["rep_00"].base.extras.all
    assert "candidate_index" in extras and "model_uuid" not in extras
