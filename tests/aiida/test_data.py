"""Tests of the ``physgen.structure_set`` and ``physgen.generator_model`` data plugins."""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import Counter
from pathlib import Path

import ase
import ase.build
import ase.io
import numpy as np
import pytest
import torch
from aiida import orm
from aiida.common import exceptions
from aiida.plugins import DataFactory

from aiida_physgen.data.generator_model import REQUIRED_CONFIG_KEYS, GeneratorModel
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml import model_io
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.family import TrainedModel
from aiida_physgen.ml.training import train_ensemble

RESOURCES = Path(__file__).resolve().parents[2] / "aiida_physgen" / "resources" / "logan"
MOLECULES_FILE = RESOURCES / "C5H12O_training.extxyz"
SIO2_FILE = RESOURCES / "sio2" / "mp-546546_training.extxyz"

#: generous bound on the JSON size of a set's attributes; the SiO2 file holds ~200 kB of arrays
MAX_ATTRIBUTES_JSON = 4096


def assert_batches_equal(actual: StructureBatch, expected: StructureBatch) -> None:
    for name in ("numbers", "n_atoms", "pbc"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)
    for name in ("positions", "cells"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)
    assert sorted(actual.info) == sorted(expected.info)
    for key in expected.info:
        np.testing.assert_array_equal(actual.info[key], expected.info[key], err_msg=key)


def assert_atoms_equal(actual: ase.Atoms, expected: ase.Atoms, atol: float = 0.0) -> None:
    np.testing.assert_array_equal(actual.numbers, expected.numbers)
    np.testing.assert_allclose(actual.positions, expected.positions, rtol=0, atol=atol)
    np.testing.assert_allclose(actual.cell.array, expected.cell.array, rtol=0, atol=atol)
    np.testing.assert_array_equal(actual.pbc, expected.pbc)


def hill_counts(structures) -> dict[str, int]:
    return dict(Counter(atoms.get_chemical_formula(mode="hill") for atoms in structures))


def molecules() -> list[ase.Atoms]:
    """Three molecules of different sizes, each with an energy in ``info``."""
    structures = [ase.build.molecule(name) for name in ("H2O", "CH4", "C6H6")]
    for energy, atoms in zip((-14.2, -24.0, -76.5), structures):
        atoms.info["energy"] = energy
    return structures


# ====================================================================== StructureSet
def test_entry_point():
    assert DataFactory("physgen.structure_set") is StructureSet
    assert DataFactory("physgen.generator_model") is GeneratorModel


def test_from_ase_round_trip():
    structures = molecules()
    node = StructureSet.from_ase(structures, info_keys=["energy"])

    assert node.count == len(node) == 3
    assert node.n_atoms_total == 3 + 5 + 12
    assert node.formula_counts == {"H2O": 1, "CH4": 1, "C6H6": 1}
    assert node.elements == ["C", "H", "O"]
    assert node.pbc == [False, False, False]
    assert node.info_keys == ["energy"]
    assert node.base.repository.list_object_names() == [StructureSet.FILENAME]

    node.store()
    loaded = orm.load_node(node.pk)
    assert isinstance(loaded, StructureSet)
    assert loaded is not node
    assert_batches_equal(loaded.get_batch(), StructureBatch.from_atoms(structures, info_keys=["energy"]))
    assert loaded.base.attributes.all == node.base.attributes.all
    for original, atoms in zip(structures, loaded):
        assert_atoms_equal(atoms, original)
        assert atoms.info["energy"] == original.info["energy"]
    np.testing.assert_array_equal(loaded.get_array("energy"), [-14.2, -24.0, -76.5])


def test_mixed_size_molecules():
    structures = molecules()
    node = StructureSet.from_ase(structures).store()
    loaded = orm.load_node(node.pk)

    assert [len(atoms) for atoms in loaded] == [3, 5, 12]
    np.testing.assert_array_equal(loaded.get_array("n_atoms"), [3, 5, 12])
    assert_atoms_equal(loaded.get_ase(1), structures[1])
    assert_atoms_equal(loaded.get_ase(-1), structures[2])
    with pytest.raises(IndexError):
        loaded.get_ase(3)


def test_from_file_molecules():
    reference = ase.io.read(MOLECULES_FILE, index=":")
    node = StructureSet.from_file(MOLECULES_FILE)

    assert node.count == len(reference)
    assert len(set(len(atoms) for atoms in reference)) > 1, "the resource file should mix molecule sizes"
    assert node.n_atoms_total == sum(len(atoms) for atoms in reference)
    assert node.formula_counts == hill_counts(reference)
    assert node.elements == sorted({symbol for atoms in reference for symbol in atoms.get_chemical_symbols()})
    assert node.pbc == [False, False, False]

    node.store()
    loaded = orm.load_node(node.pk)
    assert_batches_equal(loaded.get_batch(), StructureBatch.read(MOLECULES_FILE))
    for atoms, original in zip(loaded, reference):
        assert_atoms_equal(atoms, original)


def test_from_file_crystals():
    reference = ase.io.read(SIO2_FILE, index=":")
    node = StructureSet.from_file(SIO2_FILE, format="extxyz").store()
    loaded = orm.load_node(node.pk)

    assert loaded.count == len(reference)
    assert loaded.elements == ["O", "Si"]
    assert loaded.pbc == [True, True, True]
    assert loaded.formula_counts == hill_counts(reference)
    assert sum(loaded.formula_counts.values()) == loaded.count
    assert_batches_equal(loaded.get_batch(), StructureBatch.read(SIO2_FILE))
    for index in (0, len(reference) // 2, len(reference) - 1):
        assert_atoms_equal(loaded.get_ase(index), reference[index])


def test_from_file_index_and_missing_file(tmp_path):
    assert StructureSet.from_file(SIO2_FILE, index="0:5").count == 5
    with pytest.raises(FileNotFoundError):
        StructureSet.from_file(tmp_path / "absent.extxyz")


def test_from_structuredata_round_trip():
    crystal = ase.build.bulk("Si", "diamond", a=5.43)
    molecule = ase.build.molecule("CO2")
    slab = ase.build.fcc111("Al", size=(2, 2, 2), vacuum=5.0)  # periodic in a and b only
    originals = [crystal, molecule, slab]
    structures = [orm.StructureData(ase=atoms) for atoms in originals]
    structures[0].store()  # stored and unstored inputs are both accepted

    node = StructureSet.from_structuredata(structures).store()
    loaded = orm.load_node(node.pk)

    assert loaded.count == 3
    assert loaded.pbc is None, "the structures differ in periodicity"
    assert loaded.elements == ["Al", "C", "O", "Si"]
    for index, original in enumerate(originals):
        assert_atoms_equal(loaded.get_ase(index), original, atol=1e-12)
        structure = loaded.get_structuredata(index)
        assert isinstance(structure, orm.StructureData)
        assert not structure.is_stored
        assert_atoms_equal(structure.get_ase(), original, atol=1e-12)


def test_empty_input_rejected():
    with pytest.raises(ValueError, match="structures"):
        StructureSet.from_ase([])
    with pytest.raises(ValueError, match="structures"):
        StructureSet.from_structuredata([])
    with pytest.raises(ValueError, match="structures"):
        StructureSet(StructureBatch.from_atoms(molecules()).subset([]))


def test_wrong_types_rejected():
    with pytest.raises(TypeError, match="batch"):
        StructureSet(molecules())
    with pytest.raises(TypeError, match=r"structures\[1\]"):
        StructureSet.from_ase([ase.build.molecule("H2O"), "H2O"])
    with pytest.raises(TypeError, match=r"structures\[0\]"):
        StructureSet.from_structuredata([ase.build.molecule("H2O")])


def test_unfilled_node_cannot_be_stored():
    node = StructureSet()
    assert len(node) == 0
    with pytest.raises(exceptions.ValidationError, match="structures.npz"):
        node.store()


def test_query_by_count():
    small = StructureSet.from_ase(molecules()[:2]).store()
    large = StructureSet.from_ase([ase.build.molecule("H2O")] * 7).store()
    ids = [small.pk, large.pk]

    query = orm.QueryBuilder().append(
        StructureSet, filters={"id": {"in": ids}, "attributes.count": {">": 5}}, project="id"
    )
    assert query.all(flat=True) == [large.pk]

    query = orm.QueryBuilder().append(StructureSet, filters={"attributes.count": 2}, project="id")
    assert small.pk in query.all(flat=True) and large.pk not in query.all(flat=True)

    # the typed field declared by the attributes model works as well
    fields = StructureSet.fields
    query = orm.QueryBuilder().append(
        StructureSet, filters=(fields.attributes.count < 5) & fields.pk.in_(ids), project="id"
    )
    assert query.all(flat=True) == [small.pk]

    query = orm.QueryBuilder().append(
        StructureSet, filters={"id": {"in": ids}, "attributes.formula_counts.H2O": 7}, project="id"
    )
    assert query.all(flat=True) == [large.pk]


@pytest.mark.parametrize("as_handle", [False, True])
def test_export_extxyz(tmp_path, as_handle):
    structures = molecules()
    node = StructureSet.from_ase(structures, info_keys=["energy"]).store()
    path = tmp_path / "set.extxyz"
    if as_handle:
        with path.open("w") as handle:
            node.export_extxyz(handle)
    else:
        node.export_extxyz(path)

    assert_batches_equal(StructureBatch.read(path), orm.load_node(node.pk).get_batch())
    for atoms, original in zip(ase.io.read(path, index=":"), structures):
        assert_atoms_equal(atoms, original)


def test_export_extxyz_crystals(tmp_path):
    node = StructureSet.from_file(SIO2_FILE).store()
    path = tmp_path / "sio2.extxyz"
    orm.load_node(node.pk).export_extxyz(path)
    assert_batches_equal(StructureSet.from_file(path).get_batch(), node.get_batch())


def test_no_arrays_in_attributes():
    node = StructureSet.from_file(SIO2_FILE).store()
    loaded = orm.load_node(node.pk)
    attributes = loaded.base.attributes.all

    assert set(attributes) <= {"count", "n_atoms_total", "formula_counts", "elements", "pbc", "info_keys", "source"}
    assert len(json.dumps(attributes)) < MAX_ATTRIBUTES_JSON
    assert loaded.n_atoms_total * 3 > MAX_ATTRIBUTES_JSON, "the test needs a set whose arrays would not fit"
    assert loaded.base.extras.all.keys() <= {"_aiida_hash"}
    with loaded.base.repository.open(StructureSet.FILENAME, "rb") as handle:
        assert len(handle.read()) > 10 * MAX_ATTRIBUTES_JSON


def test_cached_batch_is_read_only():
    loaded = orm.load_node(StructureSet.from_ase(molecules()).store().pk)
    batch = loaded.get_batch()
    assert loaded.get_batch() is batch
    assert not batch.positions.flags.writeable
    with pytest.raises(ValueError):
        batch.positions[0, 0] = 1.0
    assert batch.subset([0]).positions.flags.writeable
    assert loaded.array_names == ["numbers", "positions", "n_atoms", "cells", "pbc"]
    with pytest.raises(KeyError, match="energy"):
        loaded.get_array("energy")


def test_serialization_model():
    node = StructureSet.from_ase(molecules()).store()
    serialized = node.serialize(mode="json")
    assert serialized["attributes"]["count"] == 3
    assert StructureSet.FILENAME in serialized["repository_metadata"]["o"]


# ====================================================================== GeneratorModel
@pytest.fixture
def toy_family(toy_plugins):
    """The third-party ``toy`` family of tests/plugins/physgen_toy, registered through its entry point only."""
    from aiida_physgen.ml.family import get_family

    return get_family("toy")


def water(n: int = 6) -> StructureBatch:
    from physgen_toy.family import water_molecules  # on sys.path through the toy_family fixture

    return StructureBatch.from_atoms(water_molecules(n))


@pytest.fixture
def trained(toy_family):
    """A real (tiny) toy model, seed 7, plus an extra config key that must stay in the file only."""
    (model,) = train_ensemble(toy_family, water(), {"composition": "H2O", "box": 6.0}, {"loop": {"steps": 3}}, [7])
    model.config["extra"] = {"generator": np.linspace(1.0, 0.25, 500).tolist()}
    return model


def retrained(toy_family, seed: int):
    (model,) = train_ensemble(toy_family, water(), {"composition": "H2O", "box": 6.0}, {"loop": {"steps": 3}}, [seed])
    return model


def with_config(model: TrainedModel, **changes) -> TrainedModel:
    return TrainedModel(model.module, {**model.config, **changes})


def test_generator_model_round_trip(trained):
    node = GeneratorModel.from_model(trained).store()
    loaded = orm.load_node(node.pk)
    assert isinstance(loaded, GeneratorModel)

    restored = loaded.load()
    assert isinstance(restored, TrainedModel)
    assert not restored.module.training
    original_state = trained.module.state_dict()
    restored_state = restored.module.state_dict()
    assert original_state.keys() == restored_state.keys()
    for key, value in original_state.items():
        assert torch.equal(restored_state[key], value), key
    np.testing.assert_array_equal(restored.sample(4, 1).positions, trained.sample(4, 1).positions)


def test_generator_model_attributes(trained):
    node = GeneratorModel.from_model(trained).store()
    loaded = orm.load_node(node.pk)

    assert loaded.family == "toy"
    assert loaded.role == "generator"
    assert loaded.target == {"composition": "H2O", "box": 6.0}
    assert loaded.descriptor is None
    assert loaded.hyperparameters == trained.config["hyperparameters"]
    assert loaded.hyperparameters["loop"]["steps"] == 3
    assert loaded.seed == 7
    assert loaded.steps == 3
    assert loaded.losses == pytest.approx(trained.config["losses"], rel=1e-12)  # AiiDA keeps 14 digits
    assert set(loaded.losses) == {"critic", "generator", "wasserstein"}
    assert "history" not in loaded.base.attributes.all and "extra" not in loaded.base.attributes.all
    assert len(json.dumps(loaded.base.attributes.all)) < 2048
    assert loaded.base.repository.list_object_names() == [GeneratorModel.FILENAME]
    assert loaded.get_loss_curves()["steps"] == [3]

    full = loaded.get_config()
    assert full["extra"] == trained.config["extra"]
    full["seed"] = 99  # a copy: the node's config is not changed
    assert loaded.get_config()["seed"] == 7


def test_generator_model_checksum(trained, tmp_path):
    node = GeneratorModel.from_model(trained).store()
    loaded = orm.load_node(node.pk)
    exported = Path(loaded.export(tmp_path / "model.pt")[-1])  # AiiDA's export returns the files written

    assert loaded.checksum == hashlib.sha256(exported.read_bytes()).hexdigest()
    assert loaded.checksum == hashlib.sha256(loaded.get_model_bytes()).hexdigest()
    assert loaded.verify_checksum()


def test_generator_model_tampered_file(trained, toy_family):
    node = GeneratorModel.from_model(trained)
    other = retrained(toy_family, 8).to_bytes()
    node.base.repository.put_object_from_bytes(other, GeneratorModel.FILENAME)

    assert not node.verify_checksum()
    with pytest.raises(ValueError, match="checksum"):
        node.load()
    with pytest.raises(exceptions.ValidationError, match="checksum"):
        node.store()


def test_generator_model_from_bytes_and_file(trained, tmp_path):
    data = trained.to_bytes()

    from_bytes = GeneratorModel(data, trained.config)
    assert from_bytes.get_model_bytes() == data
    assert from_bytes.checksum == model_io.sha256(data)
    assert GeneratorModel(data).base.attributes.all == from_bytes.base.attributes.all

    path = tmp_path / "cli_model.pt"
    checksum = model_io.save_model(path, trained)
    from_file = GeneratorModel.from_file(path).store()
    assert from_file.checksum == checksum

    exported = Path(orm.load_node(from_file.pk).export(tmp_path / "exported.pt")[-1])
    assert exported.read_bytes() == path.read_bytes()
    restored = model_io.load_model(exported)
    assert restored.config == trained.config
    for key, value in trained.module.state_dict().items():
        assert torch.equal(restored.module.state_dict()[key], value)

    with pytest.raises(FileNotFoundError):
        GeneratorModel.from_file(tmp_path / "absent.pt")


def test_generator_model_config_mismatch(trained):
    with pytest.raises(ValueError, match="config"):
        GeneratorModel(trained.to_bytes(), {**trained.config, "seed": 8})


def test_generator_model_query(trained, toy_family):
    first = GeneratorModel.from_model(trained).store()
    second = GeneratorModel.from_model(retrained(toy_family, 8)).store()
    ids = [first.pk, second.pk]

    query = orm.QueryBuilder().append(
        GeneratorModel, filters={"id": {"in": ids}, "attributes.family": "toy", "attributes.seed": 8}, project="id"
    )
    assert query.all(flat=True) == [second.pk]

    query = orm.QueryBuilder().append(
        GeneratorModel,
        filters={"id": {"in": ids}, "attributes.target.composition": "H2O", "attributes.hyperparameters.hidden": 16},
        project="attributes.seed",
    )
    assert sorted(query.all(flat=True)) == [7, 8]

    assert orm.QueryBuilder().append(GeneratorModel, filters={"attributes.family": "no-such-family"}).count() == 0


@pytest.mark.parametrize("key", REQUIRED_CONFIG_KEYS)
def test_generator_model_missing_key(trained, key):
    incomplete = TrainedModel(trained.module, {name: value for name, value in trained.config.items() if name != key})
    with pytest.raises(ValueError, match=key):
        GeneratorModel.from_model(incomplete)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("family", "unknown-family", "family"),
        ("role", "surrogate", "role"),
        ("target", {"composition": "H2Q", "box": 6.0}, "target.composition"),
        ("target", {"composition": "H2O", "box": -1}, "target.box"),
        ("seed", 1.5, "seed"),
        ("steps", -1, "steps"),
        ("losses", {"generator": "low"}, "losses"),
        ("hyperparameters", {"weights": list(range(10_000))}, "hyperparameters"),
    ],
)
def test_generator_model_invalid_config(trained, key, value, words):
    with pytest.raises(ValueError, match=words):
        GeneratorModel.from_model(with_config(trained, **{key: value}))


def test_generator_model_numpy_values_named(trained):
    model = with_config(trained, extra={"generator": list(np.linspace(1.0, 0.25, 3))})
    with pytest.raises(ValueError, match=r"config\.extra\.generator\[0\]: numpy"):
        GeneratorModel.from_model(model)


def test_generator_model_non_finite_loss(trained):
    model = with_config(trained, losses={"generator": float("nan"), "critic": -0.125})
    node = GeneratorModel.from_model(model).store()
    loaded = orm.load_node(node.pk)
    assert loaded.losses == {"generator": None, "critic": -0.125}
    assert math.isnan(loaded.get_config()["losses"]["generator"])


def test_generator_model_rejects_other_files():
    with pytest.raises(ValueError, match="model_bytes"):
        GeneratorModel(b"not a model file")
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buffer)
    with pytest.raises(ValueError, match="model_bytes"):
        GeneratorModel(buffer.getvalue())
    with pytest.raises(exceptions.ValidationError):
        GeneratorModel().store()
