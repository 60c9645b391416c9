"""Screening of C5H12O isomers as in the LoGAN paper, trained on C4H10O + C6H14O only.

    verdi run workchains/screen_c5h12o.py              # 12 models × 1,500 epochs, 24,000 candidates, 600
                                                       # representatives through GFN2-xTB, at most 20 DFT relaxations
    verdi run workchains/screen_c5h12o.py --paper      # the paper's training: 12 models × 45,000 epochs (days on a CPU)
    verdi run workchains/screen_c5h12o.py --no-funnel  # the old path: 20 representatives straight to DFT
    verdi run workchains/screen_c5h12o.py --smoke      # under a minute: does the script run here? (not a screening)
    verdi run workchains/screen_c5h12o.py --random     # the random baseline through the same funnel and budgets
    verdi run workchains/screen_c5h12o.py --models 6 --steps 1200   # a shorter training (about 15 minutes here)
    verdi run workchains/screen_c5h12o.py --picks 200  # fewer k-means picks for the cheap tier (600 by default)

The training and generation calcfunctions run with AiiDA's caching on: launched again with other picks,
budget or DFT settings, the script reuses the trained models and candidates of an equivalent earlier run.
Why 600 picks (30 × the DFT budget): from the same 24,000 candidates, 200 picks relaxed with xTB into 13 of
the 14 isomers (pentan-3-ol missing), 600 into all 14; xTB costs about 0.3 s a molecule here.

The paper found 12 of the 14 C5H12O isomers with 15 relaxations, all 14 with 38. The report's last
lines say how many of the 14 were found with how many DFT relaxations, and the discovery metrics.
"""

import sys
import time

from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_physgen.launch import screening_builder
from aiida_physgen.screening.metrics import format_metrics_table
from aiida_physgen.screening.report import print_report, screening_metrics

PAPER = "--paper" in sys.argv
FUNNEL = "--no-funnel" not in sys.argv
DFT_BUDGET = 20


def option(name: str, default=None):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


MODELS, STEPS = option("--models"), option("--steps")  # e.g. --models 6 --steps 1200: a shorter training
PICKS = option("--picks", 30 * DFT_BUDGET if FUNNEL else DFT_BUDGET)

STUDY = {
    "generation_protocol": "paper" if PAPER else "balanced",  # 12 models; 45,000 or 1,500 epochs; 2,000 candidates each
    "n_clusters": PICKS,
    "protocol": "balanced" if PAPER else "fast",  # GPAW
    **({"seeds": list(range(MODELS))} if MODELS else {}),
    **({"settings": {"loop": {"steps": STEPS}}} if STEPS else {}),
    "funnel": FUNNEL,
    "dft_budget": DFT_BUDGET,
}
#: --smoke: the LoGAN family's and GPAW's smoke protocols (one 20-step model, 2 picks, static single points)
SMOKE = {"generation_protocol": "smoke", "protocol": "smoke", "funnel": False}

start = time.perf_counter()
code = orm.load_code(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else None
builder = screening_builder(
    "logan/C5H12O_training.extxyz", "C5H12O", box=9.5, code=code, **(SMOKE if "--smoke" in sys.argv else STUDY)
)
builder.generation.baseline = orm.Bool("--random" in sys.argv)
with (
    enable_caching(identifier="aiida.calculations:physgen.train"),
    enable_caching(identifier="aiida.calculations:physgen.generate"),
):
    results, node = run_get_node(builder)
print(
    f"ScreeningWorkChain<{node.pk}> finished with exit status {node.exit_status} in {time.perf_counter() - start:.0f} s"
)
if node.is_finished_ok:
    print_report(node, output_dir=f"screening_{node.pk}")
levels = screening_metrics(node)
if levels:
    print(format_metrics_table({("xTB" if level == "cheap" else "DFT"): metrics for level, metrics in levels.items()}))
