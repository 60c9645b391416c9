"""The ``amorphous`` validity check: generated amorphous cells with a sane density and no close contacts.

Registered as ``amorphous`` in the entry-point group ``aiida_physgen.validity`` and run by the screening's
``physgen.check_validity`` step on every generated set (:mod:`aiida_physgen.screening.validity`). A kept
structure is

* a bulk cell: periodic along every axis with a volume > 0 (the measures of :mod:`.quality` and the
  empirical potentials of :mod:`.md` need one);
* of a density inside ``density_range`` (g/cm³; the default is the range the melt-quench MD accepts,
  :data:`aiida_physgen.amorphous.md.DENSITY_RANGE`);
* free of close contacts: no two atoms, or an atom and a periodic image of any atom (its own too), closer
  than ``min_distance`` (:func:`aiida_physgen.amorphous.quality.min_pair_distances`, exact for any cell; the
  default is the close-contact distance of the quality report, so the check and the report's
  ``close_contact_share`` count the same pairs).

RePAP draws a whole cell at the training density, so the density rule rarely fires on its output; it is
there for any generator of amorphous cells. Every rejected structure gets one short reason, the same text
for every structure that fails alike, so the report can count them. Pure NumPy/ASE: no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from ase.data import atomic_masses

from ..ml.batch import StructureBatch
from ..ml.settings import is_number
from ..screening.validity import KINDS, ValidityCheck, density_range_setting
from . import quality
from .md import AVOGADRO, DENSITY_RANGE
from .report import QUALITY_DEFAULTS

__all__ = [
    "AmorphousValidity",
    "AmorphousValiditySettings",
    "NOT_BULK",
    "densities",
    "density_reason",
    "contact_reason",
]

NOT_BULK = KINDS["amorphous"].not_of_kind


def density_reason(density_range) -> str:
    """The reason given to a structure whose density lies outside ``density_range``."""
    low, high = density_range
    return f"density outside [{low:g}, {high:g}] g/cm³"


def contact_reason(min_distance: float) -> str:
    """The reason given to a structure with a pair of atoms closer than ``min_distance``."""
    return f"close contact (a pair closer than {min_distance:g} Å)"


@dataclasses.dataclass
class AmorphousValiditySettings:
    """Settings of the ``amorphous`` check; each default is written once, where it is defined.

    :param min_distance: the closest pair allowed, in Å, periodic images included (default: the quality
        report's ``min_distance``, :data:`aiida_physgen.amorphous.report.QUALITY_DEFAULTS`).
    :param density_range: ``[low, high]`` in g/cm³, inclusive (default: the densities the melt-quench MD
        accepts, :data:`aiida_physgen.amorphous.md.DENSITY_RANGE`).
    """

    min_distance: float = QUALITY_DEFAULTS["min_distance"]
    density_range: list = dataclasses.field(default_factory=lambda: list(DENSITY_RANGE))

    def __post_init__(self) -> None:
        if not is_number(self.min_distance) or not 0 <= self.min_distance < math.inf:
            raise ValueError(
                f"min_distance: got {self.min_distance!r}, expected a distance in Å ≥ 0 (0: no close-contact rule)"
            )
        self.min_distance = float(self.min_distance)
        self.density_range = density_range_setting(self.density_range)


def densities(batch: StructureBatch) -> np.ndarray:
    """Mass density of every structure in g/cm³ (standard atomic masses; ``inf`` for a cell of zero volume)."""
    masses = np.add.reduceat(atomic_masses[batch.numbers], batch.offsets[:-1]) if len(batch) else np.zeros(0)
    volumes = np.abs(np.linalg.det(batch.cells)) if len(batch) else np.zeros(0)  # Å³
    with np.errstate(divide="ignore"):
        return masses / (AVOGADRO * volumes * 1e-24)


class AmorphousValidity(ValidityCheck):
    """Keep the bulk cells with a density inside ``density_range`` and no pair closer than ``min_distance``."""

    name = kind = "amorphous"
    settings_class = AmorphousValiditySettings

    def judge(self, cells: StructureBatch, settings: AmorphousValiditySettings) -> list[str | None]:
        low, high = settings.density_range
        density = densities(cells)
        outside = ~((density >= low) & (density <= high))
        close = np.zeros(len(cells), dtype=bool)
        if settings.min_distance > 0:
            close = quality.min_pair_distances(cells) < settings.min_distance
        too_dense, too_close = density_reason(settings.density_range), contact_reason(settings.min_distance)
        return [
            too_dense if wrong_density else too_close if contact else None
            for wrong_density, contact in zip(outside, close)
        ]
