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
from collections.abc import Mapping

from aiida import orm

from .base import RelaxationEngine, builders_problem, dummy_structure, merge_overrides, protocol_problem
from .spin import initial_moments

__all__ = ["VaspEngine"]


class VaspEngine(RelaxationEngine):
    """VASP through aiida-vasp (``vasp.vasp``), wrapped by ``physgen.vasp.relax``."""

    name = "vasp"
    protocol_file = "vasp"

    def get_builder(self, code, structure, protocol, overrides, dos):
        """A structure with a magnetic element runs spin-polarised (``ispin`` 2) from the Materials Project's
        initial moments (:mod:`~aiida_physgen.engines.spin`), one ``magmom`` per site in the structure's order
        (aiida-vasp writes the POSCAR in that order), unless the overrides' ``incar`` sets ``ispin``."""
        from ..workflows.vasp_relax import VaspRelaxWorkChain

        overrides = dict(overrides or {})
        incar = overrides.get("incar") if isinstance(overrides.get("incar"), Mapping) else {}
        if not any(str(key).lower() == "ispin" for key in incar):
            moments = initial_moments(structure.get_ase().get_chemical_symbols())
            if moments is not None:
                overrides = merge_overrides(overrides, {"incar": {"ispin": 2, "magmom": moments}})
        return VaspRelaxWorkChain.get_builder_from_protocol(code, structure, protocol, overrides, dos=dos)

    def validate(self, code, protocol, overrides=None, dos=True, periodic=None, elements=None):
        """Package, protocol, code plugin, POTCAR family and (with ``elements``) every element's POTCAR, then one
        complete input built from a dummy structure and checked by aiida-vasp's own port validation (an INCAR
        typo such as ``encutt`` is named here). Stores nothing."""
        if importlib.util.find_spec("aiida_vasp") is None:
            return "engine: 'vasp' needs the aiida-vasp package (pip install 'aiida-physgen[vasp]')"
        from ..workflows.vasp_relax import VaspRelaxWorkChain, check_code, check_potentials

        message = protocol_problem(protocol, VaspRelaxWorkChain.get_available_protocols(), overrides)
        if message:
            return message
        message = check_code(code)
        if message:
            return message
        overrides = dict(overrides or {})
        message = check_potentials(
            overrides.get("potential_family"),
            overrides.get("potential_mapping"),
            sorted(set(elements)) if elements else None,
        )
        if message:
            return f"overrides: {message}"
        return builders_problem(self, code, protocol, overrides, dos, periodic)

    def launch_structure(self, crystal, overrides):
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

    def refuses(self, error):
        """aiida-vasp refuses a bad INCAR tag with its own ``InputValidationError``."""
        return type(error).__name__ == "InputValidationError"
