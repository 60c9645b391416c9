"""Calcfunctions of porous graphene (RUGAN + EDNN): sheets → reference labels, and the EDNN on a whole set.

Every one is batch-grained: a set of thousands of sheets is one ``physgen.structure_set`` node, and a
labelling of the whole set is one process (not one node per sheet). ``physgen.predict`` runs any surrogate
model (EDNN) on a set; ``physgen.score_ednn`` is the EDNN as the screening's cheap tier (the ``ednn`` batch
engine, :mod:`aiida_physgen.engines.ednn`). Bad input ends on ``ERROR_INVALID_INPUT`` (300) before any heavy
work, with nothing stored.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, Process, calcfunction

from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..graphene.reference_energy import ReferenceSettings
from ..graphene.surrogate import EdnnScoreSettings, check_surrogate, score_sheets
from ..ml import graphene
from ..ml import settings as settings_module
from ..ml.training import set_threads
from .functions import EXIT_CODES as _SHARED_EXIT_CODES
from .functions import declare_exit_codes

__all__ = ["porous_graphene", "label_reference", "predict", "score_ednn", "EXIT_CODES"]

EXIT_CODES = {
    "ERROR_INVALID_INPUT": _SHARED_EXIT_CODES["ERROR_INVALID_INPUT"],
    "ERROR_ALL_FAILED": ExitCode(330, "the surrogate scored no structure: {message}"),
    "ERROR_LABELLING_FAILED": ExitCode(340, "the reference method failed: {message}"),
}

#: attributes of the input set copied to the scored set, so per-structure provenance (``model_index``) still resolves
_KEPT_ATTRIBUTES = ("model_uuids", "model_labels", "descriptor")


def _invalid(error: Exception) -> ExitCode:
    return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


def _report(message: str) -> None:
    process = Process.current()
    if process is not None:
        process.report(message)


def reference_energies(batch, settings: ReferenceSettings) -> np.ndarray:
    """Total reference energies (eV) of every sheet of ``batch``; progress goes to the process report."""
    count = len(batch)
    every = max(1, count // 10)
    started = time.monotonic()

    def progress(done: int, total: int | None = None) -> None:
        if done % every == 0 or done == count:
            _report(
                f"labelled {done}/{count} sheets with {settings.method} "
                f"({done / max(time.monotonic() - started, 1e-9):.1f} sheets/s)"
            )

    # a sheet LAMMPS cannot evaluate gets NaN (and a warning) instead of stopping the whole batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energies = settings.label(batch, progress=progress)
    for warning in caught:
        _report(str(warning.message))
    return energies


@calcfunction
def porous_graphene(count: orm.Int, seed: orm.Int, settings: orm.Dict | None = None):
    """``count`` random porous graphene sheets (periodic, holes of random number and size), one set.

    :param count: number of sheets.
    :param seed: seed of the holes.
    :param settings: ``nx``, ``ny`` (orthogonal cells; default 14 × 8, ≈ 34 Å × 34 Å), ``holes`` [min, max],
        ``radius`` [min, max] in Å, ``prune`` (remove atoms left with fewer than two neighbours).
    """
    try:
        values = settings_module.from_dict(
            graphene.SheetSettings, settings.get_dict() if settings is not None else None
        )
        if count.value < 1:
            raise ValueError(f"count: got {count.value}, expected a positive number of sheets")
        sheets = values.make(count.value, seed.value)
    except ValueError as error:
        return _invalid(error)
    result = StructureSet(graphene.sheets_to_batch(sheets, values.lattice))
    result.base.attributes.set("lattice", values.lattice.to_dict())
    return result


@calcfunction
def label_reference(structures: StructureSet, settings: orm.Dict | None = None):
    """Reference energies of every sheet of a set, in one process: the set again with ``info['energy']`` (eV).

    The method is LAMMPS with the Tersoff (1988) carbon potential: single points on the lattice geometry,
    or with ``relax`` after a fixed-cell relaxation (see :class:`ReferenceSettings`). A sheet the method cannot
    evaluate gets NaN; when every sheet fails the process ends on ``ERROR_LABELLING_FAILED`` (340).

    :param structures: porous graphene sheets (all carbon, periodic in x and y).
    :param settings: ``method`` (``tersoff``), ``relax`` (false), ``fmax`` (0.05 eV/Å), ``max_steps`` (1000).
    """
    try:
        values = ReferenceSettings.from_dict(settings.get_dict() if settings is not None else None)
        batch = structures.get_batch()
        graphene.batch_to_sheets(batch, where="structures")  # every sheet on the lattice, before any work
    except ValueError as error:
        return _invalid(error)
    set_threads()
    started = time.monotonic()
    try:
        energies = reference_energies(batch, values)
    except (RuntimeError, OSError, ImportError) as error:
        return EXIT_CODES["ERROR_LABELLING_FAILED"].format(message=f"{type(error).__name__}: {error}")
    if not np.isfinite(energies).any():
        return EXIT_CODES["ERROR_LABELLING_FAILED"].format(message="no sheet got a finite energy")
    elapsed = time.monotonic() - started
    batch.info["energy"] = energies
    result = StructureSet(batch)
    for key in ("lattice", "model_uuids", "model_labels"):
        value = structures.base.attributes.get(key, None)
        if value is not None:
            result.base.attributes.set(key, value)
    result.base.attributes.set(
        "reference", {**values.to_dict(), "seconds": round(elapsed, 2), "n_failed": int((~np.isfinite(energies)).sum())}
    )
    return result


@calcfunction
def predict(model: GeneratorModel, structures: StructureSet):
    """What a surrogate model (role ``surrogate``, e.g. EDNN) predicts for every structure of a set.

    Output ``values`` (ArrayData): the array named after the model's property (e.g. ``energy``), one
    value per structure in set order.

    :param model: a surrogate model (role ``surrogate``, e.g. ednn).
    :param structures: the structures to evaluate.
    """
    try:
        trained = model.load()
        check_surrogate(trained)
        set_threads()
        values = trained.predict(structures.get_batch())
    except ValueError as error:
        return _invalid(error)
    name = trained.config["target"].get("property", "value")
    result = orm.ArrayData()
    result.set_array(name, np.asarray(values, dtype=float))
    result.base.attributes.set("model_uuid", model.uuid)
    return {"values": result}


@calcfunction
def score_ednn(model: GeneratorModel, structures: StructureSet, settings: orm.Dict | None = None):
    """The EDNN as a cheap tier: the total energy of every sheet of a set, without moving an atom.

    Output ``relaxed`` (``physgen.structure_set``, the name every cheap tier gives its result): the structures
    in input order, unchanged, with the input's info arrays and ``cheap_energy`` (eV, the EDNN total energy;
    NaN when the sheet cannot be scored) and ``cheap_failed`` (1/0). A sheet the model cannot score (off the
    lattice, a grid that is not a whole number of its focus tiles) never stops the others; when none can be
    scored the process ends on ``ERROR_ALL_FAILED`` (330) with no outputs. The input set's ``model_uuids``,
    ``model_labels`` and ``descriptor`` attributes are copied; ``cheap_model`` (the EDNN's UUID) and
    ``n_failed`` are set.

    :param model: a surrogate model (the EDNN).
    :param structures: porous-graphene sheets (any scale the model's focus tiles).
    :param settings: settings of the ``ednn`` engine (:class:`~aiida_physgen.graphene.surrogate.EdnnScoreSettings`).
    """
    try:
        settings_module.from_dict(EdnnScoreSettings, settings.get_dict() if settings is not None else None)
        trained = model.load()
        check_surrogate(trained)
        batch = structures.get_batch()
    except ValueError as error:
        return _invalid(error)
    set_threads()
    started = time.monotonic()
    energies, failed, errors = score_sheets(trained, batch)
    _report(f"EDNN energies of {len(batch)} sheets in {time.monotonic() - started:.2f} s, {int(failed.sum())} failed")
    for index, error in list(errors.items())[:10]:
        _report(f"structure {index} not scored: {error}")
    if len(batch) and failed.all():
        return EXIT_CODES["ERROR_ALL_FAILED"].format(
            message=f"all {len(batch)} structure(s) failed; the first error: {next(iter(errors.values()))}"
        )
    batch.info["cheap_energy"] = energies
    batch.info["cheap_failed"] = failed
    output = StructureSet(batch)
    for key in _KEPT_ATTRIBUTES:
        value = structures.base.attributes.get(key, None)
        if value is not None:
            output.base.attributes.set(key, value)
    output.base.attributes.set_many({"cheap_model": model.uuid, "n_failed": int(failed.sum())})
    return {"relaxed": output}


declare_exit_codes(porous_graphene, ["ERROR_INVALID_INPUT"], EXIT_CODES)
declare_exit_codes(label_reference, ["ERROR_INVALID_INPUT", "ERROR_LABELLING_FAILED"], EXIT_CODES)
declare_exit_codes(predict, ["ERROR_INVALID_INPUT"], EXIT_CODES)
declare_exit_codes(score_ednn, ["ERROR_INVALID_INPUT", "ERROR_ALL_FAILED"], EXIT_CODES)
