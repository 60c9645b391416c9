"""One-line launchers for the common cases (in the spirit of aiida-shell).

    from aiida_physgen.launch import gpaw_code, screening_builder
    builder = screening_builder("logan/C5H12O_training.extxyz", "C5H12O", box=9.5, code=gpaw_code())
    run(builder)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from aiida import orm

from .data.structure_set import StructureSet
from .resources import ROOT as RESOURCES

__all__ = ["gpaw_code", "localhost", "training_set", "generation_inputs", "screening_builder"]


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
            label=label, hostname="localhost", transport_type="core.local", scheduler_type="core.direct",
            workdir=str(workdir),
        ).store()
        computer.configure()
        computer.set_minimum_job_poll_interval(0.5)
        computer.set_default_mpiprocs_per_machine(1)
        return computer


def gpaw_code(label: str = "gpaw-python", computer: str = "localhost", executable: str | None = None) -> orm.InstalledCode:
    """A Code running the Python interpreter that has ASE and GPAW; created on ``computer`` when missing."""
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{label}@{computer}")
    except NotExistent:
        executable = executable or sys.executable or shutil.which("python3")
        code = orm.InstalledCode(
            label=label, computer=localhost(computer), filepath_executable=executable, default_calc_job_plugin="physgen.gpaw",
            description="Python interpreter with ASE and GPAW for physgen.gpaw",
        )
        code.prepend_text = "export OMP_NUM_THREADS=1"
        return code.store()


def training_set(source: str | Path | Sequence | StructureSet) -> StructureSet:
    """A ``physgen.structure_set`` from a file (a shipped resource name like ``'logan/C5H12O_training.extxyz'``
    works too), a list of ``ase.Atoms``, or an existing node."""
    if isinstance(source, StructureSet):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file() and (RESOURCES / str(source)).is_file():
            path = RESOURCES / str(source)
        return StructureSet.from_file(path)
    return StructureSet.from_ase(list(source))


def generation_inputs(
    training,
    composition: str,
    *,
    cell=None,
    box: float | None = None,
    pbc: Sequence[bool] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    settings: dict[str, Any] | None = None,
    grid: dict[str, list] | None = None,
    count: int = 2000,
    n_clusters: int = 20,
    n_components: int = 10,
    generation_seed: int = 0,
    selection_seed: int = 0,
    selection_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Inputs of :class:`~aiida_physgen.workflows.generation.GenerationWorkChain` from plain values.

    Give either ``box`` (a cubic, non-periodic box for molecules) or ``cell`` (+ ``pbc``, periodic by default).
    """
    if (box is None) == (cell is None):
        raise ValueError("cell, box: give exactly one of them (box for a molecule, cell for a crystal)")
    matrix = np.eye(3) * float(box) if box is not None else np.asarray(cell, dtype=float)
    periodic = [False] * 3 if box is not None else [bool(p) for p in (pbc if pbc is not None else [True] * 3)]
    inputs = {
        "training": training_set(training),
        "composition": orm.Str(composition),
        "cell": orm.List(matrix.tolist()),
        "pbc": orm.List(periodic),
        "seeds": orm.List([int(s) for s in seeds]),
        "count": orm.Int(count),
        "generation_seed": orm.Int(generation_seed),
        "selection_seed": orm.Int(selection_seed),
        "selection_settings": orm.Dict({"n_clusters": n_clusters, "n_components": n_components,
                                        **(selection_settings or {})}),
    }
    if settings:
        inputs["settings"] = orm.Dict(settings)
    if grid:
        inputs["grid"] = orm.Dict(grid)
    return inputs


def screening_builder(
    training,
    composition: str,
    *,
    code: orm.AbstractCode | None = None,
    engine: str = "gpaw",
    protocol: str = "fast",
    relax_overrides: dict[str, Any] | None = None,
    dos: bool = True,
    group_label: str | None = None,
    **generation: Any,
):
    """A ready :class:`~aiida_physgen.workflows.screening.ScreeningWorkChain` builder from plain values;
    ``generation`` takes the keywords of :func:`generation_inputs`."""
    from .workflows.screening import ScreeningWorkChain

    builder = ScreeningWorkChain.get_builder()
    builder.generation = generation_inputs(training, composition, **generation)
    builder.engine = orm.Str(engine)
    builder.code = code if code is not None else gpaw_code()
    builder.protocol = orm.Str(protocol)
    builder.dos = orm.Bool(dos)
    if relax_overrides:
        builder.relax_overrides = orm.Dict(relax_overrides)
    if group_label:
        builder.group_label = orm.Str(group_label)
    return builder
