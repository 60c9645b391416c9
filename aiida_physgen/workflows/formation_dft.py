"""The DFT formation energy of a crystal against elemental references relaxed with the same engine and settings.

:func:`reference_structures` gives one starting structure per element (ASE's reference states, as the cheap level's
references: :func:`~aiida_physgen.crystals.properties.elemental_reference_structures`); relax them in the same
:class:`~aiida_physgen.workflows.relax_set.RelaxSetWorkChain` as the crystal, so that functional, cut-off, k-point
rule, cell relaxation and spin treatment (by composition: :mod:`aiida_physgen.engines.spin`) are the same for all.
The calcfunctions that turn the relaxed energies into formation energies are in
:mod:`aiida_physgen.calculations.formation` (``physgen.dft_formation_energy``, ``physgen.dft_reference_set``).
"""

from __future__ import annotations

from aiida import orm

__all__ = ["REFERENCE_PREFIX", "reference_label", "reference_structures"]

#: the label prefix of an elemental reference in a relaxation set
REFERENCE_PREFIX = "ref_"


def reference_label(symbol: str) -> str:
    """The label of an element's reference in the relaxation set (``ref_Fe``)."""
    return f"{REFERENCE_PREFIX}{symbol}"


def reference_structures(elements) -> dict[str, orm.StructureData]:
    """One unstored starting structure per element of ``elements``, by :func:`reference_label`."""
    from ..crystals.properties import elemental_reference_structures

    batch = elemental_reference_structures(sorted(set(elements)))
    return {reference_label(atoms.get_chemical_symbols()[0]): orm.StructureData(ase=atoms) for atoms in batch}
