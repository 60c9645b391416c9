"""From generated base sites to crystals: snap to Wyckoff positions, apply the space group, check the symmetry.

The crystal GAN outputs three base sites and three lattice lengths per crystal. :func:`build_crystals` first places
every base site on the special position of the requested group that it lies within ``wyckoff_tolerance`` Å of
(:func:`snap_to_special_position`), so its orbit has exactly the multiplicity of that Wyckoff position (F-43m: 4 for
4a-4d, 96 for a general point). It then applies the group's operations (all images in the conventional cell). A base
site generated *near*, not on, a special position would otherwise give a crowded cloud of images. Only when images of
one element still crowd closer than ``merge_distance`` (a site just outside the tolerance) are they merged as before
(single-linkage hierarchical clustering on periodic distances, SciPy, cut at ``merge_distance``; a cluster becomes one
atom at its periodic mean), and the crystal's ``merge_needed`` says so. The result becomes a ``pymatgen.Structure``
and spglib (through pymatgen's ``SpacegroupAnalyzer``) says whether it has the requested space group. No AiiDA.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .batch import StructureBatch
from .space_groups import space_group

__all__ = [
    "merge_sites",
    "snap_to_special_position",
    "build_crystal",
    "build_crystals",
    "primitive_cells",
    "shortest_same_element_distance",
    "BUILD_INFO_KEYS",
    "DEFAULT_WYCKOFF_TOLERANCE",
]

#: per-crystal info arrays of :func:`build_crystals`
BUILD_INFO_KEYS = (
    "space_group_requested",
    "space_group_found",
    "symmetric",
    "images",
    "merged_atoms",
    "snapped_sites",
    "merge_needed",
)
#: how far (Å) a base site may move onto a special position: the merge's cut (1.5 Å), so that a site whose images
#: would crowd closer than that is placed on the position they crowd around instead of being merged
DEFAULT_WYCKOFF_TOLERANCE = 1.5


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


def _closure(point: np.ndarray, maps: list[tuple[np.ndarray, np.ndarray]], cell: np.ndarray, limit: int = 48):
    """The images of ``point`` under the group the affine ``maps`` generate (Cartesian tolerance 10⁻⁶ Å), or
    ``None`` when they pass ``limit`` (maps without a common fixed point generate translations: no finite orbit)."""
    orbit = [point]
    frontier = [point]
    while frontier:
        found = []
        for y in frontier:
            for rotation, shift in maps:
                image = rotation @ y + shift
                if all(np.linalg.norm((image - other) @ cell) > 1e-6 for other in orbit):
                    orbit.append(image)
                    found.append(image)
                    if len(orbit) > limit:
                        return None
        frontier = found
    return np.array(orbit)


def snap_to_special_position(
    group, point: np.ndarray, cell: np.ndarray, tolerance: float, crowding: float | None = None
) -> np.ndarray:
    """``point`` (fractional) moved onto the nearest special position of ``group`` within ``tolerance`` Å.

    Greedy, nearest symmetry element first: an operation of finite order (a rotation, rotoinversion or mirror, not a
    screw or glide) that maps the point to within ``2 × tolerance`` Å of itself without fixing it (a point δ from
    a mirror or a two-fold axis has its image 2δ away) joins the operations that already fix it, and the point is
    replaced by the mean of its orbit under the group they generate: the orthogonal projection onto that group's
    fixed set (the mean over a finite group of isometries). A step is kept only while the point stays within
    ``tolerance`` Å of where it started, so the point ends on the most special position within reach, and a point
    already on a special position never loses symmetry. ``crowding`` (Å, default: no limit) caps the image distance
    that counts as crowded: images as far apart as same-element neighbours of real crystals (a Si-Si bond of
    2.4 Å across a mirror in ThCr2Si2) are left alone. Images that still crowd (a special position just out of
    reach) are left for the merge, which :func:`build_crystal` reports. Written here because neither pymatgen nor
    spglib snaps a free point onto a Wyckoff position of a given group."""
    start = np.asarray(point, dtype=np.float64) % 1.0
    if tolerance <= 0:
        return start
    rotations, translations = group.operations[:, :3, :3], group.operations[:, :3, 3]
    x = start
    for _ in range(8):  # at most three independent elements meet at a point; the rest is margin
        images = np.einsum("nij,j->ni", rotations, x) + translations
        shifts = translations + np.round(x - images)  # each operation as the isometry that maps x nearest itself
        distances = np.linalg.norm((images + np.round(x - images) - x) @ cell, axis=1)
        # a point δ from a mirror or two-fold axis has its image 2δ away: 2 × tolerance reaches every element
        # within the tolerance (the most special position in reach wins: the move is what the tolerance bounds)
        reach = 2.0 * tolerance if crowding is None else min(2.0 * tolerance, crowding)
        candidates = np.flatnonzero((distances > 1e-8) & (distances < reach))
        # the operations that already fix the point stay in its site-symmetry group: a step never lowers it
        generators = [(rotations[i], shifts[i]) for i in np.flatnonzero(distances <= 1e-8)]
        step = None
        for i in candidates[np.argsort(distances[candidates], kind="stable")]:
            orbit = _closure(x, [*generators, (rotations[i], shifts[i])], cell)
            if orbit is None:
                continue  # a screw or glide, or an element that shares no point with those chosen
            y = orbit.mean(axis=0)
            moved = (y - start) - np.round(y - start)
            if np.linalg.norm(moved @ cell) <= tolerance:
                step = y
                break
        if step is None:
            break
        x = step
    x = x % 1.0
    return np.where(np.abs(x - 1.0) < 1e-12, 0.0, x)  # 0.999999999999 is the origin


def build_crystal(
    coords: np.ndarray,
    lengths: np.ndarray,
    number: int,
    symbols: Sequence[str],
    merge_distance: float = 1.0,
    symprec: float = 0.1,
    wyckoff_tolerance: float = DEFAULT_WYCKOFF_TOLERANCE,
    crowding_distance: float | None = None,
):
    """One crystal: ``(pymatgen.Structure, found space-group number (0 if undetermined), images, snapped base
    sites, whether the merge was needed)``. Images closer than ``crowding_distance`` (default: ``merge_distance``)
    count as crowded for the snapping."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    group = space_group(number)
    cell = _cell(lengths, group.hexagonal_axes)
    coords = np.asarray(coords, dtype=np.float64) % 1.0
    crowding = merge_distance if crowding_distance is None else crowding_distance
    snapped = np.array([snap_to_special_position(group, site, cell, wyckoff_tolerance, crowding) for site in coords])
    moved = snapped - coords
    n_snapped = int((np.linalg.norm((moved - np.round(moved)) @ cell, axis=1) > 1e-9).sum())
    species, positions = [], []
    images = group.apply(snapped)  # (3, n_ops, 3)
    merge_needed = False
    for symbol, site_images in zip(symbols, images):
        orbit = merge_sites(site_images, cell, 1e-4)  # the distinct images: the site's Wyckoff orbit
        merged = merge_sites(orbit, cell, merge_distance)  # the fallback, for images that still crowd
        merge_needed |= len(merged) < len(orbit)
        species += [symbol] * len(merged)
        positions.append(merged)
    structure = Structure(cell, species, np.concatenate(positions))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # spglib gives up on degenerate structures (atoms on top of each other)
        found = 0
    return structure, found, int(images.shape[0] * images.shape[1]), n_snapped, bool(merge_needed)


def build_crystals(
    coords: np.ndarray,
    lengths: np.ndarray,
    numbers: Sequence[int],
    symbols: Sequence[Sequence[str]],
    merge_distance: float = 1.0,
    symprec: float = 0.1,
    wyckoff_tolerance: float = DEFAULT_WYCKOFF_TOLERANCE,
    crowding_distance: float | None = None,
) -> StructureBatch:
    """Crystals from base sites ``(M, 3, 3)``, lengths ``(M, 3)`` Å, space groups ``(M,)`` and element
    triples; info arrays :data:`BUILD_INFO_KEYS` (``symmetric`` is 1 when spglib finds the requested group,
    ``snapped_sites`` counts the base sites moved onto a special position, ``merge_needed`` is 1 when images still
    crowded and were merged; ``wyckoff_tolerance`` 0 turns the snapping off; images closer than
    ``crowding_distance``, default ``merge_distance``, count as crowded: the crystal GAN passes 0.95 × the shortest
    same-element distance of its training crystals)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms, found, images, merged, snapped, needed = [], [], [], [], [], []
    for m in range(len(coords)):
        structure, group, n_images, n_snapped, merge_needed = build_crystal(
            coords[m],
            lengths[m],
            int(numbers[m]),
            symbols[m],
            merge_distance,
            symprec,
            wyckoff_tolerance,
            crowding_distance,
        )
        atoms.append(AseAtomsAdaptor.get_atoms(structure))
        found.append(group)
        images.append(n_images)
        merged.append(len(structure))
        snapped.append(n_snapped)
        needed.append(int(merge_needed))
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
            "snapped_sites": np.asarray(snapped, dtype=np.int64),
            "merge_needed": np.asarray(needed, dtype=np.int64),
        }
    )
    return batch


def shortest_same_element_distance(orbits: list[list[np.ndarray]], lengths: np.ndarray, hexagonal) -> float:
    """The shortest distance (Å) between two atoms of one site's orbit (periodic images included) over crystals given
    as ``orbits[m][s]`` fractional positions with ``lengths[m]`` and ``hexagonal[m]`` axes."""
    shortest = np.inf
    for sites, abc, hexagonal_axes in zip(orbits, lengths, hexagonal):
        cell = _cell(np.asarray(abc), bool(hexagonal_axes))
        shortest = min(shortest, float(np.linalg.norm(cell, axis=1).min()))  # an atom and its own image
        for orbit in sites:
            points = np.asarray(orbit, dtype=np.float64)
            if len(points) < 2:
                continue
            gaps = points[:, None] - points[None]
            gaps -= np.round(gaps)
            distances = np.linalg.norm(gaps @ cell, axis=-1)
            shortest = min(shortest, float(distances[distances > 1e-6].min()))
    return shortest


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
