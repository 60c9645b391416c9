"""The study scripts in ``workchains/`` run as a user runs them: ``verdi -p <the test profile> run <script> --smoke``
in a subprocess (the test profile's AIIDA_PATH is in the environment), then the node it made is loaded for the
test's assertions. A script that fails, or prints no node, fails the test with its output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from aiida import orm
from aiida.manage import get_manager

REPO = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``verdi -p <the test profile> run workchains/<script> *args`` in ``cwd``, one thread, output captured."""
    verdi = shutil.which("verdi")
    assert verdi, "verdi is not on PATH: the set-up installs aiida-core"
    profile = get_manager().get_profile().name
    return subprocess.run(
        [verdi, "-p", profile, "run", str(REPO / "workchains" / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
    )


def run_study(script: str, *args: str, label: str, cwd: Path, timeout: float = 900) -> tuple[orm.WorkflowNode, str]:
    """Run ``workchains/<script>`` with ``args``; the ``<label><pk>`` node its output names first, and the output."""
    result = run_script(script, *args, cwd=cwd, timeout=timeout)
    output = f"--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{script} {' '.join(args)} exited with {result.returncode}\n{output}"
    found = re.search(rf"{label}<(\d+)>", result.stdout)
    assert found, f"{script} printed no {label}<pk>\n{output}"
    return orm.load_node(int(found.group(1))), result.stdout


def outputs_of(node: orm.ProcessNode) -> dict:
    """The node's outputs as nested dictionaries, as ``run_get_node`` gives them (``a__b`` → ``["a"]["b"]``)."""
    from aiida.common.links import LinkType

    nested: dict = {}
    for link in node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN)).all():
        *path, name = link.link_label.split("__")
        level = nested
        for part in path:
            level = level.setdefault(part, {})
        level[name] = link.node
    return nested


def check_smoke(script: str, args, label: str, last_words: str, cwd: Path) -> None:
    """Run ``script --smoke *args``; its output ends with ``last_words`` and every ``<label><pk>`` it names finished
    OK (the scripts print the exit status; not all of them exit on it)."""
    _, printed = run_study(script, "--smoke", *args, label=label, cwd=cwd)
    assert last_words in printed, printed
    for pk in re.findall(rf"{label}<(\d+)>", printed):
        node = orm.load_node(int(pk))
        assert node.is_finished_ok, (script, node.pk, node.exit_status, node.exit_message)
