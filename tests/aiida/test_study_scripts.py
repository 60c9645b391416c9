"""The LoGAN C5H12O study scripts in ``workchains/`` (the SiO2 ones: test_study_scripts_sio2.py) at their
``--smoke`` sizes (the LoGAN family's and GPAW's smoke protocols: one 20-step model, 2 picks, static single
points), each run as a user runs it (``verdi run`` in a subprocess on the test profile). They check that each
script runs to its last line, not the science: the main job and the domain studies have their own end-to-end
tests (test_main_job, test_graphene_chain, test_crystal_screening, test_amorphous_chain)."""

from __future__ import annotations

import pytest
from study_scripts import check_smoke, run_script

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "script, args, label, last_words",
    [
        ("logan_c5h12o.py", (), "GenerationWorkChain", "2 representatives"),
        ("screen_c5h12o.py", ("--code", "{gpaw}"), "ScreeningWorkChain", "of the 14 known C5H12O isomers"),
        ("c5h12o_vs_random.py", ("--code", "{gpaw}"), "ScreeningWorkChain", "random"),
        ("screen_vasp.py", ("--fake",), "ScreeningWorkChain", "ScreeningWorkChain"),
        ("c5h12o_seeds.py", ("--code", "{gpaw}"), "ScreeningWorkChain", "figure: c5h12o_seeds.png"),
    ],
)
def test_the_study_script_runs_at_its_smoke_sizes(gpaw_code, tmp_path, script, args, label, last_words):
    check_smoke(script, [arg.format(gpaw=gpaw_code.pk) for arg in args], label, last_words, tmp_path)


@pytest.mark.parametrize(
    "args, field", [(("--sets", "abc"), "--sets: expected positive"), (("--arms", "both"), "--arms: expected")]
)
def test_the_seed_study_names_a_bad_option_before_running_anything(tmp_path, args, field):
    result = run_script("c5h12o_seeds.py", *args, cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and field in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())  # nothing written
