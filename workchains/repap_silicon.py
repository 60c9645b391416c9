"""Amorphous silicon with RePAP through the one screening (``physgen.amorphous``), printing the RDF table.

    verdi run workchains/repap_silicon.py                 # fast: 5,000 MD frames, LSTM 2 x 64 (2,000 steps),
                                                          # 1,000 structures per condition, 20 representatives
                                                          # through SW-Vink, 2 GPAW relaxations
    verdi run workchains/repap_silicon.py --balanced      # the study's 40,000 frames and 2 x 256 network, 3,000 steps
    verdi run workchains/repap_silicon.py --steps 2000    # another training length
    verdi run workchains/repap_silicon.py --count 2000    # more structures per condition
    verdi run workchains/repap_silicon.py --temperature 0.25  # sample sharper than the learnt distribution
    verdi run workchains/repap_silicon.py --dft 4         # the DFT budget: GPAW relaxations of the best distinct ones
    verdi run workchains/repap_silicon.py --smoke         # tiny sizes in about a minute: does the study run here?
    verdi run workchains/repap_silicon.py --code gpaw@my-cluster  # GPAW through another code

The study is the protocol ``aiida_physgen/workflows/protocols/screening/amorphous.yaml``: a melt-quench MD of 30
Si atoms (Stillinger-Weber as re-fitted for a-Si by Vink et al., LAMMPS), the last 20 % of the trajectory held
out, RePAP trained on the rest, structures generated with close-contact redraws (2 Å) and without them, the
``amorphous`` validity check, PCA + k-means representatives relaxed with the same SW potential (the LAMMPS cheap
tier), GPAW relaxations (plane waves, Γ) of the best distinct ones, and the ``amorphous`` assessor: every
condition, the training frames and random structures at the same minimum distance against the held-out MD. The
table's ``md_hold_out`` row is the floor (the second half of the hold-out against its first half). The figures go
to ``report_<pk>/``. MD and training run with AiiDA's caching on and finished GPAW runs are reused, so a second
launch with another ``--count`` reuses them.
"""

import sys
import time
from contextlib import ExitStack

from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from aiida.orm import load_code

from aiida_physgen.screening.report import print_report
from aiida_physgen.workflows.amorphous import AmorphousScreeningWorkChain


def option(name: str, kind=int):
    return kind(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else None


protocol = "balanced" if "--balanced" in sys.argv else "smoke" if "--smoke" in sys.argv else "fast"
overrides = {}
if option("--steps"):
    overrides["generation"] = {"family_overrides": {"settings": {"loop": {"steps": option("--steps")}}}}
if option("--count"):
    overrides.setdefault("generation", {})["count"] = option("--count")
if option("--temperature", float):
    temperature = option("--temperature", float)
    conditions = AmorphousScreeningWorkChain.get_protocol_inputs(protocol)["generation"]["conditions"]
    overrides.setdefault("generation", {})["conditions"] = {name: {"temperature": temperature} for name in conditions}
if option("--dft"):
    overrides["dft_budget"] = option("--dft")

start = time.perf_counter()
code = load_code(option("--code", str)) if option("--code", str) else None
builder = AmorphousScreeningWorkChain.get_builder_from_protocol(protocol, overrides, code=code)
with ExitStack() as stack:
    for name in ("amorphous_md", "split_trajectory", "normalise_training_inputs", "train"):
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    results, node = run_get_node(builder)
print(
    f"AmorphousScreeningWorkChain<{node.pk}> ({protocol}) finished with exit status {node.exit_status} in "
    f"{time.perf_counter() - start:.0f} s"
)
if not node.is_finished_ok:
    print(node.exit_message)
    sys.exit(1)
screening = next(child for child in node.called if child.process_label == "ScreeningWorkChain")
print(
    f"MD: {len(results['trajectory'])} frames ({len(results['training'])} to train on, {len(results['held_out'])} "
    f"held out); the screening: {screening.process_label}<{screening.pk}>"
)
print_report(screening, output_dir=f"report_{node.pk}")
