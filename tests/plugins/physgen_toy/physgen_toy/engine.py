"""A cheap (batch) engine: ASE's EMT potential and BFGS over a whole structure set, in one calcfunction.

The contract (:class:`aiida_physgen.engines.BatchRelaxationEngine`): ``validate`` checks the settings at
launch (a message naming ``settings.<field>``, or ``None``), ``get_process`` names the process function
and its inputs, and the process returns one ``physgen.structure_set`` output ``relaxed``: the structures in
input order with the info arrays ``cheap_energy`` (eV, NaN when failed) and ``cheap_failed`` (1/0). The
screening's funnel then keeps one structure per distinct sound basin for DFT.

Registered in ``pyproject.toml``::

    [project.entry-points."aiida_physgen.engines"]
    toy_emt = "physgen_toy.engine:EmtEngine"

and chosen with ``cheap_engine='toy_emt'`` (``cheap_settings={'fmax': 0.1}``).
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.engines import BatchRelaxationEngine
from aiida_physgen.ml.batch import StructureBatch

#: the settings and their defaults (written once, here)
DEFAULTS = {"fmax": 0.1, "max_steps": 100}


@calcfunction
def relax_emt(structures: StructureSet, settings: orm.Dict | None = None):
    """Relax every structure with EMT and BFGS; output ``relaxed`` with ``cheap_energy`` and ``cheap_failed``.

    A structure whose relaxation raises (an element EMT has no parameters for, ...) keeps its input positions,
    with energy NaN and ``cheap_failed`` 1.
    """
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    values = {**DEFAULTS, **(settings.get_dict() if settings is not None else {})}
    batch = structures.get_batch()
    relaxed, energies, failed = [], [], []
    for atoms in batch:
        atoms.calc = EMT()
        try:
            BFGS(atoms, logfile=None).run(fmax=values["fmax"], steps=values["max_steps"])
            energy = float(atoms.get_potential_energy())
        except Exception:  # noqa: BLE001 - one bad structure never stops the others
            energy = float("nan")
        atoms.calc = None
        relaxed.append(atoms)
        energies.append(energy)
        failed.append(int(not np.isfinite(energy)))
    out = StructureBatch.from_atoms(relaxed)
    out.info.update(batch.info)  # per-structure provenance (model_index, ...) follows the structures
    out.info["cheap_energy"] = np.array(energies)
    out.info["cheap_failed"] = np.array(failed, dtype=np.int64)
    node = StructureSet(out)
    for key in ("model_uuids", "model_labels"):  # which model made each structure still resolves
        if key in structures.base.attributes.keys():
            node.base.attributes.set(key, structures.base.attributes.get(key))
    return {"relaxed": node}


class EmtEngine(BatchRelaxationEngine):
    """EMT + BFGS for molecules and crystals of EMT's elements (H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au)."""

    name = "toy_emt"

    def validate(self, settings, periodic=None):
        if settings is not None and not isinstance(settings, dict):
            return f"settings: got {type(settings).__name__}, expected a dictionary"
        unknown = sorted(set(settings or {}) - set(DEFAULTS))
        if unknown:
            return f"settings.{unknown[0]}: unknown setting; expected some of {sorted(DEFAULTS)}"
        values = {**DEFAULTS, **(settings or {})}
        if not isinstance(values["fmax"], (int, float)) or values["fmax"] <= 0:
            return f"settings.fmax: got {values['fmax']!r}, expected a positive force in eV/Å"
        if not isinstance(values["max_steps"], int) or values["max_steps"] < 1:
            return f"settings.max_steps: got {values['max_steps']!r}, expected a positive number of steps"
        return None

    def get_process(self, structures, settings, model=None):
        inputs = {"structures": structures}
        if settings is not None:
            inputs["settings"] = settings
        return relax_emt, inputs
