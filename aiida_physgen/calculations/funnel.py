"""``physgen.select_for_dft``: the last stage of the cheap-tier funnel (see :mod:`aiida_physgen.screening.funnel`)."""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode, Process, calcfunction

from ..data.structure_set import StructureSet
from ..screening.funnel import pick_for_dft
from .functions import EXIT_CODES, candidate_provenance, declare_exit_codes

__all__ = ["select_for_dft", "FUNNEL_EXIT_CODES"]

FUNNEL_EXIT_CODES = {
    "ERROR_NO_SOUND_BASIN": ExitCode(340, "no sound basin among the cheaply relaxed structures: {message}")
}


@calcfunction
def select_for_dft(relaxed: StructureSet, budget: orm.Int, candidates: StructureSet | None = None):
    """One structure per distinct sound basin of the cheap relaxation, lowest energy first, up to ``budget``.

    Outputs ``structures`` (``basin_00``, ``basin_01``, …: the cheaply relaxed geometry of each picked
    basin's lowest member, labelled, with the provenance extras of the representative it came from:
    ``candidate_index``, ``model_uuid``, ``seed``, ``family``, plus ``cheap_energy`` and ``cheap_key``)
    and ``funnel`` (Dict: the stage counts, one row per cheap basin, and every structure's basin key).

    :param relaxed: the output of ``physgen.relax_cheap`` (info arrays ``cheap_energy``, ``cheap_failed``).
    :param budget: how many DFT relaxations may be spent (the most structures returned).
    :param candidates: the generated set the representatives were selected from, for the provenance extras.
    """
    try:
        choice = pick_for_dft(relaxed.get_batch(), budget.value)
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    counts = choice.counts
    if not choice.chosen:
        return FUNNEL_EXIT_CODES["ERROR_NO_SOUND_BASIN"].format(
            message=f"{counts['n_relaxed']} relaxed, {counts['n_failed']} failed, {counts['n_basins']} basins, none "
            "a valid, connected, neutral structure"
        )
    batch = relaxed.get_batch()
    structures = {}
    for rank, index in enumerate(choice.chosen):
        label = f"basin_{rank:02d}"
        structure = orm.StructureData(ase=batch[index])
        structure.label = label
        extras = {"cheap_energy": float(batch.info["cheap_energy"][index]), "cheap_key": choice.keys[index]}
        if candidates is not None and "candidate_index" in batch.info:
            extras.update(candidate_provenance(candidates, int(batch.info["candidate_index"][index])))
        structure.description = (
            f"cheap basin {choice.keys[index]!r} ({extras['cheap_energy']:.4f} eV), lowest of its members"
            + (f"; made by {extras['family']} seed {extras['seed']}" if "seed" in extras else "")
        )
        structure.base.extras.set_many(extras)
        structures[label] = structure
    process = Process.current()
    if process is not None:
        process.report(
            f"cheap tier: {counts['n_relaxed']} relaxed, {counts['n_failed']} failed, {counts['n_sound']} sound in "
            f"{counts['n_sound_basins']} sound basins (of {counts['n_basins']}); {counts['n_picked']} sent to DFT"
        )
    funnel = orm.Dict(
        {
            **counts,
            "budget": budget.value,
            "basins": choice.basins,
            "keys": choice.keys,
            "picked": {f"basin_{rank:02d}": index for rank, index in enumerate(choice.chosen)},
        }
    )
    return {"structures": structures, "funnel": funnel}


declare_exit_codes(select_for_dft, ["ERROR_INVALID_INPUT"])
select_for_dft.process_class.spec().exit_code(
    340, "ERROR_NO_SOUND_BASIN", FUNNEL_EXIT_CODES["ERROR_NO_SOUND_BASIN"].message
)
