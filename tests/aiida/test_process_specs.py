"""What `verdi plugin list` shows and the reference documents: every port and output has help, every
named exit code is in the process spec and in docs/reference.md."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from aiida.engine import Process
from plumpy.ports import PortNamespace

REFERENCE = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()

PROCESSES = sorted(
    (group, ep.name)
    for group in ("aiida.calculations", "aiida.workflows")
    for ep in entry_points(group=group)
    if ep.name.startswith("physgen.")
)


def _process_class(group: str, name: str) -> type[Process]:
    (ep,) = [e for e in entry_points(group=group) if e.name == name]
    loaded = ep.load()
    return loaded.process_class if getattr(loaded, "is_process_function", False) else loaded


def _ports(namespace: PortNamespace, prefix: str = ""):
    for name, port in namespace.items():
        if name == "metadata" or name.startswith("_"):
            continue
        yield f"{prefix}{name}", port
        if isinstance(port, PortNamespace):
            yield from _ports(port, f"{prefix}{name}.")


@pytest.mark.parametrize("group, name", PROCESSES)
def test_every_port_and_output_has_help(group, name):
    spec = _process_class(group, name).spec()
    missing = [f"input {path}" for path, port in _ports(spec.inputs) if not (port.help or "").strip()]
    missing += [f"output {path}" for path, port in _ports(spec.outputs) if not (port.help or "").strip()]
    assert not missing, f"{name}: no help on {missing}"


@pytest.mark.parametrize("group, name", PROCESSES)
def test_every_named_exit_code_is_in_the_spec_and_the_reference(group, name):
    process = _process_class(group, name)
    codes = {label: code for label, code in process.spec().exit_codes.items() if code.status >= 300}
    if "calculations" in group and name != "physgen.gpaw" and not name.endswith(".job"):  # calcfunctions
        assert 300 in {code.status for code in codes.values()}, f"{name} declares no ERROR_INVALID_INPUT"
    section = REFERENCE.split(f"### `{name}`", 1)
    assert len(section) == 2, f"docs/reference.md has no section for {name}"
    text = section[1].split("\n### ", 1)[0]
    for label, code in codes.items():
        assert re.search(rf"\b{code.status}\b", text) and label in text, (
            f"docs/reference.md, section {name}: exit code {code.status} {label} is not listed"
        )
