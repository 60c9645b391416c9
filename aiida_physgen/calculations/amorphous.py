"""Calcfunctions of the RePAP chain: the melt-quench trajectory, its split, the quality report and the DFT check.

``physgen.amorphous_md`` runs the molecular dynamics (:mod:`aiida_physgen.amorphous.md`, LAMMPS) with its
settings as the input node, so the provenance of every generated structure starts at the simulation.
``physgen.split_trajectory`` keeps the end of the trajectory out of training (held out, in time order);
``physgen.amorphous_quality`` measures named sets of generated structures against that hold-out
(:mod:`aiida_physgen.amorphous.quality`) and draws the figures; ``physgen.amorphous_dft_check`` says
what DFT relaxation did to a few of them. Bad input ends on ``ERROR_INVALID_INPUT`` (300) before any
work; nothing is stored for a failed step.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..amorphous import md
from ..amorphous import quality as amorphous_quality
from ..amorphous.report import quality_rows, quality_settings, quality_table
from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..ml.batch import StructureBatch
from .functions import EXIT_CODES, declare_exit_codes

__all__ = ["amorphous_md", "split_trajectory", "amorphous_quality_report", "amorphous_dft_check",
           "quality_settings", "quality_table"]


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
    node.base.attributes.set_many({
        "potential": values.potential,
        "potential_description": md.potential_description(values.potential),
        "cell_length": md.cell_length(values.atoms, values.density),
        "md_settings": settings_module.to_dict(values),
    })
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
        return _invalid(ValueError(f"held_out_fraction: {fraction} of {count} frames holds out {held} and keeps "
                                   f"{count - held}; expected at least 2 of each"))
    batch = trajectory.get_batch()
    batch.info["frame"] = np.arange(count)
    keep = {key: value for key, value in trajectory.base.attributes.all.items()
            if key in ("potential", "potential_description", "cell_length", "md_settings")}
    outputs = {}
    for link, index in (("training", np.arange(count - held)), ("held_out", np.arange(count - held, count))):
        node = StructureSet(batch.subset(index))
        node.base.attributes.set_many(keep)
        outputs[link] = node
    return outputs


# ---------------------------------------------------------------------- quality
def _png(path: Path) -> orm.SinglefileData:
    return orm.SinglefileData(io.BytesIO(path.read_bytes()), filename=path.name)


@calcfunction
def amorphous_quality_report(held_out: StructureSet, settings: orm.Dict | None = None, **structures: StructureSet):
    """How close named sets of structures are to the held-out MD frames: RDF error, close contacts,
    coordination, bond angles and the energy per atom with the trajectory's own potential
    (:func:`aiida_physgen.amorphous.report.quality_rows`, which the ``amorphous quality`` command runs too).

    The MD floor (``md_hold_out``) is the second half of the hold-out against its first half: the RDF
    error that finite sampling alone leaves; with ``grid_bins``, ``md_on_grid`` is the same half placed on
    the generator's grid. Outputs: ``quality`` (Dict: per set ``count``, ``rdf_error`` (mean over the bins
    of (g − g_MD)², the RePAP paper's measure), ``close_contact_share`` (share with a pair closer than
    ``min_distance``), ``mean_coordination`` (within ``cutoff``), ``energy_per_atom`` (mean, std, count),
    the curves, and ``text``, the table), ``rdf_plot``, ``angle_plot`` and ``energy_plot`` (PNG).

    :param held_out: the held-out frames (``physgen.split_trajectory``'s ``held_out``).
    :param settings: r_max (Å, 8), bins (160), min_distance (Å, 2.0), cutoff (Å, 2.85), energy_structures
        (per set, 500), potential (default: the trajectory's), grid_bins (none).
    :param structures: the sets to measure, by name (e.g. ``repap``, ``repap_no_redraws``, ``random``).
    """
    batches = {name: node.get_batch() for name, node in structures.items()}
    try:
        report = quality_rows(held_out.get_batch(), batches, settings.get_dict() if settings is not None else None,
                              held_out.base.attributes.get("potential", None))
    except (ValueError, RuntimeError) as error:
        return _invalid(error)
    with tempfile.TemporaryDirectory() as directory:
        paths = report.write(directory)
        outputs = {"quality": orm.Dict(report.quality), "rdf_plot": _png(paths["rdf"]),
                   "angle_plot": _png(paths["angles"])}
        if "energies" in paths:
            outputs["energy_plot"] = _png(paths["energies"])
    return outputs


# ---------------------------------------------------------------------- the DFT check
@calcfunction
def amorphous_dft_check(cutoff: orm.Float | None = None, **relaxations):
    """What DFT relaxation did to generated structures: energy drop, displacement, coordination before and
    after, closest pair: do they relax to amorphous minima (four-fold, no crystallisation) or fall apart?

    :param cutoff: neighbour cut-off for the coordination, Å (default 2.85).
    :param relaxations: ``<label>_initial`` (StructureData), ``<label>_structure`` (the relaxed one) and
        ``<label>_parameters`` (the DFT engine's output parameters: ``energy`` in eV, ``fmax`` when known).
    """
    cut = 2.85 if cutoff is None else float(cutoff.value)
    labels = sorted({key.rsplit("_", 1)[0] for key in relaxations})
    rows = {}
    for label in labels:
        try:
            initial = relaxations[f"{label}_initial"].get_ase()
            final = relaxations[f"{label}_structure"].get_ase()
            parameters = relaxations[f"{label}_parameters"].get_dict()
        except KeyError as error:
            return _invalid(ValueError(f"relaxations: {error.args[0]} is missing; every label needs _initial, "
                                       "_structure and _parameters"))
        if len(initial) != len(final):
            return _invalid(ValueError(f"relaxations: {label} has {len(initial)} atoms before and {len(final)} after"))
        before, after = StructureBatch.from_atoms([initial]), StructureBatch.from_atoms([final])
        delta = final.positions - initial.positions
        fractional = np.linalg.solve(initial.cell.array.T, delta.T).T
        fractional -= np.round(fractional)
        displacement = np.linalg.norm(fractional @ initial.cell.array, axis=1)
        coordination_after = amorphous_quality.coordination(after, cut)[0]
        steps = parameters.get("relax_steps")
        rows[label] = {
            "atoms": len(final),
            "energy_per_atom": float(parameters["energy"]) / len(final) if "energy" in parameters else None,
            "mean_displacement": float(displacement.mean()),
            "max_displacement": float(displacement.max()),
            "coordination_before": float(amorphous_quality.coordination(before, cut)[0]),
            "coordination_after": float(coordination_after),
            "closest_pair_after": float(amorphous_quality.min_pair_distances(after)[0]),
            "steps": steps,
        }
    lines = ["| structure | E/atom (eV) | mean / max displacement (Å) | coordination before → after | closest pair (Å) |",
             "|---|---|---|---|---|"]
    for label, row in rows.items():
        energy = "" if row["energy_per_atom"] is None else f"{row['energy_per_atom']:.3f}"
        lines.append(f"| {label} | {energy} | {row['mean_displacement']:.2f} / {row['max_displacement']:.2f} | "
                     f"{row['coordination_before']:.2f} → {row['coordination_after']:.2f} | "
                     f"{row['closest_pair_after']:.2f} |")
    finite = [row["coordination_after"] for row in rows.values() if math.isfinite(row["coordination_after"])]
    return orm.Dict({"rows": rows, "text": "\n".join(lines),
                     "mean_coordination_after": float(np.mean(finite)) if finite else None})


for _function in (amorphous_md, split_trajectory, amorphous_quality_report, amorphous_dft_check):
    declare_exit_codes(_function, ["ERROR_INVALID_INPUT"], EXIT_CODES)
