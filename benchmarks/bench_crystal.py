"""Benchmark: the physics-guided crystal GAN (family ``crystal_gan``) on the shipped 99 half-Heuslers (F-43m).

(a) training at the family's default settings (generator and critic MLPs of 3 × 256, batch 64, 5 critic
    updates per generator step, all four physics losses): seconds per generator step, timed between the
    first and the last step (set-up and the training-set filter are timed on their own rows), and per
    epoch, an epoch being the 99 × 32 self-augmented samples, i.e. 3,168 / batch generator steps (49.5 at
    batch 64). The loop also draws one real batch per critic update, so it reads (n_critic + 1) × batch
    real samples per step and passes through the augmented set every 8.25 steps;
(b) generation from that model, post-processing included (the space group applied to the base sites,
    crowded images merged, spglib's check): 500 crystals for F-43m (trained) and 500 for Fm-3m (not
    trained; the conditioning carries over through the operations), crystals per second, the share
    spglib finds symmetric, and the generator network alone;
(c) CHGNet relaxations per second with the batch job's call
    ``relax_batch(batch, {"method": "chgnet", "fix_cell": False, "max_steps": 100})``, on what the chain
    relaxes: the first 20 generated F-43m crystals that pass the validity stage
    (:func:`aiida_physgen.crystals.properties.validity` at its defaults: no pair closer than 0.5 Å, density
    1–25 g/cm³), and for comparison 20 training crystals; each reduced to its primitive cell first, as the
    chain does (pymatgen's ``get_primitive_structure(tolerance=0.1)``; a half-Heusler's 12-atom
    conventional cell becomes 3 atoms). CHGNet's one-off model load is its own row.

Torch runs on one thread (``--threads`` to change; the calculators of (c) get the same count). Run
``python benchmarks/bench_crystal.py [--quick]`` for a table; ``run()`` returns its rows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import warnings

import numpy as np

TARGET = {"space_groups": [216]}
EPOCH_SAMPLES = 99 * 32  # the shipped set × 32 augmentations


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


@contextlib.contextmanager
def _omp_threads(n: int):
    """``OMP_NUM_THREADS`` set to ``n`` for a while (the cheap tier reads it for its calculators)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _primitive(batch, indices):
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_physgen.ml.batch import StructureBatch

    cells = []
    for index in indices:
        structure = AseAtomsAdaptor.get_structure(batch[int(index)])
        cells.append(AseAtomsAdaptor.get_atoms(structure.get_primitive_structure(tolerance=0.1)))
    return StructureBatch.from_atoms(cells)


def _relax_rows(name: str, batch, threads: int) -> list[dict]:
    from aiida_physgen.screening.cheap_relax import relax_batch

    with _omp_threads(threads):
        relaxed, seconds = _timed(relax_batch, batch, {"method": "chgnet", "fix_cell": False, "max_steps": 100})
    info = relaxed.info
    return [
        {
            "benchmark": "CHGNet relaxation (fix_cell false, ≤ 100 FIRE steps)",
            "what": name,
            "value": len(batch) / seconds,
            "unit": "relaxations/s",
            "note": f"{len(batch)} cells of {batch.n_atoms.min()}–{batch.n_atoms.max()} atoms in {seconds:.1f} s; "
            f"{np.mean(info['cheap_converged']):.0%} converged to 0.05 eV/Å, "
            f"mean {np.mean(info['cheap_steps']):.0f} steps, {int(np.sum(info['cheap_failed']))} failed",
        }
    ]


def run(steps: int = 100, count: int = 500, n_relax: int = 20, threads: int = 1, seed: int = 0) -> list[dict]:
    import torch

    from aiida_physgen.ml import crystal_data
    from aiida_physgen.ml.family import get_family
    from aiida_physgen.ml.training import set_threads, train_ensemble

    set_threads(threads)
    rows: list[dict] = []
    examples, seconds = _timed(crystal_data.example_structures)
    rows.append({"benchmark": "crystal GAN data", "what": "read 99 CIFs (pymatgen)", "value": seconds, "unit": "s"})
    family = get_family("crystal_gan")
    settings = family.settings({"loop": {"steps": steps}})
    _, seconds = _timed(family.validate, examples, family.check_target(TARGET), settings)  # cached for training
    rows.append(
        {
            "benchmark": "crystal GAN data",
            "what": "training-set filter, 99 structures",
            "value": seconds,
            "unit": "s",
            "note": "spglib refinement + Wyckoff orbits; once per training",
        }
    )

    # (a) training: the callback clocks every step, so set-up is outside the per-step figure
    stamps: list[float] = []
    start = time.perf_counter()
    (model,) = train_ensemble(
        "crystal_gan",
        examples,
        TARGET,
        {"loop": {"steps": steps}},
        seeds=[seed],
        callback=lambda progress: stamps.append(time.perf_counter()),
    )
    total = time.perf_counter() - start
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    loop = model.config["hyperparameters"]["loop"]
    batch_size, n_critic = loop["batch_size"], loop["n_critic"]
    rows.append(
        {
            "benchmark": "crystal GAN training (default settings)",
            "what": "per generator step",
            "value": per_step,
            "unit": "s",
            "note": f"{n_critic} critic updates of batch {batch_size} each; {steps} steps in {total:.1f} s "
            "including set-up",
        }
    )
    rows.append(
        {
            "benchmark": "crystal GAN training (default settings)",
            "what": f"per epoch (99 × 32 samples = {EPOCH_SAMPLES / batch_size:g} steps)",
            "value": per_step * EPOCH_SAMPLES / batch_size,
            "unit": "s",
            "note": f"the loop reads {(n_critic + 1) * batch_size} real samples per step: a pass over the "
            f"augmented set every {EPOCH_SAMPLES / ((n_critic + 1) * batch_size):.2f} steps",
        }
    )
    rows.append(
        {
            "benchmark": "crystal GAN training (default settings)",
            "what": "paper scale (20,000 steps)",
            "value": per_step * 20000 / 3600,
            "unit": "h",
            "note": "extrapolated from the per-step time",
        }
    )

    # (b) generation, post-processing included
    model.sample(4, 0)  # warm-up
    generated = {}
    for group in (216, 225):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Fm-3m was not trained on: the warning is expected
            batch, seconds = _timed(model.sample, count, seed + 1, {"space_group": group})
        generated[group] = batch
        symbol = {216: "F-43m (trained)", 225: "Fm-3m (not trained)"}[group]
        rows.append(
            {
                "benchmark": "crystal GAN generation + post-processing",
                "what": f"{count} × {symbol}",
                "value": count / seconds,
                "unit": "crystals/s",
                "note": f"{np.mean(batch.info['symmetric']):.0%} symmetric (spglib finds {group}); "
                f"{np.mean(batch.n_atoms):.0f} atoms per conventional cell on average",
            }
        )
    module = model.module
    conditions = torch.as_tensor([[216, 78, 13, 5]] * count)
    z = torch.randn(count, module.noise_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        _, seconds = _timed(module.member_forward, 0, z, conditions)
    rows.append(
        {
            "benchmark": "crystal GAN generation + post-processing",
            "what": "generator network alone",
            "value": count / seconds,
            "unit": "crystals/s",
            "note": "the rest is the post-processing",
        }
    )

    from aiida_physgen.crystals.properties import validity

    valid = np.flatnonzero(validity(generated[216])["valid"])
    rows.append(
        {
            "benchmark": "crystal GAN generation + post-processing",
            "what": f"valid share of the {count} F-43m",
            "value": len(valid) / count,
            "unit": "share",
            "note": "crystals.properties.validity at its defaults (closest pair ≥ 0.5 Å, density 1–25 g/cm³)",
        }
    )

    # (c) CHGNet: the model load once, then the relaxations
    from aiida_physgen.screening.cheap_relax import CHGNET_MODEL, chgnet_calculator

    CHGNET_MODEL.clear()
    _, seconds = _timed(chgnet_calculator)
    rows.append(
        {
            "benchmark": "CHGNet relaxation (fix_cell false, ≤ 100 FIRE steps)",
            "what": "model load",
            "value": seconds,
            "unit": "s",
            "note": "once per process",
        }
    )
    if len(valid):
        rows += _relax_rows(
            f"{min(n_relax, len(valid))} valid generated F-43m, primitive cells",
            _primitive(generated[216], valid[:n_relax]),
            threads,
        )
    picks = np.random.default_rng(seed).choice(len(examples), size=n_relax, replace=False)
    rows += _relax_rows(f"{n_relax} training half-Heuslers, primitive cells", _primitive(examples, picks), threads)
    return rows


def main() -> None:
    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 training steps, 100 crystals, 5 relaxations")
    parser.add_argument("--threads", type=int, default=1, help="torch and calculator threads (default 1)")
    args = parser.parse_args()
    sizes = {"steps": 20, "count": 100, "n_relax": 5} if args.quick else {}
    table = run(threads=args.threads, **sizes)
    print(
        tabulate(
            [[r["benchmark"], r["what"], f"{r['value']:.4g}", r["unit"], r.get("note", "")] for r in table],
            headers=["benchmark", "what", "value", "unit", "note"],
        )
    )


if __name__ == "__main__":
    main()
