"""What every training loop shares: per-member random streams, progress, history, checkpoints, stops.

A family's trainer (the WGAN-GP loop in :mod:`~aiida_physgen.ml.wgan`, or a likelihood loop for an
autoregressive model) subclasses :class:`Trainer` and implements one step. The base class runs the
steps, logs the losses every ``log_every`` steps, calls the progress callback, writes atomic
checkpoints, and stops cleanly (checkpoint first) when asked to, e.g. on SIGTERM or at a walltime.

Every member ``k`` of an ensemble draws from its own generators ``rngs[k]``, seeded from its own
seed only (:class:`~aiida_physgen.ml.ensemble.Stream`), so a member trained alone and the same
member trained inside a larger ensemble see the same random numbers.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic_files import atomic_path
from .ensemble import Stream, member_seed
from .settings import is_finite_number, require_positive_ints

__all__ = [
    "Trainer",
    "MemberModulesTrainer",
    "check_loop_settings",
    "held_out_count",
    "TrainingHistory",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "stacked_randn",
    "stacked_rand",
    "stacked_randint",
]


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; training stops instead of saving a broken model."""

    def __init__(self, message: str, step: int, members: list[int]):
        super().__init__(message)
        self.step = step
        self.members = members


class TrainingInterrupted(RuntimeError):
    """Training was asked to stop (signal, walltime) and stopped after writing its checkpoint."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclass
class TrainingHistory:
    """Losses per member, every ``log_every`` steps: ``losses[name][i][k]`` at ``steps[i]`` for member ``k``."""

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[list[float]]] = field(default_factory=dict)

    def append(self, step: int, losses: dict[str, list[float]]) -> None:
        self.steps.append(int(step))
        for name, values in losses.items():
            self.losses.setdefault(name, []).append([float(v) for v in values])

    def member(self, k: int) -> dict[str, Any]:
        """The curves of member ``k``: ``{'steps': [...], '<loss>': [...]}`` (plain lists, JSON-able)."""
        return {"steps": list(self.steps), **{name: [row[k] for row in rows] for name, rows in self.losses.items()}}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _draw(rngs: Sequence[torch.Generator], fn, device) -> torch.Tensor:
    # drawn on the CPU from each member's generator, then moved: the same numbers on every device
    return torch.stack([fn(g) for g in rngs]).to(device)


def stacked_randn(rngs: Sequence[torch.Generator], *shape: int, device="cpu") -> torch.Tensor:
    """Standard normal numbers ``(K, *shape)``, row ``k`` from ``rngs[k]``."""
    return _draw(rngs, lambda g: torch.randn(*shape, generator=g), device)


def stacked_rand(rngs: Sequence[torch.Generator], *shape: int, device="cpu") -> torch.Tensor:
    """Uniform numbers in [0, 1) ``(K, *shape)``, row ``k`` from ``rngs[k]``."""
    return _draw(rngs, lambda g: torch.rand(*shape, generator=g), device)


def stacked_randint(rngs: Sequence[torch.Generator], high: int, *shape: int, device="cpu") -> torch.Tensor:
    """Integers in [0, high) ``(K, *shape)``, row ``k`` from ``rngs[k]``."""
    return _draw(rngs, lambda g: torch.randint(high, shape, generator=g), device)


class Trainer(abc.ABC):
    """A training loop over ``K`` ensemble members; subclasses implement :meth:`train_step`.

    :param seeds: one seed per member; member ``k``'s loop stream is seeded from ``seeds[k]`` only.
    :param log_every: record the losses in :attr:`history` every this many steps (and at the end).
    """

    def __init__(self, seeds: Sequence[int], log_every: int = 10):
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed")
        self.log_every = int(log_every)
        self.step = 0
        self.rngs = [torch.Generator().manual_seed(member_seed(s, Stream.LOOP)) for s in self.seeds]
        self.history = TrainingHistory()
        self.last_losses: dict[str, list[float]] = {}

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    # ------------------------------------------------------------------ what a family implements
    @abc.abstractmethod
    def train_step(self) -> dict[str, torch.Tensor]:
        """One step for every member; returns losses by name, each of shape ``(K,)``."""

    @abc.abstractmethod
    def modules_state(self) -> dict[str, Any]:
        """Everything but the loop's own state that a checkpoint must hold (weights, optimisers)."""

    @abc.abstractmethod
    def load_modules_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`modules_state`."""

    @abc.abstractmethod
    def member_module(self, k: int) -> torch.nn.Module:
        """Member ``k``'s trained model as a stand-alone module (CPU, eval mode)."""

    def begin(self) -> None:
        """Called before the first step of :meth:`train` (put modules in training mode)."""

    def end(self) -> None:
        """Called when :meth:`train` returns (put modules in eval mode)."""

    # ------------------------------------------------------------------ the loop
    #: a loss whose magnitude passes this limit means training diverged (see :meth:`check_bounded`).
    #: Measured on LoGAN (packaged C4H10O/C6H14O set, 2 members, largest |loss| over every step and member):
    #: the fast protocol (full-size networks, lr 1e-3, 300 steps) peaks at 7.6e3 (Wasserstein) and 6.1e3
    #: (critic) in its first steps, when generated atoms still overlap; tiny networks at lr 1e-2 (RMSprop or
    #: Adam) stay below 2e2, a reckless lr 0.1 peaks at 2e3, lr 1 at 1.2e4 (Wasserstein); lr 1e6 reaches
    #: 1e18 (Wasserstein) and 1e33 (critic). The gradient penalty keeps a WGAN critic about 1-Lipschitz, so
    #: the Wasserstein estimate is bounded by the spread of the standardised inputs; 1e8 leaves four orders
    #: of margin above the worst normal run and is passed by ten orders when the optimiser blows up.
    divergence_limit: float = 1e8
    #: the losses held to :attr:`divergence_limit` (``None``: all). A WGAN's generator loss is excluded by
    #: :class:`~aiida_physgen.ml.wgan.WGANTrainer`: critic scores carry a free additive constant that may
    #: drift over a long training without anything being wrong (measured: 1.9e4 in the fast protocol)
    bounded_losses: tuple[str, ...] | None = None

    def check_bounded(self, losses: dict[str, list[float]]) -> None:
        """Raise :class:`TrainingDivergedError` when a loss of some member is NaN/inf or larger in magnitude
        than :attr:`divergence_limit`: an exploding loss (Wasserstein distance at -2.5e15) must not end
        as a "normally" trained model."""
        for name, values in losses.items():
            if self.bounded_losses is not None and name not in self.bounded_losses:
                continue
            for k, value in enumerate(values):
                if not (abs(value) <= self.divergence_limit):  # NaN fails this comparison too
                    raise TrainingDivergedError(
                        f"training diverged: the {name} loss of the member with seed {self.seeds[k]} reached "
                        f"{value:.3g} at step {self.step}, beyond {self.divergence_limit:.0e} (normal training "
                        "stays below ~1e4); lower the learning rate (e.g. by a factor of 10) and train again",
                        self.step,
                        [k],
                    )

    def check_finite(self, name: str, losses: torch.Tensor, members: Sequence[int] | None = None) -> None:
        """Raise :class:`TrainingDivergedError` when a loss is NaN or infinite; ``members[i]`` is the
        ensemble index of ``losses[i]`` (by default ``i``)."""
        bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
        if bad:
            if members is not None:
                bad = [members[i] for i in bad]
            raise TrainingDivergedError(
                f"the {name} loss became NaN/inf at step {self.step} for ensemble member(s) "
                f"{[self.seeds[k] for k in bad]} (by seed); lower the learning rate or check the training data",
                self.step,
                bad,
            )

    def train(
        self,
        steps: int,
        callback: Callable[[int, dict[str, list[float]]], None] | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 0,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainingHistory:
        """Run steps until ``steps`` have been done in total (a resumed trainer continues its count).

        ``callback(step, losses)`` is called after every step with plain per-member lists. A
        checkpoint is written every ``checkpoint_every`` steps and at the end. When ``should_stop()``
        becomes true the checkpoint is written and :class:`TrainingInterrupted` raised.
        """
        self.begin()
        try:
            while self.step < steps:
                if should_stop is not None and should_stop():
                    if checkpoint_path is not None:
                        self.save_checkpoint(checkpoint_path)
                    raise TrainingInterrupted(f"training stopped at step {self.step} of {steps}", self.step)
                losses = {name: value.detach().cpu().tolist() for name, value in self.train_step().items()}
                self.step += 1
                self.check_bounded(losses)
                self.last_losses = losses
                if self.step % self.log_every == 0 or self.step == steps:
                    self.history.append(self.step, losses)
                if callback is not None:
                    callback(self.step, losses)
                if checkpoint_path is not None and (
                    self.step == steps or (checkpoint_every and self.step % checkpoint_every == 0)
                ):
                    self.save_checkpoint(checkpoint_path)
        finally:
            self.end()
        return self.history

    def final_losses(self) -> list[dict[str, float]]:
        """Last logged losses per member."""
        if not self.history.steps:
            return [{} for _ in range(self.n_models)]
        return [{name: rows[-1][k] for name, rows in self.history.losses.items()} for k in range(self.n_models)]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seeds": self.seeds,
            "rngs": [g.get_state() for g in self.rngs],
            "history": self.history.to_dict(),
            **self.modules_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"checkpoint: it was written for seeds {state['seeds']}, not {self.seeds}")
        self.step = int(state["step"])
        for g, s in zip(self.rngs, state["rngs"]):
            g.set_state(s)
        self.history = TrainingHistory(**state["history"])
        self.load_modules_state(state)

    def save_checkpoint(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:  # atomic: a crash never leaves half a checkpoint
            torch.save(self.state_dict(), tmp)

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def check_loop_settings(settings: Any, unit: str) -> None:
    """Check the fields every :class:`MemberModulesTrainer` family's loop settings have, naming the field:
    ``steps``, ``batch_size`` (``unit`` per step, e.g. ``'sheets'``) and ``log_every`` positive integers (stored
    as ``int``), ``lr`` a positive finite learning rate (Adam), ``validation_fraction`` (the share of the
    ``unit`` held out) in (0, 1)."""
    require_positive_ints(
        settings,
        {
            "steps": "a positive number of optimiser steps",
            "batch_size": f"a positive number of {unit} per step",
            "log_every": "a positive logging interval in steps",
        },
    )
    if not is_finite_number(settings.lr) or settings.lr <= 0:
        raise ValueError(f"lr: got {settings.lr!r}, expected a positive finite learning rate (Adam)")
    fraction = settings.validation_fraction
    if not is_finite_number(fraction) or not 0 < fraction < 1:
        raise ValueError(f"validation_fraction: got {fraction!r}, expected the fraction of {unit} held out, in (0, 1)")


def held_out_count(count: int, fraction: float) -> int:
    """Samples held out of ``count`` at ``fraction`` (rounded, at least one)."""
    return max(1, int(round(count * fraction)))


class MemberModulesTrainer(Trainer):
    """A trainer of ``K`` independent members, each with its own module and optimiser (supervised or
    likelihood families: EDNN, RePAP), stepped one after the other.

    Subclasses append to :attr:`modules` and :attr:`optimizers` in their constructor and implement
    :meth:`train_step` with :meth:`next_batch` (epoch-long data orders per member, drawn from its loop
    stream), :meth:`update` (one optimiser step of a member) and :meth:`running_means` (the mean loss since
    the last log, at the steps :meth:`logs_this_step` says). Checkpoints hold modules, optimisers, data
    orders, running sums, and :meth:`extra_state`.

    :param members: every member's settings (a family's settings dataclass); what the members share (all but
        the family's ``vectorised`` settings) is read from the first, :attr:`settings`: its ``loop`` gives
        ``log_every`` and ``steps`` (the last step is always logged).
    :param seeds: one seed per member.
    :param device: where the modules and data live.
    """

    def __init__(self, members: Sequence[Any], seeds: Sequence[int], device: torch.device | str = "cpu"):
        first = members[0]
        super().__init__(seeds, first.loop.log_every)
        self.settings = first
        self.steps = first.loop.steps
        self.device = torch.device(device)
        self.modules: list[torch.nn.Module] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.orders: list[torch.Tensor | None] = [None] * self.n_models
        self.positions = [0] * self.n_models
        self.loss_sums = [0.0] * self.n_models
        self.loss_counts = [0] * self.n_models

    def next_batch(self, k: int, count: int, size: int) -> torch.Tensor:
        """Member ``k``'s next ``min(size, count)`` indices into ``range(count)``: consecutive slices of a
        permutation drawn from its loop stream, a new permutation when the epoch is used up."""
        size = min(size, count)
        if self.orders[k] is None or self.positions[k] + size > count:
            self.orders[k] = torch.randperm(count, generator=self.rngs[k])
            self.positions[k] = 0
        batch = self.orders[k][self.positions[k] : self.positions[k] + size]
        self.positions[k] += size
        return batch

    def update(self, k: int, loss: torch.Tensor, name: str = "loss", clip_norm: float | None = None) -> float:
        """One optimiser step of member ``k`` on its scalar ``loss``: the NaN guard (:meth:`check_finite`,
        naming the loss ``name``), the gradients (their norm clipped to ``clip_norm`` when given), the step.
        Returns the loss as a number."""
        self.check_finite(name, loss.detach().reshape(1), [k])
        optimizer = self.optimizers[k]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.modules[k].parameters(), clip_norm)
        optimizer.step()
        return float(loss.detach())

    def logs_this_step(self) -> bool:
        """Whether the step being taken is logged: every ``log_every``-th and the last of :attr:`steps` (the
        base class counts a step after :meth:`train_step` returns, so this is step ``self.step + 1``)."""
        step = self.step + 1
        return step % self.log_every == 0 or step == self.steps

    def running_means(self, losses: Sequence[float], logging: bool) -> list[float]:
        """Add this step's ``losses``; when ``logging``, return each member's mean since the last log (and
        start again), else this step's values."""
        out = []
        for k, value in enumerate(losses):
            self.loss_sums[k] += value
            self.loss_counts[k] += 1
            out.append(self.loss_sums[k] / self.loss_counts[k] if logging else value)
            if logging:
                self.loss_sums[k], self.loss_counts[k] = 0.0, 0
        return out

    def begin(self) -> None:
        for module in self.modules:
            module.train()

    def end(self) -> None:
        for module in self.modules:
            module.eval()

    def extra_state(self) -> dict[str, Any]:
        """A subclass's own checkpointed values (default: none)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    def modules_state(self) -> dict[str, Any]:
        return {
            "modules": [m.state_dict() for m in self.modules],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "orders": [o if o is None else o.clone() for o in self.orders],
            "positions": list(self.positions),
            "loss_sums": list(self.loss_sums),
            "loss_counts": list(self.loss_counts),
            **self.extra_state(),
        }

    def load_modules_state(self, state: dict[str, Any]) -> None:
        for module, values in zip(self.modules, state["modules"]):
            module.load_state_dict(values)
        for optimizer, values in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(values)
        self.orders = [o if o is None else o.clone() for o in state["orders"]]
        self.positions = [int(p) for p in state["positions"]]
        self.loss_sums = [float(v) for v in state["loss_sums"]]
        self.loss_counts = [int(v) for v in state["loss_counts"]]
        self.load_extra_state(state)

    def member_module(self, k: int) -> torch.nn.Module:
        import copy

        return copy.deepcopy(self.modules[k]).cpu().eval()
