"""Validity checks: which generated structures are worth selecting, by the kind of structure.

A check is one class (:class:`ValidityCheck`) registered under the entry-point group
``aiida_physgen.validity``::

    [project.entry-points."aiida_physgen.validity"]
    crystal = "aiida_physgen.crystals.validity:CrystalValidity"

It reads a whole :class:`~aiida_physgen.ml.batch.StructureBatch` and returns, for every structure,
``None`` (keep) or the reason it is rejected (a short phrase, counted in the report). The checks that
ship with the package are ``none``, ``molecule`` (:mod:`aiida_physgen.molecules.validity`), ``crystal``,
``sheet`` and ``amorphous`` (in their domains' folders).

Pure NumPy/ASE/pymatgen/RDKit: no AiiDA import (the calcfunction ``physgen.check_validity`` wraps it).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..ml import settings as settings_module
from ..ml.batch import StructureBatch
from ..ml.settings import is_number
from .plugins import PluginRegistry

__all__ = [
    "ValidityCheck",
    "NoCheck",
    "ValidityResult",
    "get_validity_check",
    "available_validity_checks",
    "apply_validity",
    "ENTRY_POINT_GROUP",
    "pbc_flags",
    "is_bulk",
    "judge_of_kind",
    "density_range_setting",
    "StructureKind",
    "KINDS",
]

ENTRY_POINT_GROUP = "aiida_physgen.validity"


@dataclasses.dataclass
class NoSettings:
    """A check without settings."""


def pbc_flags(pbc: Sequence[bool] | bool) -> list[bool]:
    """The periodicity of a target as three flags, from one flag for every axis or one flag per axis."""
    return [bool(pbc)] * 3 if isinstance(pbc, (bool, np.bool_, int)) else [bool(p) for p in pbc]


def is_bulk(batch: StructureBatch) -> np.ndarray:
    """Per structure: periodic along every axis with a cell of positive volume (a crystal or a bulk cell)."""
    volumes = np.abs(np.linalg.det(batch.cells)) if len(batch) else np.zeros(0)
    return batch.pbc.all(axis=1) & (volumes > 1e-8)


def judge_of_kind(
    batch: StructureBatch, of_kind: np.ndarray, wrong_kind: str, judge: Callable[[StructureBatch], Sequence[str | None]]
) -> list[str | None]:
    """One reason per structure: ``wrong_kind`` where ``of_kind`` is false, else what ``judge`` says of it
    (``judge`` gets the structures of the kind as one batch and returns a reason or ``None`` for each)."""
    reasons: list[str | None] = [None if ok else wrong_kind for ok in of_kind]
    which = np.flatnonzero(of_kind)
    if which.size:
        for index, why in zip(which, judge(batch.subset(which))):
            reasons[int(index)] = why
    return reasons


def density_range_setting(pair) -> list[float]:
    """A ``density_range`` setting checked: ``[low, high]`` in g/cm³ with finite 0 <= low < high."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(is_number(v) for v in pair):
        raise ValueError(f"density_range: got {pair!r}, expected [low, high] in g/cm³")
    low, high = (float(v) for v in pair)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise ValueError(f"density_range: got {pair!r}, expected finite 0 <= low < high in g/cm³")
    return [low, high]


@dataclasses.dataclass(frozen=True)
class StructureKind:
    """What a kind of structure is, for the checks meant for it: ``periodic`` (``True``: every axis, with a cell
    of positive volume; ``False``: no axis; ``None``: the check decides), the plural it ``reads`` as in messages,
    and the reason given to a structure that is ``not_of_kind``."""

    periodic: bool | None
    reads: str
    not_of_kind: str = ""


_BULK = "needs pbc on all axes and a cell volume > 0"
#: the kinds of structure the checks are meant for; a check sets ``kind`` and takes the rest from here
KINDS: dict[str, StructureKind] = {
    "molecule": StructureKind(False, "molecules", "not a molecule (periodic along an axis)"),
    "crystal": StructureKind(True, "crystals", f"not a crystal ({_BULK})"),
    "amorphous": StructureKind(True, "bulk cells", f"not a bulk cell ({_BULK})"),
    "sheet": StructureKind(None, "sheets"),
    "any": StructureKind(None, "structures"),
}


class ValidityCheck:
    """Keep or reject each structure of a batch, with a reason.

    Subclasses set ``name``, ``kind`` (the kind of structure they are meant for: one of :data:`KINDS`,
    ``molecule``, ``crystal``, ``sheet``, ``amorphous`` or ``any``, whose ``periodic``, ``reads`` and
    ``wrong_kind`` they take unless they set them) and ``settings_class`` (a dataclass whose ``__post_init__``
    checks its fields). A check for structures periodic along every axis, or along none, implements
    :meth:`judge` (the structures of its kind); it gets :meth:`check_kind` and :meth:`reasons` from here. A
    check of structures of any kind implements :meth:`reasons`.
    """

    name: str = ""
    kind: str = "any"
    settings_class: type = NoSettings
    #: the periodicity of what the check reads: ``True`` (every axis), ``False`` (no axis), ``None`` (any)
    periodic: bool | None = None
    #: what the check reads, for :meth:`check_kind`'s message (``"crystals"``)
    reads: str = "structures"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = KINDS.get(cls.kind)
        if kind is not None:
            for attribute, value in (
                ("periodic", kind.periodic),
                ("reads", kind.reads),
                ("wrong_kind", kind.not_of_kind),
            ):
                if getattr(cls, attribute) == getattr(ValidityCheck, attribute):
                    setattr(cls, attribute, value)

    def settings(self, values: Mapping[str, Any] | None, where: str = "validity_settings"):
        """The settings dataclass from a dictionary; unknown keys or bad values raise ``ValueError`` naming
        ``<where>.<field>``."""
        return settings_module.from_dict(self.settings_class, values, where=where)

    def check_kind(self, pbc: Sequence[bool] | None) -> str | None:
        """A message when structures of this periodicity cannot be checked by this check, else ``None``
        (``pbc=None``: not known at launch, so nothing to say)."""
        if pbc is None or self.periodic is None:
            return None
        flags = pbc_flags(pbc)
        if all(flags) if self.periodic else not any(flags):
            return None
        others = ", ".join(name for name in available_validity_checks() if name not in (self.name, "none"))
        return (
            f"the {self.name} check judges {self.reads} (periodic along {'every' if self.periodic else 'no'} "
            f"axis); the target has pbc {flags}: choose the validity check of its kind ({others}) or 'none'"
        )

    #: the reason given to a structure not of the check's kind (with ``periodic`` set: the default :meth:`reasons`
    #: rejects it with this and calls :meth:`judge` on the others)
    wrong_kind: str = ""

    def reasons(self, batch: StructureBatch, settings) -> list[str | None]:
        """For every structure of ``batch``: ``None`` to keep it, or why it is rejected.

        By default: :attr:`wrong_kind` for a structure that is not of the check's periodicity (``periodic=True``:
        a bulk cell, every axis periodic with a volume; ``False``: no axis periodic), and :meth:`judge`, given
        the others as one batch, for the rest. A check that judges structures of any kind overrides this."""
        if self.periodic is None:
            raise NotImplementedError(f"the {self.name} check sets no periodicity: override reasons()")
        if len(batch) == 0:
            of_kind = np.zeros(0, dtype=bool)
        else:
            of_kind = is_bulk(batch) if self.periodic else ~batch.pbc.any(axis=1)
        return judge_of_kind(batch, of_kind, self.wrong_kind, lambda structures: self.judge(structures, settings))

    def judge(self, batch: StructureBatch, settings) -> Sequence[str | None]:
        """For every structure of ``batch`` (all of the check's kind): ``None`` to keep it, or why it is
        rejected. Implement this, or :meth:`reasons` for a check of structures of any kind."""
        raise NotImplementedError(f"the {self.name} check implements neither judge() nor reasons()")


class NoCheck(ValidityCheck):
    """Keep everything (the generated sets are only joined into one)."""

    name = "none"

    def reasons(self, batch: StructureBatch, settings) -> list[str | None]:
        return [None] * len(batch)


_REGISTRY: PluginRegistry[ValidityCheck] = PluginRegistry(ENTRY_POINT_GROUP, ValidityCheck, "validity check")


def get_validity_check(name: str | ValidityCheck, field: str = "validity") -> ValidityCheck:
    """The validity check called ``name`` (an entry point of ``aiida_physgen.validity``)."""
    return _REGISTRY.get(name, field)


def available_validity_checks() -> list[str]:
    return _REGISTRY.available()


@dataclasses.dataclass
class ValidityResult:
    """What :func:`apply_validity` kept.

    :param valid: the kept structures of every set, joined in set order, with the sets' info arrays and
        ``condition_index`` (which set) and ``set_index`` (index in its set).
    :param counts: per set name: ``generated``, ``valid`` and ``reasons`` (reason → count).
    """

    valid: StructureBatch
    counts: dict[str, dict[str, Any]]

    @property
    def totals(self) -> dict[str, Any]:
        reasons: Counter = Counter()
        for row in self.counts.values():
            reasons.update(row["reasons"])
        return {
            "generated": sum(r["generated"] for r in self.counts.values()),
            "valid": sum(r["valid"] for r in self.counts.values()),
            "reasons": dict(reasons),
        }


def apply_validity(check: ValidityCheck, sets: Mapping[str, StructureBatch], settings) -> ValidityResult:
    """Run ``check`` on every named set and join what it keeps.

    :raises ValueError: when the check does not give one verdict per structure.
    """
    kept, counts = [], {}
    for position, (name, batch) in enumerate(sets.items()):
        reasons = check.reasons(batch, settings)
        if len(reasons) != len(batch):
            raise ValueError(f"validity check {check.name!r} gave {len(reasons)} verdicts for {len(batch)} structures")
        keep = [i for i, reason in enumerate(reasons) if reason is None]
        counts[name] = {
            "generated": len(batch),
            "valid": len(keep),
            "reasons": dict(Counter(r for r in reasons if r is not None)),
        }
        subset = batch.subset(keep)
        subset.info["condition_index"] = np.full(len(keep), position, dtype=np.int64)
        subset.info["set_index"] = np.asarray(keep, dtype=np.int64)
        kept.append(subset)
    # info arrays that only some sets carry (a condition's own labels) are not joined: each set keeps them
    return ValidityResult(StructureBatch.concatenate(kept), counts)
