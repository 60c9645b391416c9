"""benchmarks/crystal_heldout.py: its bad options are refused before anything is written, and the middle-element
check it chooses settings by reads the shipped half-Heuslers right."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_physgen.ml.crystal_data import example_structures

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "crystal_heldout.py"


def _module():
    spec = importlib.util.spec_from_file_location("crystal_heldout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a subprocess each, about 3 s: the fast lane stays under 2 minutes
@pytest.mark.parametrize(
    "override, message",
    [
        ("critic_waves=5", "--set: critic_waves: got 5, expected 0, 1 or 2"),
        ("nonsense", "expected KEY=VALUE, got 'nonsense'"),
        ("bogus=1", "unknown key(s) ['settings.bogus']"),
    ],
)
def test_a_bad_training_setting_is_refused_before_anything_is_written(tmp_path, override, message):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--set", override], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


def test_the_middle_element_of_every_shipped_half_heusler_is_pt_and_a_swap_moves_it():
    module = _module()
    crystals = example_structures()
    assert {module.middle_element(atoms) for atoms in crystals.subset(range(0, 99, 11))} == {"Pt"}
    atoms = crystals[0].copy()
    symbols = atoms.get_chemical_symbols()
    other = next(s for s in symbols if s != "Pt")
    atoms.set_chemical_symbols([other if s == "Pt" else "Pt" if s == other else s for s in symbols])
    assert module.middle_element(atoms) == other  # the element on the middle site, whichever it is
