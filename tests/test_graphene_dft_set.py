"""The DFT-labelled graphene set: the sheets the code makes, the settings per orthogonal cell, and the shipped file
(what it holds, that it is the code's sheets, that small and large sheets share their numerical settings, and that
GPAW gives the stored energy again)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import read

from aiida_physgen.graphene.dft_set import (
    PARTS,
    DftSettings,
    SetPart,
    gpaw_energy,
    gpaw_parameters,
    load_dft_set,
    part_sheets,
    settings_record,
    shipped_set_path,
)
from aiida_physgen.ml import graphene


@pytest.fixture(scope="module")
def shipped():
    return load_dft_set()


def test_parts_are_reproducible_distinct_porous_sheets_after_the_pristine_one():
    for part in PARTS.values():
        sheets = part_sheets(part)
        assert np.array_equal(sheets, part_sheets(part))
        assert sheets.shape == (part.count, 3 * part.ny, 2 * part.nx)
        assert np.array_equal(sheets[0], part.lattice.mask())
        atoms = sheets.reshape(len(sheets), -1).sum(1)
        assert (atoms[1:] < part.lattice.n_sites).all() and (atoms >= part.min_atoms).all()
        # no sheet is a lattice translation of another (a copy would sit on both sides of a split)
        keys = {
            min(np.roll(s, (r, c), (0, 1)).tobytes() for r in range(0, s.shape[0], 3) for c in range(0, s.shape[1], 2))
            for s in sheets
        }
        assert len(keys) == len(sheets)
    assert PARTS["large"].lattice.area == pytest.approx(4 * PARTS["small"].lattice.area)


def test_gpaw_settings_are_fixed_per_orthogonal_cell():
    small, large = (gpaw_parameters(PARTS[name].lattice) for name in ("small", "large"))
    assert small["kpts"] == {"size": (4, 4, 1), "gamma": True} and large["kpts"] == {"size": (2, 2, 1), "gamma": True}
    assert large["gpts"] == (2 * small["gpts"][0], 2 * small["gpts"][1], small["gpts"][2])
    assert (small["mode"], small["basis"], small["xc"]) == ("lcao", "dzp", "PBE")
    with pytest.raises(ValueError, match=r"lattice: 5 × 2 cells do not divide the k-point density"):
        gpaw_parameters(graphene.Lattice(5, 2))


def test_a_part_that_cannot_give_its_count_says_so():
    # a 1 x 1-cell sheet has 4 sites: never 50 distinct sheets of at least 3 atoms
    part = SetPart("tiny", 1, 1, count=50, seed=0, holes=(1, 1), radius=(0.8, 0.9), min_atoms=3)
    with pytest.raises(ValueError, match="tiny: fewer than 50 distinct sheets with 3 atoms"):
        part_sheets(part)


def test_the_shipped_set_holds_the_codes_sheets_with_dft_energies(shipped):
    assert set(shipped) == {"small", "large"}
    record = settings_record(DftSettings())
    for name, batch in shipped.items():
        part = PARTS[name]
        sheets, lattice = graphene.batch_to_sheets(batch)
        assert (lattice.nx, lattice.ny) == (part.nx, part.ny)
        made = part_sheets(part)
        indices = batch.info["index"].astype(int)
        assert np.array_equal(sheets, made[indices]), name  # the script's sheets, in its order
        assert len(np.unique(indices)) == len(indices)
        assert np.isfinite(batch.info["energy"]).all() and (batch.info["seconds"] > 0).all()
        # every sheet is a bound sheet: between the pristine sheet's energy per atom and 3 eV/atom above it (a
        # carbon atom alone is about 7.7 eV above graphene)
        per_atom = batch.info["energy"] / batch.n_atoms
        pristine = per_atom[indices == 0][0]
        assert (per_atom >= pristine - 1e-9).all() and (per_atom < pristine + 3.0).all()
    assert int((shipped["small"].info["index"] != 0).sum()) >= 100
    assert int((shipped["large"].info["index"] != 0).sum()) >= 10
    first = read(str(shipped_set_path()), index=0)
    assert json.loads(first.info["settings"]) == json.loads(json.dumps(record))


def test_pristine_sheets_have_one_energy_per_atom_at_both_sizes(shipped):
    # the large sheet is computed as a 2 x 2 supercell of the small one (same k-point density, same grid): the
    # pristine energies per atom agree (measured: see docs/graphene.md), so a large-sheet error is the model's
    per_atom = {
        name: batch.info["energy"][batch.info["index"] == 0][0] / batch.n_atoms[batch.info["index"] == 0][0]
        for name, batch in shipped.items()
    }
    assert abs(per_atom["small"] - per_atom["large"]) < 1e-3


@pytest.mark.slow
def test_gpaw_gives_the_stored_energy_again(shipped):
    # the smallest stored small sheet, recomputed (about 15-25 s on one core)
    small = shipped["small"]
    i = int(np.argmin(small.n_atoms))
    occupancy = part_sheets(PARTS["small"])[int(small.info["index"][i])]
    atoms = graphene.occupancy_to_atoms(occupancy, PARTS["small"].lattice)
    energy, seconds = gpaw_energy(atoms, gpaw_parameters(PARTS["small"].lattice))
    assert energy == pytest.approx(small.info["energy"][i], abs=1e-4)
    assert seconds > 0


# ---------------------------------------------------------------------- benchmarks/ednn_dft.py
def _benchmark():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ednn_dft.py"
    spec = importlib.util.spec_from_file_location("ednn_dft", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_split_is_fixed_and_keeps_the_test_sheets_out(shipped):
    bench = _benchmark()
    train, test = bench.split(shipped["small"])
    again, test_again = bench.split(shipped["small"])
    assert np.array_equal(train, again) and np.array_equal(test, test_again)
    assert not set(train) & set(test) and len(train) + len(test) == len(shipped["small"])
    assert 0 in shipped["small"].info["index"][train]  # the pristine sheet trains
    porous = int((shipped["small"].info["index"] != 0).sum())
    assert round(bench.TEST_FRACTION * porous) <= len(test) <= round(bench.TEST_FRACTION * porous) + 3
    # a mirror image (same energy) of a test sheet never trains
    energies = np.round(shipped["small"].info["energy"], 4)
    assert not set(energies[train]) & set(energies[test])


@pytest.mark.slow
def test_the_benchmark_trains_scores_and_prints_its_table(shipped, monkeypatch, capsys):
    # a short loop and one candidate: the plumbing and the baseline, not the figures of docs/graphene.md
    bench = _benchmark()
    monkeypatch.setattr(bench, "LOOP", {**bench.LOOP, "steps": 300})
    monkeypatch.setattr(bench, "CANDIDATES", {"context 1, 16-16": bench.CANDIDATES["context 1, 16-16"]})
    assert bench.main(["--seeds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "| EDNN context 1, 16-16 **(chosen)** |" in printed and "| paper (EDNN against DFT, median) |" in printed
    results = bench.run(seeds=[0])
    row = results["rows"]["context 1, 16-16"]
    # the baseline is mu N + nu T fitted on the training sheets: it also fits the pristine sheets of both sizes
    # within what it misses on porous ones, and the EDNN (its residual starts at zero) is not worse than it by much
    # after 300 steps
    for part in ("small", "large"):
        assert np.isfinite(row[part][0]["mean"]) and row[part][0]["median"] <= row[part][0]["mean"] + 1e-12
        assert row[part][0]["mean"] < 2 * row[f"baseline_{part}"][0]["mean"]
    assert abs(results["pristine_energy_per_atom"]["small"] - results["pristine_energy_per_atom"]["large"]) < 1e-3


@pytest.mark.slow  # a subprocess each, about 2-4 s
@pytest.mark.parametrize(
    "script, args, message",
    [
        ("scripts/graphene_dft_set.py", ["--part", "large", "--indices", "11"], "--indices: got [11], expected sheet"),
        ("scripts/graphene_dft_set.py", ["--limit", "0"], "--limit: got 0, expected a positive number"),
        ("benchmarks/ednn_dft.py", ["--set", "no/such.extxyz"], "--set: no/such.extxyz is not a file"),
        ("benchmarks/rugan_label_term.py", ["--count", "1"], "--count: got 1, expected at least 2"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path, script, args, message):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "set.extxyz"
    extra = ["-o", str(out)] if script.startswith("scripts") else []
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / script), *args, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()
