"""VASP as a relaxation engine: one :class:`~aiida_physgen.workflows.vasp_relax.VaspRelaxWorkChain` per structure
(aiida-vasp's ``vasp.vasp`` inside, with its restart handlers), built from the VASP protocols (``fast``,
``balanced``, ``stringent``). Needs the extra ``pip install 'aiida-physgen[vasp]'``.

The POTCAR family is an input like any other protocol value (``relax_overrides={'potential_family': 'PBE.54',
'potential_mapping': {'Si': 'Si_pv'}}``); an element maps to the POTCAR of its own name unless the mapping says
otherwise. A molecule is relaxed in a periodic box with the protocol's vacuum at the Gamma point; its relaxed
structure comes back non-periodic, so the screening compares it as a molecule.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from aiida import orm

from .base import RelaxationEngine, dummy_structure, validate_builder

__all__ = ["VaspEngine"]


class VaspEngine(RelaxationEngine):
    """VASP through aiida-vasp (``vasp.vasp``), wrapped by ``physgen.vasp.relax``."""

    name = "vasp"
    protocol_file = "vasp"

    def get_builder(self, code, structure, protocol, overrides, dos):
        from ..workflows.vasp_relax import VaspRelaxWorkChain

        return VaspRelaxWorkChain.get_builder_from_protocol(code, structure, protocol, overrides, dos=dos)

    def validate(self, code, protocol, overrides=None, dos=True, periodic=None, elements=None):
        """Package, protocol, code plugin, POTCAR family and (with ``elements``) every element's POTCAR, then one
        complete input built from a dummy structure and checked by aiida-vasp's own port validation (an INCAR
        typo such as ``encutt`` is named here). Stores nothing."""
        if importlib.util.find_spec("aiida_vasp") is None:
            return "engine: 'vasp' needs the aiida-vasp package (pip install 'aiida-physgen[vasp]')"
        from ..workflows.vasp_relax import VaspRelaxWorkChain, check_code, check_potentials

        available = VaspRelaxWorkChain.get_available_protocols()
        if protocol not in available:
            return f"protocol: unknown protocol {protocol!r}; expected one of {sorted(available)}"
        message = check_code(code)
        if message:
            return message
        if overrides is not None and not isinstance(overrides, Mapping):
            return f"overrides: got {type(overrides).__name__}, expected a dictionary of protocol inputs"
        overrides = dict(overrides or {})
        message = check_potentials(overrides.get("potential_family"), overrides.get("potential_mapping"),
                                   sorted(set(elements)) if elements else None)
        if message:
            return f"overrides: {message}"
        for crystal in ([False, True] if periodic is None else [bool(periodic)]):
            what = "crystal" if crystal else "molecule"
            try:
                builder = self.get_builder(code, _dummy(crystal, overrides), protocol, overrides, dos)
            except (ValueError, TypeError) as error:
                return f"overrides: for a {what}: {error}"
            except Exception as error:  # noqa: BLE001 - aiida-vasp's InputValidationError for INCAR tags
                if type(error).__name__ != "InputValidationError":
                    raise
                return f"overrides: for a {what}: {error}"
            problem = validate_builder(builder)
            if problem:
                return f"overrides: for a {what}: {problem}"
        return None


def _dummy(crystal: bool, overrides: Mapping[str, Any]) -> orm.StructureData:
    """A dummy structure of an element the POTCAR family has, so the builder's checks can run."""
    from aiida_vasp.data.potcar import PotcarData

    structure = dummy_structure(crystal)
    family = overrides.get("potential_family")
    group = PotcarData.get_potcar_group(family) if family else None
    if group is not None:
        element = next((node.element for node in group.nodes), None)
        if element:
            atoms = structure.get_ase()
            atoms.set_chemical_symbols([element] * len(atoms))
            structure = orm.StructureData(ase=atoms)
    return structure
