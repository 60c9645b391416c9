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

    def validate(
        self,
        code: orm.AbstractCode | None,
        protocol: str,
        overrides: Mapping[str, Any] | None = None,
        dos: bool = True,
        periodic: bool | None = None,
    ) -> str | None:
        """A message when ``code``, ``protocol`` or ``overrides`` cannot work with this engine, else ``None``.

        Meant for launch-time validators: fast, stores no node, opens no transport. ``periodic`` says which kind
        of structure will be relaxed (``True`` crystals, ``False`` molecules, ``None`` either), so that the
        overrides are checked against the inputs the engine will really build. The message starts with the
        name of the argument at fault (``code``, ``protocol``, ``overrides``).
        """
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
            # a structure with non-finite positions is refused by get_builder (naming it), not here
            extents = [float(np.ptp(s.get_ase().positions, axis=0).max()) for s in molecules]
            extent = max((e for e in extents if math.isfinite(e)), default=0.0)
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

    def validate(self, code, protocol, overrides=None, dos=True, periodic=None):
        """Check protocol and code, then build one complete ``GpawBaseWorkChain`` input from a small dummy
        structure (a molecule, a crystal, or both when ``periodic`` is ``None``) with ``overrides`` merged and
        run the port validation of the work chain and of ``GpawCalculation`` on it, without storing anything."""
        from ..calculations.codes import check_python_code
        from .gpaw_base import GpawBaseWorkChain

        available = GpawBaseWorkChain.get_available_protocols()
        if protocol not in available:
            return f"protocol: unknown protocol {protocol!r}; expected one of {sorted(available)}"
        if code is None:
            return "code: a Code running a Python interpreter with ASE and GPAW is required"
        if not isinstance(code, orm.AbstractCode):
            return f"code: got {type(code).__name__}, expected an AiiDA Code"
        problem = check_python_code(code)
        if problem:
            return problem
        if overrides is not None and not isinstance(overrides, Mapping):
            return f"overrides: got {type(overrides).__name__}, expected a dictionary of protocol inputs"
        overrides = dict(overrides or {})
        kinds = [False, True] if periodic is None else [bool(periodic)]
        for crystal in kinds:
            what = "crystal" if crystal else "molecule"
            structure = _dummy_structure(crystal, _natoms_for(overrides))
            try:
                builder = self.get_builder(code, structure, protocol, overrides, dos)
            except (ValueError, TypeError) as error:
                return f"overrides: for a {what}: {error}"
            problem = _validate_builder(builder)
            if problem:
                return f"overrides: for a {what}: {problem}"
        return None


def _natoms_for(overrides: Mapping[str, Any]) -> int:
    """Atoms in the dummy structure: as many as a per-atom ``magmoms`` list in the overrides has, else 2."""
    gpaw = overrides.get("gpaw")
    parameters = gpaw.get("parameters") if isinstance(gpaw, Mapping) else None
    magmoms = parameters.get("magmoms") if isinstance(parameters, Mapping) else None
    if isinstance(magmoms, (list, tuple)) and 0 < len(magmoms) <= 1000:
        return len(magmoms)
    return 2


def _dummy_structure(crystal: bool, natoms: int) -> orm.StructureData:
    """An unstored chain of ``natoms`` atoms: H in a box (molecule) or Si in a periodic cell (crystal)."""
    from ase import Atoms

    if crystal:
        atoms = Atoms(f"Si{natoms}", positions=[[2.35 * i, 0.0, 0.0] for i in range(natoms)],
                      cell=[2.35 * natoms, 4.0, 4.0], pbc=True)
    else:
        atoms = Atoms(f"H{natoms}", positions=[[0.9 * i, 0.0, 0.0] for i in range(natoms)], pbc=False)
        atoms.center(vacuum=2.0)
    return orm.StructureData(ase=atoms)


def _validate_builder(builder: ProcessBuilder) -> str | None:
    """Run the port validation of the builder's process on its inputs (defaults filled in), storing nothing."""
    spec = builder._process_class.spec()
    inputs = spec.inputs.pre_process(builder._inputs(prune=True))
    error = spec.inputs.validate(inputs)
    return None if error is None else error.message


#: engine name → engine; the ``engine`` input of the screening workflow picks one
ENGINES: dict[str, RelaxationEngine] = {"gpaw": GpawEngine()}


def get_engine(name: str) -> RelaxationEngine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"engine: unknown relaxation engine {name!r}; expected one of {sorted(ENGINES)}") from None
