"""The ``crystal`` validity check: closest pair, density and charge balance of generated crystals.

Registered as ``crystal`` in the entry-point group ``aiida_physgen.validity`` and run by the screening's
``physgen.check_validity`` step on every generated set (:mod:`aiida_physgen.screening.validity`). The
measurements are :func:`aiida_physgen.crystals.properties.validity`; this module only turns them into
one reason per rejected crystal, the same text for every crystal that fails alike, so the report can
count them.

Pure NumPy/ASE/pymatgen: no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ..ml.batch import StructureBatch
from ..screening.validity import ValidityCheck
from . import properties

__all__ = ["CrystalValidity", "CrystalValiditySettings", "NOT_A_CRYSTAL"]

#: the reason given to a structure that is not periodic along every axis with a cell of positive volume
NOT_A_CRYSTAL = "not a crystal (needs pbc on all axes and a cell volume > 0)"


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass
class CrystalValiditySettings:
    """Settings of the ``crystal`` check; each default is written here only.

    :param min_distance: the closest pair allowed, in Å, periodic images included (0.5 Å: GPAW refuses closer
        pairs, and no real crystal has them).
    :param density_range: ``[low, high]`` in g/cm³, inclusive (1–25: from the lightest molecular solids to
        above osmium's 22.6).
    :param charge_balance: ask for charge-balanced oxidation states (pymatgen's guesses) of the compositions
        that hold an anion former (N, P, O, S, Se, F, Cl, Br, I); intermetallics are never judged by it.
    """

    min_distance: float = 0.5
    density_range: list = dataclasses.field(default_factory=lambda: [1.0, 25.0])
    charge_balance: bool = True

    def __post_init__(self) -> None:
        if not _number(self.min_distance) or not 0 < self.min_distance < math.inf:
            raise ValueError(f"min_distance: got {self.min_distance!r}, expected a positive distance in Å")
        self.min_distance = float(self.min_distance)
        pair = self.density_range
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_number(v) for v in pair):
            raise ValueError(f"density_range: got {pair!r}, expected [low, high] in g/cm³")
        low, high = (float(v) for v in pair)
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
            raise ValueError(f"density_range: got {pair!r}, expected finite 0 <= low < high in g/cm³")
        self.density_range = [low, high]
        if not isinstance(self.charge_balance, (bool, np.bool_)):
            raise ValueError(f"charge_balance: got {self.charge_balance!r}, expected true or false")
        self.charge_balance = bool(self.charge_balance)


def _is_crystal(batch: StructureBatch) -> np.ndarray:
    volumes = np.abs(np.linalg.det(batch.cells)) if len(batch) else np.zeros(0)
    return batch.pbc.all(axis=1) & (volumes > 1e-8)


class CrystalValidity(ValidityCheck):
    """Keep the crystals with no pair closer than ``min_distance``, a density inside ``density_range`` and,
    where it applies, charge-balanced oxidation states; a structure that is not a crystal is rejected too."""

    name = "crystal"
    kind = "crystal"
    settings_class = CrystalValiditySettings

    def check_kind(self, pbc: Sequence[bool] | bool | None) -> str | None:
        if pbc is None:
            return None
        flags = [bool(pbc)] * 3 if isinstance(pbc, (bool, np.bool_, int)) else [bool(p) for p in pbc]
        if not all(flags):
            return (
                f"the crystal check judges crystals (periodic along every axis); the target has pbc {flags}: "
                "choose the validity check of its kind (molecule, sheet, ...) or 'none'"
            )
        return None

    def reasons(self, batch: StructureBatch, settings: CrystalValiditySettings) -> list[str | None]:
        crystal = _is_crystal(batch)
        reasons: list[str | None] = [None if ok else NOT_A_CRYSTAL for ok in crystal]
        which = np.flatnonzero(crystal)
        if which.size == 0:
            return reasons
        flags = properties.validity(
            batch.subset(which),
            min_distance=settings.min_distance,
            density_range=tuple(settings.density_range),
            charge_balance=settings.charge_balance,
        )
        for index, why in zip(which, properties.validity_reasons(flags, values=False)):
            reasons[int(index)] = why or None
        return reasons
