"""A third-party batch relaxation engine for aiida-physgen: ASE's EMT potential over a whole structure set.

Lives outside aiida_physgen and is registered only through its own dist-info entry point
(``aiida_physgen.engines``), to show that an engine plugs into the screening without a change to
the package: one module, one entry point.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.engines import BatchRelaxationEngine
from aiida_physgen.ml.batch import StructureBatch

EMT_ELEMENTS = {"H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"}


@calcfunction
def relax_emt(structures: StructureSet, settings: orm.Dict | None = None):
    """Relax every structure with EMT and BFGS; ``cheap_energy`` and ``cheap_failed`` info arrays."""
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    fmax = float((settings.get_dict() if settings is not None else {}).get("fmax", 0.1))
    relaxed, energies = [], []
    for atoms in structures.get_batch():
        atoms.calc = EMT()
        BFGS(atoms, logfile=None).run(fmax=fmax, steps=100)
        energies.append(float(atoms.get_potential_energy()))
        atoms.calc = None
        relaxed.append(atoms)
    batch = structures.get_batch()
    out = StructureBatch.from_atoms(relaxed)
    out.info.update(batch.info)
    out.info["cheap_energy"] = np.array(energies)
    out.info["cheap_failed"] = np.zeros(len(energies), dtype=np.int64)
    return {"relaxed": StructureSet(out)}


class EmtEngine(BatchRelaxationEngine):
    name = "toy_emt"

    def validate(self, settings, periodic=None):
        unknown = sorted(set(settings or {}) - {"fmax"})
        if unknown:
            return f"settings.{unknown[0]}: unknown setting; expected 'fmax'"
        return None

    def get_process(self, structures, settings):
        inputs = {"structures": structures}
        if settings is not None:
            inputs["settings"] = settings
        return relax_emt, inputs
