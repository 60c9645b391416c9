"""RePAP: recurrent probabilistic axis projections, an autoregressive LSTM for amorphous structures.

After Hastrup and Wamberg (DTU). An amorphous structure of ``N`` atoms in a fixed periodic cell is
one sequence of ``3N`` fractional coordinates ``x0 y0 z0 x1 …``; the atoms are ordered once, by
their mean distance to the origin over the training trajectory (so atom ``i`` of every frame is
the same atom of the simulation). Each coordinate lives on a grid of ``bins`` points along its
cell vector. An LSTM reads the coordinates one at a time: its input at position ``t`` is the
one-hot of coordinate ``t``'s bin (``bins``) concatenated with the one-hot of ``t`` (``3N − 1``
positions; 50 + 89 = 139 for 30 atoms on 50 bins), and its output is a categorical distribution
over the bins of coordinate ``t + 1``. The loss is the squared error of that distribution
(softmax) against a Gaussian of width ``sigma`` bins centred on the true coordinate, discretised
on the grid and wrapped periodically; the paper's network is 2 LSTM layers of 256 with dropout 0.5.

Generation draws ``x0`` from the training frames' histogram of the first coordinate, then every
next coordinate from the network (a bin, then, with ``jitter``, a uniform position inside it). It
runs for a whole batch of structures at once, one LSTM step per coordinate for every structure.

Close contacts (the paper's known flaw: pairs closer than 2 Å): with ``condition.min_distance``
(default 2 Å) an atom whose three coordinates put it closer than that to an earlier atom (periodic
images included) is drawn again from the same LSTM state, up to ``max_tries`` times; a structure
whose atom still fails is drawn again from the start, up to ``max_restarts`` times, and then
:class:`MinimumDistanceError` is raised. Each structure records ``resampled_atoms`` (atom redraws)
and ``restarts`` in its ``info``. A minimum distance that no packing allows at the cell's density is
refused before any sampling.

No AiiDA import here.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .batch import StructureBatch
from .ensemble import Stream, attributes, eval_mode, member_seed, torch_seeded
from .family import GeneratorFamily, keys_checked
from .loop import MemberModulesTrainer, check_loop_settings, held_out_count
from .settings import is_finite_number, is_positive_int, require_positive_ints

__all__ = [
    "RepapLoopSettings",
    "RepapSettings",
    "RepapLSTM",
    "RepapTrainer",
    "RepapFamily",
    "MinimumDistanceError",
    "SequenceData",
    "atom_order",
    "gaussian_targets",
    "RANDOM_CLOSE_PACKING",
    "SAMPLE_CHUNK",
]

#: the densest random packing of equal spheres; more atoms of diameter ``min_distance`` per volume cannot
#: be placed at random, so such a condition is refused before sampling
RANDOM_CLOSE_PACKING = 0.64
#: structures generated together in one LSTM pass (memory: a few MB of state per 1,000 structures)
SAMPLE_CHUNK = 2048
#: the grid must resolve the nearest-neighbour shell: a bin may be at most this fraction of the median
#: nearest-neighbour distance of the training frames wide (Si: 2.35 Å, so at most 0.59 Å)
MAX_BIN_FRACTION = 0.25


class MinimumDistanceError(ValueError):
    """The minimum distance could not be met within the bounded number of redraws and restarts."""


# ---------------------------------------------------------------------- settings
@dataclass
class RepapLoopSettings:
    """Adam on the squared error; ``steps`` optimiser steps of ``batch_size`` frames.

    The last ``validation_fraction`` of the training frames (in trajectory order: neighbouring MD frames
    are correlated, so a random split would leak) are held out; their loss is logged every ``log_every``
    steps. ``clip_norm`` bounds the gradient norm (the usual guard for recurrent networks).
    """

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    clip_norm: float = 1.0
    validation_fraction: float = 0.1
    log_every: int = 100

    def __post_init__(self) -> None:
        check_loop_settings(self, "frames")
        if not is_finite_number(self.clip_norm) or self.clip_norm <= 0:
            raise ValueError(f"clip_norm: got {self.clip_norm!r}, expected a positive gradient-norm bound")


@dataclass
class RepapSettings:
    """Every setting of a RePAP model: the grid, the network and the loop.

    ``bins`` grid points per cell vector; ``sigma`` the width of the target Gaussian, in bins; ``hidden``
    and ``layers`` the LSTM, ``dropout`` between its layers and before the output layer (the paper: 50,
    2 × 256, 0.5); ``jitter`` places a sampled coordinate uniformly inside its bin (else at the bin's
    centre).

    Why ``sigma`` 0.5 (the paper gives no width): the network learns the target's spread, and sampling
    reproduces it, so the width adds to every coordinate's scatter. Measured on amorphous Si (30 atoms,
    4,000 training frames, LSTM 2 × 64, 2,000 steps at lr 3e-3, 500 structures at temperature 1): RDF error
    0.28 with a pair < 2 Å in 99 % of the structures at sigma 1, 0.145 and 58 % at sigma 0.5.
    """

    bins: int = 50
    sigma: float = 0.5
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.5
    jitter: bool = True
    loop: RepapLoopSettings = field(default_factory=RepapLoopSettings)

    def __post_init__(self) -> None:
        if not is_positive_int(self.bins) or self.bins < 2:
            raise ValueError(f"bins: got {self.bins!r}, expected at least 2 grid points per cell vector")
        self.bins = int(self.bins)
        if not is_finite_number(self.sigma) or self.sigma <= 0:
            raise ValueError(f"sigma: got {self.sigma!r}, expected a positive Gaussian width in bins")
        require_positive_ints(self, {"hidden": "a positive LSTM width", "layers": "a positive number of LSTM layers"})
        if not is_finite_number(self.dropout) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: got {self.dropout!r}, expected a probability in [0, 1)")
        if not isinstance(self.jitter, (bool, np.bool_)):
            raise ValueError(f"jitter: got {self.jitter!r}, expected true or false")
        self.jitter = bool(self.jitter)


# ---------------------------------------------------------------------- data
@dataclass
class SequenceData:
    """A trajectory as coordinate sequences: ``fractions (F, 3N)`` in [0, 1) in the model's atom order."""

    fractions: np.ndarray
    numbers: np.ndarray  # (N,) in the model's order
    cell: np.ndarray  # (3, 3)
    order: np.ndarray  # (N,): atom order[i] of a frame is the model's atom i


def _periodic_distances(new: torch.Tensor, earlier: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Shortest distances ``(R, A)`` from ``new (R, 3)`` to ``earlier (R, A, 3)`` (fractional), periodic
    images included: minimum image in fractional coordinates, then the 27 neighbouring shifts, so it is
    exact for skewed cells too (ASE's neighbour list would need one call per structure and atom)."""
    delta = new[:, None, :] - earlier
    delta = delta - torch.round(delta)
    shifts = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=delta.dtype)
    cart = (delta[:, :, None, :] + shifts) @ cell
    return cart.norm(dim=-1).amin(dim=-1)


def nearest_neighbour_distances(fractions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Every atom's nearest-neighbour distance ``(F, N)`` in Å (periodic) for frames ``(F, N, 3)``."""
    f = torch.tensor(np.asarray(fractions), dtype=torch.float64)
    c = torch.tensor(np.asarray(cell), dtype=torch.float64)
    frames, n, _ = f.shape
    out = torch.empty(frames, n, dtype=torch.float64)
    for i in range(n):
        others = torch.cat([f[:, :i], f[:, i + 1 :]], dim=1)
        out[:, i] = _periodic_distances(f[:, i], others, c).amin(dim=1)
    return out.numpy()


def atom_order(fractions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The paper's atom order: by mean distance to the origin over the frames (``fractions (F, N, 3)``
    wrapped into the cell), nearest first; ties keep the simulation's order."""
    distance = np.linalg.norm(fractions @ cell, axis=-1).mean(axis=0)
    return np.argsort(distance, kind="stable")


def read_trajectory(training: StructureBatch | None, where: str = "training") -> SequenceData:
    """The frames of a fixed-cell periodic trajectory as sequences; ``ValueError`` naming ``where[i]`` for
    a frame with another atom count, other species, another cell or no periodicity."""
    if not isinstance(training, StructureBatch):
        raise ValueError(
            f"{where}: expected the frames of a trajectory (a StructureBatch), got {type(training).__name__}"
        )
    frames = len(training)
    n = int(training.n_atoms[0])
    if n < 2:
        raise ValueError(f"{where}[0]: {n} atom; RePAP needs structures of at least 2 atoms")
    mismatch = training.trajectory_mismatch(where)
    if mismatch:
        raise ValueError(
            f"{mismatch}; RePAP needs the frames of one constant-volume trajectory (same atoms in the "
            "same order, one fixed cell)"
        )
    if not training.pbc.all():
        i = int(np.argmin(training.pbc.all(axis=1)))
        raise ValueError(
            f"{where}[{i}]: pbc {training.pbc[i].tolist()}; RePAP needs cells periodic along all three axes"
        )
    cell = np.array(training.cells[0])
    if abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError(f"{where}[0]: the cell has no volume; expected a periodic cell")
    numbers = training.numbers.reshape(frames, n)
    fractions = np.linalg.solve(cell.T, training.positions.T).T.reshape(frames, n, 3) % 1.0
    fractions[fractions >= 1.0] = 0.0  # -1e-17 % 1.0 is 1.0
    order = atom_order(fractions, cell)
    return SequenceData(fractions[:, order].reshape(frames, 3 * n), numbers[0][order], cell, order)


def gaussian_targets(fractions: torch.Tensor, bins: int, sigma: float) -> torch.Tensor:
    """The discretised, periodically wrapped Gaussians ``(..., bins)`` centred on coordinates ``fractions``
    (in [0, 1)), width ``sigma`` bins, each summing to one."""
    centres = torch.arange(bins, dtype=fractions.dtype) + 0.5
    delta = fractions[..., None] * bins - centres
    delta = torch.remainder(delta + bins / 2, bins) - bins / 2
    weights = torch.exp(-0.5 * (delta / sigma) ** 2)
    return weights / weights.sum(-1, keepdim=True)


def to_bins(fractions: torch.Tensor, bins: int) -> torch.Tensor:
    return torch.clamp((fractions * bins).long(), 0, bins - 1)


# ---------------------------------------------------------------------- the network
class RepapLSTM(nn.Module):
    """The LSTM of one model: bins of coordinates ``0 … 3N−2`` → logits of coordinates ``1 … 3N−1``."""

    def __init__(self, bins: int, length: int, hidden: int, layers: int, dropout: float, seed: int = 0):
        super().__init__()
        self.bins, self.length = int(bins), int(length)
        self.hidden, self.layers, self.dropout = int(hidden), int(layers), float(dropout)
        with torch_seeded(member_seed(seed, Stream.GENERATOR)):  # the member's own stream
            self.lstm = nn.LSTM(
                self.bins + self.length - 1,
                self.hidden,
                self.layers,
                batch_first=True,
                dropout=self.dropout if self.layers > 1 else 0.0,
            )
            self.output = nn.Linear(self.hidden, self.bins)
        self.drop = nn.Dropout(self.dropout)

    def architecture(self) -> dict[str, Any]:
        return attributes(self, ("bins", "length", "hidden", "layers", "dropout"))

    def encode(self, bins_in: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.one_hot(bins_in, self.bins), F.one_hot(positions, self.length - 1)], dim=-1).float()

    def forward(self, bins_in: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, bins)`` for the coordinates after each of ``bins_in (B, T)`` (T ≤ 3N − 1)."""
        positions = torch.arange(bins_in.shape[1], device=bins_in.device).expand_as(bins_in)
        out, _ = self.lstm(self.encode(bins_in, positions))
        return self.output(self.drop(out))

    def step(self, bins_in: torch.Tensor, position: int, state=None):
        """One step for a batch: the bin ``(B,)`` of coordinate ``position`` → logits of the next ``(B, bins)``
        and the new ``(h, c)`` state."""
        positions = torch.full_like(bins_in, position)
        out, state = self.lstm(self.encode(bins_in, positions)[:, None, :], state)
        return self.output(out[:, 0]), state


# ---------------------------------------------------------------------- training
class RepapTrainer(MemberModulesTrainer):
    """``K`` independent RePAP models (own network, optimiser, batches and dropout masks each).

    History: ``loss`` (mean squared error since the last log, summed over the bins, averaged over the
    coordinates) and ``validation_loss`` on the held-out (last) frames.
    """

    def __init__(
        self,
        data: SequenceData,
        members: Sequence[RepapSettings],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ):
        super().__init__(members, seeds, device)
        first = self.settings
        self.data = data
        frames = len(data.fractions)
        self.n_train = frames - held_out_count(frames, first.loop.validation_fraction)
        fractions = torch.as_tensor(data.fractions, dtype=torch.float32)
        self.fractions = fractions.to(self.device)
        self.bins_of = to_bins(fractions, first.bins).to(self.device)
        counts = np.bincount(self.bins_of[: self.n_train, 0].cpu().numpy(), minlength=first.bins)
        self.x0_histogram = counts.astype(np.int64)
        for member, seed in zip(members, self.seeds):
            module = RepapLSTM(
                member.bins, data.fractions.shape[1], member.hidden, member.layers, member.dropout, seed
            ).to(self.device)
            self.modules.append(module)
            self.optimizers.append(torch.optim.Adam(module.parameters(), lr=member.loop.lr))
        self.validation = [self.evaluate(k) for k in range(self.n_models)]

    def loss(self, module: RepapLSTM, index: torch.Tensor) -> torch.Tensor:
        logits = module(self.bins_of[index, :-1])
        target = gaussian_targets(self.fractions[index, 1:], module.bins, self.settings.sigma)
        return ((torch.softmax(logits, dim=-1) - target) ** 2).sum(-1).mean()

    def train_step(self) -> dict[str, torch.Tensor]:
        losses = []
        for k, module in enumerate(self.modules):
            index = self.next_batch(k, self.n_train, self.settings.loop.batch_size).to(self.device)
            # dropout masks from the member's loop stream (checkpointed), not the global generator
            with torch_seeded(int(torch.randint(2**62, (1,), generator=self.rngs[k]))):
                loss = self.loss(module, index)
            losses.append(self.update(k, loss, "squared error", self.settings.loop.clip_norm))
        logging = self.logs_this_step()
        out = self.running_means(losses, logging)
        if logging:
            self.validation = [self.evaluate(k) for k in range(self.n_models)]
        return {
            "loss": torch.tensor(out, dtype=torch.float64),
            "validation_loss": torch.tensor(self.validation, dtype=torch.float64),
        }

    @torch.no_grad()
    def evaluate(self, k: int, chunk: int = 512) -> float:
        """Member ``k``'s loss on the held-out frames (eval mode: no dropout)."""
        index = torch.arange(self.n_train, len(self.fractions), device=self.device)
        total = 0.0
        with eval_mode(self.modules[k]) as module:
            for i in range(0, len(index), chunk):
                part = index[i : i + chunk]
                total += float(self.loss(module, part)) * len(part)
        return total / len(index)

    def extra_state(self) -> dict[str, Any]:
        return {"validation": list(self.validation)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.validation = [float(v) for v in state["validation"]]


# ---------------------------------------------------------------------- sampling
def _draw(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)[:, 0]


def _place(bins_drawn: torch.Tensor, bins: int, jitter: bool, generator: torch.Generator) -> torch.Tensor:
    offset = torch.rand(bins_drawn.shape, generator=generator, dtype=torch.float64) if jitter else 0.5
    return (bins_drawn.double() + offset) / bins


def _select_state(state, rows: torch.Tensor):
    return tuple(s[:, rows].contiguous() for s in state)


def _put_state(state, rows: torch.Tensor, values) -> None:
    for s, v in zip(state, values):
        s[:, rows] = v


@torch.no_grad()
def generate_sequences(
    module: RepapLSTM,
    config: Mapping[str, Any],
    count: int,
    generator: torch.Generator,
    min_distance: float,
    max_tries: int,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass for ``count`` structures: fractional coordinates ``(count, N, 3)``, atom redraws per
    structure, and which structures failed (an atom still too close after ``max_tries`` redraws)."""
    bins, jitter = int(config["architecture"]["bins"]), bool(config["jitter"])
    n = module.length // 3
    cell = torch.as_tensor(np.asarray(config["cell"], dtype=np.float64))
    x0 = torch.as_tensor(np.asarray(config["x0_histogram"], dtype=np.float64))
    coords = torch.empty(count, n, 3, dtype=torch.float64)
    redraws = torch.zeros(count, dtype=torch.int64)
    failed = torch.zeros(count, dtype=torch.bool)

    def atom(i: int, first_logits, state, rows):
        """Draw atom ``i`` for ``rows`` from the logits of its x coordinate and the LSTM state before it:
        its fractional coordinates ``(R, 3)``, the bin of its z and the state after its y step (z is fed
        at the next atom, once the atom is accepted)."""
        xyz = torch.empty(len(rows), 3, dtype=torch.float64)
        logits = first_logits
        for axis in range(3):
            if axis == 0 and i == 0:
                drawn = torch.multinomial(x0.expand(len(rows), -1), 1, generator=generator)[:, 0]
            else:
                drawn = _draw(logits, generator, temperature)
            xyz[:, axis] = _place(drawn, bins, jitter, generator)
            if axis < 2:
                logits, state = module.step(drawn, 3 * i + axis, state)
        return xyz, drawn, state

    everyone = torch.arange(count)
    xyz, last_bin, state = atom(0, None, None, everyone)
    coords[:, 0] = xyz
    for i in range(1, n):
        # feed atom i−1's z: the logits of atom i's x, and the state to go back to when atom i is redrawn
        logits, state = module.step(last_bin, 3 * i - 1, state)
        xyz, last_bin, after = atom(i, logits, state, everyone)
        if min_distance > 0:
            bad = _periodic_distances(xyz, coords[:, :i], cell).amin(dim=1) < min_distance
            bad &= ~failed  # a structure that already failed is drawn again from the start anyway
            tries = 0
            while bad.any() and tries < max_tries:
                rows = bad.nonzero()[:, 0]
                redraws[rows] += 1
                again, again_bin, again_state = atom(i, logits[rows], _select_state(state, rows), rows)
                xyz[rows], last_bin[rows] = again, again_bin
                _put_state(after, rows, again_state)
                bad[rows] = _periodic_distances(again, coords[rows, :i], cell).amin(dim=1) < min_distance
                tries += 1
            failed |= bad
        coords[:, i] = xyz
        state = after
    return coords.numpy(), redraws.numpy(), failed.numpy()


class RepapFamily(GeneratorFamily):
    """RePAP as a generator family: amorphous structures of the training trajectory's atoms and cell.

    Target: none (``{}``): the trajectory fixes atoms, species and cell. Training: the frames of one
    constant-volume periodic trajectory (:func:`read_trajectory`). Condition: ``min_distance`` (Å,
    default 2.0; 0 switches the close-contact redraws off), ``max_tries`` (redraws of one atom, default
    100), ``max_restarts`` (fresh draws of a structure, default 20) and ``temperature`` (default 1: the
    learnt distribution; the logits are divided by it, so below 1 sampling is sharper). The x0 draw from
    the training histogram is not tempered.
    """

    name = "repap"
    protocol_file = Path(__file__).parent / "protocols" / "repap.yaml"
    settings_class = RepapSettings
    vectorised = ("loop.lr",)
    architecture_settings = ("bins", "hidden", "layers", "dropout")

    CONDITION_DEFAULTS = {"min_distance": 2.0, "max_tries": 100, "max_restarts": 20, "temperature": 1.0}

    def check_target(self, target):
        if target is None:
            target = {}
        if not isinstance(target, Mapping):
            raise ValueError(
                f"target: expected an empty dictionary (the trajectory fixes atoms and cell), got {target!r}"
            )
        if target:
            raise ValueError(
                f"target.{sorted(target)[0]}: unknown key; a RePAP target is empty (the training "
                "trajectory fixes atoms, species and cell)"
            )
        return {}

    def validate(self, training, target, settings):
        if training is None:
            raise ValueError("training: required; RePAP learns from the frames of a trajectory")
        data = read_trajectory(training)
        frames = len(data.fractions)
        n_val = held_out_count(frames, settings.loop.validation_fraction)
        if frames - n_val < 2:
            raise ValueError(
                f"training: {frames} frames with settings.loop.validation_fraction "
                f"{settings.loop.validation_fraction} leave {frames - n_val} to train on; expected "
                "at least 2"
            )
        self.check_grid(data, settings.bins)

    @staticmethod
    def check_grid(data: SequenceData, bins: int, where: str = "settings.bins") -> None:
        """``ValueError`` when a bin is wider than :data:`MAX_BIN_FRACTION` of the frames' median
        nearest-neighbour distance (the grid could not resolve the first coordination shell)."""
        n = len(data.numbers)
        sample = data.fractions[:: max(1, len(data.fractions) // 50)].reshape(-1, n, 3)
        nearest = float(np.median(nearest_neighbour_distances(sample, data.cell)))
        width = float(np.linalg.norm(data.cell, axis=1).max()) / bins
        if width > MAX_BIN_FRACTION * nearest:
            needed = math.ceil(float(np.linalg.norm(data.cell, axis=1).max()) / (MAX_BIN_FRACTION * nearest))
            raise ValueError(
                f"{where}: {bins} bins over a {width * bins:.2f} Å cell vector are {width:.2f} Å wide, more than "
                f"{MAX_BIN_FRACTION:g} of the median nearest-neighbour distance {nearest:.2f} Å of the training "
                f"frames; the grid is too coarse for the cell: expected at least {needed} bins"
            )

    def build_trainer(self, training, target, members, seeds, device):
        return RepapTrainer(read_trajectory(training), members, seeds, device)

    def member_config(self, trainer, k):
        data = trainer.data
        module = trainer.modules[k]
        return {
            "architecture": {**module.architecture()},
            "cell": np.asarray(data.cell).tolist(),
            "numbers": [int(z) for z in data.numbers],
            "order": [int(i) for i in data.order],
            "x0_histogram": trainer.x0_histogram.tolist(),
            "jitter": bool(trainer.settings.jitter),
            "sigma": float(trainer.settings.sigma),
            "training_frames": int(trainer.n_train),
            "held_out_frames": int(len(data.fractions) - trainer.n_train),
            "validation_loss": float(trainer.evaluate(k)),
        }

    def atoms_per_structure(self, target):
        return None

    def module_from_config(self, config):
        a = config["architecture"]
        return RepapLSTM(a["bins"], a["length"], a["hidden"], a["layers"], a["dropout"], int(config.get("seed", 0)))

    # ------------------------------------------------------------------ sampling
    def check_condition(self, condition, config):
        condition = keys_checked(
            condition,
            "condition",
            sorted(self.CONDITION_DEFAULTS),
            "a dictionary with min_distance, max_tries and/or max_restarts",
        )
        out = {**self.CONDITION_DEFAULTS, **condition}
        d = out["min_distance"]
        if not is_finite_number(d) or d < 0:
            raise ValueError(f"condition.min_distance: got {d!r}, expected a distance in Å ≥ 0 (0: no redraws)")
        out["min_distance"] = float(d)
        t = out["temperature"]
        if not is_finite_number(t) or t <= 0:
            raise ValueError(
                f"condition.temperature: got {t!r}, expected a positive sampling temperature (1: the "
                "model's distribution; below 1 sharper, above 1 flatter)"
            )
        out["temperature"] = float(t)
        for key in ("max_tries", "max_restarts"):
            if not is_positive_int(out[key]):
                raise ValueError(f"condition.{key}: got {out[key]!r}, expected a positive integer")
            out[key] = int(out[key])
        if config is not None and "cell" in config and d > 0:
            n = len(config["numbers"])
            volume = abs(float(np.linalg.det(np.asarray(config["cell"], dtype=np.float64))))
            packing = n * math.pi * d**3 / 6 / volume
            if packing > RANDOM_CLOSE_PACKING:
                limit = (RANDOM_CLOSE_PACKING * 6 * volume / (n * math.pi)) ** (1 / 3)
                raise MinimumDistanceError(
                    f"condition.min_distance: {d:g} Å cannot be met by {n} atoms in {volume:.1f} Å³: spheres of "
                    f"that diameter would fill {packing:.0%} of the cell, beyond random close packing "
                    f"({RANDOM_CLOSE_PACKING:.0%}); expected at most {limit:.2f} Å"
                )
        return out

    @torch.no_grad()
    def sample(self, module, config, count, seed, condition=None):
        condition = self.check_condition(condition, config)
        generator = torch.Generator().manual_seed(member_seed(seed, Stream.SAMPLE))
        with eval_mode(module):
            coords, redraws, restarts = [], [], []
            for start in range(0, count, SAMPLE_CHUNK):
                c, r, s = self._sample_chunk(module, config, min(SAMPLE_CHUNK, count - start), generator, condition)
                coords.append(c)
                redraws.append(r)
                restarts.append(s)
        coords = np.concatenate(coords)
        redraws, restarts = np.concatenate(redraws), np.concatenate(restarts)
        cell = np.asarray(config["cell"], dtype=np.float64)
        if condition["min_distance"] > 0 and redraws.any():
            warnings.warn(
                f"sample: {int((redraws > 0).sum())} of {count} structures had an atom closer than "
                f"{condition['min_distance']:g} Å to an earlier one ({int(redraws.sum())} atom redraws, "
                f"{int(restarts.sum())} structure restarts)",
                UserWarning,
                stacklevel=2,
            )
        return StructureBatch.from_uniform(
            coords @ cell,
            config["numbers"],
            cell,
            [True, True, True],
            info={"resampled_atoms": redraws, "restarts": restarts},
        )

    def _sample_chunk(self, module, config, count, generator, condition):
        coords, redraws, failed = generate_sequences(
            module,
            config,
            count,
            generator,
            condition["min_distance"],
            condition["max_tries"],
            condition["temperature"],
        )
        restarts = np.zeros(count, dtype=np.int64)
        for _ in range(condition["max_restarts"]):
            rows = np.flatnonzero(failed)
            if rows.size == 0:
                break
            restarts[rows] += 1
            c, r, f = generate_sequences(
                module,
                config,
                rows.size,
                generator,
                condition["min_distance"],
                condition["max_tries"],
                condition["temperature"],
            )
            coords[rows], failed[rows] = c, f
            redraws[rows] += r
        if failed.any():
            raise MinimumDistanceError(
                f"condition.min_distance: {int(failed.sum())} of {count} structures still had an atom closer than "
                f"{condition['min_distance']:g} Å after {condition['max_tries']} redraws per atom and "
                f"{condition['max_restarts']} restarts; lower min_distance or raise max_tries / max_restarts"
            )
        return coords, redraws, restarts
