"""The cheap-tier funnel: from many cheaply relaxed candidates to the few worth a DFT relaxation.

DFT is the scarce resource. The screening therefore relaxes many more k-means representatives than
it can afford to treat with DFT using a cheap, real method (GFN2-xTB for molecules, CHGNet for
crystals), groups the results into basins at that level (:func:`aiida_physgen.screening.basins.deduplicate`:
canonical SMILES for molecules, StructureMatcher for crystals), throws away what is not a sound
structure, and hands DFT one structure per distinct sound basin, lowest cheap energy first, up to
the budget. Every stage's count is kept, so the report can say where candidates were lost.

A molecule is *sound* when RDKit assigns it bond orders (valid), it is one bonded fragment
(connected) and it carries no formal charges (no charge separation such as ``[CH2-]…[OH+]``).
Crystals are always sound here (their checks are the min-distance filter before and DFT after).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ml.batch import StructureBatch
from .basins import deduplicate
from .metrics import charge_separated

__all__ = ["FunnelChoice", "pick_for_dft", "ENERGY_KEY", "FAILED_KEY"]

#: info arrays written by the cheap relaxation (:mod:`aiida_physgen.screening.cheap_relax`)
ENERGY_KEY = "cheap_energy"
FAILED_KEY = "cheap_failed"


@dataclass
class FunnelChoice:
    """What the funnel kept.

    :param chosen: indices (into the batch) of the structures sent to DFT, one per picked basin,
        lowest cheap energy per atom first.
    :param keys: the basin key of every structure of the batch (``None`` for failed relaxations).
    :param basins: one row per cheap basin: ``key``, ``kind``, ``formula``, ``energy``,
        ``energy_per_atom``, ``count``, ``members`` (batch indices), ``representative``, ``sound``, ``picked``.
    :param counts: ``n_relaxed``, ``n_failed``, ``n_sound``, ``n_basins``, ``n_sound_basins``, ``n_picked``.
    """

    chosen: list[int]
    keys: list[str | None]
    basins: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def pick_for_dft(batch: StructureBatch, budget: int) -> FunnelChoice:
    """One structure per distinct sound cheap basin, lowest cheap energy per atom first, at most ``budget``.

    :param batch: cheaply relaxed structures with the info arrays ``cheap_energy`` (eV) and ``cheap_failed``.
    :param budget: how many DFT relaxations may be spent.
    :raises ValueError: naming ``budget`` or the missing info array.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget: got {budget!r}, expected a positive number of DFT relaxations")
    for key in (ENERGY_KEY, FAILED_KEY):
        if key not in batch.info:
            raise ValueError(f"structures: no {key!r} info array; expected the output of the cheap relaxation")
    energies = np.asarray(batch.info[ENERGY_KEY], dtype=float)
    failed = np.asarray(batch.info[FAILED_KEY]).astype(bool) | ~np.isfinite(energies)
    ok = np.flatnonzero(~failed)
    keys: list[str | None] = [None] * len(batch)
    rows: list[dict[str, Any]] = []
    chosen: list[int] = []
    if len(ok):
        basins = deduplicate([batch[int(i)] for i in ok], energies[ok].tolist())
        for basin in basins:
            members = [int(ok[m]) for m in basin.members]
            for member in members:
                keys[member] = basin.key
            sound = bool(
                basin.valid and basin.connected and not (basin.kind == "molecule" and charge_separated(basin.key))
            )
            picked = sound and len(chosen) < budget
            if picked:
                chosen.append(int(ok[basin.representative]))
            rows.append(
                {
                    "key": basin.key,
                    "kind": basin.kind,
                    "formula": basin.formula,
                    "energy": float(basin.energy),
                    "energy_per_atom": float(basin.energy_per_atom),
                    "count": int(basin.count),
                    "members": members,
                    "representative": int(ok[basin.representative]),
                    "sound": sound,
                    "picked": picked,
                }
            )
    sound_members = sum(row["count"] for row in rows if row["sound"])
    counts = {
        "n_relaxed": int(len(batch)),
        "n_failed": int(failed.sum()),
        "n_sound": int(sound_members),
        "n_basins": len(rows),
        "n_sound_basins": sum(row["sound"] for row in rows),
        "n_picked": len(chosen),
    }
    return FunnelChoice(chosen=chosen, keys=keys, basins=rows, counts=counts)
