"""The main job: a fast, complete screening of C5H12O that finishes in minutes on 2 cores.

Trains a small LoGAN ensemble on C4H10O + C6H14O molecules (QM9), generates C5H12O candidates (a
stoichiometry absent from training), selects representatives by descriptors → PCA → k-means,
relaxes them with GPAW (protocol 'fast', with DOS), de-duplicates the basins and prints the report.

    verdi run workchains/screen_fast.py
"""

import time

from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.report import print_report

start = time.perf_counter()
builder = screening_builder(
    "logan/C5H12O_training.extxyz",
    "C5H12O",
    box=9.5,
    generation_protocol="fast",  # 4 models, lr 1e-3, 500 candidates each (aiida_physgen/ml/protocols/logan.yaml)
    settings={"loop": {"steps": 400}, "rattle_copies": 2},  # half the demo's epochs: the main job stays short
    n_clusters=6,
    protocol="fast",  # GPAW
)
results, node = run_get_node(builder)
print(f"ScreeningWorkChain<{node.pk}> finished with exit status {node.exit_status} "
      f"in {time.perf_counter() - start:.0f} s")
if node.is_finished_ok:
    print_report(node, output_dir=f"screening_{node.pk}")
