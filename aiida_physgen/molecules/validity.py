"""The ``molecule`` validity check: molecular-graph sanity of generated, unrelaxed molecules.

Registered as ``molecule`` in the entry-point group ``aiida_physgen.validity`` and run by the screening's
``physgen.check_validity`` step on every generated set (:mod:`aiida_physgen.screening.validity`). A kept
structure is

* a molecule: periodic along no axis (a box around it is ignored);
* free of atoms on top of each other: no pair closer than ``min_fraction`` times the sum of the two
  atoms' covalent radii (``ase.data.covalent_radii``; the same radii ASE's ``natural_cutoffs`` scales);
* one bonded fragment, two atoms being bonded when they are closer than ``bond_factor`` times the sum of
  their covalent radii (ASE's ``natural_cutoffs(atoms, mult=bond_factor)`` with its neighbour list);
* optionally (``bond_orders``, off by default) a molecule RDKit assigns bond orders to for the total
  ``charge``, with no charge separation (:func:`aiida_physgen.screening.basins.molecule_graph`, the graph
  the basins are keyed by). Off by default because raw generated coordinates, whose bonds are still
  stretched, seldom pass it before they are relaxed: the cheap tier and DFT make the bonds, and the basins
  judge them after (the measurements behind both defaults: :class:`MoleculeValiditySettings`).

Every rejected structure gets one short reason, the same text for every structure that fails alike, so
the report can count them. Pure NumPy/SciPy/ASE/RDKit: no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from ase.data import covalent_radii

from ..ml.batch import StructureBatch
from ..ml.settings import is_number
from ..screening.validity import KINDS, ValidityCheck

__all__ = [
    "MoleculeValidity",
    "MoleculeValiditySettings",
    "NOT_A_MOLECULE",
    "close_reason",
    "fragments_reason",
    "NO_BOND_ORDERS",
    "bond_ratios",
]

NOT_A_MOLECULE = KINDS["molecule"].not_of_kind
#: the reason given to a molecule RDKit assigns no closed-shell bond orders to
NO_BOND_ORDERS = "no bond orders (RDKit)"


def close_reason(min_fraction: float) -> str:
    """The reason given to a structure with a pair of atoms closer than ``min_fraction`` × their radii."""
    return f"atoms too close (a pair under {min_fraction:g} × the sum of their covalent radii)"


def fragments_reason(bond_factor: float) -> str:
    """The reason given to a structure that is not one bonded fragment."""
    return f"several fragments (bonded up to {bond_factor:g} × the sum of covalent radii)"


@dataclasses.dataclass
class MoleculeValiditySettings:
    """Settings of the ``molecule`` check; each default is written here only.

    :param min_fraction: the closest pair allowed, as a fraction of the two atoms' covalent-radius sum
        (0.5: half a bond length; for C–H 0.53 Å, for H–H 0.31 Å; a relaxed molecule has every bonded
        pair near 1, and 0 turns the rule off).
    :param bond_factor: two atoms are bonded when closer than this many times their covalent-radius sum.
        1.6, not the 1.3 of bond perception in relaxed molecules (RDKit's, which keys the basins): the check
        judges raw generated coordinates, whose bonds relaxation still shortens. Measured on the main job's
        1,000 LoGAN candidates (C5H12O, 2 models × 1,200 epochs), each also relaxed with GFN2-xTB: 1.3 keeps
        112 and rejects 888, 88% of which xTB relaxes into sound molecules; the main job's 60 picks from what
        1.3 keeps hold 4 distinct isomers (all 4 selection seeds tried), against 5–6 without the check. 1.6
        keeps 606, of which 100% of the 60 picks end sound, with 5–6 isomers (mean 5.75 against 5.25 without
        the check); 2.0 keeps 984 (5.5).
    :param bond_orders: also ask RDKit for closed-shell bond orders of the raw coordinates. Off: RDKit perceives
        bonds at 1.3 × the radii, so on the same candidates it rejects 455 of the 606 that 1.6 keeps, which xTB
        relaxes into sound molecules; the funnel judges bond orders after the cheap relaxation anyway.
    :param charge: the molecules' total charge, for the bond orders.
    """

    min_fraction: float = 0.5
    bond_factor: float = 1.6
    bond_orders: bool = False
    charge: int = 0

    def __post_init__(self) -> None:
        if not is_number(self.bond_factor) or not 0 < self.bond_factor < math.inf:
            raise ValueError(
                f"bond_factor: got {self.bond_factor!r}, expected a positive factor of the "
                "covalent-radius sum (e.g. 1.6)"
            )
        self.bond_factor = float(self.bond_factor)
        if not is_number(self.min_fraction) or not 0 <= self.min_fraction < self.bond_factor:
            raise ValueError(
                f"min_fraction: got {self.min_fraction!r}, expected a fraction of the covalent-radius "
                f"sum ≥ 0 and below bond_factor={self.bond_factor:g} (0: no close-pair rule)"
            )
        self.min_fraction = float(self.min_fraction)
        if not isinstance(self.bond_orders, (bool, np.bool_)):
            raise ValueError(f"bond_orders: got {self.bond_orders!r}, expected true or false")
        self.bond_orders = bool(self.bond_orders)
        if isinstance(self.charge, (bool, np.bool_)) or not isinstance(self.charge, (int, np.integer)):
            raise ValueError(f"charge: got {self.charge!r}, expected the total charge as an integer")
        self.charge = int(self.charge)


def bond_ratios(batch: StructureBatch, within: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of atoms of the (non-periodic) ``batch`` closer than ``within`` × their covalent-radius
    sum: ``(first, second, ratio)`` with global atom indices into the batch (``first < second``, same
    structure) and the distance over the radius sum. A batch of one composition (a generated set) is done in
    one vectorised pass; others structure by structure with ASE's ``natural_cutoffs`` and neighbour list."""
    view = batch.uniform_view()
    if view is not None:
        positions, numbers = view
        n = positions.shape[1]
        if n < 2:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        i, j = np.triu_indices(n, k=1)
        radii = covalent_radii[numbers]
        ratio = np.linalg.norm(positions[:, j] - positions[:, i], axis=-1) / (radii[i] + radii[j])  # (M, P)
        structure, pair = np.nonzero(ratio < within)
        return structure * n + i[pair], structure * n + j[pair], ratio[structure, pair]
    from ase.neighborlist import natural_cutoffs, neighbor_list

    firsts, seconds, ratios = [], [], []
    for index, atoms in enumerate(batch):
        atoms.pbc = False
        if len(atoms) < 2:
            continue
        first, second, distance = neighbor_list("ijd", atoms, natural_cutoffs(atoms, mult=within))
        keep = first < second
        first, second, distance = first[keep], second[keep], distance[keep]
        radii = covalent_radii[atoms.numbers]
        offset = batch.offsets[index]
        firsts.append(first + offset)
        seconds.append(second + offset)
        ratios.append(distance / (radii[first] + radii[second]))
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(ratios)


class MoleculeValidity(ValidityCheck):
    """Keep the molecules with no atoms on top of each other that form one bonded fragment (and, with
    ``bond_orders``, that RDKit gives closed-shell bond orders); a periodic structure is rejected too."""

    name = kind = "molecule"
    settings_class = MoleculeValiditySettings

    def judge(self, molecules: StructureBatch, settings: MoleculeValiditySettings) -> list[str | None]:
        return _molecule_reasons(molecules, settings)


def _molecule_reasons(molecules: StructureBatch, settings: MoleculeValiditySettings) -> list[str | None]:
    """The reason to reject each structure of ``molecules`` (all non-periodic), or ``None`` to keep it."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    first, second, ratio = bond_ratios(molecules, settings.bond_factor)
    # closest pair per structure, as a fraction of its radius sum
    owner = np.searchsorted(molecules.offsets, first, side="right") - 1
    closest = np.full(len(molecules), np.inf)
    np.minimum.at(closest, owner, ratio)
    # one graph of every atom of the batch: its components are the fragments of each structure
    total = int(molecules.n_atoms.sum())
    graph = coo_matrix((np.ones(first.size), (first, second)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    atom_owner = np.repeat(np.arange(len(molecules)), molecules.n_atoms)
    fragments = np.zeros(len(molecules), dtype=np.int64)
    np.add.at(fragments, np.unique(np.stack([atom_owner, labels]), axis=1)[0], 1)
    too_close, apart = close_reason(settings.min_fraction), fragments_reason(settings.bond_factor)
    reasons: list[str | None] = [
        too_close if near < settings.min_fraction else apart if pieces > 1 else None
        for near, pieces in zip(closest, fragments)
    ]
    if settings.bond_orders:
        from ..screening.basins import molecule_graph

        for position, why in enumerate(reasons):
            if why is not None:
                continue
            perceived = molecule_graph(molecules[position], charge=settings.charge)
            if not perceived.valid:
                reasons[position] = NO_BOND_ORDERS
            elif not perceived.connected:  # RDKit's radii are not ASE's: its graph has the last word here
                reasons[position] = apart
    return reasons
