"""The crystal GAN's candidates through the one pipeline (``physgen.screening`` with the ``crystals`` protocol):
GPAW, the same candidates with VASP (the fake of tests/vasp), the throttle's limit held and a finished
relaxation reused on a second launch.

Tiny but real: an 80-step crystal GAN on 24 half-Heuslers, 12 primitive crystals per condition (two element
triples in F-43m, one in Fm-3m that the tiny model cannot yet make valid), CHGNet with the cell free, two DFT
relaxations of 9-atom cells with the cell relaxed, and the formation assessor at the CHGNet level. The generation
and the cheap tier are cached (AiiDA's caching), so the VASP run and the second launch get the same candidates
without training again. This checks plumbing, provenance and bookkeeping, not model quality.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import chgnet  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from aiida import orm
from aiida.common.exceptions import NotExistent
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from study_scripts import outputs_of, run_study

from aiida_physgen.calculations.crystals import crystal_training_set
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.crystal_data import example_structures
from aiida_physgen.workflows.relax_set import RELAXATIONS_EXTRA
from aiida_physgen.workflows.relaxation_reuse import RELAXATION_KEY
from aiida_physgen.workflows.screening import ScreeningWorkChain

#: everything before DFT is cached, so every launch of this module gets the same candidates
CACHED = (
    "crystal_training_set",
    "normalise_training_inputs",
    "train",
    "generate",
    "check_validity",
    "select_representatives",
    "relax_cheap",
    "select_for_dft",
    # after DFT: a second launch that reuses every relaxation gets the same basins, references and assessment
    "deduplicate_minima",
    "dft_reference_set",
    "assess",
)


def _caching() -> ExitStack:
    stack = ExitStack()
    for name in CACHED:
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    return stack


def _computer(workdir: Path) -> orm.Computer:
    try:
        return orm.load_computer("localhost-crystals")
    except NotExistent:
        computer = orm.Computer(
            label="localhost-crystals",
            hostname="localhost",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(workdir),
        ).store()
        computer.configure()
        computer.set_default_mpiprocs_per_machine(1)
        # AiiDA's default is one scheduler poll per 10 s, most of each relaxation's time here (as aiida_localhost)
        computer.set_minimum_job_poll_interval(0.0)
        return computer


def _gpaw_code(computer: orm.Computer) -> orm.InstalledCode:
    try:
        return orm.load_code(f"gpaw-crystals@{computer.label}")
    except NotExistent:
        return orm.InstalledCode(
            label="gpaw-crystals",
            computer=computer,
            filepath_executable=sys.executable,
            default_calc_job_plugin="physgen.gpaw",
            prepend_text="export OMP_NUM_THREADS=1",
        ).store()


@pytest.fixture(scope="module")
def computer(aiida_profile, tmp_path_factory):
    return _computer(tmp_path_factory.mktemp("crystals_workdir"))


@pytest.fixture(scope="module")
def training(aiida_profile):
    with _caching():
        outputs, node = crystal_training_set.run_get_node(
            structures=StructureSet(example_structures().subset(range(24))), space_groups=orm.List([216])
        )
    assert node.is_finished_ok, node.exit_message
    return outputs["training"]


def _run(training, code):
    builder = ScreeningWorkChain.get_builder_from_protocol("crystals", training, "smoke", code=code)
    with _caching():
        results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return results, node


def _relax_set(node) -> orm.WorkflowNode:
    return node.base.links.get_outgoing(link_label_filter="relax").one().node


def _relaxations(relax_set) -> list:
    return sorted(
        (link.node for link in relax_set.base.links.get_outgoing().all() if link.link_label.startswith("relax_")),
        key=lambda n: n.ctime,
    )


def _sent_to_dft(node) -> list:
    """The structures DFT got, by label, as (formula, rounded positions and cell): what 'the same candidates' means."""
    inputs = _relax_set(node).base.links.get_incoming().all()
    return sorted(
        (
            link.link_label,
            link.node.get_formula(),
            np.round(link.node.get_ase().positions, 4).tolist(),
            np.round(link.node.cell, 4).tolist(),
        )
        for link in inputs
        if link.link_label.startswith("structures__")
    )


@pytest.fixture(scope="module")
def gpaw_screening(computer, training, tmp_path_factory):
    """The study script at its smoke protocol, run as a user runs it, on the 24 crystals of ``training``."""
    folder = tmp_path_factory.mktemp("crystal_study")
    (folder / "known.npz").write_bytes(example_structures().subset(range(24)).to_npz_bytes())
    node, _ = run_study(
        "crystal_gan.py",
        "--smoke",
        "--training",
        "known.npz",
        "--code",
        str(_gpaw_code(computer).pk),
        label="ScreeningWorkChain",
        cwd=folder,
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    return outputs_of(node), node


@pytest.mark.slow
def test_crystal_gan_through_the_one_pipeline_with_gpaw(gpaw_screening, training):
    results, node = gpaw_screening
    generation = results["generation"]
    # the training filter's output is what the family learnt from
    learnt = node.inputs.generation.training.get_batch()
    assert np.array_equal(learnt.positions, training.get_batch().positions) and len(learnt) == len(training)
    assert node.inputs.generation.family.value == "crystal_gan"
    assert set(generation["generated"]) == {"LiMgAl", "LiMgSi", "Fm_3m"}
    assert all(len(generation["generated"][name]) == 12 for name in generation["generated"])
    # primitive cells: the conventional F-43m cell would hold four times the atoms
    assert set(generation["generated"]["LiMgAl"].get_batch().n_atoms.tolist()) <= set(range(1, 13))
    validity = generation["candidates"].base.attributes.get("validity")
    assert validity["check"] == "crystal" and validity["settings"]["min_distance"] == 0.5
    assert validity["totals"]["generated"] == 36 and validity["totals"]["valid"] == len(generation["candidates"])
    # the cheap tier: CHGNet with the cell free, one process for the representatives
    cheap = results["cheap_relaxed"]
    assert cheap.creator.inputs.settings.get_dict() == {"method": "chgnet", "fix_cell": False, "max_steps": 25}
    # DFT: two distinct cheap basins, each relaxed by GPAW with the cell free, with DOS, and in the same set one
    # reference per element (Li, Mg, Al, Si) with the same settings, left out of the basins
    relax_set = _relax_set(node)
    assert relax_set.process_label == "RelaxSetWorkChain"
    relaxations = _relaxations(relax_set)
    assert [r.process_label for r in relaxations] == ["GpawBaseWorkChain"] * 6
    assert all(r.inputs.gpaw.parameters["relax_cell"] is True for r in relaxations)
    assert len({r.inputs.gpaw.parameters["xc"] for r in relaxations}) == 1
    labels = {link.link_label for link in relax_set.base.links.get_outgoing().all()}
    assert {"relax_ref_Li", "relax_ref_Mg", "relax_ref_Al", "relax_ref_Si"} <= labels
    assert results["report"]["n_relaxed"] == 2 and set(results["dos"]) == set(results["minima"])
    references = results["dft_references"].get_batch()
    assert sorted(references.elements()) == ["Al", "Li", "Mg", "Si"]
    assert np.isfinite(references.info["energy"]).all()
    formulas = {row["formula"] for row in results["report"]["rows"]}
    assert len(formulas) == 2  # the two element triples
    # every minimum points back at the model that generated it
    model_uuids = {model.uuid for model in generation["models"].values()}
    assert {results["minima"][name].base.extras.get("model_uuid") for name in results["minima"]} <= model_uuids

    # the formation assessor: the funnel per condition, the DFT minima, the histogram
    assessment = results["assessments"]["formation"].get_dict()
    metrics, rows = assessment["metrics"], {row["stage"]: row for row in assessment["rows"]}
    assert rows["generated"] == {"stage": "generated", "LiMgAl": 12, "LiMgSi": 12, "Fm_3m": 12, "total": 36}
    assert rows["valid"]["total"] == validity["totals"]["valid"]
    assert rows["selected"]["total"] == len(generation["representatives"])
    order = ["generated", "valid", "selected", "cheap-relaxed", "cheap converged", "keeps its group", "unique"]
    order += ["novel", "E_f < 0"]
    assert all(rows[a]["total"] >= rows[b]["total"] for a, b in zip(order, order[1:]))
    # the Wyckoff placement of every generated crystal, and the group kept through CHGNet and DFT (spglib)
    assert rows["on Wyckoff positions"]["total"] <= 36 and rows["no position shared"]["total"] <= 36
    assert rows["keeps its group"]["total"] >= 1, assessment["text"]
    assert rows["DFT keeps its group"]["total"] <= rows["DFT basins"]["total"]
    assert metrics["n_keeps_group"] == rows["keeps its group"]["total"]
    assert rows["DFT relaxed"]["total"] == 2 and rows["DFT basins"]["total"] == len(results["minima"])
    # one DFT relaxation per element triple: LiMgSi, and LiMgAl from either of the two conditions that hold it
    assert rows["DFT relaxed"]["LiMgSi"] == 1 and rows["DFT relaxed"]["LiMgAl"] + rows["DFT relaxed"]["Fm_3m"] == 1
    assert metrics["cheap_method"] == "chgnet" and metrics["cheap_fix_cell"] is False
    assert set(metrics["reference_energies"]) >= {"Li", "Mg", "Al", "Si"}
    assert metrics["baseline"] == "single_point" and metrics["baseline_count"] == 1
    assert metrics["dft_kept_structure"] + 0 <= 2 and metrics["n_dft_basins"] == len(results["minima"])
    assert "DFT minima" in assessment["text"] and "LiMgAl" in assessment["text"]
    # DFT formation energies against those references, by hand: (E − Σ n_X μ_X) / N with μ_X per atom
    mu = {atoms.get_chemical_symbols()[0]: atoms.info["energy"] / len(atoms) for atoms in references}
    assert metrics["dft_reference_energies"] == pytest.approx(mu)
    energies = results["energies"].get_dict()
    by_hand = {}
    for name, minimum in results["minima"].items():
        atoms = minimum.get_ase()
        by_hand[name] = (energies[name] - sum(mu[s] for s in atoms.get_chemical_symbols())) / len(atoms)
    assert metrics["dft_formation_energies"] == pytest.approx(by_hand)
    negative = sum(1 for value in by_hand.values() if value < 0)
    assert rows["DFT E_f < 0"]["total"] <= min(negative, rows["DFT keeps its group"]["total"])
    assert "E_f DFT" in assessment["text"]
    (figure,) = results["figures"].values()
    assert figure.get_content(mode="rb")[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_same_candidates_with_vasp(gpaw_screening, training, computer, tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vasp"))
    try:
        from fixtures import fake_potcar_family, fake_vasp_code
    finally:
        sys.path.pop(0)
    family = fake_potcar_family(tmp_path_factory.mktemp("potcars"))
    builder = ScreeningWorkChain.get_builder_from_protocol(
        "crystals", training, "smoke", {"engine": "vasp", "relax_overrides": None}, code=fake_vasp_code(computer)
    )
    builder.relax_overrides = orm.Dict({"potential_family": family, "incar": {"isif": 3}})
    with _caching():
        results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    relaxations = _relaxations(_relax_set(node))
    assert [r.process_label for r in relaxations] == ["VaspRelaxWorkChain"] * 6  # with the four references
    for relaxation in relaxations:
        vasp = relaxation.base.links.get_outgoing(link_label_filter="vasp").one().node
        assert vasp.inputs.parameters["incar"]["isif"] == 3  # the cell relaxes too
        assert relaxation.outputs.output_structure.pbc == (True, True, True)
    assert results["report"]["n_relaxed"] == 2
    assert results["assessments"]["formation"]["metrics"]["n_dft_relaxed"] == 2
    assert sorted(results["dft_references"].get_batch().elements()) == ["Al", "Li", "Mg", "Si"]
    assert set(results["assessments"]["formation"]["metrics"]["dft_formation_energies"]) == set(results["minima"])
    # the same candidates went to DFT as in the GPAW run (the generation and the cheap tier are the same content)
    assert _sent_to_dft(node) == _sent_to_dft(gpaw_screening[1])


@pytest.mark.slow
def test_throttle_holds_one_in_flight_and_a_second_launch_reuses_the_relaxations(gpaw_screening, training, computer):
    _, first = gpaw_screening
    relax_set = _relax_set(first)
    table = relax_set.base.extras.get(RELAXATIONS_EXTRA)
    # two candidates and four elemental references (Li, Mg, Al, Si)
    assert table["limit"] == 1 and table["n_run"] == 6 and table["n_reused"] == 0
    relaxations = _relaxations(relax_set)
    assert len(relaxations) == 6
    # never more than one in flight: each was created only once the one before had terminated
    assert all(later.ctime >= earlier.mtime for earlier, later in zip(relaxations, relaxations[1:]))
    assert all(r.base.extras.get(RELAXATION_KEY) for r in relaxations)

    _, second = _run(training, _gpaw_code(computer))
    again = _relax_set(second)
    table = again.base.extras.get(RELAXATIONS_EXTRA)
    assert table["n_reused"] == 6 and table["n_run"] == 0
    assert _relaxations(again) == []  # no new relaxation process
    assert {row["pk"] for row in table["relaxations"].values()} == {r.pk for r in relaxations}
    assert sorted(row["energy"] for row in second.outputs.report["rows"]) == sorted(
        row["energy"] for row in first.outputs.report["rows"]
    )


def test_training_filter_says_what_it_dropped():
    from ase.build import bulk

    from aiida_physgen.ml.batch import StructureBatch

    examples = example_structures()
    salt = bulk("NaCl", "rocksalt", a=5.64)
    mixed = StructureBatch.concatenate([examples.subset([0, 1]), StructureBatch.from_atoms([salt])])
    outputs, node = crystal_training_set.run_get_node(structures=StructureSet(mixed))
    assert node.is_finished_ok
    kept = outputs["training"]
    assert len(kept) == 2 and list(kept.get_batch().info["space_group"]) == [216, 216]
    assert kept.base.attributes.get("dropped") == [[2, "not a ternary: 2 element(s) ['Cl', 'Na']"]]
    _, node = crystal_training_set.run_get_node(structures=StructureSet(StructureBatch.from_atoms([salt])))
    assert node.exit_status == 340 and "training filter" in node.exit_message
    _, node = crystal_training_set.run_get_node(structures=StructureSet(mixed), space_groups=orm.List(["P1"]))
    assert node.exit_status == 300 and not node.base.links.get_outgoing().all()


@pytest.mark.parametrize("protocol", ["fast", "paper", "smoke"])
def test_the_protocols_build_the_whole_study(training, protocol):
    builder = ScreeningWorkChain.get_builder_from_protocol("crystals", training, protocol)
    generation = builder.generation
    assert generation.family.value == "crystal_gan" and generation.validity.value == "crystal"
    conditions = generation.conditions.get_dict()
    assert all(c["cell"] == "primitive" for c in conditions.values())
    assert builder.cheap_settings["method"] == "chgnet" and builder.cheap_settings["fix_cell"] is False
    assert builder.relax_overrides["gpaw"]["parameters"]["relax_cell"] is True
    assert builder.dft_references.value is True  # DFT formation energies in the report
    formation = {"baseline": "single_point", "max_baseline": 1} if protocol == "smoke" else {}
    assert builder.assessors.get_dict() == {"formation": formation}
    # the family's settings come from its own generation protocol of the same name (fast: 300 steps, here 1,000)
    steps = generation.settings["loop"]["steps"]
    if protocol == "fast":
        assert set(conditions) == {"F-43m", "Fm-3m"} and generation.count.value == 100
        assert builder.dft_budget.value == 3 and steps == 1000
        assert generation.target.get_dict() == {"space_groups": [216]}
    elif protocol == "smoke":
        assert set(conditions) == {"LiMgAl", "LiMgSi", "Fm-3m"} and steps == 80 and builder.dft_budget.value == 2
    else:
        assert len(conditions) == 12 and steps == 20000 and builder.protocol.value == "balanced"
        assert generation.target.get_dict() == {}  # every space group of the training data
    with pytest.raises(ValueError, match="generation key 'counts'"):
        ScreeningWorkChain.get_builder_from_protocol("crystals", training, protocol, {"generation": {"counts": 5}})


def test_a_bad_validity_or_assessor_setting_is_refused_at_launch(training):
    # refused when the builder is filled (the generation namespace's validator) or at the latest when launched
    with pytest.raises(ValueError, match=r"validity_settings\.density_range"):
        builder = ScreeningWorkChain.get_builder_from_protocol(
            "crystals", training, "fast", {"generation": {"validity_settings": {"density_range": [5, 1]}}}
        )
        run_get_node(builder)
    with pytest.raises(ValueError, match=r"assessors\.formation.*baseline"):
        builder = ScreeningWorkChain.get_builder_from_protocol(
            "crystals", training, "fast", {"assessors": {"formation": {"baseline": "maybe"}}}
        )
        run_get_node(builder)
