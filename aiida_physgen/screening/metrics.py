"""Discovery metrics of a screening: validity, uniqueness, novelty, recovery, DFT cost per new basin.

The relaxed structures are grouped into basins by :func:`aiida_physgen.screening.basins.deduplicate`
(molecules by canonical SMILES from RDKit's bond perception, crystals by pymatgen's
``StructureMatcher``), then counted:

- **valid** structures: for molecules, bond orders could be assigned (a closed-shell valence
  structure), the atoms form one bonded fragment and no atom carries a formal charge beyond the
  total charge (no charge separation such as ``[CH2-]C[OH2+]``); every crystal is valid.
  ``validity = n_valid / n_structures``.
- **unique**: distinct valid basins. ``uniqueness = n_unique / n_valid``.
- **novel**: valid unique basins not in the training set (molecules: same canonical SMILES;
  crystals: ``StructureMatcher`` with the tolerances of the de-duplication). ``novelty = n_novel / n_unique``.
- **recovery** of a reference list (canonical SMILES for molecules, or structures of either kind):
  ``recovered`` / ``missing`` reference keys and ``recovery = len(recovered) / len(reference)``.
- **dft_per_new_basin** = ``n_dft / n_novel``: DFT relaxations spent per novel valid basin.

A share whose denominator is zero is ``None`` (undefined), never a misleading 0 or 1.

Plain NumPy / ASE / RDKit / pymatgen: no AiiDA import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import ase
import numpy as np

from ..ml.batch import atoms_list
from .basins import crystal_key, deduplicate, molecule_graph

__all__ = ["discovery_metrics", "format_metrics_table", "canonical_smiles", "charge_separated"]

#: labels a reference structure may carry in ``atoms.info`` (the first one present names it)
_LABEL_KEYS = ("label", "name", "mp_id", "material_id", "id")


def canonical_smiles(smiles: str, field: str = "smiles") -> str:
    """RDKit canonical SMILES without stereochemistry and with implicit hydrogens: the form
    :func:`aiida_physgen.screening.basins.molecule_graph` keys basins by. ``ValueError`` naming ``field``."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    if not isinstance(smiles, str) or not smiles.strip():
        raise ValueError(f"{field}: expected a SMILES string, got {smiles!r}")
    blocker = BlockLogs()
    try:
        mol = Chem.MolFromSmiles(smiles.strip())
    finally:
        del blocker
    if mol is None:
        raise ValueError(f"{field}: RDKit cannot parse the SMILES {smiles!r}; expected a valid SMILES such as 'CCO'")
    return Chem.MolToSmiles(mol, isomericSmiles=False)


def charge_separated(smiles: str | None, charge: int = 0) -> bool:
    """Whether a SMILES has more atoms with a formal charge than the total ``charge`` needs
    (``[CH2-]C[OH2+]`` for a neutral molecule). Read by RDKit, so bond symbols never count."""
    from rdkit import Chem

    if not smiles:
        return False
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:  # not a SMILES RDKit reads (e.g. "unresolved C2H6O"): no charges to see
        return False
    charged = sum(1 for atom in mol.GetAtoms() if atom.GetFormalCharge() != 0)
    return charged > abs(int(charge))


def _share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _check_structures(structures, field: str) -> list[ase.Atoms]:
    return atoms_list(structures, field, error=ValueError)


def _infer_kind(structures: Sequence[ase.Atoms]) -> str:
    if all(not np.any(a.pbc) for a in structures):
        return "molecule"
    if all(np.all(a.pbc) for a in structures):
        return "crystal"
    raise ValueError(
        "structures: cannot tell molecules from crystals (the structures are neither all non-periodic nor all "
        "fully periodic); pass kind='molecule' or kind='crystal'"
    )


def _reference_label(atoms: ase.Atoms, index: int) -> str:
    for key in _LABEL_KEYS:
        value = atoms.info.get(key) if isinstance(atoms.info, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return f"reference {index} ({atoms.get_chemical_formula('hill')} {crystal_key(atoms)})"


def _bucket(reduced) -> tuple[str, int]:
    """What two reduced crystals must share to match: reduced formula and number of sites."""
    return reduced.composition.reduced_formula, len(reduced)


def _match_buckets(reduced_structures) -> dict[tuple[str, int], list]:
    """Reduced (primitive, Niggli) crystals by :func:`_bucket`. ``StructureMatcher`` without supercells (its default,
    ours) pairs site with site, so reduced cells of different formulas or site counts never match: ``fit`` is only
    worth calling within a bucket (the 167 SiO2 training structures fall into buckets of 1 to 20 by site count)."""
    buckets: dict[tuple[str, int], list] = {}
    for structure in reduced_structures:
        buckets.setdefault(_bucket(structure), []).append(structure)
    return buckets


def discovery_metrics(
    structures: Sequence[ase.Atoms],
    energies: Sequence[float] | None,
    training: Sequence[ase.Atoms] | None = None,
    reference: Sequence[ase.Atoms] | Sequence[str] | None = None,
    n_dft: int | None = None,
    *,
    kind: str | None = None,
    failed: Sequence[bool] | None = None,
    charge: int = 0,
    ltol: float = 0.2,
    stol: float = 0.3,
    angle_tol: float = 5.0,
) -> dict[str, Any]:
    """Validity, uniqueness, novelty and recovery of relaxed ``structures``.

    :param structures: relaxed structures (all molecules or all crystals).
    :param energies: their total energies in eV (they choose every basin's representative); ``None``
        when there are none (the first member then represents its basin).
    :param training: the training structures; novelty is measured against them (``None``: every
        valid basin counts as novel, and ``training_given`` is ``False``).
    :param reference: structures to find: canonical or non-canonical SMILES (molecules only) or
        ``ase.Atoms`` (molecules keyed by SMILES, crystals matched with ``StructureMatcher``; a
        crystal is named by ``atoms.info['label']`` (or ``name``, ``mp_id``) when it has one).
    :param n_dft: DFT relaxations spent to get ``structures`` (non-negative), for ``dft_per_new_basin``.
    :param kind: ``"molecule"``, ``"crystal"`` or ``None`` to infer from ``pbc``.
    :param failed: per structure, whether its relaxation failed: such structures count in
        ``n_structures`` (and in ``invalid['failed']``) but in no basin, and their energies may be
        ``None`` or NaN. Without it every energy must be finite.
    :param charge: total charge of the molecules (bond orders and charge separation).
    :param ltol, stol, angle_tol: ``StructureMatcher`` tolerances (crystals), as in
        :func:`~aiida_physgen.screening.basins.deduplicate`.
    :returns: ``kind``, ``n_structures``, ``n_valid``, ``validity``, ``n_unique``, ``uniqueness``,
        ``n_novel``, ``novelty``, ``keys`` (valid unique basin keys, lowest energy per atom first),
        ``novel_keys``, ``invalid`` (structure counts: ``failed``, and for molecules ``fragments``,
        ``charge_separated``, ``no_bond_orders``), ``basins`` (one dictionary per basin: :meth:`Basin.to_dict`
        plus ``sound`` and ``novel``), ``training_given``; with ``reference``: ``n_reference``, ``recovered``,
        ``missing`` (reference keys, in reference order) and ``recovery``; with ``n_dft``:
        ``n_dft`` and ``dft_per_new_basin`` (``None`` when nothing novel was found).
    :raises ValueError: naming the field (``structures``, ``energies``, ``training``, ``reference``,
        ``n_dft``, ``kind``) for bad input.
    """
    structures = _check_structures(structures, "structures")
    if energies is None:
        energies = [0.0] * len(structures)
    energies = list(energies)
    if failed is None:
        failed_mask = [False] * len(structures)
    else:
        failed_mask = [bool(flag) for flag in failed]
        if len(failed_mask) != len(structures):
            raise ValueError(
                f"failed: got {len(failed_mask)} flags for {len(structures)} structures; expected one each"
            )
    if len(energies) != len(structures):
        raise ValueError(f"energies: got {len(energies)} energies for {len(structures)} structures; expected one each")
    kept = [index for index, flag in enumerate(failed_mask) if not flag]
    for index in kept:
        value = energies[index]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value)
        ):
            raise ValueError(
                f"energies: structure {index} has energy {value!r}; expected a finite total energy in eV "
                "(flag failed relaxations in `failed`)"
            )
    if n_dft is not None and (isinstance(n_dft, bool) or not isinstance(n_dft, (int, np.integer)) or n_dft < 0):
        raise ValueError(f"n_dft: got {n_dft!r}, expected a non-negative number of DFT relaxations")
    if kind is None:
        kind = _infer_kind(structures) if structures else "molecule"
    if kind not in ("molecule", "crystal"):
        raise ValueError(f"kind: expected 'molecule', 'crystal' or None, got {kind!r}")
    training_list = _check_structures(training, "training") if training is not None else None
    reference_keys: list[str] | None = None
    reference_structures: list[ase.Atoms] | None = None
    if reference is not None:
        if isinstance(reference, (str, ase.Atoms)):
            raise ValueError(
                f"reference: expected a list of SMILES or of ase.Atoms, got a single {type(reference).__name__}"
            )
        reference = list(reference)
        if all(isinstance(item, str) for item in reference):
            if kind != "molecule":
                raise ValueError("reference: SMILES can only be found among molecules; give crystals as ase.Atoms")
            reference_keys = [canonical_smiles(item, f"reference[{index}]") for index, item in enumerate(reference)]
        else:
            reference_structures = _check_structures(reference, "reference")
            if kind == "molecule":
                reference_keys = []
                for index, atoms in enumerate(reference_structures):
                    graph = molecule_graph(atoms, charge=charge)
                    if not (graph.valid and graph.connected and graph.smiles):
                        raise ValueError(
                            f"reference[{index}]: not a valid connected molecule ({graph.error or 'several fragments'})"
                        )
                    reference_keys.append(graph.smiles)
            else:
                reference_keys = [_reference_label(atoms, index) for index, atoms in enumerate(reference_structures)]
        reference_keys = list(dict.fromkeys(reference_keys))  # a reference listed twice counts once

    basins = (
        deduplicate(
            [structures[i] for i in kept], [energies[i] for i in kept], kind, ltol, stol, angle_tol, charge=charge
        )
        if kept
        else []
    )
    for basin in basins:  # back to indices into ``structures``
        basin.members = [kept[i] for i in basin.members]
        basin.representative = kept[basin.representative]
    invalid = {"fragments": 0, "charge_separated": 0, "no_bond_orders": 0} if kind == "molecule" else {}
    invalid["failed"] = len(structures) - len(kept)
    rows = []
    for basin in basins:
        row = basin.to_dict()
        if kind == "molecule":
            if not basin.connected:
                row["status"] = "fragments"
            elif charge_separated(basin.key, charge):
                row["status"] = "charge_separated"
            elif not basin.valid:
                row["status"] = "no_bond_orders"
            else:
                row["status"] = "valid"
            if row["status"] != "valid":
                invalid[row["status"]] += basin.count
        else:
            row["status"] = "valid"
        row["sound"] = row["status"] == "valid"
        rows.append(row)
    sound = [(basin, row) for basin, row in zip(basins, rows) if row["sound"]]

    matcher = None
    if kind == "crystal":
        from pymatgen.analysis.structure_matcher import StructureMatcher

        from .basins import reduced_structure

        matcher = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, scale=True)
        sound_pmg = [reduced_structure(structures[basin.representative]) for basin, _ in sound]
        sound_buckets = _match_buckets(sound_pmg)

        def matches(one, others) -> bool:
            """Whether ``one`` matches any of ``others`` (all reduced once, bucketed by :func:`_match_buckets`)."""
            return any(matcher.fit(one, other, skip_structure_reduction=True) for other in others.get(_bucket(one), ()))

    # novelty
    if training_list is None:
        for _, row in sound:
            row["novel"] = True
    elif kind == "molecule":
        known = set()
        for atoms in training_list:
            graph = molecule_graph(atoms, charge=charge)
            if graph.smiles is not None:
                known.add(graph.smiles)
        for _, row in sound:
            row["novel"] = row["key"] not in known
    else:
        training_pmg = _match_buckets(reduced_structure(atoms) for atoms in training_list)
        for (_, row), structure in zip(sound, sound_pmg):
            row["novel"] = not matches(structure, training_pmg)
    for row in rows:
        row.setdefault("novel", False)

    n_structures = len(structures)
    n_valid = sum(row["count"] for _, row in sound)
    n_unique = len(sound)
    novel_keys = [row["key"] for _, row in sound if row["novel"]]
    result: dict[str, Any] = {
        "kind": kind,
        "n_structures": n_structures,
        "n_valid": n_valid,
        "validity": _share(n_valid, n_structures),
        "n_unique": n_unique,
        "uniqueness": _share(n_unique, n_valid),
        "n_novel": len(novel_keys),
        "novelty": _share(len(novel_keys), n_unique),
        "keys": [row["key"] for _, row in sound],
        "novel_keys": novel_keys,
        "invalid": invalid,
        "basins": rows,
        "training_given": training_list is not None,
    }

    # recovery
    if reference_keys is not None:
        if kind == "molecule":
            found = {row["key"] for _, row in sound}
            recovered = [key for key in reference_keys if key in found]
        else:
            recovered = []
            for key, atoms in zip(reference_keys, reference_structures):
                if matches(reduced_structure(atoms), sound_buckets):
                    recovered.append(key)
        result.update(
            {
                "n_reference": len(reference_keys),
                "recovered": recovered,
                "missing": [key for key in reference_keys if key not in recovered],
                "recovery": _share(len(recovered), len(reference_keys)),
            }
        )
    if n_dft is not None:
        result["n_dft"] = int(n_dft)
        result["dft_per_new_basin"] = int(n_dft) / len(novel_keys) if novel_keys else None
    return result


def _cell(metrics: Mapping[str, Any], count: str, share: str | None = None) -> str:
    if count not in metrics:
        return "–"
    value = metrics[count]
    if share is None:
        return str(value)
    fraction = metrics.get(share)
    return f"{value} ({fraction:.0%})" if isinstance(fraction, (int, float)) and math.isfinite(fraction) else f"{value}"


def format_metrics_table(rows: Mapping[str, Mapping[str, Any]], tablefmt: str = "github") -> str:
    """The metrics of several runs side by side (one column per run, e.g. ``generator`` and
    ``random``), one line per metric, with :mod:`tabulate`.

    :param rows: run name → the dictionary :func:`discovery_metrics` returned.
    :param tablefmt: any ``tabulate`` format (``"github"`` renders in Markdown and reads as text).
    """
    from tabulate import tabulate

    if not isinstance(rows, Mapping) or not rows:
        raise ValueError(f"rows: expected a non-empty mapping of run name to metrics, got {rows!r}")
    for name, metrics in rows.items():
        if not isinstance(metrics, Mapping) or "n_structures" not in metrics:
            raise ValueError(f"rows[{name!r}]: expected the dictionary discovery_metrics returns")

    def recovered(metrics):
        if "recovered" not in metrics:
            return "–"
        share = metrics.get("recovery")
        text = f"{len(metrics['recovered'])}/{metrics['n_reference']}"
        return f"{text} ({share:.0%})" if share is not None else text

    def per_basin(metrics):
        if "dft_per_new_basin" not in metrics:
            return "–"
        value = metrics["dft_per_new_basin"]
        return "no new basin" if value is None else f"{value:.2f}"

    lines = [
        ("structures", lambda m: _cell(m, "n_structures")),
        ("valid", lambda m: _cell(m, "n_valid", "validity")),
        ("unique valid basins", lambda m: _cell(m, "n_unique", "uniqueness")),
        ("novel basins", lambda m: _cell(m, "n_novel", "novelty")),
        ("reference recovered", recovered),
        ("DFT relaxations", lambda m: _cell(m, "n_dft")),
        ("DFT relaxations per new basin", per_basin),
    ]
    table = [[label, *(render(metrics) for metrics in rows.values())] for label, render in lines]
    return tabulate(table, headers=["metric", *rows], tablefmt=tablefmt, disable_numparse=True)
