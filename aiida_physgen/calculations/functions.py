"""Calcfunctions of the generation chain: ``physgen.train`` → ``physgen.generate`` →
``physgen.select_representatives``, and ``physgen.deduplicate_minima`` after the relaxations.

Each one converts nodes to arrays, calls :mod:`aiida_physgen.ml` / :mod:`aiida_physgen.screening.selection`,
and converts the results back into nodes. ``physgen.normalise_training_inputs`` runs first in the
generation chain: it writes target, seeds, settings and grid in one canonical form, so equivalent
launches give equal inputs to ``physgen.train`` and hit the cache. No family is named here: ``physgen.train`` takes the
family as an input and finds it through the ``aiida_physgen.families`` entry points. Every random
choice takes its seed from an input node. Bad input and diverged training end the process on a
named exit code with no outputs stored.
"""

from __future__ import annotations

import functools
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, Process, calcfunction

from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..ml.batch import StructureBatch
from ..ml.canonical import canonical_training_inputs
from ..ml.family import get_family
from ..ml.loop import TrainingDivergedError
from ..ml.training import generate as generate_batch
from ..ml.training import set_threads, train_ensemble
from ..screening import selection as selection_module

__all__ = [
    "train",
    "generate",
    "select_representatives",
    "deduplicate_minima",
    "normalise_training_inputs",
    "EXIT_CODES",
    "progress_reporter",
]

#: named exit codes shared by the calcfunctions and re-exposed by the workflows
EXIT_CODES = {
    "ERROR_INVALID_INPUT": ExitCode(300, "invalid input: {message}"),
    "ERROR_TRAINING_DIVERGED": ExitCode(310, "training diverged: {message}"),
}


#: per-structure provenance kept in the extras of every representative and minimum (see docs/querying.md)
PROVENANCE_EXTRAS = ("candidate_index", "cluster", "model_uuid", "model_label", "seed", "family")

#: attributes of a structure set that a set made from it keeps, so per-structure provenance (``model_index``) resolves
PROVENANCE_ATTRIBUTES = ("model_uuids", "model_labels", "descriptor")


def report_to_process(message: str) -> None:
    """Send ``message`` to the report (log) of the process running now, if there is one."""
    process = Process.current()
    if process is not None:
        process.report(message)


#: extra of a calcfunction node with the CPU seconds its body used (:func:`records_cpu`)
CPU_EXTRA = "physgen_cpu_seconds"


def records_cpu(function):
    """Decorate the body of a calcfunction (under ``@calcfunction``) so that the CPU seconds it used, every thread
    of this Python process counted (``time.process_time``: training and xTB run multi-threaded), are stored in the
    extra :data:`CPU_EXTRA` of its node, with the wall seconds beside it, also when it ends on an exit code. A
    cached clone gets none: it cost nothing. ``aiida_physgen.screening.report.cpu_seconds`` adds them up by stage."""

    @functools.wraps(function)
    def body(*args, **kwargs):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            process = Process.current()
            if process is not None:
                process.node.base.extras.set_many(
                    {CPU_EXTRA: time.process_time() - cpu, "physgen_wall_seconds": time.perf_counter() - wall}
                )

    return body


def keep_provenance_attributes(output: StructureSet, source: StructureSet) -> None:
    """Copy to ``output`` the :data:`PROVENANCE_ATTRIBUTES` that ``source`` has."""
    for key in PROVENANCE_ATTRIBUTES:
        value = source.base.attributes.get(key, None)
        if value is not None:
            output.base.attributes.set(key, value)


def invalid_input(error: Exception) -> ExitCode:
    return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


def progress_reporter(report, reports: int = 20):
    """A training callback that sends the mean losses to ``report`` about ``reports`` times per group."""

    def callback(progress):
        every = max(1, progress.steps // reports)
        if progress.step % every == 0 or progress.step == progress.steps:
            means = ", ".join(f"{name} {np.mean(values):.4g}" for name, values in progress.losses.items())
            report(
                f"group {progress.group + 1}/{progress.n_groups} ({len(progress.members)} model(s)): step "
                f"{progress.step}/{progress.steps}; mean losses: {means}"
            )

    return callback


@calcfunction
def normalise_training_inputs(
    family: orm.Str, target: orm.Dict, seeds: orm.List, settings: orm.Dict | None = None, grid: orm.Dict | None = None
):
    """Target, seeds, settings and grid of a training in one canonical form.

    The family normalises its target (LoGAN: composition string, cell as floats, pbc as three
    booleans); every setting is filled in from the family's defaults, integers given for float
    settings become floats, grid values take the types of the settings they vary. Equivalent
    requests therefore give equal nodes, and ``physgen.train`` / ``physgen.train.job`` hit the cache
    (with caching enabled) instead of training the same models again.

    :param family: generator family (an entry point of ``aiida_physgen.families``), e.g. ``logan``.
    :param target: what to generate, as the family defines it (LoGAN: composition, cell, pbc).
    :param seeds: one ensemble member per seed (integers, all different).
    :param settings: nested training settings of the family; missing keys take the defaults.
    :param grid: nested settings with lists of values to vary across the ensemble.
    """
    try:
        values = canonical_training_inputs(
            get_family(family.value),
            target.get_dict(),
            list(seeds.get_list()),
            settings.get_dict() if settings is not None else None,
            grid.get_dict() if grid is not None else None,
        )
    except (ValueError, TypeError) as error:
        return invalid_input(error)
    outputs = {
        "target": orm.Dict(values["target"]),
        "seeds": orm.List(values["seeds"]),
        "settings": orm.Dict(values["settings"]),
    }
    if "grid" in values:
        outputs["grid"] = orm.Dict(values["grid"])
    return outputs


@calcfunction
@records_cpu
def train(
    training: StructureSet,
    family: orm.Str,
    target: orm.Dict,
    seeds: orm.List,
    settings: orm.Dict | None = None,
    grid: orm.Dict | None = None,
    device: orm.Str | None = None,
):
    """Train an ensemble of models of any family (every seed × every ``grid`` combination).

    Returns a ``models`` namespace with one ``physgen.generator_model`` per member
    (``model_00``, ``model_01``, ...). The losses go to the process report about 20 times per run.
    ``device`` is ``'cpu'`` (default), ``'cuda'`` or ``'auto'``; torch's threads follow
    ``OMP_NUM_THREADS`` when it is set. Long trainings belong in the ``physgen.train.job`` CalcJob:
    a calcfunction holds its daemon worker until it returns.

    :param training: the known structures to learn from.
    :param family: generator family (an entry point of ``aiida_physgen.families``), e.g. ``logan``.
    :param target: what to generate, as the family defines it (LoGAN: composition, cell, pbc).
    :param seeds: one ensemble member per seed (integers, all different).
    :param settings: nested training settings of the family; missing keys take the defaults.
    :param grid: nested settings with lists of values to vary across the ensemble (members = seeds × grid).
    :param device: ``cpu`` (default), ``cuda``, ``cuda:<n>`` or ``auto``.
    """
    process = Process.current()
    set_threads()
    try:
        models = train_ensemble(
            family.value,
            training.get_batch() if len(training) else None,
            target.get_dict(),
            settings=settings.get_dict() if settings is not None else None,
            seeds=list(seeds.get_list()),
            grid=grid.get_dict() if grid is not None else None,
            callback=progress_reporter(process.report) if process is not None else None,
            device=device.value if device is not None else "cpu",
        )
    except ValueError as error:
        return invalid_input(error)
    except TrainingDivergedError as error:
        return EXIT_CODES["ERROR_TRAINING_DIVERGED"].format(message=str(error))
    return {"models": {f"model_{i:02d}": GeneratorModel.from_model(model) for i, model in enumerate(models)}}


def shared_descriptor(models) -> dict | None:
    """The descriptor parameters shared by ``models`` (nodes), or ``None`` when they have none or differ."""
    descriptors = [model.descriptor for model in models]
    first = descriptors[0] if descriptors else None
    return first if first is not None and all(d == first for d in descriptors) else None


@calcfunction
@records_cpu
def generate(count: orm.Int, seed: orm.Int, condition: orm.Dict | None = None, **models: GeneratorModel):
    """``count`` candidates from each model, as one ``physgen.structure_set``.

    The set's ``model_index`` info array says which model (in sorted input-name order) made each
    candidate; the input names and model UUIDs are kept in the ``model_labels`` and ``model_uuids``
    attributes, and the models' shared descriptor parameters in ``descriptor`` (the selection's default).

    :param count: candidates per model (positive; bounded by the memory the request needs).
    :param seed: seed of the latent draws; model *i* samples with a seed derived from ``(seed, i)``.
    :param condition: family-defined sampling condition (an energy label, a space group, a size multiple).
    :param models: the generator models (any names; sorted by name, their order defines ``model_index``).
    """
    if not models:
        return invalid_input(ValueError("models: expected at least one generator model"))
    if count.value <= 0:
        return invalid_input(
            ValueError(f"count: got {count.value}, expected a positive number of structures per model")
        )
    labels = sorted(models)
    wrong = [
        f"{label} ({type(models[label]).__name__})" for label in labels if not isinstance(models[label], GeneratorModel)
    ]
    if wrong:
        return invalid_input(ValueError(f"models: expected physgen.generator_model nodes, got {', '.join(wrong)}"))
    try:
        # a family's warnings (e.g. RUGAN: a label outside the training range, and by how much) go to the report
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batch = generate_batch(
                [models[label].load() for label in labels],
                count.value,
                seed.value,
                condition.get_dict() if condition is not None else None,
            )
        process = Process.current()
        for warning in caught:
            if process is not None and issubclass(warning.category, UserWarning):
                process.report(f"warning: {warning.message}")
    except (ValueError, KeyError, RuntimeError) as error:  # a model file that does not load is bad input
        return invalid_input(
            error if isinstance(error, ValueError) else ValueError(f"models: cannot load a model: {error}")
        )
    candidates = StructureSet(batch)
    candidates.base.attributes.set("model_labels", labels)
    candidates.base.attributes.set("model_uuids", [models[label].uuid for label in labels])
    candidates.base.attributes.set("descriptor", shared_descriptor([models[label] for label in labels]))
    return candidates


def candidate_provenance(candidates: StructureSet, index: int) -> dict:
    """Which model made candidate ``index`` of a generated set: its UUID, input label, seed and family
    (only the candidate index for sets that did not come from ``physgen.generate``)."""
    provenance: dict = {"candidate_index": index}
    uuids = candidates.base.attributes.get("model_uuids", None)
    if not uuids or "model_index" not in candidates.info_keys:
        return provenance
    model_index = int(candidates.get_array("model_index")[index])
    model = orm.load_node(uuids[model_index])
    provenance.update(
        {
            "model_uuid": model.uuid,
            "model_label": candidates.base.attributes.get("model_labels")[model_index],
            "seed": model.base.attributes.get("seed", None),
            "family": model.base.attributes.get("family", None),
        }
    )
    return provenance


@calcfunction
@records_cpu
def select_representatives(candidates: StructureSet, seed: orm.Int, settings: orm.Dict | None = None):
    """Structure descriptors → PCA → k-means → the candidate nearest each centroid.

    The descriptor defaults to the one the models were trained with (the candidates' ``descriptor``
    attribute). Outputs: ``representatives`` (``physgen.structure_set``), ``structures`` (one
    StructureData per representative, ``rep_00``...), ``selection`` (ArrayData: indices, labels, PCA
    coordinates, distances) and, unless ``plot`` is false, ``pca_plot`` (PNG). Every representative
    StructureData is labelled ``rep_XX`` and carries its provenance as extras: ``candidate_index``,
    ``cluster``, and for generated candidates ``model_uuid``, ``model_label``, ``seed`` and ``family``.

    :param candidates: the generated structures to choose from.
    :param seed: seed of the k-means.
    :param settings: n_components, n_clusters, min_distance, plot and descriptor of the selection.
    """
    try:
        values = selection_module.SelectionSettings.from_dict(settings.get_dict() if settings is not None else None)
        batch = candidates.get_batch()
        result, kept, parameters = selection_module.select_candidates(
            batch, values, seed.value, candidates.base.attributes.get("descriptor", None)
        )
    except ValueError as error:
        return invalid_input(error)
    result_indices = kept[np.asarray(result.indices)]
    chosen = batch.subset(result_indices)
    chosen.info["candidate_index"] = result_indices
    structures = {}
    for i, atoms in enumerate(chosen):
        structure = orm.StructureData(ase=atoms)
        structure.label = f"rep_{i:02d}"
        provenance = candidate_provenance(candidates, int(result_indices[i]))
        provenance["cluster"] = i
        structure.description = (
            f"representative of k-means cluster {i}: candidate {provenance['candidate_index']} of "
            f"{candidates.__class__.__name__}<{candidates.pk}>"
            + (
                f", made by {provenance['family']} model {provenance['model_label']} (seed {provenance['seed']})"
                if "model_uuid" in provenance
                else ""
            )
        )
        structure.base.extras.set_many(provenance)
        structures[structure.label] = structure
    outputs = {"representatives": StructureSet(chosen), "structures": structures}
    arrays = orm.ArrayData()
    for name, value in result.arrays().items():
        arrays.set_array(name, np.asarray(value))
    arrays.set_array("candidate_index", kept)  # row i of the other arrays is candidate kept[i]
    arrays.base.attributes.set("n_candidates", len(batch))
    arrays.base.attributes.set("n_too_close", int(len(batch) - len(kept)))
    arrays.base.attributes.set("n_clusters", len(chosen))
    if result.requested_clusters:  # fewer candidates survived the distance filter than clusters were asked for
        arrays.base.attributes.set("requested_clusters", int(result.requested_clusters))
        process = Process.current()
        if process is not None:
            process.report(
                f"only {len(kept)} of {len(batch)} candidates have all atoms at least {values.min_distance} Å apart: "
                f"selected {len(chosen)} representatives instead of the {result.requested_clusters} asked for"
            )
    arrays.base.attributes.set("explained_variance_ratio", [float(v) for v in result.explained_variance_ratio])
    arrays.base.attributes.set("descriptor", settings_module.to_dict(parameters))
    outputs["selection"] = arrays
    if values.plot:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pca_clusters.png"
            selection_module.plot_selection(
                result, path, title=f"{len(kept)} candidates → {len(chosen)} representatives"
            )
            outputs["pca_plot"] = orm.SinglefileData(path)
    return outputs


@calcfunction
def deduplicate_minima(**inputs):
    """Group relaxed structures into basins and keep the lowest-energy member of each.

    Inputs come in pairs named ``structure_<label>`` (relaxed StructureData) and ``parameters_<label>``
    (the relaxation's output parameters, with ``energy`` in eV). Molecules are compared by bond
    graph (canonical SMILES), crystals with pymatgen's StructureMatcher. Outputs: ``minima``
    (one StructureData per basin, ``min_00`` lowest in energy per atom) and ``report`` (a Dict with
    one row per basin: key, formula, energies, how many relaxations fell into it, and whether a
    molecule stayed in one piece). Each minimum is labelled ``min_XX`` and carries ``energy``,
    ``energy_per_atom``, ``relative_per_atom``, ``formula``, ``basin_count``, ``new_minimum`` and
    ``relaxed_from`` as extras; ``relaxed`` (``physgen.structure_set``) holds every relaxed structure in label
    order with the info arrays ``energy`` (eV) and ``basin`` (the row of ``report`` it fell into).

    :param inputs: ``structure_<label>`` (relaxed StructureData) and ``parameters_<label>`` (Dict with ``energy``, eV);
        optionally ``funnel``, the ``funnel`` Dict of ``physgen.select_for_dft``: each row then says which cheap basin
        its members came from (``cheap_keys``) and whether DFT changed it (``changed_in_dft``).
    """
    from ..screening.basins import deduplicate

    funnel = inputs.pop("funnel", None)
    labels = sorted(key[len("structure_") :] for key in inputs if key.startswith("structure_"))
    missing = [label for label in labels if f"parameters_{label}" not in inputs]
    if not labels or missing:
        return invalid_input(
            ValueError(f"inputs: expected structure_<label>/parameters_<label> pairs; missing {missing}")
        )
    wrong = [
        f"structure_{label}" for label in labels if not isinstance(inputs[f"structure_{label}"], orm.StructureData)
    ]
    wrong += [f"parameters_{label}" for label in labels if not isinstance(inputs[f"parameters_{label}"], orm.Dict)]
    if wrong:
        return invalid_input(ValueError(f"inputs: expected StructureData / Dict pairs; wrong type for {wrong}"))
    no_energy = [f"parameters_{label}" for label in labels if "energy" not in inputs[f"parameters_{label}"].keys()]
    if no_energy:
        return invalid_input(
            ValueError(f"inputs: {no_energy} have no 'energy' (eV); expected the relaxations' output parameters")
        )
    atoms = [inputs[f"structure_{label}"].get_ase() for label in labels]
    try:
        energies = relaxed_energies = [float(inputs[f"parameters_{label}"]["energy"]) for label in labels]
    except (TypeError, ValueError) as error:
        return invalid_input(ValueError(f"inputs: an 'energy' is not a number: {error}"))
    try:
        basins = deduplicate(atoms, energies)
    except ValueError as error:  # e.g. a mix of molecules and crystals, or a non-finite energy
        return invalid_input(error)
    valid_energies = [b.energy_per_atom for b in basins if b.valid and b.connected]
    reference = min(valid_energies) if valid_energies else min(b.energy_per_atom for b in basins)
    rows = []
    minima = {}
    for i, basin in enumerate(basins):
        name = f"min_{i:02d}"
        structure = orm.StructureData(ase=atoms[basin.representative])
        structure.label = name
        structure.description = (
            f"{basin.formula}, {basin.energy:.4f} eV: lowest of {basin.count} relaxation(s) in basin {basin.key!r} "
            f"(relaxed from {labels[basin.representative]})"
        )
        structure.base.extras.set_many(
            {
                "energy": basin.energy,
                "energy_per_atom": basin.energy_per_atom,
                "relative_per_atom": basin.energy_per_atom - reference,
                "formula": basin.formula,
                "basin_count": basin.count,
                "new_minimum": bool(basin.valid and basin.connected),
                "relaxed_from": labels[basin.representative],
            }
        )
        minima[name] = structure
        rows.append(
            {
                "name": name,
                "key": basin.key,
                "kind": basin.kind,
                "formula": basin.formula,
                "energy": basin.energy,
                "energy_per_atom": basin.energy_per_atom,
                "relative_per_atom": basin.energy_per_atom - reference,
                "count": basin.count,
                "members": [labels[m] for m in basin.members],
                "representative": labels[basin.representative],
                "valid": basin.valid,
                "connected": basin.connected,
                "new_minimum": bool(basin.valid and basin.connected),
            }
        )
    report = {
        "n_relaxed": len(labels),
        "n_basins": len(basins),
        "n_unique_minima": sum(row["new_minimum"] for row in rows),
        "rows": rows,
    }
    if funnel is not None:  # where the cheap tier and DFT disagree: a basin that changes in DFT
        cheap_keys = {label: funnel["keys"][index] for label, index in funnel["picked"].items()}
        for row in rows:
            row["cheap_keys"] = [cheap_keys.get(label) for label in row["members"]]
            row["changed_in_dft"] = any(key != row["key"] for key in row["cheap_keys"])
        report["funnel"] = {
            key: funnel[key]
            for key in ("n_relaxed", "n_failed", "n_sound", "n_basins", "n_sound_basins", "n_picked", "budget")
        }
        report["n_changed_in_dft"] = sum(
            key != row["key"] for row in rows for key in row["cheap_keys"] if key is not None
        )
    report = orm.Dict(report)
    energies = orm.Dict({row["name"]: row["energy"] for row in rows})
    # every relaxed structure as one set (energy, basin index), for the assessors
    basin_of = np.empty(len(labels), dtype=np.int64)
    for i, basin in enumerate(basins):
        basin_of[list(basin.members)] = i
    relaxed = StructureBatch.from_atoms(atoms)
    relaxed.info.update({"energy": np.asarray(relaxed_energies, dtype=float), "basin": basin_of})
    relaxed_set = StructureSet(relaxed)
    relaxed_set.base.attributes.set("labels", labels)
    return {"minima": minima, "energies": energies, "report": report, "relaxed": relaxed_set}


def declare_exit_codes(function, labels, codes=None) -> None:
    """List the named exit codes a calcfunction returns in its process spec, so ``verdi plugin list`` and
    ``Function.process_class.exit_codes`` show them as they do for CalcJobs and WorkChains; ``codes`` is
    the module's table of exit codes (default: this module's)."""
    codes = EXIT_CODES if codes is None else codes
    spec = function.process_class.spec()
    for label in labels:
        spec.exit_code(codes[label].status, label, codes[label].message)


declare_exit_codes(normalise_training_inputs, ["ERROR_INVALID_INPUT"])
declare_exit_codes(train, ["ERROR_INVALID_INPUT", "ERROR_TRAINING_DIVERGED"])
for _function in (generate, select_representatives, deduplicate_minima):
    declare_exit_codes(_function, ["ERROR_INVALID_INPUT"])
