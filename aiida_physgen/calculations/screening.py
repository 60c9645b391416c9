"""Calcfunctions of the screening's plug-in stages: ``physgen.check_validity`` and ``physgen.assess``.

Both name no domain: the check and the assessor are inputs, found through the entry-point groups
``aiida_physgen.validity`` and ``aiida_physgen.assessors`` (:mod:`aiida_physgen.screening.validity`,
:mod:`aiida_physgen.screening.assessors`). Each converts nodes to arrays, calls the plug-in, and turns
its result into nodes; bad input ends on ``ERROR_INVALID_INPUT`` (300) with nothing stored.
"""

from __future__ import annotations

import io

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml.batch import StructureBatch
from ..screening.assessors import ScreeningData, get_assessor
from ..screening.validity import apply_validity, get_validity_check
from .functions import EXIT_CODES, PROVENANCE_ATTRIBUTES, declare_exit_codes, report_to_process

__all__ = ["check_validity", "assess", "SCREENING_EXIT_CODES", "GENERATED_PREFIX", "REFERENCE_PREFIX"]

SCREENING_EXIT_CODES = {
    "ERROR_INVALID_INPUT": EXIT_CODES["ERROR_INVALID_INPUT"],
    "ERROR_NOTHING_VALID": ExitCode(341, "no generated structure passed the validity check: {message}"),
    "ERROR_ASSESSMENT_FAILED": ExitCode(350, "the assessment failed: {message}"),
}
#: input names of ``physgen.assess``: ``generated_<condition>`` and ``reference_<name>``
GENERATED_PREFIX = "generated_"
REFERENCE_PREFIX = "reference_"


@calcfunction
def check_validity(check: orm.Str, settings: orm.Dict | None = None, **sets: StructureSet):
    """Keep the structures of every generated set that the validity check ``check`` accepts; join them.

    Output ``valid`` (``physgen.structure_set``): the kept structures in set order (sets sorted by input name),
    with the sets' info arrays, ``condition_index`` (which set, in that order) and ``set_index`` (index in its
    set); attributes ``validity`` (check, settings, the set names in order, and per set the counts generated,
    valid and rejected by reason) and the generated sets' ``model_uuids``, ``model_labels``, ``descriptor``.

    :param check: the validity check (an entry point of ``aiida_physgen.validity``: none, molecule, crystal,
        sheet, amorphous, or a plug-in's).
    :param settings: the check's settings.
    :param sets: the generated sets, by condition name.
    """
    try:
        plugin = get_validity_check(check.value, "validity")
        values = plugin.settings(settings.get_dict() if settings is not None else None)
        if not sets:
            raise ValueError("sets: expected at least one generated set")
        names = sorted(sets)
        wrong = [name for name in names if not isinstance(sets[name], StructureSet)]
        if wrong:
            raise ValueError(f"sets: {wrong} are not physgen.structure_set nodes")
        result = apply_validity(plugin, {name: sets[name].get_batch() for name in names}, values)
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    totals = result.totals
    report_to_process(
        f"validity ({plugin.name}): {totals['valid']} of {totals['generated']} kept; rejected: "
        f"{totals['reasons'] or 'none'}"
    )
    if totals["valid"] == 0:
        return SCREENING_EXIT_CODES["ERROR_NOTHING_VALID"].format(
            message=f"{totals['generated']} generated, rejected: {totals['reasons']}"
        )
    valid = StructureSet(result.valid)
    first = sets[names[0]]
    for key in PROVENANCE_ATTRIBUTES:
        values_of_sets = [sets[name].base.attributes.get(key, None) for name in names]
        if values_of_sets[0] is not None and all(v == values_of_sets[0] for v in values_of_sets):
            valid.base.attributes.set(key, first.base.attributes.get(key))
    from ..ml import settings as settings_module

    valid.base.attributes.set(
        "validity",
        {
            "check": plugin.name,
            "settings": settings_module.to_dict(values),
            "conditions": names,
            "counts": result.counts,
            "totals": totals,
        },
    )
    return {"valid": valid}


def _batch(node) -> StructureBatch | None:
    return node.get_batch() if isinstance(node, StructureSet) else None


@calcfunction
def assess(
    assessor: orm.Str,
    settings: orm.Dict | None = None,
    conditions: orm.Dict | None = None,
    training: StructureSet | None = None,
    valid: StructureSet | None = None,
    representatives: StructureSet | None = None,
    cheap: StructureSet | None = None,
    relaxed: StructureSet | None = None,
    basins: orm.Dict | None = None,
    funnel: orm.Dict | None = None,
    cheap_model: GeneratorModel | None = None,
    cheap_engine: orm.Str | None = None,
    cheap_settings: orm.Dict | None = None,
    dft_references: StructureSet | None = None,
    **sets: StructureSet,
):
    """Measure a screening with the assessor ``assessor`` (an entry point of ``aiida_physgen.assessors``).

    Outputs ``assessment`` (Dict: ``assessor``, ``title``, ``metrics``, ``rows``, ``text``) and ``figures``
    (one PNG ``SinglefileData`` per figure the assessor made).

    :param assessor: the assessor (an entry point of ``aiida_physgen.assessors``).
    :param settings: the assessor's settings.
    :param conditions: the generation's named conditions.
    :param training: the structures the models learnt from.
    :param valid: the candidates that passed the validity check (or every candidate without one).
    :param representatives: the representatives the selection chose.
    :param cheap: the representatives after the cheap tier (info cheap_energy, cheap_failed).
    :param relaxed: every DFT-relaxed structure (info energy, basin).
    :param basins: the ``report`` Dict of ``physgen.deduplicate_minima`` (one row per DFT basin).
    :param funnel: the cheap-tier funnel's counts (``physgen.select_for_dft``).
    :param cheap_model: the cheap engine's model (the EDNN), when it has one.
    :param cheap_engine: the cheap engine's name.
    :param cheap_settings: the cheap engine's settings as given.
    :param dft_references: the elemental references relaxed with the DFT settings (info energy), when the
        screening relaxed them (``dft_references``).
    :param sets: ``generated_<condition>`` (the generated sets as generated) and ``reference_<name>`` (the
        reference sets the assessor reads: a known list, a held-out MD, ...).
    """
    try:
        plugin = get_assessor(assessor.value, "assessors")
        values = plugin.settings(settings.get_dict() if settings is not None else None)
        unknown = sorted(k for k in sets if not k.startswith((GENERATED_PREFIX, REFERENCE_PREFIX)))
        if unknown:
            raise ValueError(
                f"inputs: unknown set(s) {unknown}; expected {GENERATED_PREFIX}<condition> or {REFERENCE_PREFIX}<name>"
            )
        references = {k[len(REFERENCE_PREFIX) :]: sets[k].get_batch() for k in sets if k.startswith(REFERENCE_PREFIX)}
        message = plugin.check_references(set(references))
        if message:
            raise ValueError(message)
        data = ScreeningData(
            generated={
                k[len(GENERATED_PREFIX) :]: sets[k].get_batch() for k in sorted(sets) if k.startswith(GENERATED_PREFIX)
            },
            conditions=conditions.get_dict() if conditions is not None else {},
            training=_batch(training),
            valid=_batch(valid),
            representatives=_batch(representatives),
            cheap=_batch(cheap),
            relaxed=_batch(relaxed),
            basins=list(basins["rows"]) if basins is not None else [],
            funnel=dict(funnel) if funnel is not None else None,
            references=references,
            cheap_model=cheap_model.load() if cheap_model is not None else None,
            cheap_engine=cheap_engine.value if cheap_engine is not None else None,
            cheap_settings=cheap_settings.get_dict() if cheap_settings is not None else None,
            dft_references=_batch(dft_references),
        )
    except ValueError as error:
        return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))
    try:
        result = plugin.assess(data, values)
    except ValueError as error:
        return SCREENING_EXIT_CODES["ERROR_ASSESSMENT_FAILED"].format(message=f"{plugin.name}: {error}")
    metrics = _plain(result.metrics)
    # the table itself is printed once, by the report (aiida-physgen report); the log says where it is
    report_to_process(f"{plugin.title or plugin.name}: {len(result.rows)} row(s), {len(result.figures)} figure(s)")
    figures = {}
    for name, png in result.figures.items():
        figures[name] = orm.SinglefileData(io.BytesIO(png), filename=f"{plugin.name}_{name}.png")
    outputs = {
        "assessment": orm.Dict(
            {
                "assessor": plugin.name,
                "title": plugin.title or plugin.name,
                "metrics": metrics,
                "rows": _plain(result.rows),
                "text": result.text,
            }
        )
    }
    if figures:
        outputs["figures"] = figures
    return outputs


def _plain(value):
    """Rows as JSON-able values (NumPy scalars and non-finite floats made plain)."""
    from ..ml.family import finite_or_none

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    return value


declare_exit_codes(check_validity, ["ERROR_INVALID_INPUT", "ERROR_NOTHING_VALID"], SCREENING_EXIT_CODES)
declare_exit_codes(assess, ["ERROR_INVALID_INPUT", "ERROR_ASSESSMENT_FAILED"], SCREENING_EXIT_CODES)
