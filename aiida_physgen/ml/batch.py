"""A batch of atomic structures held as flat NumPy arrays.

Generators produce thousands of structures at once; building one ``ase.Atoms`` per candidate
would dominate the cost of generation and selection. ``StructureBatch`` keeps the whole batch in
a handful of arrays (the same layout the ``physgen.structure_set`` node stores in its repository)
and converts single items to ``ase.Atoms`` only on demand.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ase
import ase.data
import ase.formula
import ase.io
import numpy as np

__all__ = [
    "StructureBatch",
    "StructureFileError",
    "MissingStructureFileError",
    "as_batch",
    "atoms_list",
    "checked_cell_and_pbc",
]

#: fixed time stamp of the members of the ``.npz`` archive (the earliest a zip file can hold), so the
#: same structures always give the same bytes and AiiDA's hash of a ``StructureSet`` is stable
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


#: shortest distances of batches of mixed sizes or cells (:meth:`StructureBatch.min_distances`) by geometry, least
#: recently used first: ASE's neighbour list takes about 5 ms per structure, and every process that takes a training
#: set checks it when it is created (a SiO2 screening checks its 167 training structures about ten times: 9 s)
_MIN_DISTANCES: OrderedDict[bytes, np.ndarray] = OrderedDict()
MIN_DISTANCES_CACHE_SIZE = 64


class StructureFileError(ValueError):
    """A structure file that cannot be read; the message names the file and the format."""


class MissingStructureFileError(StructureFileError, FileNotFoundError):
    """The structure file does not exist (both a ``ValueError`` and a ``FileNotFoundError``)."""


@dataclass
class StructureBatch:
    """``M`` structures of possibly different sizes.

    :param numbers: atomic numbers of all atoms, concatenated, shape ``(total_atoms,)``.
    :param positions: Cartesian positions in Å, concatenated, shape ``(total_atoms, 3)``.
    :param n_atoms: atoms per structure, shape ``(M,)``.
    :param cells: cell vectors (rows) in Å, shape ``(M, 3, 3)``; zeros for a molecule without box.
    :param pbc: periodicity per structure and axis, shape ``(M, 3)``.
    :param info: per-structure scalar arrays of shape ``(M,)`` (energies, labels, model index...).
    """

    numbers: np.ndarray
    positions: np.ndarray
    n_atoms: np.ndarray
    cells: np.ndarray
    pbc: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        self.n_atoms = np.asarray(self.n_atoms, dtype=np.int64).reshape(-1)
        m = len(self.n_atoms)
        self.cells = np.asarray(self.cells, dtype=np.float64).reshape(m, 3, 3)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(m, 3)
        if self.numbers.shape[0] != self.positions.shape[0]:
            raise ValueError(
                f"numbers has {self.numbers.shape[0]} entries but positions has {self.positions.shape[0]} rows"
            )
        if int(self.n_atoms.sum()) != self.numbers.shape[0]:
            raise ValueError(f"n_atoms sums to {int(self.n_atoms.sum())}, expected {self.numbers.shape[0]}")
        if np.any(self.n_atoms < 1):
            raise ValueError("n_atoms: every structure needs at least one atom")
        self._check_finite()
        self.info = {key: np.asarray(value) for key, value in self.info.items()}
        for key, value in self.info.items():
            if value.shape[:1] != (m,):
                raise ValueError(f"info[{key!r}] has shape {value.shape}, expected ({m}, ...)")
        self._offsets = np.concatenate([[0], np.cumsum(self.n_atoms)])

    def _check_finite(self) -> None:
        """Refuse NaN or infinite positions and cells, naming the first structure that has them."""
        bad_atoms = ~np.isfinite(self.positions).all(axis=1)
        if bad_atoms.any():
            atom = int(np.argmax(bad_atoms))
            index = int(np.searchsorted(np.cumsum(self.n_atoms), atom, side="right"))
            raise ValueError(
                f"positions: structure {index} has non-finite (NaN or infinite) atomic positions; "
                "expected finite Cartesian coordinates in Å"
            )
        bad_cells = ~np.isfinite(self.cells).reshape(len(self.cells), 9).all(axis=1)
        if bad_cells.any():
            raise ValueError(
                f"cells: structure {int(np.argmax(bad_cells))} has a non-finite (NaN or infinite) cell; "
                "expected finite cell vectors in Å (zeros for a molecule without box)"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(cls, structures: Iterable[ase.Atoms], info_keys: Sequence[str] = ()) -> StructureBatch:
        """Build from ``ase.Atoms``; numeric ``atoms.info`` entries named in ``info_keys`` are kept."""
        structures = list(structures)
        if not structures:
            raise ValueError("structures: expected at least one structure, got an empty list")
        info = {key: np.array([float(a.info.get(key, np.nan)) for a in structures]) for key in info_keys}
        return cls(
            numbers=np.concatenate([a.numbers for a in structures]),
            positions=np.concatenate([a.positions for a in structures]),
            n_atoms=np.array([len(a) for a in structures]),
            cells=np.stack([a.cell.array for a in structures]),
            pbc=np.stack([a.pbc for a in structures]),
            info=info,
        )

    @classmethod
    def from_uniform(
        cls,
        positions: np.ndarray,
        numbers: Sequence[int],
        cell: np.ndarray,
        pbc: Sequence[bool],
        info: dict[str, np.ndarray] | None = None,
    ) -> StructureBatch:
        """Build from ``M`` structures sharing composition, atom order and cell: positions ``(M, N, 3)``."""
        positions = np.asarray(positions, dtype=np.float64)
        m, n = positions.shape[:2]
        numbers = np.asarray(numbers, dtype=np.int64)
        if numbers.shape != (n,):
            raise ValueError(f"numbers has shape {numbers.shape}, expected ({n},)")
        return cls(
            numbers=np.tile(numbers, m),
            positions=positions.reshape(-1, 3),
            n_atoms=np.full(m, n),
            cells=np.broadcast_to(np.asarray(cell, dtype=np.float64).reshape(1, 3, 3), (m, 3, 3)),
            pbc=np.broadcast_to(np.asarray(pbc, dtype=bool).reshape(1, 3), (m, 3)),
            info=info or {},
        )

    @classmethod
    def read(cls, path: str | Path, index: str = ":", format: str | None = None) -> StructureBatch:
        """Read any file ASE reads (extxyz, CIF, POSCAR, ...); numeric per-structure info is kept.

        :raises MissingStructureFileError: (a ``ValueError`` and a ``FileNotFoundError``) if ``path`` does not exist.
        :raises StructureFileError: (a ``ValueError``) naming the file and format if the file is empty,
            holds no structure or cannot be parsed (ASE's own ``XYZError``, ``StopIteration``, unknown
            format, undecodable bytes, ... are turned into this error).
        """
        path = Path(path)
        what = f"structure file {str(path)!r} (format {format or 'guessed by ASE'})"
        if not path.is_file():
            raise MissingStructureFileError(f"{what}: does not exist; expected an existing file")
        if path.stat().st_size == 0:  # ASE cannot guess the format of an empty file and raises a non-ValueError
            raise StructureFileError(f"{what}: holds no structures (the file is empty)")
        try:
            structures = ase.io.read(path, index=index, format=format)
        except (KeyboardInterrupt, MemoryError):
            raise
        except BaseException as error:  # noqa: BLE001 - ASE's readers raise anything (XYZError, StopIteration, ...)
            detail = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
            raise StructureFileError(f"{what}: cannot be read ({type(error).__name__}: {detail})") from None
        if isinstance(structures, ase.Atoms):
            structures = [structures]
        if not structures:
            raise StructureFileError(f"{what}: holds no structures (index {index!r})")
        keys = [
            key
            for key, value in structures[0].info.items()
            if isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool)
            and all(isinstance(s.info.get(key), (int, float, np.integer, np.floating)) for s in structures)
        ]
        batch = cls.from_atoms(structures, info_keys=keys)
        # extxyz stores a structure's ``energy`` as a calculator result, not in ``info``
        if "energy" not in batch.info and all(s.calc is not None and "energy" in s.calc.results for s in structures):
            batch.info["energy"] = np.array([float(s.calc.results["energy"]) for s in structures])
        return batch

    @classmethod
    def concatenate(cls, batches: Sequence[StructureBatch]) -> StructureBatch:
        if not batches:
            raise ValueError("batches: expected at least one batch")
        keys = set(batches[0].info)
        for batch in batches[1:]:
            keys &= set(batch.info)
        return cls(
            numbers=np.concatenate([b.numbers for b in batches]),
            positions=np.concatenate([b.positions for b in batches]),
            n_atoms=np.concatenate([b.n_atoms for b in batches]),
            cells=np.concatenate([b.cells for b in batches]),
            pbc=np.concatenate([b.pbc for b in batches]),
            info={key: np.concatenate([b.info[key] for b in batches]) for key in sorted(keys)},
        )

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.n_atoms)

    def __iter__(self) -> Iterator[ase.Atoms]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> ase.Atoms:
        if not -len(self) <= index < len(self):
            raise IndexError(f"structure index {index} out of range for a batch of {len(self)}")
        index %= len(self)
        start, stop = self._offsets[index], self._offsets[index + 1]
        atoms = ase.Atoms(
            numbers=self.numbers[start:stop],
            positions=self.positions[start:stop],
            cell=self.cells[index],
            pbc=self.pbc[index],
        )
        for key, value in self.info.items():
            atoms.info[key] = value[index].item() if value.ndim == 1 else value[index]
        return atoms

    def subset(self, indices: Sequence[int]) -> StructureBatch:
        """A new batch with the structures at ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        atom_idx = (
            np.concatenate([np.arange(self._offsets[i], self._offsets[i + 1]) for i in indices])
            if indices.size
            else np.zeros(0, dtype=np.int64)
        )
        return StructureBatch(
            numbers=self.numbers[atom_idx],
            positions=self.positions[atom_idx],
            n_atoms=self.n_atoms[indices],
            cells=self.cells[indices],
            pbc=self.pbc[indices],
            info={key: value[indices] for key, value in self.info.items()},
        )

    def uniform_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(positions (M, N, 3), numbers (N,))`` when every structure has the same atoms in the same
        order, else ``None``. Lets batched code skip per-structure loops."""
        if len(set(self.n_atoms.tolist())) != 1:
            return None
        n = int(self.n_atoms[0])
        numbers = self.numbers.reshape(len(self), n)
        if not np.all(numbers == numbers[0]):
            return None
        return self.positions.reshape(len(self), n, 3), numbers[0]

    def trajectory_mismatch(self, where: str = "structure", *, same_order: bool = True) -> str | None:
        """Why this batch is not the frames of one fixed-cell trajectory (``None`` when it is): the first
        structure ``where[i]`` with another atom count, other species (in another order, with ``same_order``),
        another cell or other periodicity than structure 0."""
        n = int(self.n_atoms[0])
        wrong = np.flatnonzero(self.n_atoms != n)
        if wrong.size:
            i = int(wrong[0])
            return f"{where}[{i}]: {int(self.n_atoms[i])} atoms, {where}[0] has {n}"
        numbers = self.numbers.reshape(len(self), n)
        compared = numbers if same_order else np.sort(numbers, axis=1)
        differs = np.flatnonzero((compared != compared[0]).any(axis=1))
        if differs.size:
            i = int(differs[0])
            j = int(np.argmax(compared[i] != compared[0]))
            return f"{where}[{i}]: atom {j} is element {int(compared[i, j])}, in {where}[0] it is {int(compared[0, j])}"
        moved = np.flatnonzero(np.abs(self.cells - self.cells[0]).reshape(len(self), 9).max(axis=1) > 1e-6)
        if moved.size:
            return f"{where}[{int(moved[0])}]: the cell differs from {where}[0]'s"
        other = np.flatnonzero((self.pbc != self.pbc[0]).any(axis=1))
        if other.size:
            i = int(other[0])
            return f"{where}[{i}]: pbc {self.pbc[i].tolist()}, {where}[0] has {self.pbc[0].tolist()}"
        return None

    def min_distances(self) -> np.ndarray:
        """Shortest interatomic distance in every structure (Å), periodic images included.

        Uniform batches are done in one vectorised pass (minimum image of the fractional
        differences, exact for distances below half the shortest cell height, which is what a
        sanity filter needs); others structure by structure with ASE's neighbour list.
        """
        out = np.full(len(self), np.inf)
        view = self.uniform_view()
        same_cell = len(self) > 0 and np.allclose(self.cells, self.cells[:1]) and (self.pbc == self.pbc[:1]).all()
        if view is not None and same_cell:
            positions, _ = view
            n = positions.shape[1]
            if n < 2:
                return out
            i, j = np.triu_indices(n, k=1)
            diff = positions[:, j] - positions[:, i]  # (M, P, 3)
            pbc = self.pbc[0]
            if pbc.any():
                cell = self.cells[0]
                frac = diff @ np.linalg.inv(cell)
                frac[..., pbc] -= np.round(frac[..., pbc])
                diff = frac @ cell
            out = np.sqrt((diff**2).sum(-1)).min(axis=1)
            if pbc.any():  # an atom next to its own periodic image
                lattice = self.cells[0][pbc]
                out = np.minimum(out, np.linalg.norm(lattice, axis=1).min())
            return out
        key = self._geometry_key()
        known = _MIN_DISTANCES.get(key)
        if known is not None:
            _MIN_DISTANCES.move_to_end(key)
            return known.copy()
        from ase.neighborlist import neighbor_list

        for index, atoms in enumerate(self):
            if len(atoms) < 2 and not atoms.pbc.any():
                continue
            distances = neighbor_list("d", atoms, 3.0)
            if distances.size:
                out[index] = distances.min()
        _MIN_DISTANCES[key] = out.copy()
        while len(_MIN_DISTANCES) > MIN_DISTANCES_CACHE_SIZE:
            _MIN_DISTANCES.popitem(last=False)
        return out

    def _geometry_key(self) -> bytes:
        """Digest of the geometry (positions, cells, periodicity, structure boundaries) of the whole batch."""
        digest = hashlib.blake2b(digest_size=20)
        for array in (self.positions, self.cells, self.pbc, self._offsets):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.digest()

    @property
    def offsets(self) -> np.ndarray:
        return self._offsets

    def formulas(self) -> list[str]:
        """Hill formula of every structure (``ase`` ordering)."""
        return [
            ase.formula.Formula.from_list(
                [ase.data.chemical_symbols[z] for z in self.numbers[self._offsets[i] : self._offsets[i + 1]]]
            ).format("hill")
            for i in range(len(self))
        ]

    def formula_counts(self) -> dict[str, int]:
        return dict(Counter(self.formulas()))

    def elements(self) -> list[str]:
        return [ase.data.chemical_symbols[z] for z in sorted(set(self.numbers.tolist()))]

    # ------------------------------------------------------------------ serialisation
    def to_npz_bytes(self) -> bytes:
        """The batch as a compressed ``.npz`` archive (what :meth:`from_npz` and ``np.load`` read).

        The bytes depend on the structures only: the members are written in a fixed order (core
        arrays, then info arrays sorted by name) with a fixed time stamp, unlike ``np.savez_compressed``,
        which stamps every member with the current time.
        """
        arrays = {
            "numbers": self.numbers,
            "positions": self.positions,
            "n_atoms": self.n_atoms,
            "cells": self.cells,
            "pbc": self.pbc,
        }
        arrays.update({f"info__{key}": self.info[key] for key in sorted(self.info)})
        handle = io.BytesIO()
        with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, value in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.external_attr = 0o600 << 16
                content = io.BytesIO()
                np.lib.format.write_array(content, np.ascontiguousarray(value), allow_pickle=False)
                archive.writestr(member, content.getvalue())
        return handle.getvalue()

    @classmethod
    def from_npz(cls, handle) -> StructureBatch:
        """A batch from an archive written by :meth:`to_npz_bytes` (a path or a binary handle).

        :raises ValueError: if it is not such an archive (not a zip file, an array missing).
        """
        try:
            data = np.load(handle, allow_pickle=False)
        except Exception as error:  # noqa: BLE001 - zipfile, pickle and format errors
            raise ValueError(f"npz: not a structure archive ({type(error).__name__}: {error})") from None
        if not hasattr(data, "files"):
            raise ValueError("npz: expected a .npz archive of arrays, got a single array")
        with data:
            missing = [name for name in ("numbers", "positions", "n_atoms", "cells", "pbc") if name not in data.files]
            if missing:
                raise ValueError(f"npz: the archive lacks the array(s) {', '.join(missing)}; not a structure archive")
            info = {key[len("info__") :]: data[key] for key in data.files if key.startswith("info__")}
            return cls(
                numbers=data["numbers"],
                positions=data["positions"],
                n_atoms=data["n_atoms"],
                cells=data["cells"],
                pbc=data["pbc"],
                info=info,
            )

    def write(self, path: str | Path, format: str | None = None) -> None:
        """Write every structure to ``path`` in any format ASE writes (extended XYZ by default).

        The file appears whole or not at all (written to a temporary name, then renamed)."""
        from ase.io.formats import filetype

        from .atomic_files import atomic_path

        path = Path(path)
        if format is None:
            format = "extxyz" if path.suffix in ("", ".xyz", ".extxyz") else filetype(path, read=False)
        with atomic_path(path) as tmp:
            ase.io.write(tmp, list(self), format=format)


def atoms_list(structures, name: str = "structures", error: type[Exception] = TypeError) -> list[ase.Atoms]:
    """``structures`` (an iterable of ``ase.Atoms``, none without atoms) as a list.

    :raises error: naming ``name`` (not a list) or ``name[i]`` (an item that is not ``ase.Atoms``).
    :raises ValueError: naming ``name[i]`` for a structure without atoms.
    """
    if isinstance(structures, (str, bytes, ase.Atoms)) or not isinstance(structures, Iterable):
        raise error(f"{name}: got {type(structures).__name__}, expected a list of ase.Atoms")
    structures = list(structures)
    for index, atoms in enumerate(structures):
        if not isinstance(atoms, ase.Atoms):
            raise error(f"{name}[{index}]: got {type(atoms).__name__}, expected ase.Atoms")
        if len(atoms) == 0:
            raise ValueError(f"{name}[{index}]: has no atoms")
    return structures


def as_batch(structures, name: str = "structures") -> StructureBatch:
    """A non-empty :class:`StructureBatch` from a batch, one ``ase.Atoms`` or an iterable of them (none empty).

    :raises TypeError: naming ``name`` (not a batch or a list) or ``name[i]`` (an item that is not ``ase.Atoms``).
    :raises ValueError: naming ``name`` (nothing given) or ``name[i]`` (a structure without atoms).
    """
    if isinstance(structures, ase.Atoms):
        structures = [structures]
    if not isinstance(structures, StructureBatch):
        if isinstance(structures, (str, bytes)) or not isinstance(structures, Iterable):
            raise TypeError(
                f"{name}: got {type(structures).__name__}, expected a StructureBatch or a list of ase.Atoms"
            )
        structures = atoms_list(structures, name)
        if not structures:
            raise ValueError(f"{name}: expected at least one structure, got an empty list")
        structures = StructureBatch.from_atoms(structures)
    if len(structures) == 0:
        raise ValueError(f"{name}: expected at least one structure, got an empty batch")
    return structures


def checked_cell_and_pbc(cell, pbc, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(cell (3, 3), pbc (3,))`` checked: finite lattice vectors in Å spanning a volume, and three periodicity
    flags (one boolean stands for every axis); ``ValueError`` naming ``<prefix>cell`` or ``<prefix>pbc``."""
    try:
        cell_array = np.asarray(cell, dtype=np.float64)
    except (TypeError, ValueError):
        cell_array = None
    if cell_array is None or cell_array.shape != (3, 3) or not np.all(np.isfinite(cell_array)):
        raise ValueError(f"{prefix}cell: expected a 3x3 list of lattice vectors in Å, got {cell!r}")
    if abs(np.linalg.det(cell_array)) < 1e-6:
        raise ValueError(f"{prefix}cell: the cell has zero volume; expected three independent lattice vectors")
    if isinstance(pbc, (bool, np.bool_)):
        pbc = [bool(pbc)] * 3
    if (
        not isinstance(pbc, (list, tuple, np.ndarray))
        or len(pbc) != 3
        or not all(isinstance(p, (bool, np.bool_)) for p in pbc)
    ):
        raise ValueError(f"{prefix}pbc: expected three booleans (or one for all axes), got {pbc!r}")
    return cell_array, np.array([bool(p) for p in pbc])
