"""Porous graphene with RUGAN and the EDNN surrogate, end to end in AiiDA (``physgen.rugan``).

    verdi run workchains/rugan_graphene.py             # fast protocol: 4,096 Tersoff-labelled sheets, short EDNN
                                                       # and RUGAN trainings, 1,000 generated sheets at 1× and 4×
    verdi run workchains/rugan_graphene.py --paper     # the papers' sizes: 32,768 sheets, 10,000 generated sheets
                                                       # per scale, RUGAN 1,000 epochs (days on a CPU)
    verdi run workchains/rugan_graphene.py --dos       # and a GPAW DOS of one generated sheet (localhost GPAW)
    verdi run workchains/rugan_graphene.py --check 500 # fewer generated sheets per scale

Sheets, labels and trainings run with AiiDA's caching on: launched again with another ``--check`` count
(or ``--dos``), the script reuses the labelled sheets and trained models of an equivalent earlier run.

The last lines are the Kolmogorov–Smirnov table: the energy per area requested from RUGAN against the
energy the generated sheets have, by the EDNN (as in the paper) and by the Tersoff reference itself,
at 1× and 4× the training area; the figures go to ``report_<pk>/``.
"""

import sys
import time

from contextlib import ExitStack

from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_physgen.graphene.report import print_rugan_report
from aiida_physgen.workflows.rugan import RuganWorkChain


def option(name: str, default=None):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


overrides = {}
if option("--check"):
    overrides["check"] = {"count": option("--check")}
dos_code = None
if "--dos" in sys.argv:
    from aiida_physgen.launch import gpaw_code

    dos_code = gpaw_code()

start = time.perf_counter()
builder = RuganWorkChain.get_builder_from_protocol("paper" if "--paper" in sys.argv else "fast", overrides,
                                                   dos_code=dos_code)
with ExitStack() as stack:
    for name in ("porous_graphene", "label_reference", "normalise_training_inputs", "train"):
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    results, node = run_get_node(builder)
print(f"RuganWorkChain<{node.pk}> finished with exit status {node.exit_status} in {time.perf_counter() - start:.0f} s")
if node.is_finished_ok:
    print_rugan_report(node, output_dir=f"report_{node.pk}")
else:
    print(node.exit_message)
    sys.exit(1)
