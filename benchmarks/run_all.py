"""All performance figures of aiida-physgen in one table, measured side by side in one run.

    python benchmarks/run_all.py            # about 4.5 minutes on 2 cores (measured 4 min 16 s)

Wall times on a shared machine are noisy: compare the ratios within one run (our code against the
peer, one model against the ensemble), not absolute numbers across runs. Reference figures for the
LoGAN reference implementation were measured on this kind of 2-core machine and are quoted, not run.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_cheap  # noqa: E402
import bench_crystal  # noqa: E402
import bench_descriptors  # noqa: E402
import bench_graphene  # noqa: E402
import bench_repap  # noqa: E402
import bench_selection  # noqa: E402
import bench_training  # noqa: E402
from tabulate import tabulate  # noqa: E402


def main() -> None:
    rows = []
    for row in bench_descriptors.run(2000, repeats=3):
        rows.append(
            [
                "descriptors, 2,000 C5H12O (r_cut 5, n_max 4, l_max 4)",
                row["implementation"],
                f"{row['structures_per_s']:.0f}",
                "structures/s",
                "DScribe ≈7,000/s; LoGAN reference ≈800/s",
            ]
        )
    for row in bench_selection.run(24000):
        if row["n_structures"] == 24000:
            rows.append(
                [
                    "selection 24,000 C5H12O → 20 (descriptors+PCA+k-means)",
                    "aiida-physgen",
                    f"{row['total_s']:.2f}",
                    "s",
                    "target < 10 s; LoGAN reference 32 s",
                ]
            )
            rows.append(["  of which PCA + k-means", "aiida-physgen", f"{row['pca_kmeans_s']:.2f}", "s", ""])
    reference = {
        "1 model": "target ≤ 0.1; LoGAN reference 0.32 s/epoch",
        "ensemble cost / one model": "target < 3 (12 single runs: 12)",
        "MLP arithmetic per model-epoch": "analytic count, see bench_training.epoch_flops",
    }
    for row in bench_training.run():
        rows.append(
            [
                row["benchmark"],
                row["what"],
                f"{row['value']:.3g}",
                row["unit"],
                reference.get(row["what"], "LoGAN reference ≈2,000/s" if "generation" in row["benchmark"] else ""),
            ]
        )
    for row in bench_cheap.run():
        rows.append(
            [
                row["benchmark"],
                row["what"],
                f"{row['relaxations_per_s']:.2f}",
                "relaxations/s",
                f"{row['converged_share']:.0%} converged to 0.05 eV/Å, {row['failed']} failed",
            ]
        )
    for row in bench_graphene.run():
        rows.append([row["benchmark"], row["what"], f"{row['value']:.4g}", row["unit"], row.get("note", "")])
    for row in bench_crystal.run():
        rows.append([row["benchmark"], row["what"], f"{row['value']:.4g}", row["unit"], row.get("note", "")])
    for row in bench_repap.run():
        rows.append([row["benchmark"], row["what"], f"{row['value']:.4g}", row["unit"], row.get("note", "")])
    print(tabulate(rows, headers=["benchmark", "what", "value", "unit", "reference"]))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
