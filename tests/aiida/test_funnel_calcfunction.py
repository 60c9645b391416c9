"""``physgen.select_for_dft`` on the test profile."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common.links import LinkType

from aiida_physgen.calculations.funnel import select_for_dft
from aiida_physgen.data.structure_set import StructureSet


def test_picks_are_labelled_structures_with_the_funnel_counts(cheap_batch):
    relaxed = StructureSet(cheap_batch([-10.0, -9.9, -10.5, -11.0, np.nan], failed=[0, 0, 0, 0, 1]))
    outputs, node = select_for_dft.run_get_node(relaxed=relaxed, budget=orm.Int(5))
    assert node.is_finished_ok, node.exit_message
    assert sorted(outputs["structures"]) == ["basin_00", "basin_01"]
    first = outputs["structures"]["basin_00"]
    assert first.label == "basin_00" and first.get_formula() == "C2H6O"
    assert first.base.extras.get("cheap_energy") == -10.5 and first.base.extras.get("cheap_key")
    funnel = outputs["funnel"]
    assert funnel["n_picked"] == 2 and funnel["n_failed"] == 1 and funnel["budget"] == 5
    assert funnel["picked"] == {"basin_00": 2, "basin_01": 0}
    assert "cheap tier: 5 relaxed, 1 failed" in " ".join(log.message for log in orm.Log.collection.get_logs_for(node))


def test_nothing_sound_is_340_without_outputs(cheap_batch):
    relaxed = StructureSet(cheap_batch([np.nan] * 5, failed=[1] * 5))
    outputs, node = select_for_dft.run_get_node(relaxed=relaxed, budget=orm.Int(3))
    assert node.exit_status == 340 and "5 failed" in node.exit_message
    assert not outputs and node.base.links.get_outgoing(link_type=LinkType.CREATE).all() == []


def test_structures_without_cheap_energies_are_300(cheap_batch):
    batch = cheap_batch([-1.0] * 5)
    del batch.info["cheap_energy"]
    _, node = select_for_dft.run_get_node(relaxed=StructureSet(batch), budget=orm.Int(3))
    assert node.exit_status == 300 and "cheap_energy" in node.exit_message
