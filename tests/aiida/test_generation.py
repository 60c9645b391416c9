"""Tests of the generation chain: the calcfunctions ``train`` → ``generate`` →
``select_representatives`` and the ``GenerationWorkChain`` around them.

Training is kept tiny (2 steps, small networks, a handful of molecules) so the whole module runs
in seconds; the tests check plumbing, provenance and input validation, not model quality.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_physgen.calculations.functions import generate, select_representatives, train
from aiida_physgen.data.generator_model import GeneratorModel
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.training import generate as generate_batch
from aiida_physgen.workflows.generation import GenerationWorkChain, validate_generation_inputs

RESOURCES = Path(__file__).resolve().parents[2] / "aiida_physgen" / "resources" / "logan"
MOLECULES_FILE = RESOURCES / "C5H12O_training.extxyz"
SIO2_TARGET_FILE = RESOURCES / "sio2" / "mp-546794_target.extxyz"
SIO2_TRAINING_FILE = RESOURCES / "sio2" / "mp-546794_training.extxyz"

BOX = 9.5
TINY = {
    "loop": {"steps": 2, "batch_size": 4},
    "rattle_copies": 0,
    "hidden": [32, 16],
    "critic_hidden": [16],
    "descriptor": {"n_max": 2, "l_max": 2, "max_neighbours": 8},
}
# two-step models put every atom near the box centre: switch the min-distance filter off here
# (test_select_drops_candidates_with_atoms_too_close covers it)
TINY_SELECTION = {"n_components": 3, "descriptor": {"n_max": 2, "l_max": 2, "max_neighbours": 8}, "min_distance": 0.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def molecules(n: int = 6) -> list[ase.Atoms]:
    return ase.io.read(MOLECULES_FILE, index=f":{n}")


def target(composition: str = "C5H12O", box: float = BOX) -> orm.Dict:
    return orm.Dict({"composition": composition, "cell": (np.eye(3) * box).tolist(), "pbc": [False, False, False]})


def train_inputs(composition: str = "C5H12O", box: float = BOX, **kwargs) -> dict:
    return {"family": orm.Str("logan"), "target": target(composition, box), **kwargs}


def created(node: orm.ProcessNode) -> list:
    return node.base.links.get_outgoing(link_type=LinkType.CREATE).all()


def assert_failed_without_outputs(node: orm.ProcessNode, result, status: int, *words: str) -> None:
    assert node.is_finished
    assert node.exit_status == status, (node.exit_status, node.exit_message)
    assert not node.is_finished_ok
    for word in words:
        assert word in node.exit_message, node.exit_message
    assert not result
    assert created(node) == []
    assert list(node.outputs) == []


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def training_set() -> StructureSet:
    return StructureSet.from_ase(molecules(6)).store()


@pytest.fixture(scope="module")
def trained(training_set):
    """Two seeds × two generator learning rates → four models."""
    outputs, node = train.run_get_node(
        training=training_set,
        seeds=orm.List([0, 1]),
        settings=orm.Dict(TINY),
        grid=orm.Dict({"loop": {"lr_generator": [1e-4, 3e-4]}}),
        **train_inputs(),
    )
    assert node.is_finished_ok, node.exit_message
    return outputs, node


@pytest.fixture(scope="module")
def models(trained) -> dict[str, GeneratorModel]:
    return dict(trained[0]["models"])


@pytest.fixture(scope="module")
def candidates(models) -> StructureSet:
    result, node = generate.run_get_node(count=orm.Int(10), seed=orm.Int(0), **models)
    assert node.is_finished_ok, node.exit_message
    return result


# ------------------------------------------------------------------------------------------ train
def test_train_one_model_per_seed_and_grid_point(models):
    assert sorted(models) == ["model_00", "model_01", "model_02", "model_03"]
    assert all(isinstance(model, GeneratorModel) and model.is_stored for model in models.values())
    # seeds vary fastest, then the grid
    assert [models[k].seed for k in sorted(models)] == [0, 1, 0, 1]
    assert [models[k].hyperparameters["loop"]["lr_generator"] for k in sorted(models)] == [1e-4, 1e-4, 3e-4, 3e-4]
    for model in models.values():
        assert model.family == "logan"
        assert model.role == "generator"
        assert model.steps == 2
        assert model.target["formula"] == "C5H12O"
        assert model.target["pbc"] == [False, False, False]
        np.testing.assert_allclose(model.target["cell"], np.eye(3) * BOX)
        assert model.hyperparameters["hidden"] == [32, 16]
        assert model.descriptor == {"r_cut": 5.0, "n_max": 2, "l_max": 2, "max_neighbours": 8, "radial": "gaussian"}
        curves = model.get_loss_curves()
        assert curves["steps"] == [2] and len(curves["wasserstein"]) == 1
    assert len({model.checksum for model in models.values()}) == 4


def test_train_models_are_queryable(trained, models):
    _, node = trained
    qb = orm.QueryBuilder()
    qb.append(orm.CalcFunctionNode, filters={"id": node.pk}, tag="calc")
    qb.append(
        GeneratorModel,
        with_incoming="calc",
        filters={
            "attributes.family": "logan",
            "attributes.seed": 1,
            "attributes.steps": 2,
            "attributes.target.formula": "C5H12O",
        },
        project="uuid",
    )
    assert sorted(qb.all(flat=True)) == sorted([models["model_01"].uuid, models["model_03"].uuid])


def test_train_models_generate(models):
    for model in models.values():
        batch = model.load().sample(3, seed=0)
        assert len(batch) == 3
        assert set(batch.formulas()) == {"C5H12O"}
        assert np.all(np.isfinite(batch.positions))
        # sigmoid outputs: every atom inside the box
        assert batch.positions.min() >= 0.0 and batch.positions.max() <= BOX


def test_train_provenance(trained, training_set, models):
    _, node = trained
    assert node.process_label == "train"
    inputs = {link.link_label: link.node for link in node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
    assert inputs["training"].uuid == training_set.uuid
    assert inputs["family"].value == "logan"
    assert inputs["target"]["composition"] == "C5H12O"
    creates = {link.link_label: link.node.uuid for link in created(node)}
    assert creates == {f"models__{label}": model.uuid for label, model in models.items()}
    for model in models.values():
        assert model.creator.uuid == node.uuid


# ------------------------------------------------------------------------------------------ generate
def test_generate_one_set_for_all_models(models, candidates):
    assert isinstance(candidates, StructureSet) and candidates.is_stored
    assert len(candidates) == 10 * 4
    assert candidates.formula_counts == {"C5H12O": 40}
    np.testing.assert_array_equal(candidates.get_array("model_index"), np.repeat(np.arange(4), 10))
    assert candidates.base.attributes.get("model_labels") == sorted(models)
    creator = candidates.creator
    assert creator.process_label == "generate"
    assert [link.node.uuid for link in created(creator)] == [candidates.uuid]
    inputs = {link.link_label for link in creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
    assert inputs == {"count", "seed", *models}
    # the same structures as the ML layer gives for the loaded models in sorted label order
    expected = generate_batch([models[label].load() for label in sorted(models)], 10, 0)
    assert candidates.base.attributes.get("model_uuids") == [models[label].uuid for label in sorted(models)]
    assert candidates.base.attributes.get("descriptor") == models["model_00"].descriptor
    np.testing.assert_allclose(candidates.get_array("positions"), expected.positions)


def test_generate_is_deterministic(models, candidates):
    again, node = generate.run_get_node(count=orm.Int(10), seed=orm.Int(0), **models)
    assert node.is_finished_ok
    assert again.uuid != candidates.uuid
    np.testing.assert_array_equal(again.get_array("positions"), candidates.get_array("positions"))
    other, node = generate.run_get_node(count=orm.Int(10), seed=orm.Int(1), **models)
    assert node.is_finished_ok
    assert not np.allclose(other.get_array("positions"), candidates.get_array("positions"))


def test_generate_models_differ(candidates):
    positions = candidates.get_array("positions").reshape(4, 10, 18, 3)
    for i in range(1, 4):
        assert not np.allclose(positions[0], positions[i])


# ------------------------------------------------------------------------------------------ select
def test_select_representatives(candidates):
    settings = {**TINY_SELECTION, "n_clusters": 5}
    outputs, node = select_representatives.run_get_node(
        candidates=candidates, seed=orm.Int(0), settings=orm.Dict(settings)
    )
    assert node.is_finished_ok, node.exit_message
    reps = outputs["representatives"]
    assert isinstance(reps, StructureSet) and len(reps) == 5
    structures = outputs["structures"]
    assert sorted(structures) == [f"rep_{i:02d}" for i in range(5)]
    assert all(isinstance(s, orm.StructureData) for s in structures.values())
    selection = outputs["selection"]
    assert isinstance(selection, orm.ArrayData)
    indices = selection.get_array("indices")
    assert indices.shape == (5,) and len(set(indices.tolist())) == 5
    assert selection.get_array("labels").shape == (40,)
    assert selection.get_array("pca_coordinates").shape == (40, 3)
    assert len(selection.base.attributes.get("explained_variance_ratio")) == 3
    plot = outputs["pca_plot"]
    assert isinstance(plot, orm.SinglefileData)
    assert plot.get_content(mode="rb").startswith(PNG_MAGIC)

    np.testing.assert_array_equal(reps.get_array("candidate_index"), indices)
    all_candidates = candidates.get_batch()
    for i, index in enumerate(indices):
        np.testing.assert_allclose(reps.get_ase(i).positions, all_candidates[int(index)].positions)
        np.testing.assert_allclose(structures[f"rep_{i:02d}"].get_ase().positions, all_candidates[int(index)].positions)
    # the representatives come from different clusters
    labels = selection.get_array("labels")
    assert sorted(labels[indices].tolist()) == list(range(5))
    assert {link.link_label.split("__")[0] for link in created(node)} == {
        "representatives",
        "structures",
        "selection",
        "pca_plot",
    }


def test_select_without_plot(candidates):
    settings = {**TINY_SELECTION, "n_clusters": 2, "plot": False}
    outputs, node = select_representatives.run_get_node(
        candidates=candidates, seed=orm.Int(0), settings=orm.Dict(settings)
    )
    assert node.is_finished_ok, node.exit_message
    assert "pca_plot" not in outputs
    assert len(outputs["representatives"]) == 2


# ------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("composition", "box", "words"),
    [
        ("C5H12", BOX, ("training", "'O'", "composition 'C5H12'")),  # O in training, not in composition
        ("C5H12ON", BOX, ("composition", "'N'")),  # N in composition, not in training
        ("C5H12O", 3.0, ("cell", "box")),  # box smaller than the molecules
        ("C5H12Q", BOX, ("composition",)),  # not a formula
    ],
    ids=["training-element-absent", "composition-element-missing", "box-too-small", "bad-formula"],
)
def test_train_invalid_input(training_set, composition, box, words):
    result, node = train.run_get_node(
        training=training_set, seeds=orm.List([0]), settings=orm.Dict(TINY), **train_inputs(composition, box)
    )
    assert_failed_without_outputs(node, result, 300, "invalid input", *words)


@pytest.mark.parametrize(
    ("settings", "grid", "words"),
    [
        ({**TINY, "loop": {"steps": -1}}, None, ("settings.loop.steps",)),
        ({**TINY, "no_such_setting": 1}, None, ("settings", "no_such_setting")),
        ({**TINY, "loop": {"stepz": 1}}, None, ("settings.loop.stepz",)),
        (TINY, {"no_such_setting": [1, 2]}, ("grid", "no_such_setting")),
        (TINY, {"loop": {"lr_critic": 1e-3}}, ("grid.loop.lr_critic", "list")),
        ({**TINY, "loop": {"lr_critic": 0}}, None, ("lr_critic",)),
    ],
    ids=[
        "negative-steps",
        "unknown-setting",
        "unknown-nested-setting",
        "unknown-grid-key",
        "grid-not-a-list",
        "zero-lr",
    ],
)
def test_train_invalid_settings(training_set, settings, grid, words):
    extra = {"grid": orm.Dict(grid)} if grid is not None else {}
    result, node = train.run_get_node(
        training=training_set, seeds=orm.List([0]), settings=orm.Dict(settings), **train_inputs(), **extra
    )
    assert_failed_without_outputs(node, result, 300, *words)


def test_train_no_seeds(training_set):
    result, node = train.run_get_node(
        training=training_set, seeds=orm.List([]), settings=orm.Dict(TINY), **train_inputs()
    )
    assert_failed_without_outputs(node, result, 300, "seeds")


def test_train_nan_is_310(training_set):
    settings = {**TINY, "loop": {"optimizer": "adam", "lr_generator": 1e30, "lr_critic": 1e30, "steps": 5}}
    result, node = train.run_get_node(
        training=training_set, seeds=orm.List([0, 1]), settings=orm.Dict(settings), **train_inputs()
    )
    assert_failed_without_outputs(node, result, 310, "diverged", "NaN", "loss")


@pytest.mark.parametrize("count", [0, -3])
def test_generate_nonpositive_count(models, count):
    result, node = generate.run_get_node(count=orm.Int(count), seed=orm.Int(0), **models)
    assert_failed_without_outputs(node, result, 300, "count", str(count))


def test_generate_without_models():
    result, node = generate.run_get_node(count=orm.Int(3), seed=orm.Int(0))
    assert_failed_without_outputs(node, result, 300, "models")


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({**TINY_SELECTION, "n_clusters": 0}, ("n_clusters",)),
        ({**TINY_SELECTION, "n_clusters": 3, "bogus": 1}, ("settings", "bogus")),
    ],
    ids=["zero-clusters", "unknown-key"],
)
def test_select_invalid_input(candidates, settings, words):
    result, node = select_representatives.run_get_node(
        candidates=candidates, seed=orm.Int(0), settings=orm.Dict(settings)
    )
    assert_failed_without_outputs(node, result, 300, *words)


def test_empty_training_set_is_refused():
    with pytest.raises(ValueError, match="structures"):
        StructureSet.from_ase([])


# ------------------------------------------------------------------------------------------ workchain
def count_nodes() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_generation_workchain_end_to_end():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase(molecules(5))
    builder.target = target()
    builder.seeds = orm.List([0, 1])
    builder.settings = orm.Dict(TINY)
    builder.count = orm.Int(6)
    builder.generation_seed = orm.Int(0)
    builder.selection_settings = orm.Dict({**TINY_SELECTION, "n_clusters": 4})
    builder.selection_seed = orm.Int(0)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    assert sorted(results) == sorted(["models", "candidates", "representatives", "structures", "selection", "pca_plot"])
    assert sorted(results["models"]) == ["model_00", "model_01"]
    assert len(results["candidates"]) == 12
    assert len(results["representatives"]) == 4
    assert len(results["structures"]) == 4
    assert results["selection"].get_array("indices").shape == (4,)
    assert results["pca_plot"].get_content(mode="rb").startswith(PNG_MAGIC)

    called = sorted(node.called, key=lambda n: n.ctime)
    assert [c.process_label for c in called] == [
        "normalise_training_inputs",
        "train",
        "generate",
        "select_representatives",
    ]
    assert all(isinstance(c, orm.CalcFunctionNode) and c.is_finished_ok for c in called)
    _, train_node, generate_node, select_node = called
    assert len(node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()) == 4
    # the workchain returns what its calcfunctions created
    assert results["candidates"].creator.uuid == generate_node.uuid
    assert results["representatives"].creator.uuid == select_node.uuid
    assert {m.creator.uuid for m in results["models"].values()} == {train_node.uuid}
    # the chain is wired node to node
    train_inputs = train_node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    assert {link.node.uuid for link in train_inputs if link.link_label == "training"} == {node.inputs.training.uuid}
    generate_inputs = {link.node.uuid for link in generate_node.base.links.get_incoming().all()}
    assert {m.uuid for m in results["models"].values()} <= generate_inputs
    select_inputs = {link.node.uuid for link in select_node.base.links.get_incoming().all()}
    assert results["candidates"].uuid in select_inputs
    returned = {link.link_label for link in node.base.links.get_outgoing(link_type=LinkType.RETURN).all()}
    assert "candidates" in returned and "representatives" in returned


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_generation_workchain_named_conditions_and_validity():
    """Named conditions give one candidate set each; the validity step keeps what its check accepts, joins the
    sets (condition_index, set_index) and the selection chooses from the joined valid set."""
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase(molecules(5))
    builder.target = target()
    builder.seeds = orm.List([0])
    builder.settings = orm.Dict(TINY)
    builder.count = orm.Int(5)
    builder.conditions = orm.Dict({"first": {}, "second-set": {}})
    builder.validity = orm.Str("none")
    builder.selection_settings = orm.Dict({**TINY_SELECTION, "n_clusters": 3})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert sorted(results["generated"]) == ["first", "second_set"]
    candidates = results["candidates"]
    assert len(candidates) == 10
    batch = candidates.get_batch()
    assert sorted(Counter(batch.info["condition_index"].tolist()).items()) == [(0, 5), (1, 5)]
    assert batch.info["set_index"].tolist() == [0, 1, 2, 3, 4] * 2
    validity = candidates.base.attributes.get("validity")
    assert validity["check"] == "none" and validity["conditions"] == ["first", "second_set"]
    assert validity["counts"]["first"] == {"generated": 5, "valid": 5, "reasons": {}}
    assert candidates.creator.process_label == "check_validity"
    # the provenance of each candidate still resolves to its model through the joined set
    assert candidates.base.attributes.get("model_uuids") == [results["models"]["model_00"].uuid]
    called = [c.process_label for c in sorted(node.called, key=lambda n: n.ctime)]
    assert called == [
        "normalise_training_inputs",
        "train",
        "generate",
        "generate",
        "check_validity",
        "select_representatives",
    ]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"validity": "no-such-check"}, "validity: unknown validity check 'no-such-check'"),
        ({"validity_settings": {"a": 1}}, "validity_settings: given without a validity check"),
        ({"validity": "none", "validity_settings": {"a": 1}}, "validity_settings: unknown key"),
        ({"conditions": {}}, "conditions: expected at least one named condition"),
        ({"conditions": {"x": {"space_group": 216}}}, "conditions.x: condition: the logan family takes no"),
        ({"conditions": {"x": {}}, "condition": {}}, "conditions: give either one condition"),
    ],
)
def test_generation_validity_and_conditions_are_checked_at_launch(extra, words):
    nodes = {key: orm.Str(value) if isinstance(value, str) else orm.Dict(value) for key, value in extra.items()}
    inputs = {"family": orm.Str("logan"), "target": target(), "seeds": orm.List([0]), "count": orm.Int(20), **nodes}
    message = validate_generation_inputs(inputs)
    assert message and words in message, message


def test_generation_workchain_maps_a_failed_step_onto_its_exit_code():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase(molecules(3))
    builder.target = target()
    builder.seeds = orm.List([0])
    builder.settings = orm.Dict(
        {**TINY, "loop": {"optimizer": "adam", "lr_generator": 1e30, "lr_critic": 1e30, "steps": 5}}
    )
    builder.count = orm.Int(4)
    builder.selection_settings = orm.Dict({**TINY_SELECTION, "n_clusters": 2})
    results, node = run_get_node(builder)
    assert node.exit_status == 310, (node.exit_status, node.exit_message)
    assert "NaN" in node.exit_message
    assert not node.exit_message.startswith("training diverged: training diverged")
    called = sorted(node.called, key=lambda n: n.ctime)
    assert [c.process_label for c in called] == ["normalise_training_inputs", "train"]
    assert called[1].exit_status == 310
    assert "models" not in results and "candidates" not in results


def test_generation_workchain_checks_training_data_against_the_target_at_launch():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase(molecules(3))
    builder.target = target("C5H12")  # parses, but the training molecules hold O
    builder.seeds = orm.List([0])
    builder.settings = orm.Dict(TINY)
    builder.count = orm.Int(4)
    builder.selection_settings = orm.Dict({**TINY_SELECTION, "n_clusters": 2})
    before = count_nodes()
    with pytest.raises(ValueError, match=r"training: element\(s\) \['O'\]"):
        run_get_node(builder)
    assert count_nodes() == before
    builder.target = target()
    builder.device = orm.Str("tpu")
    with pytest.raises(ValueError, match="device"):
        run_get_node(builder)


def test_generation_workchain_validator_rejects_before_storing():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase(molecules(3))
    builder.target = target()
    builder.seeds = orm.List([0])
    builder.grid = orm.Dict({"loop": {"lr_generator": [1e-4, 3e-4]}})  # 1 seed × 2 = 2 members
    builder.settings = orm.Dict(TINY)
    builder.count = orm.Int(2)  # 4 candidates
    builder.selection_settings = orm.Dict({**TINY_SELECTION, "n_clusters": 5})
    before = count_nodes()
    with pytest.raises(ValueError, match=r"selection_settings\.n_clusters: got 5, .* the 4 candidates"):
        run_get_node(builder)
    assert count_nodes() == before
    assert not builder.training.is_stored


def test_generation_inputs_validator_boundary():
    logan = {"family": orm.Str("logan")}
    inputs = {
        **logan,
        "seeds": orm.List([0]),
        "grid": orm.Dict({"loop": {"lr_generator": [1e-4, 3e-4]}}),
        "count": orm.Int(2),
    }
    assert validate_generation_inputs({**inputs, "selection_settings": orm.Dict({"n_clusters": 4})}) is None
    message = validate_generation_inputs({**inputs, "selection_settings": orm.Dict({"n_clusters": 5})})
    assert message and "n_clusters" in message and "4" in message
    # the default of 20 clusters needs 20 candidates
    assert "n_clusters" in validate_generation_inputs(inputs)
    assert "count" in validate_generation_inputs({**inputs, "count": orm.Int(0)})
    assert "target.composition" in validate_generation_inputs({**logan, "target": target("C5H12Q")})
    bad_cell = orm.Dict({"composition": "C5H12O", "cell": [[1, 0, 0], [0, 1, 0]], "pbc": False})
    assert "target.cell" in validate_generation_inputs({**logan, "target": bad_cell})
    assert "family" in validate_generation_inputs({"family": orm.Str("no-such-family")})
    assert "settings.loop.stepz" in validate_generation_inputs({**inputs, "settings": orm.Dict({"loop": {"stepz": 1}})})
    # no family: the required port speaks (the validator has nothing to check the rest against)
    assert validate_generation_inputs({"target": target("C5H12Q")}) is None
    assert (
        not GenerationWorkChain.spec().inputs["family"].has_default()
        and GenerationWorkChain.spec().inputs["family"].required
    )


# ------------------------------------------------------------------------------------------ SiO2
@pytest.mark.slow
def test_sio2_periodic_chain():
    target = ase.io.read(SIO2_TARGET_FILE)
    assert len(target) == 6 and all(target.pbc)
    training = StructureSet.from_ase(ase.io.read(SIO2_TRAINING_FILE, index=":5"))
    composition = "Si2O4"
    assert Counter(target.get_chemical_symbols()) == {"Si": 2, "O": 4}
    outputs, node = train.run_get_node(
        training=training,
        family=orm.Str("logan"),
        target=orm.Dict({"composition": composition, "cell": target.cell.array.tolist(), "pbc": True}),
        seeds=orm.List([0]),
        settings=orm.Dict(TINY),
    )
    assert node.is_finished_ok, node.exit_message
    model = outputs["models"]["model_00"]
    assert model.target["formula"] == "O4Si2"
    assert model.target["pbc"] == [True, True, True]

    candidates, node = generate.run_get_node(count=orm.Int(6), seed=orm.Int(0), model_00=model)
    assert node.is_finished_ok, node.exit_message
    assert len(candidates) == 6 and candidates.pbc == [True, True, True]
    for atoms in candidates:
        np.testing.assert_allclose(atoms.cell.array, target.cell.array, atol=1e-6)
        assert atoms.get_chemical_formula(mode="hill") == "O4Si2"
        scaled = atoms.get_scaled_positions(wrap=False)
        assert scaled.min() >= -1e-6 and scaled.max() <= 1 + 1e-6

    outputs, node = select_representatives.run_get_node(
        candidates=candidates, seed=orm.Int(0), settings=orm.Dict({**TINY_SELECTION, "n_clusters": 3})
    )
    assert node.is_finished_ok, node.exit_message
    assert len(outputs["representatives"]) == 3
    assert all(all(s.pbc) for s in outputs["structures"].values())


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_select_drops_candidates_with_atoms_too_close():
    """Candidates with two atoms closer than min_distance are never chosen (no DFT code takes them)."""
    import ase.io

    from aiida_physgen.resources import resource_path

    molecules = ase.io.read(resource_path("logan/C5H12O_training.extxyz"), index=":12")
    squashed = []
    for atoms in molecules[:6]:
        bad = atoms.copy()
        bad.positions[1] = bad.positions[0] + [0.3, 0.0, 0.0]
        squashed.append(bad)
    candidates = StructureSet.from_ase(molecules + squashed)
    settings = {"n_components": 3, "descriptor": {"n_max": 2, "l_max": 2, "max_neighbours": 8}, "n_clusters": 6}
    outputs, node = select_representatives.run_get_node(
        candidates=candidates, seed=orm.Int(0), settings=orm.Dict(settings)
    )
    assert node.is_finished_ok, node.exit_message
    chosen = outputs["representatives"].get_batch().info["candidate_index"]
    assert len(chosen) == 6 and chosen.max() < 12
    assert outputs["selection"].base.attributes.get("n_too_close") == 6
    assert list(outputs["selection"].get_array("candidate_index")) == list(range(12))

    # more clusters than survivors: one per survivor, said in the report and the attributes, no lost work
    outputs, node = select_representatives.run_get_node(
        candidates=candidates, seed=orm.Int(0), settings=orm.Dict({**settings, "n_clusters": 13})
    )
    assert node.is_finished_ok, node.exit_message
    assert len(outputs["representatives"]) == 12
    assert outputs["selection"].base.attributes.get("requested_clusters") == 13
    assert outputs["selection"].base.attributes.get("n_clusters") == 12


# ------------------------------------------------------------------------------------------ protocols
def test_generation_protocols_give_the_papers_settings():
    assert {"fast", "balanced", "paper"} <= set(GenerationWorkChain.get_available_protocols("logan"))
    training = StructureSet.from_ase(molecules(3))
    before = count_nodes()
    builder = GenerationWorkChain.get_builder_from_protocol(
        training, {"composition": "C5H12O", "cell": (np.eye(3) * BOX).tolist(), "pbc": False}, "logan", protocol="paper"
    )
    assert count_nodes() == before  # building stores nothing
    assert builder.family.value == "logan"
    assert builder.seeds.get_list() == list(range(12))
    assert builder.count.value == 2000
    settings = builder.settings.get_dict()
    assert settings["loop"]["steps"] == 45000
    assert settings["descriptor"] == {"r_cut": 5.0, "n_max": 4, "max_neighbours": 20}
    assert "lr_generator" not in settings["loop"]  # the family default, 1e-4, as in the paper
    assert builder.selection_settings["n_clusters"] == 20

    target = ase.io.read(SIO2_TARGET_FILE)
    crystal = GenerationWorkChain.get_builder_from_protocol(
        StructureSet.from_file(SIO2_TRAINING_FILE),
        {"composition": "Si2O4", "cell": target.cell.array.tolist(), "pbc": True},
        "logan",
        protocol="paper",
    )
    assert crystal.seeds.get_list() == list(range(20))
    settings = crystal.settings.get_dict()
    assert settings["loop"]["steps"] == 60000
    assert settings["descriptor"]["r_cut"] == 6.0
    assert settings["loop"]["lr_generator"] == pytest.approx(10**-3.5, rel=1e-4)


def test_generation_protocol_overrides_and_errors():
    training = StructureSet.from_ase(molecules(3))
    box = {"composition": "C5H12O", "cell": (np.eye(3) * BOX).tolist(), "pbc": False}
    builder = GenerationWorkChain.get_builder_from_protocol(
        training,
        box,
        "logan",
        protocol="fast",
        overrides={"settings": {"loop": {"steps": 7}}, "seeds": [3], "count": 9},
    )
    assert builder.settings["loop"]["steps"] == 7
    assert builder.settings["loop"]["lr_generator"] == 1e-3  # the rest of the protocol is kept
    assert builder.seeds.get_list() == [3] and builder.count.value == 9
    with pytest.raises(ValueError, match="unknown protocol 'superfast'"):
        GenerationWorkChain.get_builder_from_protocol(training, box, "logan", protocol="superfast")
    with pytest.raises(ValueError, match="protocol: unknown key"):
        GenerationWorkChain.get_builder_from_protocol(training, box, "logan", overrides={"stepz": 3})
    with pytest.raises(ValueError, match="target.composition"):
        GenerationWorkChain.get_builder_from_protocol(training, {**box, "composition": "C5H12Q"}, "logan")


@pytest.mark.slow
def test_fast_protocol_runs():
    """The default protocol with fewer steps and candidates runs end to end (the demo's shape)."""
    builder = GenerationWorkChain.get_builder_from_protocol(
        StructureSet.from_ase(molecules(4)),
        {"composition": "C5H12O", "cell": (np.eye(3) * BOX).tolist(), "pbc": False},
        "logan",
        overrides={"settings": TINY, "seeds": [0, 1], "count": 5, "selection": {**TINY_SELECTION, "n_clusters": 3}},
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert len(results["candidates"]) == 10 and len(results["representatives"]) == 3
