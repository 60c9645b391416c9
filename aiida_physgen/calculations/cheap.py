"""``physgen.relax_cheap``: the cheap relaxation tier as one calcfunction over a whole structure set.

GFN2-xTB (``tblite``) relaxes molecules and CHGNet relaxes crystals (see :mod:`aiida_physgen.screening.cheap_relax`
for the settings and why they are the defaults). One process relaxes many structures and returns
one ``physgen.structure_set`` with the energies as info arrays, not one node per structure.
"""

from __future__ import annotations

import time

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..screening import cheap_relax
from .functions import EXIT_CODES as _SHARED_EXIT_CODES
from .functions import declare_exit_codes, keep_provenance_attributes, records_cpu, report_to_process

__all__ = ["relax_cheap", "EXIT_CODES"]

#: named exit codes of ``physgen.relax_cheap``
EXIT_CODES = {
    "ERROR_INVALID_INPUT": _SHARED_EXIT_CODES["ERROR_INVALID_INPUT"],
    "ERROR_ALL_FAILED": ExitCode(330, "every cheap relaxation failed: {message}"),
}


@calcfunction
@records_cpu
def relax_cheap(structures: StructureSet, settings: orm.Dict | None = None):
    """Relax every structure of a set with the cheap method: GFN2-xTB for molecules, CHGNet for crystals.

    Output ``relaxed`` (``physgen.structure_set``) has the structures in input order, the input's info
    arrays, and ``cheap_energy`` (eV, NaN when failed), ``cheap_fmax`` (eV/Å), ``cheap_steps``,
    ``cheap_converged`` (1/0) and ``cheap_failed`` (1/0). A failed structure (SCF not converged,
    exception, non-finite energy) keeps its input positions and never stops the others; when every
    structure fails the process ends on ``ERROR_ALL_FAILED`` with no outputs. The input set's
    ``model_uuids``, ``model_labels`` and ``descriptor`` attributes are copied; the settings used and
    the counts are in the attributes ``cheap_settings``, ``n_converged`` and ``n_failed``.

    :param structures: the structures to relax (molecules, crystals, or both with method ``auto``).
    :param settings: method (auto, gfn2-xtb, chgnet), fmax (eV/Å), max_steps, optimizer (FIRE, BFGS), fix_cell,
        and tblite's accuracy, electronic_temperature, max_iterations and charge.
    """
    try:
        values = cheap_relax.CheapSettings.from_dict(settings.get_dict() if settings is not None else None)
        batch = structures.get_batch()
        methods = cheap_relax.check_batch(batch, values)
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))

    counts = {method: methods.count(method) for method in sorted(set(methods))}
    report_to_process(
        f"relaxing {len(batch)} structure(s) with "
        + ", ".join(f"{m} ({n})" for m, n in counts.items())
        + f": {values.optimizer} to {values.fmax} eV/Å, at most {values.max_steps} steps"
    )
    errors: dict[int, str] = {}
    every = max(1, len(batch) // 10)

    def progress(done: int, total: int, result: cheap_relax.CheapResult) -> None:
        if result.failed:
            errors[done - 1] = result.error
        if done % every == 0 or done == total:
            report_to_process(f"{done}/{total} relaxed, {len(errors)} failed so far")

    start = time.perf_counter()
    relaxed = cheap_relax.relax_batch(batch, values, progress=progress)
    seconds = time.perf_counter() - start
    report_to_process(cheap_relax.summary(relaxed, seconds))
    for index, error in list(errors.items())[:10]:
        report_to_process(f"structure {index} failed: {error}")
    n_failed = int(np.sum(relaxed.info["cheap_failed"]))
    if n_failed == len(relaxed):
        first = next(iter(errors.values()), "")
        return EXIT_CODES["ERROR_ALL_FAILED"].format(
            message=f"all {len(relaxed)} structure(s) failed; the first error: {first}"
        )
    output = StructureSet(relaxed)
    keep_provenance_attributes(output, structures)
    output.base.attributes.set_many(
        {
            "cheap_settings": settings_module.to_dict(values),
            "n_converged": int(np.sum(relaxed.info["cheap_converged"])),
            "n_failed": n_failed,
        }
    )
    return {"relaxed": output}


declare_exit_codes(relax_cheap, ["ERROR_INVALID_INPUT", "ERROR_ALL_FAILED"], EXIT_CODES)
