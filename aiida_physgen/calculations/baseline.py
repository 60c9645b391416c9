"""``physgen.generate_random``: the random baseline of a screening, as a calcfunction.

The LoGAN paper's control: instead of sampling trained models, draw random coordinates in the
target cell under the same min-distance rule (:func:`aiida_physgen.ml.random_structures.random_structures`).
The output is a ``physgen.structure_set`` shaped like the output of ``physgen.generate`` (info array
``model_index``, all zero), so the same selection, funnel and DFT stages take it unchanged.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from ..data.structure_set import StructureSet
from ..ml.family import get_family
from ..ml.random_structures import random_structures
from .functions import declare_exit_codes, invalid_input, records_cpu

__all__ = ["generate_random"]


@calcfunction
@records_cpu
def generate_random(
    family: orm.Str, target: orm.Dict, count: orm.Int, seed: orm.Int, min_distance: orm.Float | None = None
):
    """``count`` structures with random coordinates in the target cell, every pair of atoms (periodic
    images included) at least ``min_distance`` apart: the random baseline of the LoGAN paper.

    The set has the info array ``model_index`` (0 for all, as a one-model generation) and the
    attributes ``generator`` (``'random'``), ``target`` (normalised) and ``min_distance``.

    :param family: the family whose target this is; it normalises the target, which must say a composition,
        a cell and pbc (a LoGAN target does; a target of space groups or energies cannot be drawn at random).
    :param target: the target of the models this baseline stands in for.
    :param count: number of structures (positive).
    :param seed: seed of the random coordinates; the same seed gives the same structures.
    :param min_distance: shortest allowed interatomic distance in Å (default 0.5, the selection's filter).
    """
    try:
        normalised = get_family(family.value).check_target(target.get_dict())
        missing = [key for key in ("composition", "cell", "pbc") if normalised.get(key) is None]
        if missing:
            raise ValueError(
                f"target: the random baseline draws atoms of a composition in a cell; the {family.value} "
                f"target has no {missing}"
            )
        if isinstance(count.value, bool) or count.value <= 0:
            raise ValueError(f"count: got {count.value}, expected a positive number of structures")
        distance = 0.5 if min_distance is None else float(min_distance.value)
        batch = random_structures(
            normalised["composition"],
            normalised["cell"],
            normalised["pbc"],
            int(count.value),
            int(seed.value),
            min_distance=distance,
        )
    except ValueError as error:
        return invalid_input(error)
    structures = StructureSet(batch)
    structures.base.attributes.set("generator", "random")
    structures.base.attributes.set("target", normalised)
    structures.base.attributes.set("min_distance", distance)
    return structures


declare_exit_codes(generate_random, ["ERROR_INVALID_INPUT"])
