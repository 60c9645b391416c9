"""Benchmark: pick 20 representatives out of ~24,000 generated C5H12O candidates.

Candidates are made from the C6H14O molecules of the LoGAN training set: one terminal methyl group
of each is replaced by a hydrogen atom on the C-C (or O-C) bond axis (C6H14O -> C5H12O), the atoms
are put in a common order, and every candidate is a randomly chosen template, randomly rotated,
rattled with a seeded Gaussian and centred in an 8 Å box (pbc False) - the shape of what a
generator hands to the selection step.

Run ``python benchmarks/bench_selection.py [n_structures]`` for a table; ``run()`` returns its rows.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import ase.io
import numpy as np

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.descriptors import DescriptorSettings, structure_descriptors
from aiida_physgen.screening.selection import select_from_features

TRAINING = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan" / "C5H12O_training.extxyz"
BOX = 8.0
CH_BOND = 1.09  # Å
OH_BOND = 0.96  # Å


def _trim_methyl(atoms: ase.Atoms, rng: np.random.Generator) -> ase.Atoms | None:
    """C6H14O -> C5H12O: a random terminal CH3 becomes an H on its bond to the rest of the molecule."""
    positions = atoms.positions
    numbers = atoms.numbers
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    heavy = np.flatnonzero(numbers > 1)
    methyls = []
    for c in heavy[numbers[heavy] == 6]:
        bonded_heavy = [j for j in heavy if j != c and distances[c, j] < 1.7]
        bonded_h = [j for j in np.flatnonzero(numbers == 1) if distances[c, j] < 1.25]
        if len(bonded_heavy) == 1 and len(bonded_h) == 3:
            methyls.append((c, bonded_heavy[0], bonded_h))
    if not methyls:
        return None
    c, anchor, hydrogens = methyls[int(rng.integers(len(methyls)))]
    direction = positions[c] - positions[anchor]
    bond = OH_BOND if numbers[anchor] == 8 else CH_BOND
    new_h = positions[anchor] + bond * direction / np.linalg.norm(direction)
    keep = [i for i in range(len(atoms)) if i != c and i not in hydrogens]
    new_numbers = np.concatenate([numbers[keep], [1]])
    new_positions = np.concatenate([positions[keep], new_h[None]])
    order = np.argsort(new_numbers, kind="stable")  # common atom order: H..., C..., O
    return ase.Atoms(numbers=new_numbers[order], positions=new_positions[order])


def templates(seed: int = 0) -> list[ase.Atoms]:
    """One C5H12O geometry per C6H14O molecule of the training set."""
    rng = np.random.default_rng(seed)
    result = []
    for atoms in ase.io.read(TRAINING, index=":"):
        if atoms.get_chemical_formula("hill") != "C6H14O":
            continue
        trimmed = _trim_methyl(atoms, rng)
        if trimmed is not None:
            result.append(trimmed)
    if not result:
        raise RuntimeError(f"no C6H14O molecule with a terminal methyl group in {TRAINING}")
    return result


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1.0  # proper rotations only
    return q


def candidates(n_structures: int = 24000, seed: int = 0, rattle: float = 0.1) -> StructureBatch:
    """``n_structures`` rattled, rotated C5H12O candidates in an 8 Å box without periodicity."""
    rng = np.random.default_rng(seed)
    shapes = templates(seed)
    numbers = shapes[0].numbers
    base = np.stack([t.positions - t.positions.mean(axis=0) for t in shapes])  # (T, 18, 3)
    choice = rng.integers(len(shapes), size=n_structures)
    positions = np.einsum("mnj,mkj->mnk", base[choice], _random_rotations(rng, n_structures))
    positions += rng.normal(scale=rattle, size=positions.shape)
    positions += BOX / 2.0 - positions.mean(axis=1, keepdims=True)
    return StructureBatch.from_uniform(
        positions, numbers, cell=np.eye(3) * BOX, pbc=(False, False, False), info={"template": choice}
    )


def run(n_structures: int = 24000, n_clusters: int = 20, n_components: int = 10, seed: int = 0) -> list[dict]:
    """Time descriptors and PCA + k-means for ``n_structures // 8`` and ``n_structures`` candidates.

    Every row also records the 1-minute load average when its timing started: on a machine shared
    with other jobs, wall times are only comparable at similar load.
    """
    settings = DescriptorSettings(species=(1, 6, 8))
    rows = []
    sizes = sorted({max(n_clusters, n_structures // 8), n_structures})
    for size in sizes:
        batch = candidates(size, seed=seed)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        features = structure_descriptors(batch, settings)
        descriptor_s = time.perf_counter() - start
        start = time.perf_counter()
        selection = select_from_features(features, n_components=n_components, n_clusters=n_clusters, seed=seed)
        select_s = time.perf_counter() - start
        templates_hit = len(set(batch.info["template"][selection.indices].tolist()))
        rows.append(
            {
                "n_structures": size,
                "n_atoms": int(batch.n_atoms[0]),
                "n_features": int(features.shape[1]),
                "n_clusters": n_clusters,
                "pca_solver": selection.pca_solver,
                "n_init": selection.n_init,
                "descriptor_s": descriptor_s,
                "pca_kmeans_s": select_s,
                "total_s": descriptor_s + select_s,
                "explained_variance": float(np.sum(selection.explained_variance_ratio)),
                "distinct_templates": templates_hit,
                "load_average": load,
            }
        )
    return rows


def _table(rows: list[dict]) -> str:
    columns = [
        ("n_structures", "{:d}"),
        ("n_atoms", "{:d}"),
        ("n_features", "{:d}"),
        ("n_clusters", "{:d}"),
        ("pca_solver", "{}"),
        ("n_init", "{:d}"),
        ("descriptor_s", "{:.2f}"),
        ("pca_kmeans_s", "{:.2f}"),
        ("total_s", "{:.2f}"),
        ("explained_variance", "{:.3f}"),
        ("distinct_templates", "{:d}"),
        ("load_average", "{:.1f}"),
    ]
    cells = [[fmt.format(row[name]) for name, fmt in columns] for row in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, (name, _) in enumerate(columns)]
    lines = ["  ".join(name.rjust(w) for (name, _), w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 24000
    print(_table(run(n)))
