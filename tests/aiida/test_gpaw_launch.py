"""Launch-time checks on the GPAW side: engine validation with dummy structures, builders that store nothing,
codes that cannot be a Python interpreter, `launch.gpaw_code` that does not invent codes."""

from __future__ import annotations

import os
import stat
import sys
import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_physgen.calculations.codes import check_python_code
from aiida_physgen.calculations.gpaw import GpawCalculation
from aiida_physgen.engines.gpaw import GpawEngine
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain


def count_nodes() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def h2(distance=0.75, vacuum=3.0) -> orm.StructureData:
    from ase import Atoms

    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, distance]])
    atoms.center(vacuum=vacuum)
    return orm.StructureData(ase=atoms)


def installed_code(computer, executable, label) -> orm.InstalledCode:
    return orm.InstalledCode(
        label=label, computer=computer, filepath_executable=executable, default_calc_job_plugin="physgen.gpaw"
    ).store()


# ----------------------------------------------------------------------------------------------------------------------
# RelaxationEngine.validate


def test_engine_validate_names_a_typo_fast_and_stores_nothing(gpaw_code):
    engine = GpawEngine()
    before = count_nodes()
    start = time.perf_counter()
    message = engine.validate(gpaw_code, "fast", {"gpaw": {"parameters": {"ecutt": 300}}})
    elapsed = time.perf_counter() - start
    assert message is not None and message.startswith("overrides") and "'ecutt'" in message
    assert elapsed < 0.5
    assert count_nodes() == before


@pytest.mark.parametrize(
    ("overrides", "periodic", "fragment"),
    [
        ({"box": 2.0}, False, "box: a 2.00 Å cube"),
        ({"gpaw": {"parameters": {"kpts": [3, 3, 3]}}}, False, "'kpts' must be 1 along the non-periodic"),
        ({"gpaw": {"metadata": {"options": {"max_wallclock_seconds": "soon"}}}}, None, "max_wallclock_seconds"),
        ({"gpaw": {"parameters": {"smearing": -1}}}, True, "'smearing' must be at least 0"),
        ({"max_iteration": 3}, None, "unknown protocol input"),
        ("ecut=300", None, "overrides: got str"),
    ],
)
def test_engine_validate_rejects(gpaw_code, overrides, periodic, fragment):
    message = GpawEngine().validate(gpaw_code, "fast", overrides, periodic=periodic)
    assert message is not None and fragment in message, message


def test_engine_validate_accepts_good_inputs(gpaw_code):
    engine = GpawEngine()
    assert engine.validate(gpaw_code, "fast") is None
    assert engine.validate(gpaw_code, "balanced", {"gpaw": {"parameters": {"ecut": 300.0}}}, periodic=True) is None
    # a per-atom list is checked on a dummy with as many atoms
    magmoms = {"gpaw": {"parameters": {"spinpol": True, "magmoms": [1.0, 0.0, 1.0]}}}
    assert engine.validate(gpaw_code, "fast", magmoms, dos=False) is None
    assert engine.validate(gpaw_code, "ultra").startswith("protocol:")
    assert engine.validate(None, "fast").startswith("code:")


# ----------------------------------------------------------------------------------------------------------------------
# builders that store nothing


def test_builder_stores_nothing_for_a_stored_molecule(gpaw_code):
    structure = h2(vacuum=10.0).store()
    before = count_nodes()
    builder = GpawBaseWorkChain.get_builder_from_protocol(
        gpaw_code, structure, protocol="balanced", overrides={"box": 8.0}
    )
    assert count_nodes() == before
    assert builder.gpaw.structure.uuid == structure.uuid  # centred later, by the work chain
    assert builder.center.vacuum.value == 3.0 and builder.center.box.value == 8.0
    assert not builder.center.vacuum.is_stored


def test_builder_refuses_nan_positions(gpaw_code):
    structure = h2()
    structure.reset_sites_positions([[0, 0, 0], [np.nan, 0, 0]])
    with pytest.raises(ValueError, match=r"^structure: atoms \[1\] have non-finite positions"):
        GpawBaseWorkChain.get_builder_from_protocol(gpaw_code, structure)
    with pytest.raises(ValueError, match="non-finite"):
        run_get_node(GpawCalculation, code=gpaw_code, structure=structure, parameters=orm.Dict({}))


def test_center_inputs_checked_at_launch(gpaw_code):
    inputs = {"gpaw": {"code": gpaw_code, "structure": h2(), "parameters": orm.Dict({"mode": "lcao"})}}
    before = count_nodes()
    workchains = orm.QueryBuilder().append(orm.WorkChainNode).count()
    with pytest.raises(ValueError, match="center.vacuum: got -1.0"):
        run_get_node(GpawBaseWorkChain, center={"vacuum": orm.Float(-1.0)}, **inputs)
    with pytest.raises(ValueError, match="center.box: a 3.00 Å cube"):
        run_get_node(GpawBaseWorkChain, center={"vacuum": orm.Float(3.0), "box": orm.Float(3.0)}, **inputs)
    assert count_nodes() - before <= 2  # at most the code's computer/auth; no process node
    assert orm.QueryBuilder().append(orm.WorkChainNode).count() == workchains


# ----------------------------------------------------------------------------------------------------------------------
# codes


def test_check_python_code(aiida_localhost, tmp_path):
    assert check_python_code(installed_code(aiida_localhost, sys.executable, "py")) is None
    message = check_python_code(installed_code(aiida_localhost, "/bin/bash", "bash"))
    assert message.startswith("code:") and "not a Python interpreter" in message
    message = check_python_code(installed_code(aiida_localhost, str(tmp_path / "python3"), "missing"))
    assert message.startswith("code:") and "does not exist" in message
    fake = tmp_path / "python3.99"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(stat.S_IRUSR)
    message = check_python_code(installed_code(aiida_localhost, str(fake), "noexec"), field="training_code")
    assert message.startswith("training_code:") and "not executable" in message


def test_remote_code_checks_only_the_name(tmp_path):
    computer = orm.Computer(
        label="remote-b",
        hostname="cluster.invalid",
        transport_type="core.ssh",
        scheduler_type="core.direct",
        workdir="/scratch",
    ).store()
    assert check_python_code(installed_code(computer, "/opt/never/python3.11", "remote-py")) is None
    assert "not a Python interpreter" in check_python_code(installed_code(computer, "/bin/bash", "remote-bash"))


def test_bash_code_refused_at_launch(aiida_localhost, gpaw_code):
    bash = installed_code(aiida_localhost, "/bin/bash", "bash-gpaw")
    calcjobs = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match="code: 'bash-gpaw@.*' runs '/bin/bash', which is not a Python"):
        run_get_node(GpawCalculation, code=bash, structure=h2(), parameters=orm.Dict({"mode": "lcao"}))
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == calcjobs
    assert GpawEngine().validate(bash, "fast").startswith("code:")


def test_training_job_refuses_a_shell_code(aiida_localhost):
    from aiida_physgen.calculations.training import validate_training_inputs

    bash = installed_code(aiida_localhost, "/bin/bash", "bash-train")
    assert validate_training_inputs({"code": bash}).startswith("code:")


# ----------------------------------------------------------------------------------------------------------------------
# launch.gpaw_code


def test_gpaw_code_does_not_invent_codes(aiida_localhost):
    from aiida_physgen.launch import gpaw_code

    code = gpaw_code(computer=aiida_localhost.label)
    assert code.label == "gpaw-python" and os.path.samefile(str(code.filepath_executable), sys.executable)
    assert gpaw_code(computer=aiida_localhost.label).uuid == code.uuid
    with pytest.raises(ValueError, match=r"code: no code 'gpaw-pyhton@.*'.*gpaw-python@"):
        gpaw_code("gpaw-pyhton", computer=aiida_localhost.label)
    assert gpaw_code("gpaw-other", computer=aiida_localhost.label, create=True).label == "gpaw-other"
    with pytest.raises(ValueError, match="code: .*not a Python interpreter"):
        gpaw_code("shell", computer=aiida_localhost.label, executable="/bin/bash", create=True)


def test_engine_builders_name_a_nan_molecule_and_keep_the_others(gpaw_code):
    good, bad = h2(), h2()
    bad.reset_sites_positions([[0, 0, 0], [0, 0, np.nan]])
    before = count_nodes()
    builders = GpawEngine().get_builders(gpaw_code, {"good": good, "bad": bad}, "fast", None, dos=False)
    assert builders["bad"].startswith("structure: atoms [1] have non-finite positions")
    assert not isinstance(builders["good"], str)
    assert builders["good"].center.box.value > 6.0
    assert count_nodes() == before
