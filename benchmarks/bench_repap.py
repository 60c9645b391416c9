"""Benchmark: RePAP (family ``repap``) on amorphous silicon, 30 atoms, from a melt-quench MD.

(a) the melt-quench MD (LAMMPS, Stillinger-Weber as re-fitted by Vink et al.): frames per second of the
    production run and the time of the study's 40,000 frames, extrapolated from ``frames`` (default
    10,000) at stride 10;
(b) training, seconds per optimiser step of 64 frames (timed between the first and the last of ``steps``
    steps, so set-up is not in it) and per epoch of the study's training frames (80 % of 40,000 = 32,000
    frames, 500 steps of 64), for the paper's network (LSTM 2 × 256, dropout 0.5) and for the ``fast``
    protocol's (2 × 64);
(c) generation, structures per second for 1,000 structures from a ``fast``-protocol model trained here
    (600 steps) with close-contact redraws (2 Å) and without them (``min_distance`` 0), and the share of
    structures that needed a redraw.

Torch runs on one thread (``--threads`` to change). Run ``python benchmarks/bench_repap.py [--quick]``
for a table; ``run()`` returns its rows.
"""

from __future__ import annotations

import argparse
import time
import warnings

STUDY_FRAMES = 40_000
STUDY_TRAINING_FRAMES = 32_000  # 80 % of the study's frames; the chain holds out the last 20 %
BATCH = 64


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def _step_time(frames, settings: dict, steps: int) -> float:
    """Seconds per optimiser step, between the first and the last of ``steps`` steps."""
    from aiida_physgen.ml.training import train_ensemble

    marks = {}

    def callback(progress):
        if progress.step == 1:
            marks["first"] = time.perf_counter()
        marks["last"] = time.perf_counter()

    values = {**settings, "loop": {**settings.get("loop", {}), "steps": steps, "log_every": steps}}
    train_ensemble("repap", frames, {}, values, callback=callback)
    return (marks["last"] - marks["first"]) / (steps - 1)


def run(
    frames: int = 10_000, steps: int = 20, fast_steps: int = 600, count: int = 1000, threads: int = 1
) -> list[dict]:
    import torch

    from aiida_physgen.amorphous.md import melt_quench
    from aiida_physgen.ml.training import train_ensemble

    torch.set_num_threads(threads)
    rows = []
    trajectory, seconds = _timed(melt_quench, {"frames": frames})
    rows.append(
        {
            "benchmark": "RePAP data: melt-quench MD (LAMMPS, SW-Vink, 30 Si)",
            "what": f"{frames} frames at stride 10",
            "value": seconds,
            "unit": "s",
            "note": "melt 20 ps, quench 50 ps, anneal 20 ps, then production",
        }
    )
    rows.append(
        {
            "benchmark": "RePAP data: melt-quench MD (LAMMPS, SW-Vink, 30 Si)",
            "what": "the study's 40,000 frames",
            "value": seconds * (90_000 + STUDY_FRAMES * 10) / (90_000 + frames * 10),
            "unit": "s (extrapolated)",
            "note": "by MD steps",
        }
    )
    for name, settings in (("paper network (2 × 256, dropout 0.5)", {}), ("fast protocol (2 × 64)", {"hidden": 64})):
        per_step = _step_time(trajectory, settings, steps)
        rows.append(
            {
                "benchmark": f"RePAP training, {name}",
                "what": f"per step of {BATCH} frames",
                "value": per_step,
                "unit": "s",
            }
        )
        rows.append(
            {
                "benchmark": f"RePAP training, {name}",
                "what": "per epoch of 32,000 frames",
                "value": per_step * STUDY_TRAINING_FRAMES / BATCH,
                "unit": "s",
            }
        )
    model, seconds = _timed(
        train_ensemble,
        "repap",
        trajectory,
        {},
        {"hidden": 64, "loop": {"steps": fast_steps, "lr": 3e-3, "log_every": fast_steps}},
    )
    model = model[0]
    rows.append(
        {
            "benchmark": "RePAP training, fast protocol (2 × 64)",
            "what": f"{fast_steps} steps (the model of the generation rows)",
            "value": seconds,
            "unit": "s",
            "note": f"held-out loss {model.config['validation_loss']:.4f}",
        }
    )
    for label, condition in (("no redraws", {"min_distance": 0}), ("redraws below 2 Å", {"min_distance": 2.0})):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch, seconds = _timed(model.sample, count, 0, condition)
        redrawn = float((batch.info["resampled_atoms"] > 0).mean())
        rows.append(
            {
                "benchmark": "RePAP generation (fast-protocol model)",
                "what": f"{count} structures, {label}",
                "value": count / seconds,
                "unit": "structures/s",
                "note": f"{redrawn:.0%} needed a redraw, {int(batch.info['restarts'].sum())} restarts"
                if condition["min_distance"]
                else "",
            }
        )
    return rows


def main() -> None:
    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 frames, 5 steps, a 100-step model, 200 structures")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    sizes = dict(frames=2000, steps=5, fast_steps=100, count=200) if args.quick else {}
    table = run(threads=args.threads, **sizes)
    print(
        tabulate(
            [[r["benchmark"], r["what"], f"{r['value']:.4g}", r["unit"], r.get("note", "")] for r in table],
            headers=["benchmark", "what", "value", "unit", "note"],
        )
    )


if __name__ == "__main__":
    main()
