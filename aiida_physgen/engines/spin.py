"""Spin polarisation by composition: which structures the DFT engines run spin-polarised, from what moments.

A structure that holds one of :data:`MAGNETIC_ELEMENTS` (the 3d magnets Cr, Mn, Fe, Co, Ni) is relaxed
spin-polarised unless the user's overrides say otherwise (GPAW ``spinpol``, VASP ``ispin``): its formation energy
would be biased without it, and the Materials Project energies that CHGNet learned are spin-polarised. The initial
moments are the Materials Project's (pymatgen's ``MPRelaxSet`` MAGMOM table: Fe, Mn, Ni, Cr 5 μB, Co 0.6, and 0.6
for every element it does not list). Used by :class:`~aiida_physgen.engines.gpaw.GpawEngine` (``spinpol`` and
per-atom ``magmoms``) and :class:`~aiida_physgen.engines.vasp.VaspEngine` (``ispin`` 2 and ``magmom``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

__all__ = ["MAGNETIC_ELEMENTS", "initial_moments"]

#: elements whose compounds are relaxed spin-polarised by default
MAGNETIC_ELEMENTS = frozenset({"Cr", "Mn", "Fe", "Co", "Ni"})
#: the Materials Project's moment for an element its table does not list (μB)
_DEFAULT_MOMENT = 0.6


@functools.cache
def _table() -> dict[str, float]:
    from pymatgen.io.vasp.sets import MPRelaxSet

    return {symbol: float(value) for symbol, value in MPRelaxSet.CONFIG["INCAR"]["MAGMOM"].items()}


def initial_moments(symbols: Iterable[str]) -> list[float] | None:
    """Initial magnetic moments (μB), one per atom of ``symbols`` in their order, when they hold a magnetic
    element; ``None`` otherwise (run spin-paired)."""
    symbols = list(symbols)
    if not MAGNETIC_ELEMENTS.intersection(symbols):
        return None
    table = _table()
    return [table.get(symbol, _DEFAULT_MOMENT) for symbol in symbols]
