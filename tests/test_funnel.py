"""The funnel's last stage: one structure per distinct sound cheap basin, lowest energy first, within budget."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_physgen.screening.funnel import pick_for_dft
from aiida_physgen.screening.metrics import charge_separated


def test_one_per_sound_basin_lowest_energy_first(cheap_batch):
    # ethanol ×2 (-10.0, -9.9), ether (-10.5), fragments (-11: lowest but not sound), a failed ethanol
    choice = pick_for_dft(cheap_batch([-10.0, -9.9, -10.5, -11.0, np.nan], failed=[0, 0, 0, 0, 1]), budget=5)
    assert choice.chosen == [2, 0]  # ether, then the lower ethanol; the fragments are not sound
    assert choice.counts == {
        "n_relaxed": 5,
        "n_failed": 1,
        "n_sound": 3,
        "n_basins": 3,
        "n_sound_basins": 2,
        "n_picked": 2,
    }
    assert choice.keys[4] is None and choice.keys[0] == choice.keys[1] != choice.keys[2]
    fragments = [row for row in choice.basins if not row["sound"]]
    assert len(fragments) == 1 and "." in fragments[0]["key"] and not fragments[0]["picked"]


def test_budget_limits_the_picks(cheap_batch):
    choice = pick_for_dft(cheap_batch([-10.0, -9.9, -10.5, -11.0, -9.0]), budget=1)
    assert choice.chosen == [2] and choice.counts["n_picked"] == 1 and choice.counts["n_sound_basins"] == 2


@pytest.mark.parametrize("budget", [0, -1, 1.5, True])
def test_bad_budget_is_named(budget, cheap_batch):
    with pytest.raises(ValueError, match="budget"):
        pick_for_dft(cheap_batch([-1.0] * 5), budget)


def test_missing_cheap_energies_are_named(cheap_batch):
    batch = cheap_batch([-1.0] * 5)
    del batch.info["cheap_energy"]
    with pytest.raises(ValueError, match="cheap_energy"):
        pick_for_dft(batch, 2)


def test_charge_separation():
    assert charge_separated("[CH2-]CCC(C)[OH2+]") and charge_separated("C[O-].[H+]")
    assert not charge_separated("C[O-]", charge=-1)  # one charge, as the total charge asks
    assert not charge_separated("CCCCCO") and not charge_separated(None)
