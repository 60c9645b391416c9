"""A small DFT-labelled set of porous graphene sheets: the EDNN's claim (train on small cells, predict large ones)
tested on DFT energies rather than on the short-ranged Tersoff labels.

Two parts, both on the ideal honeycomb lattice (fixed geometry, no relaxation), made reproducibly from seeds:

* ``small``: 101 sheets of 3 × 2 orthogonal cells (24 carbon sites, 7.4 × 8.5 Å), one to three holes each;
* ``large``: 11 sheets of 6 × 4 cells (96 sites), four times the area of any small sheet, four to twelve holes.

The first sheet of each part is the pristine sheet. Every energy is a GPAW single point (PBE, LCAO ``dzp``,
Fermi-Dirac 0.1 eV, spin-paired) with the k-points and the real-space grid **per orthogonal cell** fixed
(:class:`DftSettings`), so that a large sheet is computed exactly as a 2 × 2 supercell of a small one would be: the
pristine sheets of both parts have the same energy per atom (checked by the tests of the shipped set), and what the
EDNN misses on a large sheet is the model's error, not a change of numerical settings.

The set ships with the package (``resources/graphene/dft_sheets.extxyz``, made by ``scripts/graphene_dft_set.py``)
and is read by :func:`load_dft_set`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ase
import numpy as np

from ..ml import graphene
from ..ml.batch import StructureBatch

__all__ = [
    "PARTS",
    "DftSettings",
    "SetPart",
    "gpaw_parameters",
    "part_sheets",
    "gpaw_energy",
    "load_dft_set",
    "shipped_set_path",
]


@dataclass(frozen=True)
class SetPart:
    """One part of the set: ``count`` sheets of ``nx × ny`` orthogonal cells (the first pristine, the others with
    ``holes`` holes of ``radius`` Å, see :func:`aiida_physgen.ml.graphene.random_sheets`) from ``seed``, keeping
    sheets with at least ``min_atoms`` atoms and one copy of each sheet up to a lattice translation."""

    name: str
    nx: int
    ny: int
    count: int
    seed: int
    holes: tuple[int, int]
    radius: tuple[float, float] = (0.8, 2.0)
    min_atoms: int = 12

    @property
    def lattice(self) -> graphene.Lattice:
        return graphene.Lattice(self.nx, self.ny)


#: the two parts of the shipped set
PARTS = {
    "small": SetPart("small", 3, 2, count=101, seed=2026, holes=(1, 3)),
    "large": SetPart("large", 6, 4, count=11, seed=4052, holes=(4, 12), min_atoms=48),
}


@dataclass(frozen=True)
class DftSettings:
    """GPAW settings of the set, with the k-points and grid points given per orthogonal cell (so that every sheet
    on the lattice is computed with the same k-point density and the same grid spacing)."""

    xc: str = "PBE"
    basis: str = "dzp"
    smearing: float = 0.1
    #: Γ-centred k-points times orthogonal cells along x and y (12 and 8: 4 × 4 k on 3 × 2 cells, 2 × 2 on 6 × 4)
    kpoint_cells: tuple[int, int] = (12, 8)
    #: grid points per orthogonal cell along x (2.46 Å) and y (4.26 Å): spacings 0.205 and 0.266 Å
    grid_per_cell: tuple[int, int] = (12, 16)
    #: grid points along z over the lattice's 15 Å of cell height (0.25 Å)
    grid_z: int = 60


def gpaw_parameters(lattice: graphene.Lattice, settings: DftSettings | None = None) -> dict[str, Any]:
    """Keyword arguments of ``gpaw.GPAW`` for a sheet of ``lattice`` (``ValueError`` when the k-point density of
    ``settings`` is not a whole number of k-points on that lattice)."""
    settings = settings or DftSettings()
    kx, ky = (settings.kpoint_cells[0] / lattice.nx, settings.kpoint_cells[1] / lattice.ny)
    if kx != int(kx) or ky != int(ky):
        raise ValueError(
            f"lattice: {lattice.nx} × {lattice.ny} cells do not divide the k-point density {settings.kpoint_cells}; "
            "expected a lattice whose cells divide it"
        )
    return {
        "mode": "lcao",
        "basis": settings.basis,
        "xc": settings.xc,
        "kpts": {"size": (int(kx), int(ky), 1), "gamma": True},
        "gpts": (settings.grid_per_cell[0] * lattice.nx, settings.grid_per_cell[1] * lattice.ny, settings.grid_z),
        "occupations": {"name": "fermi-dirac", "width": settings.smearing},
        "txt": None,
    }


def _translation_key(occupancy: np.ndarray) -> bytes:
    """The same bytes for a sheet and all its lattice translations (rolls by whole orthogonal cells)."""
    rows, cols = 3, 2  # one orthogonal cell of the zig-zag grid (see aiida_physgen.ml.graphene)
    return min(
        np.roll(occupancy, (r, c), axis=(0, 1)).tobytes()
        for r in range(0, occupancy.shape[0], rows)
        for c in range(0, occupancy.shape[1], cols)
    )


def part_sheets(part: SetPart) -> np.ndarray:
    """The zig-zag occupancies ``(count, 3ny, 2nx)`` of ``part``: the pristine sheet, then distinct porous ones."""
    lattice = part.lattice
    out, seen = [lattice.mask()], {_translation_key(lattice.mask())}
    draw = 0
    while len(out) < part.count:
        candidates = graphene.random_sheets(
            4 * part.count, part.seed + draw, lattice, holes=part.holes, radius=part.radius
        )
        draw += 1
        for occupancy in candidates:
            key = _translation_key(occupancy)
            if occupancy.sum() >= part.min_atoms and key not in seen:
                seen.add(key)
                out.append(occupancy)
                if len(out) == part.count:
                    break
        if draw > 20:
            raise ValueError(f"{part.name}: fewer than {part.count} distinct sheets with {part.min_atoms} atoms")
    return np.array(out)


def gpaw_energy(atoms: ase.Atoms, parameters: dict[str, Any]) -> tuple[float, float]:
    """GPAW single-point total energy (eV) of a sheet, periodic in z over its cell height, and the seconds taken."""
    from gpaw import GPAW

    atoms = atoms.copy()
    atoms.info.clear()
    atoms.pbc = True
    atoms.calc = GPAW(**parameters)
    start = time.perf_counter()
    energy = float(atoms.get_potential_energy())
    return energy, time.perf_counter() - start


def shipped_set_path() -> Path:
    from ..resources import resource_path

    return resource_path("graphene/dft_sheets.extxyz")


def load_dft_set(path: str | Path | None = None) -> dict[str, StructureBatch]:
    """The labelled sheets by part (``'small'``, ``'large'``), each a :class:`StructureBatch` whose ``info`` holds
    ``energy`` (eV), ``index`` (the sheet's place in :func:`part_sheets`) and ``seconds`` (GPAW wall time)."""
    from ase.io import read

    frames = read(str(path or shipped_set_path()), index=":")
    for atoms in frames:  # ASE's extxyz reader moves an ``energy`` entry of the info into a calculator
        if "energy" not in atoms.info and atoms.calc is not None:
            atoms.info["energy"] = atoms.calc.results["energy"]
    out = {}
    for name in PARTS:
        mine = sorted((a for a in frames if a.info.get("part") == name), key=lambda a: a.info["index"])
        if mine:
            out[name] = StructureBatch.from_atoms(mine, info_keys=("energy", "index", "seconds"))
    return out


def settings_record(settings: DftSettings | None = None) -> dict[str, Any]:
    """The settings as plain values, written into every frame of the set."""
    return asdict(settings or DftSettings())
