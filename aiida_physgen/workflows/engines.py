"""Relaxation engines: what the screening workflow needs from a DFT code, and nothing more.

The screening workflow asks an engine for a builder that relaxes one structure (and computes its
DOS when asked), submits it, and reads back the relaxed structure, total energy and DOS. A new
code (VASP through aiida-vasp) plugs in by adding one subclass to :data:`ENGINES`, without
touching the workflow.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from aiida import orm
from aiida.engine import ProcessBuilder

__all__ = ["RelaxationEngine", "GpawEngine", "RelaxationResult", "ENGINES", "get_engine"]


@dataclass
class RelaxationResult:
    """What the screening reads back from a finished relaxation."""

    structure: orm.StructureData
    parameters: orm.Dict
    energy: float
    dos: orm.XyData | None


class RelaxationEngine(abc.ABC):
    """One DFT code as seen by the screening workflow."""

    name: str

    @abc.abstractmethod
    def get_builder(
        self,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        protocol: str,
        overrides: Mapping[str, Any] | None,
        dos: bool,
    ) -> ProcessBuilder:
        """A builder that relaxes ``structure`` (positions) and, when ``dos``, computes its DOS."""

    def get_builders(
        self,
        code: orm.AbstractCode,
        structures: Mapping[str, orm.StructureData],
        protocol: str,
        overrides: Mapping[str, Any] | None,
        dos: bool,
    ) -> dict[str, ProcessBuilder | str]:
        """Builders for a set of structures whose energies will be compared with each other; a structure
        that cannot be computed gets the reason (a string) instead of a builder."""
        builders: dict[str, ProcessBuilder | str] = {}
        for label, structure in structures.items():
            try:
                builders[label] = self.get_builder(code, structure, protocol, overrides, dos)
            except ValueError as error:
                builders[label] = str(error)
        return builders

    @abc.abstractmethod
    def get_result(self, node: orm.ProcessNode) -> RelaxationResult:
        """Read the relaxed structure, total energy (eV) and DOS of a finished, successful process."""

    def validate(self, code: orm.AbstractCode | None, protocol: str) -> str | None:
        """A message when ``code`` or ``protocol`` cannot work with this engine, else ``None``."""
        return None


def _merge(base: dict, extra: Mapping[str, Any]) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class GpawEngine(RelaxationEngine):
    """GPAW through :class:`~aiida_physgen.workflows.gpaw_base.GpawBaseWorkChain` and its protocols."""

    name = "gpaw"

    def get_builder(self, code, structure, protocol, overrides, dos):
        from .gpaw_base import GpawBaseWorkChain

        forced = {"gpaw": {"parameters": {"calculation": "relax", "dos": bool(dos)}}}
        return GpawBaseWorkChain.get_builder_from_protocol(
            code, structure, protocol=protocol, overrides=_merge(dict(overrides or {}), forced)
        )

    def get_builders(self, code, structures, protocol, overrides, dos):
        """Molecules share one cubic box (the largest extent plus the protocol's vacuum on both sides): in
        real-space GPAW the total energy depends on the box and grid, so energies of molecules relaxed in
        boxes of their own size would not be comparable."""
        from .protocols import load_protocol

        overrides = dict(overrides or {})
        molecules = [s for s in structures.values() if not any(s.pbc)]
        if molecules and len(molecules) == len(structures) and "box" not in overrides:
            vacuum = load_protocol("gpaw", protocol, overrides, variant="molecule").get("vacuum") or 0.0
            extent = max(float(np.ptp(s.get_ase().positions, axis=0).max()) for s in molecules)
            # rounded up, so the cube never falls short of the vacuum around the largest molecule
            overrides["box"] = math.ceil((extent + 2 * float(vacuum)) * 100 + 1e-6) / 100
        return super().get_builders(code, structures, protocol, overrides, dos)

    def get_result(self, node):
        parameters = node.outputs.output_parameters
        return RelaxationResult(
            structure=node.outputs.output_structure,
            parameters=parameters,
            energy=float(parameters["energy"]),
            dos=node.outputs.dos if "dos" in node.outputs else None,
        )

    def validate(self, code, protocol):
        from .gpaw_base import GpawBaseWorkChain

        available = GpawBaseWorkChain.get_available_protocols()
        if protocol not in available:
            return f"protocol: unknown protocol {protocol!r}; expected one of {sorted(available)}"
        if code is None:
            return "code: a Code running a Python interpreter with ASE and GPAW is required"
        return None


#: engine name → engine; the ``engine`` input of the screening workflow picks one
ENGINES: dict[str, RelaxationEngine] = {"gpaw": GpawEngine()}


def get_engine(name: str) -> RelaxationEngine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"engine: unknown relaxation engine {name!r}; expected one of {sorted(ENGINES)}") from None
