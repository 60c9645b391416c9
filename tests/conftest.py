"""Shared fixtures: AiiDA's own pytest fixtures give a temporary SQLite profile for the session.

The profile gets AiiDA's built-in ZeroMQ broker, so daemon tests (stop and restart mid-run) work
with no external service, as with ``verdi presto``.
"""

import sys

import pytest

pytest_plugins = ["aiida.tools.pytest_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def aiida_profile(aiida_config, aiida_profile_factory):
    """The temporary profile, with SQLite storage and the ZeroMQ broker."""
    with aiida_profile_factory(aiida_config, broker_backend="core.zeromq") as profile:
        # the daemon's controller answers slowly on a loaded 2-core machine; AiiDA's default is 2 s
        aiida_config.set_option("daemon.timeout", 20, scope=profile.name)
        aiida_config.store()
        yield profile


@pytest.fixture
def gpaw_code(aiida_code_installed):
    """A localhost code running this very Python interpreter, which has ASE and GPAW."""
    pytest.importorskip("gpaw")
    return aiida_code_installed(
        label="gpaw-python",
        default_calc_job_plugin="physgen.gpaw",
        filepath_executable=sys.executable,
        prepend_text="export OMP_NUM_THREADS=1",
    )
