"""The main job: a complete C5H12O screening with the cheap-tier funnel, in minutes on 2 cores.

Trains two LoGAN models (1,200 epochs each) on C4H10O + C6H14O molecules (QM9), generates 1,000
C5H12O candidates (a stoichiometry absent from training), keeps 60 k-means representatives
(descriptors → PCA → k-means), relaxes them all with GFN2-xTB (the cheap tier), sends DFT (GPAW,
protocol 'fast', with DOS) one structure per distinct sound xTB basin, at most 6, de-duplicates the
DFT basins and prints the report: the funnel's counts, the isomers found per DFT relaxation, and the
wall time split into training, cheap tier, DFT and the rest.

Why these numbers (measured here, `python /tmp/probe.py`-style runs recorded in the closing note of
issue 8): 4 models × 400 epochs gave 2 distinct isomers among 60 xTB-relaxed picks (49 fell apart);
2 models × 1,200 epochs gave 5 distinct isomers and only 3 unsound structures in 119 s of training.

    verdi run workchains/screen_fast.py
    verdi run workchains/screen_fast.py --smoke   # under a minute: does the script run here? (not a screening)

``--smoke`` runs the same script at sizes that only check that it runs (the ``smoke`` protocols of the LoGAN
family and of GPAW): one LoGAN trained 20 steps, 50 candidates, 2 representatives straight to DFT (no cheap tier:
a model this raw makes no sound molecule, so the funnel would stop, rightly, with "no sound basin") as static GPAW
LCAO single points with DOS. The test suite
runs it; ``tests/aiida/test_screening_funnel.py`` checks the funnel itself on water. ``--code LABEL`` runs GPAW
through another code.
"""

import sys
import time

from aiida.engine import run_get_node
from aiida.orm import load_code

from aiida_physgen.launch import screening_builder
from aiida_physgen.screening.report import print_report

STUDY = {
    "generation_protocol": "fast",  # lr 1e-3, 500 candidates per model (aiida_physgen/ml/protocols/logan.yaml)
    "seeds": [0, 1],
    "settings": {"loop": {"steps": 1200}},
    "n_clusters": 60,  # ten times the DFT budget go to the cheap tier
    "protocol": "fast",  # GPAW
    "funnel": True,
    "dft_budget": 6,
}
#: the LoGAN family's and GPAW's smoke protocols: one 20-step model, 50 candidates, 2 picks, static single points
SMOKE = {"generation_protocol": "smoke", "protocol": "smoke", "funnel": False}

start = time.perf_counter()
code = load_code(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else None
builder = screening_builder(
    "logan/C5H12O_training.extxyz",
    "C5H12O",
    box=9.5,
    code=code,
    **(SMOKE if "--smoke" in sys.argv else STUDY),
)
results, node = run_get_node(builder)
print(
    f"ScreeningWorkChain<{node.pk}> finished with exit status {node.exit_status} in {time.perf_counter() - start:.0f} s"
)
if not node.is_finished_ok:
    sys.exit(f"the screening failed: {node.exit_message}")
print_report(node, output_dir=f"screening_{node.pk}")
