"""``aiida-physgen data show|export`` and ``verdi data physgen``, on real nodes of the test profile."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import ase.build
import ase.io
import pytest
from click.testing import CliRunner

from aiida_physgen.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["data", *map(str, args)])


@pytest.fixture
def structure_set(aiida_profile):
    from aiida_physgen.data.structure_set import StructureSet

    structures = [ase.build.molecule(name) for name in ("H2O", "H2O", "CH4")]
    for energy, atoms in zip((-14.0, -14.5, -24.0), structures):
        atoms.info["energy"] = energy
    node = StructureSet.from_ase(structures, info_keys=["energy"])
    node.label = f"cli-test-set-{uuid.uuid4().hex[:8]}"
    return node.store()


@pytest.fixture
def model_node(aiida_profile, toy_plugins):
    from physgen_toy.family import water_molecules

    from aiida_physgen.data.generator_model import GeneratorModel
    from aiida_physgen.ml.batch import StructureBatch
    from aiida_physgen.ml.family import get_family
    from aiida_physgen.ml.training import train_ensemble

    batch = StructureBatch.from_atoms(water_molecules(6))
    (model,) = train_ensemble(get_family("toy"), batch, {"composition": "H2O", "box": 6.0}, {"loop": {"steps": 3}}, [5])
    return GeneratorModel.from_model(model).store()


def test_cli_importable_without_aiida():
    code = (
        "import sys\n"
        "from aiida_physgen.cli import main\n"
        "assert 'data' in main.commands\n"
        "loaded = [m for m in sys.modules if m == 'aiida' or m.startswith('aiida.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_show_structure_set_by_pk_uuid_label(structure_set):
    for identifier in (structure_set.pk, structure_set.uuid, structure_set.uuid[:12], structure_set.label):
        result = run("show", identifier)
        assert result.exit_code == 0, result.output
        assert f"StructureSet<{structure_set.pk}>" in result.output
        assert "3 structures, 11 atoms" in result.output
        assert "H2O x2, CH4 x1" in result.output
        assert "energy [-24 .. -14]" in result.output
        assert "none (molecules)" in result.output


def test_show_model(model_node):
    result = run("show", model_node.pk)
    assert result.exit_code == 0, result.output
    lines = result.output
    assert "family:" in lines and "toy (generator)" in lines
    assert "seed:           5" in lines and "steps:          3" in lines
    for name, value in model_node.losses.items():
        assert f"{name} {value:.6g}" in lines
    assert "composition=H2O, box=6.0" in lines
    assert model_node.checksum in lines


@pytest.mark.parametrize("identifier", ["999999999", "no-such-label", "01234567-89ab"])
def test_bad_node_exit_2(aiida_profile, identifier):
    result = run("show", identifier)
    assert result.exit_code == 2
    assert "Invalid value for 'NODE'" in result.output
    assert "expected the PK, UUID or label of a StructureSet or GeneratorModel node" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_node_of_other_type_or_ambiguous_label_exit_2(structure_set):
    from aiida import orm

    other = orm.Int(3).store()
    result = run("export", other.pk, "x.json")
    assert result.exit_code == 2
    assert "StructureSet or GeneratorModel" in result.output

    twin = structure_set.clone()
    twin.store()
    result = run("show", structure_set.label)
    assert result.exit_code == 2 and "multiple" in result.output and structure_set.label in result.output


def test_export_structure_set(structure_set, tmp_path):
    path = tmp_path / "set.cif"
    result = run("export", structure_set.pk, path)
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.output
    assert len(ase.io.read(path, index=":")) == 3

    result = run("export", structure_set.pk, path)
    assert result.exit_code == 2 and "exists; give --overwrite" in result.output
    result = run("export", structure_set.label, path, "--format", "extxyz", "--overwrite")
    assert result.exit_code == 0, result.output
    assert [a.get_potential_energy() for a in ase.io.read(path, index=":", format="extxyz")] == [-14.0, -14.5, -24.0]

    result = run("export", structure_set.pk, tmp_path / "set.pdf")
    assert result.exit_code == 2 and "--format: got 'pdf'" in result.output
    result = run("export", structure_set.pk, tmp_path / "set.xyz", "--format", "png")
    assert result.exit_code == 2 and "Invalid value for --format: got 'png'" in result.output
    result = run("export", structure_set.pk, tmp_path / "absent" / "set.xyz")
    assert result.exit_code == 2 and "PATH: the directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.cif"]


def test_export_model(model_node, tmp_path):
    result = run("export", model_node.pk, tmp_path / "model.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "model.json").read_text())["seed"] == 5
    result = run("export", model_node.uuid, tmp_path / "weights.bin", "-F", "pt")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "weights.bin").read_bytes() == model_node.get_model_bytes()


@pytest.fixture
def restore_logging():
    """verdi, invoked in this process, reconfigures logging without the database handler, and process
    reports (``Log`` nodes) of every later test in the session would be lost; put it back afterwards."""
    yield
    from aiida.common.log import configure_logging

    configure_logging(with_orm=True)


def test_verdi_data_physgen(structure_set, tmp_path, restore_logging):
    from aiida.cmdline.commands.cmd_verdi import verdi

    runner = CliRunner()
    result = runner.invoke(verdi, ["data", "--help"])
    assert result.exit_code == 0 and "physgen" in result.output
    result = runner.invoke(verdi, ["data", "physgen", "show", str(structure_set.pk)])
    assert result.exit_code == 0, result.output
    assert "3 structures" in result.output
    result = runner.invoke(verdi, ["data", "physgen", "export", str(structure_set.pk), str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "s.json").read_text())) == 3
