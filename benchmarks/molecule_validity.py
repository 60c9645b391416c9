"""What the ``molecule`` validity check does to the main job, measured on its own candidates.

Trains the main job's LoGAN ensemble (``workchains/screen_fast.py``: C5H12O, box 9.5 Å, protocol fast, seeds
[0, 1], 1,200 epochs), generates its 1,000 raw candidates, relaxes every one with GFN2-xTB once, then, for the
check off and for several ``bond_factor`` values: how many candidates the check keeps, how many of those it
rejects xTB would have relaxed into a sound molecule, and the main job's funnel emulated on what it keeps (the
fast protocol's selection: 60 k-means picks; each pick's xTB outcome; one per distinct sound basin up to the DFT
budget of 6) for several selection seeds. The defaults of :class:`aiida_physgen.molecules.validity.
MoleculeValiditySettings` were chosen from this table.

    python benchmarks/molecule_validity.py [--work DIR]     # about 25 minutes on 2 idle cores (training, xTB)

The trained candidates and their xTB relaxations are kept in ``DIR`` (default ``molecule_validity/``) and
reused when the script runs again.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.training import generate, set_threads, train_ensemble
from aiida_physgen.resources import reference_smiles, resource_path
from aiida_physgen.screening.basins import molecule_graph
from aiida_physgen.screening.cheap_relax import relax_batch
from aiida_physgen.screening.metrics import charge_separated
from aiida_physgen.screening.selection import SelectionSettings, select_candidates
from aiida_physgen.screening.validity import get_validity_check
from aiida_physgen.workflows.protocols import generation_protocol

TARGET = {"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": [False] * 3}
#: the main job's choices (workchains/screen_fast.py)
OVERRIDES = {"seeds": [0, 1], "settings": {"loop": {"steps": 1200}}, "selection": {"n_clusters": 60}}
DFT_BUDGET = 6
VARIANTS = {
    "no check": None,
    "bond_factor 1.3": {"bond_factor": 1.3},
    "bond_factor 1.5": {"bond_factor": 1.5},
    "bond_factor 1.6 (default)": {},
    "bond_factor 1.7": {"bond_factor": 1.7},
    "bond_factor 2.0": {"bond_factor": 2.0},
    "1.6 + bond orders": {"bond_orders": True},
}
SELECTION_SEEDS = (0, 1, 2, 3)


def candidates_and_xtb(work: Path) -> tuple[StructureBatch, StructureBatch, dict]:
    values = generation_protocol("logan", "fast", TARGET, OVERRIDES)
    raw_path, xtb_path = work / "candidates.extxyz", work / "candidates_xtb.extxyz"
    if not raw_path.is_file():
        training = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))
        start = time.perf_counter()
        models = train_ensemble("logan", training, TARGET, values["settings"], values["seeds"])
        print(f"trained {len(models)} models in {time.perf_counter() - start:.0f} s")
        generate(models, values["count"], 0).write(raw_path)
    raw = StructureBatch.read(raw_path)
    if not xtb_path.is_file():
        start = time.perf_counter()
        relax_batch(raw).write(xtb_path)
        print(f"relaxed {len(raw)} candidates with GFN2-xTB in {time.perf_counter() - start:.0f} s")
    return raw, StructureBatch.read(xtb_path), values


def main(work: Path) -> None:
    set_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    raw, xtb, values = candidates_and_xtb(work)
    failed = xtb.info["cheap_failed"].astype(bool)
    keys = []
    for index, atoms in enumerate(xtb):
        graph = None if failed[index] else molecule_graph(atoms)
        sound = graph is not None and graph.valid and graph.connected and not charge_separated(graph.smiles)
        keys.append(graph.smiles if sound else None)
    energies = np.asarray(xtb.info["cheap_energy"], dtype=float)
    known = set(reference_smiles("C5H12O"))
    print(
        f"{len(raw)} candidates; after xTB {sum(k is not None for k in keys)} sound, "
        f"{len({k for k in keys if k})} distinct sound isomers ({len({k for k in keys if k} & known)} known)"
    )
    selection = SelectionSettings.from_dict({**values["selection"]})
    descriptor = values["settings"]["descriptor"]
    check = get_validity_check("molecule")
    header = (
        f"{'check':28s} {'kept':>5s} {'rejected, sound after xTB':>26s}  "
        f"per selection seed {list(SELECTION_SEEDS)}: sound of 60 picks / isomers to DFT (budget {DFT_BUDGET})"
    )
    print(header)
    for label, settings in VARIANTS.items():
        if settings is None:
            kept = np.arange(len(raw))
            reasons: Counter = Counter()
        else:
            verdicts = check.reasons(raw, check.settings(settings))
            kept = np.array([i for i, reason in enumerate(verdicts) if reason is None])
            reasons = Counter(reason for reason in verdicts if reason)
        rejected = np.setdiff1d(np.arange(len(raw)), kept)
        repairable = sum(keys[i] is not None for i in rejected)
        cells = []
        for seed in SELECTION_SEEDS:
            result, pool, _ = select_candidates(raw.subset(kept), selection, seed=seed, model_descriptor=descriptor)
            picks = kept[pool[result.indices]]
            best: dict[str, int] = {}
            for i in picks:
                if keys[i] and (keys[i] not in best or energies[i] < energies[best[keys[i]]]):
                    best[keys[i]] = int(i)
            to_dft = sorted(best, key=lambda key: energies[best[key]])[:DFT_BUDGET]
            cells.append(f"{sum(keys[i] is not None for i in picks)}/{len(to_dft)}")
        share = f"{repairable}/{len(rejected)}" if len(rejected) else "–"
        print(
            f"{label:28s} {len(kept):5d} {share:>26s}  {'  '.join(cells)}"
            + (f"   ({dict(reasons)})" if reasons and label.endswith("bond orders") else "")
        )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(Path(arguments[arguments.index("--work") + 1]) if "--work" in arguments else Path("molecule_validity"))
