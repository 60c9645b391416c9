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

import numpy as np

from ..ml.batch import StructureBatch
from ..ml.settings import is_number
from ..screening.validity import KINDS, ValidityCheck, density_range_setting
from . import properties

__all__ = ["CrystalValidity", "CrystalValiditySettings", "NOT_A_CRYSTAL"]

NOT_A_CRYSTAL = KINDS["crystal"].not_of_kind


@dataclasses.dataclass
class CrystalValiditySettings:
    """Settings of the ``crystal`` check; each default is written here only.

    :param min_distance: the closest pair allowed, in Å, periodic images included (0.5 Å: GPAW refuses closer
        pairs, and no real crystal has them).
    :param density_range: ``[low, high]`` in g/cm³, inclusive (1–25: from the lightest molecular solids to
        above osmium's 22.6).
    :param charge_balance: ask for charge-balanced oxidation states (pymatgen's guesses) of the compositions
        that hold an anion former (N, P, O, S, Se, F, Cl, Br, I); intermetallics are never judged by it.
    :param radius_scale: every pair at least this factor × the sum of the two covalent radii (ASE's; 0.7: the
        shipped half-Heuslers reach 0.78 at the closest; 0 turns the rule off).
    """

    min_distance: float = 0.5
    density_range: list = dataclasses.field(default_factory=lambda: [1.0, 25.0])
    charge_balance: bool = True
    radius_scale: float = 0.7

    def __post_init__(self) -> None:
        if not is_number(self.radius_scale) or not 0 <= self.radius_scale < math.inf:
            raise ValueError(f"radius_scale: got {self.radius_scale!r}, expected a non-negative factor")
        self.radius_scale = float(self.radius_scale)
        if not is_number(self.min_distance) or not 0 < self.min_distance < math.inf:
            raise ValueError(f"min_distance: got {self.min_distance!r}, expected a positive distance in Å")
        self.min_distance = float(self.min_distance)
        self.density_range = density_range_setting(self.density_range)
        if not isinstance(self.charge_balance, (bool, np.bool_)):
            raise ValueError(f"charge_balance: got {self.charge_balance!r}, expected true or false")
        self.charge_balance = bool(self.charge_balance)


class CrystalValidity(ValidityCheck):
    """Keep the crystals with no pair closer than ``min_distance`` nor than ``radius_scale`` × the covalent radii, a
    density inside ``density_range`` and,
    where it applies, charge-balanced oxidation states; a structure that is not a crystal is rejected too."""

    name = kind = "crystal"
    settings_class = CrystalValiditySettings

    def judge(self, crystals: StructureBatch, settings: CrystalValiditySettings) -> list[str | None]:
        flags = properties.validity(
            crystals,
            min_distance=settings.min_distance,
            density_range=tuple(settings.density_range),
            charge_balance=settings.charge_balance,
            radius_scale=settings.radius_scale,
        )
        return [why or None for why in properties.validity_reasons(flags, values=False)]
