"""Space groups for the crystal GAN: symmetry operations (from pymatgen), lattices and their constraints.

The crystal GAN generates the fractional coordinates of the base sites and the three lattice lengths;
the lattice angles follow from the crystal system. That holds for orthorhombic, tetragonal, trigonal
(hexagonal axes), hexagonal and cubic groups, numbers 16–230, which hold the paper's 12 (225, 71, 221,
139, 62, 216, 166, 194, 123, 164, 141, 227). Monoclinic and triclinic groups (1–15) have free angles and
are refused with a named error.

The operations are those of :class:`pymatgen.symmetry.groups.SpaceGroup` in its default setting
(spglib's standard conventional cell: hexagonal axes for the rhombohedral groups), as 4 × 4 affine
matrices on fractional coordinates, centring translations included (F-43m: 96, Fd-3m: 192). No AiiDA.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "MAX_OPERATIONS",
    "PAPER_SPACE_GROUPS",
    "SpaceGroupInfo",
    "space_group",
    "padded_operations",
    "operation_features",
    "constrain_lengths",
    "lattice_matrices",
    "origin_choices",
]

#: the most operations of any space group in its conventional cell (Fm-3m, Fd-3m ...)
MAX_OPERATIONS = 192
#: the 12 space groups the physics-guided crystal GAN paper trains on
PAPER_SPACE_GROUPS = (225, 71, 221, 139, 62, 216, 166, 194, 123, 164, 141, 227)
#: crystal systems whose lattice angles are fixed, so three lengths define the lattice
_SYSTEMS = ("orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


@dataclass(frozen=True)
class SpaceGroupInfo:
    """One supported space group: ``number``, Hermann–Mauguin ``symbol``, ``crystal_system`` and its
    ``operations`` (``(n, 4, 4)`` affine matrices on fractional coordinates)."""

    number: int
    symbol: str
    crystal_system: str
    operations: np.ndarray

    @property
    def hexagonal_axes(self) -> bool:
        """Whether the conventional cell has γ = 120° (trigonal and hexagonal groups)."""
        return self.crystal_system in ("trigonal", "hexagonal")

    def apply(self, fractional: np.ndarray) -> np.ndarray:
        """Every operation applied to points ``(..., 3)``: ``(..., n, 3)`` wrapped into [0, 1)."""
        rotations, translations = self.operations[:, :3, :3], self.operations[:, :3, 3]
        images = np.einsum("nij,...j->...ni", rotations, np.asarray(fractional, dtype=np.float64)) + translations
        return images - np.floor(images)

    def orbit(self, point: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
        """The distinct images of one fractional point (its Wyckoff orbit in the conventional cell): an image is kept
        unless an earlier one lies within ``tolerance`` (periodic, largest fractional component)."""
        images = self.apply(np.asarray(point, dtype=np.float64))
        gaps = np.abs((images[:, None] - images[None] + 0.5) % 1.0 - 0.5).max(axis=-1)
        return images[~np.any(np.tril(gaps < tolerance, k=-1), axis=1)]

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "symbol": self.symbol, "crystal_system": self.crystal_system}


@functools.cache
def _info(number: int) -> SpaceGroupInfo:
    from pymatgen.symmetry.groups import SpaceGroup

    group = SpaceGroup.from_int_number(number)
    operations = np.array([op.affine_matrix for op in group.symmetry_ops], dtype=np.float64)
    return SpaceGroupInfo(number, group.symbol, group.crystal_system, operations)


def space_group(value: Any, field: str = "space_group") -> SpaceGroupInfo:
    """The supported space group given by number (``216``) or Hermann–Mauguin symbol (``'F-43m'``).

    :raises ValueError: naming ``field`` for an unknown group, or one with free lattice angles.
    """
    if isinstance(value, (np.integer,)):
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{field}: got {value!r}, expected a space-group number (16–230) or symbol such as 'F-43m'")
    if isinstance(value, str):
        from pymatgen.symmetry.groups import SpaceGroup

        try:
            number = SpaceGroup(value.strip()).int_number
        except Exception:  # pymatgen raises ValueError or KeyError on a bad symbol
            raise ValueError(
                f"{field}: {value!r} is not a space-group symbol pymatgen knows; expected e.g. 'F-43m' or 'Pnma', "
                "or a number"
            ) from None
    else:
        number = value
    if not 1 <= number <= 230:
        raise ValueError(f"{field}: got {number}, expected a space-group number from 1 to 230")
    info = _info(int(number))
    if info.crystal_system not in _SYSTEMS:
        raise ValueError(
            f"{field}: {info.symbol} ({number}) is {info.crystal_system}; the crystal GAN generates three lattice "
            "lengths with the angles fixed by the crystal system, so it supports orthorhombic to cubic groups "
            "(16–230)"
        )
    return info


def _operation_key(rotation: np.ndarray, translation: np.ndarray) -> tuple:
    """An operation as integers: its rotation, and its translation modulo 1 in 24ths (every crystallographic
    translation is a multiple of 1/24)."""
    return tuple(np.round(rotation).astype(int).ravel()), tuple(np.round((translation % 1.0) * 24).astype(int) % 24)


@functools.cache
def origin_choices(number: int) -> tuple[tuple[int, np.ndarray], ...]:
    """The maps ``x → p·x + t`` (``p`` = ±1, ``t`` on the grid of quarters) that send the group's operations onto
    themselves: the other origins, with or without an inversion, in which the same crystal is described by the same
    group in the same setting (part of the group's Euclidean normaliser; F-43m: shifts by (¼, ¼, ¼) and inversion,
    which move a site between 4a, 4b, 4c and 4d). Each map is checked, never taken from a table, so the grid limits
    only how many are found; the identity is always first. pymatgen offers no normaliser; the check conjugates each
    operation (R, τ) to (R, p·τ + t − R·t) and looks it up among the group's own."""
    operations = space_group(number).operations
    rotations, translations = operations[:, :3, :3], operations[:, :3, 3]
    own = set(map(_operation_key, rotations, translations))
    choices = []
    quarters = np.array(np.meshgrid(*[np.arange(4) / 4] * 3, indexing="ij")).reshape(3, -1).T
    for sign in (1, -1):
        for shift in quarters:
            conjugated = sign * translations + shift - np.einsum("nij,j->ni", rotations, shift)
            if all(key in own for key in map(_operation_key, rotations, conjugated)):
                choices.append((sign, shift))
    return tuple(choices)


def padded_operations(numbers: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Operations of each group padded to :data:`MAX_OPERATIONS`: ``(B, 192, 3, 4)`` and the mask ``(B, 192)``."""
    numbers = [int(n) for n in numbers]
    by_number = {n: _padded(n) for n in sorted(set(numbers))}  # each group validated before it is cached
    return (torch.stack([by_number[n][0] for n in numbers]), torch.stack([by_number[n][1] for n in numbers]))


_PADDED: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
_LOCK = threading.Lock()  # ensemble members train in threads and may meet a new group at the same time


def _padded(number: int) -> tuple[torch.Tensor, torch.Tensor]:
    with _LOCK:
        if number not in _PADDED:
            matrices = torch.as_tensor(space_group(number).operations[:, :3, :], dtype=torch.float32)
            ops = torch.zeros(MAX_OPERATIONS, 3, 4)
            mask = torch.zeros(MAX_OPERATIONS, dtype=torch.bool)
            ops[: len(matrices)] = matrices
            mask[: len(matrices)] = True
            _PADDED[number] = (ops, mask)
        return _PADDED[number]


def operation_features(numbers: Iterable[int]) -> torch.Tensor:
    """The conditioning vector of each group: its padded operations flattened, ``(B, 192 · 12)``."""
    ops, _ = padded_operations(numbers)
    return ops.reshape(ops.shape[0], -1)


def constrain_lengths(lengths: torch.Tensor, numbers: Iterable[int]) -> torch.Tensor:
    """Lengths ``(B, 3)`` made consistent with each group's crystal system (cubic a = b = c; tetragonal,
    trigonal and hexagonal a = b), by averaging; differentiable."""
    systems = [space_group(n).crystal_system for n in numbers]
    cubic = torch.as_tensor([s == "cubic" for s in systems], device=lengths.device)[:, None]
    square = torch.as_tensor([s in ("tetragonal", "trigonal", "hexagonal") for s in systems], device=lengths.device)[
        :, None
    ]
    mean_all = lengths.mean(dim=1, keepdim=True).expand(-1, 3)
    mean_ab = lengths[:, :2].mean(dim=1, keepdim=True)
    ab_c = torch.cat([mean_ab, mean_ab, lengths[:, 2:]], dim=1)
    return torch.where(cubic, mean_all, torch.where(square, ab_c, lengths))


def lattice_matrices(lengths: torch.Tensor, numbers: Iterable[int]) -> torch.Tensor:
    """Cell vectors (rows) ``(B, 3, 3)`` from lengths ``(B, 3)``: orthogonal, or γ = 120° for hexagonal axes."""
    hexagonal = torch.as_tensor([space_group(n).hexagonal_axes for n in numbers], device=lengths.device)
    a, b, c = lengths.unbind(dim=1)
    zero = torch.zeros_like(a)
    cos_g = torch.where(hexagonal, torch.full_like(a, -0.5), zero)
    sin_g = torch.where(hexagonal, torch.full_like(a, math.sqrt(3) / 2), torch.ones_like(a))
    rows = [
        torch.stack([a, zero, zero], -1),
        torch.stack([b * cos_g, b * sin_g, zero], -1),
        torch.stack([zero, zero, c], -1),
    ]
    return torch.stack(rows, dim=1)
