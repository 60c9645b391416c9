"""The LoGAN SiO2 study: for each shipped target, the generator against the random baseline, through the same
CHGNet funnel and GPAW budget; one table says for each whether the target polymorph was recovered.

For each target (its training set has that target left out): train LoGAN models in the target's cell and
composition, generate, select k-means picks, relax them with CHGNet (fixed cell), send at most the DFT budget of
distinct CHGNet basins to GPAW (by default the paper's settings: plane waves at 400 eV, PBE, 2×2×2 k-points, fixed
cell, FIRE to 0.05 eV/Å), and match the results against the shipped target with pymatgen's StructureMatcher. A
target counts as recovered only when a DFT-relaxed structure matches it, as in the paper; the match after CHGNet is
shown in its own column. The random baseline (random coordinates in the same cell, same min-distance rule) runs
through the same funnel with the same budgets.

    verdi run workchains/sio2_vs_random.py                        # all six targets (hours here)
    verdi run workchains/sio2_vs_random.py mp-546794 mp-546546    # some of them
    verdi run workchains/sio2_vs_random.py --models 4 --steps 1000 --count 250 --picks 40 --budget 4
    verdi run workchains/sio2_vs_random.py --dft fast --xc LDA    # cheaper DFT: PW 250 eV, LDA, FIRE to 0.1 eV/Å
    verdi run workchains/sio2_vs_random.py --optimizer BFGS       # the same criterion in fewer steps than FIRE
    verdi run workchains/sio2_vs_random.py --smoke                # a minute, one target: does the script run here?
    verdi run workchains/sio2_vs_random.py mp-559550 --arm random # one arm only (generator or random)

A finished screening with the same target, mode and settings is reused (found by its extras), so the study can
be run in pieces and printed again at no cost. The paper (20 models × 60,000 epochs, 20 relaxations per
setting): generator 6 of 6, random 3 of 6.
"""

import json
import sys
import time

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.ml.composition import composition_string
from aiida_physgen.resources import SIO2_TARGETS, sio2_target
from aiida_physgen.screening.report import latest_screening, screening_metrics


def option(name: str, default, kind=int):
    return kind(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


SMOKE = "--smoke" in sys.argv  # seconds of training, 2 picks, 1 static single point per arm: does the script run?
CONFIG = {
    "models": option("--models", 1 if SMOKE else 4),
    "steps": option("--steps", 20 if SMOKE else 1000),
    "count": option("--count", 25 if SMOKE else 250),  # candidates per model; the random baseline draws models × count
    "picks": option("--picks", 2 if SMOKE else 40),  # k-means representatives relaxed with CHGNet
    "budget": option("--budget", 1 if SMOKE else 4),  # DFT relaxations at most
    # GPAW protocol: balanced (the paper's: PW 400 eV, 0.05 eV/Å), fast (PW 250 eV, 0.1 eV/Å) or smoke (a static
    # single point), with the exchange-correlation functional the paper used (PBE)
    "dft": option("--dft", "smoke" if SMOKE else "balanced", str),
    "xc": option("--xc", "LDA" if SMOKE else "PBE", str),
    # ASE optimizer of the DFT relaxations (FIRE or BFGS; the criterion, forces below fmax, is the protocol's)
    "optimizer": option("--optimizer", "FIRE", str),
}
CODE = orm.load_code(option("--code", None, str)) if "--code" in sys.argv else None  # GPAW's default code otherwise
values = {sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a.startswith("--")}
named = [a for a in sys.argv[1:] if a.startswith("mp-") and a not in values]
targets = named or (["mp-546794"] if SMOKE else list(SIO2_TARGETS))  # smoke: the smallest cell (6 atoms)
for name in targets:
    if name not in SIO2_TARGETS:
        sys.exit(f"target: unknown SiO2 target {name!r}; expected one of {list(SIO2_TARGETS)}")
ARMS = ("generator", "random") if "--arm" not in sys.argv else (option("--arm", None, str),)
if not set(ARMS) <= {"generator", "random"}:
    sys.exit(f"--arm: expected generator or random, got {ARMS[0]!r}")
STUDY = "sio2_vs_random"


def finished_run(target: str, mode: str):
    """A finished screening of this study with the same target, mode and settings, if there is one."""
    return latest_screening(study=STUDY, target=target, mode=mode, config=json.dumps(CONFIG, sort_keys=True))


def run(target_name: str, mode: str):
    node = finished_run(target_name, mode)
    if node is not None:
        return node, 0.0
    target, training_file = sio2_target(target_name)
    builder = screening_builder(
        training_file,
        composition_string(target.get_chemical_symbols()),
        code=CODE,
        cell=target.cell.array,
        pbc=[bool(p) for p in target.pbc],
        generation_protocol="fast",  # crystal variant: r_cut 6 Å, lr 10^-3.5
        seeds=list(range(CONFIG["models"])),
        settings={"loop": {"steps": CONFIG["steps"]}},
        count=CONFIG["count"],
        n_clusters=CONFIG["picks"],
        protocol=CONFIG["dft"],
        relax_overrides={"gpaw": {"parameters": {"xc": CONFIG["xc"], "optimizer": CONFIG["optimizer"]}}},
        funnel=True,
        dft_budget=CONFIG["budget"],
        **({"cheap_settings": {"max_steps": 20}} if SMOKE else {}),  # a few CHGNet steps: does the funnel run?
    )
    builder.generation.baseline = orm.Bool(mode == "random")
    builder.metadata.label = f"{STUDY} {target_name} {mode}"
    start = time.perf_counter()
    _, node = run_get_node(builder)
    seconds = time.perf_counter() - start
    if node.is_finished_ok:
        node.base.extras.set_many(
            {"study": STUDY, "target": target_name, "mode": mode, "config": json.dumps(CONFIG, sort_keys=True)}
        )
    return node, seconds


def cell(node, levels, level):
    if not node.is_finished_ok and level not in levels:
        return f"stopped ({node.exit_status})"
    metrics = levels.get(level)
    if metrics is None:
        return "-"
    found = "yes" if metrics["recovered"] else "no"
    return (
        f"{found} ({metrics['n_unique']} basins)"
        if level == "cheap"
        else f"{found} ({metrics.get('n_dft', metrics['n_structures'])} DFT)"
    )


rows = []
tally = {(mode, level): 0 for mode in ("generator", "random") for level in ("cheap", "dft")}
for name in targets:
    target, _ = sio2_target(name)
    row = [name, str(len(target))]
    for mode in ("generator", "random"):
        if mode not in ARMS:
            row += ["-"] * 4
            continue
        node, seconds = run(name, mode)
        started = time.perf_counter()
        levels = screening_metrics(node, reference=[target])
        metrics_seconds = time.perf_counter() - started
        for level in ("cheap", "dft"):  # recovered counts after DFT only; after CHGNet in its own column
            tally[(mode, level)] += bool(levels.get(level, {}).get("recovered"))
        wall = (node.mtime - node.ctime).total_seconds()
        row += [cell(node, levels, "cheap"), cell(node, levels, "dft"), f"{wall:.0f}", f"<{node.pk}>"]
        print(
            f"{name} {mode}: ScreeningWorkChain<{node.pk}> exit {node.exit_status}"
            + (f" in {seconds:.0f} s" if seconds else " (reused)")
            + f"; metrics {metrics_seconds:.1f} s",
            flush=True,
        )
    rows.append(row)

print(f"\nsettings: {json.dumps(CONFIG)}")
header = ["target", "atoms"] + [
    f"{mode}: {what}" for mode in ("generator", "random") for what in ("CHGNet", "DFT", "wall (s)", "node")
]
print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
for row in rows:
    print("| " + " | ".join(row) + " |")
print(
    f"\ntargets recovered after DFT: generator {tally[('generator', 'dft')]} of {len(targets)}, "
    f"random {tally[('random', 'dft')]} of {len(targets)} "
    "(paper, 20 models × 60,000 epochs: generator 6 of 6, random 3 of 6); "
    f"after CHGNet: generator {tally[('generator', 'cheap')]}, random {tally[('random', 'cheap')]}"
)
