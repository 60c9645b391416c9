"""The physics-guided crystal GAN end to end in AiiDA (``physgen.crystal_gan``).

    verdi run workchains/crystal_gan.py              # 1,000-step model on the shipped 99 half-Heuslers, 100 crystals
                                                     # each for F-43m and Fm-3m, CHGNet funnel, 2 to GPAW with DOS
    verdi run workchains/crystal_gan.py --count 300  # more crystals per space group
    verdi run workchains/crystal_gan.py --steps 2000 # a longer training (the family default)
    verdi run workchains/crystal_gan.py --no-dft     # stop after the ML stages
    verdi run workchains/crystal_gan.py --dft 3      # the best 3 to DFT

The model learns only F-43m (the shipped set has no other group); Fm-3m is generated through the same
conditioning on the group's symmetry operations. Training runs with AiiDA's caching on, so a second launch
with another ``--count`` reuses the trained model. The last lines are the funnel's table; the formation-
energy histogram goes to ``report_<pk>/``.
"""

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.crystal_data import EXAMPLE_FOLDER, example_structures
from aiida_physgen.workflows.crystal_gan import CrystalGanWorkChain


def option(name: str, default=None):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


# the shipped example set, stored once (found again by its label)
label = f"crystal GAN examples: {EXAMPLE_FOLDER.name}"
found = orm.QueryBuilder().append(StructureSet, filters={"label": label}).first(flat=True)
if found is None:
    found = StructureSet(example_structures())
    found.label = label
    found.description = "99 half-Heusler ternaries (F-43m) shipped with aiida-physgen; see its README for the licence"
    found.store()

builder = CrystalGanWorkChain.get_builder()
builder.training = found
builder.space_groups = orm.List([216])
builder.train.settings = orm.Dict({"loop": {"steps": option("--steps", 1000)}})
builder.generate.conditions = orm.Dict({"F-43m": {"space_group": 216}, "Fm-3m": {"space_group": 225}})
builder.generate.count = orm.Int(option("--count", 100))
builder.cheap_settings = orm.Dict({"max_steps": 150})
if "--no-dft" not in sys.argv:
    from aiida_physgen.launch import gpaw_code

    builder.dft.code = gpaw_code()
    builder.dft.count = orm.Int(option("--dft", 2))
    builder.dft.overrides = orm.Dict({"gpaw": {"parameters": {"ecut": 300.0, "kpts": [4, 4, 4], "fmax": 0.1}}})

start = time.perf_counter()
with ExitStack() as stack:
    for name in ("crystal_training_set", "normalise_training_inputs", "train"):
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    results, node = run_get_node(builder)
print(f"CrystalGanWorkChain<{node.pk}> finished with exit status {node.exit_status} in "
      f"{time.perf_counter() - start:.0f} s")
if not node.is_finished_ok:
    print(node.exit_message)
    sys.exit(1)
print(node.outputs.report["text"])
folder = Path(f"report_{node.pk}")
folder.mkdir(exist_ok=True)
(folder / "formation_energy.png").write_bytes(node.outputs.histogram.get_content(mode="rb"))
print(f"histogram: {folder / 'formation_energy.png'}")
