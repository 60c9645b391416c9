"""The family contract and registry, exercised with LoGAN and with a toy surrogate family.

The toy family is a least-squares fit of ``y = 2 x + 1`` by an ensemble of linear maps. It is a
*surrogate* (it predicts, it cannot generate), it takes no training structures, and its loop is
not a GAN: everything generic (train_ensemble, checkpoints, model files) must work for it through
the contract alone.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from aiida_physgen.ml import family as family_module
from aiida_physgen.ml.ensemble import EnsembleMLP, Stream, member_seed
from aiida_physgen.ml.family import GeneratorFamily, TrainedModel, get_family, read_model_file
from aiida_physgen.ml.loop import Trainer, stacked_rand
from aiida_physgen.ml.training import generate, train_ensemble


@dataclasses.dataclass
class LineSettings:
    steps: int = 20
    lr: float = 0.1
    batch_size: int = 8

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr: got {self.lr!r}, expected a positive learning rate")


class LineTrainer(Trainer):
    def __init__(self, members, seeds):
        super().__init__(seeds, log_every=5)
        self.model = EnsembleMLP([1, 1], [member_seed(s, Stream.GENERATOR) for s in self.seeds])
        groups = [{"params": params, "lr": m.lr} for params, m in zip(self.model.member_parameters(), members)]
        self.optimizer = torch.optim.SGD(groups)
        self.batch_size = members[0].batch_size

    def train_step(self):
        x = stacked_rand(self.rngs, self.batch_size, 1)
        loss = torch.stack([((p - (2 * r + 1)) ** 2).mean() for p, r in zip(self.model(x), x)])
        self.check_finite("mse", loss)
        self.optimizer.zero_grad()
        loss.sum().backward()
        self.optimizer.step()
        return {"mse": loss.detach()}

    def modules_state(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_modules_state(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def member_module(self, k):
        single = EnsembleMLP([1, 1], [0])
        self.model.copy_member_into(k, single)
        return single.eval()


class LineFamily(GeneratorFamily):
    name = "toy-line"
    role = "surrogate"
    settings_class = LineSettings
    vectorised = ("lr",)

    def total_steps(self, settings):
        return settings.steps

    def check_target(self, target):
        if set(target) != {"slope"}:
            raise ValueError("target.slope: required")
        return {"slope": float(target["slope"])}

    def validate(self, training, target, settings):
        if training is not None:
            raise ValueError("training: the toy family makes its own data")

    def build_trainer(self, training, target, members, seeds, device):
        return LineTrainer(members, seeds)

    def module_from_config(self, config):
        return EnsembleMLP([1, 1], [0])


class _Point:
    """Stands for an ``importlib.metadata.EntryPoint`` of the ``aiida_physgen.families`` group."""

    def __init__(self, name, obj):
        self.name, self.value, self.obj = name, f"{__name__}:{getattr(obj, '__name__', name)}", obj

    def load(self):
        return self.obj


@pytest.fixture
def toy(monkeypatch):
    """The toy family, registered (as if through an entry point) for the duration of a test."""
    installed = family_module._entry_points()
    monkeypatch.setattr(
        family_module, "_entry_points", lambda: {**installed, "toy-line": _Point("toy-line", LineFamily)}
    )
    return get_family("toy-line")


def test_get_family_finds_logan_through_its_entry_point():
    assert "logan" in family_module.available_families()
    logan = get_family("logan")
    assert logan.name == "logan" and logan.role == "generator"
    assert get_family("logan") is logan
    assert get_family(logan) is logan
    assert "loop.lr_generator" in logan.vectorised


@pytest.mark.parametrize("name", ["nope", "LOGAN", "", None])
def test_get_family_refuses_unknown_names_listing_the_installed_ones(name):
    with pytest.raises(ValueError, match=r"family: unknown generator family .*installed: \[.*'logan'"):
        get_family(name)


def test_entry_points_must_give_a_family_with_a_known_role(monkeypatch):
    class Weird(LineFamily):
        name = "weird"
        role = "oracle"

    monkeypatch.setattr(
        family_module, "_entry_points", lambda: {"dict": _Point("dict", dict), "weird": _Point("weird", Weird)}
    )
    with pytest.raises(TypeError, match="not a GeneratorFamily"):
        get_family("dict")
    with pytest.raises(TypeError, match="role 'oracle'"):
        get_family("weird")


def test_a_non_gan_surrogate_family_trains_through_the_generic_code(toy, tmp_path):
    models = train_ensemble(
        toy, None, {"slope": 2}, {"steps": 200}, seeds=[0, 1], grid={"lr": [0.3, 0.6]}, checkpoint_dir=tmp_path
    )
    assert len(models) == 4 and {m.config["role"] for m in models} == {"surrogate"}
    assert [m.config["hyperparameters"]["lr"] for m in models] == [0.3, 0.3, 0.6, 0.6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group_00.json", "group_00.pt"]  # one vectorised group
    x = torch.tensor([[[0.0], [1.0]]])
    for model in models:
        assert torch.allclose(model.module(x), torch.tensor([[[1.0], [3.0]]]), atol=0.2)
        assert model.config["history"]["steps"][-1] == 200 and model.config["losses"]["mse"] < 0.01
    # the model file works for any family
    again = TrainedModel.from_bytes(models[3].to_bytes())
    assert again.config == models[3].config and torch.equal(again.module(x), models[3].module(x))


def test_a_surrogate_cannot_generate(toy):
    (model,) = train_ensemble(toy, None, {"slope": 2}, {"steps": 2}, seeds=[0])
    with pytest.raises(ValueError, match="surrogate.*cannot generate"):
        model.sample(5, seed=0)
    with pytest.raises(ValueError, match="models: model 0 is a surrogate"):
        generate([model], 5, seed=0)


def test_family_errors_come_before_training(toy):
    with pytest.raises(ValueError, match=r"target\.slope"):
        train_ensemble(toy, None, {"intercept": 1}, seeds=[0])
    with pytest.raises(ValueError, match=r"settings: unknown key.*settings\.epochs"):
        train_ensemble(toy, None, {"slope": 2}, {"epochs": 3}, seeds=[0])
    with pytest.raises(ValueError, match=r"lr: got -1"):
        train_ensemble(toy, None, {"slope": 2}, {"lr": -1}, seeds=[0])
    with pytest.raises(ValueError, match="training: the toy family"):
        train_ensemble(toy, object(), {"slope": 2}, seeds=[0])


def test_model_files_need_the_required_keys_and_a_known_format():
    module = EnsembleMLP([1, 1], [0])
    with pytest.raises(ValueError, match="'seed' is required"):
        TrainedModel(module, {"family": "logan", "role": "generator", "steps": 0}).to_bytes()
    with pytest.raises(ValueError, match="not a readable model file"):
        read_model_file(b"junk")
    handle = io.BytesIO()
    torch.save({"format": 1, "config": {}}, handle)
    with pytest.raises(ValueError, match="format 2 expected"):
        read_model_file(handle.getvalue())


def test_the_default_family_takes_no_condition_and_cannot_sample():
    family = LineFamily()
    assert family.check_condition(None, {}) is None
    with pytest.raises(ValueError, match="takes no condition"):
        family.check_condition({"t": 1}, {})
    with pytest.raises(ValueError, match="cannot generate"):
        family.sample(None, {}, 1, 0)
    assert np.isclose(family.settings({"lr": 0.5}).lr, 0.5)
