"""The queries of docs/querying.md, each one QueryBuilder query, against a real (tiny) screening."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import DataFactory, WorkflowFactory
from ase.build import molecule
from tiny_settings import QUICK, TINY

from aiida_physgen.calculations.functions import PROVENANCE_EXTRAS
from aiida_physgen.launch import screening_builder

StructureSet = DataFactory("physgen.structure_set")
GeneratorModel = DataFactory("physgen.generator_model")
ScreeningWorkChain = WorkflowFactory("physgen.screening")
GenerationWorkChain = WorkflowFactory("physgen.generation")


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screening(aiida_profile):
    import sys

    code = orm.InstalledCode(
        label="gpaw-query",
        computer=_localhost(),
        filepath_executable=sys.executable,
        default_calc_job_plugin="physgen.gpaw",
    )
    code.prepend_text = "export OMP_NUM_THREADS=1"
    code.store()
    builder = screening_builder(
        [molecule("H2O"), molecule("H2O2"), molecule("H2O")],
        "H2O",
        box=5.0,
        code=code,
        seeds=[0, 1],
        settings=TINY,
        count=4,
        n_clusters=2,
        n_components=2,
        relax_overrides=QUICK,
        funnel=False,
        reuse_relaxations=False,
    )
    builder.generation.training.store()
    _, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return node


def _localhost():
    from aiida_physgen.launch import localhost

    return localhost()


def test_which_model_and_seed_made_each_minimum(screening):
    qb = orm.QueryBuilder()
    qb.append(ScreeningWorkChain, filters={"id": screening.pk}, tag="screening")
    qb.append(
        orm.StructureData,
        with_incoming="screening",
        edge_filters={"label": {"like": "minima__%"}},
        project=["label", "extras.energy", "extras.family", "extras.seed", "extras.model_uuid"],
    )
    rows = qb.all()
    assert len(rows) == len(screening.outputs.minima) >= 1
    models = {model.uuid: model for model in screening.outputs.generation.models.values()}
    for label, energy, family, seed, model_uuid in rows:
        assert label.startswith("min_")
        assert family == "logan"
        assert models[model_uuid].seed == seed  # the extras agree with the model node
        assert energy == screening.outputs.energies[label]
    # and the representative the minimum came from names the same model and candidate
    for minimum in screening.outputs.minima.values():
        representative = orm.load_node(minimum.base.extras.get("representative_uuid"))
        assert representative.label == minimum.base.extras.get("relaxed_from")
        for key in PROVENANCE_EXTRAS:
            assert minimum.base.extras.get(key) == representative.base.extras.get(key)
        candidates = screening.outputs.generation.candidates
        index = representative.base.extras.get("candidate_index")
        model_index = int(candidates.get_array("model_index")[index])
        assert candidates.base.attributes.get("model_uuids")[model_index] == representative.base.extras.get(
            "model_uuid"
        )


def test_representatives_have_labels_and_provenance(screening):
    structures = screening.outputs.generation.structures
    for label in structures:
        node = structures[label]
        assert node.label == label
        assert "seed" in node.description
        assert {"candidate_index", "cluster", "model_uuid", "seed", "family"} <= set(node.base.extras.keys())


def test_all_minima_below_an_energy(screening):
    energies = sorted(m.base.extras.get("energy_per_atom") for m in screening.outputs.minima.values())
    threshold = energies[0] + 1e-6
    qb = orm.QueryBuilder()
    qb.append(orm.CalcFunctionNode, filters={"attributes.process_label": "deduplicate_minima"}, tag="basins")
    qb.append(
        orm.StructureData,
        with_incoming="basins",
        filters={"extras.energy_per_atom": {"<": threshold}},
        project=["uuid", "extras.formula", "extras.energy_per_atom", "extras.seed"],
    )
    rows = qb.all()  # across the whole database: other tests' screenings may add minima of their own
    ours = {m.uuid for m in screening.outputs.minima.values()}
    assert all(row[2] < threshold for row in rows)
    assert [row[2] for row in rows if row[0] in ours] == [energies[0]]  # only our lowest is below


def test_all_models_of_a_family_with_their_final_losses(screening):
    qb = orm.QueryBuilder()
    qb.append(
        GeneratorModel,
        filters={"attributes.family": "logan"},
        project=["uuid", "attributes.target.formula", "attributes.seed", "attributes.steps", "attributes.losses"],
    )
    rows = {row[0]: row for row in qb.all()}
    for model in screening.outputs.generation.models.values():
        _, formula, seed, steps, losses = rows[model.uuid]
        assert formula == "H2O" and steps == 3 and seed == model.seed
        assert set(losses) >= {"critic", "generator"}


def test_all_screenings_that_used_a_training_set(screening):
    training = screening.inputs.generation.training
    qb = orm.QueryBuilder()
    qb.append(StructureSet, filters={"uuid": training.uuid}, tag="training")
    qb.append(ScreeningWorkChain, with_incoming="training", project=["id"])
    assert [row[0] for row in qb.all()] == [screening.pk]


def test_processes_have_labels_descriptions_and_call_link_labels(screening):
    assert screening.label == "screening H2O" and screening.description
    generation = [n for n in screening.called if n.process_label == "GenerationWorkChain"][0]
    assert generation.label and generation.description
    links = {
        link.link_label
        for link in generation.base.links.get_outgoing().all()
        if link.link_type.value.startswith("call")
    }
    assert {"normalise", "train", "generate", "select"} <= links
    for node in generation.called:
        assert node.label and node.description, node
    relaxations = [n for n in screening.called_descendants if n.process_label == "GpawBaseWorkChain"]
    assert relaxations and all(n.label.startswith("relax rep_") for n in relaxations)
