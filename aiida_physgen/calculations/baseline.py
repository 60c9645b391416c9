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
from .functions import _declare_exit_codes, _invalid

__all__ = ["generate_random"]


@calcfunction
def generate_random(target: orm.Dict, count: orm.Int, seed: orm.Int, min_distance: orm.Float | None = None):
    """``count`` structures with random coordinates in the target cell, every pair of atoms (periodic
    images included) at least ``min_distance`` apart: the random baseline of the LoGAN paper.

    The set has the info array ``model_index`` (0 for all, as a one-model generation) and the
    attributes ``generator`` (``'random'``), ``target`` (normalised) and ``min_distance``.

    :param target: composition, cell and pbc as for a LoGAN model (normalised by the LoGAN family).
    :param count: number of structures (positive).
    :param seed: seed of the random coordinates; the same seed gives the same structures.
    :param min_distance: shortest allowed interatomic distance in Å (default 0.5, the selection's filter).
    """
    try:
        normalised = get_family("logan").check_target(target.get_dict())
        if isinstance(count.value, bool) or count.value <= 0:
            raise ValueError(f"count: got {count.value}, expected a positive number of structures")
        distance = 0.5 if min_distance is None else float(min_distance.value)
        batch = random_structures(
            normalised["composition"], normalised["cell"], normalised["pbc"], int(count.value), int(seed.value),
            min_distance=distance,
        )
    except ValueError as error:
        return _invalid(error)
    structures = StructureSet(batch)
    structures.base.attributes.set("generator", "random")
    structures.base.attributes.set("target", normalised)
    structures.base.attributes.set("min_distance", distance)
    return structures


_declare_exit_codes(generate_random, ["ERROR_INVALID_INPUT"])
