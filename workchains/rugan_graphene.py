"""Porous graphene with RUGAN through the one screening, the EDNN surrogate as its cheap tier (``physgen.graphene``).

    verdi run workchains/rugan_graphene.py               # fast protocol: 4,096 Tersoff-labelled sheets, the EDNN,
                                                         # RUGAN, 1,000 generated sheets at 1× and 4×, the EDNN
                                                         # cheap tier, one static GPAW LCAO DOS, the KS check
    verdi run workchains/rugan_graphene.py --paper       # the papers' sizes: 32,768 sheets, 10,000 generated sheets
                                                         # per scale, RUGAN 1,000 epochs (days on a CPU)
    verdi run workchains/rugan_graphene.py --check 500   # fewer generated sheets per scale
    verdi run workchains/rugan_graphene.py --dft-budget 3  # DFT (GPAW DOS) of the 3 best distinct sheets
    verdi run workchains/rugan_graphene.py --smoke       # tiny sizes in about a minute: does the study run here?
    verdi run workchains/rugan_graphene.py --code gpaw@my-cluster  # GPAW through another code

The study is the protocol ``aiida_physgen/workflows/protocols/screening/graphene.yaml``. Sheets, labels and
trainings run with AiiDA's caching on, and finished GPAW runs are reused: launched again with another
``--check`` count, the script reuses the labelled sheets, the trained models and the DFT of an equivalent run.

The last lines are the Kolmogorov–Smirnov table of the ``label_consistency`` assessor: the energy per area
requested from RUGAN against the energy the generated sheets have, by the EDNN (as in the paper) and by the
Tersoff reference itself, at 1× and 4× the training area, with the baseline rows; the figures go to
``report_<pk>/``.
"""

import sys
import time
from contextlib import ExitStack

from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from aiida.orm import load_code

from aiida_physgen.screening.report import print_report
from aiida_physgen.workflows.graphene import GrapheneScreeningWorkChain


def option(name: str, default=None, kind=int):
    return kind(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


overrides = {}
if option("--check"):
    overrides["generation"] = {"count": option("--check")}
if option("--dft-budget"):
    overrides["dft_budget"] = option("--dft-budget")

start = time.perf_counter()
protocol = "paper" if "--paper" in sys.argv else "smoke" if "--smoke" in sys.argv else "fast"
builder = GrapheneScreeningWorkChain.get_builder_from_protocol(protocol, overrides)
if option("--code", kind=str):
    builder.screening.code = load_code(option("--code", kind=str))
with ExitStack() as stack:
    for name in ("porous_graphene", "label_reference", "normalise_training_inputs", "train"):
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    results, node = run_get_node(builder)
print(
    f"GrapheneScreeningWorkChain<{node.pk}> ({protocol}) finished with exit status {node.exit_status} in "
    f"{time.perf_counter() - start:.0f} s"
)
if not node.is_finished_ok:
    print(node.exit_message)
    sys.exit(1)
screening = next(child for child in node.called if child.process_label == "ScreeningWorkChain")
print(f"{len(results['training'])} training sheets; the screening: {screening.process_label}<{screening.pk}>")
print_report(screening, output_dir=f"report_{node.pk}")
