"""The README's main job (``workchains/screen_fast.py``) at its smoke sizes, run as a user runs it: ``verdi run`` in
a subprocess, then the screening it made, read back from the profile."""

from __future__ import annotations

import pytest
from study_scripts import outputs_of, run_study

pytestmark = pytest.mark.slow


def test_the_main_job_script_runs_and_reports(gpaw_code, tmp_path):
    node, printed = run_study(
        "screen_fast.py", "--smoke", "--code", str(gpaw_code.pk), label="ScreeningWorkChain", cwd=tmp_path
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    results = outputs_of(node)
    # the smoke sizes: one model of 20 steps, 50 candidates, 2 representatives straight to static GPAW with DOS
    (model,) = results["generation"]["models"].values()
    assert model.family == "logan" and len(results["generation"]["candidates"]) == 50
    assert len(results["generation"]["representatives"]) == 2 and "funnel" not in results
    assert results["report"]["n_relaxed"] == 2 and set(results["dos"]) == set(results["minima"])
    # what the user reads: the node, the report table and its figures in screening_<pk>/
    assert f"ScreeningWorkChain<{node.pk}> finished with exit status 0" in printed
    assert "C5H12O" in printed and "of the 14 known C5H12O isomers" in printed
    figures = tmp_path / f"screening_{node.pk}"
    assert {"pca_clusters.png", "energy_ranking.png", "dos.png"} <= {path.name for path in figures.iterdir()}
