"""Calcfunctions of the generation chain: ``physgen.train_logan`` → ``physgen.generate`` →
``physgen.select_representatives``.

Each one converts nodes to arrays, calls :mod:`aiida_physgen.ml` / :mod:`aiida_physgen.selection`,
and converts the results back into nodes. Every random choice takes its seed from an input node.
Bad input and diverged training end the process on a named exit code with no outputs stored.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml import logan
from ..ml.descriptors import DescriptorSettings
from ..ml.wgan import TrainingDivergedError
from .. import selection as selection_module

__all__ = [
    "train_logan",
    "generate",
    "select_representatives",
    "EXIT_CODES",
    "SELECTION_DEFAULTS",
]

#: named exit codes shared by the calcfunctions and re-exposed by the workflows
EXIT_CODES = {
    "ERROR_INVALID_INPUT": ExitCode(300, "invalid input: {message}"),
    "ERROR_TRAINING_DIVERGED": ExitCode(310, "training diverged: {message}"),
}

SELECTION_DEFAULTS = {
    "n_components": 10,
    "n_clusters": 20,
    "r_cut": 5.0,
    "n_max": 4,
    "l_max": 4,
    "max_neighbours": 20,
    "radial": "gaussian",
    "plot": True,
    # candidates with two atoms closer than this (Å) are dropped before clustering: no DFT code
    # takes them (physgen.gpaw rejects < 0.5 Å), so a representative there would be wasted
    "min_distance": 0.5,
}


def _invalid(error: Exception) -> ExitCode:
    return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


@calcfunction
def train_logan(
    training: StructureSet,
    composition: orm.Str,
    cell: orm.List,
    pbc: orm.List,
    seeds: orm.List,
    settings: orm.Dict | None = None,
    grid: orm.Dict | None = None,
):
    """Train an ensemble of LoGAN generators (every seed × every ``grid`` combination).

    Returns a ``models`` namespace with one ``physgen.generator_model`` per member
    (``model_00``, ``model_01``, ...).
    """
    try:
        seed_values = [int(s) for s in seeds.get_list()]
        models = logan.train_logan(
            training.get_batch() if len(training) else None,
            composition.value,
            np.asarray(cell.get_list(), dtype=float),
            pbc.get_list(),
            settings=settings.get_dict() if settings is not None else None,
            seeds=seed_values,
            grid=grid.get_dict() if grid is not None else None,
        )
    except ValueError as error:
        return _invalid(error)
    except TrainingDivergedError as error:
        return EXIT_CODES["ERROR_TRAINING_DIVERGED"].format(message=str(error))
    return {
        "models": {
            f"model_{i:02d}": GeneratorModel.from_module(model.module, model.config) for i, model in enumerate(models)
        }
    }


@calcfunction
def generate(count: orm.Int, seed: orm.Int, **models: GeneratorModel):
    """``count`` candidates from each generator model, as one ``physgen.structure_set``.

    The set's ``model_index`` info array says which model (in sorted input-name order) made each
    candidate; the input names are kept in the ``model_labels`` attribute.
    """
    if not models:
        return _invalid(ValueError("models: expected at least one generator model"))
    if count.value <= 0:
        return _invalid(ValueError(f"count: got {count.value}, expected a positive number of structures per model"))
    labels = sorted(models)
    try:
        batch = logan.generate([models[label].load() for label in labels], count.value, seed.value)
    except ValueError as error:
        return _invalid(error)
    candidates = StructureSet(batch)
    candidates.base.attributes.set("model_labels", labels)
    return candidates


def _selection_settings(settings: orm.Dict | None) -> dict:
    values = dict(SELECTION_DEFAULTS)
    given = settings.get_dict() if settings is not None else {}
    unknown = sorted(set(given) - set(values))
    if unknown:
        raise ValueError(f"settings: unknown key(s) {unknown}; expected some of {sorted(values)}")
    values.update(given)
    for key in ("n_components", "n_clusters"):
        if not isinstance(values[key], int) or values[key] < 1:
            raise ValueError(f"{key}: got {values[key]!r}, expected a positive integer")
    return values


@calcfunction
def select_representatives(candidates: StructureSet, seed: orm.Int, settings: orm.Dict | None = None):
    """Structure descriptors → PCA → k-means → the candidate nearest each centroid.

    Outputs: ``representatives`` (``physgen.structure_set``), ``structures`` (one StructureData per
    representative, ``rep_00``...), ``selection`` (ArrayData: indices, labels, PCA coordinates,
    distances) and, unless ``plot`` is false, ``pca_plot`` (PNG).
    """
    try:
        values = _selection_settings(settings)
        batch = candidates.get_batch()
        kept = np.flatnonzero(batch.min_distances() >= float(values["min_distance"]))
        if values["n_clusters"] > len(kept):
            raise ValueError(
                f"n_clusters: got {values['n_clusters']}, but only {len(kept)} of the {len(batch)} candidates have "
                f"all atoms at least min_distance={values['min_distance']} Å apart"
            )
        descriptor = DescriptorSettings(
            species=tuple(sorted(set(int(z) for z in batch.numbers))),
            r_cut=float(values["r_cut"]),
            n_max=int(values["n_max"]),
            l_max=int(values["l_max"]),
            max_neighbours=int(values["max_neighbours"]),
            radial=values["radial"],
        )
    except ValueError as error:
        return _invalid(error)
    pool = batch.subset(kept) if len(kept) < len(batch) else batch
    result = selection_module.select_representatives(
        pool,
        descriptor,
        n_components=values["n_components"],
        n_clusters=values["n_clusters"],
        seed=seed.value,
    )
    result_indices = kept[np.asarray(result.indices)]
    chosen = batch.subset(result_indices)
    chosen.info["candidate_index"] = result_indices
    outputs = {
        "representatives": StructureSet(chosen),
        "structures": {
            f"rep_{i:02d}": orm.StructureData(ase=atoms) for i, atoms in enumerate(chosen)
        },
    }
    arrays = orm.ArrayData()
    for name, value in result.arrays().items():
        arrays.set_array(name, np.asarray(value))
    arrays.set_array("candidate_index", kept)  # row i of the other arrays is candidate kept[i]
    arrays.base.attributes.set("n_candidates", len(batch))
    arrays.base.attributes.set("n_too_close", int(len(batch) - len(kept)))
    arrays.base.attributes.set("explained_variance_ratio", [float(v) for v in result.explained_variance_ratio])
    outputs["selection"] = arrays
    if values["plot"]:
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
    molecule stayed in one piece).
    """
    from ..basins import deduplicate

    labels = sorted(key[len("structure_"):] for key in inputs if key.startswith("structure_"))
    missing = [label for label in labels if f"parameters_{label}" not in inputs]
    if not labels or missing:
        return _invalid(ValueError(f"inputs: expected structure_<label>/parameters_<label> pairs; missing {missing}"))
    atoms = [inputs[f"structure_{label}"].get_ase() for label in labels]
    energies = [float(inputs[f"parameters_{label}"]["energy"]) for label in labels]
    try:
        basins = deduplicate(atoms, energies)
    except ValueError as error:  # e.g. a mix of molecules and crystals, or a non-finite energy
        return _invalid(error)
    valid_energies = [b.energy_per_atom for b in basins if b.valid and b.connected]
    reference = min(valid_energies) if valid_energies else min(b.energy_per_atom for b in basins)
    rows = []
    minima = {}
    for i, basin in enumerate(basins):
        name = f"min_{i:02d}"
        structure = orm.StructureData(ase=atoms[basin.representative])
        minima[name] = structure
        rows.append({
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
        })
    report = orm.Dict({
        "n_relaxed": len(labels),
        "n_basins": len(basins),
        "n_unique_minima": sum(row["new_minimum"] for row in rows),
        "rows": rows,
    })
    energies = orm.Dict({row["name"]: row["energy"] for row in rows})
    return {"minima": minima, "energies": energies, "report": report}
