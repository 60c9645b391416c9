"""Calcfunctions of the crystal-GAN chain: training filter, validity, references, assessment, picks, DFT check.

Each works on a whole ``physgen.structure_set`` (one node per stage, not one per crystal) and keeps
every structure's index in the set it came from (``info['generated_index']``), so each candidate can be
traced back through the funnel to the model that made it. The ML potential's relaxation is the existing
``physgen.relax_cheap`` (CHGNet) on these sets. Bad input ends on ``ERROR_INVALID_INPUT`` (300) before
any work; nothing is stored for a failed stage.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from ..crystals import properties as crystal_properties
from ..data.structure_set import StructureSet
from ..ml.crystal_build import primitive_cells
from ..ml.crystal_data import training_crystals
from .functions import EXIT_CODES as _SHARED
from .functions import declare_exit_codes

__all__ = ["EXIT_CODES", "crystal_training_set", "crystal_validity", "elemental_references", "assess_crystals",
           "pick_crystals", "crystal_report"]

EXIT_CODES = {
    "ERROR_INVALID_INPUT": _SHARED["ERROR_INVALID_INPUT"],
    "ERROR_NOTHING_LEFT": ExitCode(340, "no candidate is left after the {stage} stage: {message}"),
}


def _invalid(error: Exception) -> ExitCode:
    return EXIT_CODES["ERROR_INVALID_INPUT"].format(message=str(error))


def _with_info(batch, **arrays):
    batch.info.update({key: np.asarray(value) for key, value in arrays.items()})
    return batch


@calcfunction
def crystal_training_set(structures: StructureSet, space_groups: orm.List | None = None,
                         symprec: orm.Float | None = None):
    """The crystals of a set that the crystal GAN can learn from, and why the others were dropped.

    Keeps the ternaries with exactly three symmetry-distinct sites, one per element, in the requested space
    groups (all orthorhombic to cubic groups without ``space_groups``). Output ``training`` has the kept
    structures with ``info['space_group']`` and ``info['source_index']``; its attributes ``dropped`` (up to
    1,000 ``[index, reason]`` pairs) and ``dropped_counts`` (per reason) say what was left out.

    :param structures: candidate training crystals (e.g. CIFs read into a set, or a Materials Project download).
    :param space_groups: numbers (or symbols) of the space groups to keep.
    :param symprec: spglib tolerance in Å (default 0.1).
    """
    batch = structures.get_batch()
    batch.labels = [str(i) for i in range(len(batch))]  # type: ignore[attr-defined]
    try:
        crystals = training_crystals(batch, space_groups.get_list() if space_groups is not None else None,
                                     symprec.value if symprec is not None else 0.1)
    except ValueError as error:
        return _invalid(error)
    if len(crystals) == 0:
        reasons = "; ".join(f"{n} {r}" for r, n in crystals.dropped_summary().items())
        return EXIT_CODES["ERROR_NOTHING_LEFT"].format(stage="training filter", message=reasons)
    kept = np.array([int(label) for label in crystals.labels])
    out = _with_info(batch.subset(kept), space_group=crystals.space_groups, source_index=kept)
    node = StructureSet(out)
    node.base.attributes.set("dropped", [[int(i), r] for i, r in crystals.dropped[:1000]])
    node.base.attributes.set("dropped_counts", crystals.dropped_summary())
    return {"training": node}


@calcfunction
def crystal_validity(settings: orm.Dict | None = None, **structures: StructureSet):
    """The generated crystals that pass the validity checks (closest pair, density, charge balance).

    Output ``valid`` holds those of every input set, with ``generated_set`` (the input's position in sorted
    name order, names in the attribute ``generated_sets``), ``generated_index`` (the index in that set),
    ``min_pair_distance`` (Å), ``density`` (g/cm³) and ``charge_balanced`` (1, 0 or -1 = not applicable) as
    info arrays, each crystal as its primitive cell; the attribute ``counts`` has the number generated, valid and symmetric, the reasons of the
    others, and the same per input set.

    :param settings: min_distance (Å, 0.5), density_range ([low, high] g/cm³, [1, 25]), charge_balance (true).
    :param structures: generated crystals (``physgen.generate`` with a crystal_gan model), any names.
    """
    from ..ml.batch import StructureBatch

    if not structures:
        return _invalid(ValueError("structures: expected at least one set of generated crystals"))
    names = sorted(structures)
    batches = []
    for position, name in enumerate(names):
        part = structures[name].get_batch()
        batches.append(_with_info(part, generated_set=np.full(len(part), position),
                                  generated_index=np.arange(len(part))))
    merged = StructureBatch.concatenate(batches)
    result = _validity(merged, settings)
    if isinstance(result, ExitCode):
        return result
    node, summary = result
    summary["per_set"] = {}
    which = merged.info["generated_set"]
    kept_sets = node.get_batch().info["generated_set"]
    symmetric = merged.info.get("symmetric", np.zeros(len(merged)))
    for position, name in enumerate(names):
        summary["per_set"][name] = {"generated": int((which == position).sum()),
                                    "symmetric": int(symmetric[which == position].sum()),
                                    "valid": int((kept_sets == position).sum())}
    node.base.attributes.set("counts", summary)
    node.base.attributes.set("generated_sets", names)
    return {"valid": node}


def _validity(batch, settings):
    values = dict(settings.get_dict()) if settings is not None else {}
    unknown = sorted(set(values) - {"min_distance", "density_range", "charge_balance"})
    if unknown:
        return _invalid(ValueError(f"settings: unknown key(s) {unknown}; expected min_distance, density_range, "
                                   "charge_balance"))
    try:
        flags = crystal_properties.validity(batch, **values)
    except ValueError as error:
        return _invalid(ValueError(f"settings.{error}"))
    reasons = crystal_properties.validity_reasons(flags)
    counts: dict[str, int] = {}
    for reason in reasons:
        if reason:
            key = re.sub(r"\d+(\.\d+)?", "#", reason)  # one count per kind of failure, not per value
            counts[key] = counts.get(key, 0) + 1
    keep = np.flatnonzero(flags["valid"] == 1)
    symmetric = batch.info.get("symmetric", np.zeros(len(batch)))
    summary = {"generated": len(batch), "valid": int(keep.size), "symmetric": int(np.sum(symmetric)),
               "valid_and_symmetric": int(np.sum(symmetric[keep])) if keep.size else 0, "reasons": counts}
    if keep.size == 0:
        return EXIT_CODES["ERROR_NOTHING_LEFT"].format(stage="validity", message=str(counts))
    arrays = {key: flags[key][keep] for key in ("min_pair_distance", "density", "charge_balanced")}
    return StructureSet(_with_info(primitive_cells(batch.subset(keep)), **arrays)), summary


@calcfunction
def elemental_references(structures: StructureSet):
    """One reference crystal (or molecule in a box, for the gases) of every element of ``structures``,
    from ASE's reference states, to be relaxed the same way as the candidates (``info['element']``: Z).

    :param structures: the candidates whose elements need references.
    """
    try:
        return {"references": StructureSet(crystal_properties.elemental_reference_structures(structures.elements))}
    except ValueError as error:
        return _invalid(error)


@calcfunction
def assess_crystals(relaxed: StructureSet, references: StructureSet, training: StructureSet | None = None,
                    settings: orm.Dict | None = None):
    """Formation energy per atom (against the relaxed elemental references), uniqueness and novelty.

    Output ``assessed``: the relaxed crystals with ``formation_energy`` (eV/atom, NaN where the relaxation
    failed), ``group``, ``unique`` (1 for the lowest-energy member of each StructureMatcher group) and
    ``novel`` (1 when no training crystal matches) as info arrays; the attribute ``references`` has the
    elemental energies (eV/atom) and ``counts`` the funnel's numbers.

    :param relaxed: the candidates relaxed with the ML potential (``physgen.relax_cheap``).
    :param references: the elemental references relaxed the same way.
    :param training: the training crystals, for novelty.
    :param settings: ltol, stol, angle_tol of pymatgen's StructureMatcher (0.2, 0.3, 5.0).
    """
    values = dict(settings.get_dict()) if settings is not None else {}
    unknown = sorted(set(values) - {"ltol", "stol", "angle_tol"})
    if unknown:
        return _invalid(ValueError(f"settings: unknown key(s) {unknown}; expected ltol, stol, angle_tol"))
    batch = relaxed.get_batch()
    try:
        mu = crystal_properties.reference_energies(references.get_batch())
        formation = crystal_properties.formation_energies(batch, mu)
        batch.info["formation_energy"] = formation
        flags = crystal_properties.uniqueness_and_novelty(batch, training.get_batch() if training is not None else None,
                                                      **values)
    except ValueError as error:
        return _invalid(error)
    out = _with_info(batch, **{key: flags[key] for key in ("group", "unique", "novel")})
    finite = np.isfinite(formation)
    unique = flags["unique"] == 1
    novel = flags["novel"] == 1
    counts = {
        "relaxed": int(finite.sum()),
        "unique": int((unique & finite).sum()),
        "unique_novel": int((unique & novel & finite).sum()),
        "negative_formation_energy": int((unique & novel & finite & (formation < 0)).sum()),
    }
    node = StructureSet(out)
    node.base.attributes.set("references", {k: float(v) for k, v in mu.items()})
    node.base.attributes.set("counts", counts)
    return {"assessed": node}


@calcfunction
def pick_crystals(assessed: StructureSet, count: orm.Int):
    """The ``count`` unique, novel crystals of lowest formation energy, as primitive cells for DFT (only
    those with no pair closer than 0.5 Å after the relaxation).

    Outputs ``picked.crystal_<i>`` (``StructureData``; extras ``assessed_index``, ``formation_energy``,
    ``generated_index``), lowest formation energy first. Symmetric crystals (spglib found the requested
    group) come before the others at equal standing only through their energy: symmetry is reported,
    not required.

    :param assessed: the assessed crystals (``physgen.assess_crystals``).
    :param count: how many to pick (the DFT budget).
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    if count.value < 1:
        return _invalid(ValueError(f"count: got {count.value}, expected a positive number of crystals"))
    batch = assessed.get_batch()
    info = batch.info
    formation = np.asarray(info["formation_energy"], dtype=float)
    # a relaxation may also pull atoms together: DFT gets only crystals whose closest pair after it is still
    # at least 0.5 Å (GPAW's input check refuses closer pairs)
    closest = crystal_properties.validity(batch, charge_balance=False)["min_pair_distance"]
    eligible = np.flatnonzero((info["unique"] == 1) & (info["novel"] != 0) & np.isfinite(formation)
                              & (closest >= 0.5))
    if eligible.size == 0:
        return EXIT_CODES["ERROR_NOTHING_LEFT"].format(
            stage="uniqueness and novelty",
            message="no unique, novel crystal with a finite energy and no pair closer than 0.5 Å after relaxation")
    order = eligible[np.argsort(formation[eligible], kind="stable")][: count.value]
    picked = {}
    for rank, index in enumerate(order):
        structure = AseAtomsAdaptor.get_structure(batch[int(index)]).get_primitive_structure()
        node = orm.StructureData(pymatgen=structure)
        node.label = f"crystal_{rank}"
        node.base.extras.set_many({
            "assessed_index": int(index),
            "formation_energy": float(formation[index]),
            "generated_index": int(info["generated_index"][index]) if "generated_index" in info else int(index),
        })
        picked[f"crystal_{rank}"] = node
    return {"picked": picked}


def _histogram(formation: np.ndarray, dft: dict[str, tuple[float, float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.4), dpi=120)
    finite = formation[np.isfinite(formation)]
    axis.hist(finite, bins=min(40, max(5, finite.size // 5)), color="0.6", label="CHGNet (unique crystals)")
    for i, (ml, ks) in enumerate(dft.values()):
        axis.axvline(ml, color="C0", lw=1, label="picked, CHGNet" if i == 0 else None)
        if math.isfinite(ks):
            axis.axvline(ks, color="C3", lw=1, ls="--", label="picked, DFT" if i == 0 else None)
    axis.axvline(0.0, color="k", lw=0.8)
    axis.set_xlabel("formation energy (eV/atom)")
    axis.set_ylabel("crystals")
    axis.legend(fontsize=7)
    figure.tight_layout()
    handle = io.BytesIO()
    figure.savefig(handle, format="png")
    plt.close(figure)
    return handle.getvalue()


def dft_formation_energies(dft: dict) -> dict[str, dict]:
    """Per picked crystal, CHGNet's and DFT's formation energies (eV/atom), from the ``dft`` inputs of
    :func:`crystal_report`: ``<label>_parameters`` / ``<label>_structure`` of every DFT relaxation, crystals
    ``crystal_<i>`` (with the extra ``formation_energy``) and elemental references ``ref_<symbol>``."""
    per_atom = {}
    for key, node in dft.items():
        if key.endswith("_parameters"):
            label = key[: -len("_parameters")]
            structure = dft[f"{label}_structure"]
            per_atom[label] = (float(node["energy"]) / len(structure.sites), structure)
    mu = {label[4:]: energy for label, (energy, _) in per_atom.items() if label.startswith("ref_")}
    rows = {}
    for label, (energy, structure) in sorted(per_atom.items()):
        if not label.startswith("crystal_"):
            continue
        symbols = [site.kind_name for site in structure.sites]
        kinds = {kind.name: kind.symbol for kind in structure.kinds}
        symbols = [kinds[s] for s in symbols]
        missing = sorted(set(symbols) - set(mu))
        ks = None if missing else energy - float(np.mean([mu[s] for s in symbols]))
        rows[label] = {"formula": structure.get_formula(mode="hill_compact"), "ml": float(
            dft[f"{label}_picked"].base.extras.get("formation_energy")) if f"{label}_picked" in dft else None,
            "dft": ks}
    return rows


@calcfunction
def crystal_report(valid: StructureSet, assessed: StructureSet, **dft):
    """The funnel's report: counts at every stage, the formation-energy histogram and the DFT check.

    :param valid: the validity stage's output (its ``counts`` attribute: generated, valid, symmetric ...).
    :param assessed: the assessed crystals (``physgen.assess_crystals``).
    :param dft: the DFT relaxations: ``crystal_<i>_parameters``, ``crystal_<i>_structure`` and
        ``crystal_<i>_picked`` (the picked structure, whose extra ``formation_energy`` is CHGNet's) of each
        picked crystal, ``ref_<symbol>_parameters`` and ``ref_<symbol>_structure`` of each element.
    """
    rows = dft_formation_energies(dft)
    validity = valid.base.attributes.get("counts")
    counts = {key: value for key, value in validity.items() if key != "reasons"}
    counts.update(assessed.base.attributes.get("counts"))
    pairs = {label: (float(row["ml"]), float(row["dft"]) if row.get("dft") is not None else math.nan)
             for label, row in rows.items()}
    confirmed = sum(1 for ml, ks in pairs.values() if math.isfinite(ks) and ks < 0)
    counts["dft_relaxed"] = sum(1 for _, ks in pairs.values() if math.isfinite(ks))
    counts["dft_negative_formation_energy"] = confirmed
    errors = [ks - ml for ml, ks in pairs.values() if math.isfinite(ks)]
    stages = ["generated", "valid", "symmetric", "relaxed", "unique", "unique_novel", "negative_formation_energy",
              "dft_relaxed", "dft_negative_formation_energy"]
    lines = ["| stage | crystals |", "|---|---|"] + [f"| {s} | {counts.get(s, '')} |" for s in stages]
    if rows:
        lines += ["", "| crystal | formula | CHGNet Ef (eV/atom) | DFT Ef (eV/atom) |", "|---|---|---|---|"]
        for label, row in rows.items():
            ks = row.get("dft")
            lines.append(f"| {label} | {row.get('formula', '')} | {row['ml']:.3f} | "
                         f"{'failed' if ks is None else f'{ks:.3f}'} |")
        if errors:
            lines.append(f"\nDFT − CHGNet formation energy: mean {np.mean(errors):+.3f}, mean absolute "
                         f"{np.mean(np.abs(errors)):.3f} eV/atom over {len(errors)} crystal(s)")
    formation = np.asarray(assessed.get_batch().info["formation_energy"], dtype=float)
    unique = np.asarray(assessed.get_batch().info["unique"]) == 1
    figure = orm.SinglefileData(io.BytesIO(_histogram(formation[unique], pairs)), filename="formation_energy.png")
    report = orm.Dict({"counts": counts, "invalid_reasons": validity.get("reasons", {}), "dft": rows,
                       "text": "\n".join(lines),
                       "dft_minus_ml_mae": float(np.mean(np.abs(errors))) if errors else None})
    return {"report": report, "histogram": figure}


for _function, _labels in (
    (crystal_training_set, ["ERROR_INVALID_INPUT", "ERROR_NOTHING_LEFT"]),
    (crystal_validity, ["ERROR_INVALID_INPUT", "ERROR_NOTHING_LEFT"]),
    (elemental_references, ["ERROR_INVALID_INPUT"]),
    (assess_crystals, ["ERROR_INVALID_INPUT"]),
    (pick_crystals, ["ERROR_INVALID_INPUT", "ERROR_NOTHING_LEFT"]),
    (crystal_report, ["ERROR_INVALID_INPUT"]),
):
    declare_exit_codes(_function, _labels, EXIT_CODES)
