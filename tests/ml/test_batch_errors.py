"""``StructureBatch`` refuses unreadable files and non-finite coordinates with a ValueError that says where."""

from __future__ import annotations

import ase.build
import ase.io
import numpy as np
import pytest

from aiida_physgen.ml.batch import MissingStructureFileError, StructureBatch, StructureFileError


def water_batch(n: int = 3) -> StructureBatch:
    return StructureBatch.from_atoms([ase.build.molecule("H2O") for _ in range(n)])


@pytest.mark.parametrize(
    ("name", "content", "fmt", "words"),
    [
        ("junk.xyz", "this is not\nan xyz file\n", "extxyz", r"XYZError"),
        ("short.xyz", "5\ncomment\nH 0 0 0\n", "extxyz", r"cannot be read"),
        ("binary.xyz", b"\xff\xfe\x00\x81\x92 garbage", "extxyz", r"UnicodeDecodeError"),
        ("model.weird", "hello", None, r"cannot be read \(UnknownFileTypeError"),
        ("empty.xyz", "", "extxyz", r"holds no structures \(the file is empty\)"),
        ("header_only.cif", "data_x\n", "cif", r"cannot be read|holds no structures"),
    ],
)
def test_read_refuses_unreadable_files(tmp_path, name, content, fmt, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StructureFileError, match=words) as info:
        StructureBatch.read(path, format=fmt)
    message = str(info.value)
    assert message.startswith(f"structure file {str(path)!r} (format {fmt or 'guessed by ASE'})")
    assert isinstance(info.value, ValueError)


def test_read_missing_file(tmp_path):
    with pytest.raises(MissingStructureFileError, match=r"absent\.xyz.*does not exist") as info:
        StructureBatch.read(tmp_path / "absent.xyz")
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_read_good_file_still_works(tmp_path):
    structures = [ase.build.molecule("H2O"), ase.build.molecule("CH4")]
    structures[0].info["energy"] = -1.5
    structures[1].info["energy"] = -2.5
    ase.io.write(tmp_path / "ok.xyz", structures, format="extxyz")
    batch = StructureBatch.read(tmp_path / "ok.xyz")
    assert batch.formulas() == ["H2O", "CH4"] and batch.info["energy"].tolist() == [-1.5, -2.5]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_positions_refused_with_index(bad):
    batch = StructureBatch.from_atoms([ase.build.molecule("H2O"), ase.build.molecule("CH4"), ase.build.molecule("NH3")])
    positions = batch.positions.copy()
    positions[3 + 5 + 2, 1] = bad  # third atom of structure 2
    with pytest.raises(ValueError, match=r"^positions: structure 2 has non-finite"):
        StructureBatch(batch.numbers, positions, batch.n_atoms, batch.cells, batch.pbc)


def test_non_finite_cell_refused_with_index():
    batch = water_batch(3)
    cells = batch.cells.copy()
    cells[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"^cells: structure 1 has a non-finite"):
        StructureBatch(batch.numbers, batch.positions, batch.n_atoms, cells, batch.pbc)
    atoms = ase.build.molecule("H2O")
    atoms.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^positions: structure 1"):
        StructureBatch.from_atoms([ase.build.molecule("H2O"), atoms])


def test_npz_bytes_deterministic_and_round_trip(tmp_path):
    batch = water_batch(2)
    batch.info["energy"] = np.array([1.0, 2.0])
    batch.info["alpha"] = np.array([3, 4])
    data = batch.to_npz_bytes()
    reordered = StructureBatch(
        batch.numbers,
        batch.positions,
        batch.n_atoms,
        batch.cells,
        batch.pbc,
        info={"alpha": batch.info["alpha"], "energy": batch.info["energy"]},
    )
    assert data == reordered.to_npz_bytes()  # the order of the info arrays does not matter
    (tmp_path / "b.npz").write_bytes(data)
    with np.load(tmp_path / "b.npz") as loaded:  # still an ordinary npz archive
        assert sorted(loaded.files) == [
            "cells",
            "info__alpha",
            "info__energy",
            "n_atoms",
            "numbers",
            "pbc",
            "positions",
        ]
    back = StructureBatch.from_npz(tmp_path / "b.npz")
    np.testing.assert_array_equal(back.positions, batch.positions)
    assert back.info["alpha"].tolist() == [3, 4]


def test_from_npz_refuses_other_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="^npz: not a structure archive"):
        StructureBatch.from_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="^npz: the archive lacks the array"):
        StructureBatch.from_npz(tmp_path / "other.npz")


def test_write_is_atomic(tmp_path, monkeypatch):
    batch = water_batch(2)
    batch.write(tmp_path / "out.xyz")
    batch.write(tmp_path / "out.cif")
    assert len(ase.io.read(tmp_path / "out.cif", index=":")) == 2
    before = (tmp_path / "out.xyz").read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ase.io, "write", broken)
    with pytest.raises(OSError):
        water_batch(5).write(tmp_path / "out.xyz")
    assert (tmp_path / "out.xyz").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.cif", "out.xyz"]


def test_min_distances_of_mixed_batches_are_remembered_by_geometry(monkeypatch):
    """Mixed sizes take ASE's neighbour list structure by structure; the same geometry is looked up, a moved atom is
    measured again, and callers get copies."""
    import ase.neighborlist
    from ase.build import bulk, molecule

    calls = []
    real = ase.neighborlist.neighbor_list

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ase.neighborlist, "neighbor_list", counting)
    mixed = [bulk("Si", "diamond", a=5.43), molecule("H2O"), bulk("NaCl", "rocksalt", a=5.64)]
    batch = StructureBatch.from_atoms(mixed)
    first = batch.min_distances()
    assert len(calls) == 3
    assert first[0] == pytest.approx(5.43 * 3**0.5 / 4, abs=1e-6)
    first[:] = -1.0  # a copy: changing it changes nothing remembered
    again = StructureBatch.from_atoms([atoms.copy() for atoms in mixed])
    second = again.min_distances()
    assert len(calls) == 3 and second[0] == pytest.approx(5.43 * 3**0.5 / 4, abs=1e-6)
    again.positions[0] += 0.2  # positions are public: a moved atom is measured again
    third = again.min_distances()
    assert len(calls) == 6 and third[0] != pytest.approx(second[0])
