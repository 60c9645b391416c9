"""Generic ensemble training: members bit for bit independent of their ensemble, grids trained
together, checkpoints and resume, devices and threads."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from aiida_physgen.ml import logan
from aiida_physgen.ml import settings as settings_module
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.family import get_family
from aiida_physgen.ml.training import (
    TrainingInterrupted,
    plan_members,
    resolve_device,
    set_threads,
    train_ensemble,
)
from aiida_physgen.resources import resource_path

TARGET = {"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": False}
# tiny but complete: every random stream is used (rattled copies, real draws, latents, penalty mixes)
TINY = {
    "loop": {"steps": 3, "batch_size": 3, "n_critic": 2},
    "rattle_copies": 1,
    "hidden": [16, 8],
    "critic_hidden": [8],
    "latent_dim": 4,
    "descriptor": {"n_max": 2, "l_max": 2, "max_neighbours": 6},
}


@pytest.fixture(scope="module")
def few():
    return StructureBatch.read(resource_path("logan/C5H12O_training.extxyz")).subset(range(6))


def train(training, settings=TINY, seeds=(7,), **kwargs):
    return train_ensemble("logan", training, TARGET, settings, seeds=list(seeds), **kwargs)


def assert_same_model(a, b):
    """Bit for bit: weights, loss curves, and what the model generates."""
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert a.config["history"] == b.config["history"]
    assert a.config["losses"] == b.config["losses"]
    assert a.config["seed"] == b.config["seed"] and a.config["steps"] == b.config["steps"]
    assert np.array_equal(a.sample(4, 0).positions, b.sample(4, 0).positions)


def assert_differ(a, b):
    assert any(not torch.equal(x, y) for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()))


# ------------------------------------------------------------------ members are independent
def test_a_member_trains_bit_for_bit_the_same_alone_and_in_an_ensemble_of_twelve(few):
    (alone,) = train(few, seeds=[7])
    seeds = [3, 11, 0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    ensemble = train(few, seeds=seeds)
    assert len(ensemble) == 12 and [m.config["seed"] for m in ensemble] == seeds
    inside = ensemble[seeds.index(7)]
    assert_same_model(alone, inside)
    assert inside.config["ensemble"]["size"] == 12 and inside.config["ensemble"]["index"] == 8
    # and the members are not copies of one another
    assert_differ(ensemble[0], inside)


def test_grid_members_over_learning_rates_train_together_and_each_equals_its_solo_run(few):
    grid = {"loop": {"lr_generator": [1e-4, 3e-3], "lr_critic": [2e-4, 1e-3]}}
    seen = set()
    models = train(few, seeds=[7, 8], grid=grid, callback=lambda p: seen.add((p.group, p.n_groups, len(p.members))))
    assert seen == {(0, 1, 8)}, "learning rates are vectorised: one group for the whole grid"
    assert len(models) == 8
    for model in models[::3]:  # four of the eight, every seed and learning rate appears
        loop = model.config["hyperparameters"]["loop"]
        overrides = {"loop": {"lr_generator": loop["lr_generator"], "lr_critic": loop["lr_critic"]}}
        (solo,) = train(few, settings_module.merge(TINY, overrides), seeds=[model.config["seed"]])
        assert_same_model(solo, model)
    # the learning rate mattered: same seed, different rates, different weights
    assert models[0].config["seed"] == models[2].config["seed"]
    assert_differ(models[0], models[2])


def test_members_are_planned_seeds_within_grid_points():
    family = get_family("logan")
    members = plan_members(family, TINY, [5, 2], {"loop": {"lr_critic": [1e-4, 1e-3]}})
    assert [(m.index, m.seed, m.settings.loop.lr_critic) for m in members] == [
        (0, 5, 1e-4),
        (1, 2, 1e-4),
        (2, 5, 1e-3),
        (3, 2, 1e-3),
    ]
    assert members[0].grid_point == {"loop": {"lr_critic": 1e-4}}
    for bad in ([], [1, 1], [1.5], [True], "12", None):
        with pytest.raises(ValueError, match="seeds"):
            plan_members(family, TINY, bad, None)


# ------------------------------------------------------------------ checkpoints and resume
def _stop_after(n):
    """A ``should_stop`` that turns true once ``n`` steps were reported to ``callback``."""
    done = []
    return (lambda progress: done.append(progress.done)), (lambda: len(done) >= n)


def test_an_interrupted_training_resumed_from_its_checkpoints_ends_bit_for_bit_equal(few, tmp_path):
    settings = settings_module.merge(TINY, {"loop": {"steps": 5}})
    grid = {"descriptor": {"radial": ["gaussian", "bessel"]}}  # not vectorised: two groups of two
    straight = train(few, settings, seeds=[7, 8], grid=grid)

    # stopped in the middle of the first group, between two periodic checkpoints
    callback, stop = _stop_after(3)
    with pytest.raises(TrainingInterrupted) as info:
        train(
            few,
            settings,
            seeds=[7, 8],
            grid=grid,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            callback=callback,
            should_stop=stop,
        )
    assert info.value.step == 3
    assert torch.load(tmp_path / "group_00.pt", weights_only=True)["step"] == 3
    assert not (tmp_path / "group_01.pt").exists()

    # resumed, and stopped again in the second group
    callback, stop = _stop_after(4)
    progress = []
    with pytest.raises(TrainingInterrupted):
        train(
            few,
            settings,
            seeds=[7, 8],
            grid=grid,
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            callback=lambda p: (progress.append((p.group, p.step, p.done)), callback(p)),
            should_stop=stop,
        )
    assert progress[0] == (0, 4, 4)  # continues where it stopped
    assert progress[-1] == (1, 2, 7)

    resumed = train(few, settings, seeds=[7, 8], grid=grid, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert len(resumed) == 4
    for a, b in zip(straight, resumed):
        assert_same_model(a, b)


def test_a_checkpoint_dir_of_another_training_is_refused(few, tmp_path):
    one_step = settings_module.merge(TINY, {"loop": {"steps": 1}})
    train(few, one_step, seeds=[7], checkpoint_dir=tmp_path)
    assert (tmp_path / "group_00.pt").is_file()
    other_settings = settings_module.merge(one_step, {"loop": {"batch_size": 2}})
    for kwargs in ({"seeds": [8]}, {"settings": other_settings}, {"seeds": [7, 8]}):
        with pytest.raises(ValueError, match="checkpoint_dir: .* another training"):
            train(few, **{"settings": one_step, "seeds": [7], "checkpoint_dir": tmp_path, **kwargs})
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train_ensemble(
            "logan", few, {**TARGET, "cell": (np.eye(3) * 9.6).tolist()}, one_step, seeds=[7], checkpoint_dir=tmp_path
        )
    # the same training again is welcome: it resumes (here: it is already done)
    (again,) = train(few, one_step, seeds=[7], checkpoint_dir=tmp_path)
    assert again.config["steps"] == 1


# ------------------------------------------------------------------ devices and threads
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_devices_without_cuda(few, monkeypatch):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for device in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(ValueError, match="device: 'cuda' was asked for but no CUDA device is available"):
            resolve_device(device)
    for device in ("tpu", "gpu", 3.5):
        with pytest.raises(ValueError, match="device: got"):
            resolve_device(device)

    def boom(*args, **kwargs):
        raise AssertionError("work started before the device was checked")

    monkeypatch.setattr(logan, "environment_pools", boom)
    with pytest.raises(ValueError, match="no CUDA device"):
        train(few, device="cuda")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_set_threads_honours_omp_num_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert set_threads() == 1 and torch.get_num_threads() == 1
    assert set_threads(2) == 2 and torch.get_num_threads() == 2  # an explicit count wins
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert set_threads() == 3 and torch.get_num_threads() == 3
    cpus = len(os.sched_getaffinity(0))
    for junk in ("", "zero", "0", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert set_threads() == cpus
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert set_threads() == cpus and set_threads(0) == 1


def test_members_stepped_side_by_side_on_two_threads_equal_their_solo_run(few, restore_threads, monkeypatch):
    # with two intra-op threads a lone member uses both; in an ensemble two members step at once on
    # one thread each (WGANTrainer._member_workers): the results must not depend on it
    from aiida_physgen.ml import wgan

    torch.set_num_threads(2)
    workers = []
    original = wgan.WGANTrainer._member_workers
    monkeypatch.setattr(wgan.WGANTrainer, "_member_workers", lambda self: workers.append(original(self)) or workers[-1])
    (alone,) = train(few, seeds=[7])
    together = train(few, seeds=[3, 7, 11, 1])
    assert workers[0] == 1 and workers[-1] == 2
    assert_same_model(alone, together[1])
    assert torch.get_num_threads() == 2  # restored after every step
