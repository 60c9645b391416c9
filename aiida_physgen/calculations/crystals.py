"""``physgen.crystal_training_set``: the crystals a crystal GAN can learn from, the pre-step of a crystal study.

The rest of a crystal study is the one screening (``physgen.screening`` with the ``crystals`` protocol): the
``crystal`` validity check (:mod:`aiida_physgen.crystals.validity`) and the ``formation`` assessor
(:mod:`aiida_physgen.crystals.assessors`) are its plug-ins. Bad input ends on ``ERROR_INVALID_INPUT`` (300)
before any work; nothing is stored when nothing is left.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from ..data.structure_set import StructureSet
from ..ml.crystal_data import training_crystals
from .functions import EXIT_CODES as _SHARED
from .functions import declare_exit_codes

__all__ = ["EXIT_CODES", "crystal_training_set"]

EXIT_CODES = {
    "ERROR_INVALID_INPUT": _SHARED["ERROR_INVALID_INPUT"],
    "ERROR_NOTHING_LEFT": ExitCode(340, "no candidate is left after the {stage} stage: {message}"),
}


@calcfunction
def crystal_training_set(
    structures: StructureSet, space_groups: orm.List | None = None, symprec: orm.Float | None = None
):
    """The crystals of a set that the crystal GAN can learn from, and why the others were dropped.

    Keeps the ternaries with exactly three symmetry-distinct sites, one per element, in the requested space
    groups (all orthorhombic to cubic groups without ``space_groups``). Output ``training`` has the kept
    structures with ``info['space_group']`` and ``info['source_index']``; its attributes ``dropped`` (up to
    1,000 ``[index, reason]`` pairs) and ``dropped_counts`` (per reason) say what was left out.

    :param structures: candidate training crystals (e.g. CIFs read into a set, or a Materials Project download).
    :param space_groups: numbers (or symbols) of the space groups to keep.
    :param symprec: spglib tolerance in Å (default: that of :func:`~aiida_physgen.ml.crystal_data.training_crystals`).
    """
    batch = structures.get_batch()
    batch.labels = [str(i) for i in range(len(batch))]  # type: ignore[attr-defined]
    options = {"symprec": symprec.value} if symprec is not None else {}
    try:
        crystals = training_crystals(batch, space_groups.get_list() if space_groups is not None else None, **options)
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    if len(crystals) == 0:
        reasons = "; ".join(f"{n} {r}" for r, n in crystals.dropped_summary().items())
        return EXIT_CODES["ERROR_NOTHING_LEFT"].format(stage="training filter", message=reasons)
    kept = np.array([int(label) for label in crystals.labels])
    out = batch.subset(kept)
    out.info.update(space_group=np.asarray(crystals.space_groups), source_index=kept)
    node = StructureSet(out)
    node.base.attributes.set("dropped", [[int(i), r] for i, r in crystals.dropped[:1000]])
    node.base.attributes.set("dropped_counts", crystals.dropped_summary())
    return {"training": node}


declare_exit_codes(crystal_training_set, ["ERROR_INVALID_INPUT", "ERROR_NOTHING_LEFT"], EXIT_CODES)
