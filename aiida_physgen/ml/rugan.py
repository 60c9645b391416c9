"""RUGAN: a regressive upscaling GAN for porous graphene sheets on a periodic honeycomb lattice.

Mills, Casert, Tamblyn, "Adversarial generation of mesoscale surfaces from small-scale chemical
motifs", J. Phys. Chem. C 124, 23158 (2020).

* The data are lattice occupations (:mod:`~aiida_physgen.ml.graphene`): every carbon site of a
  fixed periodic honeycomb sheet (the paper's ≈ 35 Å × 35 Å, 14 × 8 orthogonal cells) is occupied
  or vacant. The label of a sheet is its total energy; we use the energy per in-plane area (eV/Å²),
  which means the same at any sheet size, standardised for the network.
* Conditional WGAN with gradient penalty (λ1 = 10) and consistency term (λ2 = 2, which needs
  dropout in the critic); Adam (lr 1e-4, β = (0, 0.9), ε = 1e-8), 10 critic updates per generator
  update. Trained through the shared loop (:mod:`~aiida_physgen.ml.wgan`), member by member.
* Generator: 63 noise channels + 1 channel filled with the requested (standardised) label, on a
  spatial grid → three residual convolution blocks with batch norm → a final convolution. Every
  convolution pads circularly (:mod:`~aiida_physgen.ml.periodic_conv`) and the network is fully
  convolutional: a noise grid twice as large on each side gives a sheet of four times the area that
  still tiles periodically (``condition={'scale': 2}``).
* Critic: configuration + label channel → periodic convolutions with leaky ReLU and dropout →
  global mean pool → linear → one score per sheet; the pooling makes it size-agnostic.

Two encodings (``settings.encoding``):

``pair`` (default, the paper's 4-state encoding)
    noise ``(63 + 1, nx/2, ny)`` → a 2 × 2 transposed convolution (stride 2: every noise pixel
    becomes a 2 × 2 block with its own weights per sub-position, no overlap, so nothing to wrap) →
    square residual blocks → a 3 × 3 convolution → softmax over the 4 pair states on ``(nx, 2ny)``.
    The critic gets one fixed extra channel, ±1 by the parity of the pair column ``q`` (even and odd
    ``q`` are bonds of differently placed zig-zag columns; a translation-equivariant critic could not
    tell them apart otherwise).
``zigzag`` (the paper's HexagDly variant)
    noise ``(63 + 1, 3ny, 2nx)`` → hexagonal residual blocks → a hexagonal convolution → sigmoid
    × the mask of carbon sites (always-empty hexagon centres are 0). Generator and critic both get
    the mask (±1) as one fixed extra channel: hexagonal convolutions are equivariant to every
    triangular-lattice translation, and without it neither network could tell a carbon site from a
    hexagon centre (the honeycomb has a third of the triangular lattice's translations).

Critic inputs: pair states one-hot (real) or the softmax (generated); zig-zag ±1 (real) or
``2·sigmoid·mask − 1`` (generated, −1 on the always-empty sites, as in real sheets).

Generated sheets are discrete: the argmax of the 4 pair states, or sigmoid > 0.5 on carbon sites.
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
from torch.nn import functional as F

from .ensemble import MemberNets, Stream, attributes, eval_mode, member_seed
from .family import GeneratorFamily, keys_checked
from .graphene import (
    N_PAIR_STATES,
    Lattice,
    batch_to_sheets,
    coordination,
    pair_index,
    pair_to_zigzag,
    sheets_to_batch,
    zigzag_to_pair,
)
from .periodic_conv import HexConv2d, PeriodicConv2d
from .settings import is_finite_number, is_positive_int
from .wgan import VECTORISED, MemberNetsProblem, WGANSettings, WGANTrainer, member_loop

__all__ = [
    "ENCODINGS",
    "RuganSettings",
    "RuganGenerator",
    "RuganCritic",
    "RuganProblem",
    "RuganFamily",
    "SeededDropout",
    "LABEL_QUANTILES",
    "SAMPLE_CHUNK",
    "fit_label_model",
    "label_model_energies",
]

ENCODINGS = ("pair", "zigzag")
#: how many quantiles of the training labels a model keeps (draws for ``labels: 'training'``)
LABEL_QUANTILES = 257
#: sheets per forward pass when sampling (a fixed size, so samples do not depend on how many are asked for)
SAMPLE_CHUNK = 256

# The fast protocol (``protocols/rugan.yaml``) trains in about 3 minutes on 2 CPU cores (two members of 800 steps,
# 195 s) and still learns the label. Measured on 2,048 random 14 × 8 sheets with a synthetic energy (−9.2 eV per
# 3-coordinated atom, −8.4 eV per other atom): the correlation between requested label and atoms per
# generated sheet is −0.71 and −0.79 for the two members (−0.89 and −0.92 at scale 2, where the local
# fluctuations average out; the training sheets' own is −1.00), and the energy per area of the generated
# sheets misses the requested one by 0.63–0.75 label std (0.33–0.40 at scale 2; a label-blind generator:
# 1.16). Occupancy (88–90 % of the sites) and 1-/2-coordinated atoms (7.7–8.4 %) match the training
# sheets (89 %, 7.4 %). The paper's lr 1e-4 with 10 critic updates learns the same in about 10 × the time.


@dataclass
class RuganSettings:
    """Every setting of a RUGAN training run; the defaults are the paper's sizes and optimiser.

    ``channels`` is the generator's hidden width, ``blocks`` its residual blocks; ``critic_channels``
    and ``critic_layers`` the critic's convolutions, ``dropout`` the critic's dropout rate (the
    consistency term, ``loop.consistency_weight``, compares two dropout passes). ``loop`` holds the
    WGAN-GP loop's settings: Adam with lr 1e-4, β = (0, 0.9), ε = 1e-8, 10 critic updates per
    generator update, λ1 = 10 (gradient penalty), λ2 = 2 (consistency).

    ``label_weight`` (0, the paper: off) adds a label term to the generator's loss: the squared difference, in
    training-label standard deviations, between the requested label and the energy per area that a linear model
    of the training labels, ``E ≈ a·atoms + b·bonds + c`` (least squares on the training sheets), gives the
    generated sheet, with atoms and carbon-carbon bonds counted as expectations under the generator's site
    probabilities (so the term is differentiable). It tells the generator which way the label moves with its
    output, which the critic alone conveys only through its score.
    """

    encoding: str = "pair"
    noise_channels: int = 63
    channels: int = 64
    blocks: int = 3
    critic_channels: int = 64
    critic_layers: int = 3
    dropout: float = 0.2
    negative_slope: float = 0.2
    label_weight: float = 0.0
    loop: WGANSettings = field(
        default_factory=lambda: WGANSettings(
            steps=20000,
            n_critic=10,
            batch_size=64,
            gp_weight=10.0,
            consistency_weight=2.0,
            optimizer="adam",
            lr_generator=1e-4,
            lr_critic=1e-4,
            betas=(0.0, 0.9),
            eps=1e-8,
        )
    )

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding: got {self.encoding!r}, expected one of {list(ENCODINGS)}")
        for name, expected in (
            ("noise_channels", "a positive number of noise channels"),
            ("channels", "a positive hidden width"),
            ("blocks", "a positive number of residual blocks"),
            ("critic_channels", "a positive critic width"),
            ("critic_layers", "a positive number of critic convolutions"),
        ):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected {expected}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: got {self.dropout!r}, expected a rate in [0, 1)")
        if self.loop.consistency_weight > 0 and self.dropout == 0:
            raise ValueError(
                "dropout: the consistency term (loop.consistency_weight > 0) compares two dropout passes of the "
                "critic; expected dropout > 0, or loop.consistency_weight = 0"
            )
        if not is_finite_number(self.label_weight) or self.label_weight < 0:
            raise ValueError(
                f"label_weight: got {self.label_weight!r}, expected a finite weight >= 0 (0: no label term)"
            )
        value = self.negative_slope
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"negative_slope: got {value!r}, expected a positive finite leaky-ReLU slope")
        self.loop.require_one_learning_rate()


# ---------------------------------------------------------------------- building blocks
class SeededDropout(nn.Dropout2d):
    """Channel dropout (whole feature maps, as ``nn.Dropout2d``) whose masks come from its own
    ``torch.Generator``, not the global one.

    :class:`RuganProblem` reseeds it from the member's loop stream at every real-batch draw, i.e. at
    the start of every critic and generator update, so a member's dropout masks depend on its seed
    alone and a resumed training (the loop streams are checkpointed) continues exactly. Whole channels
    rather than single sites: one random number per feature map instead of one per site (drawing
    site-wise masks took 9 % of a training step), and the usual dropout for convolutional features.
    """

    def __init__(self, p: float):
        super().__init__(p)
        self.generator = torch.Generator()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[:-2] + (1, 1), generator=self.generator).to(x.device) >= self.p
        return x * (keep.to(x.dtype) / (1.0 - self.p))


def _conv(encoding: str, n_in: int, n_out: int, bias: bool = True) -> nn.Module:
    return HexConv2d(n_in, n_out, bias=bias) if encoding == "zigzag" else PeriodicConv2d(n_in, n_out, 3, bias=bias)


class _ResidualBlock(nn.Module):
    """conv → BN → ReLU → conv → BN, plus the input, → ReLU (periodic or hexagonal convolutions)."""

    def __init__(self, encoding: str, channels: int):
        super().__init__()
        self.conv1 = _conv(encoding, channels, channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv(encoding, channels, channels, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


class _GeneratorNet(nn.Module):
    """One member's generator: input grid → logits (pair: 4 states on the doubled grid; zigzag: 1)."""

    def __init__(self, encoding: str, n_in: int, channels: int, blocks: int):
        super().__init__()
        if encoding == "pair":
            # kernel = stride = 2: each noise pixel becomes a 2 × 2 block, blocks do not overlap
            self.stem = nn.ConvTranspose2d(n_in, channels, kernel_size=2, stride=2, bias=False)
            out = N_PAIR_STATES
        else:
            self.stem = HexConv2d(n_in, channels, bias=False)
            out = 1
        self.bn = nn.BatchNorm2d(channels)
        self.blocks = nn.Sequential(*(_ResidualBlock(encoding, channels) for _ in range(blocks)))
        self.head = _conv(encoding, channels, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(F.relu(self.bn(self.stem(x)))))


class _CriticNet(nn.Module):
    """One member's critic: grid → periodic convs + leaky ReLU + dropout → global mean → linear → score."""

    def __init__(self, encoding: str, n_in: int, channels: int, layers: int, dropout: float, negative_slope: float):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self.convs = nn.ModuleList(_conv(encoding, n_in if i == 0 else channels, channels) for i in range(layers))
        self.dropouts = nn.ModuleList(SeededDropout(dropout) for _ in range(layers))
        self.out = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, dropout in zip(self.convs, self.dropouts):
            x = dropout(F.leaky_relu(conv(x), self.negative_slope))
        return self.out(x.mean(dim=(-2, -1))).squeeze(-1)

    def seed_dropout(self, seed: int) -> None:
        for dropout in self.dropouts:
            dropout.generator.manual_seed(int(seed))


def _mask(rows: int, cols: int, device) -> torch.Tensor:
    """The carbon-site mask of a zig-zag grid as a float tensor ``(rows, cols)``."""
    return torch.as_tensor(Lattice.from_zigzag_shape((rows, cols)).mask(), dtype=torch.float32, device=device)


def _parity(cols: int, device) -> torch.Tensor:
    """±1 by the parity of the pair column ``q`` (the last axis), ``(1, cols)``."""
    return torch.where(torch.arange(cols, device=device) % 2 == 0, 1.0, -1.0)[None, :]


class RuganGenerator(MemberNets):
    """``K`` RUGAN generators side by side (one network per member, in ``nets``).

    :meth:`forward` maps noise ``(K, B, noise_channels, H, W)`` and standardised labels ``(K, B)`` to
    pair-state probabilities ``(K, B, 4, 2H, 2W)`` or zig-zag sigmoids × mask ``(K, B, 1, H, W)``.
    """

    def __init__(self, encoding: str, seeds: Sequence[int], noise_channels: int, channels: int, blocks: int):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding: got {encoding!r}, expected one of {list(ENCODINGS)}")
        n_in = int(noise_channels) + 1 + (encoding == "zigzag")  # noise, label (and the mask)
        super().__init__(seeds, Stream.GENERATOR, lambda: _GeneratorNet(encoding, n_in, int(channels), int(blocks)))
        self.encoding = encoding
        self.noise_channels = int(noise_channels)
        self.channels = int(channels)
        self.blocks = int(blocks)

    def architecture(self) -> dict[str, Any]:
        return attributes(self, ("encoding", "noise_channels", "channels", "blocks"))

    def noise_shape(self, lattice: Lattice) -> tuple[int, int]:
        """The spatial shape of the noise grid for a sheet on ``lattice``."""
        if self.encoding == "pair":
            if lattice.nx % 2:
                raise ValueError(f"lattice: the pair encoding needs an even nx (noise on nx/2 × ny), got {lattice.nx}")
            return (lattice.nx // 2, lattice.ny)
        return lattice.zigzag_shape

    def member_forward(self, k: int, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Member ``k`` on noise ``(B, noise_channels, H, W)`` and labels ``(B,)``."""
        b, _, h, w = z.shape
        parts = [z, labels.to(z.dtype)[:, None, None, None].expand(b, 1, h, w)]
        if self.encoding == "zigzag":
            mask = _mask(h, w, z.device)
            parts.append((2 * mask - 1).expand(b, 1, h, w))
        logits = self.nets[k](torch.cat(parts, dim=1))
        if self.encoding == "pair":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits) * mask


class RuganCritic(MemberNets):
    """``K`` RUGAN critics: configuration ``(K, B, C, H, W)`` + standardised labels ``(K, B)`` → scores ``(K, B)``."""

    def __init__(
        self, encoding: str, seeds: Sequence[int], channels: int, layers: int, dropout: float, negative_slope: float
    ):
        n_in = (N_PAIR_STATES if encoding == "pair" else 1) + 2  # configuration, label, parity or mask
        super().__init__(
            seeds, Stream.CRITIC, lambda: _CriticNet(encoding, n_in, channels, layers, dropout, negative_slope)
        )
        self.encoding = encoding

    def member_forward(self, k: int, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        fixed = _parity(w, x.device).expand(h, w) if self.encoding == "pair" else 2 * _mask(h, w, x.device) - 1
        parts = [x, labels.to(x.dtype)[:, None, None, None].expand(b, 1, h, w), fixed.expand(b, 1, h, w)]
        return self.nets[k](torch.cat(parts, dim=1))


# ---------------------------------------------------------------------- the training problem
def encode_sheets(occupancy: np.ndarray, encoding: str) -> torch.Tensor:
    """Zig-zag occupancies ``(M, 3ny, 2nx)`` as the critic sees real sheets: one-hot pair states
    ``(M, 4, nx, 2ny)`` or ±1 ``(M, 1, 3ny, 2nx)`` (float32)."""
    if encoding == "pair":
        states = torch.as_tensor(zigzag_to_pair(occupancy), dtype=torch.long)
        return F.one_hot(states, N_PAIR_STATES).permute(0, 3, 1, 2).float()
    return torch.as_tensor(np.where(occupancy, 1.0, -1.0), dtype=torch.float32)[:, None]


def _neighbour_sum(p: torch.Tensor) -> torch.Tensor:
    """Sum of the values on every site's three honeycomb neighbours, ``p`` of shape ``(..., R, C)`` on the zig-zag
    grid (periodic): the torch twin of :func:`aiida_physgen.ml.graphene.coordination`'s neighbour count."""
    up, down = torch.roll(p, -1, dims=-2), torch.roll(p, 1, dims=-2)
    side = torch.roll(p, 1, dims=-1) + torch.roll(p, -1, dims=-1)
    even = (torch.arange(p.shape[-1], device=p.device) % 2 == 0).to(p.dtype)
    other = even * torch.roll(side, 1, dims=-2) + (1 - even) * torch.roll(side, -1, dims=-2)
    return up + down + side + other


def _atoms_and_bonds(occupancy: np.ndarray) -> np.ndarray:
    """Per sheet: atoms, carbon-carbon bonds and 1, the columns of the label model."""
    atoms = occupancy.reshape(len(occupancy), -1).sum(1).astype(float)
    bonds = coordination(occupancy).reshape(len(occupancy), -1).sum(1) / 2.0
    return np.stack([atoms, bonds, np.ones_like(atoms)], axis=1)


def fit_label_model(occupancy: np.ndarray, energies: np.ndarray) -> dict[str, float]:
    """Least-squares ``E ≈ per_atom·atoms + per_bond·bonds + constant`` of sheets' total energies (eV), with its
    coefficient of determination ``r2`` (atoms and carbon-carbon bonds counted on the lattice)."""
    design = _atoms_and_bonds(occupancy)
    coefficients, *_ = np.linalg.lstsq(design, energies, rcond=None)
    residual = energies - design @ coefficients
    spread = float(((energies - energies.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / spread if spread > 0 else 1.0
    return {
        "per_atom": float(coefficients[0]),
        "per_bond": float(coefficients[1]),
        "constant": float(coefficients[2]),
        "r2": r2,
    }


def label_model_energies(fit: dict[str, float], occupancy: np.ndarray) -> np.ndarray:
    """Total energies (eV) the label model ``fit`` gives discrete sheets (zig-zag occupancies)."""
    return _atoms_and_bonds(occupancy) @ np.array([fit["per_atom"], fit["per_bond"], fit["constant"]])


class RuganProblem(MemberNetsProblem):
    """The RUGAN training problem for :class:`~aiida_physgen.ml.wgan.WGANTrainer`.

    Every member sees the same training sheets (no augmentation) and the same label standardisation;
    everything random (which sheets, noise, dropout masks, penalty mixing) comes from its own loop
    stream. Members train one after the other through :meth:`member_problem` views.

    :param sheets: the critic's encoding of the training sheets (:func:`encode_sheets`).
    :param labels: their labels (energy per area, eV/Å²), ``(M,)``.
    """

    def __init__(
        self,
        generator: RuganGenerator,
        critic: RuganCritic,
        sheets: torch.Tensor,
        labels: np.ndarray,
        lattice: Lattice,
        device: torch.device | str = "cpu",
        occupancy: np.ndarray | None = None,
        label_weight: float = 0.0,
    ):
        super().__init__(generator, critic, device)
        self.lattice = lattice
        labels = np.asarray(labels, dtype=np.float64)
        self.labels = labels
        self.label_mean = float(labels.mean())
        spread = float(labels.std())
        #: a constant label (every sheet the same energy per area) standardises to 0, not to NaN
        self.label_std = spread if spread > 0 else 1.0
        self.sheets = sheets.to(self.device)
        self.standardised = torch.as_tensor(
            (labels - self.label_mean) / self.label_std, dtype=torch.float32, device=self.device
        )
        self.noise_shape = generator.noise_shape(lattice)
        self.batch_size = 64
        self.label_weight = float(label_weight)
        self.label_model = None
        if self.label_weight > 0:
            if occupancy is None:
                raise ValueError("occupancy: the label term (label_weight > 0) fits its model on the training sheets")
            self.label_model = fit_label_model(occupancy, labels * lattice.area)
            column, row0, row1 = (torch.as_tensor(np.array(a)) for a in pair_index(lattice))
            cols = lattice.zigzag_shape[1]
            self._pair_sites = ((row0 * cols + column).reshape(-1), (row1 * cols + column).reshape(-1))

    def site_probabilities(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated sheets ``(K, B, ...)`` as the probability that each zig-zag site holds an atom ``(K, B, R, C)``,
        and per sheet the correction of the expected bond count for the pair encoding's bonds inside a pair, whose
        two sites are one categorical variable (P(both) instead of the product of the two marginals)."""
        rows, cols = self.lattice.zigzag_shape
        if self.generator.encoding == "zigzag":
            return (fake[:, :, 0] + 1) / 2, torch.zeros(fake.shape[:2], device=fake.device)
        first = fake[:, :, 1] + fake[:, :, 3]
        second = fake[:, :, 2] + fake[:, :, 3]
        sites = fake.new_zeros(fake.shape[:2] + (rows * cols,))
        sites[..., self._pair_sites[0]] = first.flatten(-2)
        sites[..., self._pair_sites[1]] = second.flatten(-2)
        correction = (fake[:, :, 3] - first * second).sum((-2, -1))
        return sites.reshape(fake.shape[:2] + (rows, cols)), correction

    def predicted_labels(self, fake: torch.Tensor) -> torch.Tensor:
        """The label model's standardised label of generated sheets ``(K, B)`` (expected atoms and bonds)."""
        p, correction = self.site_probabilities(fake)
        atoms = p.sum((-2, -1))
        bonds = 0.5 * (p * _neighbour_sum(p)).sum((-2, -1)) + correction
        fit = self.label_model
        energy = fit["per_atom"] * atoms + fit["per_bond"] * bonds + fit["constant"]
        return (energy / self.lattice.area - self.label_mean) / self.label_std

    def extra_generator_loss(self, fake, real, condition=None):
        if self.label_model is None or condition is None:
            return None
        return self.label_weight * ((self.predicted_labels(fake) - condition) ** 2).mean(-1)

    def label_statistics(self) -> dict[str, Any]:
        """What a model keeps of its training labels: mean, std, range and :data:`LABEL_QUANTILES` quantiles
        (and the label term's model when there is one)."""
        extra = {"label_model": dict(self.label_model)} if self.label_model is not None else {}
        return {
            **extra,
            "unit": "eV/Å²",
            "mean": self.label_mean,
            "std": self.label_std,
            "min": float(self.labels.min()),
            "max": float(self.labels.max()),
            "quantiles": np.quantile(self.labels, np.linspace(0.0, 1.0, LABEL_QUANTILES)).tolist(),
        }

    def real_batch(self, batch_size, rngs):
        samples, labels = [], []
        for k, rng in enumerate(rngs):
            index = torch.randint(len(self.sheets), (batch_size,), generator=rng).to(self.device)
            samples.append(self.sheets[index])
            labels.append(self.standardised[index])
            # this update's dropout masks, from the member's loop stream (see SeededDropout)
            self.critic.nets[k].seed_dropout(int(torch.randint(2**62, (1,), generator=rng)))
        if len(rngs) == 1:
            return samples[0].unsqueeze(0), labels[0].unsqueeze(0)
        return torch.stack(samples), torch.stack(labels)

    def fake_batch(self, batch_size, rngs, condition):
        h, w = self.noise_shape
        out = []
        for k, rng in enumerate(rngs):
            z = torch.randn(batch_size, self.generator.noise_channels, h, w, generator=rng).to(self.device)
            generated = self.generator.member_forward(k, z, condition[k])
            out.append(generated if self.generator.encoding == "pair" else 2 * generated - 1)
        return out[0].unsqueeze(0) if len(out) == 1 else torch.stack(out)

    #: batches of :meth:`member_generator`'s batch-norm recalibration (of the loop's batch size, at least 64)
    calibration_batches = 8

    @torch.no_grad()
    def member_generator(self, k: int) -> RuganGenerator:
        """Member ``k`` as a stand-alone generator whose batch-norm statistics are recomputed.

        During training every batch norm keeps an exponential moving average of its batch statistics;
        after a short training that average still holds much of its initial value (after 3 steps, 9
        updates: 39 %), and the sheets generated in eval mode come out all-empty or all-full. The copy
        gets the exact average over :attr:`calibration_batches` batches of fresh noise with training
        labels instead (seeded from the member's seed; the weights are untouched).
        """
        single = self.generator.member(k)
        norms = [m for m in single.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        rng = torch.Generator().manual_seed(member_seed(single.seeds[0], Stream.SAMPLE))
        h, w = self.noise_shape
        batch = max(64, self.batch_size)
        single.train()
        for _ in range(self.calibration_batches):
            index = torch.randint(len(self.standardised), (batch,), generator=rng)
            z = torch.randn(batch, single.noise_channels, h, w, generator=rng)
            single.member_forward(0, z, self.standardised.cpu()[index])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        return single.eval()


# ---------------------------------------------------------------------- the family
class RuganFamily(GeneratorFamily):
    """RUGAN as a generator family.

    Target: ``{'property': 'energy'}``, the ``info`` key of the training batch that holds every sheet's
    total energy in eV (default ``'energy'``); the label is that energy per in-plane area (eV/Å²).
    Training data: a :class:`~aiida_physgen.ml.batch.StructureBatch` of porous graphene sheets, all on
    one honeycomb lattice (:func:`~aiida_physgen.ml.graphene.sheets_to_batch` makes one).

    Sampling condition (all keys optional):

    ``label``
        one energy per area (eV/Å²) for every sheet;
    ``labels``
        a list of them, one per sheet (cycled), or ``'training'`` (the default): labels drawn, from
        the sampling seed, from the training labels' distribution the model keeps;
    ``scale``
        a positive integer (default 1): sheets ``scale`` times the training sheet's side
        (``scale = 2``: four times the area).

    A label outside the training range is allowed (the model extrapolates) with a warning that says
    how far outside it is. The generated batch's ``info['label']`` holds each sheet's requested label
    and ``info['requested_energy']`` that label times the sheet's area (eV).
    """

    name = "rugan"
    settings_class = RuganSettings
    vectorised = VECTORISED
    protocol_file = Path(__file__).parent / "protocols" / "rugan.yaml"
    architecture_settings = ("encoding", "noise_channels", "channels", "blocks")

    # ------------------------------------------------------------------ target and data
    def check_target(self, target):
        target = keys_checked(target, "target", ("property",), "a dictionary such as {'property': 'energy'}")
        prop = target.get("property", "energy")
        if not isinstance(prop, str) or not prop:
            raise ValueError(f"target.property: got {prop!r}, expected the name of a per-sheet info key, e.g. 'energy'")
        return {"property": prop}

    def _sheets_and_labels(self, training, target, settings) -> tuple[np.ndarray, Lattice, np.ndarray]:
        if training is None or len(training) == 0:
            raise ValueError(
                "training: RUGAN needs training sheets (a StructureBatch of porous graphene sheets "
                "on one lattice, with their total energies)"
            )
        prop = target["property"]
        if prop not in training.info:
            raise ValueError(
                f"target.property: the training sheets have no info[{prop!r}] (total energy per sheet, eV); "
                f"their info keys are {sorted(training.info)}"
            )
        try:
            energies = np.asarray(training.info[prop], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"training.info[{prop!r}]: expected one number (total energy, eV) per sheet") from None
        if energies.shape != (len(training),):
            raise ValueError(f"training.info[{prop!r}]: expected one number per sheet, got shape {energies.shape}")
        bad = np.flatnonzero(~np.isfinite(energies))
        if bad.size:
            raise ValueError(
                f"training[{int(bad[0])}]: info[{prop!r}] is {energies[bad[0]]}; expected finite energies in eV "
                f"({bad.size} sheet(s) have none)"
            )
        occupancy, lattice = batch_to_sheets(training, where="training")
        if settings.encoding == "pair" and lattice.nx % 2:
            raise ValueError(
                f"training: the sheets are {lattice.nx} × {lattice.ny} orthogonal cells; the pair encoding needs an "
                "even nx (its noise grid is nx/2 × ny, upsampled by 2); use settings.encoding 'zigzag' or sheets "
                "with an even nx"
            )
        return occupancy, lattice, energies / lattice.area

    def validate(self, training, target, settings):
        self._sheets_and_labels(training, target, settings)

    # ------------------------------------------------------------------ training
    def build_trainer(self, training, target, members, seeds, device):
        s = members[0]
        occupancy, lattice, labels = self._sheets_and_labels(training, target, s)
        generator = RuganGenerator(s.encoding, seeds, s.noise_channels, s.channels, s.blocks).to(device)
        critic = RuganCritic(s.encoding, seeds, s.critic_channels, s.critic_layers, s.dropout, s.negative_slope).to(
            device
        )
        problem = RuganProblem(
            generator,
            critic,
            encode_sheets(occupancy, s.encoding),
            labels,
            lattice,
            device,
            occupancy=occupancy,
            label_weight=s.label_weight,
        )
        problem.batch_size = s.loop.batch_size
        return WGANTrainer(problem, member_loop(members), seeds)

    def member_config(self, trainer, k):
        problem = trainer.problem
        return {"label": problem.label_statistics(), "lattice": problem.lattice.to_dict()}

    def module_from_config(self, config):
        return RuganGenerator(seeds=[config["seed"]], **config["architecture"])

    # ------------------------------------------------------------------ sampling
    def check_condition(self, condition, config):
        return self._condition(condition, config, warn=True)

    def _condition(self, condition, config, warn: bool) -> dict[str, Any]:
        condition = keys_checked(
            condition, "condition", ("label", "labels", "scale"), "a dictionary with label, labels and/or scale"
        )
        if "label" in condition and "labels" in condition:
            raise ValueError("condition: give either label (one for every sheet) or labels (a list), not both")
        scale = condition.get("scale", 1)
        if not is_positive_int(scale):
            raise ValueError(
                f"condition.scale: got {scale!r}, expected a positive integer (the sheet side as a "
                "multiple of the training sheet's; 2 gives four times the area)"
            )
        if "label" in condition:
            value = condition["label"]
            if not is_finite_number(value):
                raise ValueError(f"condition.label: got {value!r}, expected one finite energy per area in eV/Å²")
            labels: Any = [float(value)]
            where = "condition.label"
        else:
            labels = condition.get("labels", "training")
            where = "condition.labels"
            if isinstance(labels, str):
                if labels != "training":
                    raise ValueError(
                        f"condition.labels: got {labels!r}, expected a list of energies per area (eV/Å²) or 'training'"
                    )
            else:
                if isinstance(labels, np.ndarray):
                    labels = labels.tolist()
                if not isinstance(labels, (list, tuple)) or not labels or not all(is_finite_number(v) for v in labels):
                    raise ValueError(
                        f"condition.labels: got {labels!r}, expected a non-empty list of finite energies "
                        "per area (eV/Å²) or 'training'"
                    )
                labels = [float(v) for v in labels]
        if warn and labels != "training":
            self._warn_outside(labels, config, where)
        return {"labels": labels, "scale": int(scale)}

    @staticmethod
    def _warn_outside(labels: Sequence[float], config, where: str) -> None:
        stats = config["label"]
        lo, hi, std = float(stats["min"]), float(stats["max"]), float(stats["std"])
        values = np.asarray(labels)
        parts = []
        if values.min() < lo:
            d = lo - values.min()
            parts.append(f"{values.min():.5g} eV/Å² is {d:.3g} eV/Å² ({d / std:.3g} training std) below")
        if values.max() > hi:
            d = values.max() - hi
            parts.append(f"{values.max():.5g} eV/Å² is {d:.3g} eV/Å² ({d / std:.3g} training std) above")
        if parts:
            outside = int(((values < lo) | (values > hi)).sum())
            warnings.warn(
                f"{where}: {' and '.join(parts)} the training range [{lo:.5g}, {hi:.5g}] eV/Å² ({outside} of "
                f"{values.size} label(s) outside); the model extrapolates there",
                UserWarning,
                stacklevel=3,
            )

    def _labels(self, condition, config, count: int, seed: int) -> np.ndarray:
        if condition["labels"] == "training":
            quantiles = np.asarray(config["label"]["quantiles"], dtype=np.float64)
            rng = np.random.default_rng(member_seed(seed, Stream.SAMPLE))
            return np.interp(rng.random(count), np.linspace(0.0, 1.0, quantiles.size), quantiles)
        return np.resize(np.asarray(condition["labels"], dtype=np.float64), count)

    @torch.no_grad()
    def sample(self, module, config, count, seed, condition=None):
        condition = self._condition(condition, config, warn=False)
        lattice = Lattice.from_dict(config["lattice"]).scaled(condition["scale"])
        labels = self._labels(condition, config, count, seed)
        stats = config["label"]
        standardised = torch.as_tensor((labels - stats["mean"]) / stats["std"], dtype=torch.float32)
        h, w = module.noise_shape(lattice)
        device = next(module.parameters()).device
        rng = torch.Generator().manual_seed(member_seed(seed, Stream.SAMPLE))
        with eval_mode(module):
            sheets = np.empty((count,) + lattice.zigzag_shape, dtype=bool)
            mask = lattice.mask()
            for start in range(0, count, SAMPLE_CHUNK):
                b = min(SAMPLE_CHUNK, count - start)
                z = torch.randn(b, module.noise_channels, h, w, generator=rng).to(device)
                out = module.member_forward(0, z, standardised[start : start + b].to(device)).cpu()
                if module.encoding == "pair":
                    sheets[start : start + b] = pair_to_zigzag(out.argmax(dim=1).numpy().astype(np.int8))
                else:
                    sheets[start : start + b] = (out[:, 0].numpy() > 0.5) & mask
        empty = ~sheets.reshape(count, -1).any(axis=1)
        if empty.any():
            if empty.all():
                raise ValueError(
                    f"sample: every one of the {count} generated sheets is empty (the model generates "
                    "no atoms); train longer or check the training data"
                )
            warnings.warn(
                f"sample: {int(empty.sum())} of {count} generated sheets have no atoms and are left out",
                UserWarning,
                stacklevel=2,
            )
            sheets, labels = sheets[~empty], labels[~empty]
        return sheets_to_batch(sheets, lattice, info={"label": labels, "requested_energy": labels * lattice.area})
