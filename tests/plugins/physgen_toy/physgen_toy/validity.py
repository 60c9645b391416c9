"""A validity check: keep the generated molecules whose atoms are neither on top of each other nor spread out.

The contract (:class:`aiida_physgen.screening.validity.ValidityCheck`): a ``name``, the ``kind`` of structure
it judges, a settings dataclass whose ``__post_init__`` checks its fields (the screening names a bad one as
``validity_settings.<field>`` at launch), and ``reasons(batch, settings)``: for every structure of a
:class:`~aiida_physgen.ml.batch.StructureBatch`, ``None`` to keep it or a short reason to reject it (the same
text for every structure that fails alike, so the report can count them). ``check_kind`` refuses, at launch,
a target of a kind the check cannot judge.

Registered in ``pyproject.toml``::

    [project.entry-points."aiida_physgen.validity"]
    toy_compact = "physgen_toy.validity:CompactMolecule"

and chosen with ``validity='toy_compact'`` (``validity_settings={'max_extent': 3.0}``) in the generation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aiida_physgen.screening.validity import ValidityCheck


@dataclasses.dataclass
class CompactSettings:
    """:param min_distance: the closest pair allowed (Å). :param max_extent: the largest distance between two
    atoms of one molecule (Å)."""

    min_distance: float = 0.7
    max_extent: float = 3.0

    def __post_init__(self):
        if not isinstance(self.min_distance, (int, float)) or self.min_distance < 0:
            raise ValueError(f"min_distance: got {self.min_distance!r}, expected a distance in Å ≥ 0")
        if not isinstance(self.max_extent, (int, float)) or self.max_extent <= self.min_distance:
            raise ValueError(f"max_extent: got {self.max_extent!r}, expected a distance in Å above min_distance")


class CompactMolecule(ValidityCheck):
    name = "toy_compact"
    kind = "molecule"
    settings_class = CompactSettings

    def check_kind(self, pbc):
        if pbc is not None and np.any(pbc):
            return f"toy_compact judges molecules; the target has pbc {list(pbc)}"
        return None

    def reasons(self, batch, settings):
        reasons = []
        for atoms in batch:
            distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
            if distances.size and distances.min() < settings.min_distance:
                reasons.append(f"atoms closer than {settings.min_distance:g} Å")
            elif distances.size and distances.max() > settings.max_extent:
                reasons.append(f"spread over more than {settings.max_extent:g} Å")
            else:
                reasons.append(None)
        return reasons
