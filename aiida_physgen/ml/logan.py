"""LoGAN: a local generative adversarial network for atomic structures.

Kovács, Heid, De Landsheere, Madsen, Mach. Learn.: Sci. Technol. 5 035079 (2024).

* The generator maps a latent vector (20 Gaussian numbers) through an MLP (512-256-128-64-32,
  leaky ReLU) to 3·N sigmoid outputs: fractional coordinates in a fixed, user-given cell, atoms
  in the order of the requested composition. Composition and cell are inputs, not learned.
* The critic scores every atomic environment separately: local descriptor + one-hot element of
  the centre atom → MLP 256-128-64-32 → 1, shared by all atoms. Invariances come from the
  descriptor.
* Real samples are drawn with composition-aware resampling: every atomic environment of every
  (rattled) training structure, pooled by centre element; a real "structure" for the critic is as
  many environments of each element as the target composition has. Training structures may have
  any stoichiometry, so the model can generate stoichiometries it never saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase.data
import ase.formula
import numpy as np
import torch
from torch import nn

from . import settings as settings_module
from .batch import StructureBatch, checked_cell_and_pbc
from .composition import composition_string, parse_composition
from .descriptors import DescriptorParameters, DescriptorSettings, LocalDescriptor, atomic_descriptors
from .ensemble import EnsembleMLP, Stream, attributes, member_seed
from .family import GeneratorFamily
from .loop import stacked_randn
from .wgan import VECTORISED, WGANProblem, WGANSettings, WGANTrainer, member_loop

__all__ = [
    "LoganSettings",
    "LoganFamily",
    "LoganGenerator",
    "LoganCritic",
    "LoganProblem",
    "validate_training",
    "check_training_structures",
    "MIN_TRAINING_DISTANCE",
    "environment_pools",
]


@dataclass
class LoganSettings:
    """Every setting of a LoGAN training run; defaults follow the paper's C5H12O setting.

    ``descriptor`` holds the local-descriptor parameters, ``loop`` the WGAN-GP loop's (RMSprop,
    learning rate 1e-4, 5 critic updates per generator update, as in the paper); the rest is LoGAN's own.
    """

    descriptor: DescriptorParameters = field(default_factory=DescriptorParameters)
    loop: WGANSettings = field(default_factory=lambda: WGANSettings(steps=2000))
    # architecture
    latent_dim: int = 20
    hidden: tuple[int, ...] = (512, 256, 128, 64, 32)
    critic_hidden: tuple[int, ...] = (256, 128, 64, 32)
    negative_slope: float = 0.2
    # data augmentation: rattled copies of every training structure
    rattle_copies: int = 5
    rattle_std: float = 0.05

    def __post_init__(self) -> None:
        for name in ("hidden", "critic_hidden"):
            value = getattr(self, name)
            if (
                not isinstance(value, (list, tuple))
                or not value
                or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in value)
            ):
                raise ValueError(f"{name}: got {value!r}, expected a non-empty list of positive layer sizes")
            setattr(self, name, tuple(int(h) for h in value))
        if isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, int) or self.latent_dim < 1:
            raise ValueError(f"latent_dim: got {self.latent_dim!r}, expected a positive integer")
        for name, expected in (
            ("rattle_std", "a positive finite displacement in Å"),
            ("negative_slope", "a positive finite leaky-ReLU slope"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: got {value!r}, expected {expected}")
        if isinstance(self.rattle_copies, bool) or not isinstance(self.rattle_copies, int) or self.rattle_copies < 0:
            raise ValueError(f"rattle_copies: got {self.rattle_copies!r}, expected a non-negative integer")
        self.loop.require_one_learning_rate()


def _heights(cell: np.ndarray) -> np.ndarray:
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


#: training structures with two atoms closer than this (Å) are refused: no real structure has them
#: (the shortest bond, H2, is 0.74 Å), and the selection and ``physgen.gpaw`` reject such candidates too
MIN_TRAINING_DISTANCE = 0.5


def check_training_structures(training: StructureBatch, min_distance: float = MIN_TRAINING_DISTANCE) -> None:
    """Refuse training structures with non-finite positions or cells, or with two atoms (periodic
    images included) closer than ``min_distance`` Å; ``ValueError`` naming the structure (and atoms)."""
    # the batch checks this when it is built, but positions are a public array that may change after
    bad_atoms = ~np.isfinite(training.positions).all(axis=1)
    if bad_atoms.any():
        index = int(np.searchsorted(training.offsets, int(np.argmax(bad_atoms)), side="right") - 1)
        raise ValueError(f"training: structure {index} has non-finite positions; expected finite coordinates in Å")
    bad_cells = ~np.isfinite(training.cells).reshape(len(training), 9).all(axis=1)
    if bad_cells.any():
        raise ValueError(f"training: structure {int(np.argmax(bad_cells))} has a non-finite cell")
    close = np.flatnonzero(training.min_distances() < min_distance)
    if close.size:
        from ase.neighborlist import neighbor_list

        index = int(close[0])
        atoms = training[index]
        i, j, d = neighbor_list("ijd", atoms, min_distance)
        if d.size:
            k = int(np.argmin(d))
            pair = (
                f"atoms {int(i[k])} ({atoms.get_chemical_symbols()[i[k]]}) and {int(j[k])} "
                f"({atoms.get_chemical_symbols()[j[k]]}) are {d[k]:.3f} Å apart"
            )
        else:  # pragma: no cover - min_distances and the neighbour list agree
            pair = f"two atoms are {training.min_distances()[index]:.3f} Å apart"
        more = f" ({close.size} structures have such atoms, also {close[1:6].tolist()})" if close.size > 1 else ""
        raise ValueError(
            f"training: structure {index}: {pair}, closer than {min_distance} Å{more}; "
            "expected physical structures (check the units and the file)"
        )


def validate_training(
    training: StructureBatch, symbols: Sequence[str], cell: np.ndarray, pbc: Sequence[bool], r_cut: float
) -> None:
    """Check the inputs of a LoGAN training before any heavy work; raise ``ValueError`` naming the field."""
    if training is None or len(training) == 0:
        raise ValueError("training: the training set is empty; expected at least one structure")
    check_training_structures(training)
    wanted = set(symbols)
    present = set(training.elements())
    extra = sorted(present - wanted)
    if extra:
        formula = "".join(f"{s}{symbols.count(s) if symbols.count(s) > 1 else ''}" for s in dict.fromkeys(symbols))
        raise ValueError(
            f"training: element(s) {extra} occur in the training structures but not in the requested "
            f"composition {formula!r}; every training element must be part of the composition"
        )
    missing = sorted(wanted - present)
    if missing:
        raise ValueError(f"composition: element(s) {missing} have no atomic environments in the training structures")
    cell = np.asarray(cell, dtype=float)
    if cell.shape != (3, 3):
        raise ValueError(f"cell: expected a 3x3 matrix of lattice vectors, got shape {cell.shape}")
    if abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError("cell: the cell has zero volume; expected three independent lattice vectors")
    heights = _heights(cell)
    if not any(pbc):
        extents = []
        for atoms in training:
            pos = atoms.positions
            extents.append(float(np.max(np.linalg.norm(pos[:, None] - pos[None], axis=-1))))
        typical = float(np.mean(extents))
        need = max(typical, r_cut)
        if heights.min() < need:
            what = (
                f"the typical training molecule ({typical:.2f} Å across)" if typical >= r_cut else f"r_cut ({r_cut} Å)"
            )
            raise ValueError(
                f"cell: the non-periodic box is {heights.min():.2f} Å across at its narrowest, smaller than "
                f"{what}; expected a box of at least {need:.2f} Å in every direction"
            )


class LoganGenerator(nn.Module):
    """``K`` LoGAN generators: latent ``(K, B, latent_dim)`` → fractional coordinates ``(K, B, N, 3)``."""

    def __init__(
        self,
        symbols: Sequence[str],
        cell,
        pbc: Sequence[bool],
        seeds: Sequence[int] = (0,),
        latent_dim: int = 20,
        hidden: Sequence[int] = (512, 256, 128, 64, 32),
        negative_slope: float = 0.2,
    ):
        super().__init__()
        self.symbols = list(symbols)
        self.numbers = np.array([ase.data.atomic_numbers[s] for s in self.symbols])
        self.register_buffer("cell", torch.as_tensor(np.asarray(cell, dtype=np.float64), dtype=torch.float32))
        self.pbc = [bool(p) for p in pbc]
        self.seeds = [int(s) for s in seeds]
        self.latent_dim = int(latent_dim)
        self.hidden = [int(h) for h in hidden]
        self.negative_slope = float(negative_slope)
        sizes = [self.latent_dim, *self.hidden, 3 * len(self.symbols)]
        self.mlp = EnsembleMLP(sizes, [member_seed(s, Stream.GENERATOR) for s in self.seeds], negative_slope)

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k, b, _ = z.shape
        out = self.mlp(z)
        if k == 1:
            return torch.sigmoid(out).reshape(k, b, self.n_atoms, 3)
        # the sigmoid runs member by member: PyTorch's vectorised and scalar code paths round
        # transcendental functions differently, and which elements take which path depends on the
        # tensor's size, so a batched sigmoid would make a member's numbers depend on the ensemble
        return torch.stack([torch.sigmoid(h) for h in out]).reshape(k, b, self.n_atoms, 3)

    def positions(self, z: torch.Tensor) -> torch.Tensor:
        """Cartesian positions ``(K, B, N, 3)`` in Å."""
        frac = self(z)
        if frac.shape[0] == 1:
            return frac @ self.cell
        return torch.stack([member @ self.cell for member in frac])

    def member_view(self, k: int) -> LoganGenerator:
        """Member ``k`` as a one-member generator holding member ``k``'s own parameter objects (a view
        for training it alone; :meth:`member` makes an independent copy)."""
        view = LoganGenerator.__new__(LoganGenerator)
        nn.Module.__init__(view)
        for name in ("symbols", "numbers", "pbc", "latent_dim", "hidden", "negative_slope"):
            setattr(view, name, getattr(self, name))
        view.seeds = [self.seeds[k]]
        view.register_buffer("cell", self.cell)
        view.mlp = self.mlp.select([k])
        view.train(self.training)
        return view

    def architecture(self) -> dict[str, Any]:
        return attributes(self, ("latent_dim", "hidden", "negative_slope"))

    def member(self, k: int) -> LoganGenerator:
        """Member ``k`` as a stand-alone single-model generator (on the CPU)."""
        single = LoganGenerator(self.symbols, self.cell.cpu().numpy(), self.pbc, [self.seeds[k]], **self.architecture())
        self.mlp.copy_member_into(k, single.mlp)
        return single.eval()

    @torch.no_grad()
    def sample(self, count: int, seed: int, chunk_size: int = 8192) -> StructureBatch:
        """``count`` structures from every member, reproducible from ``seed``.

        The batch's ``info['model_index']`` says which member made each structure.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
            raise ValueError(f"count: got {count!r}, expected a positive number of structures")
        rng = torch.Generator().manual_seed(member_seed(seed, Stream.SAMPLE))
        device = self.cell.device
        chunks = []
        done = 0
        while done < count:
            b = min(chunk_size, count - done)
            z = torch.randn(self.n_models, b, self.latent_dim, generator=rng).to(device)
            chunks.append(self.positions(z).double().cpu())
            done += b
        positions = torch.cat(chunks, dim=1).numpy()  # (K, count, N, 3)
        model_index = np.repeat(np.arange(self.n_models), count)
        return StructureBatch.from_uniform(
            positions.reshape(-1, self.n_atoms, 3),
            self.numbers,
            self.cell.double().cpu().numpy(),
            self.pbc,
            info={"model_index": model_index},
        )


class LoganCritic(nn.Module):
    """``K`` per-environment critics: (descriptor ⊕ one-hot element) → MLP → score per atom."""

    def __init__(
        self,
        n_features: int,
        n_species: int,
        seeds: Sequence[int],
        hidden=(256, 128, 64, 32),
        negative_slope: float = 0.2,
    ):
        super().__init__()
        self.mlp = EnsembleMLP(
            [n_features + n_species, *hidden, 1], [member_seed(s, Stream.CRITIC) for s in seeds], negative_slope
        )

    def forward(self, environments: torch.Tensor) -> torch.Tensor:
        """``(K, B, N, F + S)`` → scores ``(K, B, N)``."""
        return self.mlp(environments).squeeze(-1)

    def member_view(self, k: int) -> LoganCritic:
        """Member ``k`` as a one-member critic holding member ``k``'s own parameter objects."""
        view = LoganCritic.__new__(LoganCritic)
        nn.Module.__init__(view)
        view.mlp = self.mlp.select([k])
        view.train(self.training)
        return view


def environment_pools(
    training: StructureBatch,
    settings: DescriptorSettings,
    copies: int,
    rattle_std: float,
    seed: int,
) -> dict[int, np.ndarray]:
    """Atomic descriptors of every atom of every training structure and of ``copies`` rattled copies
    of each (Gaussian displacements of ``rattle_std`` Å; every copy differs, all drawn from ``seed``),
    pooled by centre element: atomic number → ``(n_environments, F)``."""
    rng = np.random.default_rng(member_seed(seed, Stream.DATA))
    batches = [training]
    for _ in range(copies):
        rattled = StructureBatch(
            numbers=training.numbers,
            positions=training.positions + rng.normal(0.0, rattle_std, training.positions.shape),
            n_atoms=training.n_atoms,
            cells=training.cells,
            pbc=training.pbc,
        )
        batches.append(rattled)
    everything = StructureBatch.concatenate(batches)
    per_structure = atomic_descriptors(everything, settings, dtype=torch.float32)
    features = np.concatenate(per_structure)
    return {int(z): features[everything.numbers == z] for z in settings.species}


class LoganProblem(WGANProblem):
    """The LoGAN training problem for :class:`~aiida_physgen.ml.wgan.WGANTrainer`.

    ``pools[k]`` are member ``k``'s environment pools (its own rattled copies), and each member
    standardises descriptors with the mean and spread of its own pools: nothing is shared between
    members, so a member trains the same alone or inside an ensemble.
    """

    def __init__(
        self,
        generator: LoganGenerator,
        critic: LoganCritic,
        descriptor: LocalDescriptor,
        pools: Sequence[dict[int, np.ndarray]],
        device: torch.device | str = "cpu",
    ):
        super().__init__(generator, critic, device)
        self.descriptor = descriptor
        if len(pools) != self.n_models:
            raise ValueError(f"pools: {len(pools)} pools for an ensemble of {self.n_models} models")
        species = list(descriptor.settings.species)
        self.species_index = torch.as_tensor([species.index(z) for z in generator.numbers], dtype=torch.long)
        means, stds, self.pools = [], [], []
        standardised: dict[int, tuple] = {}  # members sharing one pool (no rattled copies) share its tensors
        for member_pools in pools:
            if id(member_pools) not in standardised:
                everything = np.concatenate([member_pools[z] for z in species])
                mean = torch.as_tensor(everything.mean(axis=0), dtype=torch.float32)
                std = torch.as_tensor(everything.std(axis=0) + 1e-6, dtype=torch.float32)
                standardised[id(member_pools)] = (
                    mean,
                    std,
                    [
                        ((torch.as_tensor(member_pools[z], dtype=torch.float32) - mean) / std).to(self.device)
                        for z in species
                    ],
                )
            mean, std, member_standardised = standardised[id(member_pools)]
            means.append(mean)
            stds.append(std)
            self.pools.append(member_standardised)
        self._member_mean = [m.to(self.device)[None, None, None, :] for m in means]  # (1, 1, 1, F) each
        self._member_std = [s.to(self.device)[None, None, None, :] for s in stds]
        self.mean = torch.stack(means).to(self.device)[:, None, None, :]  # (K, 1, 1, F)
        self.std = torch.stack(stds).to(self.device)[:, None, None, :]
        self.n_features = means[0].shape[0]
        self.one_hot = nn.functional.one_hot(self.species_index, len(species)).float().to(self.device)  # (N, S)
        self.species_index = self.species_index.to(self.device)
        # the atoms of the composition, grouped by element: real samples are drawn block by block
        self.blocks = [
            (i, torch.nonzero(self.species_index == i).flatten())
            for i in range(len(species))
            if (self.species_index == i).any()
        ]

    def _with_element(self, features: torch.Tensor) -> torch.Tensor:
        k, b, n, _ = features.shape
        return torch.cat([features, self.one_hot.expand(k, b, n, -1)], dim=-1)

    def real_batch(self, batch_size: int, rngs):
        k, n = self.n_models, self.generator.n_atoms
        out = torch.empty(k, batch_size, n, self.n_features, device=self.device)
        for species_i, atoms in self.blocks:
            for member, rng in enumerate(rngs):
                pool = self.pools[member][species_i]
                idx = torch.randint(len(pool), (batch_size, len(atoms)), generator=rng).to(self.device)
                out[member][:, atoms] = pool[idx]
        return self._with_element(out), None

    def fake_batch(self, batch_size: int, rngs, condition=None):
        k = self.n_models
        z = stacked_randn(rngs, batch_size, self.generator.latent_dim, device=self.device)
        positions = self.generator.positions(z)
        # one descriptor call per member, for the same reason as the generator's sigmoid: a member's
        # environments must not depend on how many other members share the pass (bit for bit)
        cell, pbc = self.generator.cell, self.generator.pbc
        if k == 1:
            features = self.descriptor(positions[0], self.species_index, cell, pbc).unsqueeze(0)
        else:
            features = torch.stack([self.descriptor(member, self.species_index, cell, pbc) for member in positions])
        features = (features - self.mean) / self.std
        return self._with_element(features)

    def critic_scores(self, samples: torch.Tensor, condition=None) -> torch.Tensor:
        return self.critic(samples)

    def critic_gradient(self, samples: torch.Tensor, condition=None):
        # the critic is a plain MLP: its exact input gradient without autograd's pass over the forward graph
        return self.critic.mlp.input_gradient(samples), samples.dim() - 1

    def member_problem(self, k: int) -> LoganProblem:
        """Member ``k`` alone: its generator and critic (views on its parameters), its pools and its
        standardisation; every member trains through this one-member path (see
        :meth:`~aiida_physgen.ml.wgan.WGANProblem.member_problem`)."""
        view = LoganProblem.__new__(LoganProblem)
        view.generator = self.generator.member_view(k)
        view.critic = self.critic.member_view(k)
        view.descriptor = self.descriptor
        view.n_models = 1
        view.device = self.device
        view.pools = [self.pools[k]]
        view._member_mean, view._member_std = [self._member_mean[k]], [self._member_std[k]]
        view.mean, view.std = self._member_mean[k], self._member_std[k]
        for name in ("n_features", "one_hot", "species_index", "blocks"):
            setattr(view, name, getattr(self, name))
        return view

    def member_parameters(self, module: nn.Module):
        return module.mlp.member_parameters()


def _symbols_cell_pbc(target: Mapping[str, Any]) -> tuple[list[str], np.ndarray, list[bool]]:
    return parse_composition(target["composition"]), np.asarray(target["cell"], dtype=float), list(target["pbc"])


class LoganFamily(GeneratorFamily):
    """LoGAN as a generator family.

    Target: ``composition`` (a formula such as ``'C5H12O'``, or a list of symbols), ``cell`` (3×3
    lattice vectors in Å; a box for a molecule) and ``pbc`` (three booleans, or one for all axes).
    """

    name = "logan"
    settings_class = LoganSettings
    vectorised = VECTORISED
    protocol_file = Path(__file__).parent / "protocols" / "logan.yaml"
    architecture_settings = ("latent_dim", "hidden", "negative_slope")

    def check_target(self, target):
        if not isinstance(target, Mapping):
            raise ValueError(f"target: expected a dictionary with composition, cell and pbc, got {target!r}")
        unknown = sorted(set(target) - {"composition", "cell", "pbc"})
        if unknown:
            raise ValueError(f"target: unknown key(s) {unknown}; expected composition, cell and pbc")
        for key in ("composition", "cell"):
            if key not in target:
                raise ValueError(f"target.{key}: required (LoGAN generates a given composition in a given cell)")
        try:
            symbols = parse_composition(target["composition"])
        except ValueError as error:
            raise ValueError(f"target.{error}") from None
        cell, pbc = checked_cell_and_pbc(target["cell"], target.get("pbc", [True] * 3), "target.")
        return {"composition": composition_string(symbols), "cell": cell.tolist(), "pbc": pbc.tolist()}

    def target_facts(self, target):
        symbols = parse_composition(target["composition"])
        return {
            **target,
            "formula": ase.formula.Formula.from_list(symbols).format("hill"),
            "n_atoms": len(symbols),
        }

    def atoms_per_structure(self, target):
        return len(parse_composition(target["composition"]))

    def validate(self, training, target, settings):
        symbols, cell, pbc = _symbols_cell_pbc(target)
        validate_training(training, symbols, cell, pbc, settings.descriptor.r_cut)

    def protocol_variant(self, target):
        return "crystal" if any(target["pbc"]) else "molecule"

    def descriptor(self, target, settings):
        return settings_module.to_dict(settings.descriptor)

    def build_trainer(self, training, target, members, seeds, device):
        s = members[0]
        symbols, cell, pbc = _symbols_cell_pbc(target)
        numbers = [ase.data.atomic_numbers[x] for x in symbols]
        descriptor_settings = s.descriptor.for_species(numbers)
        descriptor = LocalDescriptor(descriptor_settings).to(device)
        if s.rattle_copies:
            pools = [
                environment_pools(training, descriptor_settings, s.rattle_copies, s.rattle_std, seed) for seed in seeds
            ]
        else:  # no random copies: every member's pool is the same, computed once
            pools = [environment_pools(training, descriptor_settings, 0, s.rattle_std, 0)] * len(seeds)
        generator = LoganGenerator(symbols, cell, pbc, seeds, s.latent_dim, s.hidden, s.negative_slope).to(device)
        critic = LoganCritic(
            descriptor_settings.n_features,
            len(descriptor_settings.species),
            seeds,
            s.critic_hidden,
            s.negative_slope,
        ).to(device)
        problem = LoganProblem(generator, critic, descriptor, pools, device)
        return WGANTrainer(problem, member_loop(members), seeds)

    def module_from_config(self, config):
        symbols, cell, pbc = _symbols_cell_pbc(config["target"])
        return LoganGenerator(symbols, cell, pbc, seeds=[config["seed"]], **config["architecture"])

    def sample(self, module, config, count, seed, condition=None):
        return module.sample(count, seed)
