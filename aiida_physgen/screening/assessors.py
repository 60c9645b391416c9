"""Assessors: what a finished screening found, measured the way its domain measures it.

An assessor is one class (:class:`Assessor`) registered under the entry-point group
``aiida_physgen.assessors``::

    [project.entry-points."aiida_physgen.assessors"]
    formation = "aiida_physgen.crystals.assessors:FormationNovelty"

The screening runs each assessor it is given in one ``physgen.assess`` calcfunction after the DFT
basins are known; the assessor reads the screening's sets as plain arrays (:class:`ScreeningData`) and
returns an :class:`Assessment`: flat metrics, one table (rows and its text) and figures (PNG bytes).
``aiida-physgen report <pk>`` prints every assessment's table under its title and links its figures.

The assessors that ship with the package: ``discovery`` (molecules against a known list),
``formation`` (crystals: formation energy, uniqueness, novelty), ``label_consistency`` (conditional
generators: requested against obtained label, Kolmogorov–Smirnov) and ``amorphous`` (RDF, angles,
energies against a reference MD).

Pure Python/NumPy: no AiiDA import.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

from ..ml import settings as settings_module
from ..ml.batch import StructureBatch
from .plugins import PluginRegistry
from .validity import NoSettings

__all__ = ["Assessor", "Assessment", "ScreeningData", "get_assessor", "available_assessors", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "aiida_physgen.assessors"


@dataclasses.dataclass
class ScreeningData:
    """What a screening produced, as arrays: the input an assessor reads.

    :param generated: every generated set, by condition name, as generated (before validity).
    :param conditions: the named conditions, as given to the generation.
    :param training: the structures the models learnt from (``None`` for a baseline without training).
    :param valid: the candidates that passed the validity check (all conditions joined; info
        ``condition_index`` and ``set_index``), or ``None`` without a validity step.
    :param representatives: the selected representatives.
    :param cheap: the representatives after the cheap tier (info ``cheap_energy``, ``cheap_failed``), or ``None``.
    :param relaxed: every structure DFT relaxed, with info ``energy`` (eV) and ``basin`` (index into ``basins``).
    :param basins: one row per DFT basin (``name``, ``key``, ``formula``, ``energy``, ``new_minimum``, ...).
    :param funnel: the cheap-tier funnel counts, or ``None``.
    :param references: named reference sets the caller gave (``known``, ``held_out``, ...).
    :param cheap_model: the cheap tier's model when it has one (the EDNN), as a
        :class:`~aiida_physgen.ml.family.TrainedModel`.
    :param cheap_engine: the cheap tier's engine (``cheap``, ``ednn``, ...), or ``None`` without the cheap tier.
    :param cheap_settings: the cheap tier's settings as given (``None``: the engine's defaults), so an assessor
        can put its own structures (elemental references) at the same level.
    :param dft_references: the elemental references relaxed with the DFT settings (info ``energy``), when the
        screening relaxed them; ``None`` otherwise.
    """

    generated: dict[str, StructureBatch]
    conditions: dict[str, dict]
    training: StructureBatch | None = None
    valid: StructureBatch | None = None
    representatives: StructureBatch | None = None
    cheap: StructureBatch | None = None
    relaxed: StructureBatch | None = None
    basins: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    funnel: dict[str, Any] | None = None
    references: dict[str, StructureBatch] = dataclasses.field(default_factory=dict)
    cheap_model: Any = None
    cheap_engine: str | None = None
    cheap_settings: dict[str, Any] | None = None
    dft_references: StructureBatch | None = None


@dataclasses.dataclass
class Assessment:
    """What an assessor returns.

    :param metrics: flat, JSON-able numbers and strings (queryable in the output ``Dict``).
    :param rows: one table as a list of rows (dictionaries with the same keys).
    :param text: the table as aligned text, printed once in the report under the assessor's title.
    :param figures: PNG images by name (the report writes them to files and links them).
    """

    metrics: dict[str, Any]
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    text: str = ""
    figures: dict[str, bytes] = dataclasses.field(default_factory=dict)


class Assessor(abc.ABC):
    """Measures a finished screening.

    Subclasses set ``name``, ``title`` (the report's section heading), ``settings_class`` (a dataclass)
    and ``requires`` (the reference sets it needs, e.g. ``('held_out',)``), and implement :meth:`assess`.
    """

    name: str = ""
    title: str = ""
    settings_class: type = NoSettings
    requires: tuple[str, ...] = ()

    def settings(self, values: Mapping[str, Any] | None, where: str | None = None):
        """The settings dataclass from a dictionary; unknown keys or bad values raise ``ValueError`` naming
        ``assessors.<name>.<field>``."""
        return settings_module.from_dict(self.settings_class, values, where=where or f"assessors.{self.name}")

    def check_references(self, names: set[str] | list[str]) -> str | None:
        """A message naming the missing reference sets, else ``None`` (checked at launch)."""
        missing = [name for name in self.requires if name not in names]
        if missing:
            return f"references: the {self.name} assessor needs the reference set(s) {missing}; got {sorted(names)}"
        return None

    @abc.abstractmethod
    def assess(self, data: ScreeningData, settings) -> Assessment:
        """Measure ``data``; raise ``ValueError`` with a clear message when it cannot."""


_REGISTRY: PluginRegistry[Assessor] = PluginRegistry(ENTRY_POINT_GROUP, Assessor, "assessor")


def get_assessor(name: str | Assessor, field: str = "assessors") -> Assessor:
    """The assessor called ``name`` (an entry point of ``aiida_physgen.assessors``)."""
    return _REGISTRY.get(name, field)


def available_assessors() -> list[str]:
    return _REGISTRY.available()
