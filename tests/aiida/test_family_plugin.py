"""A third-party family plugs in through its entry point alone: the ``toy`` family of tests/plugins/physgen_toy
(a package outside aiida_physgen, registered by its own pyproject.toml) trains, generates and is selected by
the generic GenerationWorkChain, with no change to aiida_physgen."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.family import available_families
from aiida_physgen.workflows.generation import GenerationWorkChain

TOY_PROJECT = Path(__file__).resolve().parents[1] / "plugins" / "physgen_toy"


@pytest.fixture
def toy_installed(toy_plugins):
    assert "toy" in available_families()


def water(n: int = 6) -> StructureSet:
    import sys

    sys.path.insert(0, str(TOY_PROJECT))  # importable, but not registered: no entry point is visible
    try:
        from physgen_toy.family import water_molecules
    finally:
        sys.path.remove(str(TOY_PROJECT))
    return StructureSet.from_ase(water_molecules(n))


@pytest.mark.slow
def test_toy_family_runs_through_the_generation_workchain(toy_installed):
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("toy")
    builder.training = water()
    builder.target = orm.Dict({"composition": "H2O", "box": 6.0})
    builder.seeds = orm.List([0, 1, 2])
    builder.settings = orm.Dict({"loop": {"steps": 5}})
    builder.count = orm.Int(10)
    builder.selection_settings = orm.Dict(
        {"n_clusters": 4, "n_components": 2, "min_distance": 0.0, "descriptor": {"n_max": 2, "l_max": 2}}
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    models = results["models"]
    assert sorted(models) == ["model_00", "model_01", "model_02"]
    assert {m.family for m in models.values()} == {"toy"}
    assert [models[k].seed for k in sorted(models)] == [0, 1, 2]
    assert models["model_00"].target == {"composition": "H2O", "box": 6.0}
    candidates = results["candidates"]
    assert len(candidates) == 30 and candidates.formula_counts == {"H2O": 30}
    assert candidates.base.attributes.get("descriptor") is None  # toy models have none: selection defaults
    assert len(results["representatives"]) == 4
    positions = candidates.get_array("positions")
    assert positions.min() >= 0.0 and positions.max() <= 6.0


def test_toy_family_is_checked_at_launch(toy_installed):
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("toy")
    builder.training = water(2)
    builder.target = orm.Dict({"composition": "H2O", "box": -1.0})
    builder.seeds = orm.List([0])
    builder.count = orm.Int(30)
    with pytest.raises(ValueError, match="target.box"):
        run_get_node(builder)
    assert not builder.training.is_stored


def test_unknown_family_is_refused_at_launch():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("toy")  # not on the path in this test
    builder.training = water(2)
    builder.target = orm.Dict({"composition": "H2O", "box": 6.0})
    with pytest.raises(ValueError, match="family: unknown generator family 'toy'"):
        run_get_node(builder)
