"""The DFT formation energy of crystals against elemental references relaxed with the same engine and settings.

:func:`dft_reference_set` gathers relaxed references (one per element) into one set, as the screening's
``dft_references`` output that the assessors read; :func:`dft_formation_energy` gives one crystal's formation
energy per atom from its relaxation and its references (``workchains/crystal_formation_dft.py``). Both are
calcfunctions, so each number points back at the relaxations it came from; the arithmetic is
:mod:`aiida_physgen.crystals.properties`' (the cheap level's too). The starting references and their labels in a
relaxation set: :mod:`aiida_physgen.workflows.formation_dft`.
"""

from __future__ import annotations

from collections import Counter

from aiida import orm
from aiida.engine import calcfunction

from ..data.structure_set import StructureSet
from .functions import EXIT_CODES, declare_exit_codes

__all__ = ["dft_reference_set", "dft_formation_energy"]


def _reference_batch(pairs):
    """A batch of relaxed references from ``(StructureData, Dict)`` pairs, each checked to hold one element,
    with info ``energy`` (eV) and ``magnetic_moment`` (μB; NaN when not spin-polarised)."""
    from ..ml.batch import StructureBatch

    structures = []
    for symbol, (structure, parameters) in pairs.items():
        atoms = structure.get_ase()
        if set(atoms.get_chemical_symbols()) != {symbol}:
            found = atoms.get_chemical_formula()
            raise ValueError(f"references.{symbol}_structure: expected pure {symbol}, got {found}")
        values = parameters.get_dict()
        if "energy" not in values:
            raise ValueError(f"references.{symbol}_parameters: no 'energy' (a relaxation's output parameters)")
        atoms.info["energy"] = float(values["energy"])
        moment = values.get("magnetic_moment")
        atoms.info["magnetic_moment"] = float(moment) if moment is not None else float("nan")
        structures.append(atoms)
    return StructureBatch.from_atoms(structures, info_keys=("energy", "magnetic_moment"))


def _pairs(references: dict) -> dict:
    """``{symbol: (structure, parameters)}`` from ``<X>_structure`` and ``<X>_parameters`` inputs."""
    symbols = sorted({key.rsplit("_", 1)[0] for key in references})
    pairs = {}
    for symbol in symbols:
        structure, parameters = references.get(f"{symbol}_structure"), references.get(f"{symbol}_parameters")
        if structure is None or parameters is None:
            raise ValueError(f"references: {symbol} needs both {symbol}_structure and {symbol}_parameters")
        pairs[symbol] = (structure, parameters)
    return pairs


@calcfunction
def dft_reference_set(**references):
    """The relaxed elemental references as one set (info ``energy`` in eV, ``magnetic_moment`` in μB, NaN when the
    relaxation was spin-paired).

    :param references: ``<X>_structure`` (a relaxed pure-``X`` structure) and ``<X>_parameters`` (its relaxation's
        output parameters, with ``energy``) for every element ``X``.
    """
    try:
        if not references:
            raise ValueError("references: none given; expected <X>_structure and <X>_parameters per element")
        return {"references": StructureSet(_reference_batch(_pairs(references)))}
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


@calcfunction
def dft_formation_energy(crystal: orm.StructureData, crystal_parameters: orm.Dict, **references):
    """Formation energy per atom (eV) of a relaxed crystal, E_f = (E − Σ n_X μ_X) / N, μ_X the energy per atom of
    the relaxed reference of ``X``. Output ``formation`` also holds μ per element and the crystal's magnetic moment
    when the relaxation was spin-polarised.

    :param crystal: the relaxed crystal.
    :param crystal_parameters: its relaxation's output parameters (``energy`` in eV, ``magnetic_moment``).
    :param references: ``<X>_structure`` and ``<X>_parameters`` of the relaxed reference of every element ``X`` of
        the crystal.
    """
    from ..crystals.properties import formation_energies, reference_energies
    from ..ml.batch import StructureBatch

    try:
        atoms = crystal.get_ase()
        counts = Counter(atoms.get_chemical_symbols())
        pairs = _pairs(references)
        missing = sorted(set(counts) - set(pairs))
        if missing:
            expected = ", ".join(f"{s}_structure and {s}_parameters" for s in missing)
            raise ValueError(f"references: no relaxed reference for {', '.join(missing)} (expected {expected})")
        if "energy" not in crystal_parameters.get_dict():
            raise ValueError("crystal_parameters: no 'energy' (a relaxation's output parameters)")
        mu = reference_energies(_reference_batch({s: pairs[s] for s in counts}), key="energy")
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    energy = float(crystal_parameters["energy"])
    atoms.info["energy"] = energy
    crystal_batch = StructureBatch.from_atoms([atoms], info_keys=("energy",))
    result = {
        "formation_energy_per_atom": float(formation_energies(crystal_batch, mu, key="energy")[0]),
        "energy": energy,
        "natoms": len(atoms),
        "formula": crystal.get_formula(mode="hill"),
        "reference_energy_per_atom": mu,
        "units": "eV",
    }
    moment = crystal_parameters.get_dict().get("magnetic_moment")
    if moment is not None:
        result["magnetic_moment"] = float(moment)
    return {"formation": orm.Dict(result)}


for _function in (dft_reference_set, dft_formation_energy):
    declare_exit_codes(_function, ["ERROR_INVALID_INPUT"], EXIT_CODES)
