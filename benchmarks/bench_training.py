"""LoGAN training and generation speed on this machine, side by side in one run.

* seconds per epoch (one generator update with its 5 critic updates and gradient penalties, batch
  15) for one model and for an ensemble of 12 trained in one pass, C5H12O at the paper's settings
  (r_cut 5, n_max 4, l_max 4, 20 neighbours, generator 512-256-128-64-32, critic 256-128-64-32);
* the ensemble of 12 as 12 separate single-model runs would cost, and the ratio;
* the arithmetic of one epoch per model (:func:`epoch_flops`), the rate it is done at per model,
  and that rate as a share of this machine's matrix-product peak (:func:`matmul_peak`, a large
  float32 ``torch.mm`` with torch's thread count, the same as training's);
* generation throughput (structures per second) of one trained model.

    python benchmarks/bench_training.py
"""

from __future__ import annotations

import time

import ase.data
import numpy as np
import torch

from aiida_physgen.ml import settings as settings_module
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.composition import parse_composition
from aiida_physgen.ml.family import get_family
from aiida_physgen.ml.training import train_ensemble
from aiida_physgen.resources import resource_path

TARGET = {"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": False}
SETTINGS = {"rattle_copies": 0}  # the paper's architecture and descriptor are the family's defaults


def _macs(sizes) -> int:
    """Multiply-adds of one row through an MLP with layer sizes ``sizes``."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def epoch_flops(settings=None, target=TARGET) -> dict[str, float]:
    """Floating-point operations of one epoch of one LoGAN model: the matrix products of its MLPs.

    With ``B`` the batch size, ``N`` the atoms of the composition, ``R = B N`` the environments the
    critic scores per batch, ``C`` the critic's multiply-adds per environment (``sum c_i c_(i+1)``
    over its layer sizes ``[F + S, hidden..., 1]``), ``C1`` those of its first layer and ``G`` the
    generator's per sample (``[latent, hidden..., 3 N]``), and a product of ``m`` rows costing
    ``2 m`` times the multiply-adds, one critic update (as :class:`~aiida_physgen.ml.wgan.WGANTrainer`
    does it) is

    * real and fake batch in one critic pass, ``2R`` rows: forward ``4RC``; backward, weight
      gradients ``4RC`` and input gradients of every layer but the first ``4R(C - C1)``;
    * gradient penalty on ``R`` interpolates: forward without graph ``2RC``, the exact input
      gradient ``2RC``, its backward (weight gradients and the chain) ``4RC``;
    * the fake batch's generator forward without graph ``2BG``;

    and the generator update is the generator forward ``2BG`` and backward ``4BG``, the critic
    forward ``2RC`` and its input gradients ``2RC`` (the critic's weights take no gradient). An epoch
    is ``n_critic`` critic updates and one generator update. Left out: the descriptor (about 5 MFLOP
    per forward pass of a batch, some 50 MFLOP an epoch with the generator update's backward, about
    1 % of the total, mostly small batched products), bias additions, activations and optimiser
    updates (element-wise, a fraction of a percent).
    """
    family = get_family("logan")
    s = family.settings(settings_module.merge(SETTINGS, settings or {}))
    n_atoms = len(parse_composition(target["composition"]))
    species = sorted(set(parse_composition(target["composition"])))
    n_features = s.descriptor.for_species([ase.data.atomic_numbers[x] for x in species]).n_features
    critic = [n_features + len(species), *s.critic_hidden, 1]
    generator = [s.latent_dim, *s.hidden, 3 * n_atoms]
    b, r = s.loop.batch_size, s.loop.batch_size * n_atoms
    c, c1, g = _macs(critic), critic[0] * critic[1], _macs(generator)
    critic_update = 4 * r * c + 4 * r * c + 4 * r * (c - c1) + 2 * r * c + 2 * r * c + 4 * r * c + 2 * b * g
    generator_update = 2 * b * g + 4 * b * g + 2 * r * c + 2 * r * c
    return {
        "critic_update": float(critic_update),
        "generator_update": float(generator_update),
        "epoch": float(s.loop.n_critic * critic_update + generator_update),
    }


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` float32 ``n × n`` matrix products, with torch's current threads."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def _epoch_seconds(training, seeds, steps, warmup=3):
    train_ensemble("logan", training, TARGET, {**SETTINGS, "loop": {"steps": warmup}}, seeds=seeds)  # warm-up
    wall, cpu = [], []

    def tick(progress):
        wall.append(time.perf_counter())
        cpu.append(time.process_time())

    train_ensemble("logan", training, TARGET, {**SETTINGS, "loop": {"steps": steps}}, seeds=seeds, callback=tick)
    return float(np.median(np.diff(wall))), float(np.median(np.diff(cpu)))


def run(steps: int = 30) -> list[dict]:
    training = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))
    threads = torch.get_num_threads()
    what = f"training C5H12O, batch 15, {threads} thread(s)"
    one, one_cpu = _epoch_seconds(training, [0], steps)
    twelve, twelve_cpu = _epoch_seconds(training, list(range(12)), steps)
    peak = matmul_peak()
    flops = epoch_flops()["epoch"]
    rows = [
        {"benchmark": what, "what": "1 model", "value": one, "unit": "s/epoch"},
        {"benchmark": what, "what": "12 models in one pass", "value": twelve, "unit": "s/epoch"},
        {"benchmark": what, "what": "12 models as 12 single runs", "value": 12 * one, "unit": "s/epoch"},
        {"benchmark": what, "what": "ensemble cost / one model", "value": twelve / one, "unit": "ratio"},
        {"benchmark": what, "what": "ensemble CPU time / one model's", "value": twelve_cpu / one_cpu, "unit": "ratio"},
        {"benchmark": what, "what": "MLP arithmetic per model-epoch", "value": flops / 1e9, "unit": "GFLOP"},
        {"benchmark": what, "what": "matmul peak (2048² float32 mm)", "value": peak / 1e9, "unit": "GFLOP/s"},
        {"benchmark": what, "what": "1 model: achieved / peak", "value": flops / one / peak, "unit": "share"},
        {
            "benchmark": what,
            "what": "12 models: achieved per model / peak",
            "value": flops / (twelve / 12) / peak,
            "unit": "share",
        },
    ]
    (model,) = train_ensemble("logan", training, TARGET, {**SETTINGS, "loop": {"steps": 1}}, seeds=[0])
    model.sample(1000, 0)
    start = time.perf_counter()
    batch = model.sample(24000, 1)
    elapsed = time.perf_counter() - start
    rows.append(
        {
            "benchmark": "generation C5H12O",
            "what": f"{len(batch)} structures, 1 model",
            "value": len(batch) / elapsed,
            "unit": "structures/s",
        }
    )
    return rows


def print_table(rows: list[dict]) -> None:
    from tabulate import tabulate

    print(
        tabulate(
            [[r["benchmark"], r["what"], f"{r['value']:.4g}", r["unit"]] for r in rows],
            headers=["benchmark", "what", "value", "unit"],
        )
    )


if __name__ == "__main__":
    print_table(run())
