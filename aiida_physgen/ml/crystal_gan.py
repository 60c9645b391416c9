"""The physics-guided crystal GAN: ternary crystals conditioned on space group and elements.

Zhao, Siriwardane, Hu et al., physics-guided crystal generative model (PGCGM), after CubicGAN
(Zhao et al., Adv. Sci. 8, 2100566, 2021). Its public code has no training code; this is ours.

* A sample is one ternary crystal with three base (Wyckoff) sites: the base sites' fractional
  coordinates (3 × 3) and the lattice lengths a, b, c (normalised to the training range), 12 numbers.
  The angles follow from the crystal system (:mod:`.space_groups`).
* Condition: the space group, as its symmetry operations (the padded 192 × 3 × 4 affine matrices,
  flattened, from pymatgen), and the three elements, as pymatgen property vectors
  (:mod:`.elements`), in canonical site order. Generator and critic both see the condition.
* Generator: noise ⊕ space-group embedding ⊕ element embedding → MLP → sigmoid coordinates and
  lengths; the lengths are then made consistent with the crystal system (cubic a = b = c ...). With
  ``site_heads`` each base site's coordinates come from one head shared by the three sites, fed the MLP's
  features and that site's own element, so what is learnt about an element holds in any slot (measured: it
  learns the element's position better but recovers fewer held-out crystals, docs/crystals.md; off by default).
  Critic: sin/cos of 2π·coordinates (periodic, so 0.99 and 0.01 are neighbours) ⊕ lengths ⊕ the same
  embeddings → MLP → one score.
* Self-augmentation: any symmetry-equivalent position may be the base site. Every epoch draws
  ``augmentations`` (32, the paper's) samples per training crystal, each with a random orbit member per
  site, from the member's data stream and the epoch number, and shuffles them.
* Physics losses, on the generated batch (added to the generator loss, so they train at the
  generator's learning rate, 5e-4): the distance loss λ·tanh(relu(r_a + r_b + offset − d)) over every
  pair of atoms, between different elements (λ_inter 3.5) and the same element (λ_intra 5.0), with
  pymatgen's atomic radii; pairs of the same element closer than ``merge_distance`` are one merged site,
  not a clash, and are left out. The box loss: 1 − cosine similarity between the real and the generated
  batch's volumes (λ 12.5) and, averaged, of their a, b and c (λ 5.0); real and generated samples of a
  step share their conditions, so the batches pair up.
* WGAN-GP (penalty 10) in the shared loop (:mod:`.wgan`); Adam, critic lr 2e-4, generator 5e-4.

Every distance is taken from the three base sites to every image of every site (27 periodic images):
each atom is an image of a base site, so these are all the distances of the crystal (nearest
periodic image only: the loss acts on clashes, far below half a cell length).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import elements as element_table
from .crystal_build import DEFAULT_WYCKOFF_TOLERANCE, build_crystals, primitive_cells, shortest_same_element_distance
from .crystal_data import TrainingCrystals, symbols_of, training_crystals
from .ensemble import MemberNets, Stream, eval_mode, member_seed
from .family import GeneratorFamily, keys_checked
from .settings import is_finite_number, is_positive_int
from .space_groups import (
    MAX_OPERATIONS,
    constrain_lengths,
    lattice_matrices,
    operation_features,
    padded_operations,
    space_group,
)
from .wgan import VECTORISED, MemberNetsProblem, WGANSettings, WGANTrainer, member_loop

__all__ = [
    "CrystalGanSettings",
    "CrystalGenerator",
    "CrystalCritic",
    "CrystalProblem",
    "CrystalGanFamily",
    "physics_losses",
]

SAMPLE_CHUNK = 512
#: the cells a generated crystal can be given in (the condition's ``cell``), the default first
CELLS = ("conventional", "primitive")
_OP_FEATURES = MAX_OPERATIONS * 12


@dataclass
class CrystalGanSettings:
    """Every setting of a crystal-GAN training run (defaults: the paper's weights and learning rates).

    ``distance_offset`` (Å) shifts the clash threshold r_a + r_b: pymatgen's (Slater) radii are generous,
    and on the shipped half-Heuslers the nearest pair of different elements sits 0.02–0.98 Å inside
    r_a + r_b, so the default −1.0 leaves every training crystal unpenalised. ``merge_distance`` (Å)
    is where same-element images become one site (the post-processing cut, and the intra loss's floor):
    1.5 Å lies below every same-element distance of the shipped set (2.5 Å and more) and, measured on a
    model trained for 1,000 steps, gives 46 % valid crystals for F-43m where 1.0 Å gives 12 % (images of a
    site generated near, not on, a special position stay apart and crowd the cell). Lower it for chemistries
    with short same-element bonds (C–C, N–N, O–O dimers), at sampling too (``condition.merge_distance``).
    ``length_margin`` widens the training range of lattice lengths the generator can reach.
    ``wyckoff_tolerance`` (Å) is how far a generated base site may move onto a special position of the requested
    group before the group is applied (:func:`~aiida_physgen.ml.crystal_build.snap_to_special_position`), so a
    crystal has the multiplicities of its Wyckoff sites; two elements sent to one position are then sent apart
    (:func:`~aiida_physgen.ml.crystal_build.reassign_shared_positions`, counted in ``reassigned_sites``); 0 turns
    both off and leaves only the merge. Sampling may change it (``condition.wyckoff_tolerance``).
    ``site_heads``: each base site's coordinates come from one head shared by the three sites and fed that site's
    own element (and its slot), so a site preference learnt for an element holds in whichever slot the element falls
    (Pt is the first, second or third of a half-Heusler's triple in canonical order); ``False`` (the default) is the
    single output layer of the paper. Measured on held-out half-Heuslers (docs/crystals.md), the heads put Pt on its
    site more often but two elements on one position more often too, and recovered fewer crystals.
    ``permute_sites``: each augmented training sample lists its three sites (coordinates and elements together) in
    a random order drawn with the orbit members, so the slot a site comes in carries no information and where an
    element goes can only be learnt from the element itself; ``False`` keeps canonical element order.
    ``critic_waves``: what the critic reads of each coordinate triple x: 0 (the paper's), sin and cos of 2π·x along
    each axis; 1 or 2, of 2π·G·x for every integer vector G with components up to 1 or 2 (one of each ± pair: 13 or
    62 waves), the plane waves of a structure factor. With G = (1, 1, 1) the face-centred orbits 4a, 4b, 4c, 4d of
    F-43m read 1, −1, −i, i whichever orbit member is drawn, where from the axes alone telling them apart takes a
    third-order product the critic's network must learn.
    ``site_critic``: the critic also reads each site on its own, its element's embedding beside its waves, through one
    network shared by the three sites (summed over them), so which element sits on which position is a first-order
    input rather than a relation between slots of two concatenated vectors.
    ``critic_orbits``: the critic reads each site's waves averaged over the requested group's operations, the same for
    every member of the site's orbit: which member the augmentation drew (or the generator made) is invisible to it,
    and which orbit a site is on is what it reads.
    ``canonical_origin``: the training crystals in their canonical origin
    (:func:`~aiida_physgen.ml.crystal_data.canonical_origin`); ``False``: spglib's cells.
    """

    noise_dim: int = 64
    embedding: int = 64
    hidden: int = 256
    layers: int = 3
    site_heads: bool = False
    canonical_origin: bool = True
    permute_sites: bool = False
    critic_hidden: int = 256
    critic_layers: int = 3
    critic_waves: int = 0
    site_critic: bool = False
    critic_orbits: bool = False
    augmentations: int = 32
    lambda_inter: float = 3.5
    lambda_intra: float = 5.0
    distance_offset: float = -1.0
    lambda_volume: float = 12.5
    lambda_abc: float = 5.0
    merge_distance: float = 1.5
    wyckoff_tolerance: float = DEFAULT_WYCKOFF_TOLERANCE
    length_margin: float = 0.2
    symprec: float = 0.1
    loop: WGANSettings = field(
        default_factory=lambda: WGANSettings(
            steps=2000,
            n_critic=5,
            batch_size=64,
            gp_weight=10.0,
            optimizer="adam",
            lr_generator=5e-4,
            lr_critic=2e-4,
            betas=(0.5, 0.9),
        )
    )

    def __post_init__(self) -> None:
        for name in ("noise_dim", "embedding", "hidden", "layers", "critic_hidden", "critic_layers", "augmentations"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected a positive integer")
        for name in ("site_heads", "canonical_origin", "permute_sites", "site_critic", "critic_orbits"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected true or false")
        for name in ("lambda_inter", "lambda_intra", "lambda_volume", "lambda_abc", "length_margin"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                raise ValueError(f"{name}: got {value!r}, expected a finite non-negative number")
        if self.critic_waves not in (0, 1, 2) or isinstance(self.critic_waves, bool):
            raise ValueError(f"critic_waves: got {self.critic_waves!r}, expected 0, 1 or 2")
        if not is_finite_number(self.wyckoff_tolerance) or self.wyckoff_tolerance < 0:
            raise ValueError(
                f"wyckoff_tolerance: got {self.wyckoff_tolerance!r}, expected a non-negative distance in Å (0: off)"
            )
        if not is_finite_number(self.distance_offset):
            raise ValueError(f"distance_offset: got {self.distance_offset!r}, expected a finite distance in Å")
        for name in ("merge_distance", "symprec"):
            value = getattr(self, name)
            if not is_finite_number(value) or value <= 0:
                raise ValueError(f"{name}: got {value!r}, expected a positive distance in Å")
        self.loop.require_one_learning_rate()


# ---------------------------------------------------------------------- conditions
_ELEMENT_TENSOR: dict[str, torch.Tensor] = {}


def _element_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Property vectors ``(95, F)`` and radii ``(95,)`` indexed by atomic number (zeros off the table)."""
    if not _ELEMENT_TENSOR:
        from ase.data import atomic_numbers

        vectors = torch.zeros(95, element_table.feature_size())
        radii = torch.zeros(95)
        for symbol, (vector, radius, _) in element_table.table().items():
            vectors[atomic_numbers[symbol]] = torch.as_tensor(vector, dtype=torch.float32)
            radii[atomic_numbers[symbol]] = radius
        _ELEMENT_TENSOR.update(vectors=vectors, radii=radii)
    return _ELEMENT_TENSOR["vectors"], _ELEMENT_TENSOR["radii"]


def _condition_inputs(condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Space-group features ``(B, 2304)`` and element features ``(B, 3F)`` of conditions ``(B, 4)``
    (space-group number, then the three atomic numbers)."""
    groups = condition[:, 0].tolist()
    vectors, _ = _element_tables()
    return (
        operation_features(groups).to(condition.device),
        vectors.to(condition.device)[condition[:, 1:]].reshape(len(condition), -1),
    )


def _mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    parts: list[nn.Module] = []
    for i in range(layers):
        parts += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.LeakyReLU(0.2)]
    parts.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*parts)


class _GeneratorNet(nn.Module):
    """noise ⊕ group embedding ⊕ element embedding → MLP → 9 coordinates and 3 lengths in (0, 1). With
    ``site_heads`` the MLP's last hidden layer feeds a lengths layer and one coordinates head shared by the three
    sites, each fed its own element's embedding and its slot (one-hot)."""

    def __init__(self, noise_dim: int, embedding: int, hidden: int, layers: int, site_heads: bool = False):
        super().__init__()
        self.groups = nn.Linear(_OP_FEATURES, embedding)
        self.elements = nn.Linear(3 * element_table.feature_size(), embedding)
        self.site_heads = site_heads
        if not site_heads:
            self.body = _mlp(noise_dim + 2 * embedding, hidden, layers, 12)
            return
        self.body = nn.Sequential(_mlp(noise_dim + 2 * embedding, hidden, layers, hidden), nn.LeakyReLU(0.2))
        self.site_element = nn.Linear(element_table.feature_size(), embedding)
        self.site = _mlp(hidden + embedding + 3, hidden, 1, 3)
        self.lengths = nn.Linear(hidden, 3)

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        groups, elements = _condition_inputs(condition)
        x = torch.cat([z, torch.relu(self.groups(groups)), torch.relu(self.elements(elements))], dim=1)
        if not self.site_heads:
            return torch.sigmoid(self.body(x))
        h = self.body(x)
        per_site = elements.reshape(len(z), 3, -1)  # (B, 3, F): each site's own element
        slots = torch.eye(3, device=z.device).expand(len(z), 3, 3)
        sites = torch.cat([h[:, None].expand(-1, 3, -1), torch.relu(self.site_element(per_site)), slots], dim=2)
        coords = self.site(sites).reshape(len(z), 9)
        return torch.sigmoid(torch.cat([coords, self.lengths(h)], dim=1))


def wave_vectors(order: int) -> torch.Tensor:
    """The integer vectors G the critic reads a site through (``critic_waves``): the three axes for order 0, else every
    G ≠ 0 with components in [−order, order], one of each ± pair, ``(n, 3)``."""
    if order == 0:
        return torch.eye(3)
    span = torch.arange(-order, order + 1, dtype=torch.float32)
    grid = torch.cartesian_prod(span, span, span)
    nonzero = grid[(grid != 0).any(dim=1)]
    first = nonzero[torch.arange(len(nonzero)), (nonzero != 0).int().argmax(dim=1)]
    return nonzero[first > 0]  # the first non-zero component positive: one of each ± pair


def site_images(coords: torch.Tensor, groups: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of each base site (fractional, unwrapped) under its group's operations, ``(B, 3, n, 3)``, and the
    operations' mask ``(B, n)``; ``n`` is the most operations of a group in the batch (the padding beyond it is
    all zero)."""
    ops, mask = padded_operations(groups)
    used = int(mask.sum(dim=1).max())
    ops, mask = ops[:, :used].to(coords.device), mask[:, :used].to(coords.device)
    return torch.einsum("boij,bsj->bsoi", ops[..., :3], coords) + ops[:, None, :, :, 3], mask


def _orbit_waves(coords: torch.Tensor, groups: Sequence[int], waves: torch.Tensor):
    """sin and cos of 2π·G·x averaged over every image of each site under its group's operations, ``(B, 3, n)`` each:
    the same for every member of a site's orbit."""
    images, mask = site_images(coords, groups)
    angles = 2 * math.pi * (images @ waves.T)  # (B, 3, O, n)
    weights = (mask / mask.sum(dim=1, keepdim=True))[:, None, :, None]
    return (torch.sin(angles) * weights).sum(dim=2), (torch.cos(angles) * weights).sum(dim=2)


class _CriticNet(nn.Module):
    def __init__(
        self, embedding: int, hidden: int, layers: int, waves: int = 0, site_critic: bool = False, orbits: bool = False
    ):
        super().__init__()
        self.orbits = orbits
        self.groups = nn.Linear(_OP_FEATURES, embedding)
        self.elements = nn.Linear(3 * element_table.feature_size(), embedding)
        self.register_buffer("waves", wave_vectors(waves), persistent=False)
        n_waves = len(self.waves)
        self.site = None
        if site_critic:
            self.site_element = nn.Linear(element_table.feature_size(), embedding)
            self.site = nn.Sequential(_mlp(embedding + 2 * n_waves, hidden, 1, hidden), nn.LeakyReLU(0.2))
        self.body = _mlp(6 * n_waves + 3 + 2 * embedding + (hidden if site_critic else 0), hidden, layers, 1)

    def forward(self, samples: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        groups, elements = _condition_inputs(condition)
        coords = samples[:, :9].reshape(-1, 3, 3)
        if self.orbits:
            sin, cos = _orbit_waves(coords, condition[:, 0].tolist(), self.waves)
        else:  # (B, 3 sites, n waves); with waves 0 the axes, in the order of the coordinates
            angles = 2 * math.pi * (coords @ self.waves.T)
            sin, cos = torch.sin(angles), torch.cos(angles)
        parts = [
            sin.reshape(len(samples), -1),
            cos.reshape(len(samples), -1),
            samples[:, 9:],
            torch.relu(self.groups(groups)),
            torch.relu(self.elements(elements)),
        ]
        if self.site is not None:
            per_site = torch.relu(self.site_element(elements.reshape(len(samples), 3, -1)))
            sites = torch.cat([per_site, sin, cos], dim=2)
            parts.append(self.site(sites).sum(dim=1))
        return self.body(torch.cat(parts, dim=1))[:, 0]


class CrystalGenerator(MemberNets):
    """``K`` generators: noise ``(B, noise_dim)`` + conditions ``(B, 4)`` → samples ``(B, 12)`` (coordinates
    in (0, 1), lengths normalised to ``[length_low, length_high]`` and consistent with the crystal system)."""

    def __init__(
        self,
        seeds: Sequence[int] = (0,),
        noise_dim: int = 64,
        embedding: int = 64,
        hidden: int = 256,
        layers: int = 3,
        length_low: float = 2.0,
        length_high: float = 12.0,
        site_heads: bool = False,
    ):
        super().__init__(
            seeds, Stream.GENERATOR, lambda: _GeneratorNet(noise_dim, embedding, hidden, layers, site_heads)
        )
        self.settings = {
            "noise_dim": int(noise_dim),
            "embedding": int(embedding),
            "hidden": int(hidden),
            "layers": int(layers),
            "site_heads": bool(site_heads),
            "length_low": float(length_low),
            "length_high": float(length_high),
        }

    @property
    def noise_dim(self) -> int:
        return self.settings["noise_dim"]

    def lengths(self, normalised: torch.Tensor) -> torch.Tensor:
        low, high = self.settings["length_low"], self.settings["length_high"]
        return low + (high - low) * normalised

    def member_forward(self, k: int, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        out = self.nets[k](z, condition)
        low, high = self.settings["length_low"], self.settings["length_high"]
        lengths = constrain_lengths(self.lengths(out[:, 9:]), condition[:, 0].tolist())
        return torch.cat([out[:, :9], (lengths - low) / (high - low)], dim=1)


class CrystalCritic(MemberNets):
    """``K`` critics: samples ``(B, 12)`` + conditions ``(B, 4)`` → scores ``(B,)``."""

    def __init__(
        self,
        seeds: Sequence[int] = (0,),
        embedding: int = 64,
        hidden: int = 256,
        layers: int = 3,
        waves: int = 0,
        site_critic: bool = False,
        orbits: bool = False,
    ):
        super().__init__(
            seeds, Stream.CRITIC, lambda: _CriticNet(embedding, hidden, layers, waves, site_critic, orbits)
        )

    def member_forward(self, k: int, samples: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.nets[k](samples, condition)


# ---------------------------------------------------------------------- physics losses
#: after rounding to the nearest image in fractional coordinates, the in-plane neighbours: with a, b, c
#: orthogonal the rounded image is already the nearest (the metric is diagonal), and with γ = 120° the
#: nearest is one of these 9 (c stays orthogonal to the plane); 3 times cheaper than all 27
_IMAGES = torch.tensor([[i, j, 0] for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=torch.float32)


def pair_distances(coords: torch.Tensor, lengths: torch.Tensor, groups: Sequence[int]):
    """Distances (Å) from each base site to every image of every site: ``(B, 3, 3, n)`` (site ``i``,
    site ``j``, operation; ``n`` the most operations of a group in the batch), the operations' mask
    ``(B, n)``, and the cells ``(B, 3, 3)``."""
    images, mask = site_images(coords, groups)
    cells = lattice_matrices(lengths, groups)
    diff = images[:, None, :, :, :] - coords[:, :, None, None, :]  # (B, i, j, o, 3)
    diff = diff - torch.round(diff)
    shifted = diff[..., None, :] + _IMAGES.to(coords.device)  # (B, i, j, o, 9, 3)
    cartesian = torch.einsum("bijonx,bxy->bijony", shifted, cells)
    # the nearest image; the epsilon keeps the square root's gradient finite at d = 0
    distances = torch.sqrt((cartesian**2).sum(-1) + 1e-10).min(dim=-1).values
    return distances, mask, cells


def physics_losses(
    fake: torch.Tensor, real: torch.Tensor, condition: torch.Tensor, generator: CrystalGenerator, s: CrystalGanSettings
) -> dict[str, torch.Tensor]:
    """The distance and box losses of one member's batch (samples ``(B, 12)``, conditions ``(B, 4)``),
    unweighted: ``inter``, ``intra`` (mean clash per atom image), ``volume``, ``abc`` (1 − cosine)."""
    groups = condition[:, 0].tolist()
    coords = fake[:, :9].reshape(-1, 3, 3)
    lengths = generator.lengths(fake[:, 9:])
    distances, mask, cells = pair_distances(coords, lengths, groups)
    _, radius_table = _element_tables()
    radii = radius_table.to(fake.device)[condition[:, 1:]]  # (B, 3)
    threshold = radii[:, :, None] + radii[:, None, :] + s.distance_offset  # (B, i, j)
    clash = torch.tanh(torch.relu(threshold[..., None] - distances))  # (B, i, j, o)
    same = torch.eye(3, dtype=torch.bool, device=fake.device)[None, :, :, None]
    valid = mask[:, None, None, :]
    inter = (clash * (valid & ~same)).sum(dim=(1, 2, 3))
    intra = (clash * (valid & same & (distances > s.merge_distance))).sum(dim=(1, 2, 3))
    atoms = 3 * mask.sum(dim=1)
    real_lengths = generator.lengths(real[:, 9:])
    real_volumes = torch.det(lattice_matrices(real_lengths, groups)).abs()
    volumes = torch.det(cells).abs()
    cosine = nn.functional.cosine_similarity
    return {
        "inter": (inter / atoms).mean(),
        "intra": (intra / atoms).mean(),
        "volume": 1 - cosine(volumes, real_volumes, dim=0),
        "abc": 1 - cosine(lengths, real_lengths, dim=0).mean(),
    }


# ---------------------------------------------------------------------- the training problem
class _Epochs:
    """One member's self-augmented epochs: ``augmentations`` samples per crystal, each with a random
    orbit member per site, drawn from the member's data seed and the epoch number, then shuffled."""

    def __init__(self, seed: int, crystals: TrainingCrystals, augmentations: int, permute: bool = False):
        self.seed = member_seed(seed, Stream.DATA)
        self.crystals = crystals
        self.augmentations = augmentations
        self.permute = permute
        self.epoch = 0
        self.cursor = 0
        self._table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        m = len(self.crystals)
        crystal = rng.permutation(np.repeat(np.arange(m), self.augmentations))
        sizes = np.array([[len(o) for o in orbits] for orbits in self.crystals.orbits])[crystal]  # (N, 3)
        choice = np.floor(rng.random(sizes.shape) * sizes).astype(np.int64)
        # drawn last, so that without it the stream (and every earlier model) is unchanged
        order = (
            np.argsort(rng.random(sizes.shape), axis=1) if self.permute else np.broadcast_to(np.arange(3), sizes.shape)
        )
        return crystal, choice, order

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``count`` samples: crystal index ``(n,)``, orbit member of each canonical site ``(n, 3)``, and the
        order the sites are listed in ``(n, 3)``."""
        crystals, choices, orders = [], [], []
        while count > 0:
            if self._table is None:
                self._table = self._draw()
            crystal, choice, order = self._table
            stop = min(len(crystal), self.cursor + count)
            crystals.append(crystal[self.cursor : stop])
            choices.append(choice[self.cursor : stop])
            orders.append(order[self.cursor : stop])
            count -= stop - self.cursor
            self.cursor = stop
            if self.cursor == len(crystal):
                self.epoch, self.cursor, self._table = self.epoch + 1, 0, None
        return np.concatenate(crystals), np.concatenate(choices), np.concatenate(orders)

    def state(self) -> list[int]:
        return [self.epoch, self.cursor]

    def load(self, state: Sequence[int]) -> None:
        self.epoch, self.cursor = int(state[0]), int(state[1])
        self._table = None


class CrystalProblem(MemberNetsProblem):
    """The crystal-GAN problem for the shared WGAN-GP loop; members train one after the other on views."""

    def __init__(
        self,
        generator: CrystalGenerator,
        critic: CrystalCritic,
        crystals: TrainingCrystals,
        settings: CrystalGanSettings,
        device: torch.device | str = "cpu",
    ):
        super().__init__(generator, critic, device)
        self.crystals = crystals
        self.settings = settings
        self.epochs = [_Epochs(s, crystals, settings.augmentations, settings.permute_sites) for s in generator.seeds]
        low, high = generator.settings["length_low"], generator.settings["length_high"]
        self.normalised_lengths = (crystals.lengths - low) / (high - low)
        self.conditions = np.concatenate([crystals.space_groups[:, None], crystals.numbers], axis=1)
        self.last_physics: list[dict[str, float]] = [{} for _ in generator.seeds]
        self._member = 0

    def real_batch(self, batch_size, rngs):
        samples, conditions = [], []
        for epochs in self.epochs:
            crystal, choice, order = epochs.take(batch_size)
            coords = np.stack(
                [
                    np.stack([self.crystals.orbits[c][site][choice[n, site]] for site in range(3)])
                    for n, c in enumerate(crystal)
                ]
            )
            rows = np.arange(len(crystal))[:, None]
            coords = coords[rows, order]  # the sites in the drawn order (canonical without permute_sites)
            condition = self.conditions[crystal].copy()
            condition[:, 1:] = condition[rows, 1 + order]
            sample = np.concatenate([coords.reshape(len(crystal), 9), self.normalised_lengths[crystal]], axis=1)
            samples.append(torch.as_tensor(sample, dtype=torch.float32, device=self.device))
            conditions.append(torch.as_tensor(condition, dtype=torch.long, device=self.device))
        return torch.stack(samples), torch.stack(conditions)

    def fake_batch(self, batch_size, rngs, condition):
        out = []
        for k, rng in enumerate(rngs):
            z = torch.randn(batch_size, self.generator.noise_dim, generator=rng).to(self.device)
            out.append(self.generator.member_forward(k, z, condition[k]))
        return torch.stack(out)

    def extra_generator_loss(self, fake, real, condition=None):
        s = self.settings
        totals = []
        for k in range(len(fake)):
            terms = physics_losses(fake[k], real[k], condition[k], self.generator, s)
            self.last_physics[self._member + k] = {name: float(value.detach()) for name, value in terms.items()}
            totals.append(
                s.lambda_inter * terms["inter"]
                + s.lambda_intra * terms["intra"]
                + s.lambda_volume * terms["volume"]
                + s.lambda_abc * terms["abc"]
            )
        return torch.stack(totals)

    def member_problem(self, k: int) -> CrystalProblem:
        view = super().member_problem(k)
        view.epochs = [self.epochs[k]]
        view._member = k
        return view


class CrystalTrainer(WGANTrainer):
    """The shared WGAN-GP trainer, with each member's epoch position in its checkpoints (so a resumed
    run draws the same augmented samples) and the physics terms in the loss history."""

    def train_step(self):
        losses = super().train_step()
        physics = self.problem.last_physics
        for name in ("inter", "intra", "volume", "abc"):
            losses[name] = torch.tensor([p.get(name, math.nan) for p in physics])
        return losses

    def modules_state(self):
        return {**super().modules_state(), "epochs": [e.state() for e in self.problem.epochs]}

    def load_modules_state(self, state):
        super().load_modules_state(state)
        for epochs, saved in zip(self.problem.epochs, state["epochs"]):
            epochs.load(saved)


# ---------------------------------------------------------------------- the family
class CrystalGanFamily(GeneratorFamily):
    """The physics-guided crystal GAN as a generator family.

    Target: ``{'space_groups': [...]}``, the groups to train on (numbers or symbols; all supported groups
    of the data when absent). Training data: any batch of crystals; only ternaries with three base sites
    in those groups are used, and what is dropped is said with a warning (:func:`training_crystals`).

    Sampling condition (all keys optional):

    ``space_group``
        number or symbol (default: the model's most common training group); a group the model was not
        trained on is allowed with a warning (the conditioning carries over through its operations);
    ``elements``
        three element symbols for every crystal, a list of such triples (cycled), or ``'training'``
        (default): the training triples of that space group (of every group if it has none), drawn from
        the seed;
    ``merge_distance``
        the post-processing's merge cut in Å (default: the training setting);
    ``wyckoff_tolerance``
        how far in Å a base site may move onto a special position (default: the training setting; 0: off);
    ``cell``
        ``'conventional'`` (default) or ``'primitive'``: the primitive cell of each crystal (pymatgen, at the
        model's ``symprec``), what a relaxation should get (a face-centred half-Heusler has 3 atoms in it
        against 12 in the conventional cell); the info arrays are those of the conventional cell.

    Generated crystals (conventional cells unless ``cell`` says otherwise) have info ``space_group_requested``,
    ``space_group_found``, ``symmetric`` (1 when spglib finds the requested group), ``images``, ``merged_atoms``,
    ``snapped_sites`` (base sites moved onto a special position) and ``merge_needed`` (1 when images still crowded
    and the merge joined them: the crystal is not on its Wyckoff positions).
    """

    name = "crystal_gan"
    settings_class = CrystalGanSettings
    vectorised = VECTORISED
    protocol_file = Path(__file__).parent / "protocols" / "crystal_gan.yaml"
    architecture_settings = ("noise_dim", "embedding", "hidden", "layers", "site_heads")

    def __init__(self) -> None:
        self._last: tuple[Any, ...] | None = None

    def check_target(self, target):
        target = keys_checked(target, "target", ("space_groups",), "a dictionary such as {'space_groups': [216]}")
        groups = target.get("space_groups")
        if groups is None:
            return {"space_groups": None}
        if isinstance(groups, (str, int)):
            groups = [groups]
        if not isinstance(groups, (list, tuple)) or not groups:
            raise ValueError(f"target.space_groups: got {groups!r}, expected a non-empty list of space groups")
        return {"space_groups": sorted({space_group(g, "target.space_groups").number for g in groups})}

    def crystals(self, training, target, settings) -> TrainingCrystals:
        """The usable training crystals (cached for the last batch, as validation and training both need them)."""
        if training is None or len(training) == 0:
            raise ValueError("training: the crystal GAN needs training crystals (ternaries with three base sites)")
        key = (
            id(training),
            len(training),
            tuple(target["space_groups"] or ()),
            settings.symprec,
            settings.canonical_origin,
        )
        if self._last is not None and self._last[0] == key and self._last[1] is training:
            return self._last[2]
        crystals = training_crystals(
            training, target["space_groups"], settings.symprec, canonical=settings.canonical_origin
        )
        if len(crystals) == 0:
            reasons = "; ".join(f"{n} {r}" for r, n in crystals.dropped_summary().items())
            raise ValueError(
                f"training: nothing left after filtering the {len(training)} structure(s) ({reasons}); the crystal "
                "GAN needs ternaries with three base sites in the requested space groups"
            )
        if crystals.dropped:
            reasons = "; ".join(f"{n} {r}" for r, n in crystals.dropped_summary().items())
            warnings.warn(
                f"training: {len(crystals.dropped)} of {len(training)} structure(s) dropped ({reasons})",
                UserWarning,
                stacklevel=3,
            )
        self._last = (key, training, crystals)
        return crystals

    def validate(self, training, target, settings):
        self.crystals(training, target, settings)

    def target_facts(self, target):
        return {"space_groups": target["space_groups"] or "all"}

    def _length_range(self, crystals: TrainingCrystals, settings) -> tuple[float, float]:
        low, high = float(crystals.lengths.min()), float(crystals.lengths.max())
        spread = max(high - low, 0.1 * high)
        return max(0.5, low - settings.length_margin * spread), high + settings.length_margin * spread

    def build_trainer(self, training, target, members, seeds, device):
        s = members[0]
        crystals = self.crystals(training, target, s)
        low, high = self._length_range(crystals, s)
        generator = CrystalGenerator(
            seeds, s.noise_dim, s.embedding, s.hidden, s.layers, low, high, site_heads=s.site_heads
        ).to(device)
        critic = CrystalCritic(
            seeds, s.embedding, s.critic_hidden, s.critic_layers, s.critic_waves, s.site_critic, s.critic_orbits
        ).to(device)
        problem = CrystalProblem(generator, critic, crystals, s, device)
        return CrystalTrainer(problem, member_loop(members), seeds)

    def member_config(self, trainer, k):
        problem = trainer.problem
        crystals = problem.crystals
        triples = sorted({(int(g), *map(int, z)) for g, z in zip(crystals.space_groups, crystals.numbers)})
        groups, counts = np.unique(crystals.space_groups, return_counts=True)
        return {
            "lengths": [problem.generator.settings["length_low"], problem.generator.settings["length_high"]],
            "training_triples": [list(t) for t in triples],
            "training_space_groups": {str(int(g)): int(c) for g, c in zip(groups, counts)},
            "merge_distance": problem.settings.merge_distance,
            "wyckoff_tolerance": problem.settings.wyckoff_tolerance,
            # generated images closer than any same-element pair of the training crystals are crowded (snapping)
            "crowding_distance": 0.95
            * shortest_same_element_distance(
                crystals.orbits, crystals.lengths, [space_group(g).hexagonal_axes for g in crystals.space_groups]
            ),
            "symprec": problem.settings.symprec,
            "dropped": len(crystals.dropped),
        }

    def module_from_config(self, config):
        low, high = config["lengths"]
        architecture = {"site_heads": False, **config["architecture"]}  # models saved before the site heads
        return CrystalGenerator(seeds=[config["seed"]], length_low=low, length_high=high, **architecture)

    # ------------------------------------------------------------------ sampling
    def check_condition(self, condition, config):
        return self._condition(condition, config, warn=True)

    def _condition(self, condition, config, warn: bool) -> dict[str, Any]:
        condition = keys_checked(
            condition,
            "condition",
            ("space_group", "elements", "merge_distance", "wyckoff_tolerance", "cell"),
            "a dictionary with space_group and/or elements",
        )
        cell = condition.get("cell", "conventional")
        if cell not in CELLS:
            raise ValueError(f"condition.cell: got {cell!r}, expected one of {list(CELLS)}")
        merge = condition.get("merge_distance", config.get("merge_distance", 1.5))
        if not is_finite_number(merge) or merge <= 0:
            raise ValueError(f"condition.merge_distance: got {merge!r}, expected a positive distance in Å")
        # models trained before the snapping existed get the default
        snap = condition.get("wyckoff_tolerance", config.get("wyckoff_tolerance", DEFAULT_WYCKOFF_TOLERANCE))
        if not is_finite_number(snap) or snap < 0:
            raise ValueError(
                f"condition.wyckoff_tolerance: got {snap!r}, expected a non-negative distance in Å (0: off)"
            )
        # without a model (a launch check) there are no training groups: only a given group is checked
        trained = {int(g): int(c) for g, c in config.get("training_space_groups", {}).items()}
        if "space_group" not in condition and not trained:
            return {
                "space_group": None,
                "elements": self._elements(condition),
                "merge_distance": float(merge),
                "wyckoff_tolerance": float(snap),
                "cell": cell,
            }
        default = max(trained, key=lambda g: (trained[g], -g)) if trained else None
        group = space_group(condition.get("space_group", default), "condition.space_group")
        if warn and trained and group.number not in trained:
            warnings.warn(
                f"condition.space_group: the model was trained on {sorted(trained)}, not on {group.symbol} "
                f"({group.number}); the conditioning carries over through the group's symmetry operations only",
                UserWarning,
                stacklevel=3,
            )
        return {
            "space_group": group.number,
            "elements": self._elements(condition),
            "merge_distance": float(merge),
            "wyckoff_tolerance": float(snap),
            "cell": cell,
        }

    @staticmethod
    def _elements(condition) -> Any:
        """The condition's ``elements``: ``'training'`` or a list of triples in canonical order."""
        elements = condition.get("elements", "training")
        if isinstance(elements, str):
            if elements != "training":
                raise ValueError(
                    f"condition.elements: got {elements!r}, expected three element symbols, a list of "
                    "triples, or 'training'"
                )
            triples: Any = "training"
        else:
            if isinstance(elements, (list, tuple)) and len(elements) == 3 and all(isinstance(e, str) for e in elements):
                elements = [elements]
            if not isinstance(elements, (list, tuple)) or not elements:
                raise ValueError(
                    f"condition.elements: got {elements!r}, expected three element symbols or a list of triples"
                )
            triples = []
            for i, triple in enumerate(elements):
                where = f"condition.elements[{i}]"
                if not isinstance(triple, (list, tuple)) or len(triple) != 3 or len(set(triple)) != 3:
                    raise ValueError(f"{where}: got {triple!r}, expected three different element symbols")
                element_table.check_elements(triple, where)
                triples.append(element_table.canonical_order(list(triple)))
        return triples

    def _triples(self, condition, config, count: int, seed: int) -> list[list[str]]:
        if condition["elements"] != "training":
            return [condition["elements"][i % len(condition["elements"])] for i in range(count)]
        triples = [t for t in config["training_triples"] if t[0] == condition["space_group"]] or config[
            "training_triples"
        ]
        rng = np.random.default_rng(member_seed(seed, Stream.DATA))
        picks = rng.integers(len(triples), size=count)
        return [symbols_of(triples[p][1:]) for p in picks]

    @torch.no_grad()
    def sample(self, module, config, count, seed, condition=None):
        from ase.data import atomic_numbers

        condition = self._condition(condition, config, warn=False)
        symbols = self._triples(condition, config, count, seed)
        group = condition["space_group"]
        conditions = torch.as_tensor([[group] + [atomic_numbers[s] for s in triple] for triple in symbols])
        rng = torch.Generator().manual_seed(member_seed(seed, Stream.SAMPLE))
        with eval_mode(module):
            outputs = []
            for start in range(0, count, SAMPLE_CHUNK):
                b = min(SAMPLE_CHUNK, count - start)
                z = torch.randn(b, module.noise_dim, generator=rng)
                outputs.append(module.member_forward(0, z, conditions[start : start + b]))
            out = torch.cat(outputs).double()
        coords = out[:, :9].reshape(-1, 3, 3).numpy()
        lengths = module.lengths(out[:, 9:]).numpy()
        batch = build_crystals(
            coords,
            lengths,
            [group] * count,
            symbols,
            condition["merge_distance"],
            config["symprec"],
            condition["wyckoff_tolerance"],
            config.get("crowding_distance"),  # models trained before it: the merge distance
        )
        if condition["cell"] == "primitive":
            batch = primitive_cells(batch, tolerance=config["symprec"])
        return batch
