"""The ``label_consistency`` assessor: does a conditional generator give the labels it was asked for?

Registered as ``label_consistency`` in the entry-point group ``aiida_physgen.assessors``; the screening runs it
in one ``physgen.assess`` step after the DFT basins are known. RUGAN's check (Mills, Casert, Tamblyn 2020):
every generated set (one per condition: ``scale_1``, ``scale_2``...; sheets with the requested label in
``info['label']``, eV/Å²) is labelled again by the EDNN (the screening's cheap model, as in the paper) and, with
``reference: true``, by the reference method itself (Tersoff via LAMMPS, what the paper could not do); the
requested and obtained distributions are compared with the two-sample Kolmogorov–Smirnov test
(:mod:`aiida_physgen.graphene.label_check`). Beside them, two baseline rows computed on the training sheets:
the EDNN's own error where the labels are right, and a label-blind generator.

Pure NumPy/SciPy/matplotlib (and LAMMPS for the reference): no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..screening.assessors import Assessment, Assessor, ScreeningData
from . import label_check, sheet_structure
from .reference_energy import ReferenceSettings
from .surrogate import score_sheets

__all__ = ["LabelConsistency", "LabelConsistencySettings"]


@dataclasses.dataclass
class LabelConsistencySettings:
    """Settings of the ``label_consistency`` assessor; each default is written here only.

    :param reference: also label the generated sheets with the reference method (not only the EDNN).
    :param reference_settings: how (:class:`~aiida_physgen.graphene.reference_energy.ReferenceSettings`:
        ``method``, ``relax``, ``fmax``, ``max_steps``); the method's defaults when absent. A porous-graphene
        screening (``physgen.graphene``) sets them to those its training sheets were labelled with.
    :param baseline: add the baseline rows (training sheets: the EDNN against their labels; label-blind).
    :param figures: make the heat maps and histograms (two PNGs per generated set).
    :param structure: compare each generated set's sheets with the training sheets (per hole and per area):
        hole sizes, coordination shares, edge per area and the connected fraction, each with a two-sample test
        (:mod:`aiida_physgen.graphene.sheet_structure`).
    """

    reference: bool = False
    reference_settings: dict | None = None
    baseline: bool = True
    figures: bool = True
    structure: bool = True

    def __post_init__(self) -> None:
        for name in ("reference", "baseline", "figures", "structure"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected true or false")
            setattr(self, name, bool(getattr(self, name)))
        if self.reference_settings is not None:
            if not isinstance(self.reference_settings, dict):
                raise ValueError(
                    f"reference_settings: got {self.reference_settings!r}, expected a dictionary of "
                    "reference settings (method, relax, fmax, max_steps)"
                )
            self.reference_settings = ReferenceSettings.from_dict(
                self.reference_settings, where="reference_settings"
            ).to_dict()

    def labeller(self) -> ReferenceSettings | None:
        """The reference method's settings when the reference labels are asked for, else ``None``."""
        return (
            ReferenceSettings.from_dict(self.reference_settings, where="reference_settings") if self.reference else None
        )


def _surrogate(model: Any):
    """The cheap model when it is a surrogate (the EDNN), else ``None``."""
    family = getattr(model, "family", None)
    return model if getattr(family, "role", None) == "surrogate" else None


def _training_labels(data: ScreeningData, model: Any) -> tuple[np.ndarray, float] | None:
    """The training sheets' labels (eV/Å², from the target property's energies) and their area, or ``None``
    when the training set has no energies."""
    from ..ml import graphene

    training = data.training
    if training is None or len(training) == 0:
        return None
    key = (getattr(model, "config", None) or {}).get("target", {}).get("property", "energy")
    if key not in training.info:
        return None
    _, lattice = graphene.batch_to_sheets(training, where="training")
    return np.asarray(training.info[key], dtype=float) / lattice.area, lattice.area


class LabelConsistency(Assessor):
    """Requested against obtained label per generated set, by the EDNN and (``reference: true``) by the
    reference method: the Kolmogorov–Smirnov table, heat maps and histograms, and baseline rows."""

    name = "label_consistency"
    title = "Label consistency: requested against obtained energy per area (Kolmogorov–Smirnov)"
    settings_class = LabelConsistencySettings

    def assess(self, data: ScreeningData, settings: LabelConsistencySettings) -> Assessment:
        model = _surrogate(data.cheap_model)
        reference = settings.labeller()
        if model is None and reference is None:
            raise ValueError(
                "the obtained labels need the EDNN (the screening's cheap_model, a surrogate) or the "
                "reference method (settings reference: true); the screening has neither"
            )
        if not data.generated:
            raise ValueError("generated: the screening has no generated set")
        training = _training_labels(data, model)
        if training is not None:
            base_area = training[1]
        elif model is not None and model.config.get("lattice"):
            from ..ml.graphene import Lattice

            base_area = Lattice.from_dict(model.config["lattice"]).area
        else:
            raise ValueError(
                "training: the sheets' scales need the training sheets (with energies) or the EDNN's lattice"
            )
        scales = label_check.sheet_scales(data.generated, base_area)
        requested, obtained = label_check.obtained_labels(data.generated, model, reference)
        rows = label_check.ks_rows(requested, obtained, scales)
        if settings.baseline and training is not None:
            surrogate = score_sheets(model, data.training)[0] / base_area if model is not None else None
            rows += label_check.baseline_rows(training[0], surrogate)
        text = label_check.format_ks_table(rows)
        held_out = (model.config.get("held_out") if model is not None else None) or {}
        if {"count", "median_ae", "mae", "baseline_median_ae"} <= set(held_out):
            text += "\n" + label_check.held_out_line(held_out)
        metrics = self._metrics(rows, model, requested)
        if settings.structure and data.training is not None and len(data.training):
            structure = sheet_structure.compare_with_training(data.generated, data.training)
            text += "\n\nStructure of the generated sheets against the training sheets:\n"
            text += sheet_structure.format_structure_table(structure)
            for name, structure_rows in structure.items():
                for row in structure_rows:
                    metrics[f"structure_{row['test'].lower()}_{name}_{row['quantity']}"] = row["statistic"]
                    metrics[f"structure_p_value_{name}_{row['quantity']}"] = row["p_value"]
        figures = {}
        if settings.figures:
            with tempfile.TemporaryDirectory() as folder:
                for name, path in label_check.plot_label_check(requested, obtained, folder, scales).items():
                    figures[name] = Path(path).read_bytes()
        return Assessment(metrics=metrics, rows=rows, text=text, figures=figures)

    @staticmethod
    def _metrics(rows, model, requested) -> dict[str, Any]:
        metrics: dict[str, Any] = {f"n_generated_{name}": int(len(values)) for name, values in requested.items()}
        for row in rows:
            prefix = f"{row['condition']}_{row['method']}"
            metrics[f"ks_{prefix}"] = row["ks"]
            metrics[f"p_value_{prefix}"] = row["p_value"]
            metrics[f"mae_{prefix}"] = row["mae"]
        held_out = (model.config.get("held_out") if model is not None else None) or {}
        for key in ("median_ae", "mae", "baseline_median_ae"):
            if key in held_out:
                metrics[f"ednn_held_out_{key}"] = held_out[key]
        return metrics
