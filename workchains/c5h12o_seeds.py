"""The C5H12O study over independent seed sets, generator against the random baseline at the same budgets.

    verdi run workchains/c5h12o_seeds.py                 # seed sets 1, 2 and 3, both arms (about 25 min a set here)
    verdi run workchains/c5h12o_seeds.py --sets 1        # one seed set
    verdi run workchains/c5h12o_seeds.py --arms generator   # only the generator arm (random: only the baseline)
    verdi run workchains/c5h12o_seeds.py --smoke         # seconds of training, 2 picks: does the script run here?
    verdi run workchains/c5h12o_seeds.py --table-only    # the table and figure of the runs finished so far

The settings (``STUDY`` below) were fixed before any reported run and are the same for every seed set; a seed set
``k`` changes only the seeds: models ``100 k, 100 k + 1, ...``, the latent draws (``generation_seed = k``) and the
k-means (``selection_seed = k``); its random arm draws as many random structures as the generator makes, with
``generation_seed = k``, through the same selection, xTB tier and DFT budget. Finished runs are found again by
their extras (``study``, ``seed_set``, ``arm``, ``settings``) and not run twice.

Per run it prints the isomers found after DFT (of the 14 constitutional isomers), the DFT and xTB relaxations, the CPU
seconds of each stage (``aiida_physgen.screening.report.cpu_seconds``: training, generation, selection, xTB, DFT)
and the wall time; then one figure (``c5h12o_seeds.png``): isomers found after DFT against cumulative CPU seconds,
both arms, every seed set. The LoGAN paper found 12 of the 14 with 15 DFT relaxations and all 14 with 38.
"""

import json
import sys
import time

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.resources import reference_smiles
from aiida_physgen.screening.metrics import discovery_metrics
from aiida_physgen.screening.report import cpu_seconds, dft_relaxations, latest_screening
from aiida_physgen.workflows.screening import ScreeningWorkChain

STUDY_NAME = "c5h12o_seeds"
SMOKE = "--smoke" in sys.argv
#: fixed before the reported runs: 6 models of 1,200 epochs (the main job's learning rate and rattling, from the
#: family's balanced protocol), 24,000 candidates, 600 k-means picks through GFN2-xTB, at most 16 DFT relaxations
STUDY = {
    "models": 6,
    "steps": 1200,
    "candidates": 24000,
    "picks": 600,
    "dft_budget": 16,
    "generation_protocol": "balanced",
    "dft_protocol": "fast",
    "funnel": True,
}
if SMOKE:  # a check that the script runs, not a study: 2 picks straight to static single points
    STUDY = {**STUDY, "models": 1, "steps": 20, "candidates": 50, "picks": 2, "dft_protocol": "smoke", "funnel": False}


def option(name: str, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


SETS_GIVEN = str(option("--sets", "1" if SMOKE else "1,2,3")).split(",")
if not all(k.strip().isdigit() and int(k) > 0 for k in SETS_GIVEN):
    sys.exit(f"--sets: expected positive seed-set numbers separated by commas, e.g. 1,2,3; got {','.join(SETS_GIVEN)}")
SETS = [int(k) for k in SETS_GIVEN]
ARMS_GIVEN = str(option("--arms", "generator,random")).split(",")
if not ARMS_GIVEN or any(arm not in ("generator", "random") for arm in ARMS_GIVEN):
    sys.exit(f"--arms: expected generator, random or generator,random; got {','.join(ARMS_GIVEN)}")
ARMS = [arm for arm in ("generator", "random") if arm in ARMS_GIVEN]
CODE = orm.load_code(option("--code", None)) if "--code" in sys.argv else None
ISOMERS = reference_smiles("C5H12O")
#: exit statuses of a complete run: finished, or stopped by the funnel with no sound xTB basin (no DFT to spend)
NO_SOUND_BASIN = ScreeningWorkChain.exit_codes.ERROR_NO_SOUND_BASIN.status
COMPLETE = (0, NO_SOUND_BASIN)


def finished_run(seed_set: int, arm: str):
    return latest_screening(
        COMPLETE, study=STUDY_NAME, seed_set=seed_set, arm=arm, settings=json.dumps(STUDY, sort_keys=True)
    )


def run(seed_set: int, arm: str):
    node = finished_run(seed_set, arm)
    if node is not None or "--table-only" in sys.argv:
        return node
    builder = screening_builder(
        "logan/C5H12O_training.extxyz",
        "C5H12O",
        box=9.5,
        code=CODE,
        generation_protocol=STUDY["generation_protocol"],
        seeds=[100 * seed_set + i for i in range(STUDY["models"])],
        settings={"loop": {"steps": STUDY["steps"]}},
        count=STUDY["candidates"] // STUDY["models"],
        n_clusters=STUDY["picks"],
        generation_seed=seed_set,
        selection_seed=seed_set,
        protocol=STUDY["dft_protocol"],
        funnel=STUDY["funnel"],
        dft_budget=STUDY["dft_budget"],
    )
    builder.generation.baseline = orm.Bool(arm == "random")
    builder.metadata.label = f"{STUDY_NAME} set {seed_set} {arm}"
    start = time.perf_counter()
    _, node = run_get_node(builder)
    seconds = time.perf_counter() - start
    print(f"set {seed_set} {arm}: ScreeningWorkChain<{node.pk}> exit {node.exit_status} in {seconds:.0f} s")
    if node.exit_status in COMPLETE:
        node.base.extras.set_many(
            {"study": STUDY_NAME, "seed_set": seed_set, "arm": arm, "settings": json.dumps(STUDY, sort_keys=True)}
        )
    return node


def curve(node, cpu: dict) -> tuple[list[float], list[int]]:
    """Isomers found after DFT against cumulative CPU seconds: everything before DFT first, then each DFT
    relaxation in the order it finished, with its CPU."""
    from aiida_physgen.engines import get_engine

    engine = get_engine("gpaw", "structure")
    relaxations = sorted(dft_relaxations(node), key=lambda n: n.mtime) if node.is_finished_ok else []
    x, y = [0.0, cpu["total"] - cpu["dft"]], [0, 0]  # nothing is found before the first DFT relaxation ends
    structures, energies = [], []
    for relaxation in relaxations:
        result = engine.get_result(relaxation)
        structures.append(result.structure.get_ase())
        energies.append(result.energy)
        jobs = [c for c in relaxation.called_descendants if isinstance(c, orm.CalcJobNode) and c.is_terminated]
        x.append(x[-1] + sum(j.outputs.output_parameters.get("cpu_time") or 0.0 for j in jobs))
        y.append(len(discovery_metrics(structures, energies, reference=ISOMERS)["recovered"]))
    return x, y


rows, curves = [], {}
for seed_set in SETS:
    for arm in ARMS:
        node = run(seed_set, arm)
        if node is None or node.exit_status not in COMPLETE:
            rows.append([seed_set, arm, "not run" if node is None else f"failed ({node.exit_status})"] + [""] * 9)
            continue
        cpu = cpu_seconds(node)
        x, y = curve(node, cpu)
        curves[(seed_set, arm)] = (x, y)
        wall = (node.mtime - node.ctime).total_seconds()
        rows.append(
            [
                seed_set,
                arm,
                f"{y[-1]}/14" + (" (no sound xTB basin)" if node.exit_status == NO_SOUND_BASIN else ""),
                cpu["counts"]["dft_relaxations"],
                cpu["counts"]["cheap_relaxations"],
                f"{cpu['training']:.0f}",
                f"{cpu['generation'] + cpu['selection']:.0f}",
                f"{cpu['cheap']:.0f}",
                f"{cpu['dft']:.0f}",
                f"{cpu['total']:.0f}",
                f"{wall:.0f}",
                f"<{node.pk}>",
            ]
        )

print(f"\nsettings (fixed before the runs): {json.dumps(STUDY)}")
header = [
    "set",
    "arm",
    "isomers (DFT)",
    "DFT relax.",
    "xTB relax.",
    "CPU training (s)",
    "CPU gen.+sel. (s)",
    "CPU xTB (s)",
    "CPU DFT (s)",
    "CPU total (s)",
    "wall (s)",
    "node",
]
print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
for row in rows:
    print("| " + " | ".join(str(v) for v in row) + " |")

if curves:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (seed_set, arm), (x, y) in sorted(curves.items()):
        colour = colours[(seed_set - 1) % len(colours)]
        style = "-" if arm == "generator" else "--"
        ax.step(x, y, where="post", color=colour, linestyle=style, label=f"set {seed_set} {arm}")
        ax.plot(x[-1], y[-1], marker="o" if arm == "generator" else "x", color=colour)  # where the run ended
    ax.axhline(14, color="grey", linewidth=0.8)
    ax.set_xlabel("cumulative CPU seconds (training, generation, selection, xTB, then each DFT relaxation)")
    ax.set_xlim(left=0)
    ax.set_ylabel("C5H12O isomers found after DFT")
    ax.set_ylim(0, 14.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig("c5h12o_seeds.png", dpi=120)
    print("figure: c5h12o_seeds.png")
