"""The cheap tier as a batch relaxation engine: GFN2-xTB (``tblite``) for molecules, CHGNet for crystals.

One ``physgen.relax_cheap`` calcfunction relaxes the whole set (:mod:`aiida_physgen.screening.cheap_relax` holds
the method, its settings and why they are the defaults). Which method a structure gets follows
``settings.method``: ``auto`` gives non-periodic structures to GFN2-xTB and periodic ones to CHGNet.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from .base import BatchRelaxationEngine, batch_settings

__all__ = ["CheapEngine", "CHEAP_PACKAGES"]

#: periodic? → (the package the method needs, the method's name); both are the ``cheap`` extra
CHEAP_PACKAGES = {False: ("tblite", "GFN2-xTB"), True: ("chgnet", "CHGNet")}


class CheapEngine(BatchRelaxationEngine):
    """GFN2-xTB / CHGNet through ``physgen.relax_cheap``, one process for the whole set."""

    name = "cheap"
    process = "physgen.relax_cheap"

    def validate(self, settings: Mapping[str, Any] | None, periodic: bool | None = None) -> str | None:
        from ..screening.cheap_relax import CheapSettings

        try:
            values = batch_settings(settings, CheapSettings.from_dict, "a dictionary of cheap-tier settings")
        except ValueError as error:
            return str(error)
        needed = {periodic} if periodic is not None else {False, True}
        if values.method != "auto":
            needed = {values.method == "chgnet"}
            if periodic is not None and periodic != (values.method == "chgnet"):
                kind, other = ("crystals", "gfn2-xtb") if values.method == "chgnet" else ("molecules", "chgnet")
                return (
                    f"settings.method: {values.method!r} relaxes {kind} only, and these structures are "
                    f"{'periodic' if periodic else 'molecules'}; use 'auto' (or {other!r})"
                )
        for flag in sorted(needed):
            package, method = CHEAP_PACKAGES[flag]
            if importlib.util.find_spec(package) is None:
                return (
                    f"settings.method: the cheap tier relaxes these structures with {method}, which needs the "
                    f"{package!r} package (pip install 'aiida-physgen[cheap]')"
                )
        return None
