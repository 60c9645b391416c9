"""The physics-guided crystal GAN's study through the one screening pipeline (``physgen.screening``).

    verdi run workchains/crystal_gan.py                        # the fast protocol: 1,000-step model on the shipped
                                                               # 99 half-Heuslers, 100 crystals each for F-43m and
                                                               # Fm-3m, CHGNet funnel, the best 3 to GPAW with DOS
    verdi run workchains/crystal_gan.py --engine vasp --code vasp-6.4@my-cluster --potcar-family PBE.54
    verdi run workchains/crystal_gan.py --engine vasp --fake   # the test suite's fake VASP, no VASP needed
    verdi run workchains/crystal_gan.py --protocol paper --training mp_ternaries.npz --code gpaw@my-cluster
    verdi run workchains/crystal_gan.py --smoke                # tiny sizes in minutes: does the study run here?

The known crystals are filtered first (``physgen.crystal_training_set``: the ternaries the crystal GAN can
learn from, and why the others were dropped); the pipeline then trains, generates one set per space group,
keeps the valid crystals (closest pair, density, charge balance), selects representatives, relaxes them with
CHGNet (cell free), sends one per distinct basin to DFT (cell relaxed) and assesses the result: formation
energy, uniqueness and novelty at the CHGNet level, with the training set's own formation energies beside
them. Everything else is the protocol ``workflows/protocols/screening/crystals.yaml``.

Options: ``--protocol fast|paper|smoke`` (``--smoke`` is ``--protocol smoke``), ``--engine gpaw|vasp``, ``--code
LABEL`` (the DFT code; GPAW's default is a Python on localhost), ``--potcar-family NAME`` (VASP), ``--fake`` (VASP:
register and use the fake of tests/vasp), ``--training FILE`` (known crystals: a structure file or a CIF folder;
default the shipped half-Heuslers). The steps before DFT run with AiiDA's caching on, so a second launch reuses the
trained model, the candidates and the cheap tier. The report (the crystal funnel's counts, the DFT minima, the
figures) is printed and written to ``screening_<pk>/``.
"""

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching

from aiida_physgen.calculations.crystals import crystal_training_set
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.crystal_data import EXAMPLE_FOLDER, example_structures
from aiida_physgen.screening.report import print_report
from aiida_physgen.workflows.screening import ScreeningWorkChain

ENGINES = ("gpaw", "vasp")


def option(name: str, default=None):
    if name not in sys.argv:
        return default
    index = sys.argv.index(name) + 1
    if index >= len(sys.argv) or sys.argv[index].startswith("--"):
        sys.exit(f"{name}: expected a value")
    return sys.argv[index]


def known_crystals(path: str | None) -> StructureSet:
    """The training crystals as one stored node, found again by its label when it was stored before."""
    if path is None:
        label, description = (
            f"crystal GAN examples: {EXAMPLE_FOLDER.name}",
            "99 half-Heusler ternaries (F-43m) shipped with aiida-physgen; see its README for the licence",
        )
    else:
        source = Path(path).resolve()
        if not source.exists():
            sys.exit(f"--training: {path} does not exist; expected a structure file or a folder of CIFs")
        label, description = f"crystal GAN training: {source}", f"known crystals read from {source}"
    found = orm.QueryBuilder().append(StructureSet, filters={"label": label}).first(flat=True)
    if found is not None:
        return found
    if path is None:
        batch = example_structures()
    elif source.is_dir():
        from aiida_physgen.ml.crystal_data import read_cif_folder

        batch = read_cif_folder(source, "--training")
    elif source.suffix == ".npz":  # what `aiida-physgen crystals filter` and `download-mp` write
        from aiida_physgen.ml.batch import StructureBatch

        batch = StructureBatch.from_npz(source)
    else:
        batch = StructureSet.from_file(source).get_batch()
    node = StructureSet(batch)
    node.label, node.description = label, description
    return node.store()


def vasp_settings() -> tuple[orm.AbstractCode, dict]:
    """The VASP code and the relaxation overrides: the POTCAR family and a cell relaxation (ISIF 3)."""
    if "--fake" in sys.argv:
        import aiida_physgen

        # the checkout's tests/vasp (the set-up installs this package from the checkout, in editable mode)
        sys.path.insert(0, str(Path(aiida_physgen.__file__).resolve().parents[1] / "tests" / "vasp"))
        from fixtures import fake_vasp_on_localhost

        code, family = fake_vasp_on_localhost()
    else:
        if option("--code") is None or option("--potcar-family") is None:
            sys.exit("--engine vasp: give --code LABEL and --potcar-family NAME, or --fake")
        code, family = orm.load_code(option("--code")), option("--potcar-family")
    return code, {"potential_family": family, "incar": {"isif": 3}}


engine = option("--engine", "gpaw")
if engine not in ENGINES:
    sys.exit(f"--engine: got {engine!r}, expected one of {list(ENGINES)}")
protocol = (
    "smoke" if "--smoke" in sys.argv else option("--protocol", ScreeningWorkChain.get_default_protocol("crystals"))
)
available = ScreeningWorkChain.get_available_protocols("crystals")
if protocol not in available:
    sys.exit(f"--protocol: got {protocol!r}, expected one of {sorted(available)}")
groups = ScreeningWorkChain.get_protocol_inputs(protocol, domain="crystals")["generation"]["target"].get("space_groups")

start = time.perf_counter()
with ExitStack() as stack:
    # a second launch (another engine, code or DFT setting) reuses the training, the candidates and the cheap tier
    for name in (
        "crystal_training_set",
        "normalise_training_inputs",
        "train",
        "generate",
        "check_validity",
        "select_representatives",
        "relax_cheap",
        "select_for_dft",
    ):
        stack.enter_context(enable_caching(identifier=f"aiida.calculations:physgen.{name}"))
    # the pre-step: the ternaries the crystal GAN can learn from, with what was dropped and why (provenance kept)
    inputs = {"structures": known_crystals(option("--training"))}
    if groups:
        inputs["space_groups"] = orm.List(list(groups))
    outputs, filtered = crystal_training_set.run_get_node(**inputs)
    if not filtered.is_finished_ok:
        sys.exit(f"crystal_training_set<{filtered.pk}> failed: {filtered.exit_message}")
    training = outputs["training"]
    dropped = training.base.attributes.get("dropped_counts")
    print(
        f"training set: {len(training)} of {len(inputs['structures'])} crystals kept"
        + (f"; dropped: {dropped}" if dropped else "")
    )

    code, overrides = None, {"engine": engine}
    if engine == "vasp":
        code, vasp_overrides = vasp_settings()
        overrides["relax_overrides"] = None  # the protocol's overrides are GPAW's; VASP's are set below
    elif option("--code"):
        code = orm.load_code(option("--code"))
    builder = ScreeningWorkChain.get_builder_from_protocol("crystals", training, protocol, overrides, code=code)
    if engine == "vasp":
        builder.relax_overrides = orm.Dict(vasp_overrides)
    results, node = run_get_node(builder)

print(
    f"ScreeningWorkChain<{node.pk}> ({protocol} protocol, {engine}) finished with exit status {node.exit_status} "
    f"in {time.perf_counter() - start:.0f} s"
)
if not node.is_finished_ok:
    print(node.exit_message)
    sys.exit(1)
print_report(node, output_dir=f"screening_{node.pk}")
