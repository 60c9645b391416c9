"""The one Wasserstein-GAN training loop (WGAN-GP) shared by every generator family.

A family describes its problem by subclassing :class:`WGANProblem`: how to draw a batch of real
samples (with an optional conditioning label), how to generate fake ones, and how the critic
scores them. The loop owns everything else: critic steps per generator step, the gradient
penalty, the optional consistency term (RUGAN), extra generator losses (the crystal GAN's
distance and box losses), optimisers, and (through :class:`~aiida_physgen.ml.loop.Trainer`)
per-member random streams, checkpoints, progress, clean stops and the NaN guard.

Every tensor carries a leading *model* axis of size ``K``: an ensemble of ``K`` independent
models (different seeds and hyper-parameters) is trained in one pass. Losses are computed per model
and summed, so gradients never mix between members; optimiser state is element-wise, and each
member gets its own parameter group so learning rates may differ. Every random draw of member ``k``
comes from ``rngs[k]``, so members never share a random stream.

A problem that offers one-member views (:meth:`WGANProblem.member_problem`, as LoGAN does) is
trained member by member: each member's step runs through exactly the code of a one-member
ensemble, so it is bit for bit the same alone and inside any ensemble. Its cost is the sum of the
members' (the models are compute-bound: the matrix products of the critic dominate, see
``benchmarks/bench_training.py``), which is also what the vectorised pass cost. Without views the
members are stacked and trained vectorised; that keeps them independent, but not bit for bit (BLAS
rounds a member's rows differently depending on where they sit in the stacked tensor).
"""

from __future__ import annotations

import abc
import concurrent.futures
import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .loop import Trainer, TrainingDivergedError, stacked_rand

__all__ = [
    "WGANSettings",
    "WGANProblem",
    "MemberNetsProblem",
    "WGANTrainer",
    "TrainingDivergedError",
    "member_loop",
    "VECTORISED",
]

#: the loop settings that may differ between the members of one pass (each member is its own optimiser
#: group): a WGAN family's :attr:`~aiida_physgen.ml.family.GeneratorFamily.vectorised`
VECTORISED = ("loop.lr_generator", "loop.lr_critic")


@dataclass
class WGANSettings:
    """Hyper-parameters of the WGAN-GP loop.

    ``lr_generator`` and ``lr_critic`` may be one number for all members or a list with one value
    per ensemble member.
    """

    steps: int = 1000
    n_critic: int = 5
    batch_size: int = 15
    gp_weight: float = 10.0
    consistency_weight: float = 0.0
    consistency_margin: float = 0.0
    optimizer: str = "rmsprop"
    lr_generator: float | list[float] = 1e-4
    lr_critic: float | list[float] = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    eps: float = 1e-8
    alpha: float = 0.99
    log_every: int = 10

    def __post_init__(self) -> None:
        # every numeric setting in its sane range, named by field (``from_dict`` prefixes the dotted
        # path, e.g. ``settings.loop.steps``); an untrained model (steps = 0) is never produced
        counts = {
            "steps": "a positive number of training steps",
            "n_critic": "a positive number of critic updates per generator update",
            "batch_size": "a positive batch size",
            "log_every": "a positive logging interval in steps",
        }
        for name, expected in counts.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, expected {expected}")
        for name in ("gp_weight", "consistency_weight", "consistency_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: got {value!r}, expected a finite non-negative number")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer: got {self.optimizer!r}, expected 'rmsprop' or 'adam'")
        for name in ("lr_generator", "lr_critic"):
            values = getattr(self, name)
            values = values if isinstance(values, (list, tuple)) else [values]
            if not values or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in values
            ):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected positive finite learning rate(s)")
        betas = self.betas
        if (
            not isinstance(betas, (list, tuple))
            or len(betas) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1 for b in betas)
        ):
            raise ValueError(f"betas: got {betas!r}, expected two numbers in [0, 1) (Adam's moment decays)")
        self.betas = tuple(float(b) for b in betas)
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not (0 < self.eps < 1):
            raise ValueError(f"eps: got {self.eps!r}, expected a small positive number (the optimiser's epsilon)")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not (0 <= self.alpha < 1):
            raise ValueError(f"alpha: got {self.alpha!r}, expected a number in [0, 1) (RMSprop's smoothing)")

    def require_one_learning_rate(self) -> None:
        """``ValueError`` when ``lr_generator`` or ``lr_critic`` is a list: a family's settings describe one
        model (a member), so a family varies a learning rate over its members with a grid instead."""
        for name in ("lr_generator", "lr_critic"):
            if isinstance(getattr(self, name), (list, tuple)):
                raise ValueError(f"loop.{name}: expected one learning rate per model; vary it with a grid instead")

    def member_values(self, name: str, n_models: int) -> list[float]:
        values = getattr(self, name)
        if isinstance(values, (list, tuple)):
            if len(values) != n_models:
                raise ValueError(f"{name}: {len(values)} values given for an ensemble of {n_models} models")
            return [float(v) for v in values]
        return [float(values)] * n_models

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data


class WGANProblem(abc.ABC):
    """What a generator family provides to :class:`WGANTrainer`.

    Shapes: ``K`` ensemble members, ``B`` samples per member. Samples are tensors ``(K, B, ...)``;
    the critic returns scores ``(K, B, *units)`` where ``units`` are the leading axes of one
    sample that are scored separately (LoGAN scores every atomic environment, so ``units`` is
    the atom axis; a whole-image critic returns ``(K, B)``). The gradient penalty is taken per
    scored unit, with the norm over the remaining sample axes.
    """

    generator: torch.nn.Module
    critic: torch.nn.Module
    n_models: int = 1
    device: torch.device | str = "cpu"

    def __init__(self, generator: torch.nn.Module, critic: torch.nn.Module, device: torch.device | str = "cpu"):
        self.generator = generator
        self.critic = critic
        self.n_models = generator.n_models
        self.device = torch.device(device)

    @abc.abstractmethod
    def real_batch(self, batch_size: int, rngs: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Real samples ``(K, B, ...)`` and their conditioning label (or ``None``); member ``k`` draws
        from ``rngs[k]`` only (see :func:`~aiida_physgen.ml.loop.stacked_randint`)."""

    @abc.abstractmethod
    def fake_batch(
        self, batch_size: int, rngs: Sequence[torch.Generator], condition: torch.Tensor | None
    ) -> torch.Tensor:
        """Generated samples ``(K, B, ...)`` for the given labels, differentiable w.r.t. the generator."""

    @abc.abstractmethod
    def critic_scores(self, samples: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """Critic scores ``(K, B, *units)`` of ``samples`` (see the class docstring)."""

    def extra_generator_loss(
        self, fake: torch.Tensor, real: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """Additional per-member generator loss ``(K,)`` (physics losses), or ``None``; ``fake`` was
        generated for the conditions of ``real`` (``condition``), so the two batches pair up."""
        return None

    def member_parameters(self, module: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
        """The parameters of ``module`` split per ensemble member (one optimiser group each)."""
        return [list(module.parameters())]

    def member_generator(self, k: int) -> torch.nn.Module:
        """Member ``k``'s generator as a stand-alone module (the default asks ``generator.member(k)``)."""
        return self.generator.member(k)

    def critic_gradient(self, samples: torch.Tensor, condition: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        """The gradient of the summed critic scores with respect to ``samples`` (differentiable with
        respect to the critic's parameters), and the number of leading axes of the scores
        (``K``, ``B``, then the scored units): the input of the gradient penalty.

        The default differentiates :meth:`critic_scores` with autograd; a problem whose critic has a
        cheaper exact form (:meth:`~aiida_physgen.ml.ensemble.EnsembleMLP.input_gradient`) overrides it.
        """
        samples = samples.detach().requires_grad_(True)
        scores = self.critic_scores(samples, condition)
        (grad,) = torch.autograd.grad(scores.sum(), samples, create_graph=True)
        return grad, scores.dim()

    def member_problem(self, k: int) -> WGANProblem | None:
        """Member ``k`` as a one-member problem whose generator and critic hold member ``k``'s own
        parameter objects (views, not copies), or ``None`` (the default) to train vectorised.

        When every member has one, :class:`WGANTrainer` runs each member's step on its view, through
        exactly the code a one-member ensemble runs, so a member trains bit for bit the same alone
        and inside any ensemble. The vectorised pass cannot promise that: BLAS kernels round
        differently on a member's rows depending on where they sit in the stacked tensor.
        """
        return None


class MemberNetsProblem(WGANProblem):
    """A problem whose generator and critic are :class:`~aiida_physgen.ml.ensemble.MemberNets` (one network
    per member), trained member by member: every member's step runs on a one-member view of the problem.

    The view is a shallow copy of the problem with the generator's and critic's views of member ``k``; a
    subclass that keeps other per-member state narrows it in its own :meth:`member_problem`.
    """

    def critic_scores(self, samples: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.critic(samples, condition)

    def member_parameters(self, module: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
        return module.member_parameters()

    def member_problem(self, k: int) -> MemberNetsProblem:
        view = copy.copy(self)
        view.generator = self.generator.member_view(k)
        view.critic = self.critic.member_view(k)
        view.n_models = 1
        return view


def _per_member(values: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the leading model axis."""
    # row by row: a batched reduction may sum in another order depending on K, and a member's
    # losses must not depend on the size of its ensemble
    return torch.stack([row.mean() for row in values])


class WGANTrainer(Trainer):
    """Train a :class:`WGANProblem` with WGAN-GP.

    :param problem: the family's problem (generator, critic, samplers).
    :param settings: the loop's hyper-parameters.
    :param seeds: one seed per ensemble member (its loop stream); defaults to ``0 .. K-1``.
    """

    #: the generator loss has a free constant (see :attr:`Trainer.bounded_losses`); these two do not
    bounded_losses = ("critic", "wasserstein")

    def __init__(self, problem: WGANProblem, settings: WGANSettings, seeds: Sequence[int] | None = None):
        super().__init__(list(range(problem.n_models)) if seeds is None else seeds, settings.log_every)
        if len(self.seeds) != problem.n_models:
            raise ValueError(f"seeds: {len(self.seeds)} seeds for an ensemble of {problem.n_models} models")
        self.problem = problem
        self.settings = settings
        if settings.consistency_weight > 0 and not any(
            isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in problem.critic.modules()
        ):
            raise ValueError("consistency_weight: the consistency term needs a critic with dropout layers")
        k = problem.n_models
        lrs_generator = settings.member_values("lr_generator", k)
        lrs_critic = settings.member_values("lr_critic", k)
        views = [problem.member_problem(i) for i in range(k)]
        #: one-member views of the problem, one per member, or ``None`` when the problem trains vectorised
        self.member_problems: list[WGANProblem] | None = views if all(v is not None for v in views) else None
        if self.member_problems is None:
            self.optimizer_generator = self._optimizer(problem, problem.generator, lrs_generator)
            self.optimizer_critic = self._optimizer(problem, problem.critic, lrs_critic)
            self.member_optimizers = None
        else:
            # one optimiser per member: a member's step touches its own parameters only
            self.optimizer_generator = self.optimizer_critic = None
            self.member_optimizers = [
                (self._optimizer(v, v.generator, [lr_g]), self._optimizer(v, v.critic, [lr_c]))
                for v, lr_g, lr_c in zip(self.member_problems, lrs_generator, lrs_critic)
            ]
        self._critic_params = list(problem.critic.parameters())
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_size = 0

    def _optimizer(self, problem: WGANProblem, module: torch.nn.Module, lrs: list[float]) -> torch.optim.Optimizer:
        groups = problem.member_parameters(module)
        if len(groups) != len(lrs):
            raise ValueError(f"{len(lrs)} learning rates for {len(groups)} parameter groups")
        param_groups = [{"params": params, "lr": lr} for params, lr in zip(groups, lrs)]
        s = self.settings
        # foreach: one C++ loop over every tensor of a member instead of a Python loop (PyTorch enables
        # it only on CUDA by default); element-wise, so each member's update is unchanged
        if s.optimizer == "adam":
            return torch.optim.Adam(param_groups, betas=s.betas, eps=s.eps, foreach=True)
        return torch.optim.RMSprop(param_groups, alpha=s.alpha, eps=s.eps, foreach=True)

    # ------------------------------------------------------------------ losses
    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, condition, problem=None, rngs=None):
        problem = self.problem if problem is None else problem
        rngs = self.rngs if rngs is None else rngs
        k, b = real.shape[:2]
        mix = stacked_rand(rngs, b, device=real.device).to(real.dtype)
        mix = mix.reshape((k, b) + (1,) * (real.dim() - 2))
        interpolates = mix * real + (1 - mix) * fake
        grad, unit_dims = problem.critic_gradient(interpolates, condition)
        norms = grad.flatten(start_dim=unit_dims).norm(dim=-1)
        return _per_member((norms - 1) ** 2)

    def _consistency(self, real: torch.Tensor, condition, problem=None) -> torch.Tensor:
        problem = self.problem if problem is None else problem
        first = problem.critic_scores(real, condition)
        second = problem.critic_scores(real, condition)
        gap = (first - second).abs() - self.settings.consistency_margin
        return _per_member(torch.relu(gap))

    def _critic_step(self, p: WGANProblem, rngs, optimizer, members) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        real, condition = p.real_batch(s.batch_size, rngs)
        with torch.no_grad():
            fake = p.fake_batch(s.batch_size, rngs, condition)
        # real and fake samples through the critic in one pass (every sample is scored on its own)
        both = torch.cat([real, fake], dim=1)
        both_condition = None if condition is None else torch.cat([condition, condition], dim=1)
        scores = p.critic_scores(both, both_condition)
        b = real.shape[1]
        wasserstein = _per_member(scores[:, :b]) - _per_member(scores[:, b:])
        loss = -wasserstein
        if s.gp_weight:
            loss = loss + s.gp_weight * self._gradient_penalty(real, fake, condition, p, rngs)
        if s.consistency_weight:
            loss = loss + s.consistency_weight * self._consistency(real, condition, p)
        self.check_finite("critic", loss, members)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        return loss.detach(), wasserstein.detach()

    def _generator_step(self, p: WGANProblem, rngs, optimizer, members) -> torch.Tensor:
        s = self.settings
        real, condition = p.real_batch(s.batch_size, rngs)
        fake = p.fake_batch(s.batch_size, rngs, condition)
        loss = -_per_member(p.critic_scores(fake, condition))
        extra = p.extra_generator_loss(fake, real, condition)
        if extra is not None:
            loss = loss + extra
        self.check_finite("generator", loss, members)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        return loss.detach()

    def critic_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One critic update of every member (vectorised problems only)."""
        return self._critic_step(self.problem, self.rngs, self.optimizer_critic, None)

    def generator_step(self) -> torch.Tensor:
        """One generator update of every member (vectorised problems only)."""
        return self._generator_step(self.problem, self.rngs, self.optimizer_generator, None)

    # ------------------------------------------------------------------ one step of the loop
    def begin(self) -> None:
        for p in [self.problem, *(self.member_problems or [])]:
            p.generator.train()
            p.critic.train()

    def end(self) -> None:
        for p in [self.problem, *(self.member_problems or [])]:
            p.generator.eval()
            p.critic.eval()
        for param in self._critic_params:
            param.requires_grad_(True)
        self._close_pool()

    def _one_step(self, p: WGANProblem, rngs, optimizers, members) -> tuple[torch.Tensor, ...]:
        """``n_critic`` critic updates, then one generator update, of the members of ``p``."""
        optimizer_generator, optimizer_critic = optimizers
        params = list(p.critic.parameters())
        for param in params:
            param.requires_grad_(True)
        for _ in range(self.settings.n_critic):
            critic_loss, wasserstein = self._critic_step(p, rngs, optimizer_critic, members)
        for param in params:  # the generator step needs no critic gradients
            param.requires_grad_(False)
        try:
            generator_loss = self._generator_step(p, rngs, optimizer_generator, members)
        finally:
            for param in params:
                param.requires_grad_(True)
        return critic_loss, generator_loss, wasserstein

    def train_step(self) -> dict[str, torch.Tensor]:
        """``n_critic`` critic updates, then one generator update (one "step" = one generator update).

        With member views (:meth:`WGANProblem.member_problem`) the members take their step one after
        the other, each through the one-member code path; a member whose loss diverges does not stop
        the others' step, and the error names every diverged member.
        """
        if self.member_problems is None:
            critic, generator, wasserstein = self._one_step(
                self.problem, self.rngs, (self.optimizer_generator, self.optimizer_critic), None
            )
            return {"critic": critic, "generator": generator, "wasserstein": wasserstein}

        def member_step(k):
            try:
                return self._one_step(self.member_problems[k], [self.rngs[k]], self.member_optimizers[k], [k]), None
            except TrainingDivergedError as error:
                return None, error

        k_models = len(self.member_problems)
        workers = self._member_workers()
        if workers == 1:
            outcomes = [member_step(k) for k in range(k_models)]
        else:
            # members side by side, one intra-op thread each: a member's step is too small to keep two
            # threads busy (most of its operations stay under torch's parallel grain), two members are not
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                if self._pool is None or self._pool_size != workers:
                    self._close_pool()
                    self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="member")
                    self._pool_size = workers
                outcomes = list(self._pool.map(member_step, range(k_models)))
            finally:
                torch.set_num_threads(threads)
        results = [result for result, error in outcomes if error is None]
        diverged = [error for result, error in outcomes if error is not None]
        if diverged:
            members = sorted(k for error in diverged for k in error.members)
            raise TrainingDivergedError(
                f"{diverged[0].args[0].split(' for ensemble member')[0]} for ensemble member(s) "
                f"{[self.seeds[k] for k in members]} (by seed); lower the learning rate or check the training data",
                self.step,
                members,
            )
        critic, generator, wasserstein = (torch.cat(column) for column in zip(*results))
        return {"critic": critic, "generator": generator, "wasserstein": wasserstein}

    def _member_workers(self) -> int:
        """How many members step at once: one per intra-op thread torch would use, on the CPU."""
        if self.member_problems is None or len(self.member_problems) < 2:
            return 1
        if torch.device(getattr(self.problem, "device", "cpu")).type != "cpu":
            return 1
        return max(1, min(torch.get_num_threads(), len(self.member_problems)))

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def member_module(self, k: int) -> torch.nn.Module:
        return self.problem.member_generator(k).cpu().eval()

    # ------------------------------------------------------------------ checkpoints
    def modules_state(self) -> dict[str, Any]:
        if self.member_optimizers is None:
            optimizers = {
                "optimizer_generator": self.optimizer_generator.state_dict(),
                "optimizer_critic": self.optimizer_critic.state_dict(),
            }
        else:
            optimizers = {"member_optimizers": [[o.state_dict() for o in pair] for pair in self.member_optimizers]}
        return {
            "generator": self.problem.generator.state_dict(),
            "critic": self.problem.critic.state_dict(),
            **optimizers,
        }

    def load_modules_state(self, state: dict[str, Any]) -> None:
        vectorised = self.member_optimizers is None
        if vectorised != ("optimizer_generator" in state):
            raise ValueError("checkpoint: it was written by another kind of trainer (vectorised or member by member)")
        self.problem.generator.load_state_dict(state["generator"])
        self.problem.critic.load_state_dict(state["critic"])
        if vectorised:
            self.optimizer_generator.load_state_dict(state["optimizer_generator"])
            self.optimizer_critic.load_state_dict(state["optimizer_critic"])
        else:
            for pair, saved in zip(self.member_optimizers, state["member_optimizers"]):
                for optimizer, optimizer_state in zip(pair, saved):
                    optimizer.load_state_dict(optimizer_state)


def member_loop(members: Sequence[Any]) -> WGANSettings:
    """The loop settings of an ensemble's first member with every member's own learning rates (the vectorised
    ``loop.lr_generator`` and ``loop.lr_critic``: one value per member)."""
    return dataclasses.replace(
        members[0].loop,
        lr_generator=[m.loop.lr_generator for m in members],
        lr_critic=[m.loop.lr_critic for m in members],
    )
