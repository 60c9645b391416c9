"""The ML layer refuses bad input before heavy work, stops diverging trainings, and writes
deterministic, whole model files (issue 7)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import torch

from aiida_physgen.ml import logan, loop
from aiida_physgen.ml import training as training_module
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.family import TrainedModel, get_family
from aiida_physgen.ml.loop import TrainingDivergedError
from aiida_physgen.ml.model_io import load_model, save_model
from aiida_physgen.ml.training import (
    MAX_COUNT,
    check_generation_size,
    generate,
    generation_bytes,
    plan_members,
    train_ensemble,
)
from aiida_physgen.resources import resource_path

TARGET = {"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": False}
TINY = {
    "loop": {"steps": 2, "batch_size": 3, "n_critic": 2},
    "rattle_copies": 1,
    "hidden": [16, 8],
    "critic_hidden": [8],
    "latent_dim": 4,
    "descriptor": {"n_max": 2, "l_max": 2, "max_neighbours": 6},
}


@pytest.fixture
def few():
    """A fresh copy every test: some tests spoil its positions."""
    return StructureBatch.read(resource_path("logan/C5H12O_training.extxyz")).subset(range(6))


def train(training, settings=TINY, seeds=(0,), target=TARGET):
    return train_ensemble("logan", training, target, settings, seeds=list(seeds))


def _tiny(**loop):
    return {**TINY, "loop": {**TINY["loop"], **loop}}


# ------------------------------------------------------------------ 1. settings in range
@pytest.mark.parametrize(
    "settings, message",
    [
        (_tiny(steps=0), "settings.loop.steps: got 0, expected a positive number of training steps"),
        (_tiny(steps=-3), "settings.loop.steps: got -3, expected a positive number of training steps"),
        (_tiny(batch_size=0), "settings.loop.batch_size: got 0, expected a positive batch size"),
        (_tiny(n_critic=0), "settings.loop.n_critic: got 0"),
        (_tiny(log_every=0), "settings.loop.log_every: got 0"),
        (_tiny(lr_generator=0.0), "settings.loop.lr_generator: got 0.0, expected positive finite"),
        (_tiny(lr_critic=float("inf")), "settings.loop.lr_critic: got inf"),
        (_tiny(lr_critic=float("nan")), "settings.loop.lr_critic: got nan"),
        (_tiny(gp_weight=-1.0), "settings.loop.gp_weight: got -1.0, expected a finite non-negative"),
        (_tiny(gp_weight=float("nan")), "settings.loop.gp_weight: got nan"),
        (_tiny(betas=[0.0, 1.0]), "settings.loop.betas"),
        (_tiny(eps=0.0), "settings.loop.eps"),
        (_tiny(alpha=1.5), "settings.loop.alpha"),
        ({**TINY, "rattle_std": float("nan")}, "rattle_std: got nan"),
        ({**TINY, "negative_slope": float("inf")}, "negative_slope: got inf"),
        ({**TINY, "latent_dim": 0}, "latent_dim: got 0"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_dotted_field(few, settings, message, monkeypatch):
    def no_training(*args, **kwargs):  # the check comes before any trainer is built
        raise AssertionError("a trainer was built for bad settings")

    monkeypatch.setattr(logan.LoganFamily, "build_trainer", no_training)
    with pytest.raises(ValueError) as error:
        train(few, settings)
    assert str(error.value).startswith(message), str(error.value)


def test_an_untrained_model_is_never_produced(few):
    with pytest.raises(ValueError, match="positive number of training steps"):
        plan_members(get_family("logan"), _tiny(steps=0), [0], None)


# ------------------------------------------------------------------ 2. duplicate seeds
def test_duplicate_seeds_are_refused():
    family = get_family("logan")
    with pytest.raises(ValueError, match=r"^seeds: seed 1 appears twice; every member needs its own seed"):
        plan_members(family, TINY, [1, 1], None)
    with pytest.raises(ValueError, match=r"^seeds: seed 4 appears 3 times"):
        plan_members(family, TINY, [4, 2, 4, 4], None)
    assert [m.seed for m in plan_members(family, TINY, [3, 1], None)] == [3, 1]


# ------------------------------------------------------------------ 3. divergence
def test_an_exploding_learning_rate_stops_training_naming_member_step_and_loss(few):
    with pytest.raises(TrainingDivergedError) as error:
        train(few, _tiny(steps=20, lr_generator=1e6, lr_critic=1e6), seeds=[5])
    message = str(error.value)
    assert "seed 5" in message and f"at step {error.value.step}" in message, message
    assert "lower the learning rate" in message and "e+" in message, message
    assert error.value.step <= 20


def test_normal_training_stays_far_below_the_divergence_limit(few):
    """No false positive: a real short run at the fast protocol's learning rate keeps every bounded loss
    orders of magnitude below the limit (the full-size measurement is in the comment of the limit)."""
    worst = {}

    def record(progress):
        for name, values in progress.losses.items():
            worst[name] = max(worst.get(name, 0.0), max(abs(v) for v in values))

    train_ensemble(
        "logan", few, TARGET, _tiny(steps=15, lr_generator=1e-3, lr_critic=1e-3), seeds=[0, 1], callback=record
    )
    assert set(worst) == {"critic", "generator", "wasserstein"}
    assert max(worst["critic"], worst["wasserstein"]) < loop.Trainer.divergence_limit / 1e3, worst


def test_a_loss_beyond_the_limit_is_divergence_even_when_finite():
    class Exploding(loop.Trainer):
        def train_step(self):
            return {"wasserstein": torch.tensor([1.0, -2.5e15 if self.step >= 2 else 1.0])}

        def modules_state(self):
            return {}

        def load_modules_state(self, state):
            pass

        def member_module(self, k):
            return torch.nn.Linear(1, 1)

    with pytest.raises(
        TrainingDivergedError, match=r"the wasserstein loss of the member with seed 8 reached -2.5e\+15 at step 3"
    ) as error:
        Exploding([7, 8]).train(10)
    assert error.value.members == [1] and error.value.step == 3


# ------------------------------------------------------------------ 4. one target per generation
def test_models_of_different_compositions_are_refused_before_sampling(few, monkeypatch):
    c4 = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))
    c4 = c4.subset([i for i, f in enumerate(c4.formulas()) if f == "C4H10O"][:3])
    other_target = {**TARGET, "composition": "C4H10O"}
    (a,) = train(few, _tiny(steps=1), seeds=[0])
    (b,) = train(c4, _tiny(steps=1), seeds=[1], target=other_target)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the models were checked")

    monkeypatch.setattr(logan.LoganFamily, "sample", no_sampling)
    with pytest.raises(
        ValueError, match=r"^models: .*\[0, 2\] are logan 'C5H12O'; model\(s\) \[1\] are logan 'C4H10O'"
    ):
        generate([a, b, a], 3, seed=0)
    moved = TrainedModel(a.module, {**a.config, "target": {**a.config["target"], "cell": (np.eye(3) * 12).tolist()}})
    with pytest.raises(ValueError, match="same composition, different cell"):
        generate([a, moved], 3, seed=0)


# ------------------------------------------------------------------ 5. training data
def test_non_finite_training_positions_are_named(few):
    few.positions[few.offsets[3] + 2, 1] = np.nan  # spoiled after the batch was built
    with pytest.raises(ValueError, match=r"^training: structure 3 has non-finite positions"):
        train(few)


def test_atoms_too_close_in_a_training_molecule_are_named(few):
    atoms = list(few)
    atoms[2].positions[5] = atoms[2].positions[1] + [0.0, 0.3, 0.0]
    batch = StructureBatch.from_atoms(atoms)
    with pytest.raises(ValueError) as error:
        train(batch)
    message = str(error.value)
    assert message.startswith("training: structure 2: atoms 1 ") and "and 5 " in message, message
    assert "0.300 Å apart, closer than 0.5 Å" in message


def test_atoms_too_close_across_a_periodic_boundary_are_found():
    atoms = ase.io.read(resource_path("logan/sio2/mp-1188220_training.extxyz"), index=0)
    scaled = atoms.get_scaled_positions()
    scaled[0] = [0.01, 0.5, 0.5]
    scaled[1] = [1.01 - 0.3 / np.linalg.norm(atoms.cell[0]), 0.5, 0.5]  # 0.3 Å away through the boundary
    atoms.set_scaled_positions(scaled)
    assert atoms.get_distance(0, 1) > 7 and atoms.get_distance(0, 1, mic=True) < 0.5
    batch = StructureBatch.from_atoms([atoms])
    with pytest.raises(ValueError, match=r"^training: structure 0: atoms 0 \(Si\) and 1 \(Si\) are 0.300 Å apart"):
        logan.check_training_structures(batch)


# ------------------------------------------------------------------ 6. generation size
def test_a_generation_too_large_for_memory_is_refused_naming_count():
    with pytest.raises(ValueError) as error:
        check_generation_size("logan", TARGET, 4, 10**9, available_bytes=20 * 10**9)
    message = str(error.value)
    assert message.startswith("count: 1000000000 candidates per model × 4 models need about "), message
    assert "GB; about 20 GB are available" in message
    # what the message proposes fits
    proposed = int(message.split("expected at most about ")[1].split()[0])
    assert generation_bytes(18, 4, proposed) <= 20 * 10**9 < generation_bytes(18, 4, proposed + 100)
    # the usual requests fit, and the estimate grows with atoms, models and count
    needed = check_generation_size("logan", TARGET, 4, 2000, available_bytes=20 * 10**9)
    assert needed < 1e9
    assert generation_bytes(18, 4, 4000) > needed and generation_bytes(30, 4, 2000) > needed
    with pytest.raises(ValueError, match=f"^count: got {MAX_COUNT + 1} candidates per model, expected at most"):
        check_generation_size("logan", TARGET, 1, MAX_COUNT + 1, available_bytes=10**15)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="^count"):
            check_generation_size("logan", TARGET, 1, bad)


def test_generate_checks_the_size_before_sampling(few, monkeypatch):
    (model,) = train(few, _tiny(steps=1))
    monkeypatch.setattr(training_module, "available_memory", lambda: 100 * 10**6)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the size was checked")

    monkeypatch.setattr(logan.LoganFamily, "sample", no_sampling)
    with pytest.raises(ValueError, match=r"^count: 100000 candidates per model × 1 models need about"):
        generate([model], 100000, seed=0)


def test_logan_knows_its_atoms_per_structure():
    family = get_family("logan")
    assert family.atoms_per_structure(family.check_target(TARGET)) == 18


# ------------------------------------------------------------------ 8. deterministic, whole model files
def test_identical_trainings_give_identical_model_bytes(few, tmp_path):
    (first,), (second,) = train(few), train(few)
    data = first.to_bytes()
    assert data == second.to_bytes()
    # reading and writing again changes nothing, and the file's checksum is the bytes' checksum
    assert TrainedModel.from_bytes(data).to_bytes() == data
    checksum = save_model(tmp_path / "model.pt", second)
    assert (
        checksum == hashlib.sha256(data).hexdigest() == hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    )
    assert load_model(tmp_path / "model.pt").to_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left


@pytest.mark.slow
def test_model_bytes_are_identical_across_processes(few):
    code = (
        "import sys, hashlib, numpy as np, torch; torch.set_num_threads(1);"
        "from aiida_physgen.ml.batch import StructureBatch; from aiida_physgen.ml.training import train_ensemble;"
        "from aiida_physgen.resources import resource_path;"
        "few = StructureBatch.read(resource_path('logan/C5H12O_training.extxyz')).subset(range(6));"
        f"(m,) = train_ensemble('logan', few, {TARGET!r}, {TINY!r}, seeds=[0]);"
        "print(hashlib.sha256(m.to_bytes()).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    }
    assert digests == {hashlib.sha256(train(few)[0].to_bytes()).hexdigest()}


def test_a_failed_model_write_leaves_the_previous_file(few, tmp_path, monkeypatch):
    (model,) = train(few, _tiny(steps=1))
    path = tmp_path / "model.pt"
    save_model(path, model)
    before = path.read_bytes()

    def broken_write(self, data):
        with open(self, "wb") as handle:
            handle.write(data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(path), "write_bytes", broken_write)
    with pytest.raises(OSError):
        save_model(path, model)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_checkpoints_are_written_atomically(few, tmp_path, monkeypatch):
    path = tmp_path / "group.pt"
    family = get_family("logan")
    members = plan_members(family, TINY, [0], None)
    trainer = family.build_trainer(few, family.check_target(TARGET), [members[0].settings], [0], torch.device("cpu"))
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group.pt"]
