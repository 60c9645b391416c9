"""LoGAN on SiO2: train on the Materials Project polymorphs with one target left out, then generate
candidates in the target's cell and composition and select representatives (as in the paper).

    verdi run workchains/logan_sio2.py [mp-1188220|mp-546546|mp-546794|mp-554151|mp-555235|mp-559550] [--paper]
    verdi run workchains/logan_sio2.py --smoke   # seconds: does the script run here? (not a model)

The `fast` protocol (2 models × 300 epochs) by default; ``--paper``: 20 models × 60,000 epochs, r_cut 6 Å,
learning rate 10^-3.5. ``--code LABEL`` trains as a CalcJob on that Code.
"""

import sys

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.composition import composition_string
from aiida_physgen.resources import sio2_target
from aiida_physgen.workflows.generation import GenerationWorkChain

PROTOCOL = "paper" if "--paper" in sys.argv else "smoke" if "--smoke" in sys.argv else "fast"
names = [a for a in sys.argv[1:] if a.startswith("mp-")]
TARGET = names[0] if names else "mp-546794"
code = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else None
try:
    target, training_file = sio2_target(TARGET)
except ValueError as error:
    sys.exit(str(error))
composition = composition_string(target.get_chemical_symbols())

builder = GenerationWorkChain.get_builder_from_protocol(
    StructureSet.from_file(training_file),
    {"composition": composition, "cell": target.cell.array.tolist(), "pbc": [bool(p) for p in target.pbc]},
    family="logan",
    protocol=PROTOCOL,
    training_code=orm.load_code(code) if code else None,
)
results, node = run_get_node(builder)
print(
    f"GenerationWorkChain<{node.pk}> for {TARGET} ({composition}, {PROTOCOL}) finished with exit status "
    f"{node.exit_status}"
)
if node.is_finished_ok:
    print(f"{len(results['candidates'])} candidates -> {len(results['representatives'])} representatives")
