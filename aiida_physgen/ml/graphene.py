"""Porous graphene on a periodic honeycomb lattice: random sheets, the two grid encodings, ``ase.Atoms``.

RUGAN and EDNN (Mills, Casert, Tamblyn 2020; Mills et al. 2019) work on *lattice occupations*:
every carbon site of a fixed periodic honeycomb lattice is either occupied or vacant. This
module holds the lattice and the exact round trips between its encodings and atoms.

Geometry (C–C bond ``cc`` = 1.42 Å, lattice constant ``a = √3·cc``): a sheet is ``nx × ny``
orthogonal cells of ``a × 3·cc`` (4 carbon sites each), periodic in x and y, flat at the middle of
a vacuum gap in z. The paper's ≈ 35 Å × 35 Å sheet is 14 × 8 cells (34.4 Å × 34.1 Å, 448 sites).

The **zig-zag grid** (shape ``(3·ny, 2·nx)``, the paper's 24 × 28) is the triangular lattice the
honeycomb lives on, stored column by column: column ``i`` sits at ``x = i·a/2``, its site ``r`` at
``y = (2r + i mod 2)·cc/2``, so the grid zig-zags across the hexagons. One site in three (the
hexagon centres, ``(r − i mod 2) mod 3 = 2``) is always empty: :meth:`Lattice.mask` marks the
others. Encoded as +1 atom / −1 vacancy (always-empty sites are −1 too).

The **pair grid** (shape ``(nx, 2·ny)``, the paper's 14 × 16) joins the two sites of every bond
along a column: ``pair[j, q]`` holds column ``i = 2j + q mod 2``, sites ``r0 = 3·(q // 2) + i mod 2``
and ``r0 + 1``, in one of 4 states ``occ(r0) + 2·occ(r0 + 1)`` (0 empty, 3 both occupied).

Both grids tile periodically: a sheet of ``2nx × 2ny`` cells is a 2 × 2 tiling of the grid arrays,
which is what makes a fully convolutional, circularly padded generator upscale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np

from .batch import StructureBatch

__all__ = [
    "CC_BOND",
    "Lattice",
    "random_sheets",
    "pair_index",
    "zigzag_to_pair",
    "pair_to_zigzag",
    "encode_zigzag",
    "decode_zigzag",
    "occupancy_to_atoms",
    "atoms_to_occupancy",
    "sheets_to_batch",
    "batch_to_sheets",
    "coordination",
    "prune_dangling",
    "N_PAIR_STATES",
]

#: C–C bond length of graphene in Å
CC_BOND = 1.42
#: states of a pair site: 0 both empty, 1 first occupied, 2 second occupied, 3 both occupied
N_PAIR_STATES = 4
#: how far (Å) an atom may sit from its lattice site and still be read as occupying it
SITE_TOLERANCE = 0.2


@dataclass(frozen=True)
class Lattice:
    """A periodic honeycomb sheet of ``nx × ny`` orthogonal cells (see the module docstring)."""

    nx: int = 14
    ny: int = 8
    cc: float = CC_BOND
    vacuum: float = 15.0

    def __post_init__(self) -> None:
        for name in ("nx", "ny"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"lattice.{name}: got {value!r}, expected a positive number of orthogonal cells")
        for name in ("cc", "vacuum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"lattice.{name}: got {value!r}, expected a positive length in Å")

    # ------------------------------------------------------------------ sizes
    @property
    def a(self) -> float:
        return math.sqrt(3.0) * self.cc

    @property
    def zigzag_shape(self) -> tuple[int, int]:
        return (3 * self.ny, 2 * self.nx)

    @property
    def pair_shape(self) -> tuple[int, int]:
        return (self.nx, 2 * self.ny)

    @property
    def n_sites(self) -> int:
        return 4 * self.nx * self.ny

    @property
    def lengths(self) -> tuple[float, float]:
        return (self.nx * self.a, self.ny * 3 * self.cc)

    @property
    def area(self) -> float:
        """In-plane area of the periodic cell, Å²."""
        return self.lengths[0] * self.lengths[1]

    @property
    def cell(self) -> np.ndarray:
        lx, ly = self.lengths
        return np.diag([lx, ly, self.vacuum])

    def scaled(self, multiple: int) -> Lattice:
        """The lattice ``multiple`` times larger on each side (``multiple²`` times the area)."""
        if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) or multiple < 1:
            raise ValueError(f"scale: got {multiple!r}, expected a positive integer multiple of the sheet's side")
        return Lattice(self.nx * int(multiple), self.ny * int(multiple), self.cc, self.vacuum)

    def to_dict(self) -> dict:
        return {"nx": int(self.nx), "ny": int(self.ny), "cc": float(self.cc), "vacuum": float(self.vacuum)}

    @classmethod
    def from_dict(cls, values: dict | None) -> Lattice:
        values = dict(values or {})
        unknown = sorted(set(values) - {"nx", "ny", "cc", "vacuum"})
        if unknown:
            raise ValueError(f"lattice: unknown key(s) {unknown}; expected nx, ny, cc, vacuum")
        return cls(**values)

    @classmethod
    def from_zigzag_shape(cls, shape: Sequence[int], cc: float = CC_BOND, vacuum: float = 15.0) -> Lattice:
        rows, cols = (int(s) for s in shape[-2:])
        if rows % 3 or cols % 2 or rows < 3 or cols < 2:
            raise ValueError(
                f"grid: a zig-zag grid of shape {rows} × {cols} does not fit the honeycomb lattice; expected rows a "
                "multiple of 3 and columns a multiple of 2 (e.g. 24 × 28)"
            )
        return cls(cols // 2, rows // 3, cc, vacuum)

    # ------------------------------------------------------------------ sites
    def mask(self) -> np.ndarray:
        """``(3ny, 2nx)`` booleans: True on carbon sites, False on the always-empty hexagon centres."""
        rows, cols = self.zigzag_shape
        r = np.arange(rows)[:, None]
        parity = np.arange(cols)[None, :] % 2
        return (r - parity) % 3 != 2

    def grid_positions(self) -> np.ndarray:
        """``(3ny, 2nx, 3)`` Cartesian positions of every grid site (hexagon centres included), Å."""
        rows, cols = self.zigzag_shape
        r = np.arange(rows)[:, None].astype(float)
        i = np.arange(cols)[None, :]
        x = np.broadcast_to(i * self.a / 2, (rows, cols))
        y = (2 * r + i % 2) * self.cc / 2
        z = np.full((rows, cols), self.vacuum / 2)
        return np.stack([x, y, z], axis=-1)

    def site_positions(self) -> np.ndarray:
        """``(n_sites, 3)`` positions of the carbon sites, in grid order (row-major over the mask)."""
        return self.grid_positions()[self.mask()]


def _as_occupancy(occupancy: np.ndarray, where: str = "occupancy") -> np.ndarray:
    occ = np.asarray(occupancy)
    if occ.ndim < 2:
        raise ValueError(f"{where}: expected a zig-zag grid (..., rows, columns), got shape {occ.shape}")
    if occ.dtype != bool:
        values = np.unique(occ)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{where}: expected booleans (or 0/1), got values {values[:5].tolist()}")
        occ = occ.astype(bool)
    lattice = Lattice.from_zigzag_shape(occ.shape)
    if (occ & ~lattice.mask()).any():
        raise ValueError(f"{where}: atoms on always-empty hexagon-centre sites; the grid does not fit the lattice")
    return occ


# ---------------------------------------------------------------------- neighbours and clean-up
def _neighbour_counts(occ: np.ndarray) -> np.ndarray:
    """Occupied nearest neighbours of every grid site (periodic), ``occ`` of shape ``(..., R, C)``."""
    occ = occ.astype(np.int16)
    up = np.roll(occ, -1, axis=-2)
    down = np.roll(occ, 1, axis=-2)
    # even column i: its neighbours in columns i ± 1 are rows r-1 and r; odd column: rows r and r+1
    left = np.roll(occ, 1, axis=-1)
    right = np.roll(occ, -1, axis=-1)
    cols = occ.shape[-1]
    even = np.arange(cols) % 2 == 0
    side = left + right
    side_shift_even = np.roll(side, 1, axis=-2)  # row r-1 of the side columns
    side_shift_odd = np.roll(side, -1, axis=-2)  # row r+1 of the side columns
    side_other = np.where(even, side_shift_even, side_shift_odd)
    return up + down + side + side_other


def coordination(occupancy: np.ndarray) -> np.ndarray:
    """Occupied carbon neighbours (0–3) of every site; zero on vacant sites."""
    occ = _as_occupancy(occupancy)
    return np.where(occ, _neighbour_counts(occ), 0)


def prune_dangling(occupancy: np.ndarray, min_neighbours: int = 2) -> np.ndarray:
    """Remove, repeatedly, atoms with fewer than ``min_neighbours`` carbon neighbours (chains, lone atoms)."""
    occ = _as_occupancy(occupancy).copy()
    while True:
        weak = occ & (_neighbour_counts(occ) < min_neighbours)
        if not weak.any():
            return occ
        occ &= ~weak


# ---------------------------------------------------------------------- random porous sheets
#: peak bytes per lattice site of making sheets and turning them into a structure batch (measured: 25 kB for a
#: 14 × 8 sheet of 672 sites, 256 sheets), rounded up
SHEET_BYTES_PER_SITE = 48


def check_sheets_fit(count: int, lattice: Lattice) -> None:
    """Refuse (``ValueError`` naming ``count``) more sheets than the memory holds, before making any."""
    from .training import check_fits_in_memory

    check_fits_in_memory("count", count, SHEET_BYTES_PER_SITE * 6 * lattice.nx * lattice.ny, "sheets")


def random_sheets(
    count: int,
    seed: int,
    lattice: Lattice | None = None,
    holes: tuple[int, int] = (1, 6),
    radius: tuple[float, float] = (1.5, 5.0),
    prune: bool = True,
) -> np.ndarray:
    """``count`` porous sheets as zig-zag occupancies ``(count, 3ny, 2nx)`` (bool), reproducible from ``seed``.

    Each sheet gets a number of holes drawn uniformly from ``holes`` (inclusive), each a disc of radius
    drawn uniformly from ``radius`` (Å) around a uniformly drawn centre; carbon sites inside any disc
    (minimum-image distance, so holes wrap around the periodic boundary) are removed. With ``prune``,
    atoms left with fewer than two carbon neighbours are then removed too (no dangling chains).
    """
    lattice = lattice or Lattice()
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count: got {count!r}, expected a positive number of sheets")
    check_sheets_fit(count, lattice)
    lo, hi = holes
    if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer)) and 0 <= lo <= hi):
        raise ValueError(f"holes: got {holes!r}, expected (min, max) numbers of holes with 0 <= min <= max")
    r_lo, r_hi = radius
    if not (0 < r_lo <= r_hi) or r_hi >= min(lattice.lengths) / 2:
        raise ValueError(
            f"radius: got {radius!r}, expected 0 < min <= max < {min(lattice.lengths) / 2:.1f} Å (half the sheet)"
        )
    rng = np.random.default_rng(seed)
    mask = lattice.mask()
    xy = lattice.grid_positions()[..., :2]
    lengths = np.array(lattice.lengths)
    sheets = np.empty((int(count),) + lattice.zigzag_shape, dtype=bool)
    for n in range(int(count)):
        occ = mask.copy()
        for _ in range(int(rng.integers(lo, hi + 1))):
            centre = rng.uniform(0, 1, 2) * lengths
            r = rng.uniform(r_lo, r_hi)
            d = xy - centre
            d -= np.round(d / lengths) * lengths
            occ &= (d**2).sum(-1) >= r * r
        sheets[n] = prune_dangling(occ) if prune else occ
    return sheets


# ---------------------------------------------------------------------- encodings
def pair_index(lattice: Lattice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pair cell ``(j, q)``: its column and the rows of its two sites (arrays of the pair shape)."""
    j = np.arange(lattice.nx)[:, None]
    q = np.arange(2 * lattice.ny)[None, :]
    column = 2 * j + q % 2
    row0 = 3 * (q // 2) + column % 2
    return np.broadcast_to(column, lattice.pair_shape), row0, row0 + 1


def zigzag_to_pair(occupancy: np.ndarray) -> np.ndarray:
    """Zig-zag occupancies ``(..., 3ny, 2nx)`` → pair states ``(..., nx, 2ny)`` (int8, 0–3)."""
    occ = _as_occupancy(occupancy)
    lattice = Lattice.from_zigzag_shape(occ.shape)
    column, row0, row1 = pair_index(lattice)
    first = occ[..., row0, column]
    second = occ[..., row1, column]
    return (first.astype(np.int8) + 2 * second.astype(np.int8)).astype(np.int8)


def pair_to_zigzag(states: np.ndarray) -> np.ndarray:
    """Pair states ``(..., nx, 2ny)`` → zig-zag occupancies ``(..., 3ny, 2nx)`` (bool); the exact inverse."""
    states = np.asarray(states)
    if states.ndim < 2 or states.shape[-1] % 2:
        raise ValueError(f"states: expected a pair grid (..., nx, 2·ny) with an even last axis, got {states.shape}")
    if not np.isin(np.unique(states), np.arange(N_PAIR_STATES)).all():
        raise ValueError(f"states: expected integers 0–3 (pair states), got {np.unique(states)[:5].tolist()}")
    lattice = Lattice(states.shape[-2], states.shape[-1] // 2)
    column, row0, row1 = pair_index(lattice)
    occ = np.zeros(states.shape[:-2] + lattice.zigzag_shape, dtype=bool)
    occ[..., row0, column] = (states & 1).astype(bool)
    occ[..., row1, column] = (states & 2).astype(bool)
    return occ


def encode_zigzag(occupancy: np.ndarray) -> np.ndarray:
    """+1 atom / −1 vacancy (float32); always-empty sites are −1."""
    return np.where(_as_occupancy(occupancy), 1.0, -1.0).astype(np.float32)


def decode_zigzag(values: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Occupancies from ±1 values (or a sigmoid in [0, 1] with ``threshold=0.5``), masked to carbon sites."""
    values = np.asarray(values)
    lattice = Lattice.from_zigzag_shape(values.shape)
    return (values > threshold) & lattice.mask()


# ---------------------------------------------------------------------- atoms
def _grid_lattice(shape, lattice: Lattice | None) -> Lattice:
    """The lattice of a zig-zag grid of ``shape``: ``lattice`` when given (and of that size)."""
    base = Lattice.from_zigzag_shape(shape)
    if lattice is None:
        return base
    if (lattice.nx, lattice.ny) != (base.nx, base.ny):
        raise ValueError(f"lattice: {lattice.nx} × {lattice.ny} cells, but the grid is {base.nx} × {base.ny}")
    return lattice


def occupancy_to_atoms(occupancy: np.ndarray, lattice: Lattice | None = None) -> ase.Atoms:
    """One sheet as ``ase.Atoms`` (carbon on the occupied sites, in grid order; pbc in x and y)."""
    occ = _as_occupancy(occupancy)
    if occ.ndim != 2:
        raise ValueError(f"occupancy: expected one sheet (rows, columns), got shape {occ.shape}")
    base = _grid_lattice(occ.shape, lattice)
    positions = base.grid_positions()[occ]
    return ase.Atoms(["C"] * len(positions), positions=positions, cell=base.cell, pbc=[True, True, False])


def atoms_to_occupancy(
    atoms: ase.Atoms, lattice: Lattice | None = None, where: str = "structure"
) -> tuple[np.ndarray, Lattice]:
    """Read a sheet back onto the lattice: the zig-zag occupancy and the lattice it fits.

    The lattice (cells in x and y) is inferred from the cell unless given; ``ValueError`` naming
    ``where`` when the structure is not a periodic all-carbon sheet on the honeycomb lattice (a
    non-orthogonal or wrong-sized cell, an atom off its site by more than 0.2 Å, two atoms on one site).
    Positions may be shifted as a whole (the lattice origin is taken from the first atom).
    """
    if len(atoms) == 0:
        raise ValueError(f"{where}: the sheet has no atoms")
    if set(atoms.get_chemical_symbols()) != {"C"}:
        raise ValueError(f"{where}: expected an all-carbon sheet, got {atoms.get_chemical_formula()}")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not (pbc[0] and pbc[1]):
        raise ValueError(
            f"{where}: the sheet is not periodic in x and y (pbc {pbc.tolist()}); the lattice models need periodic "
            "sheets"
        )
    cell = np.asarray(atoms.cell.array, dtype=float)
    if np.abs(cell[:2, :2] - np.diag(np.diag(cell[:2, :2]))).max() > 1e-6 or np.abs(cell[:2, 2]).max() > 1e-6:
        raise ValueError(f"{where}: expected an orthogonal cell with a along x and b along y, got {cell.tolist()}")
    if lattice is None:
        cc = CC_BOND
        nx = cell[0, 0] / (math.sqrt(3.0) * cc)
        ny = cell[1, 1] / (3 * cc)
        if abs(nx - round(nx)) > 1e-3 or abs(ny - round(ny)) > 1e-3 or round(nx) < 1 or round(ny) < 1:
            raise ValueError(
                f"{where}: the cell {cell[0, 0]:.4f} × {cell[1, 1]:.4f} Å is not a whole number of orthogonal graphene "
                f"cells ({math.sqrt(3.0) * cc:.4f} × {3 * cc:.4f} Å, C–C {cc} Å); the grid does not fit the lattice"
            )
        lattice = Lattice(int(round(nx)), int(round(ny)), cc, float(cell[2, 2]) if cell[2, 2] > 0 else 15.0)
    elif np.abs(np.diag(cell)[:2] - np.array(lattice.lengths)).max() > 1e-3:
        raise ValueError(f"{where}: the cell does not match a {lattice.nx} × {lattice.ny} lattice")
    positions = atoms.get_positions()
    grid = lattice.grid_positions()
    mask = lattice.mask()
    # the origin: the offset of the first atom from its nearest carbon site (minimum image); then
    # every atom is read onto the site nearest to it
    lengths = np.array(lattice.lengths)
    d0 = positions[0, :2] - grid[mask][:, :2]
    d0 -= np.round(d0 / lengths) * lengths
    origin = d0[np.argmin((d0**2).sum(-1))]
    xy = (positions[:, :2] - origin) % lengths
    col = np.rint(xy[:, 0] / (lattice.a / 2)).astype(int) % (2 * lattice.nx)
    row = np.rint((xy[:, 1] / (lattice.cc / 2) - col % 2) / 2).astype(int) % (3 * lattice.ny)
    d = xy - grid[row, col, :2]
    d -= np.round(d / lengths) * lengths
    off = np.sqrt((d**2).sum(-1))
    bad = np.flatnonzero((off > SITE_TOLERANCE) | ~mask[row, col])
    if bad.size:
        raise ValueError(
            f"{where}: atom {int(bad[0])} is {off[bad[0]]:.2f} Å from the nearest honeycomb site (at most "
            f"{SITE_TOLERANCE} Å allowed); the sheet does not fit the lattice"
        )
    occ = np.zeros(lattice.zigzag_shape, dtype=bool)
    flat = row * occ.shape[1] + col
    if np.unique(flat).size != flat.size:
        raise ValueError(f"{where}: two atoms sit on the same lattice site")
    occ[row, col] = True
    return occ, lattice


def sheets_to_batch(
    occupancies: np.ndarray, lattice: Lattice | None = None, info: dict | None = None
) -> StructureBatch:
    """Sheets (zig-zag occupancies ``(M, 3ny, 2nx)``) as one :class:`StructureBatch` (carbon, pbc in x and y).

    Built from the arrays directly (no ``ase.Atoms`` per sheet): 32,768 sheets take well under a second.
    """
    occ = _as_occupancy(np.asarray(occupancies))
    if occ.ndim == 2:
        occ = occ[None]
    if occ.ndim != 3 or len(occ) == 0:
        raise ValueError(f"occupancies: expected sheets (M, rows, columns), got shape {occ.shape}")
    base = _grid_lattice(occ.shape, lattice)
    n_atoms = occ.reshape(len(occ), -1).sum(1)
    if (n_atoms == 0).any():
        raise ValueError(f"occupancies: sheet {int(np.argmax(n_atoms == 0))} has no atoms")
    grid = base.grid_positions()
    _, rows, cols = np.nonzero(occ)  # sheet-major, then row-major: the order occupancy_to_atoms uses
    m = len(occ)
    return StructureBatch(
        numbers=np.full(rows.size, 6),
        positions=grid[rows, cols],
        n_atoms=n_atoms,
        cells=np.broadcast_to(base.cell, (m, 3, 3)).copy(),
        pbc=np.tile([True, True, False], (m, 1)),
        info={key: np.asarray(value) for key, value in (info or {}).items()},
    )


def batch_to_sheets(batch: StructureBatch, where: str = "training") -> tuple[np.ndarray, Lattice]:
    """Every structure of ``batch`` read onto one lattice: occupancies ``(M, 3ny, 2nx)`` and the lattice.

    ``ValueError`` naming ``where[i]`` for a structure that is not a sheet on the lattice, or whose
    cell differs from the first one's. Sheets whose atoms sit exactly on the sites (as
    :func:`sheets_to_batch` writes them) are read in one vectorised pass; others one by one.
    """
    if len(batch) == 0:
        raise ValueError(f"{where}: expected at least one sheet")
    first, lattice = atoms_to_occupancy(batch[0], where=f"{where}[0]")
    m = len(batch)
    same_cell = np.abs(batch.cells - batch.cells[0]).reshape(m, -1).max(1) < 1e-6
    if not same_cell.all():
        i = int(np.argmin(same_cell))
        raise ValueError(
            f"{where}[{i}]: its cell differs from sheet 0's ({lattice.nx} × {lattice.ny} cells); every sheet of a set "
            "must be on the same lattice"
        )
    sheets = np.zeros((m,) + lattice.zigzag_shape, dtype=bool)
    # fast path: every atom exactly on a site of the unshifted grid
    grid = lattice.grid_positions()
    xy = batch.positions[:, :2] % np.array(lattice.lengths)
    col = np.rint(xy[:, 0] / (lattice.a / 2)).astype(int) % (2 * lattice.nx)
    row = np.rint((xy[:, 1] / (lattice.cc / 2) - col % 2) / 2).astype(int) % (3 * lattice.ny)
    exact = (np.abs(grid[row, col, :2] - xy) < 1e-6).all(1) & lattice.mask()[row, col] & (batch.numbers == 6)
    owner = np.repeat(np.arange(m), batch.n_atoms)
    good = np.bincount(owner, weights=exact, minlength=m) == batch.n_atoms
    sheets[owner[exact], row[exact], col[exact]] = True
    # a sheet with two atoms on one site has fewer occupied sites than atoms
    good &= sheets.reshape(m, -1).sum(1) == batch.n_atoms
    sheets[0] = first
    for i in np.flatnonzero(~good):
        if i == 0:
            continue
        sheets[i], _ = atoms_to_occupancy(batch[int(i)], lattice, where=f"{where}[{int(i)}]")
    return sheets, lattice


@dataclass
class SheetSettings:
    """How random porous sheets are made (:func:`random_sheets`); the defaults give the paper's ≈ 35 Å sheets."""

    nx: int = 14
    ny: int = 8
    holes: tuple[int, int] = (1, 6)
    radius: tuple[float, float] = (1.5, 5.0)
    prune: bool = True

    def __post_init__(self) -> None:
        self.holes = tuple(self.holes)
        self.radius = tuple(float(r) for r in self.radius)
        if len(self.holes) != 2 or len(self.radius) != 2:
            raise ValueError(f"holes, radius: expected (min, max) pairs, got {self.holes!r} and {self.radius!r}")
        lattice = self.lattice  # checks nx, ny
        if not (0 < self.radius[0] <= self.radius[1] < min(lattice.lengths) / 2):
            raise ValueError(
                f"radius: got {list(self.radius)}, expected 0 < min <= max < "
                f"{min(lattice.lengths) / 2:.1f} Å (half the sheet)"
            )
        lo, hi = self.holes
        if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) for h in self.holes) or not 0 <= lo <= hi:
            raise ValueError(f"holes: got {list(self.holes)}, expected (min, max) numbers of holes, 0 <= min <= max")
        if not isinstance(self.prune, bool):
            raise ValueError(f"prune: got {self.prune!r}, expected true or false")

    @property
    def lattice(self) -> Lattice:
        return Lattice(self.nx, self.ny)

    def make(self, count: int, seed: int) -> np.ndarray:
        return random_sheets(count, seed, self.lattice, self.holes, self.radius, self.prune)


__all__ += ["SheetSettings"]
