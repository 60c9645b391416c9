"""The EDNN surrogate as a scorer of whole sets of sheets: the cheap tier of a porous-graphene screening.

:func:`score_sheets` gives every sheet of a batch its EDNN total energy (eV), in batch order. A sheet the
model cannot score (not on the honeycomb lattice, a grid that is not a whole number of the model's focus
tiles, not periodic) gets NaN and its reason, and never stops the others. No relaxation: the EDNN knows
lattice occupations only, so the positions stay as they are.

Pure NumPy/PyTorch: no AiiDA import (the calcfunction ``physgen.score_ednn`` wraps it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..ml.batch import StructureBatch

__all__ = ["score_sheets", "check_surrogate", "EdnnScoreSettings"]


@dataclasses.dataclass
class EdnnScoreSettings:
    """Settings of the ``ednn`` cheap engine: none. Everything the EDNN does is fixed by the trained model (its
    focus and context tiles, its lattice), given to the screening as ``cheap_model``; the class exists so that
    a key given by mistake (an ``fmax`` meant for a relaxing engine) is refused, naming it."""


def check_surrogate(model: Any, field: str = "model") -> None:
    """``ValueError`` naming ``field`` unless ``model`` (a loaded :class:`~aiida_physgen.ml.family.TrainedModel`)
    is a surrogate, such as the EDNN."""
    role = getattr(getattr(model, "family", None), "role", None)
    if role != "surrogate":
        name = getattr(getattr(model, "family", None), "name", type(model).__name__)
        raise ValueError(
            f"{field}: a {role or 'non-model'} ({name}) predicts no energy; expected a surrogate model such as ednn"
        )


def score_sheets(model: Any, batch: StructureBatch) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Total energies (eV) of every sheet by the surrogate ``model``.

    :returns: ``(energies, failed, errors)``: energies in batch order (NaN where it failed), ``failed`` as 1/0
        (int8), and the error of every failed sheet by index.
    """
    check_surrogate(model)
    count = len(batch)
    energies = np.full(count, np.nan)
    errors: dict[int, str] = {}
    if count == 0:
        return energies, np.zeros(0, dtype=np.int8), errors
    try:  # the whole set at once (sheets of several sizes are grouped by cell inside)
        energies[:] = np.asarray(model.predict(batch), dtype=float)
    except ValueError:  # some sheet cannot be scored: one by one, so only that one fails
        for index in range(count):
            try:
                energies[index] = float(np.asarray(model.predict(batch.subset([index])), dtype=float)[0])
            except ValueError as error:
                errors[index] = str(error).replace("structures[0]", f"structures[{index}]")
    for index in np.flatnonzero(~np.isfinite(energies)):
        errors.setdefault(int(index), "the surrogate gave a non-finite energy")
    failed = np.zeros(count, dtype=np.int8)
    failed[list(errors)] = 1
    energies[failed.astype(bool)] = np.nan
    return energies, failed, errors
