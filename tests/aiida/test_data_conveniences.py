"""AiiDA conveniences of the data plugins: ``Data.export`` formats, converters, stable hashes, and
``GeneratorModel`` refusing model files its family cannot load."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile

import ase
import ase.build
import ase.io
import numpy as np
import pytest
import torch
from aiida import orm

from aiida_physgen.data.generator_model import GeneratorModel
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml import model_io
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.family import TrainedModel
from aiida_physgen.ml.training import train_ensemble


def molecules() -> list[ase.Atoms]:
    structures = [ase.build.molecule(name) for name in ("H2O", "CH4", "C6H6")]
    for energy, atoms in zip((-14.2, -24.0, -76.5), structures):
        atoms.info["energy"] = energy
    return structures


def crystals() -> list[ase.Atoms]:
    structures = [ase.build.bulk("Si", "diamond", a=5.43), ase.build.bulk("NaCl", "rocksalt", a=5.64)]
    for energy, atoms in zip((-10.8, -7.1), structures):
        atoms.info["energy"] = energy
    return structures


def frames(n: int = 4) -> list[ase.Atoms]:
    """``n`` rattled copies of one water molecule in a box (same atoms in the same order)."""
    structures = []
    for index in range(n):
        atoms = ase.build.molecule("H2O")
        atoms.set_cell([6.0, 6.0, 6.0])
        atoms.rattle(0.05, seed=index)
        atoms.info["energy"] = -14.0 - index
        structures.append(atoms)
    return structures


# ====================================================================== StructureSet exports
def test_export_formats_listed():
    assert StructureSet.get_export_formats() == ["cif", "extxyz", "json", "npz"]
    assert GeneratorModel.get_export_formats() == ["csv", "json", "pt"]


def test_export_extxyz_round_trip(tmp_path):
    node = StructureSet.from_ase(molecules(), info_keys=["energy"]).store()
    written = orm.load_node(node.pk).export(tmp_path / "set.xyz")  # .xyz means extended XYZ
    assert written == [str(tmp_path / "set.xyz")]
    back = ase.io.read(tmp_path / "set.xyz", index=":")
    assert [a.get_chemical_formula() for a in back] == [a.get_chemical_formula() for a in molecules()]
    for read, original in zip(back, molecules()):
        np.testing.assert_allclose(read.positions, original.positions, atol=1e-8)
    assert StructureSet.from_file(tmp_path / "set.xyz").get_array("energy").tolist() == [-14.2, -24.0, -76.5]


def test_export_cif_one_block_per_structure(tmp_path):
    node = StructureSet.from_ase(crystals() + molecules()[:1], info_keys=["energy"]).store()
    node.export(tmp_path / "set.cif")
    text = (tmp_path / "set.cif").read_text()
    assert [line for line in text.splitlines() if line.startswith("data_")] == [
        "data_structure_0",
        "data_structure_1",
        "data_structure_2",
    ]
    back = ase.io.read(tmp_path / "set.cif", index=":")
    assert [a.get_chemical_formula() for a in back] == ["Si2", "ClNa", "H2O"]
    np.testing.assert_allclose(
        back[1].cell.cellpar(), crystals()[1].cell.cellpar(), atol=1e-6
    )  # CIF keeps no orientation


def test_export_json_and_npz(tmp_path):
    structures = crystals()
    structures[1].info["energy"] = float("nan")
    node = StructureSet.from_ase(structures, info_keys=["energy"]).store()
    node.export(tmp_path / "set.json")
    data = json.loads((tmp_path / "set.json").read_text())
    assert [entry["symbols"] for entry in data] == [["Si", "Si"], ["Na", "Cl"]]
    assert [entry["info"]["energy"] for entry in data] == [-10.8, None]
    assert data[0]["pbc"] == [True, True, True]

    node.export(tmp_path / "set.npz")
    batch = StructureBatch.from_npz(tmp_path / "set.npz")
    np.testing.assert_array_equal(batch.positions, node.get_array("positions"))
    assert (tmp_path / "set.npz").read_bytes() == node.base.repository.get_object_content(node.FILENAME, mode="rb")


def test_export_refusals(tmp_path):
    node = StructureSet.from_ase(molecules())
    with pytest.raises(ValueError, match=r"^fileformat: got 'pdf', expected one of \['cif', 'extxyz'"):
        node.export(tmp_path / "set.pdf")
    with pytest.raises(ValueError, match="^fileformat: cannot be guessed"):
        node.export(tmp_path / "set")
    with pytest.raises(ValueError, match="^path: the directory"):
        node.export(tmp_path / "absent" / "set.xyz")
    assert not list(tmp_path.iterdir())

    (tmp_path / "set.xyz").write_text("old")
    with pytest.raises(OSError, match="already"):  # what verdi's data export expects
        node.export(tmp_path / "set.xyz")
    assert (tmp_path / "set.xyz").read_text() == "old"
    node.export(tmp_path / "set.xyz", fileformat="extxyz", overwrite=True)
    assert len(ase.io.read(tmp_path / "set.xyz", index=":")) == 3


def test_export_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    node = StructureSet.from_ase(molecules())
    (tmp_path / "set.json").write_text("old")

    def broken(self, main_file_name="", **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(StructureSet, "_prepare_json", broken)
    with pytest.raises(RuntimeError):
        node.export(tmp_path / "set.json", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["set.json"]
    assert (tmp_path / "set.json").read_text() == "old"


def test_export_extxyz_kept(tmp_path):
    node = StructureSet.from_ase(molecules(), info_keys=["energy"])
    node.export_extxyz(tmp_path / "legacy.extxyz")
    assert len(ase.io.read(tmp_path / "legacy.extxyz", index=":")) == 3
    handle = io.StringIO()
    node.export_extxyz(handle)
    assert handle.getvalue() == (tmp_path / "legacy.extxyz").read_text()


# ====================================================================== converters
def test_get_structuredata_list():
    node = StructureSet.from_ase(crystals() + molecules(), info_keys=["energy"]).store()
    structures = orm.load_node(node.pk).get_structuredata_list()
    assert len(structures) == 5
    assert all(isinstance(s, orm.StructureData) and not s.is_stored for s in structures)
    assert [s.get_formula() for s in structures] == ["Si2", "ClNa", "H2O", "CH4", "C6H6"]
    assert structures[0].pbc == (True, True, True) and structures[2].pbc == (False, False, False)
    np.testing.assert_allclose(structures[1].get_ase().positions, crystals()[1].positions)
    assert [s.base.extras.get("energy") for s in structures] == [-10.8, -7.1, -14.2, -24.0, -76.5]

    stored = [s.store() for s in structures]
    query = orm.QueryBuilder().append(
        orm.StructureData, filters={"id": {"in": [s.pk for s in stored]}, "extras.energy": {"<": -20}}, project="id"
    )
    assert sorted(query.all(flat=True)) == sorted([stored[3].pk, stored[4].pk])


def test_get_pymatgen():
    from pymatgen.core import Molecule, Structure

    node = StructureSet.from_ase(crystals() + molecules()[:1], info_keys=["energy"])
    converted = node.get_pymatgen()
    assert [type(item) for item in converted] == [Structure, Structure, Molecule]
    assert converted[1].composition.reduced_formula == "NaCl"
    np.testing.assert_allclose(converted[0].lattice.matrix, crystals()[0].cell.array)
    np.testing.assert_allclose(converted[2].cart_coords, molecules()[0].positions)
    assert converted[2].properties["energy"] == -14.2


def test_to_trajectory():
    node = StructureSet.from_ase(frames(4), info_keys=["energy"]).store()
    trajectory = orm.load_node(node.pk).to_trajectory()
    assert isinstance(trajectory, orm.TrajectoryData) and not trajectory.is_stored
    assert trajectory.numsteps == 4
    assert list(trajectory.symbols) == ["O", "H", "H"]
    np.testing.assert_allclose(trajectory.get_positions(), np.stack([a.positions for a in frames(4)]))
    np.testing.assert_allclose(trajectory.get_cells()[2], np.eye(3) * 6.0)
    assert trajectory.get_array("info_energy").tolist() == [-14.0, -15.0, -16.0, -17.0]
    trajectory.store()


def test_to_trajectory_refuses_different_atoms():
    shuffled = frames(3)
    shuffled[2] = shuffled[2][[1, 0, 2]]  # same formula, other order
    with pytest.raises(ValueError, match=r"^structures: structure 2 \(H2O, 3 atoms\) does not have the same"):
        StructureSet.from_ase(shuffled).to_trajectory()
    with pytest.raises(ValueError, match=r"structure 1 \(CH4, 5 atoms\)"):
        StructureSet.from_ase(molecules()).to_trajectory()


# ====================================================================== stable hashes
def test_same_structures_same_hash(monkeypatch):
    first = StructureSet.from_ase(molecules(), info_keys=["energy"])
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400 * 400)  # another day: other zip time stamps
    second = StructureSet.from_ase(molecules(), info_keys=["energy"])
    monkeypatch.undo()
    first.store()
    second.store()
    assert first.base.caching.get_hash() == second.base.caching.get_hash()
    assert first.base.repository.get_object_content(StructureSet.FILENAME, mode="rb") == (
        second.base.repository.get_object_content(StructureSet.FILENAME, mode="rb")
    )
    with zipfile.ZipFile(io.BytesIO(first.base.repository.get_object_content(StructureSet.FILENAME, mode="rb"))) as z:
        assert {info.date_time for info in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}

    other = molecules()
    other[0].positions[0, 0] += 1e-6
    assert StructureSet.from_ase(other, info_keys=["energy"]).store().base.caching.get_hash() != (
        first.base.caching.get_hash()
    )


# ====================================================================== GeneratorModel
@pytest.fixture
def toy_family(toy_plugins):
    from aiida_physgen.ml.family import get_family

    return get_family("toy")


@pytest.fixture
def trained(toy_family):
    from physgen_toy.family import water_molecules

    batch = StructureBatch.from_atoms(water_molecules(6))
    (model,) = train_ensemble(toy_family, batch, {"composition": "H2O", "box": 6.0}, {"loop": {"steps": 3}}, [7])
    return model


def test_generator_model_same_bytes_same_hash(trained):
    data = trained.to_bytes()
    first, second = GeneratorModel(data).store(), GeneratorModel(bytes(data)).store()
    assert first.base.caching.get_hash() == second.base.caching.get_hash()
    assert GeneratorModel(trained.to_bytes()).base.caching._compute_hash() == first.base.caching.get_hash()


def test_generator_model_exports(trained, tmp_path):
    node = GeneratorModel.from_model(trained).store()
    node = orm.load_node(node.pk)
    assert node.export(tmp_path / "model.pt") == [str(tmp_path / "model.pt")]
    assert (tmp_path / "model.pt").read_bytes() == node.get_model_bytes()
    assert model_io.load_model(tmp_path / "model.pt").config == trained.config

    node.export(tmp_path / "config.json")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seed"] == 7 and config["family"] == "toy" and config["checksum"] == node.checksum
    assert config["losses"] == pytest.approx(trained.config["losses"])
    assert "state_dict" not in config

    node.export(tmp_path / "losses.csv")
    rows = list(csv.reader((tmp_path / "losses.csv").read_text().splitlines()))
    assert rows[0] == ["steps", "critic", "generator", "wasserstein"]
    assert [int(row[0]) for row in rows[1:]] == node.get_loss_curves()["steps"]

    with pytest.raises(OSError):
        node.export(tmp_path / "model.pt")
    node.export(tmp_path / "model.pt", overwrite=True)
    with pytest.raises(ValueError, match="^fileformat: got 'cif'"):
        node.export(tmp_path / "model.cif")


def test_generator_model_refuses_missing_architecture(trained):
    config = {key: value for key, value in trained.config.items() if key != "architecture"}
    with pytest.raises(ValueError, match=r"^model_bytes: the 'toy' family cannot load .*'architecture'"):
        GeneratorModel(TrainedModel(trained.module, config).to_bytes())


def test_generator_model_refuses_mismatched_weights(trained):
    architecture = {**trained.config["architecture"], "hidden": trained.config["architecture"]["hidden"] + 3}
    data = TrainedModel(trained.module, {**trained.config, "architecture": architecture}).to_bytes()
    with pytest.raises(ValueError, match=r"^model_bytes: .*size mismatch"):
        GeneratorModel(data)


def test_generator_model_refuses_missing_weights(trained):
    blob = torch.load(io.BytesIO(trained.to_bytes()), weights_only=True)
    blob["state_dict"] = dict(list(blob["state_dict"].items())[:-1])
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    with pytest.raises(ValueError, match=r"^model_bytes: .*Missing key"):
        GeneratorModel(buffer.getvalue())
