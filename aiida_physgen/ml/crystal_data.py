"""Training crystals for the crystal GAN: ternaries with three base (Wyckoff) sites, read and filtered.

:func:`read_cif_folder` reads every CIF of a folder with pymatgen (an unreadable file is a named error);
:func:`training_crystals` keeps the ternaries with exactly three symmetry-distinct sites, one per
element, in the requested space groups, and says for every dropped structure why. Each kept crystal
is described in the model's frame: its space group, its three elements in canonical order
(:func:`~aiida_physgen.ml.elements.canonical_order`), the base sites' fractional coordinates in the
standard conventional cell (spglib's, the setting of :mod:`.space_groups`), the lattice lengths, and
each site's orbit (all symmetry-equivalent positions, from which self-augmentation draws). No AiiDA.

One crystal can be written with different origins (F-43m: a half-Heusler's middle element, the one tetrahedrally
surrounded by the other two, is Pt in all 99 shipped crystals and sits on 4a in 59 of spglib's refined cells and on
4c in 40, with the other two spread over 11 arrangements of 4a-4d), so the same chemistry reaches the model at
different positions and the generator can learn a site preference only as a relation between its outputs.
:func:`canonical_origin` removes that freedom: among the origins in which the crystal keeps its group and setting
(:func:`~.space_groups.origin_choices`), it takes the one that puts the most highly coordinated site on the smallest
position (then the next site, in canonical element order), so every half-Heusler has its middle element on 4a.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import elements as element_table
from .batch import StructureBatch
from .space_groups import origin_choices, space_group

__all__ = ["TrainingCrystals", "read_cif_folder", "training_crystals", "example_structures", "EXAMPLE_FOLDER"]

#: the package's example set: 99 half-Heusler crystals (F-43m), see its README for source and licence
EXAMPLE_FOLDER = Path(__file__).resolve().parent.parent / "resources" / "crystals" / "half_heusler_F-43m"


@dataclass
class TrainingCrystals:
    """The kept crystals (``M``) and what was dropped.

    ``space_groups`` ``(M,)``, ``numbers`` ``(M, 3)`` atomic numbers in site order, ``coords``
    ``(M, 3, 3)`` base-site fractional coordinates, ``lengths`` ``(M, 3)`` in Å, ``orbits[m][s]`` the
    ``(n, 3)`` equivalent positions of site ``s``; ``labels`` name each kept crystal; ``dropped`` is a
    list of ``(label, reason)``.
    """

    space_groups: np.ndarray
    numbers: np.ndarray
    coords: np.ndarray
    lengths: np.ndarray
    orbits: list[list[np.ndarray]]
    labels: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def dropped_summary(self) -> dict[str, int]:
        """How many were dropped for each reason (the reason's first clause)."""
        counts: dict[str, int] = {}
        for _, reason in self.dropped:
            key = reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def read_cif_folder(folder: str | Path, field_name: str = "folder") -> StructureBatch:
    """Every ``*.cif`` of ``folder`` as one batch (``info['label']`` absent; labels are the file stems,
    returned in ``batch.info['source_index']`` order of the sorted names). ``ValueError`` names the field
    when the folder holds no CIF, and the file when pymatgen cannot read one."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{field_name}: {str(folder)!r} is not a folder of CIF files")
    paths = sorted(folder.glob("*.cif"))
    if not paths:
        raise ValueError(f"{field_name}: {str(folder)!r} holds no *.cif file")
    atoms = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen warns about rounding in most CIFs
                structure = Structure.from_file(str(path))
        except Exception as error:  # pymatgen raises many kinds on a bad CIF
            raise ValueError(
                f"{field_name}: pymatgen cannot read {path.name} ({type(error).__name__}: {str(error)[:200]})"
            ) from None
        atoms.append(AseAtomsAdaptor.get_atoms(structure))
    batch = StructureBatch.from_atoms(atoms)
    batch.labels = [p.stem for p in paths]  # type: ignore[attr-defined]
    return batch


def example_structures() -> StructureBatch:
    """The shipped example set (99 half-Heuslers, F-43m)."""
    return read_cif_folder(EXAMPLE_FOLDER)


def _label(batch: StructureBatch, index: int) -> str:
    labels = getattr(batch, "labels", None)
    return str(labels[index]) if labels is not None and index < len(labels) else f"structure {index}"


def coordination_numbers(orbits: Sequence[np.ndarray], cell: np.ndarray, shell: float = 1.1) -> list[int]:
    """For each site (its orbit, fractional), how many atoms of the crystal lie within ``shell`` × its nearest
    neighbour's distance (periodic images by ASE's minimum-image distances; the cells here are at least 3 Å, so one
    image of each atom is enough for the first shell)."""
    from ase.geometry import get_distances

    points = np.concatenate(orbits) @ cell
    counts = []
    for orbit in orbits:
        _, distances = get_distances(orbit[:1] @ cell, points, cell=cell, pbc=True)
        distances = distances[0][distances[0] > 1e-6]
        counts.append(int((distances < shell * distances.min()).sum()))
    return counts


def canonical_origin(
    number: int, orbits: Sequence[np.ndarray], cell: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The base sites and orbits of one crystal in its canonical origin (module docstring): sites ranked by
    coordination number (most first, ties in the given order), each written as the lexicographically smallest
    point of its orbit, and the origin (:func:`~.space_groups.origin_choices`) that makes that list smallest."""
    coordination = coordination_numbers(orbits, cell)
    rank = sorted(range(len(orbits)), key=lambda s: (-coordination[s], s))
    best = None
    for sign, shift in origin_choices(number):
        moved = [(sign * orbit + shift) % 1.0 for orbit in orbits]
        bases = [min(map(tuple, np.round(orbit, 6) % 1.0)) for orbit in moved]
        key = [bases[s] for s in rank]
        if best is None or key < best[0]:
            best = (key, [np.array(b) for b in bases], moved)
    return best[1], best[2]


def training_crystals(
    batch: StructureBatch,
    space_groups: Iterable[int | str] | None = None,
    symprec: float = 0.1,
    canonical: bool = True,
) -> TrainingCrystals:
    """The usable training crystals of ``batch`` (see the module docstring).

    :param space_groups: keep only these (numbers or symbols; each must be supported, else ``ValueError``
        naming ``space_groups``); ``None`` keeps every supported group.
    :param symprec: spglib's tolerance in Å.
    :param canonical: write each crystal in its canonical origin (:func:`canonical_origin`); ``False`` keeps
        spglib's refined cell as it comes.
    """
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    wanted = None
    if space_groups is not None:
        wanted = {space_group(v, "space_groups").number for v in space_groups}
    known = element_table.table()
    out_sg, out_numbers, out_coords, out_lengths, out_orbits, labels, dropped = [], [], [], [], [], [], []
    for index in range(len(batch)):
        label = _label(batch, index)
        atoms = batch[index]
        symbols = sorted(set(atoms.get_chemical_symbols()))
        if len(symbols) != 3:
            dropped.append((label, f"not a ternary: {len(symbols)} element(s) {symbols}"))
            continue
        outside = [s for s in symbols if s not in known]
        if outside:
            dropped.append((label, f"elements outside the element table: {outside}"))
            continue
        if not atoms.pbc.all():
            dropped.append((label, "not a crystal: the structure is not periodic along every axis"))
            continue
        structure = AseAtomsAdaptor.get_structure(atoms)
        try:
            analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
            number = analyzer.get_space_group_number()
            refined = analyzer.get_refined_structure()
        except Exception as error:  # spglib fails on some degenerate cells
            dropped.append((label, f"symmetry undetermined: {type(error).__name__}"))
            continue
        try:
            group = space_group(number)
        except ValueError:
            dropped.append((label, f"unsupported space group: {number} (monoclinic or triclinic)"))
            continue
        if wanted is not None and number not in wanted:
            dropped.append((label, f"space group not requested: {group.symbol} ({number})"))
            continue
        sites = SpacegroupAnalyzer(refined, symprec=symprec).get_symmetrized_structure().equivalent_sites
        if len(sites) != 3:
            dropped.append((label, f"not three base sites: {len(sites)} symmetry-distinct sites"))
            continue
        by_element = {}
        for group_sites in sites:
            species = {site.specie.symbol for site in group_sites}
            if len(species) != 1:
                break
            by_element[species.pop()] = group_sites
        if len(by_element) != 3:
            dropped.append((label, "not one site per element: an element sits on two Wyckoff sites"))
            continue
        order = element_table.canonical_order(list(by_element))
        coords, orbits, ok = [], [], True
        for symbol in order:
            base = np.asarray(by_element[symbol][0].frac_coords) % 1.0
            orbit = group.orbit(base)
            if len(orbit) != len(by_element[symbol]):
                ok = False
                break
            coords.append(base)
            orbits.append(orbit)
        lattice = refined.lattice
        angles = np.array(lattice.angles)
        expected = np.array([90.0, 90.0, 120.0 if group.hexagonal_axes else 90.0])
        if not ok or np.abs(angles - expected).max() > 0.5:
            dropped.append(
                (label, f"setting mismatch: the refined cell does not follow the standard setting of {group.symbol}")
            )
            continue
        if canonical:
            coords, orbits = canonical_origin(number, orbits, lattice.matrix)
        out_sg.append(number)
        out_numbers.append([int(known_z(s)) for s in order])
        out_coords.append(coords)
        out_lengths.append(lattice.abc)
        out_orbits.append(orbits)
        labels.append(label)
    return TrainingCrystals(
        space_groups=np.asarray(out_sg, dtype=np.int64),
        numbers=np.asarray(out_numbers, dtype=np.int64).reshape(-1, 3),
        coords=np.asarray(out_coords, dtype=np.float64).reshape(-1, 3, 3),
        lengths=np.asarray(out_lengths, dtype=np.float64).reshape(-1, 3),
        orbits=out_orbits,
        labels=labels,
        dropped=dropped,
    )


def known_z(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def symbols_of(numbers: Sequence[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]
