"""A screening with the VASP engine submitted to a real two-worker daemon, against the fake VASP: the
aiida-vasp work chains, their calculations and the physgen chain around them run in the workers."""

from __future__ import annotations

import sys
from pathlib import Path

import aiida_vasp  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import pytest
from aiida.engine import submit
from ase.build import molecule
from daemon_tools import describe, wait_terminated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vasp"))
from fixtures import fake_potcar_family, fake_vasp_code  # noqa: E402

from aiida_physgen.launch import screening_builder  # noqa: E402

# as tests/aiida/test_vasp.py: three steps are enough for candidates whose atoms are 0.5 Å apart
SETTINGS = {
    "loop": {"steps": 3, "batch_size": 4},
    "rattle_copies": 0,
    "hidden": [32, 16],
    "critic_hidden": [16],
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}


@pytest.mark.slow
def test_vasp_screening_finishes_under_the_daemon(two_workers, aiida_localhost, tmp_path):
    family = fake_potcar_family(tmp_path)
    code = fake_vasp_code(aiida_localhost)
    builder = screening_builder(
        [molecule("H2O"), molecule("H2O2"), molecule("H2O")],
        "H2O",
        box=5.0,
        code=code,
        engine="vasp",
        relax_overrides={"potential_family": family},
        seeds=[0],
        settings=SETTINGS,
        count=12,
        n_clusters=4,
        n_components=2,
        dft_budget=2,
        reuse_relaxations=False,
    )
    node = submit(builder)
    wait_terminated([node], 600, two_workers)
    assert node.is_finished_ok, describe(node)
    relaxations = [n for n in node.called_descendants if n.process_label == "VaspRelaxWorkChain"]
    assert relaxations and all(n.is_finished_ok for n in relaxations)
    assert {c.process_label for n in relaxations for c in n.called_descendants} >= {"VaspWorkChain", "VaspCalculation"}
    assert node.outputs.report["n_relaxed"] == len(relaxations)
