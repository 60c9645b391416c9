"""The cheap relaxation tier: GFN2-xTB (``tblite``) for molecules, CHGNet for crystals.

DFT is the scarce resource of a screening; it should only see candidates that a cheap but real
method has already relaxed into a sensible basin. :func:`relax_batch` relaxes every structure of a
:class:`~aiida_physgen.ml.batch.StructureBatch` with an ASE optimizer in its own cell and
periodicity, and returns a new batch in the same order with the input's info arrays kept and
``cheap_energy`` (eV, NaN when failed), ``cheap_fmax`` (eV/Å), ``cheap_steps``, ``cheap_converged``
(1/0) and ``cheap_failed`` (1/0) added. One structure that fails (SCF not converged, an exception,
a non-finite energy or force) is flagged and keeps its input positions; it never stops the batch.

No AiiDA import. ``tblite`` and ``chgnet`` are the optional extra ``aiida-physgen[cheap]``; each is
imported only when a structure needs it.

Defaults, measured on this 2-core machine with one thread (``OMP_NUM_THREADS=1``):

* ``fmax`` 0.05 eV/Å, ``optimizer`` FIRE, ``max_steps`` 300: the LoGAN paper's relaxation
  criterion. Six C5H12O molecules rattled by 0.1 Å relaxed with xTB in 1.1 s in total (50–68 FIRE
  steps each, all converged); BFGS took 0.55 s (141 steps in total) there, but FIRE's bounded steps
  are the safer choice for raw generated structures far from any minimum, where a BFGS step on a
  poor Hessian can fling atoms apart. Six rattled SiO2 cells (6–18 atoms) relaxed with CHGNet in
  1.1–2.4 s each (48–57 FIRE steps, all converged).
* ``accuracy`` 1.0 (tblite's default): 0.1 cost as much here (1.3 s vs 1.1 s) and 3.0 saved nothing,
  so the tighter-than-needed default costs nothing measurable for molecules of ~20 atoms.
* ``electronic_temperature`` 300 K and ``max_iterations`` 250: tblite's defaults (Fermi smearing
  that helps stretched, nearly degenerate generated geometries converge without biasing energies).
* ``fix_cell`` true: the LoGAN SiO2 study relaxes in the target's fixed cell; with ``false`` the
  cell of a periodic structure relaxes too (ASE's ``FrechetCellFilter``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from aiida_physgen.ml.batch import StructureBatch

__all__ = [
    "CheapSettings",
    "CheapResult",
    "METHODS",
    "OPTIMIZERS",
    "INFO_KEYS",
    "check_batch",
    "methods_for",
    "thread_count",
    "relax_batch",
    "single_points",
    "summary",
]

#: the cheap methods and the structures ``auto`` gives them
METHODS = ("auto", "gfn2-xtb", "chgnet")
OPTIMIZERS = ("FIRE", "BFGS")
#: info arrays added by :func:`relax_batch`
INFO_KEYS = ("cheap_energy", "cheap_fmax", "cheap_steps", "cheap_converged", "cheap_failed")

#: highest atomic number each method covers (GFN2-xTB: H–Rn; CHGNet's Materials Project training: H–Pu)
_MAX_Z = {"gfn2-xtb": 86, "chgnet": 94}
_EXTRA = "pip install 'aiida-physgen[cheap]'"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class CheapSettings:
    """Settings of the cheap relaxation tier; each default is written here only (see the module docstring for why).

    :param method: ``auto`` (GFN2-xTB for non-periodic, CHGNet for periodic structures), ``gfn2-xtb`` or ``chgnet``.
    :param fmax: convergence criterion, largest atomic force in eV/Å.
    :param max_steps: optimizer steps at most per structure.
    :param optimizer: ``FIRE`` or ``BFGS`` (ASE's).
    :param fix_cell: keep the cell of periodic structures; ``false`` relaxes it too.
    :param accuracy: tblite's numerical accuracy (smaller is tighter).
    :param electronic_temperature: tblite's electronic temperature in K (Fermi smearing).
    :param max_iterations: tblite's SCF iterations at most; a structure whose SCF does not converge is flagged failed.
    :param charge: net charge of every molecule for GFN2-xTB (CHGNet ignores it).
    """

    method: str = "auto"
    fmax: float = 0.05
    max_steps: int = 300
    optimizer: str = "FIRE"
    fix_cell: bool = True
    accuracy: float = 1.0
    electronic_temperature: float = 300.0
    max_iterations: int = 250
    charge: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or self.method.lower() not in METHODS:
            raise ValueError(f"method: got {self.method!r}, expected one of {list(METHODS)}")
        self.method = self.method.lower()
        if not isinstance(self.optimizer, str) or self.optimizer.upper() not in OPTIMIZERS:
            raise ValueError(f"optimizer: got {self.optimizer!r}, expected one of {list(OPTIMIZERS)}")
        self.optimizer = self.optimizer.upper()
        for name, unit in (("fmax", "force in eV/Å"), ("accuracy", "tblite accuracy (1.0 is its default)")):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: got {value!r}, expected a positive {unit}")
            setattr(self, name, float(value))
        value = self.electronic_temperature
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"electronic_temperature: got {value!r}, expected a non-negative temperature in K")
        self.electronic_temperature = float(value)
        for name, what in (("max_steps", "optimizer steps"), ("max_iterations", "SCF iterations")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a positive number of {what}")
            setattr(self, name, int(value))
        if not isinstance(self.fix_cell, bool):
            raise ValueError(f"fix_cell: got {self.fix_cell!r}, expected true or false")
        if isinstance(self.charge, bool) or not isinstance(self.charge, (int, np.integer)):
            raise ValueError(f"charge: got {self.charge!r}, expected an integer net charge")
        self.charge = int(self.charge)

    @classmethod
    def from_dict(cls, values: dict | None) -> CheapSettings:
        """Settings from a plain dictionary; a bad value raises ``ValueError`` starting ``settings.<field>``."""
        from aiida_physgen.ml import settings as settings_module

        return settings_module.from_dict_named(cls, values)


@dataclass
class CheapResult:
    """Outcome of one relaxation."""

    energy: float = math.nan
    fmax: float = math.nan
    steps: int = 0
    converged: bool = False
    failed: bool = False
    error: str = ""
    method: str = ""


def methods_for(batch: StructureBatch, settings: CheapSettings) -> list[str]:
    """The method relaxing each structure: with ``auto``, CHGNet for a structure periodic along any axis, else
    GFN2-xTB."""
    if settings.method != "auto":
        return [settings.method] * len(batch)
    return ["chgnet" if bool(np.any(pbc)) else "gfn2-xtb" for pbc in batch.pbc]


def check_batch(batch: StructureBatch, settings: CheapSettings) -> list[str]:
    """Check before any heavy work that every structure can be relaxed by its method; returns the methods.

    Raises ``ValueError`` starting ``settings.method`` when a method's package is missing, when CHGNet
    would get a structure without a full periodic cell, or when an element lies outside a method's range.
    """
    if len(batch) == 0:
        raise ValueError("structures: got an empty set, expected at least one structure to relax")
    methods = methods_for(batch, settings)
    for method in sorted(set(methods)):
        module = {"gfn2-xtb": "tblite.ase", "chgnet": "chgnet.model"}[method]
        try:
            __import__(module)
        except ImportError as error:
            raise ValueError(
                f"settings.method: {method!r} needs the {module.split('.')[0]} package ({_EXTRA}); importing it "
                f"failed: {error}"
            ) from None
    for index, method in enumerate(methods):
        atoms_numbers = batch.numbers[batch.offsets[index] : batch.offsets[index + 1]]
        if int(atoms_numbers.max()) > _MAX_Z[method]:
            raise ValueError(
                f"settings.method: structure {index} has an element of atomic number {int(atoms_numbers.max())}; "
                f"{method} covers atomic numbers up to {_MAX_Z[method]}"
            )
        if method == "gfn2-xtb" and settings.charge > int(batch.n_atoms[index]):
            # every atom brings at least one valence electron; tblite corrupts memory (and crashes the
            # process) when asked for a negative electron count, so a charge above the atom count is refused
            raise ValueError(
                f"settings.charge: got {settings.charge} for structure {index} of {int(batch.n_atoms[index])} atom(s); "
                "expected a net charge that leaves the molecule electrons (at most its number of atoms)"
            )
        if method == "chgnet":
            pbc = batch.pbc[index]
            volume = abs(float(np.linalg.det(batch.cells[index])))
            if not pbc.all() or volume < 1e-6:
                raise ValueError(
                    f"settings.method: 'chgnet' needs periodic structures with a cell (CHGNet models crystals); "
                    f"structure {index} has pbc {pbc.tolist()} and cell volume {volume:.3g} Å³. "
                    "Use 'gfn2-xtb' or 'auto' for molecules"
                )
    return methods


def thread_count() -> int:
    """Threads for the calculators, by the rule of :func:`aiida_physgen.ml.training.set_threads`:
    ``OMP_NUM_THREADS``, else the CPUs this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: the loaded CHGNet model, shared by every calculator of this process (the benchmarks clear it to time a load)
CHGNET_MODEL: dict[str, Any] = {}


def chgnet_calculator():
    """CHGNet's ASE calculator around the pretrained model shipped in its wheel, loaded once per process.

    CHGNet's own calculator predicts energy, forces, stress and magnetic moments on every call, and the
    stress costs a second backward pass. The calculator returned here predicts the stress only when it is
    asked for (a relaxation of the cell): 1.8× faster per step with the cell fixed (0.058 s against
    0.106 s per call for a 6-atom SiO2 cell on one thread, `chgnet` 0.3, measured side by side here).
    """
    if "model" not in CHGNET_MODEL:
        from chgnet.model import CHGNet

        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its version and device
            CHGNET_MODEL["model"] = CHGNet.load(use_device="cpu", verbose=False)
    from chgnet.model.dynamics import CHGNetCalculator

    class StressOnDemand(CHGNetCalculator):
        def calculate(self, atoms=None, properties=None, system_changes=None, task=None):
            if task is None:
                task = "efsm" if properties is None or "stress" in properties else "ef"
            super().calculate(atoms, properties, system_changes, task=task)

    with contextlib.redirect_stdout(io.StringIO()):
        return StressOnDemand(model=CHGNET_MODEL["model"], use_device="cpu", on_isolated_atoms="ignore")


def _xtb_calculator(settings: CheapSettings):
    from tblite.ase import TBLite

    return TBLite(
        method="GFN2-xTB",
        charge=settings.charge,
        accuracy=settings.accuracy,
        electronic_temperature=settings.electronic_temperature,
        max_iterations=settings.max_iterations,
        verbosity=0,
    )


def _relax_one(atoms, method: str, settings: CheapSettings, chgnet_calc) -> CheapResult:
    """Relax ``atoms`` in place; never raises."""
    from ase.optimize import BFGS, FIRE

    result = CheapResult(method=method)
    optimizer_class = {"FIRE": FIRE, "BFGS": BFGS}[settings.optimizer]
    try:
        atoms.calc = chgnet_calc if method == "chgnet" else _xtb_calculator(settings)
        target = atoms
        if method == "chgnet" and not settings.fix_cell:
            from ase.filters import FrechetCellFilter

            target = FrechetCellFilter(atoms)
        optimizer = optimizer_class(target, logfile=None)
        with warnings_quiet():
            optimizer.run(fmax=settings.fmax, steps=settings.max_steps)
            result.steps = int(optimizer.get_number_of_steps())
            energy = float(atoms.get_potential_energy())
            forces = np.asarray(target.get_forces())
        result.energy = energy
        result.fmax = float(np.sqrt((forces**2).sum(axis=1).max())) if forces.size else 0.0
        if not (math.isfinite(result.energy) and math.isfinite(result.fmax)):
            raise FloatingPointError(f"non-finite energy {result.energy} or largest force {result.fmax}")
        if not np.isfinite(atoms.positions).all():
            raise FloatingPointError("non-finite positions after the relaxation")
        result.converged = result.fmax <= settings.fmax
    except Exception as error:  # noqa: BLE001 - one bad structure must never stop the batch
        result.failed = True
        result.converged = False
        result.energy = math.nan
        result.fmax = math.nan
        result.error = f"{type(error).__name__}: {error}".strip()[:300]
    finally:
        atoms.calc = None
    return result


@contextlib.contextmanager
def warnings_quiet():
    """Silence the warnings CHGNet and torch print on every step."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def relax_batch(
    batch: StructureBatch,
    settings: CheapSettings | dict | None = None,
    progress: Callable[[int, int, CheapResult], None] | None = None,
) -> StructureBatch:
    """Relax every structure of ``batch`` with the cheap method; a new batch in the same order.

    The input's info arrays are kept; ``cheap_energy`` (eV, NaN when failed), ``cheap_fmax``
    (final largest force, eV/Å), ``cheap_steps``, ``cheap_converged`` (1/0) and ``cheap_failed`` (1/0)
    are added (replacing earlier ones of the same name). A failed structure keeps its input positions.
    ``progress(done, total, result)`` is called after each structure. The calculators use
    :func:`thread_count` threads (torch through :func:`~aiida_physgen.ml.training.set_threads`, tblite's
    OpenMP and BLAS through ``threadpoolctl``). Raises ``ValueError`` (see :func:`check_batch`) before any work.
    """
    from threadpoolctl import threadpool_limits

    from aiida_physgen.ml.batch import StructureBatch

    if not isinstance(settings, CheapSettings):
        settings = CheapSettings.from_dict(settings)
    methods = check_batch(batch, settings)
    threads = thread_count()
    chgnet_calc = None
    if "chgnet" in methods:
        from aiida_physgen.ml.training import set_threads

        set_threads(threads)
        chgnet_calc = chgnet_calculator()
    else:
        import tblite.ase  # noqa: F401 - load its OpenMP runtime before limiting it

    positions = batch.positions.copy()
    cells = batch.cells.copy()
    results: list[CheapResult] = []
    with threadpool_limits(limits=threads):
        for index, method in enumerate(methods):
            atoms = batch[index]
            atoms.info = {}
            start, stop = batch.offsets[index], batch.offsets[index + 1]
            result = _relax_one(atoms, method, settings, chgnet_calc)
            if not result.failed:
                positions[start:stop] = atoms.positions
                cells[index] = np.asarray(atoms.cell)
            results.append(result)
            if progress is not None:
                progress(index + 1, len(methods), result)
    info = dict(batch.info)
    info["cheap_energy"] = np.array([r.energy for r in results], dtype=np.float64)
    info["cheap_fmax"] = np.array([r.fmax for r in results], dtype=np.float64)
    info["cheap_steps"] = np.array([r.steps for r in results], dtype=np.int64)
    info["cheap_converged"] = np.array([int(r.converged) for r in results], dtype=np.int64)
    info["cheap_failed"] = np.array([int(r.failed) for r in results], dtype=np.int64)
    return StructureBatch(
        numbers=batch.numbers.copy(),
        positions=positions,
        n_atoms=batch.n_atoms.copy(),
        cells=cells,
        pbc=batch.pbc.copy(),
        info=info,
    )


def single_points(batch: StructureBatch, settings: CheapSettings | dict | None = None) -> StructureBatch:
    """The cheap method's energy and largest force of every structure of ``batch`` as it is, without relaxing it.

    Returns a copy of ``batch`` with the info arrays of :func:`relax_batch` (``cheap_steps`` 0,
    ``cheap_converged`` 1 when the largest force is below ``fmax``): e.g. the cheap level's energy of a
    structure that another method (DFT) relaxed. Raises ``ValueError`` (see :func:`check_batch`) before any work.
    """
    from threadpoolctl import threadpool_limits

    if not isinstance(settings, CheapSettings):
        settings = CheapSettings.from_dict(settings)
    methods = check_batch(batch, settings)
    chgnet_calc = None
    if "chgnet" in methods:
        from aiida_physgen.ml.training import set_threads

        set_threads(thread_count())
        chgnet_calc = chgnet_calculator()
    energies, forces = np.full(len(batch), np.nan), np.full(len(batch), np.nan)
    failed = np.zeros(len(batch), dtype=np.int64)
    with threadpool_limits(limits=thread_count()):
        for index, method in enumerate(methods):
            atoms = batch[index]
            atoms.info = {}
            try:
                atoms.calc = chgnet_calc if method == "chgnet" else _xtb_calculator(settings)
                with warnings_quiet():
                    energy = float(atoms.get_potential_energy())
                    force = np.asarray(atoms.get_forces())
                fmax = float(np.sqrt((force**2).sum(axis=1).max())) if force.size else 0.0
                if not (math.isfinite(energy) and math.isfinite(fmax)):
                    raise FloatingPointError(f"non-finite energy {energy} or largest force {fmax}")
                energies[index], forces[index] = energy, fmax
            except Exception:  # noqa: BLE001 - one bad structure must never stop the batch
                failed[index] = 1
            finally:
                atoms.calc = None
    out = batch.subset(np.arange(len(batch)))
    out.info = dict(batch.info)
    out.info.update(
        cheap_energy=energies,
        cheap_fmax=forces,
        cheap_steps=np.zeros(len(batch), dtype=np.int64),
        cheap_converged=((forces <= settings.fmax) & (failed == 0)).astype(np.int64),
        cheap_failed=failed,
    )
    return out


def summary(batch: StructureBatch, seconds: float | None = None) -> str:
    """One line: how many of a relaxed batch converged, did not converge, failed (and the time)."""
    n = len(batch)
    failed = int(np.sum(batch.info["cheap_failed"]))
    converged = int(np.sum(batch.info["cheap_converged"]))
    line = f"{n} structure(s): {converged} converged, {n - converged - failed} not converged, {failed} failed"
    if seconds is not None:
        line += f" in {seconds:.1f} s ({n / max(seconds, 1e-9):.2f} relaxations/s)"
    return line
