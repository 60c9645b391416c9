"""Generator against the random baseline on C5H12O, with the same funnel and the same budgets.

Runs the main job's screening (2 LoGAN models × 1,200 steps, 1,000 candidates, 60 representatives,
GFN2-xTB, at most 6 DFT relaxations) once with the trained generator and once with the generation
chain's ``baseline`` switch (1,000 random structures in the same box, same min-distance rule, same
selection and funnel), then prints the discovery metrics side by side, at the cheap tier and after
DFT.

    verdi run workchains/c5h12o_vs_random.py                    # both runs (about 8 minutes here)
    verdi run workchains/c5h12o_vs_random.py --smoke            # about a minute: does the script run here?
    verdi run workchains/c5h12o_vs_random.py --generator <pk> [--random <pk>]   # reuse finished screenings
    aiida-physgen report <generator pk> --vs <random pk>                       # the same table, with the report
"""

import sys

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.screening.report import compare_screenings

STUDY = {
    "generation_protocol": "fast",
    "seeds": [0, 1],
    "settings": {"loop": {"steps": 1200}},
    "n_clusters": 60,
    "protocol": "fast",
    "funnel": True,
    "dft_budget": 6,
}
#: --smoke: the LoGAN family's and GPAW's smoke protocols (one 20-step model, 2 picks, static single points)
SMOKE = {"generation_protocol": "smoke", "protocol": "smoke", "funnel": False}
code = orm.load_code(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else None


def builder(baseline: bool):
    b = screening_builder(
        "logan/C5H12O_training.extxyz", "C5H12O", box=9.5, code=code, **(SMOKE if "--smoke" in sys.argv else STUDY)
    )
    b.generation.baseline = orm.Bool(baseline)
    return b


runs = {}
if "--generator" in sys.argv:
    runs["generator"] = orm.load_node(int(sys.argv[sys.argv.index("--generator") + 1]))
else:
    runs["generator"] = run_get_node(builder(False))[1]
if "--random" in sys.argv:
    runs["random"] = orm.load_node(int(sys.argv[sys.argv.index("--random") + 1]))
else:
    runs["random"] = run_get_node(builder(True))[1]

for name, node in runs.items():
    print(f"{name}: ScreeningWorkChain<{node.pk}> exit status {node.exit_status} {node.exit_message or ''}")
print(compare_screenings(runs))
