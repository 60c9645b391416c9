"""Shared fixtures. AiiDA's own pytest fixtures give a temporary SQLite profile, but only to the
tests that ask for it (everything under ``tests/aiida/`` does, through its own conftest), so the
pure ML, selection and CLI tests start without a profile and the fast lane stays fast:

    pytest -m "not slow"        # the fast lane
    pytest                      # everything
    bash scripts/run_tests.sh   # everything, one worker per core (pytest-xdist), as CI runs it

The profile gets AiiDA's built-in ZeroMQ broker, so daemon tests (stop and restart mid-run) work
with no external service, as with ``verdi presto``.
"""

import sys
from pathlib import Path

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures", "skip_gate", "broker_nudges", "scheduling"]


@pytest.fixture(scope="session")
def aiida_profile(aiida_config, aiida_profile_factory):
    """The temporary profile, with SQLite storage and the ZeroMQ broker."""
    with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
        # the daemon's controller answers slowly on a loaded 2-core machine; AiiDA's default is 2 s
        aiida_config.set_option("daemon.timeout", 20, scope=profile.name)
        aiida_config.store()
        yield profile


@pytest.fixture
def gpaw_code(aiida_profile, aiida_code_installed):
    """A localhost code running this very Python interpreter, which has ASE and GPAW."""
    return aiida_code_installed(
        label="gpaw-python",
        default_calc_job_plugin="physgen.gpaw",
        filepath_executable=sys.executable,
        prepend_text="export OMP_NUM_THREADS=1",
    )


@pytest.fixture
def cheap_batch():
    """A factory of cheaply 'relaxed' C2H6O structures with given cheap energies: ethanol, ethanol rattled,
    dimethyl ether, ethanol torn in two fragments, ethanol again (in that order)."""
    import numpy as np
    from ase.build import molecule

    from aiida_physgen.ml.batch import StructureBatch

    def make(energies, failed=None):
        ethanol = molecule("CH3CH2OH")
        ethanol_2 = ethanol.copy()
        ethanol_2.rattle(0.01, seed=1)
        ether = molecule("CH3OCH3")
        apart = molecule("CH3CH2OH")
        apart.positions[apart.get_chemical_symbols().index("O")] += [6.0, 0, 0]  # OH torn off: two fragments
        structures = [ethanol, ethanol_2, ether, apart, ethanol.copy()]
        for atoms in structures:
            atoms.cell = [14.0, 14.0, 14.0]
            atoms.center()
            atoms.pbc = False
        batch = StructureBatch.from_atoms(structures)
        batch.info["cheap_energy"] = np.asarray(energies, dtype=float)
        batch.info["cheap_failed"] = np.asarray(failed if failed is not None else [0] * len(structures))
        return batch

    return make


#: the third-party package of the tests: one plug-in of every kind (docs/extending.md)
TOY_PROJECT = Path(__file__).resolve().parent / "plugins" / "physgen_toy"


def register_distribution(project: Path, site: Path) -> Path:
    """Make ``project`` (a folder with a ``pyproject.toml`` and its package) importable and its entry points
    visible to ``importlib.metadata``, as ``pip install -e`` would, with no install: the ``.dist-info`` of its
    ``[project]`` table (``METADATA`` and ``entry_points.txt``) is written into ``site``. Put ``site`` and
    ``project`` on ``sys.path`` to register it; take them off to unregister it. Returns the dist-info folder."""
    import tomllib

    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
        f"Summary: {meta.get('description', '')}\n",
        encoding="utf-8",
    )
    lines = []
    for group, points in meta.get("entry-points", {}).items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return info


@pytest.fixture
def toy_plugins(tmp_path_factory, monkeypatch):
    """The third-party package ``tests/plugins/physgen_toy`` registered for one test through the entry points of
    its own ``pyproject.toml`` only (family ``toy``, validity ``toy_compact``, engine ``toy_emt``, assessor
    ``toy_energy``); unregistered after it. Gives the project folder."""
    site = tmp_path_factory.mktemp("site-packages")
    register_distribution(TOY_PROJECT, site)
    monkeypatch.syspath_prepend(str(TOY_PROJECT))
    monkeypatch.syspath_prepend(str(site))
    return TOY_PROJECT
