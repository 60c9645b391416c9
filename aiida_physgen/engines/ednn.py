"""The EDNN surrogate as a batch engine of the screening's cheap tier (``cheap_engine='ednn'``).

One ``physgen.score_ednn`` calcfunction scores a whole set of porous-graphene sheets with the trained EDNN
(the screening's ``cheap_model``): the structures come back in input order, unmoved (the EDNN knows
lattice occupations, not forces), with ``cheap_energy`` (eV) and ``cheap_failed``; the funnel then sends
DFT one sheet per distinct cheap basin, lowest EDNN energy per atom first. The model is trained by the
domain's pre-step (``physgen.graphene``, :mod:`aiida_physgen.workflows.graphene`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import BatchRelaxationEngine

__all__ = ["EdnnEngine"]


class EdnnEngine(BatchRelaxationEngine):
    """The EDNN through ``physgen.score_ednn``: one process for the whole set, no relaxation."""

    name = "ednn"
    process = "physgen.score_ednn"
    needs_model = True

    def validate(self, settings: Mapping[str, Any] | None, periodic: bool | None = None) -> str | None:
        from ..graphene.surrogate import EdnnScoreSettings
        from ..ml import settings as settings_module

        if periodic is False:
            return (
                "settings: the ednn cheap engine scores porous-graphene sheets, periodic in x and y; these "
                "structures are molecules (choose another cheap_engine)"
            )
        if settings is not None and not isinstance(settings, Mapping):
            return f"settings: got {type(settings).__name__}, expected a dictionary (the ednn engine takes no settings)"
        try:
            settings_module.from_dict(EdnnScoreSettings, dict(settings) if settings else None, where="settings")
        except ValueError as error:
            return f"{error} (the ednn engine takes no settings: it needs only the trained EDNN, given as cheap_model)"
        return None
