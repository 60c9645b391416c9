"""The crystal-GAN chain in AiiDA: training filter → crystal GAN → generation for two space groups →
validity → CHGNet → references → formation energy, uniqueness, novelty → report, with provenance and the
launch checks. A tiny model and a few CHGNet steps keep it short: this checks plumbing and provenance,
not model quality (the validity thresholds are opened so that an untrained model's crystals pass)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import bulk

from aiida_physgen.calculations.crystals import crystal_training_set, crystal_validity, pick_crystals
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.crystal_data import example_structures
from aiida_physgen.workflows.crystal_gan import CrystalGanWorkChain

pytest.importorskip("chgnet")

TINY = {"hidden": 32, "critic_hidden": 32, "embedding": 16, "noise_dim": 8, "augmentations": 4,
        "loop": {"steps": 30, "batch_size": 16, "n_critic": 2, "log_every": 5}}
OPEN_VALIDITY = {"min_distance": 0.05, "density_range": [0.01, 500.0]}


@pytest.fixture(scope="module")
def examples():
    batch = example_structures()
    return batch.subset(list(range(24)))


def _builder(examples, **overrides):
    builder = CrystalGanWorkChain.get_builder()
    builder.training = StructureSet(examples)
    builder.space_groups = orm.List([216])
    builder.train.settings = orm.Dict(TINY)
    builder.generate.conditions = orm.Dict({"F-43m": {"space_group": 216}, "Fm-3m": {"space_group": "Fm-3m"}})
    builder.generate.count = orm.Int(12)
    builder.validity = orm.Dict(OPEN_VALIDITY)
    builder.cheap_settings = orm.Dict({"max_steps": 3})
    for key, value in overrides.items():
        builder[key] = value
    return builder


@pytest.fixture(scope="module")
def chain(aiida_profile, examples):
    results, node = run_get_node(_builder(examples))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results, node


def test_chain_runs_with_full_provenance(chain):
    results, node = chain
    assert len(results["training_set"]) == 24
    assert results["training_set"].creator.process_type == "aiida.calculations:physgen.crystal_training_set"
    (model,) = results["models"].values()
    assert model.family == "crystal_gan"
    generated = results["generated"]
    assert set(generated) == {"F_43m", "Fm_3m"}
    assert generated["Fm_3m"].creator.inputs.condition.get_dict() == {"space_group": "Fm-3m"}
    assert set(generated["Fm_3m"].get_batch().info["space_group_requested"]) == {225}
    valid = results["valid"]
    assert valid.creator.process_type == "aiida.calculations:physgen.crystal_validity"
    counts = valid.base.attributes.get("counts")
    assert counts["generated"] == 24 and counts["per_set"]["F_43m"]["generated"] == 12
    info = valid.get_batch().info
    # every valid crystal points back at the set and index it was generated as
    assert set(info["generated_set"]) <= {0, 1} and (info["min_pair_distance"] >= 0.05).all()
    relaxed = results["relaxed"]
    assert relaxed.creator.process_type == "aiida.calculations:physgen.relax_cheap"
    assert relaxed.creator.inputs.settings["method"] == "chgnet"
    assessed = results["assessed"].get_batch()
    assert {"formation_energy", "unique", "novel", "group", "generated_index"} <= set(assessed.info)
    references = results["assessed"].base.attributes.get("references")
    assert set(references) == set(valid.elements)
    report = results["report"]
    c = report["counts"]
    assert c["generated"] >= c["valid"] >= c["relaxed"] >= c["unique"] >= c["unique_novel"]
    assert "| valid |" in report["text"]
    assert results["histogram"].get_content(mode="rb")[:4] == b"\x89PNG"


def test_querybuilder_finds_the_model_behind_an_assessed_crystal(chain):
    results, node = chain
    qb = orm.QueryBuilder()
    qb.append(CrystalGanWorkChain, filters={"id": node.pk}, tag="chain")
    qb.append(StructureSet, with_incoming="chain", edge_filters={"label": {"like": "generated__%"}})
    assert qb.count() == 2
    # from the assessed set back to the model: assessed ← relax_cheap ← valid ← validity ← generated ← model
    qb = orm.QueryBuilder()
    qb.append(StructureSet, filters={"id": results["assessed"].pk}, tag="assessed")
    qb.append(orm.Node, with_descendants="assessed", filters={"node_type": {"like": "data.physgen.generator_model%"}},
              project="uuid")
    assert set(qb.all(flat=True)) == {model.uuid for model in results["models"].values()}


def test_training_filter_says_what_it_dropped(examples):
    salt = bulk("NaCl", "rocksalt", a=5.64)
    mixed = StructureBatch.concatenate([examples.subset([0, 1]), StructureBatch.from_atoms([salt])])
    outputs, node = crystal_training_set.run_get_node(structures=StructureSet(mixed))
    assert node.is_finished_ok
    training = outputs["training"]
    assert len(training) == 2 and list(training.get_batch().info["space_group"]) == [216, 216]
    assert training.base.attributes.get("dropped") == [[2, "not a ternary: 2 element(s) ['Cl', 'Na']"]]
    _, node = crystal_training_set.run_get_node(structures=StructureSet(StructureBatch.from_atoms([salt])))
    assert node.exit_status == 340 and "training filter" in node.exit_message


def test_validity_stage_refuses_bad_settings_and_ends_when_nothing_is_valid(examples):
    _, node = crystal_validity.run_get_node(settings=orm.Dict({"min_distanse": 1.0}),
                                            a=StructureSet(examples.subset([0])))
    assert node.exit_status == 300 and "min_distanse" in node.exit_message
    _, node = crystal_validity.run_get_node(settings=orm.Dict({"min_distance": 50.0}),
                                            a=StructureSet(examples.subset([0, 1])))
    assert node.exit_status == 340 and not node.base.links.get_outgoing().all()


@pytest.mark.parametrize("path, value, field", [
    (("generate", "conditions"), {"x": {"space_group": "P2/m"}}, "generate.conditions.x"),
    (("generate", "conditions"), {"x": {"elements": ["Xx", "Zn", "As"]}}, "generate.conditions.x"),
    (("space_groups",), [14], "target.space_groups"),
    (("train", "settings"), {"lambda_inter": -1}, "lambda_inter"),
    (("cheap_settings",), {"fmax": 0}, "fmax"),
])
def test_launch_refuses_bad_input_before_any_work(examples, path, value, field):
    builder = _builder(examples)
    node = orm.List(value) if isinstance(value, list) else orm.Dict(value)
    if len(path) == 2:
        builder[path[0]][path[1]] = node
    else:
        builder[path[0]] = node
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        run_get_node(builder)


def test_pick_takes_the_lowest_unique_novel_crystals_as_primitive_cells(examples):
    batch = examples.subset([0, 1, 2])
    batch.info.update(formation_energy=np.array([-0.2, -0.5, 0.1]), unique=np.array([1, 1, 1]),
                      novel=np.array([1, 0, 1]), generated_index=np.array([7, 8, 9]))
    outputs, node = pick_crystals.run_get_node(assessed=StructureSet(batch), count=orm.Int(2))
    assert node.is_finished_ok
    picked = outputs["picked"]
    assert [picked[k].base.extras.get("generated_index") for k in sorted(picked)] == [7, 9]
    assert all(len(picked[k].sites) == 3 for k in picked)  # the 12-atom conventional cell is 3 atoms primitive


@pytest.mark.slow
def test_dft_stage_relaxes_the_best_and_their_references_with_gpaw(examples):
    pytest.importorskip("gpaw")
    from aiida_physgen.launch import gpaw_code

    builder = _builder(examples)
    # light metals with one-atom references (fcc Al and Cu, bcc Li) keep the GPAW runs short
    builder.generate.conditions = orm.Dict({"F-43m": {"space_group": 216, "elements": ["Al", "Cu", "Li"]}})
    builder.dft.code = gpaw_code()
    builder.dft.count = orm.Int(1)
    builder.validity = orm.Dict({**OPEN_VALIDITY, "min_distance": 0.7})  # no clashes for CHGNet to push apart
    builder.cheap_settings = orm.Dict({"max_steps": 25})
    builder.dft.overrides = orm.Dict({"gpaw": {"parameters": {"ecut": 200.0, "kpts": [2, 2, 2], "fmax": 0.5,
                                                              "max_steps": 30}}})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    (row,) = results["report"]["dft"].values()
    assert np.isfinite(row["ml"]) and row["dft"] is not None and np.isfinite(row["dft"])
    assert set(results["dos"]) == {"crystal_0"}
    assert results["report"]["counts"]["dft_relaxed"] == 1
