"""``physgen.relax_lammps``: the LAMMPS cheap tier, one calcfunction over a whole structure set.

Empirical potentials run by LAMMPS (:func:`aiida_physgen.lammps.run_structures`, one instance for the set)
relax every structure with the cell fixed, or only score it (``relax: false``). The potentials are those the
domains already use, chosen by name and by the element of the structures:

* silicon (:mod:`aiida_physgen.amorphous.md`, :data:`~aiida_physgen.amorphous.md.POTENTIALS`): ``sw_vink``
  (Stillinger–Weber as re-fitted to a-Si by Vink et al., the melt-quench MD's default), ``sw``, ``tersoff``;
* carbon (:mod:`aiida_physgen.graphene.reference_energy`, :data:`~aiida_physgen.graphene.reference_energy.METHODS`):
  ``tersoff`` (Tersoff 1988 carbon, the graphene labels' potential), ``tersoff_lindsay_broido``.

One process relaxes many structures and returns one ``physgen.structure_set`` with the energies as info
arrays, not one node per structure; the engine :class:`aiida_physgen.engines.lammps.LammpsEngine` (``lammps``)
makes it a cheap tier of the screening.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..ml.batch import StructureBatch
from .cheap import EXIT_CODES  # the cheap tier's exit codes: the same failures mean the same here
from .functions import declare_exit_codes, keep_provenance_attributes, report_to_process

__all__ = ["relax_lammps", "LammpsSettings", "EXIT_CODES", "potentials", "potential_commands", "element_of"]


def potentials() -> dict[str, dict[str, str]]:
    """The potentials by element: ``{element: {name: description}}``."""
    from ..amorphous import md
    from ..graphene import reference_energy

    return {
        "Si": {name: md.potential_description(name) for name in md.POTENTIALS},
        "C": {name: description for name, (_, description) in reference_energy.METHODS.items()},
    }


def potential_commands(potential: str, element: str, directory: Path) -> list[str]:
    """The LAMMPS ``pair_style``/``pair_coeff`` commands of ``potential`` for ``element`` (a derived potential
    file, SW-Vink's, is written into ``directory``)."""
    if element == "Si":
        from ..amorphous.md import pair_commands

        return pair_commands(potential, directory)
    from ..graphene.reference_energy import potential_file

    return ["pair_style tersoff", f"pair_coeff * * {potential_file(potential)} C"]


def _names() -> list[str]:
    return sorted({name for table in potentials().values() for name in table})


@dataclasses.dataclass
class LammpsSettings:
    """Settings of the LAMMPS cheap tier; each default is written here only.

    :param potential: the potential by name (``sw_vink``, ``sw``, ``tersoff``, ``tersoff_lindsay_broido``;
        which element it is for follows the structures). The default is the melt-quench MD's potential.
    :param relax: relax the positions (conjugate gradients, cell fixed); ``false`` only scores the structures.
    :param fmax: relaxation criterion: the largest force on an atom, eV/Å.
    :param max_steps: conjugate-gradient iterations at most per structure.
    """

    potential: str = "sw_vink"
    relax: bool = True
    fmax: float = 0.05
    max_steps: int = 1000

    def __post_init__(self) -> None:
        names = _names()
        if not isinstance(self.potential, str) or self.potential not in names:
            raise ValueError(f"potential: got {self.potential!r}, expected one of {names}")
        if not isinstance(self.relax, (bool, np.bool_)):
            raise ValueError(f"relax: got {self.relax!r}, expected true (relax) or false (single points only)")
        self.relax = bool(self.relax)
        value = self.fmax
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"fmax: got {value!r}, expected a positive force in eV/Å")
        self.fmax = float(value)
        value = self.max_steps
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"max_steps: got {value!r}, expected a positive number of minimiser iterations")
        self.max_steps = int(value)

    @classmethod
    def from_dict(cls, values: dict | None) -> LammpsSettings:
        """Settings from a plain dictionary; a bad value raises ``ValueError`` starting ``settings.<field>``."""
        return settings_module.from_dict_named(cls, values)


def element_of(batch: StructureBatch, potential: str) -> str:
    """The one element of ``batch`` that ``potential`` has parameters for.

    :raises ValueError: naming ``structures`` (several elements) or ``settings.potential`` (no parameters for
        that element).
    """
    from ase.data import chemical_symbols

    present = sorted({chemical_symbols[int(z)] for z in np.unique(batch.numbers)})
    if len(present) != 1:
        raise ValueError(f"structures: hold {present}; the LAMMPS potentials here are for one element at a time")
    element = present[0]
    table = potentials()
    if potential not in table.get(element, {}):
        having = sorted(e for e, names in table.items() if potential in names)
        raise ValueError(
            f"settings.potential: {potential!r} is a potential for {having}, the structures are "
            f"{element}; expected one of {sorted(table.get(element, {}))}"
        )
    return element


@calcfunction
def relax_lammps(structures: StructureSet, settings: orm.Dict | None = None):
    """Relax (or score) every structure of a set with an empirical LAMMPS potential, the cell fixed.

    Output ``relaxed`` (``physgen.structure_set``) has the structures in input order, the input's info
    arrays, and ``cheap_energy`` (eV, NaN when failed), ``cheap_fmax`` (the largest force on an atom at the
    end, eV/Å), ``cheap_steps``, ``cheap_converged`` (1/0: ``cheap_fmax`` within ``fmax``; single points
    count as converged) and ``cheap_failed`` (1/0). A failed structure keeps its input positions and never
    stops the others; when every structure fails the process ends on ``ERROR_ALL_FAILED`` with no outputs.
    The input set's ``model_uuids``, ``model_labels`` and ``descriptor`` attributes are copied; the settings,
    the potential's description and the counts are in the attributes ``cheap_settings``, ``potential``,
    ``n_converged`` and ``n_failed``.

    :param structures: bulk cells or sheets (periodic along a and b) of one element.
    :param settings: potential, relax, fmax, max_steps (:class:`LammpsSettings`).
    """
    from ..lammps import load_lammps, run_structures

    try:
        values = LammpsSettings.from_dict(settings.get_dict() if settings is not None else None)
        batch = structures.get_batch()
        if len(batch) == 0:
            raise ValueError("structures: the set is empty; expected at least one structure")
        element = element_of(batch, values.potential)
        load_lammps()
    except (ValueError, ImportError) as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    what = "relaxing" if values.relax else "scoring"
    description = potentials()[element][values.potential]
    report_to_process(
        f"{what} {len(batch)} structure(s) with {values.potential} ({element})"
        + (f": conjugate gradients to {values.fmax} eV/Å, at most {values.max_steps} steps" if values.relax else "")
    )
    every = max(1, len(batch) // 10)

    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            report_to_process(f"{done}/{total} done")

    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="physgen-lammps-") as directory:
            results = run_structures(
                batch,
                [element],
                potential_commands(values.potential, element, Path(directory)),
                relax=values.relax,
                fmax=values.fmax,
                max_steps=values.max_steps,
                progress=progress,
            )
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    seconds = time.perf_counter() - start
    converged = ~results.failed & (results.fmax <= values.fmax * (1 + 1e-6) if values.relax else True)
    n_failed, n_converged = int(results.failed.sum()), int(np.sum(converged))
    report_to_process(
        f"{len(batch)} structure(s): {n_converged} converged, {len(batch) - n_converged - n_failed} not "
        f"converged, {n_failed} failed in {seconds:.1f} s"
    )
    for index, error in list(results.errors.items())[:10]:
        report_to_process(f"structure {index} failed: {error}")
    if n_failed == len(batch):
        return EXIT_CODES["ERROR_ALL_FAILED"].format(
            message=f"all {len(batch)} structure(s) failed; the first error: {next(iter(results.errors.values()))}"
        )
    info = dict(batch.info)
    info.update(
        {
            "cheap_energy": results.energies,
            "cheap_fmax": results.fmax,
            "cheap_steps": results.steps,
            "cheap_converged": converged.astype(np.int64),
            "cheap_failed": results.failed.astype(np.int64),
        }
    )
    relaxed = StructureBatch(
        numbers=batch.numbers.copy(),
        positions=results.positions,
        n_atoms=batch.n_atoms.copy(),
        cells=batch.cells.copy(),
        pbc=batch.pbc.copy(),
        info=info,
    )
    output = StructureSet(relaxed)
    keep_provenance_attributes(output, structures)
    output.base.attributes.set_many(
        {
            "cheap_settings": settings_module.to_dict(values),
            "potential": description,
            "n_converged": n_converged,
            "n_failed": n_failed,
        }
    )
    return {"relaxed": output}


declare_exit_codes(relax_lammps, ["ERROR_INVALID_INPUT", "ERROR_ALL_FAILED"], EXIT_CODES)
