"""Ensemble layers: member views that share parameters, the exact input gradient, member-by-member steps."""

import numpy as np
import pytest
import torch

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.ensemble import EnsembleMLP, Stream, member_seed
from aiida_physgen.ml.family import get_family
from aiida_physgen.ml.loop import TrainingDivergedError
from aiida_physgen.ml.training import plan_members
from aiida_physgen.resources import resource_path


def test_member_seeds_depend_on_seed_and_stream_only():
    assert member_seed(7, Stream.LOOP) == member_seed(7, Stream.LOOP)
    assert len({member_seed(s, t) for s in range(4) for t in Stream}) == 4 * len(Stream)


def test_a_selection_shares_the_parameter_objects():
    mlp = EnsembleMLP([5, 8, 1], seeds=[1, 2, 3])
    view = mlp.select([1])
    assert view.n_models == 1
    assert view.layers[0].weights[0] is mlp.layers[0].weights[1]
    x = torch.randn(3, 4, 5)
    assert torch.equal(view(x[1:2])[0], mlp(x)[1])
    # training the view trains the ensemble's member, and only that one
    before = [p.detach().clone() for p in mlp.parameters()]
    optimizer = torch.optim.SGD(view.parameters(), lr=0.1)
    view(x[1:2]).sum().backward()
    optimizer.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, mlp.parameters())]
    owner = {id(p): k for layer in mlp.layers for k in range(3) for p in (layer.weights[k], layer.biases[k])}
    assert {owner[id(p)] for p, c in zip(mlp.parameters(), changed) if c} == {1}
    assert sum(changed) == 4  # both weights and biases of member 1


@pytest.mark.parametrize("k", [1, 3])
def test_input_gradient_is_autograd_s_without_the_forward_graph(k):
    torch.manual_seed(0)
    mlp = EnsembleMLP([7, 16, 8, 1], list(range(k)), negative_slope=0.2)
    x = torch.randn(k, 4, 5, 7)
    leaf = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(mlp(leaf).sum(), leaf, create_graph=True)
    mine = mlp.input_gradient(x)
    assert mine.shape == x.shape
    assert torch.equal(mine, reference)
    # and it is differentiable w.r.t. the weights like autograd's (a gradient penalty trains on it)
    params = list(mlp.parameters())

    def penalty_grads(grad):
        loss = ((grad.flatten(3).norm(dim=-1) - 1) ** 2).sum()
        return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)

    for a, b in zip(penalty_grads(reference), penalty_grads(mine)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_input_gradient_needs_one_output_and_no_random_dropout():
    with pytest.raises(ValueError, match="one output"):
        EnsembleMLP([3, 4, 2], [0]).input_gradient(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="dropout"):
        EnsembleMLP([3, 4, 1], [0], dropout=0.5).input_gradient(torch.randn(1, 2, 3))


@pytest.fixture(scope="module")
def logan_trainer_factory():
    family = get_family("logan")
    training = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz")).subset(range(4))
    target = family.check_target({"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": False})
    settings = {
        "loop": {"batch_size": 2, "n_critic": 1},
        "rattle_copies": 0,
        "hidden": [8],
        "critic_hidden": [8],
        "latent_dim": 3,
        "descriptor": {"n_max": 1, "l_max": 1, "max_neighbours": 4},
    }

    def build(seeds):
        members = plan_members(family, settings, seeds, None)
        return family.build_trainer(training, target, [m.settings for m in members], seeds, torch.device("cpu"))

    return build


def test_logan_members_step_one_by_one_through_views(logan_trainer_factory):
    trainer = logan_trainer_factory([4, 5, 6])
    assert trainer.member_problems is not None and len(trainer.member_problems) == 3
    view = trainer.member_problems[2]
    assert (
        view.n_models == 1
        and view.generator.mlp.layers[0].weights[0] is trainer.problem.generator.mlp.layers[0].weights[2]
    )
    before = trainer.problem.generator.mlp.layers[0].weights[1].detach().clone()
    trainer.train(1)
    assert not torch.equal(before, trainer.problem.generator.mlp.layers[0].weights[1])


def test_a_diverging_member_is_named_and_the_others_still_step(logan_trainer_factory):
    trainer = logan_trainer_factory([4, 5, 6])
    trainer.member_problems[1].critic_scores = lambda samples, condition=None: torch.full(samples.shape[:3], np.nan)
    last = trainer.problem.critic.mlp.layers[0].weights[2].detach().clone()
    with pytest.raises(TrainingDivergedError, match=r"critic loss became NaN.*member\(s\) \[5\] \(by seed\)") as info:
        trainer.train(3)
    assert info.value.members == [1] and info.value.step == 0
    assert not torch.equal(last, trainer.problem.critic.mlp.layers[0].weights[2])  # member 2 took its step
