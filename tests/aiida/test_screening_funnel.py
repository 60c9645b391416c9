"""The screening with the cheap-tier funnel, end to end: generation → GFN2-xTB → one per sound basin → GPAW."""

from __future__ import annotations

import io

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import molecule
from tiny_settings import QUICK, TINY

from aiida_physgen.launch import screening_builder
from aiida_physgen.screening.report import compare_screenings, cpu_seconds, print_report, screening_metrics, timing


@pytest.mark.slow
def test_funnel_sends_dft_one_structure_per_sound_cheap_basin(gpaw_code):
    builder = screening_builder(
        [molecule("H2O"), molecule("H2O2"), molecule("H2O")],
        "H2O",
        box=5.0,
        code=gpaw_code,
        seeds=[0],
        settings=TINY,
        count=12,
        n_clusters=6,
        n_components=2,
        relax_overrides=QUICK,
        funnel=True,
        dft_budget=2,
        reuse_relaxations=False,
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    funnel = results["funnel"]
    assert funnel["n_relaxed"] == 6 and funnel["budget"] == 2
    assert 1 <= funnel["n_picked"] <= 2 and funnel["n_picked"] <= funnel["n_sound_basins"]
    assert len(results["cheap_relaxed"]) == 6
    report = results["report"]
    assert report["n_relaxed"] == funnel["n_picked"]  # DFT saw only the picks
    assert report["funnel"]["n_picked"] == funnel["n_picked"]
    for row in report["rows"]:
        assert len(row["cheap_keys"]) == row["count"] and isinstance(row["changed_in_dft"], bool)
    labels = {link.link_label for link in node.base.links.get_outgoing().all()}
    assert {"relax_cheap", "select_for_dft"} <= labels
    for minimum in results["minima"].values():
        assert minimum.base.extras.get("cheap_key") and minimum.base.extras.get("seed") == 0
    out = io.StringIO()
    print_report(node, file=out)
    text = out.getvalue()
    assert f"→ 6 representatives → cheap tier: {funnel['n_failed']} failed" in text
    assert (
        f"found {report['n_unique_minima']} distinct valid H2O isomers with {report['n_relaxed']} DFT relaxations"
        in text
    )
    assert "cheap tier" in text.splitlines()[-1] and timing(node)["cheap_s"] > 0
    levels = screening_metrics(node)
    assert levels["cheap"]["n_structures"] == 6
    assert levels["dft"]["n_dft"] == report["n_relaxed"]
    assert levels["dft"]["n_unique"] == report["n_unique_minima"]

    # the random baseline through the same funnel and budgets, side by side with the generator
    builder.generation.baseline = orm.Bool(True)
    _, random_node = run_get_node(builder)
    assert random_node.is_finished_ok or random_node.exit_status == 405, random_node.exit_message  # 405: none sound
    table = compare_screenings([node, random_node])
    header = table.splitlines()[0]
    assert "generator (xTB)" in header and "generator (DFT)" in header and "random (xTB)" in header
    assert ("random (DFT)" in header) == random_node.is_finished_ok
    # the cost of both arms by stage, a baseline stopped by the funnel included: what isomers-per-CPU compares
    for arm in (node, random_node):
        cpu = cpu_seconds(arm)
        assert cpu["missing"] == [] and cpu["cheap"] > 0 and cpu["counts"]["cheap_relaxations"] == 6
        assert (cpu["dft"] > 0) == (cpu["counts"]["dft_relaxations"] > 0) == arm.is_finished_ok
    assert cpu_seconds(node)["training"] > 0 and cpu_seconds(random_node)["training"] == 0
    assert f"{report['n_unique_minima']}" in table
