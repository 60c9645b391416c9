"""Benchmark: the porous-graphene chain (RUGAN + EDNN), on random 14 × 8-cell sheets (≈ 34 Å × 34 Å).

(a) reference labelling (LAMMPS Tersoff, one process): sheets per second, single points and relaxed;
(b) EDNN inference time against area (1×, 4×, 16×): seconds per sheet and per 1×-area, so O(N)
    shows as a flat per-area column;
(c) RUGAN training: seconds per generator step (10 critic steps each) and per epoch (training sheets
    / batch size generator steps) with the fast protocol's networks, pair encoding;
(d) RUGAN generation: sheets per second at 1× and 4× area.

Threads follow ``OMP_NUM_THREADS`` (run with ``OMP_NUM_THREADS=1`` to compare with the reference
figures in docs/graphene.md). Run ``python benchmarks/bench_graphene.py`` for a table; ``run()``
returns its rows.
"""

from __future__ import annotations

import time

import numpy as np

from aiida_physgen.graphene.reference_energy import label_sheets
from aiida_physgen.ml import graphene
from aiida_physgen.ml.training import set_threads, train_ensemble
from aiida_physgen.workflows.protocols import generation_protocol

TARGET = {"property": "energy"}


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run(n_label: int = 512, n_relax: int = 64, n_train: int = 256, rugan_steps: int = 6, seed: int = 0) -> list[dict]:
    set_threads()
    rows = []
    lattice = graphene.Lattice()
    sheets = graphene.random_sheets(max(n_label, n_train), seed, lattice)
    batch = graphene.sheets_to_batch(sheets[:n_label], lattice)
    label_sheets(batch.subset(range(8)))  # LAMMPS start-up, once per process, not in the rate
    energies, seconds = _timed(label_sheets, batch)
    rows.append(
        {
            "benchmark": "reference labelling (LAMMPS Tersoff)",
            "what": f"single points, {n_label} sheets",
            "value": n_label / seconds,
            "unit": "sheets/s",
            "note": f"the default; 32,768 sheets: {32768 / (n_label / seconds) / 60:.1f} min",
        }
    )
    relaxed, seconds = _timed(label_sheets, batch.subset(range(n_relax)), relax=True, fmax=0.05)
    rows.append(
        {
            "benchmark": "reference labelling (LAMMPS Tersoff)",
            "what": f"relaxed (fmax 0.05), {n_relax} sheets",
            "value": n_relax / seconds,
            "unit": "sheets/s",
            "note": f"relax: true (random sheets); 32,768 sheets: {32768 / (n_relax / seconds) / 60:.0f} min",
        }
    )
    training = graphene.sheets_to_batch(sheets[:n_train], lattice, info={"energy": energies[:n_train]})

    ednn_settings = generation_protocol("ednn", "fast", TARGET).get("settings") or {}
    ednn_settings = {**ednn_settings, "loop": {**ednn_settings.get("loop", {}), "steps": 2}}
    (ednn,) = train_ensemble("ednn", training, TARGET, settings=ednn_settings, seeds=[0])
    base = None
    for scale, count in ((1, 256), (2, 64), (4, 16)):
        tiled = np.tile(sheets[:count], (1, scale, scale))
        big = graphene.sheets_to_batch(tiled, lattice.scaled(scale))
        ednn.predict(big.subset(range(2)))  # warm-up
        _, seconds = _timed(ednn.predict, big)
        per_area = seconds / count / scale**2
        base = base or per_area
        rows.append(
            {
                "benchmark": "EDNN inference",
                "what": f"{scale * scale}× area ({count} sheets)",
                "value": seconds / count * 1e3,
                "unit": "ms/sheet",
                "note": f"{per_area * 1e3:.3f} ms per 1× area ({per_area / base:.2f} of 1×)",
            }
        )

    rugan_settings = generation_protocol("rugan", "fast", TARGET).get("settings") or {}
    rugan_settings = {**rugan_settings, "loop": {**rugan_settings.get("loop", {}), "steps": rugan_steps}}
    (rugan,), seconds = _timed(train_ensemble, "rugan", training, TARGET, settings=rugan_settings, seeds=[0])
    loop = rugan.config["hyperparameters"]["loop"]
    per_step = seconds / rugan_steps
    rows.append(
        {
            "benchmark": "RUGAN training (fast protocol, pair encoding)",
            "what": "per generator step",
            "value": per_step,
            "unit": "s",
            "note": f"{loop['n_critic']} critic steps of batch {loop['batch_size']} each",
        }
    )
    for n_sheets in (4096, 32768):
        rows.append(
            {
                "benchmark": "RUGAN training (fast protocol, pair encoding)",
                "what": f"per epoch of {n_sheets} sheets",
                "value": per_step * n_sheets / loop["batch_size"],
                "unit": "s",
                "note": "epoch = sheets / batch size generator steps",
            }
        )
    for scale, count in ((1, 1000), (2, 250)):
        rugan.sample(8, 0, {"label": float(np.median(energies) / lattice.area), "scale": scale})  # warm-up
        _, seconds = _timed(rugan.sample, count, 1, {"labels": "training", "scale": scale})
        rows.append(
            {
                "benchmark": "RUGAN generation",
                "what": f"{scale * scale}× area",
                "value": count / seconds,
                "unit": "sheets/s",
            }
        )
    return rows


if __name__ == "__main__":
    from tabulate import tabulate

    table = run()
    print(
        tabulate(
            [[r["benchmark"], r["what"], f"{r['value']:.4g}", r["unit"], r.get("note", "")] for r in table],
            headers=["benchmark", "what", "value", "unit", "note"],
        )
    )
