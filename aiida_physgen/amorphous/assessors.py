"""The ``amorphous`` assessor: generated amorphous cells against the held-out end of the MD they learnt from.

Registered as ``amorphous`` in the entry-point group ``aiida_physgen.assessors``; the screening runs it in one
``physgen.assess`` step after the DFT basins are known, with the reference set ``held_out`` (the held-out
frames of the melt-quench trajectory, which ``physgen.amorphous`` fills in from ``physgen.split_trajectory``).

It measures, with :func:`aiida_physgen.amorphous.report.quality_rows` (the same table as the ``aiida-physgen
amorphous quality`` command), one row per set:

* ``md_hold_out``: the MD floor, the second half of the hold-out against its first half (and, with
  ``grid_bins``, ``md_on_grid``: the same frames on the generator's grid);
* ``md_training``: the training frames against the hold-out (what the models saw, against what they did not);
* every generated condition as generated, before the validity check (e.g. ``redraws`` and ``no_redraws``:
  the close-contact redraws on and off);
* ``random``: as many random cells of the held-out's atoms and cell, no pair closer than the conditions'
  largest ``min_distance``: the baseline at the same minimum distance.

The columns: RDF error (mean squared difference of g(r) over the bins), the share with a pair closer than
``min_distance``, the mean coordination within ``cutoff``, the energy per atom with the MD's empirical
potential (LAMMPS single points). Figures: ``rdf``, ``angles`` (bond-angle distributions) and ``energies``
(energy-per-atom histograms), as PNG.

Then, when the screening relaxed structures with DFT: what the relaxation did to each (energy per atom,
displacement, coordination before and after, closest pair;
:func:`aiida_physgen.amorphous.report.relaxation_rows`), from the structure DFT started from (the cheap
tier's relaxed geometry with the funnel, else the representative).

Pure NumPy/ASE/matplotlib: no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..ml.batch import StructureBatch
from ..ml.random_structures import random_structures
from ..screening.assessors import Assessment, Assessor, ScreeningData
from .report import FIGURES, FLOOR, GRID_FLOOR, QUALITY_DEFAULTS, quality_rows, quality_settings, relaxation_rows

__all__ = ["AmorphousStructure", "AmorphousSettings", "RANDOM", "TRAINING"]

#: the row of the random baseline
RANDOM = "random"
#: the row of the training frames
TRAINING = "md_training"


@dataclasses.dataclass
class AmorphousSettings:
    """Settings of the ``amorphous`` assessor; the measures' defaults are the quality report's
    (:data:`aiida_physgen.amorphous.report.QUALITY_DEFAULTS`), written there only.

    :param r_max: range of the RDF, Å.
    :param bins: bins of the RDF.
    :param min_distance: the close-contact distance of the ``pair < d`` column, Å.
    :param cutoff: neighbour cut-off of the coordination and the bond angles, Å.
    :param energy_structures: structures per set that get an energy (0: no energies).
    :param potential: the empirical potential of the energies (``sw_vink``, ``sw``, ``tersoff``); ``null``:
        ``sw_vink`` (``physgen.amorphous`` passes its MD's).
    :param grid_bins: the generator's grid (bins per cell vector) for the ``md_on_grid`` row; ``null``: no
        such row (``physgen.amorphous`` passes its RePAP models').
    :param baseline: add the random baseline.
    :param baseline_min_distance: the random cells' closest pair, Å; ``null``: the largest ``min_distance`` of
        the generation's conditions, else ``min_distance``.
    :param training: add the training frames as a row.
    :param seed: seed of the random baseline.
    """

    r_max: float = QUALITY_DEFAULTS["r_max"]
    bins: int = QUALITY_DEFAULTS["bins"]
    min_distance: float = QUALITY_DEFAULTS["min_distance"]
    cutoff: float = QUALITY_DEFAULTS["cutoff"]
    energy_structures: int = QUALITY_DEFAULTS["energy_structures"]
    potential: Any = QUALITY_DEFAULTS["potential"]
    grid_bins: Any = QUALITY_DEFAULTS["grid_bins"]
    baseline: bool = True
    baseline_min_distance: Any = None
    training: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            quality_settings(self.quality())
        except ValueError as error:
            message = str(error)
            raise ValueError(message[len("settings.") :] if message.startswith("settings.") else message) from None
        for name in ("baseline", "training"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected true or false")
            setattr(self, name, bool(getattr(self, name)))
        value = self.baseline_min_distance
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf
        ):
            raise ValueError(
                f"baseline_min_distance: got {value!r}, expected a distance in Å ≥ 0, or null for the "
                "conditions' min_distance"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed: got {self.seed!r}, expected a non-negative integer")

    def quality(self) -> dict:
        """The settings of :func:`~aiida_physgen.amorphous.report.quality_rows`."""
        return {key: getattr(self, key) for key in QUALITY_DEFAULTS}


def _baseline_distance(data: ScreeningData, settings: AmorphousSettings) -> float:
    if settings.baseline_min_distance is not None:
        return float(settings.baseline_min_distance)
    distances = [
        float(c["min_distance"])
        for c in (data.conditions or {}).values()
        if isinstance(c, dict) and isinstance(c.get("min_distance"), (int, float))
    ]
    return max(distances) if distances else settings.min_distance


def _baseline(reference: StructureBatch, count: int, min_distance: float, seed: int) -> StructureBatch:
    from ase.data import chemical_symbols

    n = int(reference.n_atoms[0])
    symbols = [chemical_symbols[int(z)] for z in reference.numbers[:n]]
    try:
        return random_structures(symbols, reference.cells[0], reference.pbc[0], count, seed, min_distance=min_distance)
    except ValueError as error:
        raise ValueError(f"baseline_min_distance: the random baseline at {min_distance:g} Å: {error}") from None


def _relaxed_pairs(data: ScreeningData) -> tuple[StructureBatch, StructureBatch, list, list[str]] | None:
    """``(initial, final, energies, labels)`` of the DFT relaxations, or ``None`` when they cannot be paired.

    ``relaxed`` holds the relaxations in label order (``basin_XX`` with the funnel, ``rep_XX`` without); the
    labels are the members of the basins' rows. The start of ``basin_XX`` is the cheap-tier structure the funnel
    picked, of ``rep_XX`` the representative."""
    relaxed = data.relaxed
    if relaxed is None or not len(relaxed) or not data.basins:
        return None
    labels = sorted(label for row in data.basins for label in row.get("members", []))
    if len(labels) != len(relaxed):
        return None
    picked = (data.funnel or {}).get("picked", {})
    starts = []
    for label in labels:
        match = re.fullmatch(r"rep_(\d+)", label)
        if label in picked and data.cheap is not None:
            starts.append(data.cheap[int(picked[label])])
        elif match and data.representatives is not None and int(match.group(1)) < len(data.representatives):
            starts.append(data.representatives[int(match.group(1))])
        else:
            return None
    initial = StructureBatch.from_atoms(starts)
    return initial, relaxed, list(relaxed.info.get("energy", [None] * len(relaxed))), labels


def _metrics(rows: dict) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name, row in rows.items():
        metrics[f"rdf_error_{name}"] = row["rdf_error"]
        metrics[f"close_contact_share_{name}"] = row["close_contact_share"]
        metrics[f"mean_coordination_{name}"] = row["mean_coordination"]
        if row.get("energy_per_atom"):
            metrics[f"energy_per_atom_{name}"] = row["energy_per_atom"]["median"]
    return metrics


class AmorphousStructure(Assessor):
    """RDF error, close contacts, coordination, bond angles and energies of every generated condition against
    the held-out MD, with the MD floor, the training frames and a random baseline beside them; and what DFT did
    to the relaxed structures."""

    name = "amorphous"
    title = "Amorphous structure against the held-out MD"
    settings_class = AmorphousSettings
    requires = ("held_out",)

    def assess(self, data: ScreeningData, settings: AmorphousSettings) -> Assessment:
        held_out = data.references["held_out"]
        if not data.generated:
            raise ValueError("generated: no generated set to measure")
        sets: dict[str, StructureBatch] = {}
        reserved = {
            FLOOR,
            GRID_FLOOR,
            *([RANDOM] if settings.baseline else []),
            *([TRAINING] if settings.training and data.training is not None else []),
        }
        for name, batch in data.generated.items():
            if name in reserved:
                raise ValueError(
                    f"generated: the condition name {name!r} is the name of a row of this table "
                    f"({sorted(reserved)}); name the condition otherwise"
                )
            sets[name] = batch
        if settings.training and data.training is not None:
            sets[TRAINING] = data.training
        notes = []
        if settings.baseline:
            distance = _baseline_distance(data, settings)
            count = max(len(batch) for batch in data.generated.values())
            sets[RANDOM] = _baseline(held_out, count, distance, settings.seed)
            notes.append(
                f"{RANDOM}: {count} random cells of the held-out's atoms and cell, no pair closer than {distance:g} Å"
            )
        try:
            report = quality_rows(held_out, sets, settings.quality())
        except RuntimeError as error:  # LAMMPS failed on a set's structure
            raise ValueError(f"energies: {error}") from None
        quality = report.quality
        rows = quality["rows"]
        metrics = _metrics(rows)
        metrics["potential"] = quality["settings"]["potential"]
        if settings.baseline:
            metrics["baseline_min_distance"] = distance
        table = [
            {
                "structures": name,
                "count": row["count"],
                "rdf_error": row["rdf_error"],
                "close_contact_share": row["close_contact_share"],
                "mean_coordination": row["mean_coordination"],
                **(
                    {f"energy_per_atom_{k}": v for k, v in row["energy_per_atom"].items() if k != "count"}
                    if row.get("energy_per_atom")
                    else {}
                ),
            }
            for name, row in rows.items()
        ]
        text = [quality["text"], "", quality["note"], *notes]
        pairs = _relaxed_pairs(data)
        if pairs is not None:
            dft = relaxation_rows(*pairs, cutoff=settings.cutoff)
            text += ["", "DFT relaxations (from the structure the relaxation started from):", dft["text"]]
            metrics["dft_relaxed"] = len(dft["rows"])
            metrics["dft_mean_coordination_after"] = dft["mean_coordination_after"]
            metrics["dft_mean_displacement"] = float(np.mean([r["mean_displacement"] for r in dft["rows"].values()]))
            metrics["dft_closest_pair_after"] = float(min(r["closest_pair_after"] for r in dft["rows"].values()))
        figures = {}
        with tempfile.TemporaryDirectory(prefix="physgen-amorphous-") as directory:
            paths = report.write(directory)
            for key in FIGURES:
                if key in paths:
                    figures[key] = Path(paths[key]).read_bytes()
        return Assessment(metrics=metrics, rows=table, text="\n".join(text), figures=figures)
