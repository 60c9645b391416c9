"""Tersoff against DFT (GPAW) on small porous sheets: the error of the reference labels.

    python benchmarks/tersoff_vs_dft.py        # 6 GPAW single points (PBE, LCAO dzp, 3×3×1 k), 4–8 minutes

Sheets: 4 × 2 orthogonal cells (32 sites), pristine, one vacancy, two adjacent, two separated, chains
of 3 and 4; unrelaxed. Energies are compared as excess energies E − N·μ, μ from the pristine sheet
of each method (see :func:`aiida_physgen.graphene.reference_energy.compare_with_dft`).
"""

from __future__ import annotations

import numpy as np

from aiida_physgen.graphene.reference_energy import compare_with_dft
from aiida_physgen.ml import graphene

LATTICE = graphene.Lattice(4, 2)
#: vacancies by (row, column) of the zig-zag grid: one, two adjacent, two far apart, chains of 3 and 4
VACANCIES = {
    "pristine": [],
    "one vacancy": [(0, 0)],
    "two adjacent": [(0, 0), (1, 0)],
    "two separated": [(0, 0), (3, 4)],
    "chain of 3": [(0, 0), (1, 0), (1, 1)],
    "chain of 4": [(0, 0), (1, 0), (1, 1), (2, 1)],
}


def sheets() -> dict:
    mask = LATTICE.mask()
    out = {}
    for name, sites in VACANCIES.items():
        occ = mask.copy()
        for row, col in sites:
            assert mask[row, col], (name, row, col)
            occ[row, col] = False
        out[name] = graphene.occupancy_to_atoms(occ, LATTICE)
    return out


def main() -> None:
    made = sheets()
    table = compare_with_dft(list(made.values()), {"mode": "lcao", "basis": "dzp", "kpts": (3, 3, 1), "xc": "PBE"})
    print(
        f"{'sheet':<16} {'atoms':>5} {'DFT (eV)':>9} {'Tersoff (eV)':>12} {'DFT/vac':>8} {'Tersoff/vac':>11} "
        f"{'GPAW s':>7}"
    )
    for name, row in zip(made, table["rows"]):
        print(
            f"{name:<16} {row['n_atoms']:>5d} {row['excess_dft']:>9.3f} {row['excess_tersoff']:>12.3f} "
            f"{row['formation_dft'] if row['n_vacancies'] else np.nan:>8.2f} "
            f"{row['formation_tersoff'] if row['n_vacancies'] else np.nan:>11.2f} {row['seconds_dft']:>7.0f}"
        )
    summary = table["summary"]
    print(
        f"mean absolute error of the excess energies {summary['mae_excess']:.2f} eV "
        f"({summary['mae_per_area']:.1f} meV/Å²), per vacancy {summary['mae_formation']:.2f} eV; "
        f"slope DFT/Tersoff {summary.get('slope_dft_vs_tersoff', float('nan')):.2f}, "
        f"r {summary.get('pearson_excess', float('nan')):.3f}"
    )


if __name__ == "__main__":
    main()
