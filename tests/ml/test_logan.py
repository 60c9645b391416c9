"""LoGAN: composition handling, validation, determinism, ensembles, learning on tiny data."""

import numpy as np
import pytest
import torch

from aiida_physgen.ml import logan
from aiida_physgen.ml import settings as settings_module
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.composition import composition_string, parse_composition
from aiida_physgen.ml.descriptors import atomic_descriptors
from aiida_physgen.ml.family import TrainedModel, get_family
from aiida_physgen.ml.model_io import load_model, save_model
from aiida_physgen.ml.training import generate, train_ensemble
from aiida_physgen.resources import resource_path

BOX = np.eye(3) * 9.5
TARGET = {"composition": "C5H12O", "cell": BOX.tolist(), "pbc": False}
TINY = {
    "loop": {"steps": 3, "batch_size": 4},
    "rattle_copies": 1,
    "hidden": [32, 16],
    "critic_hidden": [16],
    "descriptor": {"n_max": 2, "l_max": 2, "max_neighbours": 8},
}


def train(training, settings=TINY, seeds=(0,), target=TARGET, **kwargs):
    return train_ensemble("logan", training, target, settings, seeds=list(seeds), **kwargs)


@pytest.fixture(scope="module")
def molecules():
    return StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))


@pytest.fixture(scope="module")
def few(molecules):
    return molecules.subset(range(8))


def test_parse_composition():
    assert parse_composition("C5H12O") == ["C"] * 5 + ["H"] * 12 + ["O"]
    assert parse_composition(["Si", "O", "O", "Si"]) == ["Si", "Si", "O", "O"]
    assert composition_string(parse_composition("OSi2O3")) == "O4Si2"
    for bad in ("C5H12Xx", "c5", "", "C5 H12?", "X2"):
        with pytest.raises(ValueError, match="composition"):
            parse_composition(bad)


def test_settings_reject_unknown_and_bad_values():
    family = get_family("logan")
    with pytest.raises(ValueError, match=r"unknown key.*'settings\.epochs'"):
        family.settings({"epochs": 5})
    with pytest.raises(ValueError, match=r"settings\.loop\.stepz"):
        family.settings({"loop": {"stepz": 5}})
    with pytest.raises(ValueError, match="latent_dim"):
        logan.LoganSettings(latent_dim=0)
    with pytest.raises(ValueError, match=r"descriptor\.radial"):
        family.settings({"descriptor": {"radial": "fourier"}})
    with pytest.raises(ValueError, match=r"loop\.lr_generator.*grid"):
        family.settings({"loop": {"lr_generator": [1e-4, 1e-3]}})
    # the family's own loop defaults, not the bare WGAN ones
    assert family.settings({}).loop.steps == 2000
    assert family.settings({"loop": {"batch_size": 4}}).loop.steps == 2000


def test_target_is_checked_and_normalised():
    family = get_family("logan")
    normal = family.check_target({"composition": ["H", "O", "H"], "cell": BOX, "pbc": True})
    assert normal == {"composition": "H2O", "cell": BOX.tolist(), "pbc": [True] * 3}
    with pytest.raises(ValueError, match=r"target\.cell"):
        family.check_target({"composition": "H2O", "cell": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"target\.composition"):
        family.check_target({"cell": BOX})
    with pytest.raises(ValueError, match=r"target\.pbc"):
        family.check_target({"composition": "H2O", "cell": BOX, "pbc": [True, False]})
    with pytest.raises(ValueError, match=r"target: unknown key"):
        family.check_target({**TARGET, "temperature": 300})


def test_validation_before_training(molecules):
    symbols = parse_composition("C5H12O")
    with pytest.raises(ValueError, match=r"training: element\(s\) \['O'\]"):
        logan.validate_training(molecules, parse_composition("C5H12"), BOX, [False] * 3, 5.0)
    with pytest.raises(ValueError, match=r"composition: element\(s\) \['N'\]"):
        logan.validate_training(molecules, parse_composition("C5H12NO"), BOX, [False] * 3, 5.0)
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
        train(molecules, target={**TARGET, "composition": "C5H12"})
    with pytest.raises(ValueError, match="grid: unknown setting"):
        train(molecules, grid={"nonsense": [1, 2]})
    # the second grid point is invalid: nothing is trained for the first one either
    with pytest.raises(ValueError, match="cell: the non-periodic box"):
        train(molecules, grid={"descriptor": {"r_cut": [5.0, 12.0]}})


def test_generator_shapes_and_cell(few):
    (model,) = train(few, seeds=[0])
    batch = model.sample(50, seed=1)
    assert len(batch) == 50
    positions, numbers = batch.uniform_view()
    assert positions.shape == (50, 18, 3)
    assert list(numbers) == [6] * 5 + [1] * 12 + [8]
    assert positions.min() >= 0 and positions.max() <= 9.5  # sigmoid fractional coordinates × box
    assert batch[0].get_chemical_formula() == "C5H12O"
    assert not batch[0].pbc.any()
    config = model.config
    assert config["family"] == "logan" and config["role"] == "generator" and config["steps"] == 3
    assert config["target"] == {"composition": "C5H12O", "cell": BOX.tolist(), "pbc": [False] * 3}
    assert config["hyperparameters"]["loop"]["batch_size"] == 4
    assert config["descriptor"]["n_max"] == 2
    assert set(config["losses"]) == {"critic", "generator", "wasserstein"}
    assert config["history"]["steps"] == [3]


def test_determinism_and_ensemble_members_differ(few):
    first = train(few, seeds=[0, 1])
    again = train(few, seeds=[0, 1])
    other = train(few, seeds=[2, 3])
    sample = lambda models: generate(models, 20, seed=7).positions  # noqa: E731
    assert np.array_equal(sample(first), sample(again))
    assert not np.allclose(sample(first), sample(other))
    a = first[0].sample(20, 7).positions
    b = first[1].sample(20, 7).positions
    assert not np.allclose(a, b), "ensemble members with different seeds must differ"
    assert [m.config["seed"] for m in first] == [0, 1]
    # a different generation seed gives different candidates from the same models
    assert not np.allclose(generate(first[:1], 20, 7).positions, generate(first[:1], 20, 8).positions)
    # generation labels every structure with its model, and adding a model changes no other's output
    both = generate(first, 20, seed=7)
    assert list(np.bincount(both.info["model_index"])) == [20, 20]
    assert np.array_equal(both.subset(range(20)).positions, generate(first[:1], 20, seed=7).positions)


def test_grid_makes_seeds_times_settings_members(few):
    groups = set()
    models = train(
        few,
        seeds=[0, 1],
        grid={"loop": {"lr_generator": [1e-4, 1e-3]}, "descriptor": {"radial": ["gaussian", "bessel"]}},
        callback=lambda progress: groups.add((progress.group, progress.n_groups, tuple(progress.members))),
    )
    assert len(models) == 8
    combos = {
        (m.config["seed"], m.config["hyperparameters"]["loop"]["lr_generator"], m.config["descriptor"]["radial"])
        for m in models
    }
    assert len(combos) == 8
    # learning rates are vectorised, the descriptor is not: two groups of four members
    assert {(g, n, len(members)) for g, n, members in groups} == {(0, 2, 4), (1, 2, 4)}
    assert [m.config["ensemble"]["index"] for m in models] == list(range(8))


def test_ensemble_member_is_the_same_network_alone(few):
    (model,) = train(few, seeds=[5])
    gen = model.module
    ensemble = logan.LoganGenerator(gen.symbols, BOX, gen.pbc, seeds=[4, 5, 6], **gen.architecture())
    member = ensemble.member(1)
    z = torch.randn(1, 6, gen.latent_dim)
    full = ensemble(z.expand(3, -1, -1))
    assert torch.equal(full[1], member(z)[0])
    assert not torch.equal(full[0], full[1])


def test_model_file_round_trip(few, tmp_path):
    (model,) = train(few, seeds=[3])
    path = tmp_path / "m.pt"
    checksum = save_model(path, model)
    loaded = load_model(path)
    assert isinstance(loaded, TrainedModel)
    assert len(checksum) == 64 and loaded.config["seed"] == 3 and loaded.config["family"] == "logan"
    assert loaded.config == model.config
    assert np.array_equal(loaded.sample(10, 0).positions, model.sample(10, 0).positions)
    (path.parent / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model file"):
        load_model(path.parent / "junk.pt")


def test_sampling_takes_no_condition_and_needs_a_count(few):
    (model,) = train(few, seeds=[0])
    with pytest.raises(ValueError, match="condition"):
        model.sample(5, 0, condition={"temperature": 300})
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="count"):
            model.sample(bad, 0)


def test_rattled_copies_all_differ_and_are_seeded(few):
    settings = settings_module.from_dict(logan.LoganSettings, TINY).descriptor.for_species([1, 6, 8])
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
    settings = settings_module.merge(TINY, {"descriptor": {"r_cut": 4.0}})
    (model,) = train(training, settings, target={"composition": "Si2O4", "cell": target.cell.array, "pbc": True})
    batch = model.sample(5, 0)
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


@pytest.mark.slow
def test_training_moves_generated_environments_towards_the_real_ones(molecules):
    """A real (short) training run: generated C5H12O environments get measurably closer to the
    C4H10O/C6H14O training environments, and interatomic distances become more physical."""
    settings = {
        "loop": {"steps": 150, "lr_generator": 1e-3, "lr_critic": 1e-3, "batch_size": 15},
        "rattle_copies": 1,
        "descriptor": {"n_max": 3, "l_max": 3, "max_neighbours": 12},
    }
    trained = train(molecules, settings)[0]
    # the same generator before training: its initial weights come from its seed alone (steps = 0 is refused)
    untrained = TrainedModel(get_family("logan").module_from_config(trained.config).eval(), trained.config)
    desc = settings_module.from_dict(logan.LoganSettings, settings).descriptor.for_species([1, 6, 8])
    pools = logan.environment_pools(molecules, desc, copies=0, rattle_std=0.05, seed=0)
    before = _environment_distance(untrained.sample(40, 0), pools, desc)
    after = _environment_distance(trained.sample(40, 0), pools, desc)
    assert after < 0.8 * before, (before, after)
