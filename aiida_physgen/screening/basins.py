"""De-duplicate relaxed structures into basins.

After DFT relaxation several representatives usually fall into the same minimum. Molecules are
identified by their bond graph (canonical SMILES from RDKit's bond perception), crystals by
pymatgen's ``StructureMatcher``. Every basin keeps its lowest-energy member as representative.

A molecule that fell apart during relaxation is never merged with an intact isomer: it is flagged
``connected=False`` and keyed by the SMILES of its fragments, so a report can show it as such.

Everything here is plain NumPy / ASE / RDKit / pymatgen; no AiiDA import.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import ase
import numpy as np

__all__ = [
    "MolecularGraph",
    "Basin",
    "molecule_graph",
    "spacegroup",
    "crystal_key",
    "deduplicate",
    "count_distinct_valid_molecules",
]

Kind = Literal["molecule", "crystal"]


# ---------------------------------------------------------------------------------------------- molecules
@dataclass(frozen=True)
class MolecularGraph:
    """Bond graph of one molecule.

    :param smiles: canonical SMILES, hydrogens implicit; fragments joined by ``.``; ``None`` only when
        RDKit could not even perceive the connectivity.
    :param connected: the atoms form a single bonded fragment.
    :param valid: RDKit assigned bond orders for the requested total charge and sanitised the result;
        when ``False`` the SMILES describes the connectivity only (single bonds, radicals where
        valences are unfilled).
    :param n_fragments: number of bonded fragments.
    :param error: why bond orders (or connectivity) could not be determined, else ``None``.
    """

    smiles: str | None
    connected: bool
    valid: bool
    n_fragments: int
    error: str | None = None


def _xyz_block(numbers: np.ndarray, positions: np.ndarray) -> str:
    from ase.data import chemical_symbols

    lines = [str(len(numbers)), ""]
    lines.extend(
        f"{chemical_symbols[z]} {x:.8f} {y:.8f} {w:.8f}" for z, (x, y, w) in zip(numbers.tolist(), positions.tolist())
    )
    return "\n".join(lines) + "\n"


def _whole_molecule_positions(atoms: ase.Atoms) -> np.ndarray:
    """Cartesian positions with any periodic wrapping undone.

    Without periodicity the positions are used as they are (a box around a molecule is irrelevant).
    With periodic axes, atoms bonded across a cell boundary (minimum-image distance within covalent
    reach) are moved next to each other by walking the bond graph from the first atom of every
    fragment.
    """
    positions = np.array(atoms.positions, dtype=np.float64)
    if not np.any(atoms.pbc) or len(atoms) < 2:
        return positions
    from ase.neighborlist import natural_cutoffs, neighbor_list

    cutoffs = np.array(natural_cutoffs(atoms, mult=1.3))
    first, second, shift = neighbor_list("ijS", atoms, cutoffs)
    neighbours: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(len(atoms))]
    cell = atoms.cell.array
    for i, j, s in zip(first.tolist(), second.tolist(), shift):
        neighbours[i].append((j, s @ cell))
    unwrapped = positions.copy()
    seen = np.zeros(len(atoms), dtype=bool)
    for start in range(len(atoms)):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([start])
        while queue:
            i = queue.popleft()
            for j, offset in neighbours[i]:
                if not seen[j]:
                    # j's image bonded to i sits at positions[j] + offset; keep its offset relative to i
                    unwrapped[j] = unwrapped[i] + (positions[j] + offset - positions[i])
                    seen[j] = True
                    queue.append(j)
    return unwrapped


def _connectivity_smiles(mol, isomeric: bool) -> str:
    """SMILES of a molecule whose bonds are all single: hydrogens folded into their heavy atom and
    unfilled valences written as radicals, so ``[CH2]`` and ``C`` stay distinct."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    rw = Chem.RWMol(mol)
    for atom in rw.GetAtoms():
        atom.SetNoImplicit(True)
        atom.SetFormalCharge(0)
        if atom.GetAtomicNum() != 1:
            atom.SetNumExplicitHs(sum(1 for n in atom.GetNeighbors() if n.GetAtomicNum() == 1))
    hydrogens = [
        atom.GetIdx()
        for atom in rw.GetAtoms()
        if atom.GetAtomicNum() == 1 and atom.GetDegree() == 1 and atom.GetNeighbors()[0].GetAtomicNum() != 1
    ]
    for index in sorted(hydrogens, reverse=True):
        rw.RemoveAtom(index)
    result = rw.GetMol()
    result.UpdatePropertyCache(strict=False)
    for atom in result.GetAtoms():
        default = table.GetDefaultValence(atom.GetAtomicNum())
        valence = atom.GetDegree() + atom.GetNumExplicitHs()
        atom.SetNumRadicalElectrons(max(0, default - valence) if default > 0 else 0)
    return Chem.MolToSmiles(result, isomericSmiles=isomeric)


def molecule_graph(atoms: ase.Atoms, charge: int = 0, *, isomeric: bool = False) -> MolecularGraph:
    """Perceive bonds of a molecule with RDKit ``rdDetermineBonds`` and return its canonical SMILES.

    :param atoms: the molecule; a box is ignored when ``pbc`` is False, periodic wrapping is undone
        when it is True.
    :param charge: total charge, used to assign bond orders.
    :param isomeric: keep stereochemistry (from the 3-D geometry) in the SMILES. Off by default: the
        bond graph, not the handedness of a conformer, identifies a basin here, so mirror-image
        relaxations of one molecule share a key.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds
    from rdkit.rdBase import BlockLogs

    if len(atoms) == 0:
        raise ValueError("atoms: the structure has no atoms")
    numbers = np.asarray(atoms.numbers)
    positions = _whole_molecule_positions(atoms)
    blocker = BlockLogs()  # silence RDKit's warnings about odd geometries; restored when deleted
    try:
        mol = Chem.MolFromXYZBlock(_xyz_block(numbers, positions))
        if mol is None:
            return MolecularGraph(None, False, False, 0, "RDKit could not read the geometry")
        try:
            rdDetermineBonds.DetermineConnectivity(mol, useHueckel=False, charge=int(charge))
        except Exception as exc:  # RDKit raises ValueError/RuntimeError depending on the failure
            return MolecularGraph(None, False, False, 0, f"connectivity: {exc}")
        n_fragments = len(Chem.GetMolFrags(mol))
        connected = n_fragments == 1
        ordered = Chem.Mol(mol)
        try:
            rdDetermineBonds.DetermineBondOrders(ordered, charge=int(charge), embedChiral=isomeric)
            Chem.SanitizeMol(ordered)
            smiles = Chem.MolToSmiles(Chem.RemoveHs(ordered), isomericSmiles=isomeric)
            # RDKit balances odd bonding with formal charges ([CH2-][OH+]...); more charged atoms than
            # the total charge needs means no closed-shell valence structure: not a valid molecule
            charged = sum(1 for atom in ordered.GetAtoms() if atom.GetFormalCharge() != 0)
            if charged > abs(int(charge)):
                return MolecularGraph(
                    smiles,
                    connected,
                    False,
                    n_fragments,
                    f"formal charges on {charged} atoms for a total charge of {int(charge)}",
                )
            return MolecularGraph(smiles, connected, True, n_fragments, None)
        except Exception as exc:
            error = f"bond orders: {exc}"
        try:
            smiles = _connectivity_smiles(mol, isomeric)
        except Exception as exc:
            return MolecularGraph(None, connected, False, n_fragments, f"{error}; connectivity SMILES: {exc}")
        return MolecularGraph(smiles, connected, False, n_fragments, error)
    finally:
        del blocker


def count_distinct_valid_molecules(
    structures: Iterable[ase.Atoms], charge: int = 0, *, isomeric: bool = False
) -> tuple[int, list[str]]:
    """How many distinct valid, connected molecular graphs are among ``structures``.

    Returns ``(count, sorted SMILES)``; structures whose bond orders cannot be assigned or that are
    made of several fragments are not counted. Accepts any iterable of ``ase.Atoms`` (a
    ``StructureBatch`` included).
    """
    distinct: set[str] = set()
    for atoms in structures:
        graph = molecule_graph(atoms, charge=charge, isomeric=isomeric)
        if graph.valid and graph.connected and graph.smiles is not None:
            distinct.add(graph.smiles)
    smiles = sorted(distinct)
    return len(smiles), smiles


# ---------------------------------------------------------------------------------------------- crystals
def pymatgen_structure(atoms: ase.Atoms):
    """pymatgen ``Structure`` of the bare geometry: magnetic moments, charges and other per-atom
    arrays are dropped so numerical noise in them cannot break symmetry or matching."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if abs(atoms.cell.volume) < 1e-8:
        raise ValueError("atoms: a crystal needs a cell with non-zero volume")
    bare = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    return AseAtomsAdaptor.get_structure(bare)


#: reduced structures by geometry (:func:`reduced_structure`), least recently used first
_REDUCED: OrderedDict[bytes, object] = OrderedDict()
#: the most geometries :func:`reduced_structure` remembers (a few MB)
REDUCED_CACHE_SIZE = 4096


def _geometry_key(atoms: ase.Atoms) -> bytes:
    """The bare geometry of ``atoms`` (numbers, cell, positions to 10^-8 Å) as bytes."""
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    cell = np.round(np.asarray(atoms.cell.array, dtype=float), 8) + 0.0  # + 0.0: no negative zeros
    positions = np.round(np.asarray(atoms.positions, dtype=float), 8) + 0.0
    return numbers.tobytes() + cell.tobytes() + positions.tobytes()


def reduced_structure(atoms: ase.Atoms):
    """:func:`pymatgen_structure`, Niggli-reduced then primitive: what ``StructureMatcher(primitive_cell=True)``
    reduces every structure to before each ``fit``. Reduce once and ``fit(..., skip_structure_reduction=True)``
    where one structure meets many: pymatgen's own cache of reduced structures compares whole structures site by
    site on every lookup (44 s for the novelty of 2 SiO2 basins against 167 training structures, 0.6 s reduced
    once).

    Reductions are remembered by geometry for the life of the process (at most :data:`REDUCED_CACHE_SIZE`):
    pymatgen's ``get_primitive_structure`` takes about 25 ms per SiO2 training structure (up to 360 sites), and
    a study matches the same training set at every level, for every arm and for every target it shares
    structures with (the SiO2 smoke study reduced each training structure four times: 27 s of its 60 s). A copy
    is returned, so callers may change it."""
    key = _geometry_key(atoms)
    reduced = _REDUCED.get(key)
    if reduced is None:
        reduced = pymatgen_structure(atoms).get_reduced_structure("niggli").get_primitive_structure()
        _REDUCED[key] = reduced
        while len(_REDUCED) > REDUCED_CACHE_SIZE:
            _REDUCED.popitem(last=False)
    else:
        _REDUCED.move_to_end(key)
    return reduced.copy()


def spacegroup(atoms: ase.Atoms, symprec: float = 0.1) -> str:
    """International (Hermann-Mauguin) space-group symbol of a crystal, e.g. ``"P3_121"``."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if not symprec > 0:
        raise ValueError(f"symprec: must be positive, got {symprec}")
    return SpacegroupAnalyzer(pymatgen_structure(atoms), symprec=symprec).get_space_group_symbol()


def crystal_key(atoms: ase.Atoms, symprec: float = 0.1) -> str:
    """Label of a crystal basin: its space-group symbol, retried with tighter tolerances when the
    symmetry search fails at ``symprec``; ``"unknown"`` if it never succeeds."""
    from pymatgen.symmetry.analyzer import SymmetryUndeterminedError

    pymatgen_structure(atoms)  # a cell-less structure is an error, not an unknown symmetry
    for tolerance in (symprec, symprec / 10.0, symprec / 100.0):
        try:
            return spacegroup(atoms, symprec=tolerance)
        except SymmetryUndeterminedError:
            continue
    return "unknown"


# ---------------------------------------------------------------------------------------------- basins
@dataclass
class Basin:
    """Structures that relaxed into the same minimum.

    :param representative: index (into the input list) of the lowest-energy member. Members are
        ranked by energy per atom, so a supercell of a crystal competes fairly with its primitive
        cell; for molecules of one composition this is the same as ranking by total energy.
    :param members: indices of all members, lowest energy (per atom) first.
    :param energy: total energy of the representative.
    :param energy_per_atom: energy of the representative divided by its number of atoms.
    :param key: canonical SMILES (molecules) or space-group symbol (crystals).
    :param kind: ``"molecule"`` or ``"crystal"``.
    :param valid: molecules: bond orders could be assigned; crystals: always ``True``.
    :param connected: molecules: one bonded fragment; crystals: always ``True``.
    :param formula: Hill formula of the representative.
    :param energies: total energy of every member, in the order of ``members``.
    """

    representative: int
    members: list[int]
    energy: float
    key: str
    kind: str
    valid: bool = True
    connected: bool = True
    formula: str = ""
    energy_per_atom: float = 0.0
    energies: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.members)

    def to_dict(self) -> dict:
        return {
            "representative": int(self.representative),
            "members": [int(i) for i in self.members],
            "count": self.count,
            "energy": float(self.energy),
            "key": self.key,
            "kind": self.kind,
            "valid": bool(self.valid),
            "connected": bool(self.connected),
            "formula": self.formula,
            "energy_per_atom": float(self.energy_per_atom),
            "energies": [float(e) for e in self.energies],
        }


def _infer_kind(structures: Sequence[ase.Atoms]) -> Kind:
    """Molecules when no structure is periodic; crystals when every one is periodic along some axis (a sheet or
    slab in its vacuum cell is matched as the crystal its cell makes)."""
    periodic = [bool(np.any(a.pbc)) for a in structures]
    if not any(periodic):
        return "molecule"
    if all(periodic):
        return "crystal"
    raise ValueError(
        "kind: cannot infer from pbc (some structures are periodic, some are not); "
        "pass kind='molecule' or kind='crystal'"
    )


def _make_basin(
    members: list[int],
    energies: np.ndarray,
    structures: Sequence[ase.Atoms],
    key: str,
    kind: str,
    valid: bool = True,
    connected: bool = True,
) -> Basin:
    members = sorted(members, key=lambda i: (energies[i] / len(structures[i]), i))
    best = members[0]
    return Basin(
        representative=best,
        members=members,
        energy=float(energies[best]),
        key=key,
        kind=kind,
        valid=valid,
        connected=connected,
        formula=structures[best].get_chemical_formula("hill"),
        energy_per_atom=float(energies[best]) / len(structures[best]),
        energies=[float(energies[i]) for i in members],
    )


def _molecule_basins(structures: Sequence[ase.Atoms], energies: np.ndarray, charge: int, isomeric: bool) -> list[Basin]:
    groups: dict[tuple, list[int]] = {}
    flags: dict[tuple, tuple[str, bool, bool]] = {}
    for index, atoms in enumerate(structures):
        graph = molecule_graph(atoms, charge=charge, isomeric=isomeric)
        formula = atoms.get_chemical_formula("hill")
        if graph.smiles is None:
            # nothing to compare on: a basin of its own
            group = ("unresolved", index)
            key = f"unresolved {formula}"
        else:
            # fragments are keyed apart from intact molecules even if their SMILES coincided;
            # the formula guards against a connectivity-only SMILES hiding a hydrogen count
            group = (graph.smiles, graph.connected, graph.valid, formula)
            key = graph.smiles
        groups.setdefault(group, []).append(index)
        flags.setdefault(group, (key, graph.valid, graph.connected))
    basins = []
    for group, members in groups.items():
        key, valid, connected = flags[group]
        basins.append(_make_basin(members, energies, structures, key, "molecule", valid, connected))
    return basins


def _crystal_basins(
    structures: Sequence[ase.Atoms], energies: np.ndarray, ltol: float, stol: float, angle_tol: float, symprec: float
) -> list[Basin]:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    pmg = []
    for index, atoms in enumerate(structures):
        structure = pymatgen_structure(atoms)
        structure.properties["basin_index"] = index
        pmg.append(structure)
    matcher = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol, primitive_cell=True, scale=True)
    basins = []
    for group in matcher.group_structures(pmg):
        members = [int(s.properties["basin_index"]) for s in group]
        basin = _make_basin(members, energies, structures, "", "crystal")
        basin.key = crystal_key(structures[basin.representative], symprec=symprec)
        basins.append(basin)
    return basins


def _structure_label(atoms: ase.Atoms, index: int) -> str:
    """``3`` or ``3 ('rep_03')`` when the structure carries a label in its ``info``."""
    label = atoms.info.get("label") if isinstance(atoms.info, dict) else None
    return f"{index} ({label!r})" if label else str(index)


def deduplicate(
    structures: Sequence[ase.Atoms],
    energies: Sequence[float],
    kind: Kind | None = None,
    ltol: float = 0.2,
    stol: float = 0.3,
    angle_tol: float = 5.0,
    *,
    symprec: float = 0.1,
    charge: int = 0,
    isomeric: bool = False,
) -> list[Basin]:
    """Group relaxed ``structures`` into basins, lowest energy per atom first.

    :param structures: relaxed structures.
    :param energies: their (finite) total energies, same length.
    :param kind: ``"molecule"`` (group by canonical SMILES), ``"crystal"`` (group with pymatgen
        ``StructureMatcher``, key by space group) or ``None`` to infer from ``pbc`` (all
        non-periodic: molecules; all fully periodic: crystals).
    :param ltol, stol, angle_tol: ``StructureMatcher`` tolerances (crystals only).
    :param symprec: space-group tolerance in Å (crystals only).
    :param charge: total charge for bond-order assignment (molecules only).
    :param isomeric: distinguish stereoisomers (molecules only).
    """
    structures = list(structures)
    energies_list = list(energies)
    if len(structures) != len(energies_list):
        raise ValueError(
            f"structures and energies differ in length: {len(structures)} structures, {len(energies_list)} energies"
        )
    for index, atoms in enumerate(structures):
        if not isinstance(atoms, ase.Atoms):
            raise TypeError(f"structures[{index}]: expected ase.Atoms, got {type(atoms).__name__}")
    values = []
    for index, energy in enumerate(energies_list):
        label = _structure_label(structures[index], index)
        if energy is None:
            raise ValueError(f"energies: structure {label} has no energy; expected a finite total energy in eV")
        try:
            value = float(energy)
        except (TypeError, ValueError):
            raise ValueError(f"energies: structure {label} has energy {energy!r}; expected a number in eV") from None
        if not math.isfinite(value):
            raise ValueError(f"energies: structure {label} has a non-finite energy ({value}); expected a finite number")
        values.append(value)
    energy_array = np.asarray(values, dtype=np.float64)
    if not structures:
        return []
    if kind is None:
        kind = _infer_kind(structures)
    if kind == "molecule":
        basins = _molecule_basins(structures, energy_array, charge, isomeric)
    elif kind == "crystal":
        for name, value in (("ltol", ltol), ("stol", stol), ("angle_tol", angle_tol), ("symprec", symprec)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        basins = _crystal_basins(structures, energy_array, ltol, stol, angle_tol, symprec)
    else:
        raise ValueError(f"kind: expected 'molecule', 'crystal' or None, got {kind!r}")
    basins.sort(key=lambda basin: (basin.energy_per_atom, basin.representative))
    return basins
