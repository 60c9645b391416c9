"""RUGAN with and without the label term: requested against obtained energy per area at 1x and 4x area.

    python benchmarks/rugan_label_term.py                               # weights 0 and 10, seeds 0 1 2 (~5 min a model)
    python benchmarks/rugan_label_term.py --weights 0 1 3 10 --seeds 0

The data are the `fast` graphene study's: 4,096 random 14 x 8-cell sheets (seed 0) labelled by Tersoff single points
(LAMMPS). Each model is the `fast` RUGAN protocol (width 16, 800 steps of 5 critic updates at lr 1e-3) with
``label_weight`` set; it generates ``--count`` sheets per scale with requested labels drawn from the training labels
(seed 100 + training seed), and their energy is the Tersoff single point, as in the `label_consistency` check. The
table gives, per weight, the mean over seeds and the range: KS statistic, mean absolute error and bias (meV/Å²),
Pearson r, and one-fold (dangling) carbon atoms per sheet (the training sheets have none).

``--calibrate`` adds rows where the request is corrected before sampling: the model generates 512 sheets on a grid
of training labels (its own sampling seed), the linear label model (``E ≈ a·atoms + b·bonds + c``, fitted on the
training sheets) gives their labels, a line obtained = slope · requested + intercept is fitted, and the sampler is
asked for (requested − intercept) / slope. It uses no reference energy and no evaluation sheet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from aiida_physgen.graphene.label_check import compare_labels
from aiida_physgen.graphene.reference_energy import label_sheets
from aiida_physgen.ml import graphene
from aiida_physgen.ml.rugan import fit_label_model, label_model_energies
from aiida_physgen.ml.training import set_threads, train_ensemble
from aiida_physgen.workflows.protocols import generation_protocol

TARGET = {"property": "energy"}


def training_sheets(count: int):
    lattice = graphene.Lattice()
    batch = graphene.sheets_to_batch(graphene.random_sheets(count, 0, lattice), lattice)
    batch.info["energy"] = label_sheets(batch)
    return batch


def label_model_of(training):
    """The label term's linear model fitted on the training sheets: energy per area of discrete sheets."""
    occupancy, lattice = graphene.batch_to_sheets(training)
    fit = fit_label_model(occupancy, training.info["energy"])

    def per_area(batch):
        sheets, big = graphene.batch_to_sheets(batch, where="generated")
        return label_model_energies(fit, sheets) / big.area

    return per_area


def calibration(model, labels, per_area) -> tuple[float, float]:
    """Slope and intercept of obtained against requested label on 16 training quantiles × 32 sheets (sampling seed
    11, not the evaluation's), the obtained label by the linear label model: no reference calculation."""
    grid = np.repeat(np.quantile(labels, np.linspace(0.02, 0.98, 16)), 32)
    generated = model.sample(len(grid), 11, {"labels": grid.tolist()})
    requested, obtained = np.asarray(generated.info["label"]), per_area(generated)
    slope, intercept = np.polyfit(requested, obtained, 1)
    if slope < 0.1:  # a model that barely follows its label: correct the offset only
        return 1.0, float(np.mean(obtained - requested))
    return float(slope), float(intercept)


def one_model(training, weight: float, seed: int, count: int, steps: int | None, calibrate: bool = False) -> dict:
    settings = dict(generation_protocol("rugan", "fast", TARGET)["settings"])
    settings["label_weight"] = weight
    if steps:
        settings["loop"] = {**settings["loop"], "steps": steps}
    start = time.perf_counter()
    (model,) = train_ensemble("rugan", training, TARGET, settings, seeds=[seed])
    row = {"weight": weight, "seed": seed, "train_seconds": time.perf_counter() - start}
    _, lattice = graphene.batch_to_sheets(training)
    labels = training.info["energy"] / lattice.area
    ways = {"": (1.0, 0.0)}
    if calibrate:
        ways[" calibrated"] = row["calibration"] = calibration(model, labels, label_model_of(training))
    for scale in (1, 2):
        requested = np.quantile(labels, np.random.default_rng(100 + seed).random(count))
        for way, (slope, intercept) in ways.items():
            asked = (requested - intercept) / slope
            generated = model.sample(count, 7, {"labels": asked.tolist(), "scale": scale})
            sheets, big = graphene.batch_to_sheets(generated, where="generated")
            result = compare_labels(requested, label_sheets(generated) / big.area)
            onefold = (graphene.coordination(sheets) == 1) & sheets
            result["onefold_per_sheet"] = float(onefold.reshape(len(sheets), -1).sum(1).mean())
            row[f"scale_{scale}{way}"] = result
    return row


def _cell(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f} ({v.min():.3f}-{v.max():.3f})"


def table(rows: list[dict]) -> str:
    lines = [
        "| label_weight | area | KS | MAE (meV/Å²) | bias (meV/Å²) | r | 1-fold C per sheet | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ways = ("", " calibrated") if "scale_1 calibrated" in rows[0] else ("",)
    for weight in sorted({r["weight"] for r in rows}):
        mine = [r for r in rows if r["weight"] == weight]
        for (scale, area), way in ((s, w) for s in ((1, "1x"), (2, "4x")) for w in ways):
            cells = [r[f"scale_{scale}{way}"] for r in mine]
            lines.append(
                f"| {weight:g} | {area}{way} | {_cell([c['ks'] for c in cells])} | {_cell([c['mae'] for c in cells])} "
                f"| {_cell([c['bias'] for c in cells])} | {_cell([c['pearson_r'] for c in cells])} "
                f"| {_cell([c['onefold_per_sheet'] for c in cells])} | {', '.join(str(r['seed']) for r in mine)} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--count", type=int, default=1000, help="generated sheets per scale")
    parser.add_argument("--sheets", type=int, default=4096, help="training sheets")
    parser.add_argument("--steps", type=int, help="training steps (default: the fast protocol's 800)")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="also sample with the requested label corrected by a linear calibration of the label model on the "
        "model's own discrete sheets (no reference energies)",
    )
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    if any(w < 0 for w in args.weights):
        parser.error(f"--weights: got {args.weights}, expected weights >= 0")
    for name in ("count", "sheets", "steps"):
        value = getattr(args, name)
        if value is not None and value < 2:
            parser.error(f"--{name}: got {value}, expected at least 2")
    set_threads()
    training = training_sheets(args.sheets)
    rows = [one_model(training, w, s, args.count, args.steps, args.calibrate) for w in args.weights for s in args.seeds]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
