"""The ML layer imports no AiiDA: every module of ``aiida_physgen.ml`` and every built-in family, loaded in a fresh
interpreter (one subprocess for the whole layer, instead of one per family)."""

import os
import pkgutil
import subprocess
import sys

import aiida_physgen.ml

FAMILIES = ("logan", "rugan", "crystal_gan", "repap", "ednn")


def test_every_ml_module_and_family_imports_no_aiida():
    modules = sorted(f"aiida_physgen.ml.{info.name}" for info in pkgutil.iter_modules(aiida_physgen.ml.__path__))
    assert {"aiida_physgen.ml.logan", "aiida_physgen.ml.rugan", "aiida_physgen.ml.ednn"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from aiida_physgen.ml.family import get_family\n"
        f"for family in {FAMILIES!r}: get_family(family)\n"
        "import aiida_physgen.screening.selection, aiida_physgen.screening.basins\n"
        "bad = sorted(m for m in sys.modules if m == 'aiida' or m.startswith('aiida.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr
