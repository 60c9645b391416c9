"""From generated base sites to crystals: apply the space group, merge crowded sites, check the symmetry.

The crystal GAN outputs three base sites and three lattice lengths per crystal. :func:`build_crystals`
applies the space group's operations to every base site (all images in the conventional cell), merges
images of the same element that crowd together (single-linkage hierarchical clustering on periodic
distances, SciPy, cut at ``merge_distance``; a cluster becomes one atom at its periodic mean), makes a
``pymatgen.Structure`` and checks with spglib (through pymatgen's ``SpacegroupAnalyzer``) whether it
has the requested space group. A base site on a special position maps onto itself under many operations
(the paper's Fd-3m example: 576 images → 32 atoms); the merge is what makes that exact. No AiiDA.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .batch import StructureBatch
from .space_groups import space_group

__all__ = ["merge_sites", "build_crystal", "build_crystals", "primitive_cells", "BUILD_INFO_KEYS"]

#: per-crystal info arrays of :func:`build_crystals`
BUILD_INFO_KEYS = ("space_group_requested", "space_group_found", "symmetric", "images", "merged_atoms")


def _cell(lengths: np.ndarray, hexagonal: bool) -> np.ndarray:
    a, b, c = (float(x) for x in lengths)
    if hexagonal:
        return np.array([[a, 0.0, 0.0], [-0.5 * b, np.sqrt(3) / 2 * b, 0.0], [0.0, 0.0, c]])
    return np.diag([a, b, c])


def merge_sites(fractional: np.ndarray, cell: np.ndarray, merge_distance: float) -> np.ndarray:
    """Fractional positions ``(n, 3)`` of one element with every cluster closer than ``merge_distance``
    (Å, single linkage, periodic) replaced by its periodic mean."""
    from pymatgen.core import Lattice
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    points = np.asarray(fractional, dtype=np.float64) % 1.0
    # exact duplicates first (a special position maps onto itself under many operations): cheap, and the
    # clustering then sees a handful of points instead of up to 192
    _, first = np.unique(np.round(points, 5) % 1.0, axis=0, return_index=True)
    points = points[np.sort(first)]
    if len(points) < 2:
        return points
    lattice = Lattice(cell)
    distances = lattice.get_all_distances(points, points)
    distances = 0.5 * (distances + distances.T)
    np.fill_diagonal(distances, 0.0)
    clusters = fcluster(
        linkage(squareform(distances, checks=False), method="single"), t=merge_distance, criterion="distance"
    )
    merged = []
    for label in np.unique(clusters):
        members = points[clusters == label]
        shifts = members - members[0]
        shifts -= np.round(shifts)  # periodic mean around the first member
        merged.append((members[0] + shifts.mean(axis=0)) % 1.0)
    return np.array(merged)


def build_crystal(
    coords: np.ndarray,
    lengths: np.ndarray,
    number: int,
    symbols: Sequence[str],
    merge_distance: float = 1.0,
    symprec: float = 0.1,
):
    """One crystal: ``(pymatgen.Structure, found space-group number (0 if undetermined), images)``."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    group = space_group(number)
    cell = _cell(lengths, group.hexagonal_axes)
    species, positions = [], []
    images = group.apply(np.asarray(coords, dtype=np.float64))  # (3, n_ops, 3)
    for symbol, site_images in zip(symbols, images):
        merged = merge_sites(site_images, cell, merge_distance)
        species += [symbol] * len(merged)
        positions.append(merged)
    structure = Structure(cell, species, np.concatenate(positions))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # spglib gives up on degenerate structures (atoms on top of each other)
        found = 0
    return structure, found, int(images.shape[0] * images.shape[1])


def build_crystals(
    coords: np.ndarray,
    lengths: np.ndarray,
    numbers: Sequence[int],
    symbols: Sequence[Sequence[str]],
    merge_distance: float = 1.0,
    symprec: float = 0.1,
) -> StructureBatch:
    """Crystals from base sites ``(M, 3, 3)``, lengths ``(M, 3)`` Å, space groups ``(M,)`` and element
    triples; info arrays :data:`BUILD_INFO_KEYS` (``symmetric`` is 1 when spglib finds the requested group)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms, found, images, merged = [], [], [], []
    for m in range(len(coords)):
        structure, group, n_images = build_crystal(
            coords[m], lengths[m], int(numbers[m]), symbols[m], merge_distance, symprec
        )
        atoms.append(AseAtomsAdaptor.get_atoms(structure))
        found.append(group)
        images.append(n_images)
        merged.append(len(structure))
    batch = StructureBatch.from_atoms(atoms)
    requested = np.asarray(numbers, dtype=np.int64)
    found_array = np.asarray(found, dtype=np.int64)
    batch.info.update(
        {
            "space_group_requested": requested,
            "space_group_found": found_array,
            "symmetric": (found_array == requested).astype(np.int64),
            "images": np.asarray(images, dtype=np.int64),
            "merged_atoms": np.asarray(merged, dtype=np.int64),
        }
    )
    return batch


def primitive_cells(batch: StructureBatch, tolerance: float = 0.1) -> StructureBatch:
    """The same crystals as primitive cells (pymatgen), info kept: a relaxation costs in proportion to the
    atoms, and a face-centred half-Heusler has 3 atoms in the primitive cell against 12 in the conventional."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = [
        AseAtomsAdaptor.get_atoms(AseAtomsAdaptor.get_structure(a).get_primitive_structure(tolerance=tolerance))
        for a in batch
    ]
    primitive = StructureBatch.from_atoms(atoms)
    primitive.info = dict(batch.info)
    return primitive
