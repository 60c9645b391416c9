"""GpawCalculation, GpawParser and GpawBaseWorkChain: parsing stored outputs, real GPAW runs, restarts, validation.

The fixture files under ``fixtures/gpaw/<case>/`` were produced by real runs of the driver (GPAW 26.7, ASE 3.29):
``input.json`` and ``structure.extxyz`` are the inputs of that run, the other files its outputs (the GPAW text log
is left out to keep them small).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_physgen.calculations.gpaw import GpawCalculation
from aiida_physgen.parsers.gpaw import GpawParser
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain
from aiida_physgen.workflows.protocols import load_protocol, recursive_merge

FIXTURES = Path(__file__).parent / "fixtures" / "gpaw"
RESOURCES = {"num_machines": 1, "num_mpiprocs_per_machine": 1}


# ----------------------------------------------------------------------------------------------------------------------
# helpers


def h2_structure(distance: float = 0.75, vacuum: float = 3.0) -> orm.StructureData:
    from ase import Atoms

    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, distance]])
    atoms.center(vacuum=vacuum)
    return orm.StructureData(ase=atoms)


def si2_structure() -> orm.StructureData:
    from ase.build import bulk

    return orm.StructureData(ase=bulk("Si", "diamond", a=5.43))


def bond_length(structure: orm.StructureData) -> float:
    return float(structure.get_ase().get_distance(0, 1))


def count_calcjobs() -> int:
    return orm.QueryBuilder().append(orm.CalcJobNode).count()


@pytest.fixture
def parse_fixture(aiida_localhost):
    """Return a function that parses a fixture directory as if it had been retrieved from a ``GpawCalculation``."""

    def parse(case: str, remove: tuple[str, ...] = (), replace: dict[str, bytes] | None = None):
        from ase.io import read

        directory = FIXTURES / case
        atoms = read(directory / "structure.extxyz", format="extxyz")
        settings = json.loads((directory / "input.json").read_text())

        node = orm.CalcJobNode(computer=aiida_localhost, process_type="aiida.calculations:physgen.gpaw")
        node.set_option("resources", RESOURCES)
        node.base.links.add_incoming(orm.StructureData(ase=atoms).store(), LinkType.INPUT_CALC, "structure")
        node.base.links.add_incoming(orm.Dict(settings).store(), LinkType.INPUT_CALC, "parameters")
        node.store()

        retrieved = orm.FolderData()
        for path in sorted(directory.iterdir()):
            if path.name in ("input.json", "structure.extxyz") or path.name in remove:
                continue
            retrieved.base.repository.put_object_from_bytes(path.read_bytes(), path.name)
        for name, content in (replace or {}).items():
            retrieved.base.repository.put_object_from_bytes(content, name)
        retrieved.base.links.add_incoming(node, LinkType.CREATE, "retrieved")
        retrieved.store()

        outputs, function = GpawParser.parse_from_node(node, store_provenance=False)
        return outputs, function

    return parse


# ----------------------------------------------------------------------------------------------------------------------
# parser on stored outputs


def test_parser_relax_with_dos(parse_fixture):
    outputs, function = parse_fixture("h2_relax_dos")
    assert function.is_finished_ok, function.exit_message
    assert set(outputs) == {"output_parameters", "output_structure", "forces", "output_trajectory", "dos"}

    parameters = outputs["output_parameters"].get_dict()
    assert parameters["scf_converged"] is True
    assert parameters["relax_converged"] is True
    assert parameters["relax_steps"] == 4
    # the driver's numbers reach the node unchanged (eV): the values GPAW wrote in this recorded run
    assert parameters["energy"] == pytest.approx(-6.451775324589719, abs=1e-9)
    assert parameters["energy_per_atom"] == pytest.approx(parameters["energy"] / 2)
    assert parameters["fermi_energy"] == pytest.approx(-4.029054906455237, abs=1e-9)
    assert parameters["wall_time"] > 0
    assert "forces" not in parameters and "settings" not in parameters

    assert 0.75 < bond_length(outputs["output_structure"]) < 0.80
    assert outputs["forces"].get_array("forces").shape == (2, 3)
    assert np.abs(outputs["forces"].get_array("forces")).max() < 0.05

    trajectory = outputs["output_trajectory"]
    assert trajectory.numsteps == 5
    assert trajectory.get_array("energy").shape == (5,)
    assert trajectory.get_array("forces").shape == (5, 2, 3)
    assert trajectory.get_array("energy")[-1] < trajectory.get_array("energy")[0]

    dos = outputs["dos"]
    energy_name, energy, energy_unit = dos.get_x()
    assert energy_name == "energy" and energy_unit == "eV"
    assert energy.shape == (101,)
    assert [name for name, _, _ in dos.get_y()] == ["dos"]


def test_parser_static_spin_polarised_dos(parse_fixture):
    outputs, function = parse_fixture("si2_static_spin_dos")
    assert function.is_finished_ok, function.exit_message
    assert set(outputs) == {"output_parameters", "forces", "dos"}

    parameters = outputs["output_parameters"].get_dict()
    assert parameters["relax_converged"] is None
    assert np.array(parameters["stress"]).shape == (3, 3)
    assert parameters["magnetic_moment"] == pytest.approx(0.0, abs=1e-3)

    arrays = {name: values for name, values, _ in outputs["dos"].get_y()}
    assert set(arrays) == {"dos", "dos_up", "dos_down"}
    np.testing.assert_allclose(arrays["dos"], arrays["dos_up"] + arrays["dos_down"])


def test_parser_missing_results(parse_fixture):
    outputs, function = parse_fixture("h2_relax_dos", remove=("results.json", "final.extxyz", "trajectory.extxyz"))
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_OUTPUT_MISSING.status == 300
    assert "results.json" in function.exit_message
    assert outputs == {}


def test_parser_interrupted_relaxation(parse_fixture):
    """A driver killed mid-relaxation: no results.json, but the steps so far and the last geometry."""
    from ase.io import read

    outputs, function = parse_fixture("h2_relax_dos", remove=("results.json", "dos.json"))
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_INTERRUPTED.status == 330
    assert set(outputs) == {"output_parameters", "output_structure", "output_trajectory"}
    frames = read(FIXTURES / "h2_relax_dos" / "trajectory.extxyz", index=":")
    assert outputs["output_trajectory"].numsteps == len(frames)
    np.testing.assert_allclose(outputs["output_structure"].get_ase().positions, frames[-1].positions)
    parameters = outputs["output_parameters"].get_dict()
    assert parameters["status"] == "interrupted" and parameters["trajectory_frames"] == len(frames)
    assert parameters["energy"] == pytest.approx(frames[-1].get_potential_energy())


def test_parser_interrupted_with_truncated_trajectory(parse_fixture):
    """Killed while appending a frame, without final.extxyz yet: the complete frames are kept, the last is used."""
    from ase.io import read

    content = (FIXTURES / "h2_relax_dos" / "trajectory.extxyz").read_bytes()
    frames = read(FIXTURES / "h2_relax_dos" / "trajectory.extxyz", index=":")
    truncated = content[: len(content) - 40]  # the last frame loses its last atom line(s)
    outputs, function = parse_fixture(
        "h2_relax_dos", remove=("results.json", "dos.json", "final.extxyz"), replace={"trajectory.extxyz": truncated}
    )
    assert function.exit_status == 330
    assert outputs["output_trajectory"].numsteps == len(frames) - 1
    np.testing.assert_allclose(outputs["output_structure"].get_ase().positions, frames[-2].positions)


def test_parser_interrupted_static_is_output_missing(parse_fixture):
    outputs, function = parse_fixture("si2_static_spin_dos", remove=("results.json",))
    assert function.exit_status == 300


def test_parser_missing_requested_dos(parse_fixture):
    outputs, function = parse_fixture("h2_relax_dos", remove=("dos.json",))
    assert function.exit_status == 300
    assert "dos.json" in function.exit_message
    assert outputs == {}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("results.json", b'{"status": "ok", "energy": -6.4'),  # truncated JSON
        ("results.json", b'{"energy": -6.4}'),  # no status
        ("final.extxyz", b"2\nnot an extxyz header\nH 0 0\n"),  # corrupt structure
    ],
)
def test_parser_unreadable_output(parse_fixture, name, content):
    outputs, function = parse_fixture("h2_relax_dos", replace={name: content})
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_OUTPUT_UNREADABLE.status == 301
    assert name in function.exit_message
    assert outputs == {}  # nothing half-attached


def test_parser_driver_crashed(parse_fixture):
    outputs, function = parse_fixture("crashed")
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_DRIVER_CRASHED.status == 302
    assert "NOT-A-FUNCTIONAL" in function.exit_message
    assert outputs == {}


def test_parser_invalid_settings(parse_fixture):
    outputs, function = parse_fixture("invalid_settings")
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_INVALID_SETTINGS.status == 303
    assert "cutoff" in function.exit_message
    assert outputs == {}


def test_parser_scf_not_converged(parse_fixture):
    outputs, function = parse_fixture("h2_scf_not_converged")
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED.status == 310
    assert set(outputs) == {"output_parameters"}
    parameters = outputs["output_parameters"].get_dict()
    assert parameters["scf_converged"] is False
    assert parameters["energy"] is None


def test_parser_relax_not_converged(parse_fixture):
    outputs, function = parse_fixture("h2_relax_not_converged")
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_RELAX_NOT_CONVERGED.status == 320
    assert set(outputs) == {"output_parameters", "output_structure", "forces", "output_trajectory"}
    assert outputs["output_parameters"]["relax_converged"] is False
    # The last geometry, from which a restart continues, differs from the 0.9 Å input.
    assert bond_length(outputs["output_structure"]) != pytest.approx(0.9, abs=1e-3)
    assert outputs["output_trajectory"].numsteps == 2


# ----------------------------------------------------------------------------------------------------------------------
# input validation (nothing may run)


def test_close_atoms_rejected_before_anything_runs(gpaw_code):
    before = count_calcjobs()
    with pytest.raises(ValueError, match=r"`structure`: atoms 0 \(H\) and 1 \(H\) are 0\.300 Å apart"):
        run_get_node(
            GpawCalculation,
            code=gpaw_code,
            structure=h2_structure(0.3),
            parameters=orm.Dict({"mode": "lcao"}),
        )
    assert count_calcjobs() == before


def test_close_atoms_across_periodic_boundary_rejected(gpaw_code):
    from ase import Atoms

    atoms = Atoms("Si2", positions=[[0.1, 2.0, 2.0], [4.9, 2.0, 2.0]], cell=[5.0, 5.0, 5.0], pbc=True)
    with pytest.raises(ValueError, match=r"`structure`: atoms 0 \(Si\) and 1 \(Si\) are 0\.200 Å apart"):
        run_get_node(GpawCalculation, code=gpaw_code, structure=orm.StructureData(ase=atoms), parameters=orm.Dict())

    tiny = Atoms("H", positions=[[0, 0, 0]], cell=[0.4, 3.0, 3.0], pbc=True)
    with pytest.raises(ValueError, match="from its own periodic image"):
        run_get_node(GpawCalculation, code=gpaw_code, structure=orm.StructureData(ase=tiny), parameters=orm.Dict())


@pytest.mark.parametrize(
    ("parameters", "pattern"),
    [
        ({"cutoff": 300}, r"`parameters`: unknown key 'cutoff'"),
        ({"mode": "paw"}, r"`parameters`: 'mode' must be one of 'pw', 'lcao', got 'paw'"),
        ({"ecut": -100}, r"`parameters`: 'ecut' must be greater than 0, got -100"),
        ({"mode": "lcao", "kpts": [2, 2, 2]}, r"'kpts' must be 1 along the non-periodic direction 0"),
    ],
)
def test_bad_parameters_rejected(gpaw_code, parameters, pattern):
    before = count_calcjobs()
    with pytest.raises(ValueError, match=pattern):
        run_get_node(GpawCalculation, code=gpaw_code, structure=h2_structure(), parameters=orm.Dict(parameters))
    assert count_calcjobs() == before


def test_kpoints_input_validation(gpaw_code):
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([2, 2, 2])
    with pytest.raises(ValueError, match="both define k-points"):
        run_get_node(
            GpawCalculation,
            code=gpaw_code,
            structure=si2_structure(),
            parameters=orm.Dict({"kpts": [2, 2, 2]}),
            kpoints=kpoints,
        )
    shifted = orm.KpointsData()
    shifted.set_kpoints_mesh([2, 2, 2], offset=[0.25, 0.0, 0.0])
    with pytest.raises(ValueError, match="`kpoints`: the mesh offset must be"):
        run_get_node(GpawCalculation, code=gpaw_code, structure=si2_structure(), parameters=orm.Dict(), kpoints=shifted)


def test_prepare_for_submission_writes_inputs(gpaw_code, tmp_path, monkeypatch):
    """A dry run writes input.json (with the mesh from `kpoints`), the structure and the driver script."""
    from aiida_physgen.calculations import gpaw_driver

    monkeypatch.chdir(tmp_path)  # a dry run writes its folder below the working directory

    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([3, 3, 3])
    builder = GpawCalculation.get_builder()
    builder.code = gpaw_code
    builder.structure = si2_structure()
    builder.parameters = orm.Dict({"mode": "pw", "ecut": 200.0})
    builder.kpoints = kpoints
    builder.metadata.dry_run = True
    builder.metadata.store_provenance = False
    _, node = run_get_node(builder)
    folder = Path(node.dry_run_info["folder"])
    settings = json.loads((folder / "input.json").read_text())
    assert settings == {"mode": "pw", "ecut": 200.0, "kpts": [3, 3, 3], "gamma": True}
    assert (folder / "gpaw_driver.py").read_text() == Path(gpaw_driver.__file__).read_text()
    assert "Si" in (folder / "structure.extxyz").read_text()


# ----------------------------------------------------------------------------------------------------------------------
# protocols


def test_unknown_protocol(gpaw_code):
    with pytest.raises(ValueError, match=r"unknown protocol 'ultra'.*fast, balanced, stringent"):
        GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, h2_structure(), protocol="ultra")


def test_protocol_requires_code():
    with pytest.raises(ValueError, match="`code` is required"):
        GpawBaseWorkChain.get_builder_from_protocol(None, h2_structure())


def test_protocol_bad_parameter_override(gpaw_code):
    with pytest.raises(ValueError, match="unknown key 'cutoff'"):
        GpawBaseWorkChain.get_builder_from_protocol(
            gpaw_code, si2_structure(), overrides={"gpaw": {"parameters": {"cutoff": 500}}}
        )
    with pytest.raises(ValueError, match="unknown protocol input"):
        GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, si2_structure(), overrides={"max_iteration": 3})


def test_available_protocols():
    protocols = GpawBaseWorkChain.get_available_protocols()
    assert list(protocols) == ["fast", "balanced", "stringent", "smoke"]
    assert all(protocols.values())


def test_the_smoke_protocol_is_one_static_single_point(gpaw_code):
    for structure in (si2_structure(), h2_structure()):
        builder = GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, structure, protocol="smoke")
        parameters = builder.gpaw.parameters.get_dict()
        assert parameters["calculation"] == "static"
        assert parameters["mode"] == ("pw" if structure.pbc[0] else "lcao")


def test_balanced_crystal_is_the_logan_setup(gpaw_code):
    builder = GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, si2_structure(), protocol="balanced")
    parameters = builder.gpaw.parameters.get_dict()
    assert parameters["mode"] == "pw"
    assert parameters["ecut"] == 400.0
    assert parameters["xc"] == "LDA"
    assert parameters["kpts"] == [2, 2, 2]
    assert parameters["relax_cell"] is False
    assert parameters["optimizer"] == "FIRE"
    assert parameters["fmax"] == 0.05
    assert builder.gpaw.metadata.options.resources == RESOURCES


def test_balanced_molecule_is_the_logan_setup(gpaw_code):
    structure = h2_structure(0.75, vacuum=10.0)
    structure.store()
    builder = GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, structure, protocol="balanced")
    parameters = builder.gpaw.parameters.get_dict()
    assert parameters["mode"] == "lcao"
    assert parameters["basis"] == "dzp"
    assert parameters["xc"] == "LDA"
    assert parameters["optimizer"] == "FIRE"
    assert parameters["fmax"] == 0.05

    # Building stores nothing: the work chain's first step centres the molecule with 3 Å of vacuum.
    assert builder.gpaw.structure.uuid == structure.uuid
    assert builder.center.vacuum.value == 3.0 and "box" not in builder.center


def test_protocol_overrides_merge_recursively(gpaw_code):
    builder = GpawBaseWorkChain.get_builder_from_protocol(
        gpaw_code,
        si2_structure(),
        protocol="balanced",
        overrides={"gpaw": {"parameters": {"ecut": 500.0, "kpts": None, "kpoint_density": 3.0}}, "max_iterations": 3},
        options={"max_wallclock_seconds": 120},
    )
    parameters = builder.gpaw.parameters.get_dict()
    assert parameters["ecut"] == 500.0
    assert parameters["kpoint_density"] == 3.0
    assert "kpts" not in parameters
    assert parameters["xc"] == "LDA"  # untouched keys survive
    assert builder.max_iterations.value == 3
    assert builder.gpaw.metadata.options.max_wallclock_seconds == 120
    assert builder.gpaw.metadata.options.resources == RESOURCES


def test_stringent_and_helper():
    stringent = load_protocol("gpaw", "stringent", variant="crystal")
    assert stringent["gpaw"]["parameters"]["ecut"] > 400
    assert "kpts" not in stringent["gpaw"]["parameters"]
    assert recursive_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3, "c": None}}) == {"a": {"b": 3}}
    with pytest.raises(ValueError, match="unknown variant 'slab'"):
        load_protocol("gpaw", "fast", variant="slab")


# ----------------------------------------------------------------------------------------------------------------------
# real GPAW through AiiDA


@pytest.mark.slow
def test_calculation_h2_relax_with_dos(gpaw_code):
    parameters = {
        "calculation": "relax",
        "mode": "lcao",
        "basis": "dzp",
        "smearing": 0.05,
        "optimizer": "BFGS",
        "fmax": 0.05,
        "max_steps": 30,
        "dos": True,
        "dos_npts": 201,
    }
    results, node = run_get_node(
        GpawCalculation, code=gpaw_code, structure=h2_structure(0.9), parameters=orm.Dict(parameters)
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    output = results["output_parameters"].get_dict()
    assert np.isfinite(output["energy"])
    assert output["relax_converged"] is True
    assert output["scf_converged"] is True
    assert 0.75 < bond_length(results["output_structure"]) < 0.80  # LDA H2 bond

    trajectory = results["output_trajectory"]
    assert trajectory.numsteps == output["relax_steps"] + 1
    assert results["forces"].get_array("forces").shape == (2, 3)

    x_name, energy, _ = results["dos"].get_x()
    y_arrays = results["dos"].get_y()
    assert x_name == "energy"
    assert energy.shape == (201,)
    assert y_arrays[0][0] == "dos" and y_arrays[0][1].shape == (201,)
    assert np.all(y_arrays[0][1] >= 0)


@pytest.mark.slow
def test_calculation_si2_static(gpaw_code):
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([2, 2, 2])
    results, node = run_get_node(
        GpawCalculation,
        code=gpaw_code,
        structure=si2_structure(),
        parameters=orm.Dict({"calculation": "static", "mode": "pw", "ecut": 250.0, "stress": True}),
        kpoints=kpoints,
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    output = results["output_parameters"].get_dict()
    assert np.isfinite(output["energy"])
    assert output["energy_per_atom"] == pytest.approx(output["energy"] / 2)
    assert output["kpts"] == [2, 2, 2] and output["gamma"] is True
    assert np.array(output["stress"]).shape == (3, 3)
    assert output["band_gap"] >= 0
    # Ideal diamond: forces vanish by symmetry.
    assert np.abs(results["forces"].get_array("forces")).max() < 1e-3
    assert "output_structure" not in results and "dos" not in results


# ----------------------------------------------------------------------------------------------------------------------
# GpawBaseWorkChain restarts


def base_inputs(code, structure, parameters, **extra):
    return {
        "gpaw": {"code": code, "structure": structure, "parameters": orm.Dict(parameters)},
        **extra,
    }


@pytest.mark.slow
def test_workchain_restarts_relaxation_from_last_geometry(gpaw_code):
    parameters = {
        "calculation": "relax",
        "mode": "lcao",
        "basis": "dzp",
        "smearing": 0.05,
        "optimizer": "BFGS",
        "fmax": 0.05,
        "max_steps": 3,
    }
    results, node = run_get_node(GpawBaseWorkChain, **base_inputs(gpaw_code, h2_structure(1.0), parameters))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert len(calcs) == 2
    assert calcs[0].exit_status == GpawCalculation.exit_codes.ERROR_RELAX_NOT_CONVERGED.status
    assert calcs[1].is_finished_ok
    # The second run started where the first stopped.
    assert calcs[1].inputs.structure.uuid == calcs[0].outputs.output_structure.uuid

    assert results["output_parameters"]["relax_converged"] is True
    assert 0.75 < bond_length(results["output_structure"]) < 0.80


@pytest.mark.slow
def test_workchain_scf_softer_mixing_succeeds(gpaw_code):
    parameters = {"calculation": "static", "mode": "lcao", "basis": "dzp", "smearing": 0.05, "maxiter": 5}
    results, node = run_get_node(GpawBaseWorkChain, **base_inputs(gpaw_code, h2_structure(0.75), parameters))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert [calc.exit_status for calc in calcs] == [310, 0]
    second = calcs[1].inputs.parameters.get_dict()
    assert second["mixer"] == {"beta": 0.05, "nmaxold": 5, "weight": 50.0}
    assert second["maxiter"] == 10
    assert results["output_parameters"]["scf_converged"] is True


@pytest.mark.slow
def test_workchain_scf_gives_up_after_bounded_restarts(gpaw_code):
    parameters = {"calculation": "static", "mode": "lcao", "basis": "dzp", "smearing": 0.05, "maxiter": 1}
    _, node = run_get_node(GpawBaseWorkChain, **base_inputs(gpaw_code, h2_structure(0.75), parameters))
    assert node.exit_status == GpawBaseWorkChain.exit_codes.ERROR_SCF_NOT_CONVERGED.status == 410

    calcs = sorted(node.called, key=lambda n: n.ctime)
    assert len(calcs) == 1 + GpawBaseWorkChain._max_scf_restarts
    assert all(calc.exit_status == 310 for calc in calcs)
    assert [calc.inputs.parameters["maxiter"] for calc in calcs] == [1, 2, 4]
    assert [calc.inputs.parameters.get("mixer", {}).get("beta") for calc in calcs] == [None, 0.05, 0.025]


@pytest.mark.slow
def test_workchain_from_fast_protocol_runs(gpaw_code):
    builder = GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, h2_structure(0.8), protocol="fast")
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results["output_parameters"]["relax_converged"] is True
    assert results["output_structure"].pbc == (False, False, False)
    # The first step centred the molecule through the `center_molecule` calcfunction.
    calc = next(child for child in node.called if isinstance(child, orm.CalcJobNode))
    centred = calc.inputs.structure
    assert centred.creator is not None and centred.creator.process_label == "center_molecule"
    assert centred.creator.caller.uuid == node.uuid
    np.testing.assert_allclose(np.diag(centred.cell), [6.0, 6.0, 6.8], atol=1e-8)
    assert node.label == "GPAW relax H2"  # launched alone: labelled by the chain itself
    assert [
        link.link_label for link in node.base.links.get_outgoing().all() if link.node.uuid == centred.creator.uuid
    ] == ["center"]


def test_protocol_box_puts_a_molecule_in_a_common_cube(gpaw_code):
    """`box` centres a molecule in a cube of that edge (the screening uses one cube for all molecules)."""
    from aiida_physgen.workflows.gpaw_base import centered_copy

    builder = GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, h2_structure(), overrides={"box": 8.0})
    assert builder.center.box.value == 8.0
    structure = centered_copy(builder.gpaw.structure, builder.center.vacuum.value, builder.center.box.value)
    assert np.allclose(structure.cell, np.eye(3) * 8.0)
    positions = np.array([site.position for site in structure.sites])
    assert np.allclose(positions.mean(axis=0), [4.0, 4.0, 4.0])
    with pytest.raises(ValueError, match="box: a 5.00 Å cube leaves less than the vacuum"):
        GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, h2_structure(), overrides={"box": 5.0})


def test_parser_atom_left_box(parse_fixture):
    """GPAW's GridBoundsError (an atom of a molecule reached its box's edge) is its own exit code, not a crash."""
    outputs, function = parse_fixture("atom_left_box")
    assert function.exit_status == GpawCalculation.exit_codes.ERROR_ATOM_LEFT_BOX.status == 304
    assert "too close to edge" in function.exit_message and "coming apart" in function.exit_message
    assert outputs == {}
