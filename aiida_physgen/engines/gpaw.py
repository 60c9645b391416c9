"""GPAW as a relaxation engine: one :class:`~aiida_physgen.workflows.gpaw_base.GpawBaseWorkChain` per
structure, built from the GPAW protocols (``fast``, ``balanced``, ``stringent``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm

from .base import RelaxationEngine, builders_problem, dummy_structure, merge_overrides, protocol_problem
from .spin import initial_moments

__all__ = ["GpawEngine"]


class GpawEngine(RelaxationEngine):
    """GPAW through :class:`~aiida_physgen.workflows.gpaw_base.GpawBaseWorkChain` and its protocols."""

    name = "gpaw"
    protocol_file = "gpaw"

    def get_builder(self, code, structure, protocol, overrides, dos):
        """A relaxation, unless the protocol (``smoke``) or the overrides ask for ``calculation: static`` (a single
        point, e.g. the DOS of a porous-graphene sheet whose atoms stay on the lattice): the structure then comes back
        unmoved. A structure with a magnetic element runs spin-polarised from the Materials Project's initial moments
        (:mod:`~aiida_physgen.engines.spin`) unless the overrides set ``spinpol``."""
        from ..workflows.gpaw_base import GpawBaseWorkChain
        from ..workflows.protocols import load_protocol

        asked = _parameters(load_protocol("gpaw", protocol, overrides)).get("calculation")
        calculation = "static" if asked == "static" else "relax"
        forced = {"gpaw": {"parameters": {"calculation": calculation, "dos": bool(dos)}}}
        if "spinpol" not in _parameters(overrides):  # the user's choice wins; else by composition (engines.spin)
            moments = initial_moments(structure.get_ase().get_chemical_symbols())
            if moments is not None:
                forced["gpaw"]["parameters"].update(spinpol=True, magmoms=moments)
        return GpawBaseWorkChain.get_builder_from_protocol(
            code, structure, protocol=protocol, overrides=merge_overrides(dict(overrides or {}), forced)
        )

    def get_result(self, node):
        """As every relaxation; a static calculation has no ``output_structure``: its structure is the one its last
        GPAW calculation computed (a molecule: centred in its box)."""
        from .base import RelaxationResult

        if "output_structure" in node.outputs:
            return super().get_result(node)
        parameters = node.outputs.output_parameters
        jobs = sorted((child for child in node.called if isinstance(child, orm.CalcJobNode)), key=lambda c: c.ctime)
        structure = jobs[-1].inputs.structure if jobs else node.inputs.gpaw.structure
        return RelaxationResult(
            structure=structure,
            parameters=parameters,
            energy=float(parameters["energy"]),
            dos=node.outputs.dos if "dos" in node.outputs else None,
        )

    def shared_overrides(self, structures, protocol, overrides):
        """Molecules share one cubic box (the largest extent plus the protocol's vacuum on both sides): in
        real-space GPAW the total energy depends on the box and grid, so energies of molecules relaxed in
        boxes of their own size would not be comparable."""
        from ..workflows.protocols import load_protocol

        overrides = dict(overrides or {})
        molecules = [s for s in structures.values() if not any(s.pbc)]
        if molecules and len(molecules) == len(structures) and "box" not in overrides:
            vacuum = load_protocol("gpaw", protocol, overrides, variant="molecule").get("vacuum") or 0.0
            # a structure with non-finite positions is refused by get_builder (naming it), not here
            extents = [float(np.ptp(s.get_ase().positions, axis=0).max()) for s in molecules]
            extent = max((e for e in extents if math.isfinite(e)), default=0.0)
            # rounded up, so the cube never falls short of the vacuum around the largest molecule
            overrides["box"] = math.ceil((extent + 2 * float(vacuum)) * 100 + 1e-6) / 100
        return overrides

    def default_code(self):
        from ..calculations.codes import gpaw_code

        return gpaw_code()

    def validate(self, code, protocol, overrides=None, dos=True, periodic=None, elements=None):
        """Check protocol and code, then build one complete ``GpawBaseWorkChain`` input from a small dummy
        structure (a molecule, a crystal, or both when ``periodic`` is ``None``) with ``overrides`` merged and
        run the port validation of the work chain and of ``GpawCalculation`` on it, without storing anything."""
        from ..calculations.codes import check_python_code
        from ..workflows.gpaw_base import GpawBaseWorkChain

        problem = protocol_problem(protocol, GpawBaseWorkChain.get_available_protocols(), overrides)
        if problem:
            return problem
        if code is None:
            return "code: a Code running a Python interpreter with ASE and GPAW is required"
        if not isinstance(code, orm.AbstractCode):
            return f"code: got {type(code).__name__}, expected an AiiDA Code"
        problem = check_python_code(code)
        if problem:
            return problem
        return builders_problem(self, code, protocol, dict(overrides or {}), dos, periodic)

    def launch_structure(self, crystal, overrides):
        """As many atoms as a per-atom ``magmoms`` list in the overrides has (else 2)."""
        return dummy_structure(crystal, _natoms_for(overrides))


def _parameters(overrides: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``gpaw.parameters`` of the overrides (empty when there are none)."""
    gpaw = overrides.get("gpaw") if isinstance(overrides, Mapping) else None
    parameters = gpaw.get("parameters") if isinstance(gpaw, Mapping) else None
    return parameters if isinstance(parameters, Mapping) else {}


def _natoms_for(overrides: Mapping[str, Any]) -> int:
    """Atoms in the dummy structure: as many as a per-atom ``magmoms`` list in the overrides has, else 2."""
    magmoms = _parameters(overrides).get("magmoms")
    if isinstance(magmoms, (list, tuple)) and 0 < len(magmoms) <= 1000:
        return len(magmoms)
    return 2
