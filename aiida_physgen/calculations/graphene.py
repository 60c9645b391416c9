"""Calcfunctions of the porous-graphene chain (RUGAN + EDNN): sheets → reference labels → the label check.

Every one is batch-grained: a set of thousands of sheets is one ``physgen.structure_set`` node, and a
labelling of the whole set is one process (not one node per sheet). Generic ``physgen.predict`` runs
any surrogate model (EDNN) on a set. Bad input ends on ``ERROR_INVALID_INPUT`` (300) before any
heavy work, with nothing stored.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, Process, calcfunction

from ..graphene import label_check as label_check_module
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml import graphene
from ..ml import settings as settings_module
from ..ml.training import set_threads
from .functions import EXIT_CODES as _SHARED_EXIT_CODES
from .functions import declare_exit_codes

__all__ = ["porous_graphene", "label_reference", "predict", "check_labels", "EXIT_CODES", "ReferenceSettings"]

EXIT_CODES = {
    "ERROR_INVALID_INPUT": _SHARED_EXIT_CODES["ERROR_INVALID_INPUT"],
    "ERROR_LABELLING_FAILED": ExitCode(340, "the reference method failed: {message}"),
}


def _invalid(error: Exception) -> ExitCode:
    return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


def _report(message: str) -> None:
    process = Process.current()
    if process is not None:
        process.report(message)


class ReferenceSettings:
    """Settings of the reference labelling (LAMMPS, Tersoff 1988 carbon).

    ``relax`` (default false): single points on the lattice geometry, 1,700 sheets/s on one core. On
    the ideal lattice a Tersoff single point is a count of two- and three-fold atoms (Tersoff is a
    nearest-neighbour potential). ``relax: true`` first relaxes each sheet at fixed cell (LAMMPS
    conjugate gradients to ``fmax`` eV/Å, at most ``max_steps``): 6 meV/atom lower on average, the atoms
    round holes move up to 0.6 Å. Measured: 35 random 1× sheets/s (32,768 in 16 minutes), but only
    about 13 generated 1× and 0.7 generated 4× sheets/s (their ragged holes need many steps), too
    slow for the label check of thousands of 4× sheets here.
    """

    KEYS = ("method", "relax", "fmax", "max_steps")

    def __init__(self, values: dict | None = None):
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.KEYS))
        if unknown:
            raise ValueError(f"settings: unknown key(s) {unknown}; expected some of {list(self.KEYS)}")
        self.method = values.get("method", "tersoff")
        self.relax = values.get("relax", False)
        self.fmax = values.get("fmax", 0.05)
        self.max_steps = values.get("max_steps", 1000)
        if self.method not in ("tersoff",):
            raise ValueError(f"settings.method: got {self.method!r}, expected 'tersoff' (LAMMPS, Tersoff 1988 carbon)")
        if not isinstance(self.relax, bool):
            raise ValueError(f"settings.relax: got {self.relax!r}, expected true or false")
        if isinstance(self.fmax, bool) or not isinstance(self.fmax, (int, float)) or not 0 < self.fmax < 10:
            raise ValueError(f"settings.fmax: got {self.fmax!r}, expected a positive force in eV/Å, e.g. 0.05")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"settings.max_steps: got {self.max_steps!r}, expected a positive number of steps")

    def to_dict(self) -> dict:
        return {"method": self.method, "relax": self.relax, "fmax": float(self.fmax), "max_steps": self.max_steps}


def reference_energies(batch, settings: ReferenceSettings) -> np.ndarray:
    """Total reference energies (eV) of every sheet of ``batch``; progress goes to the process report."""
    from ..graphene import reference_energy

    count = len(batch)
    every = max(1, count // 10)
    started = time.monotonic()

    def progress(done: int, total: int | None = None) -> None:
        if done % every == 0 or done == count:
            _report(f"labelled {done}/{count} sheets with {settings.method} "
                    f"({done / max(time.monotonic() - started, 1e-9):.1f} sheets/s)")

    # a sheet LAMMPS cannot evaluate gets NaN (and a warning) instead of stopping the whole batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energies = reference_energy.label_sheets(batch, method=settings.method, relax=settings.relax,
                                                 progress=progress, on_error="nan", fmax=float(settings.fmax),
                                                 max_steps=settings.max_steps)
    for warning in caught:
        _report(str(warning.message))
    return np.asarray(energies, dtype=float)


@calcfunction
def porous_graphene(count: orm.Int, seed: orm.Int, settings: orm.Dict | None = None):
    """``count`` random porous graphene sheets (periodic, holes of random number and size), one set.

    :param count: number of sheets.
    :param seed: seed of the holes.
    :param settings: ``nx``, ``ny`` (orthogonal cells; default 14 × 8, ≈ 34 Å × 34 Å), ``holes`` [min, max],
        ``radius`` [min, max] in Å, ``prune`` (remove atoms left with fewer than two neighbours).
    """
    try:
        values = settings_module.from_dict(graphene.SheetSettings, settings.get_dict() if settings is not None else None)
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
        values = ReferenceSettings(settings.get_dict() if settings is not None else None)
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
    result.base.attributes.set("reference", {**values.to_dict(), "seconds": round(elapsed, 2),
                                             "n_failed": int((~np.isfinite(energies)).sum())})
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
        if trained.family.role != "surrogate":
            raise ValueError(f"model: a {trained.family.role} ({trained.family.name}) predicts nothing; expected a "
                             "surrogate model such as ednn")
        set_threads()
        values = trained.predict(structures.get_batch())
    except ValueError as error:
        return _invalid(error)
    name = trained.config["target"].get("property", "value")
    result = orm.ArrayData()
    result.set_array(name, np.asarray(values, dtype=float))
    result.base.attributes.set("model_uuid", model.uuid)
    return {"values": result}


def _scale_of(key: str, batch, base_area: float | None) -> int:
    if base_area:
        return int(round(np.sqrt(abs(np.linalg.det(batch.cells[0][:2, :2])) / base_area)))
    return int(key.rsplit("_", 1)[-1])


@calcfunction
def check_labels(surrogate: GeneratorModel, reference: orm.Bool | None = None, settings: orm.Dict | None = None,
                 **generated: StructureSet):
    """RUGAN's check: requested against obtained energy per area, by the surrogate and the reference method.

    Every generated set (``scale_1``, ``scale_2``...: sheets from ``physgen.generate`` with
    ``info['label']``, the requested eV/Å²) is evaluated by the surrogate (EDNN) and, when ``reference``
    is true (default), by the reference method itself (what the paper could not do). Outputs: ``table``
    (Dict: one row per area and method with KS statistic, p-value, MAE, bias, r; and the text table),
    ``energies`` (ArrayData: ``requested_<a>x``, ``<method>_<a>x`` per area multiple *a*, eV/Å²) and
    ``figures`` (PNG heat maps and histograms).

    :param surrogate: the EDNN model that gives the obtained energies (as in the paper).
    :param reference: also compute them with the reference method (default true).
    :param settings: ``reference`` settings for the labeller (``method``, ``relax``).
    """
    if not generated:
        return _invalid(ValueError("generated: expected at least one set of generated sheets (scale_1, ...)"))
    try:
        trained = surrogate.load()
        if trained.family.role != "surrogate":
            raise ValueError(f"surrogate: expected a surrogate model (ednn), got a {trained.family.role}")
        values = ReferenceSettings((settings.get_dict() if settings is not None else {}).get("reference"))
        lattice = trained.config.get("lattice")
        base_area = graphene.Lattice(lattice["nx"], lattice["ny"]).area if lattice else None
        batches = {}
        for key in sorted(generated):
            batch = generated[key].get_batch()
            if "label" not in batch.info:
                raise ValueError(f"generated.{key}: the sheets have no requested 'label' (generate them with rugan)")
            graphene.batch_to_sheets(batch, where=f"generated.{key}")
            batches[_scale_of(key, batch, base_area)] = batch
    except ValueError as error:
        return _invalid(error)
    use_reference = True if reference is None else reference.value
    set_threads()
    requested, obtained = {}, {"ednn": {}}
    if use_reference:
        obtained[values.method] = {}
    arrays = orm.ArrayData()
    for scale, batch in sorted(batches.items()):
        area = abs(np.linalg.det(batch.cells[:, :2, :2]))
        area_multiple = scale * scale
        requested[scale] = np.asarray(batch.info["label"], dtype=float)
        arrays.set_array(f"requested_{area_multiple}x", requested[scale])
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obtained["ednn"][scale] = np.asarray(trained.predict(batch), dtype=float) / area
        _report(f"{area_multiple}× area: EDNN energies of {len(batch)} sheets in {time.monotonic() - started:.1f} s")
        arrays.set_array(f"ednn_{area_multiple}x", obtained["ednn"][scale])
        if use_reference:
            try:
                energies = reference_energies(batch, values)
            except (RuntimeError, OSError, ImportError) as error:
                return EXIT_CODES["ERROR_LABELLING_FAILED"].format(message=f"{type(error).__name__}: {error}")
            obtained[values.method][scale] = energies / area
            arrays.set_array(f"{values.method}_{area_multiple}x", obtained[values.method][scale])
    rows = label_check_module.ks_rows(requested, obtained)
    text = label_check_module.format_ks_table(rows)
    _report("label check (requested vs obtained energy per area):\n" + text)
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, path in label_check_module.plot_label_check(requested, obtained, folder).items():
            figures[name] = orm.SinglefileData(str(path))
    return {"table": orm.Dict({"rows": rows, "text": text}), "energies": arrays, "figures": figures}


@calcfunction
def pick_structure(structures: StructureSet, index: orm.Int):
    """Structure ``index`` of a set as a ``StructureData`` (for a DFT step), with its index as an extra.

    :param structures: the set.
    :param index: which structure (0-based).
    """
    if not 0 <= index.value < len(structures):
        return _invalid(ValueError(f"index: got {index.value}, expected 0 <= index < {len(structures)}"))
    structure = structures.get_structuredata(index.value)
    structure.label = f"sheet_{index.value}"
    structure.base.extras.set("candidate_index", index.value)
    return structure


declare_exit_codes(porous_graphene, ["ERROR_INVALID_INPUT"], EXIT_CODES)
declare_exit_codes(label_reference, ["ERROR_INVALID_INPUT", "ERROR_LABELLING_FAILED"], EXIT_CODES)
declare_exit_codes(predict, ["ERROR_INVALID_INPUT"], EXIT_CODES)
declare_exit_codes(check_labels, ["ERROR_INVALID_INPUT", "ERROR_LABELLING_FAILED"], EXIT_CODES)
declare_exit_codes(pick_structure, ["ERROR_INVALID_INPUT"], EXIT_CODES)
