"""``physgen.structure_set``: many atomic structures in one AiiDA node.

AiiDA spends a database row on every node, so a generator's thousands of candidates cannot be one
``StructureData`` each. A ``StructureSet`` keeps a whole :class:`~aiida_physgen.ml.batch.StructureBatch`
as a single compressed NumPy archive (``structures.npz``) in the node's file repository. Only small,
queryable facts about the set live in the attributes: the number of structures and atoms, the
formulas with their multiplicities, the elements, the periodicity and the names of the
per-structure info arrays. No array is ever written to the attributes.
"""

from __future__ import annotations

import io
import os
import typing as t
from pathlib import Path

import ase
import ase.io
import numpy as np
from aiida.common import exceptions
from aiida.orm import Data, StructureData
from aiida.orm.pydantic import OrmMetadataField

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
    def from_file(
        cls, path: str | os.PathLike, format: str | None = None, index: str = ":", **kwargs
    ) -> StructureSet:
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

    def export_extxyz(self, target: str | os.PathLike | t.IO) -> None:
        """Write all structures, with their info values, as extended XYZ to a path or an open text handle."""
        if isinstance(target, (str, os.PathLike)):
            target = Path(target)
        ase.io.write(target, list(self.get_batch()), format="extxyz")

    def __str__(self) -> str:
        return f"{super().__str__()} count: {self.count}"
