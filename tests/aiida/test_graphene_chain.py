"""Porous graphene in AiiDA: the EDNN as the screening's cheap tier (``physgen.score_ednn``, the ``ednn`` engine),
the ``label_consistency`` assessor in ``physgen.assess``, the pre-step chain ``physgen.graphene`` (protocol, launch
checks) and, slow, the chain with the one screening end to end: tiny sheets (4 × 2 cells, 32 sites), a few
training steps, the EDNN as cheap tier and a real GPAW static DOS. This checks plumbing and provenance, not
model quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.engine import run_get_node
from study_scripts import outputs_of, run_study

from aiida_physgen.calculations.graphene import label_reference, porous_graphene, predict, score_ednn
from aiida_physgen.calculations.screening import assess
from aiida_physgen.data.generator_model import GeneratorModel
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.engines import get_engine
from aiida_physgen.ml import graphene
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.training import train_ensemble
from aiida_physgen.workflows.graphene import GrapheneScreeningWorkChain

SMALL = {"nx": 4, "ny": 2, "holes": [0, 2], "radius": [1.0, 2.5]}
TARGET = {"property": "energy"}
EDNN_TINY = {"hidden": [8], "loop": {"steps": 20, "batch_size": 8, "log_every": 5}}
RUGAN_TINY = {
    "channels": 4,
    "noise_channels": 3,
    "critic_channels": 4,
    "critic_layers": 1,
    "loop": {"steps": 2, "batch_size": 4, "n_critic": 2, "log_every": 1},
}


def _energies(occupancy):
    """Synthetic total energies (eV): -9.2 eV per 3-coordinated atom, -8.4 eV per other atom."""
    coordination = graphene.coordination(occupancy)
    n = occupancy.reshape(len(occupancy), -1).sum(1)
    n3 = (coordination == 3).reshape(len(occupancy), -1).sum(1)
    return -9.2 * n3 - 8.4 * (n - n3)


@pytest.fixture(scope="module")
def models(aiida_profile):
    """40 labelled small sheets, a tiny EDNN and RUGAN trained on them (stored), and sheets RUGAN generated at
    1× and 2× the side."""
    torch.set_num_threads(1)
    settings = graphene.SheetSettings(**SMALL)
    occupancy = settings.make(40, 0)
    batch = graphene.sheets_to_batch(occupancy, settings.lattice, info={"energy": _energies(occupancy)})
    (ednn,) = train_ensemble("ednn", batch, TARGET, EDNN_TINY)
    (rugan,) = train_ensemble("rugan", batch, TARGET, RUGAN_TINY)
    rugan_node = GeneratorModel.from_model(rugan).store()
    generated = {}
    for scale in (1, 2):
        sheets = StructureSet(rugan.sample(15, 0, {"labels": "training", "scale": scale}))
        sheets.base.attributes.set("model_uuids", [rugan_node.uuid])  # as physgen.generate writes it
        generated[f"scale_{scale}"] = sheets.store()
    return StructureSet(batch).store(), GeneratorModel.from_model(ednn).store(), rugan_node, generated


# ---------------------------------------------------------------------- the EDNN cheap tier
def test_score_ednn_gives_the_set_its_ednn_energies_unmoved(models):
    training, ednn, _, generated = models
    sheets = generated["scale_2"]
    outputs, node = score_ednn.run_get_node(model=ednn, structures=sheets)
    assert node.is_finished_ok, node.exit_message
    scored = outputs["relaxed"]
    batch, before = scored.get_batch(), sheets.get_batch()
    np.testing.assert_allclose(batch.info["cheap_energy"], ednn.load().predict(before))
    assert batch.info["cheap_failed"].tolist() == [0] * len(before)
    np.testing.assert_array_equal(batch.positions, before.positions)  # scored, not relaxed
    np.testing.assert_array_equal(batch.info["label"], before.info["label"])  # the input's info arrays kept
    assert scored.base.attributes.get("cheap_model") == ednn.uuid and scored.base.attributes.get("n_failed") == 0
    assert scored.base.attributes.get("model_uuids") == sheets.base.attributes.get("model_uuids")  # provenance resolves


def test_score_ednn_fails_only_the_sheets_it_cannot_score(models):
    training, ednn, rugan, _ = models
    atoms = [training.get_ase(i) for i in range(3)]
    atoms[1].positions[0, 0] += 0.6  # off the lattice
    mixed = StructureSet(StructureBatch.from_atoms(atoms))
    outputs, node = score_ednn.run_get_node(model=ednn, structures=mixed)
    assert node.is_finished_ok
    assert outputs["relaxed"].get_batch().info["cheap_failed"].tolist() == [0, 1, 0]
    _, node = score_ednn.run_get_node(model=ednn, structures=StructureSet(StructureBatch.from_atoms([atoms[1]])))
    assert node.exit_status == 330 and "structures[0]" in node.exit_message
    _, node = score_ednn.run_get_node(model=rugan, structures=training)
    assert node.exit_status == 300 and "surrogate" in node.exit_message
    _, node = score_ednn.run_get_node(model=ednn, structures=training, settings=orm.Dict({"fmax": 0.1}))
    assert node.exit_status == 300 and "settings.fmax" in node.exit_message


def test_ednn_engine_contract(models):
    training, ednn, _, _ = models
    engine = get_engine("ednn", "batch", field="cheap_engine")
    assert engine.needs_model and engine.validate(None, True) is None and engine.validate({}, None) is None
    assert "settings.fmax" in engine.validate({"fmax": 0.1}, True)
    assert "molecules" in engine.validate(None, False)
    process, inputs = engine.get_process(training, None, ednn)
    assert process is score_ednn and inputs == {"model": ednn, "structures": training}
    _, node = process.run_get_node(**inputs)
    assert engine.get_result(node).uuid == node.outputs.relaxed.uuid
    with pytest.raises(ValueError, match="cheap_model"):
        engine.get_process(training, None, None)


def test_predict_calcfunction(models):
    training, ednn, rugan, _ = models
    values = predict(ednn, training)["values"]
    np.testing.assert_allclose(values.get_array("energy"), ednn.load().predict(training.get_batch()))
    _, node = predict.run_get_node(rugan, training)
    assert node.exit_status == 300 and "surrogate" in node.exit_message


def test_label_reference_and_sheets_refuse_bad_input(aiida_profile):
    from ase.build import bulk

    silicon = StructureSet.from_ase([bulk("Si", cubic=True)])
    _, node = label_reference.run_get_node(silicon)
    assert node.exit_status == 300 and "all-carbon" in node.exit_message
    sheets = porous_graphene(orm.Int(3), orm.Int(0), orm.Dict(SMALL))
    _, node = label_reference.run_get_node(sheets, orm.Dict({"method": "airebo"}))
    assert node.exit_status == 300 and "settings.method" in node.exit_message
    labelled = label_reference(sheets)
    from aiida_physgen.graphene.reference_energy import label_sheets

    np.testing.assert_allclose(labelled.get_batch().info["energy"], label_sheets(sheets.get_batch()))
    _, node = porous_graphene.run_get_node(orm.Int(3), orm.Int(0), orm.Dict({"nx": 4, "ny": 2, "radius": [3, 1]}))
    assert node.exit_status == 300 and "radius" in node.exit_message


# ---------------------------------------------------------------------- the assessor through physgen.assess
def test_label_consistency_in_the_assess_calcfunction(models):
    training, ednn, _, generated = models
    outputs, node = assess.run_get_node(
        assessor=orm.Str("label_consistency"),
        settings=orm.Dict({"baseline": True}),
        training=training,
        cheap_model=ednn,
        **{f"generated_{name}": value for name, value in generated.items()},
    )
    assert node.is_finished_ok, node.exit_message
    assessment = outputs["assessment"].get_dict()
    assert assessment["assessor"] == "label_consistency"
    pairs = {(row["condition"], row["method"], row["area_multiple"]) for row in assessment["rows"]}
    assert pairs == {
        ("scale_1", "ednn", 1),
        ("scale_2", "ednn", 4),
        ("training", "ednn", 1),
        ("label-blind", "labels", 1),
    }
    assert assessment["metrics"]["n_generated_scale_2"] == len(generated["scale_2"])
    assert set(outputs["figures"]) == {"heatmap_scale_1", "histogram_scale_1", "heatmap_scale_2", "histogram_scale_2"}
    assert outputs["figures"]["heatmap_scale_2"].get_content(mode="rb")[:4] == b"\x89PNG"
    _, node = assess.run_get_node(
        assessor=orm.Str("label_consistency"), training=training, generated_scale_1=generated["scale_1"]
    )  # neither the EDNN nor the reference
    assert node.exit_status == 350 and "reference" in node.exit_message


# ---------------------------------------------------------------------- the pre-step chain: protocol and launch
def test_protocol_builds_the_whole_study(aiida_profile):
    assert set(GrapheneScreeningWorkChain.get_available_protocols()) == {"fast", "paper", "smoke"}
    builder = GrapheneScreeningWorkChain.get_builder_from_protocol("fast")
    assert builder.sheets.count.value == 4096 and "training" not in builder
    screening = builder.screening
    assert screening.generation.family.value == "rugan" and screening.generation.count.value == 1000
    assert screening.generation.conditions.get_dict() == {
        "scale_1": {"labels": "training", "scale": 1},
        "scale_2": {"labels": "training", "scale": 2},
    }
    assert screening.generation.validity.value == "sheet" and "training" not in screening.generation
    assert screening.cheap_engine.value == "ednn" and screening.dft_budget.value == 1
    parameters = screening.relax_overrides.get_dict()["gpaw"]["parameters"]
    assert parameters["calculation"] == "static" and parameters["mode"] == "lcao" and parameters["kpts"] == [1, 1, 1]
    assessor = screening.assessors.get_dict()["label_consistency"]
    assert assessor["reference"] and assessor["reference_settings"]["method"] == "tersoff"  # the sheets' labeller
    assert builder.ednn.seeds.get_list() == [0]  # the EDNN's settings and seeds: its family's protocol of that name
    paper = GrapheneScreeningWorkChain.get_builder_from_protocol("paper")
    assert paper.sheets.count.value == 32768 and paper.screening.generation.count.value == 10000
    assert paper.ednn.settings.get_dict()["loop"]["steps"] == 60000


def test_protocol_overrides_training_and_codes(models, aiida_localhost, aiida_code_installed):
    import sys

    training, *_ = models
    code = aiida_code_installed(label="python-graphene", filepath_executable=sys.executable)
    builder = GrapheneScreeningWorkChain.get_builder_from_protocol(
        "fast",
        {"sheets": {"count": 64}, "dft_budget": 2, "reference": {"relax": True}, "generation": {"count": 50}},
        training_code=code,
    )
    assert builder.sheets.count.value == 64 and builder.screening.dft_budget.value == 2
    assert builder.screening.generation.count.value == 50 and builder.training_code.uuid == code.uuid
    assert "training_code" not in builder.screening.generation
    assert builder.screening.assessors.get_dict()["label_consistency"]["reference_settings"]["relax"] is True
    given = GrapheneScreeningWorkChain.get_builder_from_protocol("fast", training=training)
    assert given.training.uuid == training.uuid and "count" not in given.sheets
    with pytest.raises(ValueError, match="sheets"):
        GrapheneScreeningWorkChain.get_builder_from_protocol("fast", {"sheets": {"cuont": 3}})


def _tiny_builder():
    return GrapheneScreeningWorkChain.get_builder_from_protocol("smoke")


@pytest.mark.parametrize(
    "port, value, message",
    [
        ("sheets.settings", {"nx": 0}, "sheets.settings.*nx"),
        ("ednn.settings", {"focus": [2, 2]}, "focus"),
        ("reference", {"relax": "yes"}, "reference.relax"),
        ("sheets.count", 10, "hold out"),
        ("sheets.count", 10**9, "sheets.count: 1000000000 sheets need about .* GB of memory"),
        ("screening.cheap_settings", {"fmax": 0.1}, "screening.cheap_settings"),
        (
            "screening.assessors",
            {"label_consistency": {"reference": "yes"}},
            "screening.assessors.label_consistency.reference",
        ),
        ("screening.relax_overrides", {"gpaw": {"parameters": {"ecutt": 100}}}, "screening.relax_overrides"),
        ("screening.generation.conditions", {"big": {"scale": 1.5}}, "conditions.big"),
    ],
)
def test_bad_inputs_are_refused_at_launch(aiida_profile, port, value, message):
    builder = _tiny_builder()
    *path, name = port.split(".")
    namespace = builder
    for part in path:
        namespace = namespace[part]
    namespace[name] = orm.Int(value) if isinstance(value, int) else orm.Dict(value)
    before = orm.QueryBuilder().append(GrapheneScreeningWorkChain).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert orm.QueryBuilder().append(GrapheneScreeningWorkChain).count() == before  # refused before a node was stored


def test_the_generator_settings_are_checked_against_the_sheets_at_launch(aiida_profile):
    builder = _tiny_builder()
    builder.screening.generation.settings = orm.Dict({**RUGAN_TINY, "encoding": "hexagonal"})
    with pytest.raises(ValueError, match="encoding"):
        run_get_node(builder)
    builder = _tiny_builder()
    builder.sheets.settings = orm.Dict({**SMALL, "nx": 3})  # the pair encoding needs an even nx
    with pytest.raises(ValueError, match="screening.generation: training: .*even nx"):
        run_get_node(builder)


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_graphene_study_through_the_one_screening(gpaw_code, tmp_path):
    """Sheets → Tersoff labels → EDNN → the screening: RUGAN at 1× and 2× the side, the sheet check, the EDNN
    cheap tier, one static GPAW LCAO DOS of the best 1× sheet, and the label check (KS by EDNN and Tersoff)."""
    node, printed = run_study(
        "rugan_graphene.py", "--smoke", "--code", str(gpaw_code.pk), label="GrapheneScreeningWorkChain", cwd=tmp_path
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    results = outputs_of(node)

    # the pre-step: sheets → labels → EDNN, handed to the screening
    training, ednn = results["training"], results["ednn"]
    assert (
        len(results["sheets"]) == 40 and training.creator.process_type == "aiida.calculations:physgen.label_reference"
    )
    assert ednn.family == "ednn" and ednn.creator.inputs.training.uuid == training.uuid
    (screening,) = [n for n in node.called if n.process_label == "ScreeningWorkChain"]
    assert screening.inputs.cheap_model.uuid == ednn.uuid
    assert screening.inputs.generation.training.uuid == training.uuid
    out = results["screening"]

    # the sheet check kept the 1× sheets only; the EDNN scored the representatives, unmoved
    generated = out["generation"]["generated"]
    assert sorted(generated) == ["scale_1", "scale_2"] and len(generated["scale_2"]) == 12
    assert set(out["generation"]["candidates"].get_batch().info["condition_index"]) == {0}
    cheap = out["cheap_relaxed"].get_batch()
    representatives = out["generation"]["representatives"].get_batch()
    np.testing.assert_allclose(cheap.info["cheap_energy"], ednn.load().predict(representatives))
    np.testing.assert_array_equal(cheap.positions, representatives.positions)
    assert out["funnel"]["n_picked"] == 1

    # DFT: one static GPAW LCAO calculation with its DOS; the minimum is the sheet as it was
    (relax_set,) = [n for n in screening.called if n.process_label == "RelaxSetWorkChain"]
    (gpaw,) = [n for n in relax_set.called_descendants if n.process_label == "GpawCalculation"]
    parameters = gpaw.inputs.parameters.get_dict()
    assert parameters["calculation"] == "static" and parameters["mode"] == "lcao" and "ecut" not in parameters
    (minimum,) = out["minima"].values()
    np.testing.assert_allclose(minimum.get_ase().positions, gpaw.inputs.structure.get_ase().positions)
    energy, dos = next(iter(out["dos"].values())).get_x()[1], next(iter(out["dos"].values())).get_y()[0][1]
    assert len(energy) == len(dos) > 10 and (dos >= 0).all() and dos.max() > 0

    # the label check: by the EDNN and by Tersoff, at 1× and 4× the area, with the baselines
    assessment = out["assessments"]["label_consistency"].get_dict()
    pairs = {(row["condition"], row["method"], row["area_multiple"]) for row in assessment["rows"]}
    assert {
        ("scale_1", "ednn", 1),
        ("scale_1", "tersoff", 1),
        ("scale_2", "ednn", 4),
        ("scale_2", "tersoff", 4),
        ("training", "ednn", 1),
        ("label-blind", "labels", 1),
    } == pairs
    from aiida_physgen.graphene.reference_energy import label_sheets

    scale_2 = [row for row in assessment["rows"] if row["condition"] == "scale_2" and row["method"] == "tersoff"][0]
    batch = generated["scale_2"].get_batch()
    from scipy import stats

    area = graphene.batch_to_sheets(batch)[1].area
    assert scale_2["ks"] == pytest.approx(stats.ks_2samp(batch.info["label"], label_sheets(batch) / area).statistic)
    assert {"label_consistency_heatmap_scale_2", "label_consistency_histogram_scale_1"} <= set(out["figures"])

    # the one report, from the pre-step chain's pk
    from click.testing import CliRunner

    from aiida_physgen.cli import main

    result = CliRunner().invoke(main, ["report", str(node.pk), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "Kolmogorov" in result.output and "scale_2" in result.output and "tersoff" in result.output
