"""Held-out recovery of the crystal GAN, as CubicGAN reports it, beside a random baseline with the same machinery.

A fixed 20 % of the shipped half-Heuslers (F-43m, one crystal per element triple) is held out: the triples picked by
``numpy.random.default_rng(0)`` (the split is printed, and fixed before any run). One crystal GAN is trained on the
other 80 % with ``aiida-physgen train -p balanced`` (the command a user types; skipped when ``--out`` already holds the
model). Then, for every generation seed, each held-out triple gets ``--per-triple`` crystals from

* the generator, conditioned on the triple and F-43m (``condition.elements``), and
* the random baseline: the same Wyckoff snapping, reassignment and symmetry operations fed with uniform random base
  sites and a cubic lattice length uniform over the training crystals' range
  (:func:`aiida_physgen.ml.crystal_build.random_wyckoff_crystals`).

Both arms go through the same funnel as ``aiida-physgen crystals funnel``: validity (radius-scaled closest pairs,
density), primitive cell, CHGNet with the cell free (at most 300 steps). A held-out triple is *recovered* when one
of its relaxed, converged crystals matches the held-out crystal (pymatgen's ``StructureMatcher`` at its defaults).
Before the held-out rows it prints, from the training triples only, how often the generator puts each training
crystal's middle element (the one tetrahedrally surrounded by the other two) in the middle: the figure settings are
chosen by (a random placement gets a third). The table gives, per seed and arm, crystals valid, converged, keeping
F-43m after the relaxation, and triples recovered among the first 1 and all ``--per-triple`` crystals of each
triple. With ``--dft K``, for the first seed, the first CHGNet-relaxed crystal of each of the first K held-out
triples is relaxed again by GPAW (PBE, the balanced protocol's settings, cell free, spin by composition; through
ASE, not AiiDA) and matched again: recovery after DFT.

    python benchmarks/crystal_heldout.py --out runs/heldout            # about 40 min here (training 8, CHGNet 30)
    python benchmarks/crystal_heldout.py --out runs/heldout --quick    # a minute: 20 training steps, 1 seed
    python benchmarks/crystal_heldout.py --out runs/heldout_split1 --split-seed 1   # another held-out 20 %
    python benchmarks/crystal_heldout.py --out runs/heldout_orbits --set critic_waves=1 --set critic_orbits=true

Torch and CHGNet run on one thread (``OMP_NUM_THREADS`` is not changed). No AiiDA.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HELD_OUT_SHARE = 0.2
SPLIT_SEED = 0
GROUP = 216


def split(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices (training, held out) of ``n`` crystals: a fixed 20 %, by ``default_rng(seed)``."""
    held = np.sort(np.random.default_rng(seed).choice(n, size=round(HELD_OUT_SHARE * n), replace=False))
    return np.setdiff1d(np.arange(n), held), held


def train(training_file: Path, out: Path, quick: bool, steps: int | None, overrides: list[str] = ()) -> Path:
    model = out / "models" / "model_00.pt"
    if model.exists():
        print(f"using the trained model {model}")
        return model
    command = [
        "aiida-physgen", "train", str(training_file), "-f", "crystal_gan",
        "--target", json.dumps({"space_groups": [GROUP]}), "-p", "fast" if quick else "balanced",
        "--seeds", "0", "-o", str(out / "models"),
    ]  # fmt: skip
    if quick or steps:
        command += ["--steps", str(20 if quick else steps)]
    for override in overrides:
        command += ["--set", override]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"training: {time.perf_counter() - start:.0f} s", flush=True)
    return model


def funnel(batch, triples_of, held_structures, per_triple):
    """Validity → primitive cell → CHGNet → match against the held-out crystal of each crystal's triple."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_physgen.crystals import properties
    from aiida_physgen.ml.crystal_build import primitive_cells
    from aiida_physgen.screening import cheap_relax

    flags = properties.validity(batch)
    keep = np.flatnonzero(flags["valid"] == 1)
    row = {"generated": len(batch), "valid": int(keep.size)}
    first_relaxed: dict = {}  # triple → its first converged CHGNet-relaxed crystal (ASE), for the DFT check
    if keep.size == 0:
        return {**row, "converged": 0, "keeps_group": 0, "recovered_first": 0, "recovered_any": 0}, first_relaxed
    relaxed = cheap_relax.relax_batch(
        primitive_cells(batch.subset(keep)), {"method": "chgnet", "fix_cell": False, "max_steps": 300}
    )
    matcher = StructureMatcher()
    converged = np.asarray(relaxed.info["cheap_converged"]) == 1
    row["converged"] = int(converged.sum())
    recovered_first, recovered_any, keeps = set(), set(), 0
    for j, index in enumerate(keep):
        if not converged[j]:
            continue
        structure = AseAtomsAdaptor.get_structure(relaxed[j])
        keeps += properties.space_group_number(relaxed[j]) == GROUP
        triple = triples_of[index]
        first_relaxed.setdefault(triple, relaxed[j])
        if matcher.fit(structure, held_structures[triple]):
            recovered_any.add(triple)
            if index // len(held_structures) == 0:  # the first crystal of its triple
                recovered_first.add(triple)
    row.update(keeps_group=int(keeps), recovered_first=len(recovered_first), recovered_any=len(recovered_any))
    return row, first_relaxed


def middle_element(atoms) -> str | None:
    """The element of a half-Heusler-like cell whose atoms have 8 nearest neighbours (the one tetrahedrally surrounded
    by the other two), or None when no element has (on average) at least 7 within 1.1 × its nearest distance."""
    from ase.neighborlist import neighbor_list

    first, distances = neighbor_list("id", atoms, 0.5 * min(atoms.cell.lengths()))
    counts: dict[str, list[int]] = {}
    for index, atom in enumerate(atoms):
        mine = distances[first == index]
        if mine.size:
            counts.setdefault(atom.symbol, []).append(int((mine < 1.1 * mine.min()).sum()))
    if not counts:
        return None
    best = max(counts, key=lambda symbol: np.mean(counts[symbol]))
    return best if np.mean(counts[best]) >= 7 else None


def placement_check(model, training, count: int = 237, seed: int = 0) -> dict:
    """On the model's own training triples only (no held-out data: this is the figure to choose settings by): of
    ``count`` generated F-43m crystals, how many the generator placed itself (no two elements sent to one position),
    and how many put the training crystal's middle element in the middle (a random placement: a third)."""
    from aiida_physgen.ml.training import generate

    truth = {tuple(sorted(set(a.get_chemical_symbols()))): middle_element(a) for a in training}
    triples = [list(t) for t in truth]
    batch = generate(
        [model], count, seed, {"space_group": GROUP, "elements": [triples[i % len(triples)] for i in range(count)]}
    )
    own = np.asarray(batch.info["reassigned_sites"]) == 0
    right = np.array([middle_element(a) == truth[tuple(sorted(set(a.get_chemical_symbols())))] for a in batch])
    return {
        "generated": count,
        "own_placement": int(own.sum()),
        "middle_right": int(right.sum()),
        "middle_right_own": int((right & own).sum()),
    }


def dft_relax(atoms):
    """GPAW with the settings of its ``balanced`` crystal protocol and the crystals screening's choices: PW 400 eV,
    2×2×2 k-points, Fermi-Dirac 0.1 eV, PBE, spin-polarised by composition (:mod:`aiida_physgen.engines.spin`),
    positions and cell relaxed with BFGS to 0.05 eV/Å (ASE's FrechetCellFilter). Run here directly through ASE, not
    through AiiDA: a benchmark of the method, the same settings as the product's DFT stage."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    from gpaw import GPAW, PW, FermiDirac

    from aiida_physgen.engines.spin import initial_moments

    atoms = atoms.copy()
    moments = initial_moments(atoms.get_chemical_symbols())
    atoms.set_initial_magnetic_moments(moments)
    atoms.calc = GPAW(
        mode=PW(400), xc="PBE", kpts=(2, 2, 2), occupations=FermiDirac(0.1), spinpol=moments is not None, txt=None
    )
    converged = BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=100)
    return atoms, bool(converged)


#: f-electron elements: their PBE relaxations converge slowly in GPAW, so the DFT check leaves their triples out
F_ELEMENTS = set("La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Ac Th Pa U Np Pu".split())


def dft_triples(triples, count: int) -> list:
    """The first ``count`` held-out triples (in split order) whose elements all have GPAW PBE setups installed and
    none is an f-electron element (uranium, for one, has no setup in gpaw-data)."""
    from gpaw import setup_paths

    def has_setup(symbol: str) -> bool:
        return any(any(Path(path).glob(f"{symbol}.PBE*")) for path in setup_paths)

    eligible = [t for t in triples if not F_ELEMENTS.intersection(t) and all(has_setup(e) for e in t)]
    return eligible[:count]


def dft_check(first_relaxed, triples, held_structures) -> dict:
    """DFT-relax the first CHGNet-relaxed crystal of each of ``triples`` and match it against the held-out crystal."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher()
    matched, converged, start = 0, 0, time.perf_counter()
    for triple in triples:
        if triple not in first_relaxed:
            continue
        atoms, ok = dft_relax(first_relaxed[triple])
        converged += ok
        matched += ok and matcher.fit(AseAtomsAdaptor.get_structure(atoms), held_structures[triple])
    return {
        "dft_relaxed": len([t for t in triples if t in first_relaxed]),
        "dft_converged": int(converged),
        "dft_recovered_first": int(matched),
        "dft_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the split, the model and the table")
    parser.add_argument("--per-triple", type=int, default=3, help="crystals per held-out triple and arm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="generation seeds")
    parser.add_argument("--steps", type=int, help="generator steps (default: the balanced protocol's 2,000)")
    parser.add_argument(
        "--dft",
        type=int,
        default=0,
        help="for the first seed, DFT-relax the first crystal of this many held-out triples",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one training setting for `aiida-physgen train --set` (e.g. permute_sites=true); repeat the option",
    )
    parser.add_argument("--quick", action="store_true", help="20 training steps, one seed, 1 crystal per triple")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=SPLIT_SEED,
        help=f"seed of the held-out 20 %% (default {SPLIT_SEED}; another seed is another, independent evaluation)",
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps: got {args.steps}, expected a positive number of generator steps")
    if args.dft < 0:
        parser.error(f"--dft: got {args.dft}, expected a non-negative number of held-out triples")
    if args.per_triple < 1:
        parser.error(f"--per-triple: got {args.per_triple}, expected a positive number of crystals")
    if args.quick:
        args.per_triple, args.seeds = 1, args.seeds[:1]
    if args.overrides:  # refused before anything is written or trained, naming the setting
        import click

        from aiida_physgen.cli._common import key_values
        from aiida_physgen.ml.family import get_family

        try:
            get_family("crystal_gan").settings(key_values(args.overrides, "--set"))
        except (click.BadParameter, ValueError) as error:
            parser.error(f"--set: {error.format_message() if isinstance(error, click.BadParameter) else error}")

    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_physgen.ml import crystal_build
    from aiida_physgen.ml.crystal_data import example_structures
    from aiida_physgen.ml.model_io import load_model
    from aiida_physgen.ml.training import generate

    args.out.mkdir(parents=True, exist_ok=True)
    crystals = example_structures()
    training_index, held_index = split(len(crystals), args.split_seed)
    training = crystals.subset(training_index)
    triples = [tuple(sorted(set(crystals[i].get_chemical_symbols()))) for i in held_index]
    held_structures = {t: AseAtomsAdaptor.get_structure(crystals[i]) for t, i in zip(triples, held_index)}
    (args.out / "split.json").write_text(
        json.dumps({"held_out": held_index.tolist(), "triples": ["".join(t) for t in triples]}, indent=1)
    )
    print(
        f"held out {len(held_index)} of {len(crystals)} crystals (rng {args.split_seed}): "
        f"{' '.join(map(''.join, triples))}"
    )
    training_file = args.out / "training.npz"
    training_file.write_bytes(training.to_npz_bytes())
    model = load_model(train(training_file, args.out, args.quick, args.steps, args.overrides))

    placement = placement_check(model, training)
    print(f"training triples (seed 0): {json.dumps(placement)}", flush=True)
    (args.out / "placement.json").write_text(json.dumps(placement, indent=1))
    lengths = np.array([a.cell.lengths()[0] for a in training])
    count = args.per_triple * len(triples)
    cycled = [list(triples[i % len(triples)]) for i in range(count)]  # crystal i has triple i % n
    rows = []
    for seed in args.seeds:
        arms = {
            "generator": generate([model], count, seed, {"space_group": GROUP, "elements": cycled}),
            "random": crystal_build.random_wyckoff_crystals(
                [GROUP] * count,
                cycled,
                (float(lengths.min()), float(lengths.max())),
                seed,
                crowding_distance=model.config.get("crowding_distance"),
            ),
        }
        for arm, batch in arms.items():
            start = time.perf_counter()
            # generate() keeps each triple's canonical element order: map back by the sorted symbols
            triples_of = [triples[i % len(triples)] for i in range(count)]
            counts, first_relaxed = funnel(batch, triples_of, held_structures, args.per_triple)
            row = {"seed": seed, "arm": arm, **counts}
            if args.dft and seed == args.seeds[0]:
                row.update(dft_check(first_relaxed, dft_triples(triples, args.dft), held_structures))
            row["reassigned"] = int(np.sum(batch.info["reassigned_sites"] > 0))
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "table.json").write_text(json.dumps(rows, indent=1))
    header = ["seed", "arm", "generated", "reassigned", "valid", "converged", "keeps_group"]
    header += ["recovered_first", "recovered_any", "seconds"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    for row in rows:
        if "dft_relaxed" in row:
            print(
                f"seed {row['seed']} {row['arm']}: after DFT, {row['dft_recovered_first']} of {row['dft_relaxed']} "
                f"first crystals match their held-out crystal ({row['dft_converged']} converged, {row['dft_seconds']}"
                " s)"
            )
    for arm in ("generator", "random"):
        any_ = [r["recovered_any"] for r in rows if r["arm"] == arm]
        first = [r["recovered_first"] for r in rows if r["arm"] == arm]
        print(
            f"{arm}: held-out triples recovered of {len(triples)}: first crystal {np.mean(first):.1f} "
            f"(seeds {first}), any of {args.per_triple}: {np.mean(any_):.1f} (seeds {any_})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
