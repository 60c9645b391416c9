"""A generator family: a tiny WGAN in the package's one training loop that draws H2O-like molecules.

The contract (:class:`aiida_physgen.ml.family.GeneratorFamily`): a settings dataclass (each default written
once, checked in ``__post_init__``), ``check_target`` and ``validate`` (bad input fails at launch, naming the
field), ``build_trainer`` (a :class:`~aiida_physgen.ml.wgan.WGANTrainer` over a
:class:`~aiida_physgen.ml.wgan.WGANProblem`: the shared adversarial loop trains every seed of the ensemble at
once), ``architecture`` and ``module_from_config`` (a trained member is saved and rebuilt from its config),
and ``sample`` (a :class:`~aiida_physgen.ml.batch.StructureBatch` of ``count`` structures).

The model: the generator maps Gaussian noise to the Cartesian coordinates of the target's atoms in a cubic
box; the critic sees the sorted interatomic distances, so it compares shapes, not positions. Target:
``{"composition": "H2O", "box": 6.0}``. Registered in ``pyproject.toml``::

    [project.entry-points."aiida_physgen.families"]
    toy = "physgen_toy.family:ToyFamily"
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ase.build
import ase.data
import numpy as np
import torch

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.composition import composition_string, parse_composition
from aiida_physgen.ml.ensemble import EnsembleMLP, Stream, member_seed
from aiida_physgen.ml.family import GeneratorFamily
from aiida_physgen.ml.loop import stacked_randint, stacked_randn
from aiida_physgen.ml.wgan import WGANProblem, WGANSettings, WGANTrainer


@dataclass
class ToySettings:
    loop: WGANSettings = field(default_factory=lambda: WGANSettings(steps=20, batch_size=8, n_critic=2))
    latent_dim: int = 4
    hidden: int = 16

    def __post_init__(self):
        if self.latent_dim < 1 or self.hidden < 1:
            raise ValueError("latent_dim, hidden: expected positive integers")


def _distances(positions: torch.Tensor) -> torch.Tensor:
    """Sorted pairwise distances ``(..., N(N-1)/2)`` of positions ``(..., N, 3)``."""
    n = positions.shape[-2]
    i, j = torch.triu_indices(n, n, 1)
    d = (positions[..., i, :] - positions[..., j, :]).pow(2).sum(-1).add(1e-9).sqrt()
    return d.sort(dim=-1).values


class ToyGenerator(torch.nn.Module):
    def __init__(self, n_atoms: int, box: float, seeds, latent_dim: int, hidden: int):
        super().__init__()
        self.n_atoms, self.box, self.seeds, self.latent_dim, self.hidden = n_atoms, box, list(seeds), latent_dim, hidden
        self.mlp = EnsembleMLP([latent_dim, hidden, 3 * n_atoms], [member_seed(s, Stream.GENERATOR) for s in seeds])

    def forward(self, z):
        k, b, _ = z.shape
        return torch.stack([torch.sigmoid(h) for h in self.mlp(z)]).reshape(k, b, self.n_atoms, 3) * self.box

    def member(self, k):
        single = ToyGenerator(self.n_atoms, self.box, [self.seeds[k]], self.latent_dim, self.hidden)
        self.mlp.copy_member_into(k, single.mlp)
        return single.eval()


class ToyProblem(WGANProblem):
    def __init__(self, generator, critic, real):
        self.generator, self.critic, self.real = generator, critic, real  # real: (M, n_pairs)
        self.n_models = generator.n_models if hasattr(generator, "n_models") else len(generator.seeds)

    def real_batch(self, batch_size, rngs):
        return self.real[stacked_randint(rngs, len(self.real), batch_size)], None

    def fake_batch(self, batch_size, rngs, condition=None):
        z = stacked_randn(rngs, batch_size, self.generator.latent_dim)
        return _distances(self.generator(z))

    def critic_scores(self, samples, condition=None):
        return self.critic(samples).squeeze(-1)

    def member_parameters(self, module):
        return module.mlp.member_parameters() if hasattr(module, "mlp") else module.member_parameters()


def water_molecules(n: int = 6, seed: int = 0) -> list:
    """``n`` slightly rattled water molecules in a 6 Å box: the toy family's training data in the tests."""
    rng = np.random.default_rng(seed)
    molecules = []
    for _ in range(n):
        atoms = ase.build.molecule("H2O")
        atoms.positions += 3.0 + rng.normal(0.0, 0.05, atoms.positions.shape)
        molecules.append(atoms)
    return molecules


class ToyFamily(GeneratorFamily):
    name = "toy"
    role = "generator"
    settings_class = ToySettings
    vectorised = ("loop.lr_generator", "loop.lr_critic")

    def check_target(self, target):
        unknown = sorted(set(target) - {"composition", "box"})
        if unknown:
            raise ValueError(f"target: unknown key(s) {unknown}; expected composition and box")
        if not isinstance(target.get("box"), (int, float)) or target["box"] <= 0:
            raise ValueError(f"target.box: expected a positive box length in Å, got {target.get('box')!r}")
        try:
            symbols = parse_composition(target.get("composition", ""))
        except ValueError as error:
            raise ValueError(f"target.{error}") from None
        return {"composition": composition_string(symbols), "box": float(target["box"])}

    def validate(self, training, target, settings):
        n = len(parse_composition(target["composition"]))
        if training is None or len(training) == 0:
            raise ValueError("training: expected at least one structure")
        if set(training.n_atoms.tolist()) != {n}:
            raise ValueError(f"training: every structure needs the target's {n} atoms")

    def build_trainer(self, training, target, members, seeds, device):
        s = members[0]
        n = len(parse_composition(target["composition"]))
        real = _distances(torch.as_tensor(training.positions.reshape(-1, n, 3), dtype=torch.float32))
        generator = ToyGenerator(n, target["box"], seeds, s.latent_dim, s.hidden)
        generator.n_models = len(seeds)
        critic = EnsembleMLP([real.shape[-1], s.hidden, 1], [member_seed(x, Stream.CRITIC) for x in seeds])
        loop = WGANSettings(
            **{
                **s.loop.__dict__,
                "lr_generator": [m.loop.lr_generator for m in members],
                "lr_critic": [m.loop.lr_critic for m in members],
            }
        )
        return WGANTrainer(ToyProblem(generator, critic, real), loop, seeds)

    def architecture(self, settings):
        return {"latent_dim": settings.latent_dim, "hidden": settings.hidden}

    def module_from_config(self, config):
        target = config["target"]
        n = len(parse_composition(target["composition"]))
        return ToyGenerator(n, target["box"], [config["seed"]], **config["architecture"])

    def sample(self, module, config, count, seed, condition=None):
        target = config["target"]
        numbers = [ase.data.atomic_numbers[x] for x in parse_composition(target["composition"])]
        z = torch.randn(1, count, module.latent_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            positions = module(z)[0].double().numpy()
        return StructureBatch.from_uniform(positions, np.array(numbers), np.eye(3) * target["box"], [False] * 3)
