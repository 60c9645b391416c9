"""The DFT formation energy of a crystal against elemental references relaxed with the same engine and settings.

:func:`reference_structures` gives one starting structure per element (ASE's reference states, as the cheap level's
references: :func:`~aiida_physgen.crystals.properties.elemental_reference_structures`); relax them in the same
:class:`~aiida_physgen.workflows.relax_set.RelaxSetWorkChain` as the crystal, so that functional, cut-off, k-point
rule, cell relaxation and spin treatment (by composition: :mod:`aiida_physgen.engines.spin`) are the same for all.
:func:`dft_formation_energy` is the calcfunction that turns the relaxed energies into the formation energy per atom,
so the number in the database points back at every relaxation it came from.
"""

from __future__ import annotations

from collections import Counter

from aiida import orm
from aiida.engine import calcfunction

__all__ = ["reference_label", "reference_structures", "dft_formation_energy"]


def reference_label(symbol: str) -> str:
    """The label of an element's reference in the relaxation set (``ref_Fe``)."""
    return f"ref_{symbol}"


def reference_structures(elements) -> dict[str, orm.StructureData]:
    """One unstored starting structure per element of ``elements``, by :func:`reference_label`."""
    from ..crystals.properties import elemental_reference_structures

    batch = elemental_reference_structures(sorted(set(elements)))
    return {reference_label(atoms.get_chemical_symbols()[0]): orm.StructureData(ase=atoms) for atoms in batch}


@calcfunction
def dft_formation_energy(crystal: orm.StructureData, crystal_parameters: orm.Dict, **references) -> orm.Dict:
    """Formation energy per atom (eV) of the relaxed ``crystal`` from its relaxation's ``energy`` and, for every
    element ``X`` in it, the relaxed reference ``X_structure`` with its ``X_parameters``: E_f = (E − Σ n_X μ_X) / N,
    μ_X the reference's energy per atom. Also returns μ per element and the crystal's magnetic moment when the
    relaxation was spin-polarised."""
    counts = Counter(crystal.get_ase().get_chemical_symbols())
    mu = {}
    for symbol in sorted(counts):
        structure, parameters = references.get(f"{symbol}_structure"), references.get(f"{symbol}_parameters")
        if structure is None or parameters is None:
            expected = f"{symbol}_structure and {symbol}_parameters"
            raise ValueError(f"references: no relaxed reference for {symbol} (expected {expected})")
        ase_reference = structure.get_ase()
        if set(ase_reference.get_chemical_symbols()) != {symbol}:
            found = ase_reference.get_chemical_formula()
            raise ValueError(f"references.{symbol}_structure: expected pure {symbol}, got {found}")
        mu[symbol] = float(parameters["energy"]) / len(ase_reference)
    energy = float(crystal_parameters["energy"])
    natoms = sum(counts.values())
    result = {
        "formation_energy_per_atom": (energy - sum(n * mu[s] for s, n in counts.items())) / natoms,
        "energy": energy,
        "natoms": natoms,
        "formula": crystal.get_formula(mode="hill"),
        "reference_energy_per_atom": mu,
        "units": "eV",
    }
    moment = crystal_parameters.get_dict().get("magnetic_moment")
    if moment is not None:
        result["magnetic_moment"] = float(moment)
    return orm.Dict(result)
