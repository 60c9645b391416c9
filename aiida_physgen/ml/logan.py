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

import itertools
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Sequence

import ase.data
import numpy as np
import torch
from torch import nn

from .batch import StructureBatch
from .descriptors import DescriptorSettings, LocalDescriptor, atomic_descriptors
from .ensemble import EnsembleMLP, member_seed
from .wgan import WGANProblem, WGANSettings, WGANTrainer

__all__ = [
    "LoganSettings",
    "LoganGenerator",
    "LoganCritic",
    "LoganProblem",
    "parse_composition",
    "composition_string",
    "validate_training",
    "train_logan",
    "generate",
    "PRESETS",
]

# seed streams: one per random purpose, so changing one never shifts another
_STREAM_GENERATOR, _STREAM_CRITIC, _STREAM_RATTLE, _STREAM_LOOP, _STREAM_SAMPLE = range(5)


@dataclass
class LoganSettings:
    """Every setting of a LoGAN training run; defaults follow the paper's C5H12O setting."""

    # descriptor
    r_cut: float = 5.0
    n_max: int = 4
    l_max: int = 4
    max_neighbours: int = 20
    radial: str = "gaussian"
    # architecture
    latent_dim: int = 20
    hidden: tuple[int, ...] = (512, 256, 128, 64, 32)
    critic_hidden: tuple[int, ...] = (256, 128, 64, 32)
    negative_slope: float = 0.2
    # data augmentation
    rattle_copies: int = 5
    rattle_std: float = 0.05
    # WGAN loop
    steps: int = 2000
    n_critic: int = 5
    batch_size: int = 15
    gp_weight: float = 10.0
    optimizer: str = "rmsprop"
    lr_generator: float = 1e-4
    lr_critic: float = 1e-4

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        positive = ["latent_dim", "batch_size", "n_critic", "r_cut", "rattle_std", "lr_generator", "lr_critic"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: got {value!r}, expected a positive number")
        for name in ("steps", "rattle_copies"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected a non-negative integer")
        if not self.hidden or min(self.hidden) < 1 or not self.critic_hidden or min(self.critic_hidden) < 1:
            raise ValueError("hidden, critic_hidden: expected non-empty lists of positive layer sizes")
        self.descriptor_settings(species=(1,))  # validates the descriptor fields
        self.wgan_settings()  # validates the loop fields

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "LoganSettings":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"settings: unknown key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        data["critic_hidden"] = list(self.critic_hidden)
        return data

    def descriptor_settings(self, species: Sequence[int]) -> DescriptorSettings:
        return DescriptorSettings(
            species=tuple(sorted(set(int(z) for z in species))),
            r_cut=float(self.r_cut),
            n_max=int(self.n_max),
            l_max=int(self.l_max),
            max_neighbours=int(self.max_neighbours),
            radial=self.radial,
        )

    def wgan_settings(self, seed: int = 0, lr_generator=None, lr_critic=None, steps=None) -> WGANSettings:
        return WGANSettings(
            steps=self.steps if steps is None else steps,
            n_critic=self.n_critic,
            batch_size=self.batch_size,
            gp_weight=self.gp_weight,
            optimizer=self.optimizer,
            lr_generator=self.lr_generator if lr_generator is None else lr_generator,
            lr_critic=self.lr_critic if lr_critic is None else lr_critic,
            seed=seed,
        )


#: the paper's settings (Kovács et al. 2024); ``steps`` is the per-model epoch count they used
PRESETS: dict[str, dict[str, Any]] = {
    "molecule": {"r_cut": 5.0, "n_max": 4, "max_neighbours": 20, "lr_generator": 1e-4, "lr_critic": 1e-4,
                 "steps": 45000},
    "sio2": {"r_cut": 6.0, "n_max": 4, "max_neighbours": 20, "lr_generator": 10**-3.5, "lr_critic": 10**-3.5,
             "steps": 60000},
}


def parse_composition(composition: str | Sequence[str]) -> list[str]:
    """``"C5H12O"`` or a list of symbols → symbols grouped by element in order of appearance."""
    if isinstance(composition, str):
        tokens = re.findall(r"([A-Z][a-z]?)(\d*)", composition)
        if not tokens or "".join(f"{s}{n}" for s, n in tokens) != composition.replace(" ", ""):
            raise ValueError(f"composition: cannot parse {composition!r}; expected a formula such as 'C5H12O'")
        counts: dict[str, int] = {}
        for symbol, n in tokens:
            counts[symbol] = counts.get(symbol, 0) + (int(n) if n else 1)
    else:
        counts = {}
        for symbol in composition:
            counts[symbol] = counts.get(symbol, 0) + 1
    for symbol, n in counts.items():
        if symbol not in ase.data.atomic_numbers or symbol == "X":
            raise ValueError(f"composition: {symbol!r} is not a chemical element")
        if n < 1:
            raise ValueError(f"composition: element {symbol} needs a positive count")
    symbols = [s for s, n in counts.items() for _ in range(n)]
    if not symbols:
        raise ValueError("composition: expected at least one atom")
    return symbols


def composition_string(symbols: Sequence[str]) -> str:
    """``['Si', 'Si', 'O', 'O', 'O', 'O']`` → ``'Si2O4'`` (elements in order of appearance)."""
    symbols = list(symbols)
    return "".join(f"{x}{symbols.count(x) if symbols.count(x) > 1 else ''}" for x in dict.fromkeys(symbols))


def _heights(cell: np.ndarray) -> np.ndarray:
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def validate_training(
    training: StructureBatch, symbols: Sequence[str], cell: np.ndarray, pbc: Sequence[bool], r_cut: float
) -> None:
    """Check the inputs of a LoGAN training before any heavy work; raise ``ValueError`` naming the field."""
    if training is None or len(training) == 0:
        raise ValueError("training: the training set is empty; expected at least one structure")
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
        raise ValueError(
            f"composition: element(s) {missing} have no atomic environments in the training structures"
        )
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
            what = f"the typical training molecule ({typical:.2f} Å across)" if typical >= r_cut else f"r_cut ({r_cut} Å)"
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
        self.mlp = EnsembleMLP(sizes, [member_seed(s, _STREAM_GENERATOR) for s in self.seeds], negative_slope)

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k, b, _ = z.shape
        return torch.sigmoid(self.mlp(z)).reshape(k, b, self.n_atoms, 3)

    def positions(self, z: torch.Tensor) -> torch.Tensor:
        """Cartesian positions ``(K, B, N, 3)`` in Å."""
        return self(z) @ self.cell

    def architecture(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim, "hidden": self.hidden, "negative_slope": self.negative_slope}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LoganGenerator":
        arch = config["architecture"]
        return cls(config["symbols"], config["cell"], config["pbc"], seeds=[config["seed"]], **arch)

    def member(self, k: int) -> "LoganGenerator":
        """Member ``k`` as a stand-alone single-model generator."""
        single = LoganGenerator(self.symbols, self.cell.numpy(), self.pbc, [self.seeds[k]], **self.architecture())
        self.mlp.copy_member_into(k, single.mlp)
        return single.eval()

    @torch.no_grad()
    def sample(self, count: int, seed: int, chunk_size: int = 8192) -> StructureBatch:
        """``count`` structures from every member, reproducible from ``seed``.

        The batch's ``info['model_index']`` says which member made each structure.
        """
        if not isinstance(count, (int, np.integer)) or count <= 0:
            raise ValueError(f"count: got {count!r}, expected a positive number of structures")
        rng = torch.Generator().manual_seed(member_seed(seed, _STREAM_SAMPLE))
        chunks = []
        done = 0
        while done < count:
            b = min(chunk_size, count - done)
            z = torch.randn(self.n_models, b, self.latent_dim, generator=rng)
            chunks.append(self.positions(z).double())
            done += b
        positions = torch.cat(chunks, dim=1).numpy()  # (K, count, N, 3)
        model_index = np.repeat(np.arange(self.n_models), count)
        return StructureBatch.from_uniform(
            positions.reshape(-1, self.n_atoms, 3),
            self.numbers,
            self.cell.double().numpy(),
            self.pbc,
            info={"model_index": model_index},
        )


class LoganCritic(nn.Module):
    """``K`` per-environment critics: (descriptor ⊕ one-hot element) → MLP → score per atom."""

    def __init__(self, n_features: int, n_species: int, seeds: Sequence[int], hidden=(256, 128, 64, 32),
                 negative_slope: float = 0.2):
        super().__init__()
        self.mlp = EnsembleMLP(
            [n_features + n_species, *hidden, 1], [member_seed(s, _STREAM_CRITIC) for s in seeds], negative_slope
        )

    def forward(self, environments: torch.Tensor) -> torch.Tensor:
        """``(K, B, N, F + S)`` → scores ``(K, B, N)``."""
        return self.mlp(environments).squeeze(-1)


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
    rng = np.random.default_rng(member_seed(seed, _STREAM_RATTLE))
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
    """The LoGAN training problem for :class:`~aiida_physgen.ml.wgan.WGANTrainer`."""

    def __init__(
        self,
        generator: LoganGenerator,
        critic: LoganCritic,
        descriptor: LocalDescriptor,
        pools: dict[int, np.ndarray],
    ):
        self.generator = generator
        self.critic = critic
        self.descriptor = descriptor
        self.n_models = generator.n_models
        settings = descriptor.settings
        species = list(settings.species)
        self.species_index = torch.as_tensor([species.index(z) for z in generator.numbers], dtype=torch.long)
        everything = np.concatenate([pools[z] for z in species])
        self.mean = torch.as_tensor(everything.mean(axis=0), dtype=torch.float32)
        self.std = torch.as_tensor(everything.std(axis=0) + 1e-6, dtype=torch.float32)
        self.pools = [(torch.as_tensor(pools[z], dtype=torch.float32) - self.mean) / self.std for z in species]
        self.one_hot = nn.functional.one_hot(self.species_index, len(species)).float()  # (N, S)
        # the atoms of the composition, grouped by element: real samples are drawn block by block
        self.blocks = [
            (i, torch.nonzero(self.species_index == i).flatten()) for i in range(len(species))
            if (self.species_index == i).any()
        ]

    def _with_element(self, features: torch.Tensor) -> torch.Tensor:
        k, b, n, _ = features.shape
        return torch.cat([features, self.one_hot.expand(k, b, n, -1)], dim=-1)

    def real_batch(self, batch_size: int, rng: torch.Generator):
        k, n = self.n_models, self.generator.n_atoms
        out = torch.empty(k, batch_size, n, self.mean.shape[0])
        for species_i, atoms in self.blocks:
            pool = self.pools[species_i]
            idx = torch.randint(len(pool), (k, batch_size, len(atoms)), generator=rng)
            out[:, :, atoms] = pool[idx]
        return self._with_element(out), None

    def fake_batch(self, batch_size: int, rng: torch.Generator, condition=None):
        k, n = self.n_models, self.generator.n_atoms
        z = torch.randn(k, batch_size, self.generator.latent_dim, generator=rng)
        positions = self.generator.positions(z).reshape(k * batch_size, n, 3)
        features = self.descriptor(positions, self.species_index, self.generator.cell, self.generator.pbc)
        features = (features.reshape(k, batch_size, n, -1) - self.mean) / self.std
        return self._with_element(features)

    def critic_scores(self, samples: torch.Tensor, condition=None) -> torch.Tensor:
        return self.critic(samples)

    def member_parameters(self, module: nn.Module):
        return module.mlp.member_parameters()


@dataclass
class TrainedModel:
    """One trained ensemble member: a single-model generator and its full config."""

    module: LoganGenerator
    config: dict[str, Any] = field(default_factory=dict)


def _members(seeds: Sequence[int], grid: dict[str, Sequence[Any]] | None) -> list[tuple[int, dict[str, Any]]]:
    grid = dict(grid or {})
    known = {f.name for f in fields(LoganSettings)}
    for key, values in grid.items():
        if key not in known:
            raise ValueError(f"grid: unknown setting {key!r}; expected some of {sorted(known)}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid: {key!r} needs a non-empty list of values")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    return [(int(seed), combo) for combo in combos for seed in seeds]


def train_logan(
    training: StructureBatch,
    composition: str | Sequence[str],
    cell,
    pbc: Sequence[bool] | bool,
    settings: LoganSettings | dict[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    grid: dict[str, Sequence[Any]] | None = None,
    callback: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> list[TrainedModel]:
    """Train an ensemble of LoGAN models: every seed × every combination of the ``grid`` settings.

    Members that share everything but seed and learning rates are trained together in one
    vectorised pass; members whose descriptor or architecture differ form separate passes.
    Returns one :class:`TrainedModel` per member, in the order seeds-within-grid.
    """
    base = settings if isinstance(settings, LoganSettings) else LoganSettings.from_dict(settings)
    symbols = parse_composition(composition)
    pbc = [bool(pbc)] * 3 if isinstance(pbc, (bool, np.bool_)) else [bool(p) for p in pbc]
    cell = np.asarray(cell, dtype=float)
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    members = _members(seeds, grid)
    member_settings = [LoganSettings.from_dict({**base.to_dict(), **combo}) for _, combo in members]
    for s in member_settings:
        validate_training(training, symbols, cell, pbc, s.r_cut)

    vectorised = ("lr_generator", "lr_critic")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(member_settings):
        key = repr({k: v for k, v in s.to_dict().items() if k not in vectorised})
        groups.setdefault(key, []).append(i)

    results: list[TrainedModel | None] = [None] * len(members)
    for indices in groups.values():
        s = member_settings[indices[0]]
        group_seeds = [members[i][0] for i in indices]
        descriptor_settings = s.descriptor_settings(ase.data.atomic_numbers[x] for x in symbols)
        descriptor = LocalDescriptor(descriptor_settings)
        pools = environment_pools(training, descriptor_settings, s.rattle_copies, s.rattle_std, group_seeds[0])
        generator = LoganGenerator(symbols, cell, pbc, group_seeds, s.latent_dim, s.hidden, s.negative_slope)
        critic = LoganCritic(
            descriptor_settings.n_features, len(descriptor_settings.species), group_seeds, s.critic_hidden,
            s.negative_slope,
        )
        problem = LoganProblem(generator, critic, descriptor, pools)
        loop_settings = s.wgan_settings(
            seed=member_seed(group_seeds[0], _STREAM_LOOP),
            lr_generator=[member_settings[i].lr_generator for i in indices],
            lr_critic=[member_settings[i].lr_critic for i in indices],
        )
        trainer = WGANTrainer(problem, loop_settings)
        trainer.train(callback=callback)
        losses = trainer.final_losses()
        for k, i in enumerate(indices):
            config = {
                "family": "logan",
                "symbols": symbols,
                "composition": composition_string(symbols),
                "cell": cell.tolist(),
                "pbc": pbc,
                "seed": members[i][0],
                "steps": trainer.step,
                "losses": losses[k],
                "descriptor": descriptor_settings.to_dict(),
                "hyperparameters": member_settings[i].to_dict(),
                "architecture": generator.architecture(),
                "ensemble": {"size": len(members), "index": i, "grid": members[i][1]},
                "training_set": {"count": len(training), "formula_counts": training.formula_counts()},
            }
            results[i] = TrainedModel(generator.member(k), config)
    return results  # type: ignore[return-value]


def generate(models: Sequence[LoganGenerator], count: int, seed: int) -> StructureBatch:
    """``count`` structures from each model; ``info['model_index']`` says which model made each."""
    if not models:
        raise ValueError("models: expected at least one generator model")
    if not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count: got {count!r}, expected a positive number of structures per model")
    batches = []
    for index, model in enumerate(models):
        batch = model.sample(count, member_seed(seed, index))
        batch.info["model_index"] = np.full(len(batch), index)
        batches.append(batch)
    return StructureBatch.concatenate(batches)
