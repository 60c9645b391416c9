"""``physgen.structure_set``: many atomic structures in one AiiDA node.

AiiDA spends a database row on every node, so a generator's thousands of candidates cannot be one
``StructureData`` each. A ``StructureSet`` keeps a whole :class:`~aiida_physgen.ml.batch.StructureBatch`
as a single compressed NumPy archive (``structures.npz``) in the node's file repository. Only small,
queryable facts about the set live in the attributes: the number of structures and atoms, the
formulas with their multiplicities, the elements, the periodicity and the names of the
per-structure info arrays. No array is ever written to the attributes.

The archive's bytes depend on the structures only (see
:meth:`~aiida_physgen.ml.batch.StructureBatch.to_npz_bytes`), so two sets built from the same
structures have the same hash and AiiDA's caching recognises them.

Files: ``node.export(path, fileformat=None, overwrite=False)`` (AiiDA's ``Data.export``; also
``verdi data physgen export`` and ``aiida-physgen data export``) writes ``extxyz`` (all structures
with their info values), ``cif`` (one file, one ``data_`` block per structure, as ``verdi data
core.trajectory export --format cif`` does), ``json`` or ``npz`` (the stored archive). Converters:
:meth:`StructureSet.get_structuredata_list`, :meth:`StructureSet.get_pymatgen`,
:meth:`StructureSet.to_trajectory`.
"""

from __future__ import annotations

import io
import json
import math
import os
import typing as t

import ase
import ase.data
import ase.io
import numpy as np
from aiida.common import exceptions
from aiida.orm import Data, StructureData, TrajectoryData
from aiida.orm.pydantic import OrmMetadataField

from aiida_physgen.ml.atomic_files import atomic_path, check_output_path, write_bytes
from aiida_physgen.ml.batch import StructureBatch

__all__ = ["StructureSet"]

#: names of the arrays every batch holds, in the order :meth:`StructureSet.array_names` lists them
_CORE_ARRAYS = ("numbers", "positions", "n_atoms", "cells", "pbc")


class StructureSet(Data):
    """A set of atomic structures (molecules or crystals, of any sizes) stored as one node.

    The structures are kept as flat arrays in the repository file :attr:`FILENAME`; the attributes
    ``count``, ``n_atoms_total``, ``formula_counts``, ``elements``, ``pbc`` and ``info_keys`` can be
    used in ``QueryBuilder`` filters, e.g. ``filters={'attributes.count': {'>': 100}}``.
    """

    FILENAME = "structures.npz"

    #: file extensions that name an export format (others are taken as the format's name)
    _export_format_replacements = {"xyz": "extxyz"}

    class AttributesModel(Data.AttributesModel):
        count: int = OrmMetadataField(description="Number of structures in the set")
        n_atoms_total: int = OrmMetadataField(description="Number of atoms summed over all structures")
        formula_counts: dict[str, int] = OrmMetadataField(
            description="Hill formula of each distinct composition and how many structures have it"
        )
        elements: list[str] = OrmMetadataField(description="Chemical symbols occurring in the set, sorted")
        pbc: list[bool] | None = OrmMetadataField(
            None, description="Periodicity shared by every structure, or null when the structures differ"
        )
        info_keys: list[str] = OrmMetadataField(
            default_factory=list, description="Names of the per-structure info arrays (energies, labels, ...)"
        )

    def __init__(self, batch: StructureBatch | None = None, **kwargs: t.Any) -> None:
        """Construct a new set from ``batch``.

        :param batch: the structures; at least one is required. ``None`` creates an empty node that
            cannot be stored until it is filled, which only AiiDA's own machinery needs.
        :raises TypeError: if ``batch`` is not a :class:`StructureBatch`.
        :raises ValueError: if ``batch`` holds no structure.
        """
        super().__init__(**kwargs)
        if batch is not None:
            self._set_batch(batch)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_ase(cls, structures: t.Iterable[ase.Atoms], info_keys: t.Sequence[str] = (), **kwargs) -> StructureSet:
        """Build a set from ``ase.Atoms``.

        :param structures: the structures; sizes may differ.
        :param info_keys: numeric ``atoms.info`` entries to keep as per-structure info arrays
            (a structure lacking one gets ``nan``).
        """
        structures = list(structures)
        if not structures:
            raise ValueError("structures: expected at least one structure, got an empty list")
        for index, atoms in enumerate(structures):
            if not isinstance(atoms, ase.Atoms):
                raise TypeError(f"structures[{index}]: expected ase.Atoms, got {type(atoms).__name__}")
        return cls(StructureBatch.from_atoms(structures, info_keys=tuple(info_keys)), **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, format: str | None = None, index: str = ":", **kwargs) -> StructureSet:
        """Build a set from any file ASE reads (extended XYZ, CIF, POSCAR, trajectories, ...).

        Numeric per-structure values (``atoms.info`` entries present in every structure, and the
        energy of an extended XYZ file) are kept as info arrays.

        :param path: the structure file.
        :param format: the ASE format name; guessed from the file when ``None``.
        :param index: which structures of the file to read, ASE syntax (all by default).
        """
        return cls(StructureBatch.read(path, index=index, format=format), **kwargs)

    @classmethod
    def from_structuredata(cls, structures: t.Iterable[StructureData], **kwargs) -> StructureSet:
        """Build a set from AiiDA ``StructureData`` nodes (stored or not).

        Only species, positions, cell and periodicity are kept; kind names are mapped back to
        their chemical elements.
        """
        structures = list(structures)
        if not structures:
            raise ValueError("structures: expected at least one StructureData, got an empty list")
        for index, structure in enumerate(structures):
            if not isinstance(structure, StructureData):
                raise TypeError(f"structures[{index}]: expected StructureData, got {type(structure).__name__}")
        return cls(StructureBatch.from_atoms([structure.get_ase() for structure in structures]), **kwargs)

    def _set_batch(self, batch: StructureBatch) -> None:
        if not isinstance(batch, StructureBatch):
            raise TypeError(f"batch: expected a StructureBatch, got {type(batch).__name__}")
        if len(batch) == 0:
            raise ValueError("structures: a StructureSet needs at least one structure, got an empty batch")
        pbc = batch.pbc
        shared_pbc = [bool(value) for value in pbc[0]] if bool(np.all(pbc == pbc[0])) else None
        self.base.repository.put_object_from_bytes(batch.to_npz_bytes(), self.FILENAME)
        self.base.attributes.set_many(
            {
                "count": len(batch),
                "n_atoms_total": int(batch.n_atoms.sum()),
                "formula_counts": {formula: int(n) for formula, n in batch.formula_counts().items()},
                "elements": sorted(batch.elements()),
                "pbc": shared_pbc,
                "info_keys": sorted(batch.info),
            }
        )
        self._batch_cache = None

    def _validate(self) -> bool:
        super()._validate()
        if self.FILENAME not in self.base.repository.list_object_names():
            raise exceptions.ValidationError(f"the repository file {self.FILENAME!r} is missing")
        if not isinstance(self.base.attributes.get("count", None), int):
            raise exceptions.ValidationError("the attribute 'count' is missing")
        return True

    # ------------------------------------------------------------------ attributes
    @property
    def count(self) -> int:
        """Number of structures."""
        return self.base.attributes.get("count", 0)

    @property
    def n_atoms_total(self) -> int:
        """Number of atoms summed over all structures."""
        return self.base.attributes.get("n_atoms_total", 0)

    @property
    def formula_counts(self) -> dict[str, int]:
        """Hill formula -> number of structures with that composition."""
        return dict(self.base.attributes.get("formula_counts", {}))

    @property
    def elements(self) -> list[str]:
        """Chemical symbols occurring in the set, sorted alphabetically."""
        return list(self.base.attributes.get("elements", []))

    @property
    def pbc(self) -> list[bool] | None:
        """Periodicity shared by all structures, or ``None`` when the structures differ."""
        pbc = self.base.attributes.get("pbc", None)
        return None if pbc is None else list(pbc)

    @property
    def info_keys(self) -> list[str]:
        """Names of the per-structure info arrays."""
        return list(self.base.attributes.get("info_keys", []))

    # ------------------------------------------------------------------ access
    def get_batch(self) -> StructureBatch:
        """The structures as a :class:`StructureBatch`.

        The archive is read once per Python object and cached; its arrays are marked read-only
        because the cache is shared by every later call (``batch.subset(...)`` or ``np.array(...)``
        give writable copies).
        """
        cached = getattr(self, "_batch_cache", None)
        if cached is not None:
            return cached
        try:
            content = self.base.repository.get_object_content(self.FILENAME, mode="rb")
        except FileNotFoundError:
            raise ValueError(
                f"this StructureSet holds no structures (no {self.FILENAME!r} in its repository)"
            ) from None
        batch = StructureBatch.from_npz(io.BytesIO(content))
        for array in (batch.numbers, batch.positions, batch.n_atoms, batch.cells, batch.pbc, *batch.info.values()):
            array.setflags(write=False)
        self._batch_cache = batch
        return batch

    @property
    def array_names(self) -> list[str]:
        """Names accepted by :meth:`get_array`: the core arrays, then the info keys."""
        return [*_CORE_ARRAYS, *self.info_keys]

    def get_array(self, name: str) -> np.ndarray:
        """One array of the batch (read-only): a core array (see :attr:`array_names`) or an info array."""
        batch = self.get_batch()
        if name in _CORE_ARRAYS:
            return getattr(batch, name)
        if name in batch.info:
            return batch.info[name]
        raise KeyError(f"name: unknown array {name!r}; expected one of {[*_CORE_ARRAYS, *sorted(batch.info)]}")

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> t.Iterator[ase.Atoms]:
        return iter(self.get_batch())

    def get_ase(self, index: int) -> ase.Atoms:
        """Structure ``index`` (negative counts from the end) as a new ``ase.Atoms`` with its info values."""
        return self.get_batch()[index]

    def get_structuredata(self, index: int) -> StructureData:
        """Structure ``index`` as a new, unstored ``StructureData``."""
        return StructureData(ase=self.get_ase(index))

    def get_structuredata_list(self) -> list[StructureData]:
        """Every structure as a new, unstored ``StructureData``, in order.

        The structure's info values (energies, candidate indices, ...) are set as extras of the
        same names (non-finite numbers become ``None``), so they are kept when the nodes are stored
        and can be queried: ``filters={'extras.energy': {'<': -10}}``.
        """
        structures = []
        for atoms in self.get_batch():
            structure = StructureData(ase=atoms)
            if atoms.info:
                structure.base.extras.set_many({key: _json_number(value) for key, value in atoms.info.items()})
            structures.append(structure)
        return structures

    def get_pymatgen(self) -> list[t.Any]:
        """Every structure as a pymatgen object: a ``Structure`` when it is periodic along at least one
        axis (pymatgen keeps the periodicity), a ``Molecule`` otherwise. Info values are in ``.properties``."""
        from pymatgen.io.ase import AseAtomsAdaptor

        converted = []
        for atoms in self.get_batch():
            if atoms.pbc.any():
                converted.append(AseAtomsAdaptor.get_structure(atoms))
            else:
                converted.append(AseAtomsAdaptor.get_molecule(atoms))
        return converted

    def to_trajectory(self) -> TrajectoryData:
        """The structures as the steps of a new, unstored ``TrajectoryData``.

        Only possible when every structure has the same chemical symbols in the same order and the
        same periodicity. Cells are kept per step (unless every cell is zero); each info array is
        kept as the trajectory array ``info_<key>``.

        :raises ValueError: naming the first structure whose atoms or periodicity differ from structure 0.
        """
        batch = self.get_batch()
        first = batch.numbers[batch.offsets[0] : batch.offsets[1]]
        for index in range(1, len(batch)):
            numbers = batch.numbers[batch.offsets[index] : batch.offsets[index + 1]]
            if numbers.shape != first.shape or not np.array_equal(numbers, first):
                raise ValueError(
                    f"structures: structure {index} ({batch.formulas()[index]}, {len(numbers)} atoms) does not have "
                    f"the same chemical symbols in the same order as structure 0 ({batch.formulas()[0]}, {len(first)} "
                    "atoms); a TrajectoryData needs the same atoms in every step"
                )
            if not np.array_equal(batch.pbc[index], batch.pbc[0]):
                raise ValueError(
                    f"structures: structure {index} has periodicity {batch.pbc[index].tolist()}, structure 0 "
                    f"{batch.pbc[0].tolist()}; a TrajectoryData has one periodicity for every step"
                )
        n = len(first)
        pbc = [bool(value) for value in batch.pbc[0]]
        cells = None if not batch.cells.any() else np.array(batch.cells)
        trajectory = TrajectoryData()
        trajectory.set_trajectory(
            symbols=[ase.data.chemical_symbols[z] for z in first],
            positions=np.array(batch.positions).reshape(len(batch), n, 3),
            cells=cells,
            pbc=pbc if (cells is not None or not any(pbc)) else None,
        )
        for key in sorted(batch.info):
            trajectory.set_array(f"info_{key}", np.array(batch.info[key]))
        return trajectory

    # ------------------------------------------------------------------ files
    def export(
        self, path: str | os.PathLike, fileformat: str | None = None, overwrite: bool = False, **kwargs: t.Any
    ) -> list[str]:
        """Write the set to ``path`` in ``fileformat`` (AiiDA's ``Data.export``), whole or not at all.

        :param fileformat: one of :meth:`get_export_formats` (``cif``, ``extxyz``, ``json``, ``npz``);
            guessed from the extension when ``None`` (``.xyz`` means ``extxyz``).
        :param overwrite: replace an existing file; otherwise an existing file is refused.
        :returns: the names of the files written (AiiDA's convention).
        :raises OSError: if the file exists and ``overwrite`` is false (what ``verdi data ... export`` expects).
        :raises ValueError: naming ``fileformat`` or ``path`` for an unknown format or a directory that
            cannot be written.
        """
        return export_node(self, path, fileformat, overwrite, **kwargs)

    def _prepare_extxyz(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """All structures, with their info values, as extended XYZ."""
        handle = io.StringIO()
        ase.io.write(handle, list(self.get_batch()), format="extxyz")
        return handle.getvalue().encode("utf-8"), {}

    def _prepare_cif(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """One CIF file with one ``data_structure_<i>`` block per structure (in P1; molecules without a
        cell are written with Cartesian coordinates)."""
        blocks = []
        for index, atoms in enumerate(self.get_batch()):
            handle = io.BytesIO()
            ase.io.write(handle, atoms, format="cif")
            text = handle.getvalue().decode("utf-8")
            blocks.append(text.replace("data_image0", f"data_structure_{index}", 1).rstrip("\n") + "\n")
        return "\n".join(blocks).encode("utf-8"), {}

    def _prepare_json(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """A JSON list with one object per structure: ``symbols``, ``positions`` (Å), ``cell`` (Å),
        ``pbc`` and ``info`` (non-finite numbers as ``null``)."""
        structures = [
            {
                "symbols": atoms.get_chemical_symbols(),
                "positions": atoms.positions.tolist(),
                "cell": atoms.cell.array.tolist(),
                "pbc": [bool(value) for value in atoms.pbc],
                "info": {key: _json_number(value) for key, value in atoms.info.items()},
            }
            for atoms in self.get_batch()
        ]
        return (json.dumps(structures, indent=1, allow_nan=False) + "\n").encode("utf-8"), {}

    def _prepare_npz(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """The stored archive itself (read it with ``StructureBatch.from_npz`` or ``np.load``)."""
        return self.base.repository.get_object_content(self.FILENAME, mode="rb"), {}

    def export_extxyz(self, target: str | os.PathLike | t.IO) -> None:
        """Write all structures, with their info values, as extended XYZ to a path (whole or not at all,
        an existing file is replaced) or an open text handle."""
        if isinstance(target, (str, os.PathLike)):
            write_bytes(check_output_path(target, "target"), self._prepare_extxyz()[0])
            return
        ase.io.write(target, list(self.get_batch()), format="extxyz")

    def __str__(self) -> str:
        return f"{super().__str__()} count: {self.count}"


# ---------------------------------------------------------------------- helpers
def _json_number(value: t.Any) -> t.Any:
    """An info value as a JSON-safe value: NumPy scalars and arrays become Python values, non-finite floats ``None``."""
    if isinstance(value, np.ndarray):
        return [_json_number(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def export_node(node: Data, path, fileformat, overwrite, **kwargs) -> list[str]:
    """``Data.export`` with every file written through :mod:`~aiida_physgen.ml.atomic_files`."""
    if not path:
        raise ValueError("path: expected a file name, got an empty path")
    path = os.fspath(path)
    formats = node.get_export_formats()
    if fileformat is None:
        extension = os.path.splitext(path)[1].lstrip(".")
        if not extension:
            raise ValueError(f"fileformat: cannot be guessed from {path!r} (no extension); expected one of {formats}")
        fileformat = node._export_format_replacements.get(extension, extension)
    if fileformat not in formats:
        raise ValueError(f"fileformat: got {fileformat!r}, expected one of {formats} for a {type(node).__name__}")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"A file was already found at {path}")  # an OSError, what verdi expects
    check_output_path(path, "path")
    content, extra_files = node._exportcontent(fileformat, main_file_name=path, **kwargs)
    if not overwrite:
        for name in extra_files:
            if os.path.exists(name):
                raise FileExistsError(f"The file {name} already exists, stopping.")
    written = []
    for name, extra in extra_files.items():
        write_bytes(name, extra)
        written.append(name)
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    written.append(path)
    return written
