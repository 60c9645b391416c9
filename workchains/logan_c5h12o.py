"""LoGAN on QM9: train on C4H10O + C6H14O, generate C5H12O (never seen), select representatives.

    verdi run workchains/logan_c5h12o.py                 # the `fast` protocol: a few minutes on 2 cores
    verdi run workchains/logan_c5h12o.py --paper         # the paper's settings: 12 models, 45,000 epochs each
    verdi run workchains/logan_c5h12o.py --protocol balanced
    verdi run workchains/logan_c5h12o.py --smoke         # seconds: does the script run here? (not a model)

Add ``--code LABEL`` to train as a CalcJob on that Code (a Python with aiida-physgen; any computer),
which frees the daemon worker while the models train. Prints the pk of the workchain; then
``verdi process list -a``, ``verdi node graph generate <pk>``.
"""

import sys

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.resources import resource_path
from aiida_physgen.workflows.generation import GenerationWorkChain


def option(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


PROTOCOL = "paper" if "--paper" in sys.argv else "smoke" if "--smoke" in sys.argv else option("--protocol", "fast")
BOX = 9.5  # Å, cubic box for the generated molecule (no periodicity)
code = option("--code")

builder = GenerationWorkChain.get_builder_from_protocol(
    StructureSet.from_file(resource_path("logan/C5H12O_training.extxyz")),
    {"composition": "C5H12O", "cell": (np.eye(3) * BOX).tolist(), "pbc": False},
    family="logan",
    protocol=PROTOCOL,
    training_code=orm.load_code(code) if code else None,
)
results, node = run_get_node(builder)
print(f"GenerationWorkChain<{node.pk}> ({PROTOCOL}) finished with exit status {node.exit_status}")
if node.is_finished_ok:
    from aiida_physgen.screening.basins import count_distinct_valid_molecules

    reps = results["representatives"]
    n_valid, smiles = count_distinct_valid_molecules(list(reps))
    print(
        f"{len(results['candidates'])} candidates -> {len(reps)} representatives; "
        f"{n_valid} distinct valid C5H12O molecular graphs among them: {sorted(smiles)}"
    )
