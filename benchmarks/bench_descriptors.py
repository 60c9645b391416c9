"""Throughput of :func:`aiida_physgen.ml.descriptors.structure_descriptors` against DScribe's SOAP.

The benchmark structures are 2,000 C5H12O molecules built as in ``bench_selection.candidates``
(C6H14O training molecules with a terminal methyl turned into H, rotated, rattled by 0.05 Å,
centred in an 8 Å box, not periodic; every structure in one atom order, like a generator's).

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

import numpy as np
import torch
from bench_selection import candidates as c5h12o_candidates

from aiida_physgen.ml.descriptors import DescriptorSettings, atomic_descriptors, structure_descriptors


def run(n_structures: int = 2000, repeats: int = 5) -> list[dict]:
    """Time both implementations on ``n_structures`` C5H12O molecules; one row per implementation.

    The implementations are timed in turn within each of ``repeats`` rounds, so that load from
    other processes affects them alike; each row reports its fastest round.
    """
    from dscribe.descriptors import SOAP

    batch = c5h12o_candidates(n_structures, seed=0, rattle=0.05)
    structures = list(batch)
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
