"""The skip gate (tests/skip_gate.py): counted always, fatal under CI=true unless allow-listed."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _run(tmp_path: Path, body: str, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["skip_gate"]\n')
    (tmp_path / "test_demo.py").write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(TESTS), "CI": "true" if ci else ""}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SKIPPING = """
    import pytest

    def test_runs():
        pass

    def test_skips():
        pytest.skip("a package is missing")
"""


@pytest.mark.parametrize("ci", [False, True])
def test_a_skip_is_counted_and_fails_the_run_only_under_ci(tmp_path, ci):
    result = _run(tmp_path, SKIPPING, ci)
    assert "skips: 1 (0 allowed)" in result.stdout
    assert "test_demo.py::test_skips: a package is missing" in result.stdout
    assert result.returncode == (1 if ci else 0), result.stdout


def test_a_module_level_import_skip_is_counted_too(tmp_path):
    result = _run(
        tmp_path, 'import pytest\npytest.importorskip("no_such_package_here")\n\ndef test_x():\n    pass\n', True
    )
    assert "skips: 1 (0 allowed)" in result.stdout and result.returncode == 1, result.stdout


def test_no_skip_passes_under_ci(tmp_path):
    result = _run(tmp_path, "def test_runs():\n    pass\n", True)
    assert "skips: 0 (0 allowed)" in result.stdout and result.returncode == 0, result.stdout
