"""The installed ``aiida-physgen`` command, run as a user runs it: a subprocess from the console script the set-up
installs (the other CLI tests call the click group in-process). A missing command is a failure, not a skip."""

from __future__ import annotations

import shutil
import subprocess

import pytest

#: subprocesses that import the whole CLI (about 2 s each): the slow lane; the in-process CLI tests are fast
pytestmark = pytest.mark.slow

COMMAND = shutil.which("aiida-physgen")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    assert COMMAND, "the aiida-physgen console script is not on PATH: the set-up installs it (pip install -e .)"
    return subprocess.run([COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "generate", "select", "report", "sheets", "amorphous", "crystals"):
        assert f"  {command} " in result.stdout


def test_version_is_the_package_version():
    from importlib.metadata import version

    result = run("--version")
    assert result.returncode == 0 and version("aiida-physgen") in result.stdout, result.stdout


def test_a_command_writes_its_file(tmp_path):
    result = run("sheets", "-n", "3", "--seed", "1", "-o", "sheets.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 sheets" in result.stdout
    from aiida_physgen.ml.batch import StructureBatch

    batch = StructureBatch.from_npz(tmp_path / "sheets.npz")
    assert len(batch) == 3 and batch.pbc[:, :2].all()


@pytest.mark.parametrize(
    "args, words",
    [
        (("sheets", "-n", "1000000000", "-o", "x.npz"), ["--count", "GB of memory"]),
        (("protocols", "-f", "nope"), ["nope"]),
        (("trian",), ["trian"]),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, args, words):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert not list(tmp_path.iterdir()), "a file appeared"
