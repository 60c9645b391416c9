"""Screening of C5H12O isomers as in the LoGAN paper, trained on C4H10O + C6H14O only.

    verdi run workchains/screen_c5h12o.py            # what 2 cores allow in about an hour
    verdi run workchains/screen_c5h12o.py --paper    # the paper: 12 models × 45,000 epochs, 24,000 candidates,
                                                     # 20 representatives, GPAW LCAO dzp, 3 Å vacuum, FIRE to 0.05 eV/Å

The paper found 12 of the 14 C5H12O isomers with 15 relaxations, all 14 with 38.
"""

import sys
import time

from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.report import print_report

PAPER = "--paper" in sys.argv

start = time.perf_counter()
builder = screening_builder(
    "logan/C5H12O_training.extxyz",
    "C5H12O",
    box=9.5,
    generation_protocol="paper" if PAPER else "balanced",  # 12 models; 45,000 or 1,500 epochs; 2,000 candidates each
    protocol="balanced" if PAPER else "fast",  # GPAW
)
results, node = run_get_node(builder)
print(f"ScreeningWorkChain<{node.pk}> finished with exit status {node.exit_status} in {time.perf_counter() - start:.0f} s")
if node.is_finished_ok:
    print_report(node, output_dir=f"screening_{node.pk}")
