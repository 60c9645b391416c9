"""The RePAP family: data checks, the grid and its Gaussians, training, resume, batched seeded sampling,
close-contact redraws and their named errors. Real training steps on tiny trajectories (no mocks)."""

import math

import numpy as np
import pytest
import torch

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.family import TrainedModel, get_family
from aiida_physgen.ml.random_structures import random_structures
from aiida_physgen.ml.repap import (
    MinimumDistanceError,
    RepapLSTM,
    atom_order,
    gaussian_targets,
    nearest_neighbour_distances,
    read_trajectory,
)
from aiida_physgen.ml.training import train_ensemble

L = 8.5
CELL = np.eye(3) * L
TINY = {"hidden": 16, "loop": {"steps": 30, "batch_size": 16, "log_every": 10}}


def trajectory(frames=120, noise=0.08, seed=0, atoms=30):
    """Frames of one random structure (all pairs ≥ 2.2 Å) with thermal-like noise: a fixed-cell trajectory."""
    base = random_structures(f"Si{atoms}", CELL, True, 1, seed, min_distance=2.2)
    rng = np.random.default_rng(seed)
    positions = base.positions[None] + rng.normal(0.0, noise, (frames, atoms, 3))
    return StructureBatch.from_uniform(positions % L, base.numbers, CELL, [True] * 3)


@pytest.fixture(scope="module")
def frames():
    return trajectory()


@pytest.fixture(scope="module")
def model(frames):
    return train_ensemble("repap", frames, {}, {"hidden": 32, "loop": {"steps": 150, "log_every": 50, "lr": 1e-2}})[0]


def fractions_of(batch):
    n = int(batch.n_atoms[0])
    return np.linalg.solve(batch.cells[0].T, batch.positions.T).T.reshape(len(batch), n, 3) % 1.0


# ---------------------------------------------------------------------- data and grid
def test_sequences_follow_the_mean_distance_to_the_origin(frames):
    data = read_trajectory(frames)
    assert data.fractions.shape == (120, 90)
    distance = np.linalg.norm(data.fractions.reshape(120, 30, 3) @ CELL, axis=-1).mean(axis=0)
    assert np.all(np.diff(distance) >= 0)
    assert np.all((data.fractions >= 0) & (data.fractions < 1))
    np.testing.assert_array_equal(data.order, atom_order(fractions_of(frames), CELL))


def test_gaussian_targets_are_normalised_peaked_and_periodic():
    g = gaussian_targets(torch.tensor([0.0101, 0.5, 0.999], dtype=torch.float64), 50, 1.0)
    np.testing.assert_allclose(g.sum(-1).numpy(), 1.0)
    assert int(g[1].argmax()) == 25 - 1 or int(g[1].argmax()) == 25  # 0.5 sits on the edge of bins 24 and 25
    assert int(g[0].argmax()) == 0 and int(g[2].argmax()) == 49
    # wrapped: a coordinate at the left edge weighs the last bin as much as the second
    edge = gaussian_targets(torch.tensor([0.0], dtype=torch.float64), 50, 1.0)[0]
    assert edge[49] == pytest.approx(float(edge[0])) and edge[1] == pytest.approx(float(edge[48]))


def test_the_network_has_the_papers_input_and_output():
    module = RepapLSTM(bins=50, length=90, hidden=256, layers=2, dropout=0.5, seed=0)
    assert module.lstm.input_size == 50 + 89 and module.lstm.hidden_size == 256 and module.lstm.num_layers == 2
    assert module.lstm.dropout == 0.5
    logits = module(torch.zeros(3, 89, dtype=torch.long))
    assert logits.shape == (3, 89, 50)


@pytest.mark.parametrize(
    "change, message",
    [
        ("atoms", r"training\[3\]: 29 atoms, training\[0\] has 30"),
        ("species", r"training\[3\]: atom 5 is element 6"),
        ("cell", r"training\[3\]: the cell differs"),
        ("pbc", r"training\[3\]: pbc"),
    ],
)
def test_a_mixed_trajectory_is_refused_naming_the_frame(frames, change, message):
    atoms = list(frames)
    bad = atoms[3]
    if change == "atoms":
        del bad[-1]
    elif change == "species":
        bad.numbers[5] = 6
    elif change == "cell":
        bad.set_cell(CELL * 1.01)
    else:
        bad.pbc = [True, True, False]
    batch = StructureBatch.from_atoms(atoms)
    with pytest.raises(ValueError, match=message):
        train_ensemble("repap", batch, {}, TINY)


def test_a_grid_too_coarse_for_the_cell_is_refused_before_training(frames):
    with pytest.raises(ValueError, match=r"settings.bins: 10 bins .* too coarse .* expected at least 1[5-9] bins"):
        train_ensemble("repap", frames, {}, {**TINY, "bins": 10})


@pytest.mark.parametrize(
    "values, field",
    [
        ({"bins": 1}, "bins"),
        ({"sigma": 0}, "sigma"),
        ({"hidden": 0}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"jitter": "yes"}, "jitter"),
        ({"loop": {"lr": -1}}, "lr"),
        ({"loop": {"validation_fraction": 1}}, "validation_fraction"),
        ({"loop": {"clip_norm": 0}}, "clip_norm"),
    ],
)
def test_bad_settings_name_the_field(values, field):
    with pytest.raises(ValueError, match=field):
        get_family("repap").settings(values)


def test_target_is_empty_and_a_key_is_refused():
    family = get_family("repap")
    assert family.check_target(None) == {} and family.check_target({}) == {}
    with pytest.raises(ValueError, match="target.cell: unknown key"):
        family.check_target({"cell": 1})


def test_too_few_frames_to_hold_out_is_refused(frames):
    with pytest.raises(ValueError, match="training: 2 frames"):
        train_ensemble("repap", frames.subset(np.arange(2)), {}, TINY)


# ---------------------------------------------------------------------- training
@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_training_beats_the_uniform_guess_on_held_out_frames(model, frames):
    history = model.config["history"]
    assert history["validation_loss"][-1] < history["validation_loss"][0]
    # a uniform distribution over the bins against the Gaussian targets
    g = gaussian_targets(torch.tensor([0.3], dtype=torch.float64), 50, model.config["sigma"])[0].numpy()
    uniform = float(((1 / 50 - g) ** 2).sum())
    assert model.config["validation_loss"] < 0.8 * uniform
    assert model.config["training_frames"] == 108 and model.config["held_out_frames"] == 12
    assert sum(model.config["x0_histogram"]) == 108


def test_a_resumed_training_is_bit_identical(frames, tmp_path):
    settings = {**TINY, "loop": {**TINY["loop"], "steps": 20}}
    whole = train_ensemble("repap", frames, {}, settings)[0]
    stop = {"now": False}

    def callback(progress):
        stop["now"] = progress.step >= 10

    from aiida_physgen.ml.loop import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        train_ensemble(
            "repap",
            frames,
            {},
            settings,
            callback=callback,
            checkpoint_dir=tmp_path,
            checkpoint_every=5,
            should_stop=lambda: stop["now"],
        )
    resumed = train_ensemble("repap", frames, {}, settings, checkpoint_dir=tmp_path)[0]
    for key, value in whole.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key


def test_a_member_trains_the_same_alone_and_in_an_ensemble(frames):
    alone = train_ensemble("repap", frames, {}, TINY, seeds=(1,))[0]
    pair = train_ensemble("repap", frames, {}, TINY, seeds=(0, 1))
    for key, value in alone.module.state_dict().items():
        assert torch.equal(value, pair[1].module.state_dict()[key]), key
    assert not torch.equal(pair[0].module.lstm.weight_hh_l0, pair[1].module.lstm.weight_hh_l0)


# ---------------------------------------------------------------------- sampling
def test_sampling_is_seeded_batched_and_survives_the_model_file(model):
    first = model.sample(64, seed=3, condition={"min_distance": 0})
    assert len(first) == 64 and set(first.numbers) == {14}
    np.testing.assert_allclose(first.cells[0], CELL)
    assert first.pbc.all()
    again = TrainedModel.from_bytes(model.to_bytes()).sample(64, seed=3, condition={"min_distance": 0})
    np.testing.assert_array_equal(first.positions, again.positions)
    other = model.sample(64, seed=4, condition={"min_distance": 0})
    assert not np.array_equal(first.positions, other.positions)
    assert not first.info["resampled_atoms"].any() and not first.info["restarts"].any()


def test_the_first_coordinate_comes_from_the_training_histogram(model):
    batch = model.sample(300, seed=0, condition={"min_distance": 0})
    x0_bins = np.floor(fractions_of(batch)[:, 0, 0] * 50).astype(int)
    histogram = np.asarray(model.config["x0_histogram"], dtype=float)
    assert set(np.unique(x0_bins)) <= set(np.flatnonzero(histogram))


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_redraws_meet_the_minimum_distance_and_are_counted(model):
    with pytest.warns(UserWarning, match="closer than 2.1 Å"):
        batch = model.sample(40, seed=5, condition={"min_distance": 2.1})
    nearest = nearest_neighbour_distances(fractions_of(batch), CELL)
    assert nearest.min() >= 2.1
    assert batch.info["resampled_atoms"].sum() > 0
    raw = model.sample(40, seed=5, condition={"min_distance": 0})
    assert nearest_neighbour_distances(fractions_of(raw), CELL).min() < 2.1


def test_a_lower_temperature_samples_closer_to_the_learnt_structure(model, frames):
    data = read_trajectory(frames)
    mean = data.fractions.mean(axis=0).reshape(30, 3)  # the atoms barely move: one basin

    def spread(temperature):
        batch = model.sample(100, seed=2, condition={"min_distance": 0, "temperature": temperature})
        delta = fractions_of(batch) - mean  # generated atoms come in the model's order
        return float(np.abs(delta - np.round(delta)).mean())

    assert spread(0.3) < 0.8 * spread(1.0)


def test_an_impossible_minimum_distance_is_refused_before_sampling(model):
    with pytest.raises(
        MinimumDistanceError,
        match=r"condition.min_distance: 3.5 Å cannot be met by 30 atoms .* "
        r"expected at most 2.92 Å",
    ):
        model.sample(4, seed=0, condition={"min_distance": 3.5})


def test_a_minimum_distance_not_met_within_the_bounded_tries_is_a_named_error(model):
    with pytest.raises(MinimumDistanceError, match=r"condition.min_distance: \d+ of 8 structures .* after 2 redraws"):
        model.sample(8, seed=0, condition={"min_distance": 2.85, "max_tries": 2, "max_restarts": 1})


@pytest.mark.parametrize(
    "condition, message",
    [
        ({"min_distance": -1}, "condition.min_distance"),
        ({"max_tries": 0}, "condition.max_tries"),
        ({"max_restarts": 1.5}, "condition.max_restarts"),
        ({"temperature": 0}, "condition.temperature"),
        ({"label": 1}, r"condition: unknown key\(s\) \['label'\]"),
        ([1, 2], "condition: expected a dictionary"),
    ],
)
def test_bad_conditions_name_the_key(model, condition, message):
    with pytest.raises(ValueError, match=message):
        model.sample(2, seed=0, condition=condition)


def test_nearest_neighbour_distances_match_ase_in_a_skewed_cell():
    import ase
    from ase.neighborlist import neighbor_list

    cell = np.array([[6.0, 0, 0], [4.5, 5.0, 0], [1.0, 1.5, 5.5]])
    rng = np.random.default_rng(1)
    fractions = rng.random((1, 6, 3))
    atoms = ase.Atoms("Si6", scaled_positions=fractions[0], cell=cell, pbc=True)
    i, d = neighbor_list("id", atoms, 6.0)
    expected = np.array([d[i == k].min() for k in range(6)])
    np.testing.assert_allclose(nearest_neighbour_distances(fractions, cell)[0], expected, rtol=1e-10)
    assert math.isclose(float(read_trajectory(StructureBatch.from_atoms([atoms])).cell[0, 0]), 6.0)
