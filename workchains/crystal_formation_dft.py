"""The DFT formation energy of one generated crystal, with its elemental references relaxed the same way.

    verdi run workchains/crystal_formation_dft.py funnel1_F-43m.npz 197            # GPAW fast, PBE, cell relaxed
    verdi run workchains/crystal_formation_dft.py funnel1_F-43m.npz 197 --protocol balanced --code gpaw@cluster
    verdi run workchains/crystal_formation_dft.py crystals.npz 0 --smoke          # single points: does it run here?

CRYSTALS is a structure file of `aiida-physgen crystals funnel` (its CHGNet-relaxed primitive cells, with the cheap
formation energy in its info) or of `crystals generate`; INDEX picks one crystal. The crystal and one reference per
element (ASE's reference states) are relaxed in one RelaxSetWorkChain with the GPAW protocol asked, PBE and the cell
free, the crystals screening protocol's DFT settings; a composition with Cr, Mn, Fe, Co or Ni runs spin-polarised
from the Materials Project's initial moments (aiida_physgen.engines.spin), here and in its references alike. The
formation energy per atom comes from the calcfunction `dft_formation_energy`, stored with its provenance.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.calculations.formation import dft_formation_energy
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.workflows.formation_dft import reference_label, reference_structures
from aiida_physgen.workflows.relax_set import RelaxSetWorkChain

arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
options = dict(zip(sys.argv[1:], sys.argv[2:]))
if len(arguments) < 2 or not arguments[1].lstrip("-").isdigit():
    sys.exit("usage: verdi run workchains/crystal_formation_dft.py CRYSTALS.npz INDEX [--protocol P] [--code LABEL]")
path, index = Path(arguments[0]), int(arguments[1])
if not path.is_file():
    sys.exit(f"CRYSTALS: {path} is not a file")
batch = StructureBatch.from_npz(path)
if not 0 <= index < len(batch):
    sys.exit(f"INDEX: got {index}, expected 0 to {len(batch) - 1} (the file holds {len(batch)} crystals)")
atoms = batch[index]
if not atoms.pbc.all():
    sys.exit(f"CRYSTALS: structure {index} is not periodic along every axis")
SMOKE = "--smoke" in sys.argv
protocol = "smoke" if SMOKE else options.get("--protocol", "fast")
code = orm.load_code(options["--code"]) if "--code" in options else None

structures = {"crystal": orm.StructureData(ase=atoms), **reference_structures(atoms.get_chemical_symbols())}
inputs = {
    "structures": structures,
    "engine": orm.Str("gpaw"),
    "protocol": orm.Str(protocol),
    # the smoke protocol's single points move nothing, the cell included
    "relax_overrides": orm.Dict({"gpaw": {"parameters": {"xc": "PBE", **({} if SMOKE else {"relax_cell": True})}}}),
    "dos": orm.Bool(False),
}
if code is not None:
    inputs["code"] = code
names = ", ".join(sorted(set(structures) - {"crystal"}))
settings = f"GPAW {protocol}, PBE" + ("" if SMOKE else ", cell relaxed")
print(f"{atoms.get_chemical_formula()} ({len(atoms)} atoms) and references {names}: {settings}", flush=True)
results, node = run_get_node(RelaxSetWorkChain, **inputs)
if not node.is_finished_ok:
    sys.exit(f"RelaxSetWorkChain<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}")
relaxed, parameters = results["relaxed"], results["parameters"]
missing = sorted(set(structures) - set(relaxed))
if missing:
    sys.exit(f"RelaxSetWorkChain<{node.pk}>: {', '.join(missing)} did not finish; no formation energy")
references = {}
for label in structures:
    if label != "crystal":
        symbol = label.removeprefix(reference_label(""))
        references[f"{symbol}_structure"] = relaxed[label]
        references[f"{symbol}_parameters"] = parameters[label]
outputs, calculation = dft_formation_energy.run_get_node(relaxed["crystal"], parameters["crystal"], **references)
if not calculation.is_finished_ok:
    sys.exit(f"dft_formation_energy<{calculation.pk}>: {calculation.exit_message}")
formation = outputs["formation"]

print(f"\n{'structure':<10} {'formula':<10} {'atoms':>5} {'spin':>5} {'moment (uB)':>11} {'E/atom (eV)':>12}")
for label in ["crystal", *sorted(s for s in structures if s != "crystal")]:
    values = parameters[label].get_dict()
    n = len(relaxed[label].sites)
    moment = values.get("magnetic_moment")
    print(
        f"{label:<10} {relaxed[label].get_formula():<10} {n:>5} {'yes' if moment is not None else 'no':>5} "
        f"{'-' if moment is None else f'{moment:.2f}':>11} {values['energy'] / n:>12.4f}"
    )
ef = formation["formation_energy_per_atom"]
cheap = batch.info.get("formation_energy")
cheap_text = f"; CHGNet (the funnel's): {float(np.asarray(cheap)[index]):+.3f} eV/atom" if cheap is not None else ""
print(f"\nDFT formation energy of {formation['formula']}: {ef:+.3f} eV/atom{cheap_text}")
print(f"RelaxSetWorkChain<{node.pk}>, dft_formation_energy<{formation.creator.pk}>")
