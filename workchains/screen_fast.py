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
    seeds=[0, 1, 2, 3],
    settings={"steps": 400, "lr_generator": 1e-3, "lr_critic": 1e-3, "rattle_copies": 2},
    count=500,
    n_clusters=6,
    n_components=10,
    protocol="fast",
)
results, node = run_get_node(builder)
print(f"ScreeningWorkChain<{node.pk}> finished with exit status {node.exit_status} "
      f"in {time.perf_counter() - start:.0f} s")
if node.is_finished_ok:
    print_report(node, output_dir=f"screening_{node.pk}")
