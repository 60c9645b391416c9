"""Equivalent launches share cached trainings: inputs are normalised before ``physgen.train`` sees them."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from ase.build import molecule
from tiny_settings import TINIEST as TINY

from aiida_physgen.calculations.functions import normalise_training_inputs
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.family import get_family
from aiida_physgen.workflows.generation import GenerationWorkChain

SELECTION = {
    "n_components": 2,
    "n_clusters": 2,
    "min_distance": 0.0,
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}


def training() -> StructureSet:
    return StructureSet.from_ase([molecule("H2O"), molecule("H2O2"), molecule("H2O")])


def builder(cell, settings):
    b = GenerationWorkChain.get_builder()
    b.family = orm.Str("logan")
    b.training = training()  # a new node each time: equal content must give equal hashes
    b.target = orm.Dict({"composition": "H2O", "cell": cell, "pbc": False})
    b.seeds = orm.List([0])
    b.settings = orm.Dict(settings)
    b.count = orm.Int(4)
    b.selection_settings = orm.Dict(SELECTION)
    return b


def _train_node(node):
    return next(n for n in node.called if n.process_label == "train")


def test_normalised_inputs_are_equal_for_equivalent_requests():
    family = get_family("logan")
    spelled_out = {**TINY, "loop": {**TINY["loop"], "n_critic": 5, "gp_weight": 10}}  # defaults, gp_weight as int
    a = normalise_training_inputs(
        orm.Str("logan"),
        orm.Dict({"composition": "H2O", "cell": [[5, 0, 0], [0, 5, 0], [0, 0, 5]], "pbc": False}),
        orm.List([0]),
        orm.Dict(TINY),
    )
    b = normalise_training_inputs(
        orm.Str("logan"),
        orm.Dict({"composition": "H2O", "cell": [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]], "pbc": [False] * 3}),
        orm.List([0]),
        orm.Dict(spelled_out),
    )
    for key in ("target", "seeds", "settings"):
        assert a[key].base.caching.get_hash() == b[key].base.caching.get_hash(), key
    assert a["settings"]["descriptor"]["radial"] == family.settings(None).descriptor.radial  # defaults filled in
    assert a["settings"]["loop"]["gp_weight"] == 10.0 and isinstance(a["settings"]["loop"]["gp_weight"], float)


def test_bad_input_to_normalisation_is_exit_300():
    _, node = normalise_training_inputs.run_get_node(
        orm.Str("logan"), orm.Dict({"composition": "H2O", "cell": [[5, 0, 0]], "pbc": False}), orm.List([0])
    )
    assert node.exit_status == 300 and "target.cell" in node.exit_message


@pytest.mark.slow
def test_second_equivalent_launch_reuses_the_training():
    with enable_caching():
        _, first = run_get_node(builder([[5, 0, 0], [0, 5, 0], [0, 0, 5]], TINY))
        assert first.is_finished_ok, first.exit_message
        spelled_out = {**TINY, "loop": {**TINY["loop"], "n_critic": 5, "gp_weight": 10}}
        _, second = run_get_node(builder([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], spelled_out))
        assert second.is_finished_ok, second.exit_message
    source = _train_node(second).base.caching.get_cache_source()
    assert source == _train_node(first).uuid
    assert [m.base.attributes.get("checksum") for m in first.outputs.models.values()] == [
        m.base.attributes.get("checksum") for m in second.outputs.models.values()
    ]
