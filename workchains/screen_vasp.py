"""The C5H12O screening of the main job with VASP as the DFT engine (through aiida-vasp), instead of GPAW.

Against a real VASP, give its code and your POTCAR family:

    verdi run workchains/screen_vasp.py --code vasp-6.4@my-cluster --potcar-family PBE.54 [--protocol balanced]

On a machine without VASP, ``--fake`` registers the fake VASP of the test suite (tests/vasp/fake_vasp.py: ASE's EMT
potential behind VASP's input and output files, so aiida-vasp's work chains, parser and handlers all run) as the
code ``fake-vasp@localhost``, and a family ``FAKE_PBE`` of header-only POTCARs (no real POTCAR is shipped):

    verdi run workchains/screen_vasp.py --fake
    verdi run workchains/screen_vasp.py --fake --smoke   # under a minute: does the script run here?

Nothing else differs between the two: the same script, the same work chain, only the code label and the POTCAR
family change. ``--steps N`` shortens the training (1,200 steps by default, as the main job).
Resources, walltime and queue come from ``--options '{"resources": {"num_machines": 1,
"num_mpiprocs_per_machine": 32}, "max_wallclock_seconds": 7200, "queue_name": "normal"}'`` (or the protocol).
"""

import json
import sys
import time
from pathlib import Path

from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.launch import screening_builder
from aiida_physgen.screening.report import print_report


def option(name: str, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


if "--fake" in sys.argv:
    import aiida_physgen

    # the checkout's tests/vasp (the set-up installs this package from the checkout, in editable mode)
    sys.path.insert(0, str(Path(aiida_physgen.__file__).resolve().parents[1] / "tests" / "vasp"))
    from fixtures import fake_vasp_on_localhost

    code, family = fake_vasp_on_localhost()
else:
    if option("--code") is None or option("--potcar-family") is None:
        sys.exit("usage: verdi run workchains/screen_vasp.py --code LABEL --potcar-family NAME [--protocol P] | --fake")
    code = orm.load_code(option("--code"))
    family = option("--potcar-family")

overrides = {"potential_family": family}
if option("--options"):
    overrides["options"] = json.loads(option("--options"))
start = time.perf_counter()
STUDY = {
    "generation_protocol": "fast",
    "seeds": [0, 1],
    "settings": {"loop": {"steps": int(option("--steps", 1200))}},
    "n_clusters": 60,
    "funnel": True,
    "dft_budget": 6,
}
#: --smoke: the LoGAN family's smoke protocol (one 20-step model, 2 picks) straight to VASP (e.g. with --fake)
SMOKE = {"generation_protocol": "smoke", "funnel": False}
builder = screening_builder(
    "logan/C5H12O_training.extxyz",
    "C5H12O",
    box=9.5,
    engine="vasp",
    code=code,
    protocol=option("--protocol", "fast"),
    relax_overrides=overrides,
    **(SMOKE if "--smoke" in sys.argv else STUDY),
)
results, node = run_get_node(builder)
print(
    f"ScreeningWorkChain<{node.pk}> finished with exit status {node.exit_status} in {time.perf_counter() - start:.0f} s"
)
if node.is_finished_ok:
    print_report(node, output_dir=f"screening_{node.pk}")
