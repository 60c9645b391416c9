"""Launch-time checks of the ``code`` of the plugin's calculation jobs.

Both :class:`~aiida_physgen.calculations.gpaw.GpawCalculation` (``python gpaw_driver.py``) and the training job
(``python -m aiida_physgen train``) run their work with a Python interpreter, so their code must be one. Checked
without opening a transport:

* the executable's name must look like a Python interpreter (``python``, ``python3``, ``python3.11``, ``pypy3``,
  ``gpaw-python``); on a computer with local transport a symbolic link to one also counts;
* on a computer with local transport (``core.local``) the executable must also exist and be executable.

Remote computers are never contacted at launch: only the name is checked there.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from aiida import orm

__all__ = (
    "check_python_code",
    "PYTHON_NAME",
    "DEFAULT_GPAW_CODE",
    "gpaw_code",
    "localhost",
    "STDOUT_FILENAME",
    "set_python_job_defaults",
)

#: Executable names accepted as a Python interpreter.
PYTHON_NAME = re.compile(r"^(python|pypy|gpaw-python)(\d+(\.\d+)*)?[mtd]?$")

_LOCAL_TRANSPORTS = ("core.local", "local")

#: the file a Python job's standard output is written to
STDOUT_FILENAME = "aiida.out"


def set_python_job_defaults(spec, parser_name: str, input_filename: str | None = None) -> None:
    """The ``metadata.options`` defaults of a serial Python job: one process on one machine, no MPI, the parser,
    standard output to :data:`STDOUT_FILENAME` (and the input file, when the job has one)."""
    options = spec.inputs["metadata"]["options"]
    options["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
    options["withmpi"].default = False
    options["parser_name"].default = parser_name
    options["output_filename"].default = STDOUT_FILENAME
    if input_filename is not None:
        options["input_filename"].default = input_filename


def _is_local(code: orm.AbstractCode) -> bool:
    computer = getattr(code, "computer", None)
    return computer is not None and computer.transport_type in _LOCAL_TRANSPORTS


def check_python_code(code: orm.AbstractCode | None, field: str = "code") -> str | None:
    """A message starting with ``field`` when ``code`` cannot be a Python interpreter, else ``None``.

    Opens no transport: only a code on a computer with local transport is looked up on the file system.
    """
    if code is None:
        return None
    if isinstance(code, orm.PortableCode):
        executable = str(code.filepath_executable)
        local = False  # uploaded with the job: only its name can be checked here
    elif isinstance(code, orm.ContainerizedCode):
        executable = str(code.filepath_executable)
        local = False  # runs inside the container image
    elif isinstance(code, orm.InstalledCode):
        executable = str(code.filepath_executable)
        local = _is_local(code)
    else:
        try:
            executable = str(code.get_executable())
        except Exception:  # noqa: BLE001 - an unusual code class: nothing to check
            return None
        local = _is_local(code)

    name = Path(executable).name
    label = getattr(code, "full_label", None) or code.label
    if local:
        path = executable if os.path.isabs(executable) else shutil.which(executable)
        if path is None or not os.path.isfile(path):
            return (
                f"{field}: {label!r} runs {executable!r}, which does not exist on {code.computer.label!r}; expected "
                "the path of a Python interpreter (e.g. sys.executable)"
            )
        if not os.access(path, os.X_OK):
            return f"{field}: {label!r} runs {executable!r}, which is not executable; expected a Python interpreter"
        if PYTHON_NAME.match(name) or PYTHON_NAME.match(Path(os.path.realpath(path)).name):
            return None
    elif PYTHON_NAME.match(name):
        return None
    return (
        f"{field}: {label!r} runs {executable!r}, which is not a Python interpreter; expected an executable named "
        "like python, python3 or python3.11 (the job runs a Python script with it)"
    )


def localhost(label: str = "localhost") -> orm.Computer:
    """The computer ``label``; when it is missing and ``label`` is ``'localhost'``, it is created (direct
    scheduler, local transport). Any other missing computer is an error: set it up with ``verdi computer setup``."""
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_computer(label)
    except NotExistent:
        if label != "localhost":
            raise ValueError(
                f"computer: no computer {label!r} is configured; set it up with `verdi computer setup` and "
                "`verdi computer configure` (only 'localhost' is created automatically)"
            ) from None
        workdir = Path.home() / ".aiida_physgen" / "work"
        computer = orm.Computer(
            label=label,
            hostname="localhost",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(workdir),
        ).store()
        computer.configure()
        computer.set_minimum_job_poll_interval(0.5)
        computer.set_default_mpiprocs_per_machine(1)
        return computer


DEFAULT_GPAW_CODE = "gpaw-python"


def gpaw_code(
    label: str = DEFAULT_GPAW_CODE,
    computer: str = "localhost",
    executable: str | None = None,
    create: bool | None = None,
) -> orm.InstalledCode:
    """The Code ``label@computer`` running a Python interpreter that has ASE and GPAW.

    A missing code is created (with ``executable``, default ``sys.executable``) only when ``label`` is the default
    ``'gpaw-python'`` or ``create=True``: a misspelt label is an error listing the existing codes, never a new code.
    ``create=False`` never creates. The executable is checked (a Python interpreter; on a local computer one that
    exists) before anything is stored.
    """
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{label}@{computer}")
    except NotExistent:
        if create is False or (create is None and label != DEFAULT_GPAW_CODE):
            existing = sorted(
                {
                    code.full_label
                    for cls in (orm.InstalledCode, orm.PortableCode)
                    for code in orm.QueryBuilder().append(cls).all(flat=True)
                }
            )
            raise ValueError(
                f"code: no code '{label}@{computer}' exists; existing codes: {', '.join(existing) or 'none'}. "
                f"Pass create=True to create it (only {DEFAULT_GPAW_CODE!r} is created automatically)"
            ) from None
        executable = executable or sys.executable or shutil.which("python3")
        code = orm.InstalledCode(
            label=label,
            computer=localhost(computer),
            filepath_executable=executable,
            default_calc_job_plugin="physgen.gpaw",
            description="Python interpreter with ASE and GPAW for physgen.gpaw",
        )
        problem = check_python_code(code)
        if problem:
            raise ValueError(problem) from None
        code.prepend_text = "export OMP_NUM_THREADS=1"
        return code.store()
