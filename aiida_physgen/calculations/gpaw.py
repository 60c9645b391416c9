"""``CalcJob`` running GPAW (static, relaxation, optional DOS) through the standalone driver script.

The calculation job writes the settings to ``input.json`` and the structure to ``structure.extxyz``, copies
:mod:`aiida_physgen.calculations.gpaw_driver` into the working directory and runs ``python gpaw_driver.py``. The
``code`` must therefore be a Python interpreter that can import ASE and GPAW (locally: ``sys.executable``).

Parameters (``parameters`` input, a ``Dict``); every key is optional, see
:data:`aiida_physgen.calculations.gpaw_driver.DEFAULTS` for the defaults:

==================  ====================================================================================
``calculation``     ``'static'`` or ``'relax'``
``mode``            GPAW mode, ``'pw'`` or ``'lcao'``
``ecut``            plane-wave cutoff in eV (``'pw'`` only, > 0)
``h``               real-space grid spacing in Å (> 0)
``basis``           LCAO basis, e.g. ``'dzp'`` or ``'sz(dzp)'``
``xc``              exchange-correlation functional, e.g. ``'LDA'``, ``'PBE'``
``kpts``            Monkhorst-Pack mesh ``[n1, n2, n3]`` (1 along non-periodic directions)
``kpoint_density``  k-points per Å^-1 (ASE's ``kptdensity2monkhorstpack``); excludes ``kpts``
``gamma``           ``True``: Gamma-centred mesh, ``False``: Gamma excluded, ``None``: plain Monkhorst-Pack
``smearing``        Fermi-Dirac width in eV (>= 0)
``spinpol``         spin polarisation (bool); ``magmoms``: initial moments (number or one per atom)
``charge``          total charge
``maxiter``         maximum number of SCF iterations; ``mixer``: ``{'beta', 'nmaxold', 'weight'}``
``convergence``     SCF criteria ``{'energy', 'density', 'eigenstates'}``
``relax_cell``      relax the cell too (``'pw'``, fully periodic); ``optimizer``: ``'FIRE'`` or ``'BFGS'``
``fmax``            force criterion in eV/Å; ``max_steps``: maximum number of optimiser steps
``stress``          compute the stress in a static run (``'pw'``)
``dos``             compute the DOS; ``dos_npts``, ``dos_width`` (eV), ``dos_emin``/``dos_emax`` (eV, vs E_F)
==================  ====================================================================================

k-points: either in ``parameters`` (``kpts`` or ``kpoint_density``) or as the ``kpoints`` input, which must be a
*mesh* ``KpointsData`` whose offset is ``[0, 0, 0]`` (Gamma-centred) or ``[0.5, 0.5, 0.5]`` (shifted off Gamma);
explicit k-point lists are not supported. Without either, only the Gamma point is used.
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..ports import optional_output
from . import gpaw_driver as driver
from .codes import check_python_code, set_python_job_defaults

__all__ = ("GpawCalculation", "MIN_INTERATOMIC_DISTANCE", "closest_pair")

#: Two atoms closer than this (Å, periodic images included) make the structure invalid.
MIN_INTERATOMIC_DISTANCE = 0.5

DRIVER_FILENAME = "gpaw_driver.py"
STDERR_FILENAME = "aiida.err"


def closest_pair(atoms, cutoff: float):
    """Return ``(i, j, distance)`` for the closest pair of atoms within ``cutoff`` Å (periodic images count), or None.

    ``i == j`` means an atom is closer than ``cutoff`` to one of its own periodic images.
    """
    from ase.neighborlist import neighbor_list

    first, second, distances = neighbor_list("ijd", atoms, cutoff)
    if len(distances) == 0:
        return None
    index = int(np.argmin(distances))
    return int(first[index]), int(second[index]), float(distances[index])


def validate_structure(value: orm.StructureData, _port=None) -> str | None:
    """Reject structures with two atoms closer than ``MIN_INTERATOMIC_DISTANCE``."""
    if value is None:
        return None
    positions = np.array([site.position for site in value.sites], dtype=float)
    if not np.isfinite(positions).all() or not np.isfinite(np.array(value.cell, dtype=float)).all():
        return "`structure`: positions or cell contain non-finite numbers (NaN or inf); expected finite numbers in Å."
    atoms = value.get_ase()
    if len(atoms) == 0:
        return "`structure`: the structure contains no atoms."
    if any(value.pbc) and abs(value.get_cell_volume()) < 1e-6:
        return "`structure`: the cell of a periodic structure has zero volume."
    pair = closest_pair(atoms, MIN_INTERATOMIC_DISTANCE)
    if pair is None:
        return None
    i, j, distance = pair
    symbols = atoms.get_chemical_symbols()
    if i == j:
        return (
            f"`structure`: atom {i} ({symbols[i]}) is {distance:.3f} Å from its own periodic image, closer than the "
            f"minimum allowed distance of {MIN_INTERATOMIC_DISTANCE} Å."
        )
    return (
        f"`structure`: atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distance:.3f} Å apart, closer than the "
        f"minimum allowed distance of {MIN_INTERATOMIC_DISTANCE} Å."
    )


def validate_parameters(value: orm.Dict, _port=None) -> str | None:
    """Check names, types and values of the ``parameters`` with the driver's own schema."""
    if value is None:
        return None
    problems = driver.validate_settings(value.get_dict())
    if problems:
        return "`parameters`: " + "; ".join(problems) + "."
    return None


def kpoints_to_mesh(kpoints: orm.KpointsData) -> tuple[list[int], bool]:
    """Return ``(mesh, gamma)`` for a mesh ``KpointsData``; raise ``ValueError`` if it cannot be represented."""
    try:
        mesh, offset = kpoints.get_kpoints_mesh()
    except AttributeError:
        mesh, offset = None, None
    if mesh is None:
        raise ValueError("`kpoints`: only a k-point mesh is supported, not an explicit list of k-points.")
    offset = [0.0, 0.0, 0.0] if offset is None else [float(o) for o in offset]
    if all(abs(o) < 1e-8 for o in offset):
        return [int(n) for n in mesh], True
    if all(abs(o - 0.5) < 1e-8 for o in offset):
        return [int(n) for n in mesh], False
    raise ValueError(
        f"`kpoints`: the mesh offset must be [0, 0, 0] (Gamma-centred) or [0.5, 0.5, 0.5] (shifted off Gamma), "
        f"got {offset}."
    )


def validate_kpoints(value: orm.KpointsData, _port=None) -> str | None:
    if value is None:
        return None
    try:
        mesh, _ = kpoints_to_mesh(value)
    except ValueError as exception:
        return str(exception)
    if len(mesh) != 3 or any(n < 1 for n in mesh):
        return f"`kpoints`: the mesh must be three integers of at least 1, got {mesh}."
    return None


def validate_inputs(inputs, _port=None) -> str | None:
    """Check the inputs against each other: k-points versus periodicity, magnetic moments versus atoms; and the
    ``code`` (a Python interpreter, see :func:`~aiida_physgen.calculations.codes.check_python_code`)."""
    problem = check_python_code(inputs.get("code"))
    if problem:
        return problem
    structure = inputs.get("structure")
    parameters = inputs.get("parameters")
    kpoints = inputs.get("kpoints")
    if structure is None or parameters is None:
        return None
    settings = parameters.get_dict()
    if driver.validate_settings(settings):
        return None  # already reported by the `parameters` port validator
    if kpoints is not None:
        if settings.get("kpts") is not None or settings.get("kpoint_density") is not None:
            return (
                "`kpoints` and `parameters` both define k-points: drop `kpts`/`kpoint_density` from `parameters` "
                "or do not pass `kpoints`."
            )
        if settings.get("gamma") is not None:
            return "`parameters`: `gamma` cannot be combined with the `kpoints` input, whose offset sets it."
        try:
            mesh, _ = kpoints_to_mesh(kpoints)
        except ValueError:
            return None  # reported by the `kpoints` port validator
        settings = dict(settings, kpts=mesh)
    problems = driver.validate_settings_for_structure(settings, list(structure.pbc), len(structure.sites))
    if problems:
        return "`parameters` incompatible with `structure`: " + "; ".join(problems) + "."
    return None


class GpawCalculation(CalcJob):
    """Run a GPAW static or relaxation calculation (optionally followed by a DOS) with the standalone driver."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        set_python_job_defaults(spec, "physgen.gpaw", driver.INPUT_FILENAME)

        spec.input(
            "structure",
            valid_type=orm.StructureData,
            validator=validate_structure,
            help="The structure to compute; atoms closer than 0.5 Å (periodic images included) are rejected.",
        )
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            validator=validate_parameters,
            help="Driver settings (see the module docstring); unknown keys and invalid values are rejected.",
        )
        spec.input(
            "kpoints",
            valid_type=orm.KpointsData,
            required=False,
            validator=validate_kpoints,
            help="Optional k-point mesh (offset [0,0,0] or [0.5,0.5,0.5]); excludes `kpts`/`kpoint_density`.",
        )
        spec.inputs.validator = validate_inputs

        spec.output("output_parameters", valid_type=orm.Dict, help="Energies, Fermi level, convergence, timings.")
        optional_output(
            spec,
            "output_structure",
            orm.StructureData,
            "Last geometry of a relaxation (relaxed, or the last step reached when not converged).",
        )
        optional_output(spec, "forces", orm.ArrayData, "Array `forces` (eV/Å), final geometry.")
        optional_output(
            spec,
            "output_trajectory",
            orm.TrajectoryData,
            "All relaxation steps with arrays `energy` (eV), `forces` (eV/Å) and `stress` (eV/Å^3, cell relax).",
        )
        optional_output(
            spec,
            "dos",
            orm.XyData,
            "x: `energy` (eV, relative to E_F); y: `dos`, plus `dos_up`/`dos_down` when spin-polarised.",
        )
        spec.default_output_node = "output_parameters"

        spec.exit_code(
            300,
            "ERROR_OUTPUT_MISSING",
            message="The output file `{filename}` was not retrieved.",
            invalidates_cache=True,
        )
        spec.exit_code(
            301,
            "ERROR_OUTPUT_UNREADABLE",
            message="The output file `{filename}` could not be read: {error}",
            invalidates_cache=True,
        )
        spec.exit_code(302, "ERROR_DRIVER_CRASHED", message="The GPAW driver crashed: {error}")
        spec.exit_code(303, "ERROR_INVALID_SETTINGS", message="The GPAW driver rejected its settings: {error}")
        spec.exit_code(
            304,
            "ERROR_ATOM_LEFT_BOX",
            message="An atom reached the edge of the non-periodic box (the molecule is coming apart): {error}",
        )
        spec.exit_code(310, "ERROR_SCF_NOT_CONVERGED", message="The SCF cycle did not converge: {error}")
        spec.exit_code(
            320,
            "ERROR_RELAX_NOT_CONVERGED",
            message="The relaxation did not converge within the maximum number of steps: {error}",
        )
        spec.exit_code(
            330,
            "ERROR_INTERRUPTED",
            message="The GPAW driver was interrupted (killed, out of memory or walltime) after {frames} recorded "
            "step(s); `output_structure` is the last geometry it reached.",
            invalidates_cache=True,
        )

    def prepare_for_submission(self, folder):
        from ase.io import write

        settings = self.inputs.parameters.get_dict()
        if "kpoints" in self.inputs:
            mesh, gamma = kpoints_to_mesh(self.inputs.kpoints)
            settings["kpts"] = mesh
            settings["gamma"] = gamma

        with folder.open(driver.INPUT_FILENAME, "w", encoding="utf-8") as handle:
            json.dump(settings, handle, indent=2, sort_keys=True)

        atoms = self.inputs.structure.get_ase()
        buffer = io.StringIO()
        write(buffer, atoms, format="extxyz")
        with folder.open(driver.STRUCTURE_FILENAME, "w", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())

        script = pathlib.Path(driver.__file__).read_text(encoding="utf-8")
        with folder.open(DRIVER_FILENAME, "w", encoding="utf-8") as handle:
            handle.write(script)

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [DRIVER_FILENAME]
        codeinfo.stdout_name = self.metadata.options.output_filename
        codeinfo.stderr_name = STDERR_FILENAME
        codeinfo.withmpi = self.metadata.options.withmpi

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = []
        calcinfo.remote_copy_list = []
        calcinfo.retrieve_list = [*driver.OUTPUT_FILENAMES, self.metadata.options.output_filename, STDERR_FILENAME]
        return calcinfo
