"""LoGAN on QM9: train on C4H10O + C6H14O, generate C5H12O (never seen), select representatives.

    verdi run workchains/logan_c5h12o.py            # quick demo: a few minutes on 2 cores
    verdi run workchains/logan_c5h12o.py --paper    # the paper's settings: 12 models, 45,000 epochs each

Prints the pk of the workchain; then ``verdi process list -a``, ``verdi node graph generate <pk>``.
"""

import sys

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.resources import resource_path
from aiida_physgen.workflows.generation import GenerationWorkChain

PAPER = "--paper" in sys.argv
BOX = 9.5  # Å, cubic box for the generated molecule (no periodicity)

settings = {"r_cut": 5.0, "n_max": 4, "max_neighbours": 20, "steps": 45000 if PAPER else 800}
if not PAPER:
    settings.update({"lr_generator": 1e-3, "lr_critic": 1e-3, "rattle_copies": 3})

builder = GenerationWorkChain.get_builder()
builder.training = StructureSet.from_file(resource_path("logan/C5H12O_training.extxyz"))
builder.composition = orm.Str("C5H12O")
builder.cell = orm.List([[BOX, 0, 0], [0, BOX, 0], [0, 0, BOX]])
builder.pbc = orm.List([False, False, False])
builder.seeds = orm.List(list(range(12 if PAPER else 4)))
builder.settings = orm.Dict(settings)
builder.count = orm.Int(2000 if PAPER else 500)
builder.generation_seed = orm.Int(0)
builder.selection_settings = orm.Dict({"n_clusters": 20, "n_components": 10})
builder.selection_seed = orm.Int(0)

results, node = run_get_node(builder)
print(f"GenerationWorkChain<{node.pk}> finished with exit status {node.exit_status}")
if node.is_finished_ok:
    from aiida_physgen.basins import count_distinct_valid_molecules

    reps = results["representatives"]
    n_valid, smiles = count_distinct_valid_molecules(list(reps))
    print(f"{len(results['candidates'])} candidates -> {len(reps)} representatives; "
          f"{n_valid} distinct valid C5H12O molecular graphs among them: {sorted(smiles)}")
