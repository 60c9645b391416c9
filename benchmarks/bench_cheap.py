"""Benchmark: the cheap relaxation tier, relaxations per second.

(a) GFN2-xTB (tblite) on the 39 molecules of the shipped LoGAN training set
    (``resources/logan/C5H12O_training.extxyz``, C6H14O isomers of the C5H12O study), each rattled
    with a seeded 0.1 Å Gaussian, no box;
(b) CHGNet on the six shipped SiO2 targets (``resources/logan/sio2/*_target.extxyz``, 6–18 atoms),
    rattled the same way, fixed cell.
Both with the defaults of :class:`aiida_physgen.screening.cheap_relax.CheapSettings` (FIRE to 0.05 eV/Å, at
most 300 steps) and the threads of ``OMP_NUM_THREADS`` (run with ``OMP_NUM_THREADS=1`` to compare
with the figures in the module docstring). CHGNet's one-off model load is timed on its own row.

Run ``python benchmarks/bench_cheap.py`` for a table; ``run()`` returns its rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import ase.io
import numpy as np

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.screening.cheap_relax import CheapSettings, relax_batch

RESOURCES = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan"
RATTLE = 0.1  # Å


def _rattled(structures, seed: int) -> StructureBatch:
    rng = np.random.default_rng(seed)
    rattled = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = None
        atoms.positions = atoms.positions + rng.normal(0.0, RATTLE, atoms.positions.shape)
        rattled.append(atoms)
    return StructureBatch.from_atoms(rattled)


def molecules(seed: int = 0) -> StructureBatch:
    structures = ase.io.read(RESOURCES / "C5H12O_training.extxyz", ":")
    for atoms in structures:
        atoms.pbc = False
        atoms.cell = np.zeros((3, 3))
    return _rattled(structures, seed)


def crystals(seed: int = 0) -> StructureBatch:
    return _rattled([ase.io.read(path) for path in sorted((RESOURCES / "sio2").glob("*_target.extxyz"))], seed)


def _row(name: str, batch: StructureBatch, method: str) -> dict:
    start = time.perf_counter()
    relaxed = relax_batch(batch, CheapSettings(method=method))
    seconds = time.perf_counter() - start
    return {
        "benchmark": name,
        "what": method,
        "n": len(batch),
        "seconds": seconds,
        "relaxations_per_s": len(batch) / seconds,
        "converged_share": float(np.mean(relaxed.info["cheap_converged"])),
        "failed": int(np.sum(relaxed.info["cheap_failed"])),
        "mean_steps": float(np.mean(relaxed.info["cheap_steps"])),
    }


def run(seed: int = 0) -> list[dict]:
    from aiida_physgen.screening.cheap_relax import CHGNET_MODEL, chgnet_calculator

    rows = [_row("cheap tier: 39 rattled C6H14O molecules", molecules(seed), "gfn2-xtb")]
    CHGNET_MODEL.clear()
    start = time.perf_counter()
    chgnet_calculator()
    load = time.perf_counter() - start
    rows.append(_row("cheap tier: 6 rattled SiO2 targets (6–18 atoms)", crystals(seed), "chgnet"))
    rows[-1]["model_load_s"] = load
    return rows


def main() -> None:
    from tabulate import tabulate

    rows = run(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(
        tabulate(
            [
                [
                    r["benchmark"],
                    r["what"],
                    f"{r['relaxations_per_s']:.2f}",
                    f"{r['converged_share']:.0%}",
                    r["failed"],
                    f"{r['mean_steps']:.0f}",
                    f"{r['seconds']:.1f}",
                ]
                for r in rows
            ],
            headers=["benchmark", "method", "relaxations/s", "converged", "failed", "mean steps", "total s"],
        )
    )
    print(f"CHGNet model load (once per process): {rows[-1]['model_load_s']:.1f} s")


if __name__ == "__main__":
    main()
