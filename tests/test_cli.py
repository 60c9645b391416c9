"""Tests of the ``aiida-physgen`` command on plain files: train → generate → select → plot.

Training is tiny (2 steps, small networks, six molecules): the tests check the file plumbing and
the error messages, not model quality.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aiida_physgen.cli import main
from aiida_physgen.ml.model_io import load_model

RESOURCES = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan"
MOLECULES_FILE = RESOURCES / "C5H12O_training.extxyz"
SIO2_TARGET_FILE = RESOURCES / "sio2" / "mp-546794_target.extxyz"
SIO2_TRAINING_FILE = RESOURCES / "sio2" / "mp-546794_training.extxyz"

TINY_SET = [
    "--set", "rattle_copies=0",
    "--set", "hidden=[32,16]",
    "--set", "critic_hidden=[16]",
    "--set", "n_max=2",
    "--set", "l_max=2",
    "--set", "max_neighbours=8",
    "--set", "batch_size=4",
]  # fmt: skip
# two-step models put every atom near the box centre: no min-distance filter in these tests
TINY_SELECT = ["--n-max", "2", "--max-neighbours", "8", "--components", "3", "--min-distance", "0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(args, cwd: Path):
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(old)


def assert_ok(result):
    assert result.exit_code == 0, (result.output, result.exception)


def assert_refused(result, *words):
    """A clean refusal: non-zero exit, a message naming the field, no Python traceback."""
    assert result.exit_code != 0, result.output
    # click reports usage and click errors through SystemExit, never an unexpected exception
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    ase.io.write(path / "training.extxyz", ase.io.read(MOLECULES_FILE, index=":6"))
    return path


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    result = invoke(
        ["train", "training.extxyz", "--composition", "C5H12O", "--box", "9.5", "--seeds", "0,1", "--steps", "2",
         *TINY_SET],
        workdir,
    )  # fmt: skip
    assert_ok(result)
    return workdir / "models"


@pytest.fixture(scope="module")
def generated(workdir, trained) -> Path:
    models = sorted(trained.glob("*.pt"))
    result = invoke(["generate", *models, "-n", "30", "--seed", "0", "-o", "c.extxyz"], workdir)
    assert_ok(result)
    return workdir / "c.extxyz"


# ------------------------------------------------------------------------------------------ happy path
def test_train_writes_one_model_per_seed(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["model_00.pt", "model_01.pt"]
    for seed, name in enumerate(("model_00.pt", "model_01.pt")):
        module, config = load_model(trained / name)
        assert config["seed"] == seed
        assert config["steps"] == 2
        assert config["family"] == "logan"
        assert config["composition"] == "C5H12O"
        assert config["pbc"] == [False, False, False]
        np.testing.assert_allclose(config["cell"], np.eye(3) * 9.5)
        assert config["hyperparameters"]["hidden"] == [32, 16]
        assert config["hyperparameters"]["rattle_copies"] == 0
        assert config["training_set"]["count"] == 6
        assert isinstance(module, torch.nn.Module)


def test_generate_writes_all_candidates(generated, trained):
    structures = ase.io.read(generated, index=":")
    assert len(structures) == 60
    assert {atoms.get_chemical_formula(mode="hill") for atoms in structures} == {"C5H12O"}
    model_index = np.array([atoms.info["model_index"] for atoms in structures])
    np.testing.assert_array_equal(model_index, np.repeat([0, 1], 30))
    assert not any(atoms.pbc.any() for atoms in structures)
    positions = np.array([atoms.positions for atoms in structures])
    assert positions.min() >= 0.0 and positions.max() <= 9.5
    assert not np.allclose(positions[:30], positions[30:])


def test_generate_is_deterministic(workdir, trained, generated):
    models = sorted(trained.glob("*.pt"))
    assert_ok(invoke(["generate", *models, "-n", "30", "--seed", "0", "-o", "again.extxyz"], workdir))
    assert_ok(invoke(["generate", *models, "-n", "30", "--seed", "1", "-o", "other.extxyz"], workdir))
    first = np.array([a.positions for a in ase.io.read(generated, index=":")])
    again = np.array([a.positions for a in ase.io.read(workdir / "again.extxyz", index=":")])
    other = np.array([a.positions for a in ase.io.read(workdir / "other.extxyz", index=":")])
    np.testing.assert_allclose(again, first)
    assert not np.allclose(other, first)


def test_select_and_plot(workdir, generated):
    result = invoke(
        ["select", "c.extxyz", "-k", "5", *TINY_SELECT, "-o", "r.extxyz", "--selection", "s.npz", "--plot", "p.png"],
        workdir,
    )
    assert_ok(result)
    reps = ase.io.read(workdir / "r.extxyz", index=":")
    assert len(reps) == 5
    with np.load(workdir / "s.npz") as data:
        indices = data["indices"]
        assert indices.shape == (5,) and len(set(indices.tolist())) == 5
        assert data["labels"].shape == (60,)
        assert data["pca_coordinates"].shape == (60, 3)
    candidates = ase.io.read(generated, index=":")
    for atoms, index in zip(reps, indices):
        assert atoms.info["candidate_index"] == index
        np.testing.assert_allclose(atoms.positions, candidates[int(index)].positions, atol=1e-6)
    assert (workdir / "p.png").read_bytes().startswith(PNG_MAGIC)

    result = invoke(["plot", "s.npz", "-o", "p2.png"], workdir)
    assert_ok(result)
    assert (workdir / "p2.png").read_bytes().startswith(PNG_MAGIC)


def test_train_like_takes_cell_pbc_and_composition(tmp_path):
    target = ase.io.read(SIO2_TARGET_FILE)
    ase.io.write(tmp_path / "training.extxyz", ase.io.read(SIO2_TRAINING_FILE, index=":5"))
    result = invoke(
        ["train", "training.extxyz", "--like", SIO2_TARGET_FILE, "--steps", "2", *TINY_SET, "-o", "sio2"], tmp_path
    )
    assert_ok(result)
    _, config = load_model(tmp_path / "sio2" / "model_00.pt")
    assert config["pbc"] == [True, True, True]
    np.testing.assert_allclose(config["cell"], target.cell.array)
    assert sorted(config["symbols"]) == sorted(target.get_chemical_symbols())
    assert config["composition"] == "Si2O4"

    assert_ok(invoke(["generate", "sio2/model_00.pt", "-n", "4", "-o", "s.extxyz"], tmp_path))
    generated = ase.io.read(tmp_path / "s.extxyz", index=":")
    assert len(generated) == 4
    for atoms in generated:
        assert atoms.pbc.all()
        np.testing.assert_allclose(atoms.cell.array, target.cell.array, atol=1e-6)


# ------------------------------------------------------------------------------------------ bad inputs
def train_args(*extra, training="training.extxyz"):
    return ["train", training, "--steps", "2", *TINY_SET, *extra]


def test_train_refuses_element_absent_from_composition(workdir):
    result = invoke(train_args("--composition", "C5H12", "--box", "9.5", "-o", "bad"), workdir)
    assert_refused(result, "training", "'O'", "'C5H12'")
    assert not (workdir / "bad").exists()


def test_train_refuses_composition_element_missing_from_training(workdir):
    result = invoke(train_args("--composition", "C5H12ON", "--box", "9.5", "-o", "bad"), workdir)
    assert_refused(result, "composition", "'N'")
    assert not (workdir / "bad").exists()


def test_train_refuses_empty_training_file(workdir):
    (workdir / "empty.extxyz").write_text("")
    result = invoke(train_args("--composition", "C5H12O", "--box", "9.5", "-o", "bad", training="empty.extxyz"), workdir)
    assert_refused(result, "empty.extxyz", "no structures")
    assert not (workdir / "bad").exists()


def test_train_refuses_blank_training_file(workdir):
    (workdir / "blank.extxyz").write_text("\n\n")
    result = invoke(train_args("--composition", "C5H12O", "--box", "9.5", "-o", "bad", training="blank.extxyz"), workdir)
    assert_refused(result, "blank.extxyz", "no structures")


def test_train_refuses_small_box(workdir):
    result = invoke(train_args("--composition", "C5H12O", "--box", "3", "-o", "bad"), workdir)
    assert_refused(result, "cell", "box")
    assert not (workdir / "bad").exists()


def test_train_refuses_nonpositive_box(workdir):
    result = invoke(train_args("--composition", "C5H12O", "--box", "-1", "-o", "bad"), workdir)
    assert_refused(result, "--box")


def test_train_needs_a_cell(workdir):
    result = invoke(train_args("--composition", "C5H12O", "-o", "bad"), workdir)
    assert_refused(result, "--cell", "--box", "--like")


def test_train_refuses_two_cells(workdir):
    result = invoke(train_args("--composition", "C5H12O", "--box", "9.5", "--cell", "9", "--cell", "9", "--cell", "9"),
                    workdir)  # fmt: skip
    assert_refused(result, "exactly one")


def test_train_refuses_bad_cell_length(workdir):
    result = invoke(train_args("--composition", "C5H12O", "--cell", "9", "--cell", "9"), workdir)
    assert_refused(result, "--cell", "2 numbers")


def test_train_needs_a_composition(workdir):
    result = invoke(train_args("--box", "9.5"), workdir)
    assert_refused(result, "--composition")


def test_train_refuses_bad_seeds_and_settings(workdir):
    assert_refused(invoke(train_args("--composition", "C5H12O", "--box", "9.5", "--seeds", "0,x"), workdir), "--seeds")
    assert_refused(invoke(train_args("--composition", "C5H12O", "--box", "9.5", "--set", "bogus=1"), workdir), "bogus")
    assert_refused(invoke(train_args("--composition", "C5H12O", "--box", "9.5", "--set", "steps"), workdir), "--set")


@pytest.mark.parametrize("count", ["0", "-2"])
def test_generate_refuses_nonpositive_count(workdir, trained, count):
    result = invoke(["generate", trained / "model_00.pt", "--count", count, "-o", "none.extxyz"], workdir)
    assert_refused(result, "--count")
    assert not (workdir / "none.extxyz").exists()


def test_generate_refuses_a_non_model_file(workdir):
    (workdir / "junk.pt").write_bytes(b"not a model")
    result = invoke(["generate", "junk.pt", "-n", "2", "-o", "none.extxyz"], workdir)
    assert_refused(result, "junk.pt")


def test_select_refuses_more_clusters_than_candidates(workdir, generated):
    result = invoke(["select", "c.extxyz", "--clusters", "61", *TINY_SELECT, "-o", "none.extxyz"], workdir)
    assert_refused(result, "--clusters", "61", "60")
    assert not (workdir / "none.extxyz").exists()


# ------------------------------------------------------------------------------------------ no AiiDA
def run_python(code: str, *args, cwd: Path, aiida_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["AIIDA_PATH"] = str(aiida_path)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("AIIDA_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


CLI_WITHOUT_AIIDA = """
import sys
from aiida_physgen.cli import main
try:
    main()
except SystemExit as exit:
    loaded = sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida."))
    print("AIIDA_MODULES", loaded)
    raise
"""


def test_file_commands_need_no_profile(tmp_path):
    """train and generate run with an empty AiiDA config folder and never import AiiDA."""
    aiida_path = tmp_path / "aiida-config"
    aiida_path.mkdir()
    ase.io.write(tmp_path / "training.extxyz", ase.io.read(MOLECULES_FILE, index=":4"))
    train = run_python(
        CLI_WITHOUT_AIIDA, *train_args("--composition", "C5H12O", "--box", "9.5", "--seeds", "3"),
        cwd=tmp_path, aiida_path=aiida_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "AIIDA_MODULES []" in train.stdout
    assert (tmp_path / "models" / "model_00.pt").is_file()
    generate = run_python(
        CLI_WITHOUT_AIIDA, "generate", "models/model_00.pt", "-n", "3", "-o", "c.extxyz",
        cwd=tmp_path, aiida_path=aiida_path,
    )  # fmt: skip
    assert generate.returncode == 0, generate.stderr
    assert "AIIDA_MODULES []" in generate.stdout
    assert len(ase.io.read(tmp_path / "c.extxyz", index=":")) == 3
    # nothing was written into the (empty) AiiDA folder: no config, no profile was created
    assert list(aiida_path.iterdir()) == []


def test_ml_layer_imports_no_aiida(tmp_path):
    code = (
        "import sys\n"
        "import aiida_physgen.ml.logan, aiida_physgen.ml.model_io, aiida_physgen.selection, aiida_physgen.cli\n"
        "loaded = sorted(m for m in sys.modules if m == 'aiida' or m.startswith('aiida.'))\n"
        "assert 'aiida_physgen.ml.logan' in sys.modules\n"
        "print('AIIDA_MODULES', loaded)\n"
    )
    aiida_path = tmp_path / "aiida-config"
    aiida_path.mkdir()
    result = run_python(code, cwd=tmp_path, aiida_path=aiida_path)
    assert result.returncode == 0, result.stderr
    assert "AIIDA_MODULES []" in result.stdout
