#!/usr/bin/env python
"""Standalone GPAW driver used by :class:`aiida_physgen.calculations.gpaw.GpawCalculation`.

This script runs on the machine that executes the calculation and therefore depends only on the Python standard
library, NumPy, ASE and GPAW. It must never import ``aiida`` or ``aiida_physgen``: the calculation job copies this file
verbatim into its working directory and runs it as ``python gpaw_driver.py``.

Usage::

    python gpaw_driver.py [WORKDIR]

Inputs (in ``WORKDIR``, default the current directory):

* ``input.json``: the settings, see ``DEFAULTS`` below for the accepted keys and their defaults;
* ``structure.extxyz``: the initial structure (cell and ``pbc`` are honoured; initial magnetic moments are taken from
  the ``magmoms`` setting, not from the file).

Outputs:

* ``results.json``: status, energies (eV), Fermi level (eV), convergence flags, step counts, wall time, forces (eV/Å),
  stress (eV/Å^3, when computed) and error messages;
* ``final.extxyz``: the last geometry for which energy and forces are available (during a relaxation it is replaced,
  atomically, at every step);
* ``trajectory.extxyz``: every geometry visited by the optimiser (``relax`` only), with energy and forces, appended
  as each step completes;
* ``dos.json``: Gaussian-broadened density of states on an energy grid relative to the Fermi level (``dos`` only);
* ``gpaw.txt``: the GPAW text log;
* ``error.txt``: the traceback, when the run crashed.

The process exit status tells the outcome apart (``EXIT_STATUS`` below) and ``results.json`` repeats it as ``status``.
A run killed mid-relaxation (SIGKILL, out of memory, walltime) writes no ``results.json`` but leaves the trajectory
so far and the last geometry in ``final.extxyz``; the parser reports it as interrupted and the base work chain
restarts from that geometry. ``results.json`` and ``dos.json`` are written through a temporary name and renamed.
"""

import contextlib
import json
import math
import os
import sys
import time
import traceback
import warnings

DRIVER_VERSION = "1"

INPUT_FILENAME = "input.json"
STRUCTURE_FILENAME = "structure.extxyz"
RESULTS_FILENAME = "results.json"
FINAL_STRUCTURE_FILENAME = "final.extxyz"
TRAJECTORY_FILENAME = "trajectory.extxyz"
DOS_FILENAME = "dos.json"
LOG_FILENAME = "gpaw.txt"
ERROR_FILENAME = "error.txt"

#: Every file the driver may write; the calculation job retrieves all of them.
OUTPUT_FILENAMES = (
    RESULTS_FILENAME,
    FINAL_STRUCTURE_FILENAME,
    TRAJECTORY_FILENAME,
    DOS_FILENAME,
    LOG_FILENAME,
    ERROR_FILENAME,
)

STATUS_OK = "ok"
STATUS_SCF_NOT_CONVERGED = "scf_not_converged"
STATUS_RELAX_NOT_CONVERGED = "relax_not_converged"
STATUS_INVALID_INPUT = "invalid_input"
STATUS_CRASHED = "crashed"
#: an atom of a non-periodic box reached its edge (GPAW's ``GridBoundsError``, or ``AtomsTooClose`` to the boundary
#: at the start): a molecule coming apart
STATUS_LEFT_BOX = "atom_left_box"

#: Process exit status for every outcome.
EXIT_STATUS = {
    STATUS_OK: 0,
    STATUS_CRASHED: 1,
    STATUS_INVALID_INPUT: 2,
    STATUS_SCF_NOT_CONVERGED: 3,
    STATUS_RELAX_NOT_CONVERGED: 4,
    STATUS_LEFT_BOX: 5,
}

CALCULATIONS = ("static", "relax")
MODES = ("pw", "lcao")
OPTIMIZERS = ("FIRE", "BFGS")
MIXER_KEYS = ("beta", "nmaxold", "weight")
CONVERGENCE_KEYS = ("energy", "density", "eigenstates")

#: Accepted settings and their defaults. ``None`` means "not set": GPAW's own default applies (``h``, ``mixer``,
#: ``convergence``), or the setting is optional (k-points, DOS window, magnetic moments).
DEFAULTS = {
    "calculation": "static",  # 'static' or 'relax'
    "mode": "pw",  # GPAW mode: 'pw' (plane waves) or 'lcao'
    "ecut": 400.0,  # plane-wave cutoff in eV ('pw' only)
    "h": None,  # real-space grid spacing in Å
    "basis": None,  # LCAO basis set ('dzp' when 'lcao' and unset); in 'pw' mode only the initial guess
    "xc": "LDA",
    "kpts": None,  # Monkhorst-Pack mesh [n1, n2, n3]
    "kpoint_density": None,  # k-points per Å^-1 (ASE's kptdensity2monkhorstpack); exclusive with 'kpts'
    "gamma": None,  # True: Gamma-centred mesh, False: Gamma excluded, None: standard Monkhorst-Pack
    "smearing": 0.1,  # Fermi-Dirac width in eV
    "spinpol": False,
    "magmoms": None,  # initial magnetic moments: one number for every atom or a list (needs spinpol)
    "charge": 0.0,
    "maxiter": 333,  # maximum number of SCF iterations
    "mixer": None,  # density mixer {'beta': float, 'nmaxold': int, 'weight': float}
    "convergence": None,  # SCF criteria {'energy': eV/valence electron, 'density': e/valence electron, ...}
    "relax_cell": False,  # also relax the cell ('relax' with 'pw' and full periodicity)
    "optimizer": "FIRE",  # 'FIRE' or 'BFGS'
    "fmax": 0.05,  # force criterion in eV/Å
    "max_steps": 200,  # maximum number of optimiser steps
    "stress": False,  # compute the stress in a static run ('pw' only)
    "dos": False,  # compute the density of states after the run
    "dos_npts": 401,
    "dos_width": 0.1,  # Gaussian broadening in eV
    "dos_emin": None,  # lower end of the DOS window in eV relative to the Fermi level
    "dos_emax": None,  # upper end of the DOS window in eV relative to the Fermi level
}


def _is_bool(value):
    return isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unknown_functional(name):
    """A message when GPAW (installed here) does not know the functional ``name``, else ``None``. Where GPAW is
    not installed (the job runs on another machine) the name is left to GPAW there."""
    try:
        from gpaw.xc import XC
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # libxc's build note, not about this name
            XC(name)
    except Exception as exception:  # noqa: BLE001 - GPAW raises NameError, KeyError or ValueError by kind
        return f"'xc' is not a functional GPAW knows: {name!r} ({exception})"
    return None


def validate_settings(settings):
    """Return a list of human-readable problems with ``settings`` (empty when valid).

    Checks names, types and values of every key; does not check anything that needs the structure.
    """
    if not isinstance(settings, dict):
        return [f"the settings must be a dictionary, got {type(settings).__name__}"]

    errors = []
    unknown = sorted(set(settings) - set(DEFAULTS))
    for key in unknown:
        errors.append(f"unknown key '{key}'; accepted keys are: {', '.join(sorted(DEFAULTS))}")

    def get(key):
        return settings.get(key, DEFAULTS[key])

    def check_choice(key, choices):
        value = get(key)
        if value not in choices:
            errors.append(f"'{key}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")

    def check_number(key, minimum=None, strictly=True, optional=False):
        value = get(key)
        if value is None and optional:
            return
        if not _is_number(value):
            errors.append(f"'{key}' must be a finite number, got {value!r}")
            return
        if minimum is not None and (value <= minimum if strictly else value < minimum):
            relation = "greater than" if strictly else "at least"
            errors.append(f"'{key}' must be {relation} {minimum}, got {value!r}")

    def check_int(key, minimum, optional=False):
        value = get(key)
        if value is None and optional:
            return
        if not _is_int(value) or value < minimum:
            errors.append(f"'{key}' must be an integer of at least {minimum}, got {value!r}")

    def check_bool(key, optional=False):
        value = get(key)
        if value is None and optional:
            return
        if not _is_bool(value):
            errors.append(f"'{key}' must be true or false, got {value!r}")

    def check_string(key, optional=False):
        value = get(key)
        if value is None and optional:
            return
        if not isinstance(value, str) or not value.strip():
            errors.append(f"'{key}' must be a non-empty string, got {value!r}")

    check_choice("calculation", CALCULATIONS)
    check_choice("mode", MODES)
    check_number("ecut", minimum=0)
    check_number("h", minimum=0, optional=True)
    check_string("basis", optional=True)
    check_string("xc")
    xc = get("xc")
    if isinstance(xc, str) and xc.strip():
        problem = _unknown_functional(xc)
        if problem:
            errors.append(problem)
    check_number("kpoint_density", minimum=0, optional=True)
    check_bool("gamma", optional=True)
    check_number("smearing", minimum=0, strictly=False)
    check_bool("spinpol")
    check_number("charge")
    check_int("maxiter", 1)
    check_bool("relax_cell")
    check_choice("optimizer", OPTIMIZERS)
    check_number("fmax", minimum=0)
    check_int("max_steps", 1)
    check_bool("stress")
    check_bool("dos")
    check_int("dos_npts", 2)
    check_number("dos_width", minimum=0)
    check_number("dos_emin", optional=True)
    check_number("dos_emax", optional=True)

    kpts = get("kpts")
    if kpts is not None:
        if not isinstance(kpts, (list, tuple)) or len(kpts) != 3 or not all(_is_int(k) and k >= 1 for k in kpts):
            errors.append(f"'kpts' must be a list of three integers of at least 1, got {kpts!r}")
        if get("kpoint_density") is not None:
            errors.append("'kpts' and 'kpoint_density' are mutually exclusive: set only one of them")
    elif get("gamma") is not None and get("kpoint_density") is None:
        errors.append("'gamma' only applies to a k-point mesh: set 'kpts' or 'kpoint_density' as well")

    magmoms = get("magmoms")
    if magmoms is not None:
        if isinstance(magmoms, (list, tuple)):
            if not magmoms or not all(_is_number(m) for m in magmoms):
                errors.append(f"'magmoms' must be a number or a non-empty list of numbers, got {magmoms!r}")
        elif not _is_number(magmoms):
            errors.append(f"'magmoms' must be a number or a non-empty list of numbers, got {magmoms!r}")
        if get("spinpol") is not True:
            errors.append("'magmoms' requires 'spinpol' to be true")

    mixer = get("mixer")
    if mixer is not None:
        if not isinstance(mixer, dict):
            errors.append(f"'mixer' must be a dictionary with keys {', '.join(MIXER_KEYS)}, got {mixer!r}")
        else:
            for key in sorted(set(mixer) - set(MIXER_KEYS)):
                errors.append(f"'mixer' has unknown key '{key}'; accepted keys are: {', '.join(MIXER_KEYS)}")
            beta = mixer.get("beta")
            if beta is not None and not (_is_number(beta) and 0 < beta <= 1):
                errors.append(f"'mixer.beta' must be a number in (0, 1], got {beta!r}")
            nmaxold = mixer.get("nmaxold")
            if nmaxold is not None and not (_is_int(nmaxold) and nmaxold >= 1):
                errors.append(f"'mixer.nmaxold' must be an integer of at least 1, got {nmaxold!r}")
            weight = mixer.get("weight")
            if weight is not None and not (_is_number(weight) and weight > 0):
                errors.append(f"'mixer.weight' must be a positive number, got {weight!r}")

    convergence = get("convergence")
    if convergence is not None:
        if not isinstance(convergence, dict):
            errors.append(f"'convergence' must be a dictionary with keys {', '.join(CONVERGENCE_KEYS)}")
        else:
            for key, value in convergence.items():
                if key not in CONVERGENCE_KEYS:
                    errors.append(
                        f"'convergence' has unknown key '{key}'; accepted keys are: {', '.join(CONVERGENCE_KEYS)}"
                    )
                elif not (_is_number(value) and value > 0):
                    errors.append(f"'convergence.{key}' must be a positive number, got {value!r}")

    emin, emax = get("dos_emin"), get("dos_emax")
    if _is_number(emin) and _is_number(emax) and emin >= emax:
        errors.append(f"'dos_emin' ({emin}) must be lower than 'dos_emax' ({emax})")

    mode = get("mode")
    if get("relax_cell") is True:
        if get("calculation") != "relax":
            errors.append("'relax_cell' requires 'calculation' to be 'relax'")
        if mode != "pw":
            errors.append("'relax_cell' requires 'mode' to be 'pw' (GPAW computes the stress in PW mode only)")
    if get("stress") is True and mode != "pw":
        errors.append("'stress' requires 'mode' to be 'pw' (GPAW computes the stress in PW mode only)")
    if mode == "lcao" and "ecut" in settings:
        errors.append("'ecut' only applies to 'mode' 'pw'")

    return errors


def validate_settings_for_structure(settings, pbc, natoms):
    """Return problems that need the structure: periodicity and number of atoms."""
    errors = []
    kpts = settings.get("kpts")
    if isinstance(kpts, (list, tuple)) and len(kpts) == 3:
        for axis, (n, periodic) in enumerate(zip(kpts, pbc)):
            if not periodic and n != 1:
                errors.append(f"'kpts' must be 1 along the non-periodic direction {axis}, got {n}")
    magmoms = settings.get("magmoms")
    if isinstance(magmoms, (list, tuple)) and len(magmoms) != natoms:
        errors.append(f"'magmoms' has {len(magmoms)} values but the structure has {natoms} atoms")
    if settings.get("relax_cell") is True and not all(pbc):
        errors.append("'relax_cell' requires a structure that is periodic in all three directions")
    if settings.get("stress") is True and not all(pbc):
        errors.append("'stress' requires a structure that is periodic in all three directions")
    return errors


def resolve_settings(settings):
    """Return the settings with every default filled in."""
    resolved = dict(DEFAULTS)
    resolved.update(settings)
    if resolved["mode"] == "lcao" and resolved["basis"] is None:
        resolved["basis"] = "dzp"
    return resolved


def _write_json(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def _to_list(array):
    return None if array is None else [list(map(float, row)) for row in array]


def _kpoint_mesh(atoms, settings):
    """Return ``(size, gamma)`` for the calculator from the k-point settings."""
    from ase.calculators.calculator import kptdensity2monkhorstpack

    if settings["kpts"] is not None:
        size = [int(n) for n in settings["kpts"]]
    elif settings["kpoint_density"] is not None:
        size = [int(n) for n in kptdensity2monkhorstpack(atoms, kptdensity=settings["kpoint_density"], even=False)]
    else:
        size = [1, 1, 1]
    # Along non-periodic directions only the Gamma point makes sense.
    size = [n if periodic else 1 for n, periodic in zip(size, atoms.pbc)]
    return size, settings["gamma"]


def build_calculator(atoms, settings, kpts_size, gamma, txt):
    """Create the GPAW calculator described by ``settings``."""
    from gpaw import GPAW, PW, FermiDirac, Mixer

    kwargs = {
        "xc": settings["xc"],
        "kpts": {"size": tuple(kpts_size), "gamma": gamma} if gamma is not None else tuple(kpts_size),
        "occupations": FermiDirac(settings["smearing"]),
        "spinpol": settings["spinpol"],
        "maxiter": settings["maxiter"],
        "charge": settings["charge"],
        "txt": txt,
    }
    if settings["mode"] == "pw":
        kwargs["mode"] = PW(settings["ecut"])
    else:
        kwargs["mode"] = "lcao"
    if settings["basis"] is not None:
        kwargs["basis"] = settings["basis"]
    if settings["h"] is not None:
        kwargs["h"] = settings["h"]
    if settings["mixer"] is not None:
        kwargs["mixer"] = Mixer(**settings["mixer"])
    if settings["convergence"] is not None:
        kwargs["convergence"] = dict(settings["convergence"])
    return GPAW(**kwargs)


def _snapshot(atoms, include_stress):
    """Return a copy of ``atoms`` carrying the current energy, forces (and stress) as a single-point result."""
    from ase.calculators.singlepoint import SinglePointCalculator

    calc = atoms.calc
    results = {
        "energy": calc.get_potential_energy(atoms),
        "forces": calc.get_forces(atoms),
    }
    with contextlib.suppress(Exception):  # the free energy is optional
        results["free_energy"] = calc.get_potential_energy(atoms, force_consistent=True)
    if include_stress:
        results["stress"] = calc.get_stress(atoms)
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, **results)
    return copy


def _eigenvalues(calc):
    """Return ``(eigenvalues[spin, k, band], normalised k-point weights)`` in eV."""
    import numpy as np

    nspins = calc.get_number_of_spins()
    weights = np.asarray(calc.get_k_point_weights(), dtype=float)
    weights = weights / weights.sum()
    eigenvalues = np.array(
        [[calc.get_eigenvalues(kpt=k, spin=s) for k in range(len(weights))] for s in range(nspins)], dtype=float
    )
    return eigenvalues, weights


def electronic_summary(calc, smearing):
    """Return the Fermi level and, for gapped systems, HOMO, LUMO and gap (eV).

    When GPAW's Fermi level lies inside a gap (nearest states more than ten smearing widths away on both sides) the
    occupations do not depend on where exactly it sits, and GPAW keeps whatever value its solver started from (after
    moving atoms, the value of an earlier geometry). The reported ``fermi_energy`` is then the middle of the gap,
    the zero-temperature limit, so that it depends only on the final state; ``fermi_energy_gpaw`` keeps GPAW's value.
    """
    gpaw_fermi = float(calc.get_fermi_level())
    eigenvalues, _ = _eigenvalues(calc)
    below = eigenvalues[eigenvalues <= gpaw_fermi]
    above = eigenvalues[eigenvalues > gpaw_fermi]
    summary = {"fermi_energy": gpaw_fermi, "fermi_energy_gpaw": gpaw_fermi, "homo": None, "lumo": None, "band_gap": 0.0}
    if below.size and above.size:
        homo, lumo = float(below.max()), float(above.min())
        margin = max(10.0 * float(smearing), 1e-6)
        if gpaw_fermi - homo > margin and lumo - gpaw_fermi > margin:
            summary.update({"fermi_energy": 0.5 * (homo + lumo), "homo": homo, "lumo": lumo, "band_gap": lumo - homo})
    return summary


def compute_dos(calc, settings, fermi):
    """Return the Gaussian-broadened DOS relative to ``fermi`` (eV) from the calculator's eigenvalues."""
    import numpy as np

    eigenvalues, weights = _eigenvalues(calc)
    nspins = eigenvalues.shape[0]
    eigenvalues = eigenvalues - fermi
    width = float(settings["dos_width"])
    emin = settings["dos_emin"] if settings["dos_emin"] is not None else float(eigenvalues.min()) - 5 * width
    emax = settings["dos_emax"] if settings["dos_emax"] is not None else float(eigenvalues.max()) + 5 * width
    energies = np.linspace(emin, emax, int(settings["dos_npts"]))
    # Without spin polarisation every band holds two electrons.
    degeneracy = 2.0 if nspins == 1 else 1.0
    per_spin = []
    for spin in range(nspins):
        dos = np.zeros_like(energies)
        for k, weight in enumerate(weights):
            for eps in eigenvalues[spin, k]:
                dos += weight * np.exp(-(((energies - eps) / width) ** 2))
        per_spin.append(degeneracy * dos / (math.sqrt(math.pi) * width))
    data = {
        "energy": energies.tolist(),
        "dos": np.sum(per_spin, axis=0).tolist(),
        "fermi_energy": fermi,
        "width": width,
        "npts": int(settings["dos_npts"]),
        "spin_polarized": nspins == 2,
        "units": {"energy": "eV (relative to the Fermi level)", "dos": "states/eV"},
    }
    if nspins == 2:
        data["dos_up"] = per_spin[0].tolist()
        data["dos_down"] = per_spin[1].tolist()
    return data


def _write_atomic_text(path, text):
    """Write ``text`` to ``path`` through a temporary name in the same directory, then rename: a reader (or a run
    killed mid-write) sees the old file or the new one, never half of one."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _extxyz_text(atoms):
    import io

    from ase.io import write

    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


class _Recorder:
    """Record every geometry visited by the optimiser as it comes, so that a run killed mid-relaxation leaves its
    progress behind: the frame is appended to the trajectory file in one write (flushed to disk) and the final
    structure file is replaced atomically by the latest geometry."""

    def __init__(self, atoms, path, include_stress, is_master, final_path=None):
        self.atoms = atoms
        self.path = path
        self.final_path = final_path
        self.include_stress = include_stress
        self.is_master = is_master
        self.frames = 0
        self.last = None

    def __call__(self):
        self.last = _snapshot(self.atoms, self.include_stress)
        if self.is_master:
            text = _extxyz_text(self.last)
            with open(self.path, "a" if self.frames > 0 else "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if self.final_path is not None:
                _write_atomic_text(self.final_path, text)
        self.frames += 1


def run(workdir="."):  # noqa: PLR0915 - one linear procedure reads best here
    """Run the calculation described by the input files in ``workdir`` and return the process exit status."""
    start = time.time()
    cpu_start = time.process_time()
    os.chdir(workdir)

    results = {
        "driver_version": DRIVER_VERSION,
        "status": STATUS_CRASHED,
        "exit_status": EXIT_STATUS[STATUS_CRASHED],
        "errors": [],
        "scf_converged": None,
        "relax_converged": None,
        "relax_steps": 0,
        "energy": None,
        "free_energy": None,
        "energy_per_atom": None,
        "fermi_energy": None,
        "fermi_energy_gpaw": None,
        "homo": None,
        "lumo": None,
        "band_gap": None,
        "forces": None,
        "max_force": None,
        "stress": None,
        "scf_iterations": None,
        "wall_time": None,
        "cpu_time": None,  # seconds of CPU of this process (each MPI rank its own; the master's is written)
        "start_time": start,  # seconds since the epoch, to place the run on a timeline
        "end_time": None,
    }
    is_master = True

    def finish(status):
        results["status"] = status
        results["exit_status"] = EXIT_STATUS[status]
        results["end_time"] = time.time()
        results["wall_time"] = results["end_time"] - start
        results["cpu_time"] = time.process_time() - cpu_start
        if is_master:
            _write_json(RESULTS_FILENAME, results)
        return EXIT_STATUS[status]

    # Outputs of an earlier run in the same directory must not be mistaken for this run's.
    for stale in OUTPUT_FILENAMES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)

    try:
        with open(INPUT_FILENAME, encoding="utf-8") as handle:
            raw_settings = json.load(handle)
        problems = validate_settings(raw_settings)
        if problems:
            results["errors"].extend(problems)
            return finish(STATUS_INVALID_INPUT)
        settings = resolve_settings(raw_settings)

        import ase
        from ase.io import read

        atoms = read(STRUCTURE_FILENAME, format="extxyz")
        problems = validate_settings_for_structure(settings, list(atoms.pbc), len(atoms))
        if problems:
            results["errors"].extend(problems)
            return finish(STATUS_INVALID_INPUT)

        import gpaw
        from gpaw import KohnShamConvergenceError
        from gpaw.mpi import world

        is_master = world.rank == 0

        results.update(
            {
                "calculation": settings["calculation"],
                "settings": settings,
                "natoms": len(atoms),
                "formula": atoms.get_chemical_formula(),
                "pbc": [bool(p) for p in atoms.pbc],
                "gpaw_version": gpaw.__version__,
                "ase_version": ase.__version__,
            }
        )

        magmoms = settings["magmoms"]
        if magmoms is not None:
            atoms.set_initial_magnetic_moments(
                list(magmoms) if isinstance(magmoms, (list, tuple)) else [float(magmoms)] * len(atoms)
            )
        else:
            atoms.set_initial_magnetic_moments(None)

        kpts_size, gamma = _kpoint_mesh(atoms, settings)
        results["kpts"] = kpts_size
        results["gamma"] = gamma
        results["maxiter"] = settings["maxiter"]

        calc = build_calculator(atoms, settings, kpts_size, gamma, LOG_FILENAME)
        atoms.calc = calc

        relax = settings["calculation"] == "relax"
        include_stress = settings["stress"] or (relax and settings["relax_cell"])
        final = None

        try:
            if relax:
                from ase.filters import FrechetCellFilter
                from ase.optimize import BFGS, FIRE

                recorder = _Recorder(atoms, TRAJECTORY_FILENAME, include_stress, is_master, FINAL_STRUCTURE_FILENAME)
                target = FrechetCellFilter(atoms) if settings["relax_cell"] else atoms
                optimizer_class = {"FIRE": FIRE, "BFGS": BFGS}[settings["optimizer"]]
                optimizer = optimizer_class(target, logfile="-" if is_master else None)
                optimizer.attach(recorder, interval=1)
                try:
                    converged = bool(optimizer.run(fmax=settings["fmax"], steps=settings["max_steps"]))
                finally:
                    results["relax_steps"] = int(optimizer.nsteps)
                    results["trajectory_frames"] = recorder.frames
                    final = recorder.last
                results["relax_converged"] = converged
            else:
                final = _snapshot(atoms, include_stress)
        except KohnShamConvergenceError as exception:
            results["scf_converged"] = False
            results["errors"].append(
                f"SCF did not converge within maxiter={settings['maxiter']} iterations: {exception!r}".rstrip()
            )
            if relax:
                results["relax_converged"] = False
            if final is not None and is_master:
                _write_atomic_text(FINAL_STRUCTURE_FILENAME, _extxyz_text(final))
                results["final_structure_is_last_converged_step"] = True
            return finish(STATUS_SCF_NOT_CONVERGED)

        results["scf_converged"] = True
        try:
            results["scf_iterations"] = int(calc.get_number_of_iterations())
        except Exception:  # noqa: BLE001 - informational only
            results["scf_iterations"] = None

        energy = final.get_potential_energy()
        forces = final.get_forces()
        results["energy"] = float(energy)
        results["energy_per_atom"] = float(energy) / len(final)
        try:
            results["free_energy"] = float(final.get_potential_energy(force_consistent=True))
        except Exception:  # noqa: BLE001 - optional
            results["free_energy"] = None
        results["forces"] = _to_list(forces)
        results["max_force"] = float(max((sum(c * c for c in row) ** 0.5 for row in forces), default=0.0))
        if include_stress:
            results["stress"] = _to_list(final.get_stress(voigt=False))
        results.update(electronic_summary(calc, settings["smearing"]))
        if settings["spinpol"]:
            results["magnetic_moment"] = float(calc.get_magnetic_moment())

        if is_master:
            _write_atomic_text(FINAL_STRUCTURE_FILENAME, _extxyz_text(final))

        if settings["dos"]:
            dos = compute_dos(calc, settings, results["fermi_energy"])
            if is_master:
                _write_json(DOS_FILENAME, dos)

        if relax and not results["relax_converged"]:
            results["errors"].append(
                f"relaxation did not reach fmax={settings['fmax']} eV/Å within max_steps={settings['max_steps']} "
                f"steps (max force {results['max_force']:.4f} eV/Å)"
            )
            return finish(STATUS_RELAX_NOT_CONVERGED)
        return finish(STATUS_OK)

    except Exception as exception:  # noqa: BLE001 - any other failure is recorded as a crash
        text = traceback.format_exc()
        results["errors"].append(f"{type(exception).__name__}: {exception}")
        results["traceback"] = text
        if is_master:
            with open(ERROR_FILENAME, "w", encoding="utf-8") as handle:
                handle.write(text)
        # by class name: the driver imports GPAW only inside main(), and the classes moved between GPAW versions.
        # GridBoundsError: an atom reached the edge during the run; AtomsTooClose "to boundary": at the start
        name = type(exception).__name__
        if name == "GridBoundsError" or (name == "AtomsTooClose" and "boundary" in str(exception)):
            return finish(STATUS_LEFT_BOX)
        return finish(STATUS_CRASHED)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # Python puts the script's directory first on the import path. Inside the aiida_physgen source tree that
    # directory holds the ``gpaw.py`` calculation module, which would shadow the real ``gpaw`` package.
    script_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != script_dir]
    # GPAW parallelises with MPI; threaded BLAS on top of it only oversubscribes the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    workdir = argv[0] if argv else "."
    return run(workdir)


if __name__ == "__main__":
    sys.exit(main())
