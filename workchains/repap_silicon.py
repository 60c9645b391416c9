"""Amorphous silicon with RePAP end to end in AiiDA (``physgen.repap``), printing the quality table.

    verdi run workchains/repap_silicon.py                 # fast: 5,000 MD frames, LSTM 2 x 64 (2,000 steps), 1,000 structures; ~4 min
    verdi run workchains/repap_silicon.py --balanced      # the study's 40,000 frames and 2 x 256 network, 3,000 steps (~35 min)
    verdi run workchains/repap_silicon.py --steps 2000    # another training length
    verdi run workchains/repap_silicon.py --count 2000    # more structures
    verdi run workchains/repap_silicon.py --temperature 0.25  # sample sharper than the learnt distribution
    verdi run workchains/repap_silicon.py --dft 2         # then 2 representatives relaxed with GPAW (PW, Γ point)

The chain runs a melt-quench MD of 30 Si atoms (Stillinger-Weber as re-fitted for a-Si by Vink et al.,
LAMMPS), holds out the last 20 % of the trajectory, trains RePAP on the rest, generates structures with
close-contact redraws (2 Å) and the same draw without them, makes random structures at the same minimum
distance, and measures all against the held-out MD. The table's ``md_hold_out`` row is the floor: the
second half of the hold-out against its first half. The figures go to ``repap_<pk>/``. MD and training run
with AiiDA's caching on, so a second launch with another ``--count`` reuses them.
"""

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_physgen.workflows.repap import RepapWorkChain


def option(name: str, default=None):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


protocol = "balanced" if "--balanced" in sys.argv else "fast"
overrides = {}
if "--steps" in sys.argv:
    overrides["train"] = {"settings": {"loop": {"steps": option("--steps")}}}
if "--count" in sys.argv:
    overrides.setdefault("generate", {})["count"] = option("--count")
if "--temperature" in sys.argv:
    temperature = float(sys.argv[sys.argv.index("--temperature") + 1])
    overrides.setdefault("generate", {})["condition"] = {"temperature": temperature}
dft_code = None
if "--dft" in sys.argv:
    from aiida_physgen.launch import gpaw_code

    dft_code = gpaw_code()
builder = RepapWorkChain.get_builder_from_protocol(protocol, overrides, dft_code=dft_code)
if dft_code is not None:
    from aiida import orm

    builder.dft.count = orm.Int(option("--dft", 2))

start = time.perf_counter()
with ExitStack() as stack:
    for name in ("amorphous_md", "split_trajectory", "normalise_training_inputs", "train"):
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    results, node = run_get_node(builder)
print(f"RepapWorkChain<{node.pk}> ({protocol}) finished with exit status {node.exit_status} in "
      f"{time.perf_counter() - start:.0f} s")
if not node.is_finished_ok:
    print(node.exit_message)
    sys.exit(1)
print(node.outputs.quality["text"])
if "dft_check" in node.outputs:
    print()
    print(node.outputs.dft_check["text"])
folder = Path(f"repap_{node.pk}")
folder.mkdir(exist_ok=True)
for key in ("rdf_plot", "angle_plot", "energy_plot"):
    if key in node.outputs:
        (folder / f"{key[:-5]}.png").write_bytes(node.outputs[key].get_content(mode="rb"))
print(f"figures: {folder}/rdf.png, angle.png, energy.png")
