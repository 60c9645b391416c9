"""LoGAN on SiO2: train on the Materials Project polymorphs with one target left out, then generate
candidates in the target's cell and composition and select representatives (as in the paper).

    verdi run workchains/logan_sio2.py [mp-1188220|mp-546546|mp-546794|mp-554151|mp-555235|mp-559550] [--paper]
"""

import sys

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.logan import composition_string
from aiida_physgen.resources import sio2_target
from aiida_physgen.workflows.generation import GenerationWorkChain

PAPER = "--paper" in sys.argv
names = [a for a in sys.argv[1:] if a.startswith("mp-")]
TARGET = names[0] if names else "mp-546794"
try:
    target, training_file = sio2_target(TARGET)
except ValueError as error:
    sys.exit(str(error))
composition = composition_string(target.get_chemical_symbols())

settings = {"r_cut": 6.0, "n_max": 4, "max_neighbours": 20, "lr_generator": 10**-3.5, "lr_critic": 10**-3.5,
            "steps": 60000 if PAPER else 300}
if not PAPER:
    settings["rattle_copies"] = 1

builder = GenerationWorkChain.get_builder()
builder.training = StructureSet.from_file(training_file)
builder.composition = orm.Str(composition)
builder.cell = orm.List(target.cell.array.tolist())
builder.pbc = orm.List([bool(p) for p in target.pbc])
builder.seeds = orm.List(list(range(20 if PAPER else 2)))
builder.settings = orm.Dict(settings)
builder.count = orm.Int(2000 if PAPER else 500)
builder.selection_settings = orm.Dict({"n_clusters": 20, "n_components": 10, "r_cut": 6.0})

results, node = run_get_node(builder)
print(f"GenerationWorkChain<{node.pk}> for {TARGET} ({composition}) finished with exit status {node.exit_status}")
if node.is_finished_ok:
    print(f"{len(results['candidates'])} candidates -> {len(results['representatives'])} representatives")
