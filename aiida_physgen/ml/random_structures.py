"""The random baseline: structures with random coordinates in the target cell.

This is the LoGAN paper's control for the generator: atoms of the target composition placed
uniformly at random in the same cell, kept only when every pair (periodic images included) is at
least ``min_distance`` Å apart, i.e. the min-distance rule the selection applies to generated
candidates. Atoms are inserted one after another with rejection (random sequential addition),
vectorised over all structures: at every step each structure that still needs its next atom draws
a block of trial positions at once and keeps the first one far enough from the atoms placed so far.

Domain: uniform fractional coordinates in ``[0, 1)`` along every cell vector, exactly the domain the
LoGAN generator maps its output into (fractional coordinates times the cell). No margin is left at
the faces of a non-periodic box: for a molecule the box has no physical meaning (no images; the
DFT stage re-centres every structure with its own vacuum), so a margin would only make the control
differ from the generator. Along periodic axes distances are minimum-image distances, checked
against the neighbouring images as well so the rule is exact even for small cells.

No AiiDA import here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import ase.data
import numpy as np

from .batch import StructureBatch, checked_cell_and_pbc
from .composition import parse_composition

__all__ = ["random_structures"]

#: densest packing of equal spheres (Kepler): more atoms of diameter ``min_distance`` per volume is impossible
_KEPLER = math.pi / math.sqrt(18.0)

#: trial positions drawn at once per structure and step (the attempts are counted one by one)
_BLOCK = 16


def _image_shifts(pbc: np.ndarray) -> np.ndarray:
    """Integer lattice shifts to the neighbouring images along periodic axes, ``(S, 3)``, zero first."""
    ranges = [(0, -1, 1) if periodic else (0,) for periodic in pbc]
    return np.array(list(itertools.product(*ranges)), dtype=np.float64)


def random_structures(
    composition: str | Sequence[str],
    cell,
    pbc,
    count: int,
    seed: int,
    min_distance: float = 0.5,
    max_attempts: int = 1000,
) -> StructureBatch:
    """``count`` structures of ``composition`` with uniformly random positions in ``cell``, every pair
    of atoms (periodic images included) at least ``min_distance`` Å apart.

    :param composition: formula (``"C5H12O"``) or list of symbols; atoms are ordered as
        :func:`~aiida_physgen.ml.composition.parse_composition` orders them (as the generator does).
    :param cell: 3x3 lattice vectors (rows) in Å.
    :param pbc: periodicity, three booleans or one for all axes.
    :param count: number of structures (positive).
    :param seed: seed of the random stream; the same seed and count give the same structures.
    :param min_distance: shortest allowed interatomic distance in Å (non-negative).
    :param max_attempts: trial positions per atom and structure before giving up (positive).
    :returns: a uniform :class:`~aiida_physgen.ml.batch.StructureBatch` with ``info['model_index']``
        all zero, like a one-model generation.
    :raises ValueError: naming the field for bad input, and naming ``min_distance`` when the rule
        cannot be met: a periodic cell whose own lattice vectors are shorter than ``min_distance``,
        more atoms than the densest sphere packing allows, or an atom that found no place in
        ``max_attempts`` trials.
    """
    symbols = parse_composition(composition)
    cell_array, pbc_array = checked_cell_and_pbc(cell, pbc)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count: got {count!r}, expected a positive number of structures")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: got {seed!r}, expected a non-negative integer")
    if (
        isinstance(min_distance, bool)
        or not isinstance(min_distance, (int, float, np.floating))
        or not (math.isfinite(min_distance) and min_distance >= 0)
    ):
        raise ValueError(f"min_distance: got {min_distance!r}, expected a non-negative distance in Å")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, (int, np.integer)) or max_attempts <= 0:
        raise ValueError(f"max_attempts: got {max_attempts!r}, expected a positive number of trials per atom")
    n_atoms = len(symbols)
    numbers = np.array([ase.data.atomic_numbers[s] for s in symbols], dtype=np.int64)
    volume = abs(float(np.linalg.det(cell_array)))
    shifts = _image_shifts(pbc_array) @ cell_array  # (S, 3) Cartesian image offsets, zero first
    if pbc_array.any() and min_distance > 0:
        shortest = float(np.linalg.norm(shifts[1:], axis=1).min())
        if shortest < min_distance:
            raise ValueError(
                f"min_distance: every atom has a periodic image {shortest:.3f} Å away (the shortest lattice "
                f"vector), less than min_distance={min_distance} Å; expected a bigger cell or a smaller min_distance"
            )
        packing = n_atoms * (math.pi / 6.0) * min_distance**3 / volume
        if packing > _KEPLER:
            raise ValueError(
                f"min_distance: {n_atoms} atoms at least {min_distance} Å apart cannot fit in a periodic cell of "
                f"{volume:.3f} Å^3 (packing fraction {packing:.2f} > {_KEPLER:.2f}); expected a bigger cell or "
                "a smaller min_distance"
            )

    rng = np.random.default_rng(int(seed))
    frac = np.empty((count, n_atoms, 3))
    cart = np.empty((count, n_atoms, 3))
    inverse = np.linalg.inv(cell_array)
    d2 = float(min_distance) ** 2
    for atom in range(n_atoms):
        pending = np.arange(count)
        attempts = 0
        while pending.size:
            if attempts >= max_attempts:
                raise ValueError(
                    f"min_distance: could not place atom {atom + 1} of {n_atoms} ({symbols[atom]}) at least "
                    f"{min_distance} Å from the others in {pending.size} of {count} structures after "
                    f"{max_attempts} random trials each (cell volume {volume:.3f} Å^3, pbc {pbc_array.tolist()}); "
                    "expected a bigger cell, a smaller min_distance or more max_attempts"
                )
            block = min(_BLOCK, max_attempts - attempts)
            trial_frac = rng.random((pending.size, block, 3))
            attempts += block
            if atom == 0 or d2 == 0.0:
                ok = np.ones((pending.size, block), dtype=bool)
            else:
                trial = trial_frac @ cell_array  # (P, B, 3)
                placed = cart[pending, :atom]  # (P, A, 3)
                diff = trial[:, :, None, :] - placed[:, None, :, :]  # (P, B, A, 3)
                if pbc_array.any():
                    f = diff @ inverse
                    f[..., pbc_array] -= np.round(f[..., pbc_array])
                    diff = f @ cell_array
                    # the nearest image after rounding, and its neighbours: exact for any cell
                    dist2 = (((diff[..., None, :] + shifts) ** 2).sum(-1)).min(-1)  # (P, B, A)
                else:
                    dist2 = (diff**2).sum(-1)
                ok = (dist2 >= d2).all(axis=-1)  # (P, B)
            found = ok.any(axis=1)
            first = ok.argmax(axis=1)
            done = pending[found]
            frac[done, atom] = trial_frac[found, first[found]]
            cart[done, atom] = frac[done, atom] @ cell_array
            pending = pending[~found]
    return StructureBatch.from_uniform(
        cart, numbers, cell_array, pbc_array, info={"model_index": np.zeros(count, dtype=np.int64)}
    )
