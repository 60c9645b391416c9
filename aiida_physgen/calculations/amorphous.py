"""Calcfunctions of the amorphous pre-step (``physgen.amorphous``): the melt-quench trajectory and its split.

``physgen.amorphous_md`` runs the molecular dynamics (:mod:`aiida_physgen.amorphous.md`, LAMMPS) with its
settings as the input node, so the provenance of every generated structure starts at the simulation.
``physgen.split_trajectory`` keeps the end of the trajectory out of training (held out, in time order): the
training frames go to the screening's generation, the held-out ones to its ``amorphous`` assessor
(:mod:`aiida_physgen.amorphous.assessors`), which measures the generated sets against them. Bad input ends on
``ERROR_INVALID_INPUT`` (300) before any work; nothing is stored for a failed step.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..amorphous import md
from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from .functions import EXIT_CODES, declare_exit_codes

__all__ = ["amorphous_md", "split_trajectory"]


def _invalid(error: Exception):
    return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


# ---------------------------------------------------------------------- the trajectory
@calcfunction
def amorphous_md(settings: orm.Dict | None = None):
    """A melt-and-quench trajectory of amorphous silicon with an empirical potential (LAMMPS).

    Output ``trajectory``: the production frames (fixed cubic cell at the given density, the same atom
    identities in every frame) with ``info`` ``energy`` (eV), ``temperature`` (K) and ``time`` (ps); its
    attributes hold the potential, its description, the cell edge and the full settings.

    :param settings: fields of :class:`aiida_physgen.amorphous.md.MeltQuenchSettings` (atoms, density,
        potential, temperatures, steps, frames, stride, seed ...); the defaults otherwise.
    """
    try:
        values = md.MeltQuenchSettings(**(settings.get_dict() if settings is not None else {}))
    except TypeError as error:  # an unknown field
        return _invalid(ValueError(f"settings: {error}; expected fields of MeltQuenchSettings"))
    except ValueError as error:
        return _invalid(error)
    frames = md.melt_quench(values)
    node = StructureSet(frames)
    node.base.attributes.set_many(
        {
            "potential": values.potential,
            "potential_description": md.potential_description(values.potential),
            "cell_length": md.cell_length(values.atoms, values.density),
            "md_settings": settings_module.to_dict(values),
        }
    )
    return {"trajectory": node}


@calcfunction
def split_trajectory(trajectory: StructureSet, held_out_fraction: orm.Float):
    """The trajectory in two parts in time order: ``training`` (the first frames) and ``held_out`` (the last
    ``held_out_fraction``). Neighbouring MD frames are correlated, so the hold-out is the end of the run,
    not a random draw. Both keep the trajectory's attributes (potential, settings) and ``info['frame']``.

    :param trajectory: the frames (``physgen.amorphous_md``'s output, or any fixed-cell trajectory).
    :param held_out_fraction: share of frames held out, in (0, 1); at least 2 frames on each side.
    """
    fraction = float(held_out_fraction.value)
    count = len(trajectory)
    if not 0 < fraction < 1:
        return _invalid(ValueError(f"held_out_fraction: got {fraction}, expected a share in (0, 1)"))
    held = int(round(count * fraction))
    if held < 2 or count - held < 2:
        return _invalid(
            ValueError(
                f"held_out_fraction: {fraction} of {count} frames holds out {held} and keeps "
                f"{count - held}; expected at least 2 of each"
            )
        )
    batch = trajectory.get_batch()
    batch.info["frame"] = np.arange(count)
    keep = {
        key: value
        for key, value in trajectory.base.attributes.all.items()
        if key in ("potential", "potential_description", "cell_length", "md_settings")
    }
    outputs = {}
    for link, index in (("training", np.arange(count - held)), ("held_out", np.arange(count - held, count))):
        node = StructureSet(batch.subset(index))
        node.base.attributes.set_many(keep)
        outputs[link] = node
    return outputs


declare_exit_codes(amorphous_md, ["ERROR_INVALID_INPUT"], EXIT_CODES)
declare_exit_codes(split_trajectory, ["ERROR_INVALID_INPUT"], EXIT_CODES)
