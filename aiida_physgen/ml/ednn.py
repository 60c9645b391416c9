"""EDNN: an extensive deep neural network, the energy surrogate of porous graphene.

Mills, Ryczko, Luchak, Domurad, Beeler, Tamblyn, "Extensive deep neural networks for transferring
small scale learning to large scale systems", Chem. Sci. 10, 4129 (2019).

For an extensive property (the total energy) the input grid is cut into *focus* tiles of
``focus = (f0, f1)`` sites; every tile is extended by a *context* border of ``context = (c0, c1)``
sites on each side, taken periodically (the sheet is periodic), and every extended tile goes
through the **same** network, whose outputs are **summed**. The loss is on the sum only; the
network is free to split the energy among tiles as it likes. Evaluation costs O(N) and works on
any sheet whose grid is a whole number of tiles, in particular on sheets larger than the
training ones (the paper: 1.685 meV/Å² median absolute error against DFT on porous graphene).

Here the grid is the zig-zag grid of :mod:`~aiida_physgen.ml.graphene` (``(3·ny, 2·nx)``, +1 atom,
−1 vacancy). The default focus ``(3, 2)`` is one orthogonal cell (4 carbon sites): every lattice
translation that shifts the grid arrays (``np.roll`` by 3 rows or 2 columns) then permutes whole
tiles, so the model is exactly translation invariant. A tile's energy is

    E_tile = μ · (atoms in its focus) + ν + σ · net(focus ⊕ context)

with ``μ`` (eV per atom) and ``ν`` (eV per tile) a least-squares fit of the training energies on
the atom count (``E ≈ μ N + ν T`` for ``T`` tiles), and ``σ`` the residual spread per tile: the
baseline is extensive too, and the network (its last layer starts at zero) learns the residual.
``μ``, ``ν`` and ``σ`` are buffers of the module (float64) and are also in the model's config.

Implementation: "one MLP per extended tile" is a strided convolution whose kernel is the extended
tile (``(f0 + 2c0) × (f1 + 2c1)``, stride ``focus``) on the circularly padded grid, followed by
linear layers on every tile's features; the padding wraps as often as needed, so even a sheet smaller than one extended
tile is evaluated with its periodic images, as the reference method sees it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .batch import StructureBatch
from .ensemble import Stream, attributes, eval_mode, member_seed, torch_seeded
from .family import GeneratorFamily
from .graphene import Lattice, batch_to_sheets, encode_zigzag
from .loop import MemberModulesTrainer, check_loop_settings, held_out_count
from .settings import is_finite_number, is_positive_int

__all__ = [
    "EdnnLoopSettings",
    "EdnnSettings",
    "EDNN",
    "EdnnTrainer",
    "EdnnFamily",
    "ACTIVATIONS",
    "held_out_count",
    "read_sheets",
]

#: the lattice period of the zig-zag grid in (rows, columns): one orthogonal cell
CELL = (3, 2)
#: the activations a tile network may use
ACTIVATIONS = ("silu", "relu", "tanh", "softplus")
#: tiles evaluated at once by :meth:`EdnnFamily.predict`: small chunks stay in the CPU caches (measured
#: 0.07 ms per 1× sheet in chunks of 2,048–4,096 tiles, 0.12 ms in chunks of 32,768 or more)
PREDICT_TILES = 4096


@dataclass
class EdnnLoopSettings:
    """The supervised loop: Adam on the mean squared error of the summed energy (standardised).

    ``steps`` are optimiser steps of ``batch_size`` sheets (an epoch is ``training sheets // batch_size``
    steps); the learning rate decays from ``lr`` to ``lr · lr_final`` along a cosine over the steps.
    ``validation_fraction`` of the sheets (at least 2) are held out, drawn from the member's data
    stream, and their error is logged every ``log_every`` steps.
    """

    steps: int = 15000
    batch_size: int = 32
    lr: float = 1e-2
    lr_final: float = 0.02
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    log_every: int = 250

    def __post_init__(self) -> None:
        check_loop_settings(self, "sheets")
        if not is_finite_number(self.lr_final) or not 0 < self.lr_final <= 1:
            raise ValueError(f"lr_final: got {self.lr_final!r}, expected the final fraction of lr, in (0, 1]")
        if not is_finite_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay: got {self.weight_decay!r}, expected a finite non-negative number")


@dataclass
class EdnnSettings:
    """Every setting of an EDNN training run (the property to learn is part of the target).

    ``focus`` and ``context`` are (rows, columns) on the zig-zag grid. The focus must be a multiple of
    one orthogonal cell, (3, 2), so the model is exactly translation invariant. ``hidden`` are the
    widths of the tile network's hidden layers.

    Why a context of 2 sites: the Tersoff energy is a sum of site energies, and a site's energy
    depends on its nearest neighbours only (the bond order of i–j counts the other neighbours k of
    i; the 2.1 Å cut-off excludes second neighbours at 2.46 Å), all within 1 row and 1 column on the
    grid. On the ideal lattice (single points, the default labels) the energy is even a function of
    the coordination histogram alone, so a context of 1 is exact there; relaxed sheets reach
    further. Measured on 4,096 random sheets with relaxed Tersoff labels (5,000 steps, lr 1e-2,
    one seed), held-out median absolute error in meV/Å²: context 1 → 0.19, 2 → 0.20, 3 → 0.29,
    4 → 0.47, 6 → 0.94 (a wider tile has more inputs to fit from the same sheets); at 20,000
    steps, context 1 → 0.14 and 2 → 0.12. Defaults (64, 64), lr 1e-2 and 15,000 steps (130 epochs):
    0.12 meV/Å² in 86 s on one core; (128, 128) at 10,000 steps reached 0.19 in 150 s, three
    hidden layers of 64 at 15,000 steps 0.13–0.20 in ~100 s.
    """

    focus: tuple[int, int] = (3, 2)
    context: tuple[int, int] = (2, 2)
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "silu"
    loop: EdnnLoopSettings = field(default_factory=EdnnLoopSettings)

    def __post_init__(self) -> None:
        focus = self.focus
        if (
            not isinstance(focus, (list, tuple))
            or len(focus) != 2
            or not all(is_positive_int(f) for f in focus)
            or focus[0] % CELL[0]
            or focus[1] % CELL[1]
        ):
            raise ValueError(
                f"focus: got {focus!r}, expected (rows, columns) on the zig-zag grid, multiples of {CELL} "
                "(one orthogonal cell, so lattice translations permute whole tiles)"
            )
        self.focus = (int(focus[0]), int(focus[1]))
        context = self.context
        if (
            not isinstance(context, (list, tuple))
            or len(context) != 2
            or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0 for c in context)
        ):
            raise ValueError(f"context: got {context!r}, expected (rows, columns) of non-negative border widths")
        self.context = (int(context[0]), int(context[1]))
        hidden = self.hidden
        if not isinstance(hidden, (list, tuple)) or not hidden or not all(is_positive_int(h) for h in hidden):
            raise ValueError(f"hidden: got {hidden!r}, expected a non-empty list of positive layer widths")
        self.hidden = tuple(int(h) for h in hidden)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: got {self.activation!r}, expected one of {list(ACTIVATIONS)}")


# ---------------------------------------------------------------------- the network
def _activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}[name]()


class EDNN(nn.Module):
    """One EDNN: a float grid ``(B, R, C)`` (±1 zig-zag encoding) → total energies ``(B,)`` in eV.

    ``R`` and ``C`` must be multiples of ``focus``. Weights are initialised from ``seed`` (the member's
    model stream); the baseline (``per_atom`` μ, ``per_tile`` ν, ``scale`` σ) is set by the trainer.
    """

    def __init__(
        self,
        focus: Sequence[int] = (3, 2),
        context: Sequence[int] = (2, 2),
        hidden: Sequence[int] = (64, 64),
        activation: str = "silu",
        seed: int = 0,
        per_atom: float = 0.0,
        per_tile: float = 0.0,
        scale: float = 1.0,
    ):
        super().__init__()
        self.focus = (int(focus[0]), int(focus[1]))
        self.context = (int(context[0]), int(context[1]))
        self.hidden = [int(h) for h in hidden]
        self.activation = str(activation)
        kernel = (self.focus[0] + 2 * self.context[0], self.focus[1] + 2 * self.context[1])
        with torch_seeded(member_seed(seed, Stream.GENERATOR)):  # the member's own stream
            self.first = nn.Conv2d(1, self.hidden[0], kernel, stride=self.focus)
            self.layers = nn.ModuleList(
                nn.Linear(n_in, n_out) for n_in, n_out in zip(self.hidden, [*self.hidden[1:], 1])
            )
        nn.init.zeros_(self.layers[-1].weight)  # the untrained model predicts the baseline
        nn.init.zeros_(self.layers[-1].bias)
        self.act = _activation(self.activation)
        self.register_buffer("per_atom", torch.tensor(float(per_atom), dtype=torch.float64))
        self.register_buffer("per_tile", torch.tensor(float(per_tile), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    def architecture(self) -> dict[str, Any]:
        values = attributes(self, ("focus", "context", "hidden", "activation"))
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def check_grid(self, grid: torch.Tensor) -> None:
        if grid.dim() != 3:
            raise ValueError(f"grid: expected sheets (B, rows, columns), got shape {tuple(grid.shape)}")
        rows, cols = grid.shape[-2:]
        if rows % self.focus[0] or cols % self.focus[1] or rows == 0 or cols == 0:
            raise ValueError(
                f"grid: {rows} × {cols} is not a whole number of {self.focus[0]} × {self.focus[1]} focus tiles"
            )

    def padded(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid circularly padded by the context, ``(B, 1, R + 2c0, C + 2c1)`` (wraps as often as needed)."""
        rows, cols = grid.shape[-2:]
        c0, c1 = self.context
        r = torch.arange(-c0, rows + c0, device=grid.device) % rows
        c = torch.arange(-c1, cols + c1, device=grid.device) % cols
        return grid[:, r][:, :, c].unsqueeze(1)

    def residual(self, grid: torch.Tensor) -> torch.Tensor:
        """The network's raw output per tile, ``(B, R/f0, C/f1)`` (dimensionless, in the network's dtype)."""
        self.check_grid(grid)
        # the first layer sees each extended tile (a strided convolution); the others act on each tile's
        # features alone, as linear layers on channels-last features (faster on a CPU than 1 × 1 convolutions)
        h = self.first(self.padded(grid.to(self.first.weight.dtype))).permute(0, 2, 3, 1)
        for layer in self.layers:
            h = layer(self.act(h))
        return h.squeeze(-1)

    def atoms_per_tile(self, grid: torch.Tensor) -> torch.Tensor:
        b, rows, cols = grid.shape
        f0, f1 = self.focus
        return (grid > 0).reshape(b, rows // f0, f0, cols // f1, f1).sum((2, 4))

    def tile_energies(self, grid: torch.Tensor) -> torch.Tensor:
        """The energy of every focus tile, ``(B, R/f0, C/f1)`` in eV (float64 unless the module is float32
        throughout): a local-energy map whose sum is :meth:`forward`."""
        net = self.residual(grid)
        atoms = self.atoms_per_tile(grid).to(self.per_atom.dtype)
        return self.per_atom * atoms + self.per_tile + self.scale * net.to(self.per_atom.dtype)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.tile_energies(grid).sum((1, 2))


# ---------------------------------------------------------------------- data
def read_sheets(structures: StructureBatch, where: str = "structures") -> tuple[np.ndarray, Lattice]:
    """Zig-zag occupancies ``(M, R, C)`` and the lattice of a batch of periodic sheets on one lattice;
    ``ValueError`` naming ``where[i]`` for a sheet that is not periodic in x and y or not on the lattice."""
    if not isinstance(structures, StructureBatch):
        raise ValueError(f"{where}: expected a StructureBatch of sheets, got {type(structures).__name__}")
    if len(structures) == 0:
        raise ValueError(f"{where}: expected at least one sheet")
    _check_periodic(structures, where, "needs periodic sheets")
    return batch_to_sheets(structures, where=where)


def _check_periodic(structures: StructureBatch, where: str, why: str) -> None:
    """``ValueError`` naming ``where[i]`` for the first sheet that is not periodic in x and y (EDNN ``why``)."""
    periodic = structures.pbc[:, :2].all(axis=1)
    if not periodic.all():
        i = int(np.argmin(periodic))
        raise ValueError(
            f"{where}[{i}]: the sheet is not periodic in x and y (pbc {structures.pbc[i].tolist()}); EDNN {why}"
        )


def _training_energies(training: StructureBatch, key: str) -> np.ndarray:
    if key not in training.info:
        raise ValueError(
            f"target.property: the training structures have no info[{key!r}]; expected total energies (eV) there "
            f"(info holds {sorted(training.info)})"
        )
    energies = np.asarray(training.info[key])
    if energies.shape != (len(training),) or not np.issubdtype(energies.dtype, np.number):
        raise ValueError(f"training: info[{key!r}] has shape {energies.shape}, expected one number per sheet")
    energies = energies.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(energies))
    if bad.size:
        raise ValueError(
            f"training[{int(bad[0])}]: info[{key!r}] is {energies[bad[0]]} ({bad.size} sheet(s) without a finite "
            "energy); label them or leave them out"
        )
    return energies


def _check_fits(lattice: Lattice, focus: Sequence[int], where: str) -> None:
    rows, cols = lattice.zigzag_shape
    if rows % focus[0] or cols % focus[1]:
        raise ValueError(
            f"{where}: the zig-zag grid of a {lattice.nx} × {lattice.ny}-cell sheet is {rows} × {cols}, not a whole "
            f"number of {focus[0]} × {focus[1]} focus tiles"
        )


# ---------------------------------------------------------------------- training
class EdnnTrainer(MemberModulesTrainer):
    """Supervised training of ``K`` independent EDNNs (own module, optimiser, split and data order each).

    Member ``k`` holds out ``validation_fraction`` of the sheets drawn from its data stream
    (``member_seed(seed, Stream.DATA)``), fits its baseline on the rest, and draws its batches from
    its loop stream (``rngs[k]``). History: ``loss`` (mean standardised squared error since the last
    log), ``heldout_mae`` and ``heldout_median_ae`` (meV/Å², energy error over the sheet's area).
    """

    def __init__(
        self,
        grids: np.ndarray,
        energies: np.ndarray,
        lattice: Lattice,
        members: Sequence[EdnnSettings],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ):
        super().__init__(members, seeds, device)
        first = self.settings
        self.lattice = lattice
        self.area = float(lattice.area)
        self.batch_size = first.loop.batch_size
        self.lrs = [m.loop.lr for m in members]
        self.grids = torch.as_tensor(np.asarray(grids, dtype=np.float32), device=self.device)
        self.energies = torch.as_tensor(np.asarray(energies, dtype=np.float64), device=self.device)
        count = len(energies)
        rows, cols = self.grids.shape[-2:]
        self.tiles = (rows // first.focus[0]) * (cols // first.focus[1])
        atoms = (self.grids > 0).reshape(count, -1).sum(1).cpu().numpy().astype(np.float64)
        n_val = held_out_count(count, first.loop.validation_fraction)
        self.train_index: list[torch.Tensor] = []
        self.val_index: list[torch.Tensor] = []
        self.stats: list[dict[str, float]] = []
        for member, seed in zip(members, self.seeds):
            order = np.random.default_rng(member_seed(seed, Stream.DATA)).permutation(count)
            val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
            # the extensive baseline E ≈ μ N + ν T (T tiles per sheet, the same for every training sheet)
            design = np.stack([atoms[train], np.full(train.size, float(self.tiles))], axis=1)
            (mu, nu), *_ = np.linalg.lstsq(design, energies[train], rcond=None)
            residual = energies[train] - design @ np.array([mu, nu])
            spread = float(residual.std())
            spread = spread if spread > 1e-9 * max(1.0, float(np.abs(energies).mean())) else 1.0
            base_val = energies[val] - (mu * atoms[val] + nu * self.tiles)
            self.stats.append(
                {
                    "per_atom": float(mu),
                    "per_tile": float(nu),
                    "residual_std": spread,
                    "scale": spread / math.sqrt(self.tiles),
                    "baseline_mae": float(np.mean(np.abs(base_val)) / self.area * 1e3),
                    "baseline_median_ae": float(np.median(np.abs(base_val)) / self.area * 1e3),
                }
            )
            module = EDNN(
                member.focus,
                member.context,
                member.hidden,
                member.activation,
                seed,
                mu,
                nu,
                spread / math.sqrt(self.tiles),
            ).to(self.device)
            self.modules.append(module)
            self.optimizers.append(
                torch.optim.Adam(module.parameters(), lr=member.loop.lr, weight_decay=member.loop.weight_decay)
            )
            self.train_index.append(torch.as_tensor(train, device=self.device))
            self.val_index.append(torch.as_tensor(val, device=self.device))
        self.held_out = [self.evaluate(k) for k in range(self.n_models)]

    # ------------------------------------------------------------------ one step
    def _next_batch(self, k: int) -> torch.Tensor:
        batch = self.next_batch(k, len(self.train_index[k]), self.batch_size)
        return self.train_index[k][batch.to(self.device)]

    def learning_rate(self, k: int) -> float:
        """Member ``k``'s learning rate at the current step (cosine from ``lr`` to ``lr · lr_final``)."""
        final = self.settings.loop.lr_final
        progress = min(self.step / max(self.steps - 1, 1), 1.0)
        return self.lrs[k] * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))

    def train_step(self) -> dict[str, torch.Tensor]:
        losses = []
        for k, (module, optimizer) in enumerate(zip(self.modules, self.optimizers)):
            index = self._next_batch(k)
            prediction = module(self.grids[index])
            loss = (((prediction - self.energies[index]) / self.stats[k]["residual_std"]) ** 2).mean()
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate(k)
            losses.append(self.update(k, loss, "mse"))
        logging = self.logs_this_step()
        out_loss = self.running_means(losses, logging)
        if logging:
            self.held_out = [self.evaluate(k) for k in range(self.n_models)]
        return {
            "loss": torch.tensor(out_loss, dtype=torch.float64),
            "heldout_mae": torch.tensor([h["mae"] for h in self.held_out], dtype=torch.float64),
            "heldout_median_ae": torch.tensor([h["median_ae"] for h in self.held_out], dtype=torch.float64),
        }

    @torch.no_grad()
    def evaluate(self, k: int, chunk: int = 1024) -> dict[str, float]:
        """Member ``k``'s error on its held-out sheets, meV/Å² (energy error over the sheet's area)."""
        index = self.val_index[k]
        with eval_mode(self.modules[k]) as module:
            errors = (
                torch.cat(
                    [
                        module(self.grids[index[i : i + chunk]]) - self.energies[index[i : i + chunk]]
                        for i in range(0, len(index), chunk)
                    ]
                )
                .abs()
                .cpu()
                .numpy()
                / self.area
                * 1e3
            )
        return {"mae": float(errors.mean()), "median_ae": float(np.median(errors)), "count": int(errors.size)}

    def extra_state(self) -> dict[str, Any]:
        return {"held_out": [dict(h) for h in self.held_out]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.held_out = [dict(h) for h in state["held_out"]]


# ---------------------------------------------------------------------- the family
_INDEX = re.compile(r"^structures\[(\d+)\]")


class EdnnFamily(GeneratorFamily):
    """EDNN as a surrogate family: it learns the total energy of periodic porous-graphene sheets.

    Target: ``property``, the ``info`` key of the training sheets that holds their total energies in
    eV (default ``'energy'``). Training: a :class:`StructureBatch` of sheets on one lattice
    (:func:`~aiida_physgen.ml.graphene.sheets_to_batch`). :meth:`predict` gives total energies (eV)
    of sheets of any size whose zig-zag grid is a whole number of focus tiles.
    """

    name = "ednn"
    protocol_file = Path(__file__).parent / "protocols" / "ednn.yaml"
    role = "surrogate"
    settings_class = EdnnSettings
    vectorised = ("loop.lr", "loop.weight_decay")
    architecture_settings = ("focus", "context", "hidden", "activation")

    def check_target(self, target):
        if target is None:
            target = {}
        if not isinstance(target, Mapping):
            raise ValueError(f"target: expected a dictionary such as {{'property': 'energy'}}, got {target!r}")
        for key in sorted(target):
            if key != "property":
                raise ValueError(
                    f"target.{key}: unknown key; an EDNN target has only 'property' (the info key of the total "
                    "energies, default 'energy')"
                )
        prop = target.get("property", "energy")
        if not isinstance(prop, str) or not prop.strip():
            raise ValueError(f"target.property: got {prop!r}, expected the name of an info key such as 'energy'")
        return {"property": prop.strip()}

    def validate(self, training, target, settings):
        if training is None:
            raise ValueError(
                "training: required; EDNN learns from labelled sheets (a StructureBatch with energies in info)"
            )
        _, lattice = read_sheets(training, where="training")
        _training_energies(training, target["property"])
        _check_fits(lattice, settings.focus, "settings.focus")
        count = len(training)
        n_val = held_out_count(count, settings.loop.validation_fraction)
        if n_val < 2 or count - n_val < 2:
            raise ValueError(
                f"training: {count} sheets with settings.loop.validation_fraction {settings.loop.validation_fraction} "
                f"hold out {n_val} and train on {count - n_val}; expected at least 2 of each (more sheets, or "
                "another fraction)"
            )

    def build_trainer(self, training, target, members, seeds, device):
        sheets, lattice = read_sheets(training, where="training")
        energies = _training_energies(training, target["property"])
        return EdnnTrainer(encode_zigzag(sheets), energies, lattice, members, seeds, device)

    def member_config(self, trainer, k):
        stats = trainer.stats[k]
        held_out = trainer.evaluate(k)
        return {
            "lattice": trainer.lattice.to_dict(),
            "baseline": {key: stats[key] for key in ("per_atom", "per_tile", "scale", "residual_std")},
            "held_out": {
                "count": held_out["count"],
                "mae": held_out["mae"],
                "median_ae": held_out["median_ae"],
                "baseline_mae": stats["baseline_mae"],
                "baseline_median_ae": stats["baseline_median_ae"],
                "units": "meV/Å²",
            },
            "training_count": int(len(trainer.train_index[k])),
        }

    def module_from_config(self, config):
        baseline = config.get("baseline", {})
        return EDNN(
            **config["architecture"],
            seed=int(config.get("seed", 0)),
            per_atom=baseline.get("per_atom", 0.0),
            per_tile=baseline.get("per_tile", 0.0),
            scale=baseline.get("scale", 1.0),
        )

    @torch.no_grad()
    def predict(self, module, config, structures):
        """Total energies (eV) of every sheet, in batch order; sheets of several sizes are grouped by cell."""
        if not isinstance(structures, StructureBatch):
            raise ValueError(f"structures: expected a StructureBatch of sheets, got {type(structures).__name__}")
        count = len(structures)
        if count == 0:
            return np.zeros(0)
        _check_periodic(structures, "structures", "predicts periodic sheets only")
        _, group_of = np.unique(np.round(structures.cells.reshape(count, 9), 5), axis=0, return_inverse=True)
        group_of = group_of.reshape(-1)
        device = next(module.parameters()).device
        out = np.empty(count)
        for g in range(int(group_of.max()) + 1):
            index = np.flatnonzero(group_of == g)
            subset = structures if index.size == count else structures.subset(index)
            try:
                sheets, lattice = read_sheets(subset, where="structures")
            except ValueError as error:  # name the sheet by its index in the whole batch
                message = _INDEX.sub(lambda m, index=index: f"structures[{int(index[int(m.group(1))])}]", str(error))
                raise ValueError(message) from None
            _check_fits(lattice, module.focus, f"structures[{int(index[0])}]")
            rows, cols = sheets.shape[-2:]
            tiles = (rows // module.focus[0]) * (cols // module.focus[1])
            chunk = max(1, PREDICT_TILES // tiles)
            values = [  # encoded chunk by chunk: 10,000 sheets of 16× area need no 430 MB float grid
                module(torch.as_tensor(encode_zigzag(sheets[i : i + chunk]), device=device)).double().cpu().numpy()
                for i in range(0, len(sheets), chunk)
            ]
            out[index] = np.concatenate(values)
        return out
