"""Throughput of :func:`aiida_physgen.ml.descriptors.structure_descriptors` against DScribe's SOAP.

The benchmark structures are 2,000 C5H12O molecules made from the C6H14O molecules of the
bundled LoGAN training set (``aiida_physgen/resources/logan/C5H12O_training.extxyz``): for each
structure a seeded ``numpy.random.Generator`` picks a C6H14O molecule and one of its methyl groups
(a carbon bonded to three hydrogens and one carbon), the methyl carbon and its three hydrogens are
removed and one hydrogen is put back on the carbon it was bonded to, 1.09 Å along the old C-C
bond (CH3 -> H). The molecule is then rotated at random, every atom is rattled by Gaussian noise
of 0.05 Å, and its bounding box is centred in an 8 Å cubic cell (not periodic). Atoms are ordered C, O, H, so all
structures share one atom order, as the output of a generator does.

Both implementations compute the same-sized descriptor (species C, H, O; ``r_cut`` 5 Å,
``n_max`` 4, ``l_max`` 4; 390 numbers per atom) and average over atoms: DScribe with
``average="inner"`` (one 390-vector per structure), aiida-physgen with a per-element mean
(3 x 390 numbers per structure, ``max_neighbours`` 20, Gaussian radial basis). Both are timed in
the same process on the same structures, in alternation; the best of ``repeats`` rounds is
reported. aiida-physgen computes in float32 with one intra-op thread (as
``structure_descriptors`` always does); DScribe runs with ``n_jobs=1`` and with
``n_jobs=max(2, torch.get_num_threads())``. The aiida-physgen row also reports the largest
absolute deviation of its float32 result from the same means computed in float64.
"""

from __future__ import annotations

import time
from pathlib import Path

import ase
import ase.io
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.descriptors import DescriptorSettings, atomic_descriptors, structure_descriptors

TRAINING = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan" / "C5H12O_training.extxyz"
BOX = 8.0


def _methyl_groups(atoms: ase.Atoms) -> list[tuple[int, int, list[int]]]:
    """``(methyl C, the C it is bonded to, its three H)`` for every methyl group of ``atoms``."""
    distances = atoms.get_all_distances()
    numbers = atoms.numbers
    groups = []
    for i in np.flatnonzero(numbers == 6):
        hydrogens = [j for j in np.flatnonzero(numbers == 1) if distances[i, j] < 1.25]
        carbons = [j for j in np.flatnonzero(numbers == 6) if j != i and distances[i, j] < 1.75]
        heavy = [j for j in np.flatnonzero(numbers != 1) if j != i and distances[i, j] < 1.75]
        if len(hydrogens) == 3 and len(carbons) == 1 and len(heavy) == 1:
            groups.append((int(i), int(carbons[0]), [int(h) for h in hydrogens]))
    return groups


def make_structures(n_structures: int = 2000, seed: int = 0) -> list[ase.Atoms]:
    """``n_structures`` C5H12O molecules in an 8 Å box, as described in the module docstring."""
    rng = np.random.default_rng(seed)
    parents = [a for a in ase.io.read(TRAINING, index=":") if a.get_chemical_formula(mode="hill") == "C6H14O"]
    choices = [(a, group) for a in parents for group in _methyl_groups(a)]
    if not choices:
        raise RuntimeError(f"no C6H14O molecule with a methyl group in {TRAINING}")
    structures = []
    for _ in range(n_structures):
        parent, (methyl, carbon, hydrogens) = choices[rng.integers(len(choices))]
        positions = parent.positions.copy()
        bond = positions[methyl] - positions[carbon]
        new_h = positions[carbon] + 1.09 * bond / np.linalg.norm(bond)
        keep = [i for i in range(len(parent)) if i != methyl and i not in hydrogens]
        numbers = np.append(parent.numbers[keep], 1)
        positions = np.vstack([positions[keep], new_h])
        order = np.concatenate([np.flatnonzero(numbers == z) for z in (6, 8, 1)])
        numbers, positions = numbers[order], positions[order]
        positions = positions @ Rotation.random(random_state=rng).as_matrix().T
        positions += rng.normal(scale=0.05, size=positions.shape)
        positions += BOX / 2 - (positions.min(axis=0) + positions.max(axis=0)) / 2
        structures.append(ase.Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * BOX, pbc=False))
    return structures


def run(n_structures: int = 2000, repeats: int = 5) -> list[dict]:
    """Time both implementations on ``n_structures`` C5H12O molecules; one row per implementation.

    The implementations are timed in turn within each of ``repeats`` rounds, so that load from
    other processes affects them alike; each row reports its fastest round.
    """
    from dscribe.descriptors import SOAP

    structures = make_structures(n_structures)
    batch = StructureBatch.from_atoms(structures)
    settings = DescriptorSettings(species=(1, 6, 8), r_cut=5.0, n_max=4, l_max=4, max_neighbours=20)
    soap = SOAP(species=["C", "H", "O"], r_cut=5.0, n_max=4, l_max=4, average="inner", periodic=False)
    n_jobs_parallel = max(2, torch.get_num_threads())
    candidates = {
        # structure_descriptors runs its forward passes with one intra-op thread (see its docstring)
        ("aiida-physgen", 1): lambda: structure_descriptors(batch, settings),
        ("dscribe SOAP", 1): lambda: soap.create(structures, n_jobs=1),
        (f"dscribe SOAP (n_jobs={n_jobs_parallel})", n_jobs_parallel): lambda: soap.create(
            structures, n_jobs=n_jobs_parallel
        ),
    }
    structure_descriptors(batch.subset(range(min(8, len(batch)))), settings)  # warm-up
    soap.create(structures[:8], n_jobs=1)
    best = {key: np.inf for key in candidates}
    for _ in range(repeats):
        for key, function in candidates.items():
            start = time.perf_counter()
            function()
            best[key] = min(best[key], time.perf_counter() - start)
    rows = [
        {
            "benchmark": "descriptors C5H12O",
            "implementation": name,
            "n_structures": n_structures,
            "threads": threads,
            "seconds": seconds,
            "structures_per_s": n_structures / seconds,
        }
        for (name, threads), seconds in best.items()
    ]
    float64_means = np.stack(
        [
            np.concatenate([atomic[batch[i].numbers == z].mean(axis=0) for z in settings.species])
            for i, atomic in enumerate(atomic_descriptors(batch, settings, dtype=torch.float64))
        ]
    )
    deviation = np.abs(structure_descriptors(batch, settings) - float64_means).max()
    rows[0]["max_abs_deviation_from_float64"] = float(deviation)
    return rows


if __name__ == "__main__":
    results = run()
    header = (
        f"{'benchmark':<20} {'implementation':<26} {'structures':>10} {'threads':>7} "
        f"{'seconds':>9} {'structures/s':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row['benchmark']:<20} {row['implementation']:<26} {row['n_structures']:>10d} {row['threads']:>7d} "
            f"{row['seconds']:>9.3f} {row['structures_per_s']:>13.0f}"
        )
    print(f"aiida-physgen float32 vs float64: max abs deviation {results[0]['max_abs_deviation_from_float64']:.2e}")
