"""VASP as a relaxation engine, against the fake VASP of tests/vasp (real aiida-vasp work chains, parser and
handlers; the executable relaxes with ASE's EMT or Lennard-Jones and writes the files VASP writes)."""

from __future__ import annotations

import sys
from pathlib import Path

import aiida_vasp  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from ase.build import bulk, molecule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vasp"))
from fixtures import fake_potcar_family, fake_vasp_code  # noqa: E402
from tiny_settings import TINY

from aiida_physgen.engines import get_engine  # noqa: E402
from aiida_physgen.launch import screening_builder  # noqa: E402
from aiida_physgen.workflows.screening import validate_screening_inputs  # noqa: E402
from aiida_physgen.workflows.vasp_relax import VaspRelaxWorkChain  # noqa: E402


@pytest.fixture
def family(tmp_path_factory):
    return fake_potcar_family(tmp_path_factory.mktemp("potcars"))


@pytest.fixture
def vasp_code(aiida_localhost):
    return fake_vasp_code(aiida_localhost)


def silicon() -> orm.StructureData:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.10, -0.05, 0.08]  # something to relax
    return orm.StructureData(ase=atoms)


def water() -> orm.StructureData:
    atoms = molecule("H2O")
    atoms.positions[0] += [0.0, 0.05, 0.05]
    return orm.StructureData(ase=atoms)  # no periodic direction: a molecule


def relax(code, structure, family, protocol="fast", overrides=None, env=None):
    builder = VaspRelaxWorkChain.get_builder_from_protocol(
        code, structure, protocol, {"potential_family": family, **(overrides or {})}
    )
    if env:
        builder.vasp.calc.metadata.options.environment_variables = env
    return run_get_node(builder)


def check_dos(dos: orm.XyData, spin: bool = False):
    x_name, energy, _ = dos.get_x()
    names = [name for name, _, _ in dos.get_y()]
    assert x_name == "energy" and names == (["dos", "dos_up", "dos_down"] if spin else ["dos"])
    assert energy.min() < 0 < energy.max()  # relative to the Fermi level
    assert np.isfinite(dos.base.attributes.get("fermi_energy"))


@pytest.mark.slow
def test_crystal_relaxes_with_dos_and_physgen_shaped_outputs(vasp_code, family):
    results, node = relax(vasp_code, silicon(), family)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    parameters = results["output_parameters"].get_dict()
    assert np.isfinite(parameters["energy"]) and parameters["engine"] == "vasp"
    assert parameters["run_status"]["ionic_converged"] and parameters["max_force"] < 0.1
    assert results["output_structure"].pbc == (True, True, True)
    check_dos(results["dos"])
    vasp = node.base.links.get_outgoing(link_label_filter="vasp").one().node
    assert vasp.process_label == "VaspWorkChain"
    incar = vasp.inputs.parameters["incar"]
    assert incar["ibrion"] == 2 and incar["isif"] == 2 and incar["encut"] == 300  # the fast protocol
    # the conversion is a calcfunction in the graph: aiida-vasp's misc and dos in, physgen's outputs out
    convert = node.base.links.get_outgoing(link_label_filter="convert").one().node
    assert convert.process_label == "vasp_outputs"
    assert {link.link_label for link in convert.base.links.get_incoming().all()} >= {"misc", "structure", "dos"}


@pytest.mark.slow
def test_molecule_is_boxed_for_vasp_and_comes_back_a_molecule(vasp_code, family):
    results, node = relax(vasp_code, water(), family)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    boxed = node.base.links.get_outgoing(link_label_filter="box").one().node.outputs.result
    assert boxed.pbc == (True, True, True)
    assert np.allclose(np.diag(boxed.cell), np.ptp(water().get_ase().positions, axis=0) + 2 * 5.0)
    vasp = node.base.links.get_outgoing(link_label_filter="vasp").one().node
    assert vasp.inputs.kpoints.get_kpoints_mesh()[0] == [1, 1, 1]  # Gamma only
    assert results["output_structure"].pbc == (False, False, False)
    check_dos(results["dos"])


@pytest.mark.slow
def test_spin_polarised_dos_is_summed_and_kept_per_spin(vasp_code, family):
    results, node = relax(vasp_code, silicon(), family, overrides={"incar": {"ispin": 2, "nsw": 0}})
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    dos = results["dos"]
    check_dos(dos, spin=True)
    arrays = {name: values for name, values, _ in dos.get_y()}
    assert np.allclose(arrays["dos"], arrays["dos_up"] + arrays["dos_down"])


@pytest.mark.slow
def test_failed_scf_is_restarted_by_aiida_vasp(vasp_code, family):
    # the fake needs 12 SCF steps in the first ionic step: NELM 8 fails it, and aiida-vasp raises NELM
    results, node = relax(vasp_code, silicon(), family, overrides={"incar": {"nelm": 8, "nsw": 0}})
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    vasp = node.base.links.get_outgoing(link_label_filter="vasp").one().node
    calcs = sorted(vasp.called, key=lambda n: n.ctime)
    assert [c.exit_status for c in calcs] == [701, 0]  # electronic structure not converged, then fine
    assert calcs[1].inputs.parameters["nelm"] > 8


@pytest.mark.slow
def test_relaxation_out_of_steps_restarts_from_the_last_geometry(vasp_code, family):
    results, node = relax(
        vasp_code, silicon(), family, overrides={"incar": {"nsw": 3, "ediffg": -0.005}, "max_iterations": 8}
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    vasp = node.base.links.get_outgoing(link_label_filter="vasp").one().node
    calcs = sorted(vasp.called, key=lambda n: n.ctime)
    assert calcs[0].exit_status == 702 and calcs[-1].exit_status == 0 and len(calcs) >= 2
    assert calcs[1].inputs.structure.uuid == calcs[0].outputs.structure.uuid  # continued, not restarted


@pytest.mark.slow
def test_a_vasp_failure_ends_on_a_named_exit_code(vasp_code, family):
    _, node = relax(vasp_code, silicon(), family, overrides={"max_iterations": 1}, env={"FAKE_VASP_SCF_FAIL": "1"})
    assert node.exit_status == VaspRelaxWorkChain.exit_codes.ERROR_VASP_FAILED.status
    assert "VaspWorkChain" in node.exit_message
    assert not node.base.links.get_outgoing(link_type=LinkType.RETURN).all()  # nothing returned half-way


# --------------------------------------------------------------------------------------------- at launch
def water_screening(code, **kwargs):
    return screening_builder(
        [molecule("H2O"), molecule("H2O2"), molecule("H2O")],
        "H2O",
        box=5.0,
        code=code,
        engine="vasp",
        seeds=[0],
        settings=TINY,
        count=12,
        n_clusters=4,
        n_components=2,
        **{"reuse_relaxations": False, **kwargs},
    )


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no family", "relax_overrides: potential_family: missing"),
        ("unknown family", "relax_overrides: potential_family: no POTCAR family 'NO_SUCH'"),
        ("element missing", "relax_overrides: potential_mapping: family 'FAKE_PBE' has no POTCAR for element(s) ['O']"),
        ("unknown protocol", "protocol: unknown protocol 'precise'"),
        (
            "code of another plugin",
            "code: gpaw-python@localhost runs the 'physgen.gpaw' plugin; expected a code of the 'vasp.vasp' plugin",
        ),
        ("incar typo", "relax_overrides: for a molecule: "),
        ("negative encut", "relax_overrides: for a molecule: incar.encut: got -400, expected a positive number"),
    ],
)
def test_bad_vasp_screening_is_refused_at_launch_before_any_training(case, expected, vasp_code, family, gpaw_code):
    overrides = {"potential_family": family}
    code, protocol = vasp_code, "fast"
    if case == "no family":
        overrides = {}
    elif case == "unknown family":
        overrides = {"potential_family": "NO_SUCH"}
    elif case == "element missing":
        overrides["potential_mapping"] = {"O": "O_h"}
    elif case == "unknown protocol":
        protocol = "precise"
    elif case == "code of another plugin":
        code = gpaw_code
    elif case == "incar typo":
        overrides["incar"] = {"encutt": 300}
    elif case == "negative encut":
        overrides["incar"] = {"encut": -400}
    builder = water_screening(code, protocol=protocol, relax_overrides=overrides or None)
    before = orm.QueryBuilder().append(orm.Node).count()
    message = validate_screening_inputs(builder._inputs(prune=True))
    assert message is not None and message.startswith(expected), message
    if case == "incar typo":
        assert "encutt" in message
    with pytest.raises(ValueError, match="encutt" if case == "incar typo" else expected.split(": ")[-1][:30]):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.Node).count() - before <= 1  # at most the builder's own inputs, no process


def test_good_vasp_screening_passes_the_launch_check(vasp_code, family):
    builder = water_screening(vasp_code, relax_overrides={"potential_family": family})
    assert validate_screening_inputs(builder._inputs(prune=True)) is None


def test_vasp_engine_needs_a_code():
    with pytest.raises(ValueError, match="code: the 'vasp' engine has no default code"):
        water_screening(None)


def test_engine_builds_relax_and_dos_from_the_protocols(vasp_code, family):
    engine = get_engine("vasp", "structure")
    for protocol, encut, ediffg in (("fast", 300, -0.1), ("balanced", 450, -0.05), ("stringent", 520, -0.02)):
        builder = engine.get_builder(vasp_code, silicon(), protocol, {"potential_family": family}, dos=True)
        incar = builder.vasp.parameters["incar"]
        assert (incar["encut"], incar["ediffg"], incar["ibrion"], incar["isif"]) == (encut, ediffg, 2, 2)
        assert builder.vasp.settings["parser_settings"]["include_node"] == ["dos"]
        assert dict(builder.vasp.potential_mapping) == {"Si": "Si"}
    builder = engine.get_builder(vasp_code, silicon(), "fast", {"potential_family": family}, dos=False)
    assert builder.vasp.settings["parser_settings"]["include_node"] == []
    assert not silicon().is_stored


@pytest.mark.slow
def test_screening_runs_with_the_vasp_engine_and_reports_like_gpaw(vasp_code, family):
    import io

    from aiida_physgen.screening.report import print_report, screening_metrics

    builder = water_screening(vasp_code, relax_overrides={"potential_family": family}, dft_budget=2)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    from aiida_physgen.screening.report import dft_relaxations

    relaxations = dft_relaxations(node)  # under the screening's physgen.relax_set
    assert relaxations and {n.process_label for n in relaxations} == {"VaspRelaxWorkChain"}
    report = results["report"]
    assert report["n_relaxed"] == len(relaxations) == results["funnel"]["n_picked"]
    for name, minimum in results["minima"].items():
        assert minimum.pbc == (False, False, False)  # compared as molecules, not as boxed crystals
        assert name in results["dos"] and minimum.base.extras.get("relaxation_pk") in {n.pk for n in relaxations}
    out = io.StringIO()
    print_report(node, file=out)
    assert "vasp runs" in out.getvalue()
    assert screening_metrics(node)["dft"]["n_dft"] == report["n_relaxed"]
