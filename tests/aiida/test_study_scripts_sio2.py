"""The LoGAN SiO2 study scripts in ``workchains/`` (the C5H12O ones: test_study_scripts.py) at their ``--smoke``
sizes (the LoGAN family's and GPAW's smoke protocols: one 20-step model, 2 picks, static single points), each run
as a user runs it (``verdi run`` in a subprocess on the test profile). They check that each script runs to its
last line, not the science: the main job and the domain studies have their own end-to-end tests (test_main_job,
test_graphene_chain, test_crystal_screening, test_amorphous_chain)."""

from __future__ import annotations

import pytest
from study_scripts import check_smoke, run_script

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "script, args, label, last_words",
    [
        ("logan_sio2.py", (), "GenerationWorkChain", "2 representatives"),
        ("screen_sio2.py", ("--code", "{gpaw}"), "ScreeningWorkChain", "target energy (Materials Project, PBE)"),
        ("sio2_vs_random.py", ("--code", "{gpaw}"), "ScreeningWorkChain", "targets recovered after DFT: generator"),
    ],
)
def test_the_sio2_study_script_runs_at_its_smoke_sizes(gpaw_code, tmp_path, script, args, label, last_words):
    check_smoke(script, [arg.format(gpaw=gpaw_code.pk) for arg in args], label, last_words, tmp_path)


def test_the_sio2_study_names_a_bad_arm_before_running_anything(tmp_path):
    result = run_script("sio2_vs_random.py", "mp-559550", "--arm", "both", cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and "--arm: expected generator or random, got 'both'" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())
