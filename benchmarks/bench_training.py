"""LoGAN training and generation speed on this machine, side by side in one run.

* seconds per epoch (one generator step with its 5 critic steps and gradient penalties, batch 15)
  for one model and for a vectorised ensemble of 12, C5H12O at the paper's settings (r_cut 5,
  n_max 4, l_max 4, 20 neighbours, generator 512-256-128-64-32, critic 256-128-64-32);
* the ensemble of 12 trained as 12 separate single models (what vectorising saves);
* generation throughput (structures per second) of one trained model.

    python benchmarks/bench_training.py
"""

from __future__ import annotations

import time

import numpy as np

from aiida_physgen.ml import logan
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.resources import resource_path

BOX = np.eye(3) * 9.5


def _epoch_seconds(training, seeds, steps, warmup=3):
    settings = {"steps": warmup, "rattle_copies": 0}
    logan.train_logan(training, "C5H12O", BOX, False, settings, seeds=seeds)  # warm-up: allocator, caches
    times = []

    def tick(step, losses):
        times.append(time.perf_counter())

    logan.train_logan(training, "C5H12O", BOX, False, {"steps": steps, "rattle_copies": 0}, seeds=seeds, callback=tick)
    return float(np.median(np.diff(times)))


def run(steps: int = 30) -> list[dict]:
    training = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))
    one = _epoch_seconds(training, [0], steps)
    twelve = _epoch_seconds(training, list(range(12)), steps)
    rows = [
        {"benchmark": "training C5H12O, batch 15", "what": "1 model", "value": one, "unit": "s/epoch"},
        {"benchmark": "training C5H12O, batch 15", "what": "12 models vectorised", "value": twelve, "unit": "s/epoch"},
        {"benchmark": "training C5H12O, batch 15", "what": "12 models as 12 single runs", "value": 12 * one,
         "unit": "s/epoch"},
        {"benchmark": "training C5H12O, batch 15", "what": "ensemble cost / one model", "value": twelve / one,
         "unit": "ratio"},
    ]
    (model,) = logan.train_logan(training, "C5H12O", BOX, False, {"steps": 1, "rattle_copies": 0}, seeds=[0])
    model.module.sample(1000, 0)
    start = time.perf_counter()
    batch = model.module.sample(24000, 1)
    elapsed = time.perf_counter() - start
    rows.append({"benchmark": "generation C5H12O", "what": f"{len(batch)} structures, 1 model",
                 "value": len(batch) / elapsed, "unit": "structures/s"})
    return rows


def print_table(rows: list[dict]) -> None:
    from tabulate import tabulate

    print(tabulate([[r["benchmark"], r["what"], f"{r['value']:.4g}", r["unit"]] for r in rows],
                   headers=["benchmark", "what", "value", "unit"]))


if __name__ == "__main__":
    print_table(run())
