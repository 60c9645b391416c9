"""Screening of one SiO2 target as in the LoGAN paper: train on the Materials Project polymorphs
with the target left out, generate in the target's cell and composition, relax with GPAW PW.

    verdi run workchains/screen_sio2.py [mp-546794 | mp-1188220 | ...] [--paper]
    verdi run workchains/screen_sio2.py --smoke   # under a minute: does the script run here? (not a screening)

--paper: 20 models × 60,000 epochs, 20 relaxations, PW 400 eV, LDA, 2×2×2 k-points, fixed cell.
--random: the random baseline (random coordinates in the target cell) through the same funnel.
--no-funnel: the representatives straight to DFT, without the CHGNet tier.

The last lines say whether the target polymorph was recovered (pymatgen StructureMatcher against the
shipped target), after CHGNet and after DFT.
"""

import sys
import time

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.ml.composition import composition_string
from aiida_physgen.resources import sio2_target
from aiida_physgen.screening.metrics import format_metrics_table
from aiida_physgen.screening.report import print_report, screening_metrics

PAPER = "--paper" in sys.argv
FUNNEL = "--no-funnel" not in sys.argv
names = [a for a in sys.argv[1:] if a.startswith("mp-")]
TARGET = names[0] if names else "mp-546794"
try:
    target, training_file = sio2_target(TARGET)
except ValueError as error:
    sys.exit(str(error))
composition = composition_string(target.get_chemical_symbols())

STUDY = {
    "generation_protocol": "paper" if PAPER else "fast",  # r_cut 6 Å, lr 10^-3.5; 20 × 60,000 or 2 × 300 epochs
    **({} if PAPER else {"count": 200, "n_clusters": 40 if FUNNEL else 4}),
    "protocol": "balanced" if PAPER else "fast",  # GPAW
    "funnel": FUNNEL,
    "dft_budget": 20 if PAPER else 4,
}
#: --smoke: the LoGAN family's and GPAW's smoke protocols (one 20-step model, 2 picks, static single points)
SMOKE = {"generation_protocol": "smoke", "protocol": "smoke", "funnel": False}

start = time.perf_counter()
code = orm.load_code(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else None
builder = screening_builder(
    training_file,
    composition,
    cell=target.cell.array,
    pbc=[bool(p) for p in target.pbc],
    code=code,
    **(SMOKE if "--smoke" in sys.argv else STUDY),
)
builder.generation.baseline = orm.Bool("--random" in sys.argv)
results, node = run_get_node(builder)
print(
    f"ScreeningWorkChain<{node.pk}> for {TARGET} ({composition}) finished with exit status {node.exit_status} "
    f"in {time.perf_counter() - start:.0f} s"
)
if node.is_finished_ok:
    print_report(node, output_dir=f"screening_{node.pk}")
    print(
        f"target energy (Materials Project, PBE): {target.get_potential_energy() / len(target):.4f} eV/atom "
        "(not comparable with LDA; compare structures, not energies)"
    )
levels = screening_metrics(node, reference=[target])
if levels:
    print(
        format_metrics_table({("CHGNet" if level == "cheap" else "DFT"): metrics for level, metrics in levels.items()})
    )
    for level, metrics in levels.items():
        print(
            f"{TARGET} recovered after {'CHGNet' if level == 'cheap' else 'DFT'}: "
            f"{'yes' if metrics['recovered'] else 'no'}"
        )
