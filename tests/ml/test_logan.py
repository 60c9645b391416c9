"""LoGAN: composition handling, validation, determinism, ensembles, learning on tiny data."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from aiida_physgen.ml import logan
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.descriptors import atomic_descriptors
from aiida_physgen.ml.model_io import load_model, save_model
from aiida_physgen.resources import resource_path

BOX = np.eye(3) * 9.5
TINY = {"steps": 3, "rattle_copies": 1, "hidden": [32, 16], "critic_hidden": [16], "n_max": 2, "l_max": 2,
        "max_neighbours": 8, "batch_size": 4}


@pytest.fixture(scope="module")
def molecules():
    return StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))


@pytest.fixture(scope="module")
def few(molecules):
    return molecules.subset(range(8))


def test_parse_composition():
    assert logan.parse_composition("C5H12O") == ["C"] * 5 + ["H"] * 12 + ["O"]
    assert logan.parse_composition(["Si", "O", "O", "Si"]) == ["Si", "Si", "O", "O"]
    for bad in ("C5H12Xx", "c5", "", "C5 H12?"):
        with pytest.raises(ValueError, match="composition"):
            logan.parse_composition(bad)


def test_settings_reject_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown key.*'epochs'"):
        logan.LoganSettings.from_dict({"epochs": 5})
    with pytest.raises(ValueError, match="latent_dim"):
        logan.LoganSettings(latent_dim=0)
    with pytest.raises(ValueError, match="radial"):
        logan.LoganSettings(radial="fourier")


def test_validation_before_training(molecules):
    symbols = logan.parse_composition("C5H12O")
    with pytest.raises(ValueError, match=r"training: element\(s\) \['O'\]"):
        logan.validate_training(molecules, logan.parse_composition("C5H12"), BOX, [False] * 3, 5.0)
    with pytest.raises(ValueError, match=r"composition: element\(s\) \['N'\]"):
        logan.validate_training(molecules, logan.parse_composition("C5H12NO"), BOX, [False] * 3, 5.0)
    with pytest.raises(ValueError, match="cell: the non-periodic box"):
        logan.validate_training(molecules, symbols, np.eye(3) * 4.0, [False] * 3, 5.0)
    with pytest.raises(ValueError, match="training: the training set is empty"):
        logan.validate_training(None, symbols, BOX, [False] * 3, 5.0)
    with pytest.raises(ValueError, match="cell: the cell has zero volume"):
        logan.validate_training(molecules, symbols, np.zeros((3, 3)), [True] * 3, 5.0)
    logan.validate_training(molecules, symbols, BOX, [False] * 3, 5.0)


def test_training_errors_come_before_any_work(molecules, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("descriptors computed before validation")

    monkeypatch.setattr(logan, "environment_pools", boom)
    with pytest.raises(ValueError, match="training: element"):
        logan.train_logan(molecules, "C5H12", BOX, False, TINY)
    with pytest.raises(ValueError, match="grid: unknown setting"):
        logan.train_logan(molecules, "C5H12O", BOX, False, TINY, grid={"nonsense": [1, 2]})


def test_generator_shapes_and_cell(few):
    (model,) = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[0])
    batch = model.module.sample(50, seed=1)
    assert len(batch) == 50
    positions, numbers = batch.uniform_view()
    assert positions.shape == (50, 18, 3)
    assert list(numbers) == [6] * 5 + [1] * 12 + [8]
    assert positions.min() >= 0 and positions.max() <= 9.5  # sigmoid fractional coordinates × box
    assert batch[0].get_chemical_formula() == "C5H12O"
    assert not batch[0].pbc.any()


def test_determinism_and_ensemble_members_differ(few):
    first = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[0, 1])
    again = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[0, 1])
    other = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[2, 3])
    sample = lambda models: logan.generate([m.module for m in models], 20, seed=7).positions  # noqa: E731
    assert np.array_equal(sample(first), sample(again))
    assert not np.allclose(sample(first), sample(other))
    a = first[0].module.sample(20, 7).positions
    b = first[1].module.sample(20, 7).positions
    assert not np.allclose(a, b), "ensemble members with different seeds must differ"
    assert [m.config["seed"] for m in first] == [0, 1]
    # a different generation seed gives different candidates from the same models
    assert not np.allclose(logan.generate([first[0].module], 20, 7).positions,
                           logan.generate([first[0].module], 20, 8).positions)


def test_grid_makes_seeds_times_settings_members(few):
    models = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[0, 1],
                               grid={"lr_generator": [1e-4, 1e-3], "radial": ["gaussian", "bessel"]})
    assert len(models) == 8
    combos = {(m.config["seed"], m.config["hyperparameters"]["lr_generator"], m.config["descriptor"]["radial"])
              for m in models}
    assert len(combos) == 8


def test_ensemble_member_is_the_same_network_alone(few):
    (model,) = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[5])
    gen = model.module
    ensemble = logan.LoganGenerator(gen.symbols, BOX, gen.pbc, seeds=[4, 5, 6], **gen.architecture())
    member = ensemble.member(1)
    z = torch.randn(1, 6, gen.latent_dim)
    full = ensemble(z.expand(3, -1, -1))
    assert torch.allclose(full[1], member(z)[0])


def test_model_file_round_trip(few, tmp_path):
    (model,) = logan.train_logan(few, "C5H12O", BOX, False, TINY, seeds=[3])
    path = tmp_path / "m.pt"
    checksum = save_model(path, model.module, model.config)
    module, config = load_model(path)
    assert len(checksum) == 64 and config["seed"] == 3 and config["family"] == "logan"
    assert np.array_equal(module.sample(10, 0).positions, model.module.sample(10, 0).positions)


def test_rattled_copies_all_differ_and_are_seeded(few):
    settings = logan.LoganSettings(**TINY).descriptor_settings([1, 6, 8])
    pools = logan.environment_pools(few, settings, copies=3, rattle_std=0.05, seed=0)
    again = logan.environment_pools(few, settings, copies=3, rattle_std=0.05, seed=0)
    other = logan.environment_pools(few, settings, copies=3, rattle_std=0.05, seed=1)
    n_h = int((few.numbers == 1).sum())
    assert pools[1].shape[0] == 4 * n_h  # the originals plus 3 copies
    copies = pools[1].reshape(4, n_h, -1)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(copies[i], copies[j])
    assert np.array_equal(pools[1], again[1]) and not np.allclose(pools[1], other[1])


def test_periodic_sio2_generation():
    target = StructureBatch.read(resource_path("logan/sio2/mp-546794_target.extxyz"))[0]
    training = StructureBatch.read(resource_path("logan/sio2/mp-546794_training.extxyz")).subset(range(4))
    (model,) = logan.train_logan(training, "Si2O4", target.cell.array, True, {**TINY, "r_cut": 4.0})
    batch = model.module.sample(5, 0)
    assert batch.pbc.all() and np.allclose(batch.cells[0], target.cell.array)
    assert batch[0].get_chemical_formula() == target.get_chemical_formula()


def _environment_distance(batch, pools, settings):
    """Mean distance of generated atomic environments to the nearest training environment of the
    same element, in standardised descriptor space."""
    features = np.concatenate(atomic_descriptors(batch, settings))
    everything = np.concatenate(list(pools.values()))
    mean, std = everything.mean(0), everything.std(0) + 1e-6
    total = []
    for z, pool in pools.items():
        mine = (features[batch.numbers == z] - mean) / std
        ref = (pool - mean) / std
        d = np.sqrt(((mine[:, None] - ref[None]) ** 2).sum(-1)).min(1)
        total.append(d)
    return float(np.concatenate(total).mean())


def test_training_moves_generated_environments_towards_the_real_ones(molecules):
    """A real (short) training run: generated C5H12O environments get measurably closer to the
    C4H10O/C6H14O training environments, and interatomic distances become more physical."""
    settings = {"steps": 150, "rattle_copies": 1, "lr_generator": 1e-3, "lr_critic": 1e-3, "n_max": 3,
                "l_max": 3, "max_neighbours": 12, "batch_size": 15}
    untrained = logan.train_logan(molecules, "C5H12O", BOX, False, {**settings, "steps": 0}, seeds=[0])[0].module
    trained = logan.train_logan(molecules, "C5H12O", BOX, False, settings, seeds=[0])[0].module
    desc = logan.LoganSettings.from_dict(settings).descriptor_settings([1, 6, 8])
    pools = logan.environment_pools(molecules, desc, copies=0, rattle_std=0.05, seed=0)
    before = _environment_distance(untrained.sample(40, 0), pools, desc)
    after = _environment_distance(trained.sample(40, 0), pools, desc)
    assert after < 0.8 * before, (before, after)


def test_ml_layer_imports_no_aiida():
    code = (
        "import sys; import aiida_physgen.ml.logan, aiida_physgen.ml.wgan, aiida_physgen.ml.descriptors, "
        "aiida_physgen.ml.model_io, aiida_physgen.selection, aiida_physgen.basins; "
        "bad = [m for m in sys.modules if m == 'aiida' or m.startswith('aiida.')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
