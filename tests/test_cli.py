"""Tests of the ``aiida-physgen`` command on plain files: train → generate → select → plot, the
family and protocol listings, exit codes, and stopping and resuming a training.

Training is tiny (2 steps, small networks, six molecules): the tests check the file plumbing and
the error messages, not model quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aiida_physgen.cli import EXIT_DIVERGED, EXIT_INPUT, EXIT_INTERRUPTED, main
from aiida_physgen.ml.model_io import load_model

RESOURCES = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan"
MOLECULES_FILE = RESOURCES / "C5H12O_training.extxyz"
SIO2_TARGET_FILE = RESOURCES / "sio2" / "mp-546794_target.extxyz"
SIO2_TRAINING_FILE = RESOURCES / "sio2" / "mp-546794_training.extxyz"

TINY_SET = [
    "--set", "rattle_copies=0",
    "--set", "hidden=[32,16]",
    "--set", "critic_hidden=[16]",
    "--set", "descriptor.n_max=2",
    "--set", "descriptor.l_max=2",
    "--set", "descriptor.max_neighbours=8",
    "--set", "loop.batch_size=4",
    "--threads", "1",
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
    assert sorted(p.name for p in trained.glob("*.pt")) == ["model_00.pt", "model_01.pt"]
    for seed, name in enumerate(("model_00.pt", "model_01.pt")):
        model = load_model(trained / name)
        config = model.config
        assert config["seed"] == seed
        assert config["steps"] == 2
        assert config["family"] == "logan"
        assert config["target"]["composition"] == "C5H12O"
        assert config["target"]["pbc"] == [False, False, False]
        np.testing.assert_allclose(config["target"]["cell"], np.eye(3) * 9.5)
        assert config["hyperparameters"]["hidden"] == [32, 16]
        assert config["hyperparameters"]["rattle_copies"] == 0
        assert config["hyperparameters"]["descriptor"]["n_max"] == 2
        assert config["training_set"]["count"] == 6
        assert config["history"]["steps"] == [2]
        assert isinstance(model.module, torch.nn.Module)
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["family"] == "logan" and summary["n_models"] == 2 and summary["seeds"] == [0, 1]
    assert [(m["file"], m["seed"], m["steps"]) for m in summary["models"]] == [
        ("model_00.pt", 0, 2),
        ("model_01.pt", 1, 2),
    ]
    assert set(summary["models"][0]["losses"]) == {"critic", "generator", "wasserstein"}
    log = (trained / "checkpoints" / "progress.log").read_text()
    assert "start: 2 model(s) of logan" in log and "step 2/2 (100.0%)" in log and "finished: 2 model(s)" in log
    assert (trained / "checkpoints" / "group_00.pt").is_file()


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


def test_select_takes_the_descriptor_of_the_models(workdir, trained, generated):
    """With --models the descriptor is the models' (n_max 2, l_max 2, 8 neighbours), as explicit options give."""
    models = [arg for path in sorted(trained.glob("*.pt")) for arg in ("--models", path)]
    common = ["select", "c.extxyz", "-k", "4", "--components", "3", "--min-distance", "0"]
    assert_ok(invoke([*common, *models, "--selection", "from_models.npz", "-o", "m.extxyz"], workdir))
    assert_ok(invoke([*common, "--n-max", "2", "--l-max", "2", "--max-neighbours", "8",
                      "--selection", "explicit.npz", "-o", "e.extxyz"], workdir))  # fmt: skip
    with np.load(workdir / "from_models.npz") as a, np.load(workdir / "explicit.npz") as b:
        np.testing.assert_array_equal(a["indices"], b["indices"])
        np.testing.assert_allclose(a["pca_coordinates"], b["pca_coordinates"])


def test_train_like_takes_cell_pbc_and_composition(tmp_path):
    target = ase.io.read(SIO2_TARGET_FILE)
    ase.io.write(tmp_path / "training.extxyz", ase.io.read(SIO2_TRAINING_FILE, index=":5"))
    result = invoke(
        ["train", "training.extxyz", "--like", SIO2_TARGET_FILE, "--steps", "2", "--seeds", "0", *TINY_SET,
         "-o", "sio2"], tmp_path
    )  # fmt: skip
    assert_ok(result)
    config = load_model(tmp_path / "sio2" / "model_00.pt").config
    assert config["target"]["pbc"] == [True, True, True]
    np.testing.assert_allclose(config["target"]["cell"], target.cell.array)
    assert config["target"]["composition"] == "Si2O4"

    assert_ok(invoke(["generate", "sio2/model_00.pt", "-n", "4", "-o", "s.extxyz"], tmp_path))
    generated = ase.io.read(tmp_path / "s.extxyz", index=":")
    assert len(generated) == 4
    for atoms in generated:
        assert atoms.pbc.all()
        np.testing.assert_allclose(atoms.cell.array, target.cell.array, atol=1e-6)


def test_train_target_json_job_file_and_grid(workdir):
    """--target takes any family's target; a --job file (what the CalcJob writes) gives the rest; --grid
    multiplies the seeds."""
    target = {"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": False}
    (workdir / "target.json").write_text(json.dumps(target))
    job = {"family": "logan", "target": target, "seeds": [5], "settings": {"loop": {"steps": 1}}}
    (workdir / "job.json").write_text(json.dumps(job))
    result = invoke(["train", "training.extxyz", "--job", "job.json", *TINY_SET,
                     "--grid", "loop.lr_generator=[1e-4,3e-4]", "-o", "grid"], workdir)  # fmt: skip
    assert_ok(result)
    configs = [load_model(workdir / "grid" / f"model_{i:02d}.pt").config for i in range(2)]
    assert [c["seed"] for c in configs] == [5, 5]
    assert [c["hyperparameters"]["loop"]["lr_generator"] for c in configs] == [1e-4, 3e-4]
    assert all(c["steps"] == 1 and c["target"]["pbc"] == [False] * 3 for c in configs)
    # --target as a file, command-line options over the job file
    result = invoke(["train", "training.extxyz", "--job", "job.json", "--target", "target.json", "--steps", "2",
                     "--seeds", "1", *TINY_SET, "-o", "target"], workdir)  # fmt: skip
    assert_ok(result)
    config = load_model(workdir / "target" / "model_00.pt").config
    assert config["seed"] == 1 and config["steps"] == 2
    # a smaller ensemble into the same folder leaves no model of the larger one behind
    result = invoke(["train", "training.extxyz", "--job", "job.json", *TINY_SET, "--checkpoint-dir", "grid-ck",
                     "-o", "grid"], workdir)  # fmt: skip
    assert_ok(result)
    assert sorted(p.name for p in (workdir / "grid").glob("*.pt")) == ["model_00.pt"]


def test_train_protocol_is_the_base_of_the_settings(workdir):
    result = invoke(["train", "training.extxyz", "-c", "C5H12O", "--box", "9.5", "--protocol", "fast",
                     "--seeds", "0", "--steps", "1", *TINY_SET, "-o", "fast"], workdir)  # fmt: skip
    assert_ok(result)
    hyper = load_model(workdir / "fast" / "model_00.pt").config["hyperparameters"]
    assert hyper["loop"]["lr_generator"] == 1e-3  # from the protocol (molecule variant)
    assert hyper["loop"]["steps"] == 1 and hyper["rattle_copies"] == 0  # --steps and --set win
    assert hyper["descriptor"]["r_cut"] == 5.0 and hyper["descriptor"]["n_max"] == 2


def test_families_and_protocols_are_listed():
    result = CliRunner().invoke(main, ["families"])
    assert_ok(result)
    assert "logan" in result.output and "generator" in result.output and "LoganFamily" in result.output
    result = CliRunner().invoke(main, ["protocols", "--family", "logan"])
    assert_ok(result)
    for protocol in ("fast", "balanced", "paper"):
        assert protocol in result.output
    assert "(default)" in result.output
    assert_refused(CliRunner().invoke(main, ["protocols", "--family", "nope"]), "family", "'nope'")


# ------------------------------------------------------------------------------------------ bad inputs
def train_args(*extra, training="training.extxyz"):
    return ["train", training, "--steps", "2", "--seeds", "0", *TINY_SET, *extra]


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
    result = invoke(
        train_args("--composition", "C5H12O", "--box", "9.5", "-o", "bad", training="empty.extxyz"), workdir
    )
    assert_refused(result, "training", "empty.extxyz", "no structures")
    assert not (workdir / "bad").exists()


def test_train_refuses_blank_training_file(workdir):
    (workdir / "blank.extxyz").write_text("\n\n")
    result = invoke(
        train_args("--composition", "C5H12O", "--box", "9.5", "-o", "bad", training="blank.extxyz"), workdir
    )
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


def test_train_needs_a_target(workdir):
    assert_refused(invoke(train_args("-o", "bad"), workdir), "--target", "--composition")
    both = train_args("--target", '{"composition": "C5H12O"}', "--box", "9.5", "-o", "bad")
    assert_refused(invoke(both, workdir), "--target", "--box")
    bad = train_args("--target", '{"composition": "C5H12O", "cell": [1, 2]}', "--family", "logan", "-o", "bad")
    assert_refused(invoke(bad, workdir), "target.cell")
    # a target of any family says which family it is for: no family is assumed
    no_family = train_args("--target", '{"composition": "C5H12O", "cell": [1, 2]}', "-o", "bad")
    assert_refused(invoke(no_family, workdir), "family: give --family")
    assert_refused(invoke(train_args("--target", "{not json", "-o", "bad"), workdir), "--target")
    assert not (workdir / "bad").exists()


def test_train_refuses_bad_seeds_settings_grid_family_protocol_device(workdir):
    molecule = ("--composition", "C5H12O", "--box", "9.5", "-o", "bad")
    cases = [
        (("--seeds", "0,x"), ["--seeds"]),
        (("--seeds", "1,1"), ["seeds", "1"]),
        (("--set", "bogus=1"), ["settings.bogus"]),
        (("--set", "loop.stepz=1"), ["settings.loop.stepz"]),
        (("--set", "steps"), ["--set", "KEY=VALUE"]),
        (("--set", "loop.batch_size=0"), ["batch_size"]),
        (("--settings", '{"latent_dim": 0}'), ["latent_dim"]),
        (("--grid", "loop.lr_generator=1e-4"), ["grid.loop.lr_generator", "list"]),
        (("--grid", "loop.nope=[1,2]"), ["grid", "loop.nope"]),
        (("--family", "nope"), ["family", "'nope'"]),
        (("--protocol", "superfast"), ["--protocol", "superfast"]),
        (("--device", "tpu"), ["device", "'tpu'"]),
    ]
    for extra, words in cases:
        result = invoke(train_args(*molecule, *extra), workdir)
        assert_refused(result, *words)
        assert result.exit_code == EXIT_INPUT, (extra, result.exit_code, result.output)
    assert not (workdir / "bad").exists()


def test_train_refuses_checkpoints_of_another_training(workdir, tmp_path):
    first = train_args(
        "--composition", "C5H12O", "--box", "9.5", "--checkpoint-dir", tmp_path / "ck", "-o", tmp_path / "a"
    )
    assert_ok(invoke(first, workdir))
    other = train_args("--composition", "C5H12O", "--box", "9.5", "--checkpoint-dir", tmp_path / "ck",
                       "--set", "hidden=[16]", "-o", tmp_path / "b")  # fmt: skip
    result = invoke(other, workdir)
    assert_refused(result, "checkpoint_dir", "another training")
    assert result.exit_code == EXIT_INPUT


def test_train_divergence_exits_3_and_writes_no_model(workdir, tmp_path):
    result = invoke(train_args("--composition", "C5H12O", "--box", "9.5", "--seeds", "0,1",
                               "--set", "loop.optimizer=adam", "--set", "loop.lr_generator=1e30",
                               "--set", "loop.lr_critic=1e30", "--steps", "5",
                               "--status", tmp_path / "status.json", "-o", tmp_path / "nan"), workdir)  # fmt: skip
    assert result.exit_code == EXIT_DIVERGED, result.output
    assert "diverged" in result.output and "NaN" in result.output
    assert not list((tmp_path / "nan").glob("*.pt"))
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged" and status["exit_code"] == EXIT_DIVERGED


@pytest.mark.parametrize("count", ["0", "-2"])
def test_generate_refuses_nonpositive_count(workdir, trained, count):
    result = invoke(["generate", trained / "model_00.pt", "--count", count, "-o", "none.extxyz"], workdir)
    assert_refused(result, "--count")
    assert not (workdir / "none.extxyz").exists()


def test_generate_refuses_a_non_model_file(workdir):
    (workdir / "junk.pt").write_bytes(b"not a model")
    result = invoke(["generate", "junk.pt", "-n", "2", "-o", "none.extxyz"], workdir)
    assert_refused(result, "junk.pt")
    assert result.exit_code == EXIT_INPUT


def test_generate_refuses_a_condition_logan_does_not_take(workdir, trained):
    result = invoke(["generate", trained / "model_00.pt", "-n", "2", "--condition", '{"energy": 1}',
                     "-o", "none.extxyz"], workdir)  # fmt: skip
    assert_refused(result, "condition", "logan")
    assert not (workdir / "none.extxyz").exists()


def test_select_refuses_more_clusters_than_candidates(workdir, generated):
    result = invoke(["select", "c.extxyz", "--clusters", "61", *TINY_SELECT, "-o", "none.extxyz"], workdir)
    assert_refused(result, "--clusters", "61", "60")
    assert not (workdir / "none.extxyz").exists()


def test_select_refuses_bad_descriptor_options(workdir, generated):
    result = invoke(["select", "c.extxyz", "-k", "3", "--r-cut", "-1", "--min-distance", "0", "-o", "none.extxyz"],
                    workdir)  # fmt: skip
    assert_refused(result, "--r-cut")
    assert not (workdir / "none.extxyz").exists()


# ------------------------------------------------------------------------------------------ stop and resume
def weights(directory: Path) -> list[dict]:
    return [load_model(path).module.state_dict() for path in sorted(directory.glob("model_*.pt"))]


def assert_same_weights(first: list[dict], second: list[dict]):
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_max_seconds_stops_with_a_checkpoint_and_the_same_command_resumes(workdir, tmp_path):
    args = train_args("--composition", "C5H12O", "--box", "9.5", "--seeds", "0,1", "--steps", "6")
    assert_ok(invoke([*args, "-o", tmp_path / "reference"], workdir))
    stopped = [*args, "--status", tmp_path / "status.json", "-o", tmp_path / "stopped"]
    result = invoke([*stopped, "--max-seconds", "0"], workdir)
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert "interrupted" in result.output and "run the same command again" in result.output
    assert (tmp_path / "stopped" / "checkpoints" / "group_00.pt").is_file()
    assert not list((tmp_path / "stopped").glob("model_*.pt"))
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "interrupted" and status["exit_code"] == EXIT_INTERRUPTED
    assert "--max-seconds 0 reached" in status["reason"]
    assert_ok(invoke(stopped, workdir))
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "ok"
    assert_same_weights(weights(tmp_path / "reference"), weights(tmp_path / "stopped"))


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "aiida_physgen", *map(str, args)]


@pytest.mark.slow
def test_sigterm_stops_mid_run_and_rerunning_resumes_bit_for_bit(tmp_path):
    """SIGTERM in the middle of a training: checkpoint, exit 75; the same command again ends with the
    weights of a run that was never stopped, bit for bit."""
    ase.io.write(tmp_path / "training.extxyz", ase.io.read(MOLECULES_FILE, index=":6"))
    args = ["train", "training.extxyz", "-c", "C5H12O", "--box", "9.5", "--seeds", "0,1", "--steps", "200",
            *TINY_SET, "--checkpoint-every", "25"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert_ok(invoke([*args, "-o", "reference"], tmp_path))  # in this process: the same code, one thread

    command = cli(*args, "-o", "stopped")
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = tmp_path / "stopped" / "checkpoints" / "progress.log"
    deadline = time.monotonic() + 60
    while not (log.is_file() and "checkpoint group 1/1 step 50/" in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, "the training should be running"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "SIGTERM" in stderr and "run the same command again to resume" in stderr
    stopped_at = int(log.read_text().split("interrupted at step ")[1].split("/")[0])
    assert 50 <= stopped_at < 200
    assert not list((tmp_path / "stopped").glob("model_*.pt"))

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resumed group 1/1 at step {stopped_at}/200" in again.stdout
    assert f"resumed group 1/1 at step {stopped_at}/200" in log.read_text()
    assert_same_weights(weights(tmp_path / "reference"), weights(tmp_path / "stopped"))
    for name in ("model_00.pt", "model_01.pt"):
        first = load_model(tmp_path / "reference" / name).config
        second = load_model(tmp_path / "stopped" / name).config
        assert first["history"] == second["history"] and first["losses"] == second["losses"]


def test_python_dash_m_runs_the_command(tmp_path):
    result = subprocess.run(cli("--help"), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Usage: aiida-physgen" in result.stdout
    for command in ("train", "generate", "select", "plot", "families", "protocols", "report"):
        assert command in result.stdout


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
import json, sys
from aiida_physgen.cli import main
codes = []
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="aiida-physgen")
    except SystemExit as exit:
        codes.append(exit.code)
loaded = sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida."))
print("EXIT_CODES", codes)
print("AIIDA_MODULES", loaded)
"""


@pytest.mark.slow
def test_file_commands_need_no_profile(tmp_path):
    """train (with a protocol), generate, select, families and protocols run with an empty AiiDA config
    folder and never import AiiDA (one interpreter for all, to pay for the imports once)."""
    aiida_path = tmp_path / "aiida-config"
    aiida_path.mkdir()
    ase.io.write(tmp_path / "training.extxyz", ase.io.read(MOLECULES_FILE, index=":4"))
    commands = [
        train_args("--composition", "C5H12O", "--box", "9.5", "--seeds", "3", "--protocol", "fast"),
        ["generate", "models/model_00.pt", "-n", "3", "-o", "c.extxyz"],
        ["select", "c.extxyz", "-k", "2", "--components", "2", "--min-distance", "0", "--models", "models/model_00.pt"],
        ["families"],
        ["protocols"],
    ]
    result = run_python(CLI_WITHOUT_AIIDA, json.dumps([list(map(str, c)) for c in commands]), cwd=tmp_path,
                        aiida_path=aiida_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "EXIT_CODES [0, 0, 0, 0, 0]" in result.stdout, result.stdout + result.stderr
    assert "AIIDA_MODULES []" in result.stdout
    assert load_model(tmp_path / "models" / "model_00.pt").config["seed"] == 3
    assert len(ase.io.read(tmp_path / "c.extxyz", index=":")) == 3
    assert len(ase.io.read(tmp_path / "representatives.extxyz", index=":")) == 2
    # nothing was written into the (empty) AiiDA folder: no config, no profile was created
    assert list(aiida_path.iterdir()) == []


def test_ml_layer_imports_no_aiida(tmp_path):
    code = (
        "import sys\n"
        "import aiida_physgen.ml.logan, aiida_physgen.ml.model_io, aiida_physgen.screening.selection, "
        "aiida_physgen.cli\n"
        "loaded = sorted(m for m in sys.modules if m == 'aiida' or m.startswith('aiida.'))\n"
        "assert 'aiida_physgen.ml.logan' in sys.modules\n"
        "print('AIIDA_MODULES', loaded)\n"
    )
    aiida_path = tmp_path / "aiida-config"
    aiida_path.mkdir()
    result = run_python(code, cwd=tmp_path, aiida_path=aiida_path)
    assert result.returncode == 0, result.stderr
    assert "AIIDA_MODULES []" in result.stdout
