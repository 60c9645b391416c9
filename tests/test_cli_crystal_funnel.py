"""``aiida-physgen crystals funnel`` on files: real validity checks, CHGNet relaxations and matching."""

from __future__ import annotations

import chgnet  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from click.testing import CliRunner

from aiida_physgen.cli import main
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.crystal_data import EXAMPLE_FOLDER, example_structures


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    path = tmp_path_factory.mktemp("funnel") / "three.extxyz"
    example_structures().subset([0, 1, 2]).write(path)
    return path


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_training_crystals_pass_validity_but_are_not_novel(three, tmp_path):
    out = tmp_path / "assessed.npz"
    result = CliRunner().invoke(
        main,
        [
            "crystals",
            "funnel",
            str(three),
            "--training",
            str(EXAMPLE_FOLDER),
            "--max-steps",
            "5",
            "--top",
            "2",
            "--cif-dir",
            str(tmp_path / "cif"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "valid: 3" in result.output and "unique: 3" in result.output and "unique_novel: 0" in result.output
    batch = StructureBatch.from_npz(out)
    assert len(batch) == 3 and (batch.n_atoms == 3).all()  # primitive cells of the 12-atom conventional ones
    assert np.isfinite(batch.info["formation_energy"]).all() and (batch.info["novel"] == 0).all()
    assert not (tmp_path / "cif").exists()  # nothing novel, so no CIF


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_without_training_every_unique_crystal_is_written(three, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "crystals",
            "funnel",
            str(three),
            "--max-steps",
            "5",
            "--top",
            "2",
            "--cif-dir",
            str(tmp_path / "cif"),
            "-o",
            str(tmp_path / "a.npz"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "cif").iterdir()) == ["crystal_000.cif", "crystal_001.cif"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--density", "5", "1"], "--density"),
        (["--min-distance", "20"], "none of the 3 crystals is valid"),
    ],
)
def test_bad_input_is_refused_before_any_relaxation(three, tmp_path, args, message):
    result = CliRunner().invoke(main, ["crystals", "funnel", str(three), *args, "-o", str(tmp_path / "a.npz")])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.slow  # CHGNet relaxations
def test_generated_crystals_get_the_wyckoff_and_symmetry_rows(tmp_path):
    """Crystals built as the generator builds them (base sites, one noisy) carry the build's info; the funnel counts
    those on their Wyckoff positions, each pair rule, the symmetric ones and those that keep their group after
    CHGNet."""
    from aiida_physgen.ml import crystal_build
    from aiida_physgen.ml.crystal_data import symbols_of, training_crystals

    crystals = training_crystals(example_structures().subset([0, 1, 2]))
    coords = crystals.coords + np.random.default_rng(0).uniform(-0.01, 0.01, crystals.coords.shape)
    symbols = [symbols_of(z) for z in crystals.numbers]
    built = crystal_build.build_crystals(coords, crystals.lengths, crystals.space_groups, symbols)
    merged = crystal_build.build_crystals(  # the same without the snapping: the merge joins the images
        coords[:1],
        crystals.lengths[:1],
        crystals.space_groups[:1],
        symbols[:1],
        merge_distance=1.5,
        wyckoff_tolerance=0,
    )
    both = StructureBatch.from_atoms(list(built) + list(merged))
    for key in crystal_build.BUILD_INFO_KEYS:
        both.info[key] = np.concatenate([built.info[key], merged.info[key]])
    path = tmp_path / "generated.npz"
    path.write_bytes(both.to_npz_bytes())
    result = CliRunner().invoke(
        main, ["crystals", "funnel", str(path), "--max-steps", "60", "-o", str(tmp_path / "o.npz")]
    )
    assert result.exit_code == 0, result.output
    rows = dict(
        line.strip().split(": ") for line in result.output.splitlines() if ": " in line and "eV/atom" not in line
    )
    assert rows["generated"] == "4" and rows["on_wyckoff_positions"] == "3"
    assert rows["closest_pair_>=_0.5_A"] == "4" and rows["valid"] == "4" and rows["valid_and_symmetric"] == "4"
    assert rows["charge_neutral_possible"] == "0"  # Pt intermetallics
    converged = int(rows["relaxed_converged"])
    assert converged >= 3 and rows["symmetric_and_keeps_group_after_relaxation"] == str(converged)
