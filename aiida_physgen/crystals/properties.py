"""The ML-free stages of the validation funnel for generated crystals.

A space-group-conditioned crystal GAN proposes thousands of ternary crystals; most must be dropped
before any DFT. The stages here work on a :class:`~aiida_physgen.ml.batch.StructureBatch` and return
per-structure NumPy arrays (ready for ``batch.info``):

1. :func:`validity`: shortest interatomic distance, density, charge balance.
2. :func:`elemental_reference_structures` → relax them (``cheap_relax.relax_batch(refs, {"method":
   "chgnet", "fix_cell": False})``) → :func:`reference_energies` → :func:`formation_energies`.
3. :func:`uniqueness_and_novelty`: pymatgen ``StructureMatcher`` within a batch and against training.

pymatgen, ASE and NumPy only: no AiiDA, no machine-learning model.
"""

from __future__ import annotations

import math
from functools import lru_cache

import ase
import ase.data
import ase.units
import numpy as np

from ..ml.batch import StructureBatch
from ..screening.basins import reduced_structure

__all__ = [
    "ANION_FORMERS",
    "validity",
    "validity_reasons",
    "space_group_number",
    "elemental_reference_structures",
    "reference_energies",
    "formation_energies",
    "uniqueness_and_novelty",
]

#: classic anion-forming non-metals: charge balance is only asked of compositions containing one
ANION_FORMERS = frozenset({"N", "P", "O", "S", "Se", "F", "Cl", "Br", "I"})
#: g/cm³ per amu/Å³
_DENSITY_UNIT = ase.units._amu * 1e3 / 1e-24


def _check_batch(name: str, batch) -> StructureBatch:
    if not isinstance(batch, StructureBatch):
        raise ValueError(f"{name}: got {type(batch).__name__}, expected a StructureBatch")
    volumes = np.abs(np.linalg.det(batch.cells))
    bad = np.flatnonzero(~batch.pbc.all(axis=1) | (volumes < 1e-8))
    if bad.size:
        raise ValueError(
            f"{name}: structure {int(bad[0])} is not a crystal (needs pbc on all axes and a cell volume > 0)"
        )
    return batch


def _positive(name: str, value, unit: str) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not 0 < value < math.inf:
        raise ValueError(f"{name}: got {value!r}, expected a positive {unit}")
    return float(value)


def _compositions(batch: StructureBatch) -> list[dict[str, int]]:
    """``{symbol: count}`` of every structure."""
    counts = (np.unique(batch.numbers[a:b], return_counts=True) for a, b in zip(batch.offsets[:-1], batch.offsets[1:]))
    return [{ase.data.chemical_symbols[z]: int(n) for z, n in zip(*pair)} for pair in counts]


@lru_cache(maxsize=4096)
def _charge_balanced(composition: tuple[tuple[str, int], ...]) -> int:
    """1/0/-1 of :func:`validity` for a composition ``((symbol, count), ...)``, cached: generated
    batches repeat few compositions and ``oxi_state_guesses`` is the slow part."""
    import warnings

    from pymatgen.core import Composition

    if not ANION_FORMERS & {symbol for symbol, _ in composition}:
        return -1
    with warnings.catch_warnings():  # pymatgen warns about elements without electronegativity
        warnings.simplefilter("ignore")
        return int(bool(Composition(dict(composition)).reduced_composition.oxi_state_guesses()))


#: pairs further apart than this (Å) meet any radius rule up to 0.8 × the largest sum of covalent radii (Cs-Cs 4.9 Å)
_RADIUS_CUTOFF = 4.0


@lru_cache(maxsize=4096)
def _charge_neutral(composition: tuple[tuple[str, int], ...]) -> int:
    """1 when pymatgen's ``oxi_state_guesses`` finds a neutral assignment for the composition, else 0 (asked of
    every composition, intermetallics included; :func:`_charge_balanced` decides validity)."""
    import warnings

    from pymatgen.core import Composition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(bool(Composition(dict(composition)).reduced_composition.oxi_state_guesses()))


def _closest_pairs(atoms: ase.Atoms) -> tuple[float, float]:
    """Shortest distance between two atoms or an atom and a periodic image (of itself too), and the smallest
    ``d / (r_a + r_b)`` over pairs with ASE's covalent radii, from one neighbour list.

    Written here because the minimum-image convention (``get_all_distances(mic=True)``, the uniform path of
    ``StructureBatch.min_distances``) misses images in small or skewed cells. Pairs beyond :data:`_RADIUS_CUTOFF`
    pass any radius rule a referee would set, so a crystal without a pair inside it gets the cut-off over its largest
    radius sum (a lower bound) for the ratio, and its shortest distance from a second list cut at its shortest cell
    vector (an atom's own image bounds the answer from above).
    """
    from ase.neighborlist import neighbor_list

    radii = ase.data.covalent_radii[atoms.numbers]
    i, j, d = neighbor_list("ijd", atoms, _RADIUS_CUTOFF)
    if d.size:
        return float(d.min()), float((d / (radii[i] + radii[j])).min())
    distances = neighbor_list("d", atoms, float(np.linalg.norm(atoms.cell.array, axis=1).min()) * 1.0001)
    return float(distances.min()), _RADIUS_CUTOFF / (2.0 * float(radii.max()))


def validity(
    batch: StructureBatch,
    min_distance: float = 0.5,
    density_range=(1.0, 25.0),
    charge_balance: bool = True,
    radius_scale: float = 0.7,
) -> dict[str, np.ndarray]:
    """Cheap sanity checks of every (fully periodic) crystal of ``batch``.

    Returns arrays of length ``len(batch)``:

    * ``min_pair_distance``: shortest interatomic distance in Å, periodic images included (a
      one-atom cell gets its shortest lattice translation).
    * ``density``: g/cm³, vectorised with ASE's atomic masses (within 0.01 g/cm³ of pymatgen's
      ``Structure.density``, whose masses differ slightly for some radioactive elements).
    * ``charge_balanced``: 1 when pymatgen's ``Composition.oxi_state_guesses()`` (common oxidation
      states, mixed valence allowed) finds a neutral assignment, 0 when it finds none, −1 when the
      check does not apply: the composition holds none of the classic anion formers
      :data:`ANION_FORMERS` (N, P, O, S, Se, F, Cl, Br, I), so intermetallics such as the half-Heusler
      AlBPt are not judged by ionic oxidation states; also −1 everywhere with ``charge_balance=False``.
    * ``min_radius_ratio``: the smallest distance over the sum of the two atoms' covalent radii (ASE's), periodic
      images included (the shipped half-Heuslers: 0.78 and up).
    * ``charge_neutral``: 1 when pymatgen finds a neutral assignment of oxidation states for the composition,
      0 when it finds none, asked of every composition (97 of the 99 shipped Pt half-Heuslers have none: reported,
      not used for ``valid``).
    * ``valid``: 1 when ``min_pair_distance >= min_distance``, ``min_radius_ratio >= radius_scale``, the density
      lies in ``density_range`` (inclusive) and ``charge_balanced != 0``, else 0.
    * ``min_distance``, ``radius_scale`` and ``density_range`` (shape ``(M, 2)``): the limits used, for
      :func:`validity_reasons`.

    ``radius_scale`` 0 turns the radius rule off (then only the ``min_distance`` rule judges pairs).
    """
    _check_batch("batch", batch)
    min_distance = _positive("min_distance", min_distance, "distance in Å")
    try:
        low, high = (float(v) for v in density_range)
    except (TypeError, ValueError):
        raise ValueError(f"density_range: got {density_range!r}, expected (low, high) in g/cm³") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise ValueError(f"density_range: got {density_range!r}, expected finite 0 <= low < high in g/cm³")
    if not isinstance(charge_balance, (bool, np.bool_)):
        raise ValueError(f"charge_balance: got {charge_balance!r}, expected true or false")
    number = isinstance(radius_scale, (int, float, np.integer, np.floating)) and not isinstance(radius_scale, bool)
    if not number or not 0 <= radius_scale < math.inf:
        raise ValueError(f"radius_scale: got {radius_scale!r}, expected a non-negative factor of the covalent radii")
    m = len(batch)
    distances, ratios = np.array([_closest_pairs(atoms) for atoms in batch]).reshape(-1, 2).T
    reduced = [tuple((e, n // math.gcd(*c.values())) for e, n in c.items()) for c in _compositions(batch)]
    neutral = np.array([_charge_neutral(composition) for composition in reduced], dtype=np.int64)
    masses = np.add.reduceat(ase.data.atomic_masses[batch.numbers], batch.offsets[:-1])
    density = masses / np.abs(np.linalg.det(batch.cells)) * _DENSITY_UNIT
    balanced = np.full(m, -1, dtype=np.int64)
    if charge_balance:
        balanced[:] = [_charge_balanced(composition) for composition in reduced]
    valid = (
        (distances >= min_distance) & (ratios >= radius_scale) & (density >= low) & (density <= high) & (balanced != 0)
    )
    return {
        "min_pair_distance": distances,
        "min_radius_ratio": ratios,
        "density": density,
        "charge_balanced": balanced,
        "charge_neutral": neutral,
        "valid": valid.astype(np.int64),
        "min_distance": np.full(m, min_distance),
        "radius_scale": np.full(m, float(radius_scale)),
        "density_range": np.tile([low, high], (m, 1)),
    }


def validity_reasons(result: dict[str, np.ndarray], values: bool = True) -> list[str]:
    """Why each structure of a :func:`validity` result is invalid (``"; "``-joined), ``""`` when valid.

    :param values: name each structure's measured value (``"pair closer than 0.5 Å (0.27 Å)"``); ``False``
        gives only the kind of failure and the limit, the same text for every structure that fails alike (to
        count them).
    """
    keys = ("min_pair_distance", "density", "charge_balanced", "min_distance", "density_range")
    if not isinstance(result, dict) or any(key not in result for key in keys):
        raise ValueError(f"result: expected the dictionary returned by validity(), with keys {list(keys)}")
    reasons = []
    ratios = result.get("min_radius_ratio", np.full(len(result["min_pair_distance"]), np.inf))
    scales = result.get("radius_scale", np.zeros(len(ratios)))
    for d, rho, balanced, limit, (low, high), ratio, scale in zip(*(result[key] for key in keys), ratios, scales):
        why = []
        if d < limit:
            why.append(f"pair closer than {limit:g} Å" + (f" ({d:.2f} Å)" if values else ""))
        if ratio < scale:
            why.append(f"pair closer than {scale:g} × the covalent radii" + (f" ({ratio:.2f})" if values else ""))
        if not low <= rho <= high:
            why.append(
                f"density {rho:.3g} g/cm³ outside [{low:g}, {high:g}]"
                if values
                else f"density outside [{low:g}, {high:g}] g/cm³"
            )
        if balanced == 0:
            why.append("no charge-balanced oxidation states")
        reasons.append("; ".join(why))
    return reasons


#: elements whose ASE reference state has no atomic basis (``ase.build.bulk`` cannot build it) or that
#: ``bulk`` cannot build at all: ``(Wyckoff positions, space group, cell parameters)`` of the room-temperature
#: crystal for ``ase.spacegroup.crystal``. S is a helical chain (fibrous sulfur, Se type, a few meV/atom
#: above α-S8 with its 128 atoms); its cell is a guess, for the cell relaxation to correct.
_CRYSTALS = {
    "B": ([(0.11886, -0.11886, 0.89133), (0.19686, -0.19686, 0.02432)], 166, (4.908, 4.908, 12.567, 90, 90, 120)),
    "P": ([(0, 0.10168, 0.08056)], 64, (3.3136, 10.478, 4.3763, 90, 90, 90)),  # black phosphorus
    "S": ([(0.2254, 0, 1 / 3)], 152, (3.8, 3.8, 4.3, 90, 90, 120)),
    "Mn": (
        [(0, 0, 0), (0.3179,) * 3, (0.3571, 0.3571, 0.0347), (0.0896, 0.0896, 0.2819)],
        217,
        (8.9125,) * 3 + (90,) * 3,
    ),  # α-Mn
    "Ga": ([(0, 0.1549, 0.0810)], 64, (4.5192, 7.6586, 4.5258, 90, 90, 90)),
    "Se": ([(0.2254, 0, 1 / 3)], 152, (4.3662, 4.3662, 4.9536, 90, 90, 120)),
    "Te": ([(0.2636, 0, 1 / 3)], 152, (4.4572, 4.4572, 5.929, 90, 90, 120)),
    "Pa": ([(0, 0, 0)], 139, (3.925, 3.925, 3.238, 90, 90, 90)),
}
#: molecular elements: a dimer in a box (ASE's reference states of Cl, Br and I are molecular crystals without basis)
_DIMERS = {"H", "N", "O", "F", "Cl", "Br", "I"}
#: noble gases whose ASE reference state is an atom (He) or missing (Rn); Ne–Xe are fcc solids in ASE
_ATOMS = {"He", "Rn"}
_BOX = 10.0


def _reference_atoms(symbol: str) -> ase.Atoms:
    from ase.build import bulk
    from ase.spacegroup import crystal

    z = ase.data.atomic_numbers[symbol]
    if symbol in _DIMERS or symbol in _ATOMS:
        bond = (ase.data.reference_states[z] or {}).get("d", 2 * ase.data.covalent_radii[z])
        atoms = ase.Atoms([symbol] * 2, positions=[(0, 0, 0), (0, 0, bond)]) if symbol in _DIMERS else ase.Atoms(symbol)
        atoms.cell = [_BOX] * 3
        atoms.center()
    elif symbol in _CRYSTALS:
        basis, group, cellpar = _CRYSTALS[symbol]
        atoms = crystal([symbol] * len(basis), basis, spacegroup=group, cellpar=cellpar, primitive_cell=True)
    else:
        try:
            atoms = bulk(symbol)
        except ValueError:  # no ASE reference state (Pm, At, Fr, Ra, Pu): fcc at twice the covalent radius
            atoms = bulk(symbol, "fcc", a=2 * math.sqrt(2) * ase.data.covalent_radii[z])
    atoms.pbc = True
    return atoms


def elemental_reference_structures(elements) -> StructureBatch:
    """One fully periodic reference structure per element, sorted by atomic number (duplicates dropped).

    ``ase.build.bulk(symbol)`` (ASE's reference state: fcc, bcc, hcp, diamond, ...) where it can build
    one, noble gases Ne–Xe included (their fcc solids); a dimer at ASE's bond length (else twice the
    covalent radius) in a 10 Å periodic cube for H, N, O, F, Cl, Br, I; one atom in that cube for He
    and Rn; the real crystal for B, P, S, Mn, Ga, Se, Te, Pa (see ``_CRYSTALS``), whose ASE reference
    state lacks an atomic basis; fcc at a nearest-neighbour distance of twice the covalent radius for
    Pm, At, Fr, Ra, Pu (no ASE reference state). Relax them with the cell free before use: the
    starting geometries are experimental or guessed, not the calculator's minimum.
    ``info["element"]`` holds the atomic number.
    """
    if isinstance(elements, str) or not hasattr(elements, "__iter__"):
        raise ValueError(f"elements: got {elements!r}, expected a list of atomic symbols")
    elements = list(elements)
    unknown = [e for e in elements if not isinstance(e, str) or e not in ase.data.atomic_numbers or e == "X"]
    if unknown or not elements:
        raise ValueError(f"elements: got {unknown or elements!r}, expected atomic symbols such as 'Al', 'O'")
    numbers = sorted({ase.data.atomic_numbers[e] for e in elements})
    batch = StructureBatch.from_atoms([_reference_atoms(ase.data.chemical_symbols[z]) for z in numbers])
    batch.info["element"] = np.array(numbers, dtype=np.int64)
    return batch


def _energies(name: str, batch: StructureBatch, key: str) -> np.ndarray:
    if key not in batch.info:
        raise ValueError(f"key: {name} has no info[{key!r}]; it holds {sorted(batch.info)}")
    return np.asarray(batch.info[key], dtype=np.float64)


def reference_energies(relaxed_references: StructureBatch, key: str = "cheap_energy") -> dict[str, float]:
    """Energy per atom (eV/atom) of every element: the lowest finite ``info[key] / n_atoms`` over the
    single-element structures of ``relaxed_references`` (structures of several elements are ignored,
    so a batch relaxed together with candidates may be passed whole; NaN energies are skipped)."""
    _check_batch("relaxed_references", relaxed_references)
    per_atom = _energies("relaxed_references", relaxed_references, key) / relaxed_references.n_atoms
    best: dict[str, float] = {}
    for composition, energy in zip(_compositions(relaxed_references), per_atom):
        if len(composition) == 1:
            (symbol,) = composition
            if math.isfinite(energy) and energy < best.get(symbol, math.inf):
                best[symbol] = float(energy)
            best.setdefault(symbol, math.inf)  # seen, but no finite energy yet
    if not best:
        raise ValueError("relaxed_references: no single-element structure in the batch")
    failed = sorted(s for s, e in best.items() if not math.isfinite(e))
    if failed:
        raise ValueError(f"relaxed_references: no finite info[{key!r}] for element(s) {', '.join(failed)}")
    return dict(sorted(best.items(), key=lambda item: ase.data.atomic_numbers[item[0]]))


def formation_energies(batch: StructureBatch, references: dict[str, float], key: str = "cheap_energy") -> np.ndarray:
    """Formation energy per atom (eV/atom), ``(E - Σ n_el μ_el) / N`` with ``E = info[key]`` and the
    ``references`` of :func:`reference_energies`; NaN where ``E`` is NaN."""
    _check_batch("batch", batch)
    if not isinstance(references, dict) or not references:
        raise ValueError(f"references: got {references!r}, expected {{symbol: eV/atom}} from reference_energies()")
    mu = np.full(len(ase.data.chemical_symbols), np.nan)
    for symbol, value in references.items():
        if (
            symbol not in ase.data.atomic_numbers
            or not isinstance(value, (int, float, np.number))
            or not math.isfinite(value)
        ):
            raise ValueError(f"references: got {symbol!r}: {value!r}, expected an atomic symbol and a finite eV/atom")
        mu[ase.data.atomic_numbers[symbol]] = float(value)
    missing = sorted(set(batch.numbers[np.isnan(mu[batch.numbers])].tolist()))
    if missing:
        raise ValueError(
            f"references: no reference energy for element(s) {', '.join(ase.data.chemical_symbols[z] for z in missing)}"
        )
    energy = _energies("batch", batch, key)
    return (energy - np.add.reduceat(mu[batch.numbers], batch.offsets[:-1])) / batch.n_atoms


def uniqueness_and_novelty(
    batch: StructureBatch,
    training: StructureBatch | None = None,
    ltol: float = 0.2,
    stol: float = 0.3,
    angle_tol: float = 5.0,
) -> dict[str, np.ndarray]:
    """Duplicates within ``batch`` and matches in ``training`` (pymatgen ``StructureMatcher``, primitive
    cells, volumes scaled, the tolerances of :mod:`aiida_physgen.screening.basins`).

    Returns arrays of length ``len(batch)``:

    * ``group``: index of the representative of the structure's group (``group[i] == i`` for it);
    * ``unique``: 1 for the representative: the member with the lowest ``info["formation_energy"]``
      (NaN counts as highest) if the batch has it, else the first index;
    * ``novel``: 1 when no training structure matches the structure, 0 when one does, −1 when
      ``training`` is None.

    Only structures of the same reduced formula can match, so both sides are bucketed by
    ``Composition.reduced_formula``; every structure is reduced (Niggli, primitive) once, not at every
    ``fit``; ``group_structures`` runs within a bucket and ``fit`` only against the training structures
    of that formula (training structures of other formulas are never converted). Measured on this
    2-core machine (one thread, shared with another job; CPU time) for 300 generated crystals (the 99
    half-Heusler training crystals strained and rattled, with two species swapped, as supercells)
    against those 99: 4.2–5.7 s in all, of which novelty takes 1.3–2.5 s, where checking every
    structure against every training structure with ``fit`` (as ``metrics.discovery_metrics`` does)
    takes 7.3–8.7 s for the novelty alone and gives the same flags.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Composition

    _check_batch("batch", batch)
    if training is not None:
        _check_batch("training", training)
    tolerances = {
        name: _positive(name, value, "tolerance")
        for name, value in (("ltol", ltol), ("stol", stol), ("angle_tol", angle_tol))
    }
    matcher = StructureMatcher(**tolerances, primitive_cell=True, scale=True)

    def buckets(structures: StructureBatch, keep=None) -> tuple[dict[int, object], dict[str, list[int]]]:
        """Structures reduced once (Niggli, then primitive: what ``StructureMatcher`` does before every
        match), bucketed by reduced formula; only those of the formulas in ``keep`` when given."""
        reduced, out = {}, {}
        for index, composition in enumerate(_compositions(structures)):
            formula = Composition(composition).reduced_formula
            if keep is None or formula in keep:
                reduced[index] = reduced_structure(structures[index])
                reduced[index].properties["funnel_index"] = index
                out.setdefault(formula, []).append(index)
        return reduced, out

    energy = np.asarray(batch.info.get("formation_energy", np.zeros(len(batch))), dtype=np.float64)
    rank = np.where(np.isnan(energy), np.inf, energy).tolist()

    def order(i: int) -> tuple[float, int]:  # lowest formation energy first, then lowest index
        return rank[i], i

    pmg, generated = buckets(batch)
    group = np.empty(len(batch), dtype=np.int64)
    for members in generated.values():
        for found in matcher.group_structures([pmg[i] for i in sorted(members, key=order)]):
            indices = [s.properties["funnel_index"] for s in found]
            group[indices] = min(indices, key=order)
    novel = np.full(len(batch), -1, dtype=np.int64)
    if training is not None:
        train_pmg, known = buckets(training, keep=generated)
        for formula, members in generated.items():
            candidates = [train_pmg[j] for j in known.get(formula, [])]
            for i in members:
                novel[i] = int(not any(matcher.fit(pmg[i], t, skip_structure_reduction=True) for t in candidates))
    return {"group": group, "unique": (group == np.arange(len(batch))).astype(np.int64), "novel": novel}


def space_group_number(atoms, symprec: float = 0.1) -> int:
    """The space-group number spglib finds for ``atoms`` (through pymatgen), 0 when it gives up on a degenerate or
    distorted cell."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(atoms), symprec=symprec).get_space_group_number())
    except Exception:  # noqa: BLE001 - spglib gives up on degenerate structures
        return 0
