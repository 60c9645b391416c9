"""From generated base sites to crystals: snap to Wyckoff positions, apply the space group, check the symmetry.

The crystal GAN outputs three base sites and three lattice lengths per crystal. :func:`build_crystals` first places
every base site on the special position of the requested group that it lies within ``wyckoff_tolerance`` Å of
(:func:`snap_to_special_position`), so its orbit has exactly the multiplicity of that Wyckoff position (F-43m: 4 for
4a-4d, 96 for a general point). Two elements placed on one position are sent apart: the one the snapping moved
least keeps it, the other goes to the nearest free Wyckoff position without a free parameter
(:func:`reassign_shared_positions`; counted in ``reassigned_sites``). It then applies the group's operations (all
images in the conventional cell). A base site generated *near*, not on, a special position would otherwise give a
crowded cloud of images. Only when images of one element still crowd closer than ``merge_distance`` (a site just
outside the tolerance) are they merged as before (single-linkage hierarchical clustering on periodic distances, SciPy,
cut at ``merge_distance``; a cluster becomes one atom at its periodic mean), and the crystal's ``merge_needed`` says
so. The result becomes a ``pymatgen.Structure`` and spglib (through pymatgen's ``SpacegroupAnalyzer``) says whether
it has the requested space group. :func:`random_wyckoff_crystals` feeds the same machinery with random base sites and
lattices: the random baseline. No AiiDA.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

from .batch import StructureBatch
from .space_groups import space_group

__all__ = [
    "merge_sites",
    "snap_to_special_position",
    "isolated_special_positions",
    "reassign_shared_positions",
    "build_crystal",
    "build_crystals",
    "primitive_cells",
    "shortest_same_element_distance",
    "random_wyckoff_crystals",
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
    "reassigned_sites",
    "merge_needed",
)
#: how far (Å) a base site may move onto a special position. 2 Å reaches the nearest fixed position from anywhere in
#: a half-Heusler cell (the 4a-4d points form a body-centred lattice of edge a/2: no point lies more than
#: a·√5/8 ≈ 1.8 Å from one at a = 6.4 Å). Chosen on seed 0 of one model (tolerance 0 / 1.5 / 1.8 / 2.0 / 2.5 Å:
#: 83 / 131 / 199 / 200 / 200 of 200 F-43m crystals with 12 atoms), reported on other seeds (docs/crystals.md)
DEFAULT_WYCKOFF_TOLERANCE = 2.0
#: the grid on which :func:`isolated_special_positions` looks: in the standard settings of the International Tables
#: every Wyckoff position without a free parameter has coordinates in multiples of 1/8 or 1/12
_SPECIAL_GRID = 24


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
    orbit = np.empty((limit + 1, 3))
    orbit[0], size = point, 1
    frontier = [point]
    while frontier:
        found = []
        for y in frontier:
            for rotation, shift in maps:
                image = rotation @ y + shift
                # against every image so far at once (a loop over them took 95 % of an Fm-3m generation)
                if (np.linalg.norm((orbit[:size] - image) @ cell, axis=1) > 1e-6).all():
                    if size == limit:
                        return None
                    orbit[size], size = image, size + 1
                    found.append(image)
        frontier = found
    return orbit[:size].copy()


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


@functools.cache
def isolated_special_positions(number: int) -> np.ndarray:
    """Every point of the conventional cell of space group ``number`` that its site-symmetry group alone fixes:
    the Wyckoff positions without a free parameter (F-43m: the 16 points of 4a-4d; Fm-3m: 40, of 4a, 4b, 8c and
    24d), fractional ``(k, 3)``; empty for a polar group (P6_3mc has none). A point of the 1/24 grid is kept when
    the linear parts of the operations that fix it share no fixed direction (the rank of their stacked ``R - 1``
    is 3). Written here because neither pymatgen nor spglib lists the Wyckoff positions of a group."""
    group = space_group(number)
    rotations, translations = group.operations[:, :3, :3], group.operations[:, :3, 3]
    grid = np.stack(np.meshgrid(*[np.arange(_SPECIAL_GRID) / _SPECIAL_GRID] * 3, indexing="ij"), -1).reshape(-1, 3)
    offsets = np.einsum("nij,pj->pni", rotations, grid) + translations - grid[:, None]
    fixes = np.all(np.abs(offsets - np.round(offsets)) < 1e-9, axis=-1)  # (points, operations)
    # points fixed by the same operations share the answer: one rank per distinct stabiliser
    keys = np.packbits(fixes, axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    eye = np.eye(3)
    isolated = np.array(
        [np.linalg.matrix_rank(np.concatenate(rotations[fixes[i]] - eye)) == 3 for i in first], dtype=bool
    )
    points = grid[isolated[inverse.ravel()]]
    points.setflags(write=False)  # remembered per group: shared by every caller
    return points


def _periodic_gaps(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Shortest distances (Å) between fractional points ``a (n, 3)`` and ``b (m, 3)``, periodic: ``(n, m)``."""
    gaps = a[:, None] - b[None]
    gaps -= np.round(gaps)
    return np.linalg.norm(gaps @ cell, axis=-1)


def reassign_shared_positions(
    group, generated: np.ndarray, snapped: np.ndarray, cell: np.ndarray, clash: float
) -> tuple[np.ndarray, int]:
    """Base sites of different elements that landed on one position, sent apart: ``(sites, how many moved)``.

    The sites keep their positions in order of how little the snapping moved them from ``generated``; a site
    whose orbit comes closer than ``clash`` Å to a kept orbit moves to the nearest (from where it was generated)
    fixed Wyckoff position (:func:`isolated_special_positions`) whose orbit is free. A site with no free position
    left stays where it is (the crystal then fails validity). The generator proposes three sites; two of them on
    one position is a conflict the group's positions can settle, as decoding a Wyckoff assignment would."""
    sites = np.array(snapped, dtype=np.float64)
    moved = sites - generated
    order = np.argsort(np.linalg.norm((moved - np.round(moved)) @ cell, axis=1), kind="stable")
    kept: list[np.ndarray] = []
    reassigned = 0
    for i in order:
        orbit = group.orbit(sites[i])
        if all(_periodic_gaps(orbit, other, cell).min() >= clash for other in kept):
            kept.append(orbit)
            continue
        candidates = isolated_special_positions(group.number)
        if len(candidates):
            for k in np.argsort(_periodic_gaps(generated[i][None], candidates, cell)[0], kind="stable"):
                free = group.orbit(candidates[k])
                if all(_periodic_gaps(free, other, cell).min() >= clash for other in kept):
                    sites[i], orbit = candidates[k], free
                    reassigned += 1
                    break
        kept.append(orbit)
    return sites, reassigned


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
    sites, base sites sent to another position because an other element held theirs, whether the merge was
    needed)``. Images closer than ``crowding_distance`` (default: ``merge_distance``) count as crowded for the
    snapping; orbits of two elements closer than ``merge_distance`` share a position
    (:func:`reassign_shared_positions`, with the snapping only)."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    group = space_group(number)
    cell = _cell(lengths, group.hexagonal_axes)
    coords = np.asarray(coords, dtype=np.float64) % 1.0
    crowding = merge_distance if crowding_distance is None else crowding_distance
    snapped = np.array([snap_to_special_position(group, site, cell, wyckoff_tolerance, crowding) for site in coords])
    moved = snapped - coords
    n_snapped = int((np.linalg.norm((moved - np.round(moved)) @ cell, axis=1) > 1e-9).sum())
    n_reassigned = 0
    if wyckoff_tolerance > 0:  # two elements on one position: the snapping's conflicts, settled with it
        snapped, n_reassigned = reassign_shared_positions(group, coords, snapped, cell, merge_distance)
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
    return structure, found, int(images.shape[0] * images.shape[1]), n_snapped, n_reassigned, bool(merge_needed)


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
    ``snapped_sites`` counts the base sites moved onto a special position, ``reassigned_sites`` those sent on to a
    free fixed position because another element held theirs, ``merge_needed`` is 1 when images still
    crowded and were merged; ``wyckoff_tolerance`` 0 turns the snapping off; images closer than
    ``crowding_distance``, default ``merge_distance``, count as crowded: the crystal GAN passes 0.95 × the shortest
    same-element distance of its training crystals)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms, found, images, merged, snapped, reassigned, needed = [], [], [], [], [], [], []
    for m in range(len(coords)):
        structure, group, n_images, n_snapped, n_reassigned, merge_needed = build_crystal(
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
        reassigned.append(n_reassigned)
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
            "reassigned_sites": np.asarray(reassigned, dtype=np.int64),
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


def random_wyckoff_crystals(
    numbers: Sequence[int],
    symbols: Sequence[Sequence[str]],
    length_range: tuple[float, float],
    seed: int,
    merge_distance: float = 1.5,
    wyckoff_tolerance: float = DEFAULT_WYCKOFF_TOLERANCE,
    crowding_distance: float | None = None,
    symprec: float = 0.1,
) -> StructureBatch:
    """The crystal GAN's random baseline: the same machinery (:func:`build_crystals`) fed with uniform random base
    sites and lattice lengths uniform in ``length_range`` (Å, tied by the crystal system as the generator ties
    them: cubic a = b = c, tetragonal and hexagonal a = b), one crystal per entry of ``numbers`` and ``symbols``.
    Pass the model's ``crowding_distance`` (its config) so that the placement reaches as far as the generator's."""
    import torch

    from .space_groups import constrain_lengths

    low, high = (float(v) for v in length_range)
    if not 0 < low <= high < np.inf:
        raise ValueError(f"length_range: got {length_range!r}, expected 0 < low <= high in Å")
    if len(numbers) != len(symbols):
        raise ValueError(f"symbols: got {len(symbols)} triples for {len(numbers)} space groups, expected one each")
    rng = np.random.default_rng(seed)
    coords = rng.random((len(numbers), 3, 3))
    lengths = constrain_lengths(torch.as_tensor(rng.uniform(low, high, (len(numbers), 3))), numbers).numpy()
    return build_crystals(
        coords, lengths, numbers, symbols, merge_distance, symprec, wyckoff_tolerance, crowding_distance
    )
