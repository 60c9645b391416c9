"""The ``sheet`` validity check: generated porous-graphene sheets that keep to the lattice rules.

Registered as ``sheet`` in the entry-point group ``aiida_physgen.validity`` and run by the screening's
``physgen.check_validity`` step on every generated set (:mod:`aiida_physgen.screening.validity`). The rules
are those the training sheets are made with (:mod:`aiida_physgen.ml.graphene`):

* the sheet is all carbon, periodic in x and y, and every atom sits on a carbon site of the honeycomb
  lattice of its cell (:func:`~aiida_physgen.ml.graphene.batch_to_sheets`, one atom per site);
* no carbon is left with fewer than ``min_neighbours`` carbon neighbours: the random training sheets are
  pruned of such atoms (:func:`~aiida_physgen.ml.graphene.prune_dangling`), so a generated sheet that has
  them is not a sheet of the kind the models learnt. An atom with no neighbour at all is *isolated*, one
  with fewer than ``min_neighbours`` *dangling*;
* at least ``min_vacancies`` empty carbon sites: a sheet without a hole is pristine graphene, not a porous
  sheet (every training sheet has at least one hole), and as the lowest energy per atom it would take the
  DFT budget of every screening;
* optionally, no more than ``max_atoms`` atoms: a sheet too large for the screening's DFT (a generated 4×
  sheet of 1,600 atoms) is not selected, though it is still generated and assessed.

Every rejected sheet gets one short reason, the same text for every sheet that fails alike, so the report
can count them. Pure NumPy: no AiiDA import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..ml import graphene
from ..ml.batch import StructureBatch
from ..screening.validity import ValidityCheck, pbc_flags

__all__ = [
    "SheetValidity",
    "SheetValiditySettings",
    "NOT_CARBON",
    "NOT_PERIODIC",
    "OFF_LATTICE",
    "ISOLATED",
    "dangling_reason",
    "too_large_reason",
    "too_few_vacancies_reason",
]

NOT_CARBON = "not all carbon"
NOT_PERIODIC = "not periodic in x and y"
OFF_LATTICE = "atoms off the honeycomb lattice sites"
ISOLATED = "isolated carbon (no neighbour)"


def dangling_reason(min_neighbours: int) -> str:
    """The reason given to a sheet with an atom of 1 to ``min_neighbours - 1`` carbon neighbours."""
    return f"dangling carbon (fewer than {min_neighbours} neighbours)"


def too_few_vacancies_reason(min_vacancies: int) -> str:
    """The reason given to a sheet with fewer than ``min_vacancies`` empty carbon sites."""
    return "no vacancy (pristine, not porous)" if min_vacancies == 1 else f"fewer than {min_vacancies} vacancies"


def too_large_reason(max_atoms: int) -> str:
    """The reason given to a sheet with more than ``max_atoms`` atoms."""
    return f"more than {max_atoms} atoms (too large for the DFT)"


@dataclasses.dataclass
class SheetValiditySettings:
    """Settings of the ``sheet`` check; each default is written here only.

    :param min_neighbours: the fewest carbon neighbours an atom may have (0–3). The default 2 is the rule the
        training sheets are pruned with (no dangling chains, no lone atoms); 1 allows chain ends, 0 turns the
        neighbour rule off (only the lattice rule remains).
    :param min_vacancies: the fewest empty carbon sites a kept sheet has (default 1: no pristine sheet; 0 keeps
        it).
    :param max_atoms: the most atoms a kept sheet may have; ``None`` (default): no limit. A screening whose DFT
        cannot afford the upscaled sheets (LCAO at the Γ point: about 2 GB and half a minute per SCF step for a
        400-atom 1× sheet on one core; a 4× sheet is four times the atoms) sets it, so that only the sheets DFT
        can take are selected; every generated set is still assessed.
    """

    min_neighbours: int = 2
    min_vacancies: int = 1
    max_atoms: int | None = None

    def __post_init__(self) -> None:
        value = self.min_neighbours
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 3:
            raise ValueError(
                f"min_neighbours: got {value!r}, expected an integer from 0 to 3 (carbon neighbours on "
                "the honeycomb lattice)"
            )
        self.min_neighbours = int(value)
        value = self.min_vacancies
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"min_vacancies: got {value!r}, expected a non-negative number of empty carbon sites")
        self.min_vacancies = int(value)
        limit = self.max_atoms
        if limit is not None and (
            isinstance(limit, (bool, np.bool_)) or not isinstance(limit, (int, np.integer)) or limit < 1
        ):
            raise ValueError(f"max_atoms: got {limit!r}, expected a positive number of atoms or null (no limit)")
        self.max_atoms = None if limit is None else int(limit)


def _lattice_reason(atoms) -> str | None:
    """Why one structure cannot be read onto the honeycomb lattice of its cell, or ``None``."""
    try:
        graphene.atoms_to_occupancy(atoms)
    except ValueError as error:
        message = str(error)
        if "all-carbon" in message:
            return NOT_CARBON
        if "not periodic" in message:
            return NOT_PERIODIC
        return OFF_LATTICE
    return None


def _occupancies(batch: StructureBatch) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Every structure's zig-zag occupancy (``None`` when it is off the lattice) and the lattice reasons.

    One vectorised pass when the whole set reads onto one lattice (what a generator writes), else one by
    one, so a bad sheet is named and the others are still read."""
    try:
        sheets, _ = graphene.batch_to_sheets(batch, where="structures")
    except ValueError:  # some sheet is off the lattice: read them one by one below, naming each bad one
        sheets = None
    if sheets is not None:
        return list(sheets), [None] * len(batch)
    occupancies: list[np.ndarray | None] = []
    reasons: list[str | None] = []
    for index in range(len(batch)):
        atoms = batch[index]
        reason = _lattice_reason(atoms)
        reasons.append(reason)
        occupancies.append(None if reason else graphene.atoms_to_occupancy(atoms)[0])
    return occupancies, reasons


class SheetValidity(ValidityCheck):
    """Keep the sheets whose atoms are all carbon on the honeycomb sites of their cell, each with at least
    ``min_neighbours`` carbon neighbours, with at least ``min_vacancies`` empty sites (and, with ``max_atoms``,
    no larger than that)."""

    name = "sheet"
    kind = "sheet"
    settings_class = SheetValiditySettings

    def check_kind(self, pbc: Sequence[bool] | bool | None) -> str | None:
        if pbc is None:
            return None
        flags = pbc_flags(pbc)
        if len(flags) != 3 or not (flags[0] and flags[1]):
            return (
                f"the sheet check reads sheets periodic in x and y, but the target's pbc is {pbc!r}; choose "
                "another validity check"
            )
        return None

    def reasons(self, batch: StructureBatch, settings: SheetValiditySettings) -> list[str | None]:
        if len(batch) == 0:
            return []
        reasons: list[str | None] = [None] * len(batch)
        n_atoms = np.asarray(batch.n_atoms)
        large = n_atoms > settings.max_atoms if settings.max_atoms is not None else np.zeros(len(batch), bool)
        for i in np.flatnonzero(large):
            reasons[int(i)] = too_large_reason(settings.max_atoms)
        empty = n_atoms == 0
        keep = np.flatnonzero(~empty & ~large)
        for i in np.flatnonzero(empty):
            reasons[int(i)] = "no atoms"
        if keep.size == 0:
            return reasons
        subset = batch if keep.size == len(batch) else batch.subset(keep)
        occupancies, lattice_reasons = _occupancies(subset)
        fewest = _fewest_neighbours(occupancies) if settings.min_neighbours else {}
        for position, index in enumerate(keep):
            index = int(index)
            occupancy = occupancies[position]
            if lattice_reasons[position] is not None:
                reasons[index] = lattice_reasons[position]
            elif (
                int(graphene.Lattice.from_zigzag_shape(occupancy.shape).mask().sum() - occupancy.sum())
                < settings.min_vacancies
            ):
                reasons[index] = too_few_vacancies_reason(settings.min_vacancies)
            elif position in fewest and fewest[position] == 0:
                reasons[index] = ISOLATED
            elif position in fewest and fewest[position] < settings.min_neighbours:
                reasons[index] = dangling_reason(settings.min_neighbours)
        return reasons


def _fewest_neighbours(occupancies: list[np.ndarray | None]) -> dict[int, int]:
    """The fewest carbon neighbours of any atom of every sheet read onto the lattice (by position in the
    list); sheets of one shape are counted together."""
    by_shape: dict[tuple, list[int]] = {}
    for position, occupancy in enumerate(occupancies):
        if occupancy is not None and occupancy.any():
            by_shape.setdefault(occupancy.shape, []).append(position)
    fewest: dict[int, int] = {}
    for positions in by_shape.values():
        stack = np.stack([occupancies[p] for p in positions])
        counts = np.where(stack, graphene.coordination(stack), 4)  # vacant sites never count as the fewest
        for position, value in zip(positions, counts.reshape(len(positions), -1).min(axis=1)):
            fewest[position] = int(value)
    return fewest
