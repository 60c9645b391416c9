"""Do generated porous sheets look like the training sheets? Structure, not only energy.

Energy per area mostly follows the number of atoms, so a good KS between requested and obtained energies says
little about the holes. This module compares the sheets themselves, on the zig-zag occupancy grids of
:mod:`aiida_physgen.ml.graphene` (periodic in x and y):

* **hole sizes**: connected clusters of vacant carbon sites (two vacant sites are connected when they are bonded
  neighbours of the honeycomb), pooled over the sheets;
* **coordination**: the share of carbon atoms with 1, 2 and 3 carbon neighbours in each sheet;
* **edge per area**: the missing C–C bonds (an atom on one end, a vacancy on the other) per 100 Å² of sheet, the
  length of the hole edges counted in bonds;
* **one network**: whether all the carbon atoms of a sheet are one connected network.

Each quantity gets a two-sample test between two sets of sheets (:func:`compare_sheets`): Kolmogorov–Smirnov for
the distributions, Fisher's exact test for the connected fraction. Connected components come from SciPy's
``csgraph`` on all sheets at once (one block-diagonal graph). Pure NumPy/SciPy: no AiiDA, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse, stats
from scipy.sparse import csgraph

from ..ml.graphene import Lattice, coordination

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..ml.batch import StructureBatch

__all__ = [
    "bond_pairs",
    "sheet_statistics",
    "compare_sheets",
    "compare_with_training",
    "format_structure_table",
]

#: quantities compared, in table order: (key, label, kind)
QUANTITIES = (
    ("hole_size", "hole size (vacant sites per cluster)", "ks"),
    ("coordination_1", "share of 1-fold C", "ks"),
    ("coordination_2", "share of 2-fold C", "ks"),
    ("coordination_3", "share of 3-fold C", "ks"),
    ("edge_per_area", "missing C-C bonds per 100 A^2", "ks"),
    ("connected", "one connected C network", "fisher"),
)


def bond_pairs(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat grid indices ``(i, j)`` of every C–C bond of a periodic zig-zag grid of ``shape`` (rows, columns),
    each bond once. A site's neighbours forward are the next row of its column and, in the next column, its own row
    and the row before (even column) or after (odd column), as in :func:`aiida_physgen.ml.graphene.coordination`."""
    rows, cols = shape
    mask = Lattice.from_zigzag_shape((rows, cols)).mask()
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    diagonal = np.where(c % 2 == 0, r - 1, r + 1)
    starts, ends = [], []
    for rr, cc in ((r + 1, c), (r, c + 1), (diagonal, c + 1)):
        rr, cc = rr % rows, cc % cols
        keep = mask & mask[rr, cc]
        starts.append((r * cols + c)[keep])
        ends.append((rr * cols + cc)[keep])
    return np.concatenate(starts), np.concatenate(ends)


def _components(nodes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Components of the graph on ``nodes`` (booleans ``(n_sheets, n_sites)``) with bonds ``(i, j)`` between two
    chosen nodes of one sheet: the component label of every site, −1 off ``nodes`` (labels are unique over all
    sheets)."""
    n_sheets, n_sites = nodes.shape
    offsets = (np.arange(n_sheets) * n_sites)[:, None]
    both = nodes[:, i] & nodes[:, j]
    rows = (offsets + i)[both]
    cols = (offsets + j)[both]
    size = n_sheets * n_sites
    graph = sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size))
    _, labels = csgraph.connected_components(graph, directed=False)
    return np.where(nodes.ravel(), labels, -1).reshape(n_sheets, n_sites)


def sheet_statistics(occupancy: np.ndarray, lattice: Lattice | None = None) -> dict[str, np.ndarray]:
    """Per-sheet structure of occupancy grids ``(n, rows, columns)`` (booleans, the zig-zag grid).

    Returns ``n_atoms``, ``coordination_1/2/3`` (shares of the sheet's atoms; NaN for an empty sheet),
    ``edge_per_area`` (missing bonds per 100 Å²), ``connected`` (booleans), ``n_holes`` and ``hole_size`` (every
    vacancy cluster of every sheet, concatenated).
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3:
        raise ValueError(f"occupancy: expected sheets (n, rows, columns), got shape {occ.shape}")
    lattice = lattice or Lattice.from_zigzag_shape(occ.shape[1:])
    if tuple(lattice.zigzag_shape) != tuple(occ.shape[1:]):
        raise ValueError(f"lattice: its zig-zag shape {lattice.zigzag_shape} is not the sheets' {occ.shape[1:]}")
    coord = coordination(occ)  # checks the values and the hexagon centres
    occ = occ.astype(bool)
    n = len(occ)
    flat = occ.reshape(n, -1)
    carbon = lattice.mask().ravel()
    i, j = bond_pairs(occ.shape[1:])
    n_atoms = flat.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {k: (coord == k).reshape(n, -1).sum(axis=1) / n_atoms for k in (1, 2, 3)}
    missing = (flat[:, i] != flat[:, j]).sum(axis=1)

    atom_labels = _components(flat, i, j)
    networks = np.array([len(np.unique(row[row >= 0])) for row in atom_labels])
    vacant = ~flat & carbon[None, :]
    hole_labels = _components(vacant, i, j)
    sizes, n_holes = [], np.zeros(n, dtype=int)
    for s, row in enumerate(hole_labels):
        _, counts = np.unique(row[row >= 0], return_counts=True)
        sizes.append(counts)
        n_holes[s] = len(counts)
    return {
        "n_atoms": n_atoms,
        "coordination_1": shares[1],
        "coordination_2": shares[2],
        "coordination_3": shares[3],
        "edge_per_area": missing / lattice.area * 100.0,
        "connected": networks == 1,
        "n_holes": n_holes,
        "hole_size": np.concatenate(sizes) if sizes else np.zeros(0, dtype=int),
    }


def compare_sheets(generated: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> list[dict]:
    """One row per quantity between two :func:`sheet_statistics` results: the mean of each set, the two-sample
    statistic and its p-value (KS statistic, or the difference of the connected fractions with Fisher's exact
    test). Sheets without atoms have no coordination shares and are left out of those rows."""
    rows = []
    for key, label, kind in QUANTITIES:
        a, b = np.asarray(generated[key]), np.asarray(reference[key])
        if kind == "ks":
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        mean_a, mean_b = (float(x.mean()) if len(x) else float("nan") for x in (a, b))
        if not (len(a) and len(b)):
            statistic = p_value = float("nan")
        elif kind == "fisher":
            table = [[int(a.sum()), int((~a).sum())], [int(b.sum()), int((~b).sum())]]
            statistic, p_value = mean_a - mean_b, float(stats.fisher_exact(table).pvalue)
        else:
            ks = stats.ks_2samp(a, b)
            statistic, p_value = float(ks.statistic), float(ks.pvalue)
        rows.append(
            {"quantity": key, "label": label, "test": "Fisher" if kind == "fisher" else "KS", "generated": mean_a,
             "reference": mean_b, "statistic": statistic, "p_value": p_value, "count": (len(a), len(b))}
        )  # fmt: skip
    return rows


def compare_with_training(generated: Mapping[str, StructureBatch], training: StructureBatch) -> dict[str, list[dict]]:
    """For each generated set (name → sheets, at any area multiple), :func:`compare_sheets` of its sheets against
    the training sheets. The generated sets ask for labels drawn from the training labels, so their sheets should
    look like the training sheets as a whole. Every quantity is per hole or per area, so the training sheets are the
    reference at every scale: tiled 2 × 2 they give the same shares and edge per area and the same hole sizes, each
    hole four times, which would only inflate the sample size of the test."""
    from ..ml import graphene

    occupancy, lattice = graphene.batch_to_sheets(training, where="training")
    reference = sheet_statistics(occupancy, lattice)
    rows = {}
    for name, batch in generated.items():
        sheets, sheet_lattice = graphene.batch_to_sheets(batch, where=f"generated.{name}")
        rows[name] = compare_sheets(sheet_statistics(sheets, sheet_lattice), reference)
    return rows


def format_structure_table(rows_by_set: Mapping[str, Sequence[Mapping]]) -> str:
    """The rows of :func:`compare_sheets` for each generated set (``scale_1``, ``scale_2``...), as a Markdown
    table."""
    lines = [
        "| set | quantity | generated (mean) | training (mean) | test | statistic | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in rows_by_set.items():
        for row in rows:
            lines.append(
                f"| {name} | {row['label']} | {row['generated']:.3f} | {row['reference']:.3f} | {row['test']} | "
                f"{row['statistic']:.3f} | {row['p_value']:.2g} |"
            )
    return "\n".join(lines)
