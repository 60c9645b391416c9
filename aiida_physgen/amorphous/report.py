"""The quality report of generated amorphous structures against held-out MD frames, without AiiDA.

What the screening's ``amorphous`` assessor (:mod:`aiida_physgen.amorphous.assessors`) and
``aiida-physgen amorphous quality`` (the command) both compute: named sets of structures (e.g. ``repap``,
``repap_no_redraws``, ``random``) against the held-out end of the melt-quench trajectory, with the measures of
:mod:`aiida_physgen.amorphous.quality`:

* ``count``: structures in the set;
* ``rdf_error``: mean over the bins of ``(g − g_MD)²`` (the RePAP paper's ``Σ_k (RDF_k − RDF_k,true)² / k``
  with ``k`` the number of bins), ``g_MD`` the radial distribution function of the whole hold-out;
* ``close_contact_share``: share of the structures with a pair (periodic images included) closer than
  ``min_distance``;
* ``mean_coordination``: mean over the structures of the mean number of neighbours within ``cutoff``;
* ``energy_per_atom``: ``{mean, std, median, count}`` of the potential energy per atom (LAMMPS single points,
  :func:`aiida_physgen.amorphous.md.potential_energies`) of up to ``energy_structures`` structures per set,
  evenly spaced through the set; ``None`` when ``energy_structures`` is 0.

The MD floor row ``md_hold_out`` is the second half of the hold-out against its first half: the RDF
error that finite sampling alone leaves. With ``grid_bins`` (the generator's grid), the ``md_on_grid`` row is
the same half with every coordinate moved to a uniform point of its grid bin, against the same first half:
the best a generator on that grid with jitter could do. Every other set is measured against the whole
hold-out.

:func:`quality_rows` returns a :class:`QualityReport` (the JSON-ready ``quality`` dictionary and the
curves); :meth:`QualityReport.write` writes ``rdf.png``, ``angles.png``, ``energies.png`` (when there
are energies) and ``quality.json`` into a folder, all together or none.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ml.atomic_files import atomic_path
from ..ml.batch import StructureBatch
from . import md
from . import quality as amorphous_quality

__all__ = [
    "QUALITY_DEFAULTS",
    "FLOOR",
    "GRID_FLOOR",
    "on_grid",
    "FIGURES",
    "JSON_FILE",
    "QualityReport",
    "quality_settings",
    "quality_table",
    "set_energies",
    "quality_rows",
    "relaxation_rows",
]

#: the settings of the report and their defaults (``potential`` ``None``: the trajectory's, else ``sw_vink``)
QUALITY_DEFAULTS = {
    "r_max": 8.0,
    "bins": 160,
    "min_distance": 2.0,
    "cutoff": 2.85,
    "energy_structures": 500,
    "potential": None,
    "grid_bins": None,
}
#: the row of the grid floor: the floor's frames with every coordinate moved to a uniform point of its grid bin
GRID_FLOOR = "md_on_grid"
#: the row of the MD floor: the second half of the hold-out against its first half
FLOOR = "md_hold_out"
#: the label of the hold-out in the figures
_MD_LABEL = "MD (held out)"
#: the figure files :meth:`QualityReport.write` writes
FIGURES = {"rdf": "rdf.png", "angles": "angles.png", "energies": "energies.png"}
#: the table and curves :meth:`QualityReport.write` writes
JSON_FILE = "quality.json"
_NOTE = (
    "md_hold_out: the second half of the hold-out against its first half (the floor of the RDF error); "
    "md_on_grid (with grid_bins): the same frames with each coordinate moved to a uniform point of its grid bin, "
    "against the same first half (what a generator on that grid could reach at best); every other set against "
    "the whole hold-out"
)


def on_grid(structures: StructureBatch, bins: int, seed: int = 0) -> StructureBatch:
    """``structures`` with every fractional coordinate moved to a uniform random point of its bin on a grid
    of ``bins`` points per cell vector: how a grid generator with jitter would place the same atoms."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(structures.n_atoms)])
    positions = np.empty_like(structures.positions)
    for i in range(len(structures)):
        cell = structures.cells[i]
        fractions = np.linalg.solve(cell.T, structures.positions[offsets[i] : offsets[i + 1]].T).T % 1.0
        snapped = (np.floor(fractions * bins) + rng.random(fractions.shape)) / bins
        positions[offsets[i] : offsets[i + 1]] = snapped @ cell
    return StructureBatch(structures.numbers, positions, structures.n_atoms, structures.cells, structures.pbc)


def quality_settings(values: Mapping | None) -> dict:
    """The report's settings over :data:`QUALITY_DEFAULTS`; ``ValueError`` naming the key."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(QUALITY_DEFAULTS))
    if unknown:
        raise ValueError(f"settings: unknown key(s) {unknown}; expected some of {sorted(QUALITY_DEFAULTS)}")
    out = {**QUALITY_DEFAULTS, **values}
    amorphous_quality.RdfSettings(r_max=out["r_max"], bins=out["bins"])
    for key in ("min_distance", "cutoff"):
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)) or not out[key] > 0:
            raise ValueError(f"settings.{key}: got {out[key]!r}, expected a positive distance in Å")
    n = out["energy_structures"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(
            f"settings.energy_structures: got {n!r}, expected how many structures per set get an energy (0: none)"
        )
    grid = out["grid_bins"]
    if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or grid < 2):
        raise ValueError(
            f"settings.grid_bins: got {grid!r}, expected the generator's bins per cell vector (an "
            "integer ≥ 2), or null for no grid-floor row"
        )
    if out["potential"] is not None and out["potential"] not in md.POTENTIALS:
        raise ValueError(f"settings.potential: got {out['potential']!r}, expected one of {list(md.POTENTIALS)}")
    return out


def quality_table(rows: Mapping) -> str:
    """The quality table as Markdown (one row per set: RDF error, close contacts, coordination, energy)."""
    lines = [
        "| structures | count | RDF error | pair < d (share) | mean coordination | E/atom (eV): median (mean ± std) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        energy = row.get("energy_per_atom")
        energy_text = (
            ""
            if not energy
            else (
                f"{energy['median']:.3f} ({energy['mean']:.4g} ± {energy['std']:.3g})"
                if "median" in energy
                else f"{energy['mean']:.3f} ± {energy['std']:.3f}"
            )
        )
        lines.append(
            f"| {name} | {row['count']} | {row['rdf_error']:.4f} | {row['close_contact_share']:.3f} | "
            f"{row['mean_coordination']:.2f} | {energy_text} |"
        )
    return "\n".join(lines)


def set_energies(batch: StructureBatch, potential: str, limit: int) -> np.ndarray:
    """Potential energy per atom (eV) of up to ``limit`` structures of ``batch``, evenly spaced through it
    (the first and the last included); empty for ``limit`` 0. The structures must share one atom count."""
    if limit == 0:
        return np.zeros(0)
    index = np.linspace(0, len(batch) - 1, min(limit, len(batch))).round().astype(int)
    return md.potential_energies(batch.subset(np.unique(index)), potential) / batch.n_atoms[0]


def _check_atoms(name: str, batch: StructureBatch, n: int, species: np.ndarray) -> None:
    """``ValueError`` naming ``name`` when a structure has another atom count or other atoms than the hold-out."""
    from ase.data import chemical_symbols

    formula = _formula(species, chemical_symbols)
    wrong = np.flatnonzero(batch.n_atoms != n)
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(
            f"{name}: structure {i} has {int(batch.n_atoms[i])} atoms ({wrong.size} of {len(batch)} "
            f"structures differ), the held-out frames {n} ({formula}); expected structures of the "
            "held-out's atoms"
        )
    numbers = np.sort(batch.numbers.reshape(len(batch), n), axis=1)
    differs = np.flatnonzero((numbers != species).any(axis=1))
    if differs.size:
        i = int(differs[0])
        raise ValueError(
            f"{name}: structure {i} is {_formula(numbers[i], chemical_symbols)}, the held-out frames "
            f"are {formula}; expected structures of the held-out's atoms"
        )


def _formula(numbers, symbols) -> str:
    values, counts = np.unique(np.asarray(numbers), return_counts=True)
    return "".join(f"{symbols[int(z)] if 0 <= int(z) < len(symbols) else '?'}{int(c)}" for z, c in zip(values, counts))


@dataclass
class QualityReport:
    """What :func:`quality_rows` measured.

    ``quality``: JSON-ready ``rows`` (per set, :data:`FLOOR` first), ``text`` (the Markdown table),
    ``settings`` (the potential included), ``r`` and ``rdf`` (bin centres and g(r) of the hold-out and
    every set), ``angle`` and ``angles`` (bin centres in degrees and the bond-angle densities) and
    ``note``. The curves as arrays: ``rdf_curves``, ``angle_curves`` (``{label: (x, y)}``) and
    ``energies`` (``{label: energies per atom}``, sets with energies only), labelled as in the figures.
    """

    quality: dict
    rdf_curves: dict = field(default_factory=dict)
    angle_curves: dict = field(default_factory=dict)
    energies: dict = field(default_factory=dict)

    def write(self, folder) -> dict[str, Path]:
        """Write ``rdf.png``, ``angles.png``, ``energies.png`` (only with energies) and ``quality.json`` into
        ``folder`` (created), each through a temporary name: all the files appear together or none.

        :return: ``{"rdf", "angles", ["energies",] "json"}`` → path.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"rdf": folder / FIGURES["rdf"], "angles": folder / FIGURES["angles"]}
        if self.energies:
            paths["energies"] = folder / FIGURES["energies"]
        paths["json"] = folder / JSON_FILE
        with contextlib.ExitStack() as stack:
            temporary = {key: stack.enter_context(atomic_path(path)) for key, path in paths.items()}
            amorphous_quality.plot_rdf(self.rdf_curves, temporary["rdf"])
            amorphous_quality.plot_bond_angles(self.angle_curves, temporary["angles"])
            if self.energies:
                amorphous_quality.plot_energy_histogram(self.energies, temporary["energies"])
            Path(temporary["json"]).write_text(json.dumps(self.quality, indent=2) + "\n", encoding="utf-8")
        return paths


def quality_rows(
    reference: StructureBatch,
    sets: Mapping[str, StructureBatch],
    settings: Mapping | None = None,
    potential: str | None = None,
    folder: str | os.PathLike | None = None,
) -> QualityReport:
    """The quality of every named set against the held-out frames ``reference`` (see the module docstring).

    :param reference: the held-out MD frames (at least 4: two halves for the floor), periodic, one atom count.
    :param sets: ``{name: structures}``, at least one; every structure periodic with the hold-out's atoms
        (atom count and species). The name :data:`FLOOR` is reserved.
    :param settings: some of :data:`QUALITY_DEFAULTS` (``r_max``, ``bins``, ``min_distance``, ``cutoff``,
        ``energy_structures``, ``potential``).
    :param potential: the potential of the energies when ``settings`` names none (the trajectory's);
        ``sw_vink`` when neither does.
    :param folder: when given, :meth:`QualityReport.write` writes the figures and ``quality.json`` there.
    :raises ValueError: naming the setting, ``reference`` or the set.
    :raises RuntimeError: naming the set when LAMMPS fails on one of its structures.
    """
    values = quality_settings(settings)
    if potential is not None and potential not in md.POTENTIALS:
        raise ValueError(f"potential: got {potential!r}, expected one of {list(md.POTENTIALS)}")
    potential = values["potential"] or potential or "sw_vink"
    if not isinstance(sets, Mapping) or not sets:
        raise ValueError("structures: expected at least one named set of structures to measure")
    if FLOOR in sets:
        raise ValueError(f"structures: the name {FLOOR!r} is reserved for the MD floor; name the set otherwise")
    amorphous_quality.check_batch("held_out", reference, periodic=True)
    if len(reference) < 4:
        raise ValueError(f"held_out: {len(reference)} frames; expected at least 4 (two halves for the floor)")
    n = int(reference.n_atoms[0])
    if (reference.n_atoms != n).any():
        i = int(np.argmax(reference.n_atoms != n))
        raise ValueError(
            f"held_out: frame {i} has {int(reference.n_atoms[i])} atoms, frame 0 {n}; expected the "
            "frames of one trajectory"
        )
    species = np.sort(reference.numbers[:n])
    _check_atoms("held_out", reference, n, species)
    for name, batch in sets.items():
        amorphous_quality.check_batch(name, batch, periodic=True)
        _check_atoms(name, batch, n, species)

    half = len(reference) // 2
    if GRID_FLOOR in sets:
        raise ValueError(f"structures: the name {GRID_FLOOR!r} is reserved for the grid floor; name the set otherwise")
    measured = {FLOOR: reference.subset(np.arange(half, len(reference)))}
    if values["grid_bins"] is not None:
        measured[GRID_FLOOR] = on_grid(measured[FLOOR], values["grid_bins"])
    measured.update(sets)
    floor_reference = reference.subset(np.arange(half))
    r, g_true = amorphous_quality.radial_distribution(reference, values["r_max"], values["bins"])
    _, g_floor_ref = amorphous_quality.radial_distribution(floor_reference, values["r_max"], values["bins"])
    rows, rdfs, angles, energies = {}, {_MD_LABEL: (r, g_true)}, {}, {}
    angle_bins = None
    for name, batch in measured.items():
        _, g = amorphous_quality.radial_distribution(batch, values["r_max"], values["bins"])
        target = g_floor_ref if name in (FLOOR, GRID_FLOOR) else g_true
        angle_bins, density = amorphous_quality.bond_angles(batch, values["cutoff"])
        try:
            e = set_energies(batch, potential, values["energy_structures"])
        except RuntimeError as error:
            raise RuntimeError(f"{name}: {error}") from None
        rows[name] = {
            "count": len(batch),
            "rdf_error": float(amorphous_quality.rdf_error(g, target)),
            "close_contact_share": float(amorphous_quality.close_contact_share(batch, values["min_distance"])),
            "mean_coordination": float(np.mean(amorphous_quality.coordination(batch, values["cutoff"]))),
            "energy_per_atom": (
                {"mean": float(e.mean()), "std": float(e.std()), "median": float(np.median(e)), "count": int(e.size)}
                if e.size
                else None
            ),
        }
        label = _MD_LABEL if name == FLOOR else name
        if name != FLOOR:
            rdfs[name] = (r, g)
        angles[label] = (angle_bins, density)
        if e.size:
            energies[label] = e
    quality = {
        "rows": rows,
        "text": quality_table(rows),
        "settings": {**values, "potential": potential},
        "r": r.tolist(),
        "rdf": {name: g.tolist() for name, (_, g) in rdfs.items()},
        "angle": angle_bins.tolist(),
        "angles": {name: d.tolist() for name, (_, d) in angles.items()},
        "note": _NOTE,
    }
    report = QualityReport(quality, rdfs, angles, energies)
    if folder is not None:
        report.write(folder)
    return report


def relaxation_rows(
    initial: StructureBatch, final: StructureBatch, energies, labels, cutoff: float = QUALITY_DEFAULTS["cutoff"]
) -> dict:
    """What a relaxation (DFT) did to generated structures: energy per atom, displacement, coordination before
    and after, closest pair after. Do they relax to amorphous minima (four-fold, no crystallisation) or fall apart?

    :param initial: the structures before the relaxation; ``final`` the same structures after it (same order,
        atoms and cells).
    :param energies: the total energy of every relaxed structure, eV (``None`` or NaN: not known).
    :param labels: a name per structure, for the rows.
    :param cutoff: neighbour cut-off of the coordination, Å.
    :return: ``{"rows": {label: {atoms, energy_per_atom, mean_displacement, max_displacement,
        coordination_before, coordination_after, closest_pair_after}}, "text": the Markdown table,
        "mean_coordination_after": float or None}``.
    :raises ValueError: naming ``final`` when a structure's atom count differs from its initial one.
    """
    if len(initial) != len(final) or len(labels) != len(final) or len(energies) != len(final):
        raise ValueError(
            f"final: {len(final)} relaxed structures for {len(initial)} initial ones, {len(labels)} "
            f"labels and {len(energies)} energies; expected one of each per structure"
        )
    wrong = np.flatnonzero(initial.n_atoms != final.n_atoms)
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(
            f"final: {labels[i]} has {int(initial.n_atoms[i])} atoms before and {int(final.n_atoms[i])} "
            "after; expected the same structure relaxed"
        )
    rows = {}
    if len(final):
        before = amorphous_quality.coordination(initial, cutoff)
        after = amorphous_quality.coordination(final, cutoff)
        closest = amorphous_quality.min_pair_distances(final)
    offsets = initial.offsets
    for i, label in enumerate(labels):
        start, stop = offsets[i], offsets[i + 1]
        cell = initial.cells[i]
        fractional = np.linalg.solve(cell.T, (final.positions[start:stop] - initial.positions[start:stop]).T).T
        fractional -= np.round(fractional)
        displacement = np.linalg.norm(fractional @ cell, axis=1)
        energy = None if energies[i] is None or not np.isfinite(energies[i]) else float(energies[i])
        rows[label] = {
            "atoms": int(stop - start),
            "energy_per_atom": None if energy is None else energy / int(stop - start),
            "mean_displacement": float(displacement.mean()),
            "max_displacement": float(displacement.max()),
            "coordination_before": float(before[i]),
            "coordination_after": float(after[i]),
            "closest_pair_after": float(closest[i]),
        }
    lines = [
        "| structure | E/atom (eV) | mean / max displacement (Å) | coordination before → after | closest pair (Å) |",
        "|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        energy = "" if row["energy_per_atom"] is None else f"{row['energy_per_atom']:.3f}"
        lines.append(
            f"| {label} | {energy} | {row['mean_displacement']:.2f} / {row['max_displacement']:.2f} | "
            f"{row['coordination_before']:.2f} → {row['coordination_after']:.2f} | "
            f"{row['closest_pair_after']:.2f} |"
        )
    finite = [row["coordination_after"] for row in rows.values() if np.isfinite(row["coordination_after"])]
    return {
        "rows": rows,
        "text": "\n".join(lines),
        "mean_coordination_after": float(np.mean(finite)) if finite else None,
    }
