"""The ``formation`` assessor: formation energy, uniqueness and novelty of a crystal screening.

Registered as ``formation`` in the entry-point group ``aiida_physgen.assessors`` and run by the screening's
``physgen.assess`` step once the DFT basins are known (:mod:`aiida_physgen.screening.assessors`). It reads
the cheap tier's relaxed representatives (the screening must run the cheap tier, with the cell free: the
crystals protocol's CHGNet settings) and measures, at that same cheap level:

* the **formation energy** per atom of every relaxed crystal, against elemental references (ASE's
  reference states, :func:`~aiida_physgen.crystals.properties.elemental_reference_structures`) relaxed with
  the screening's own cheap method and settings, the cell free;
* **uniqueness** within the batch and **novelty** against the training set (pymatgen ``StructureMatcher``,
  :func:`~aiida_physgen.crystals.properties.uniqueness_and_novelty`);
* for every DFT minimum, what DFT changed (volume, whether the structure still matches its cheap
  geometry, its space group), the cheap method's formation energy **at the DFT geometry** (a single
  point) and, when the screening relaxed elemental references with its DFT settings (``dft_references``),
  the **DFT formation energy**;
* the **baseline**: the training crystals' own formation energies at the same cheap level.

It returns the crystal funnel's counts per condition (generated → on Wyckoff positions (no merge) → no position
shared by two elements (no reassignment) → symmetric → valid → selected → cheap-relaxed → converged → keeps its
requested space group (spglib) → unique → novel → E_f < 0 → DFT → DFT basins → DFT keeps its group → DFT E_f < 0
(with DFT references); from
"converged" to "E_f < 0" each row is a subset of the one above) as its table, the DFT minima below it, flat
metrics, and the formation-energy histogram (candidates per condition, the training baseline, the DFT
minima).

Pure Python (NumPy, ASE, pymatgen, matplotlib, the cheap method): no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ml.batch import StructureBatch
from ..screening import cheap_relax
from ..screening.assessors import Assessment, Assessor, ScreeningData
from . import properties

__all__ = [
    "FormationNovelty",
    "FormationSettings",
    "BASELINES",
    "reference_settings",
    "elemental_references",
    "mark_crystals",
    "funnel_text",
    "dft_reference_energies",
    "dft_formation_energies",
]

#: how the training set's baseline is put at the cheap level: relaxed (cell free), as it is, or not at all
BASELINES = ("relax", "single_point", "none")
#: the metric (``n_<name>``) of each funnel stage whose name is not one already
STAGE_METRICS = {
    "cheap-relaxed": "cheap_relaxed",
    "E_f < 0": "negative_formation_energy",
    "DFT relaxed": "dft_relaxed",
    "DFT basins": "dft_basins",
    "on Wyckoff positions": "on_wyckoff_positions",
    "no position shared": "no_position_shared",
    "cheap converged": "cheap_converged",
    "keeps its group": "keeps_group",
    "DFT keeps its group": "dft_keeps_group",
    "DFT E_f < 0": "dft_formation_negative",
}
#: the cheap engine whose settings the references are relaxed with (cheap_relax.relax_batch)
CHEAP_ENGINE = "cheap"


def _positive(name: str, value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name}: got {value!r}, expected a positive {what}")
    return float(value)


@dataclasses.dataclass
class FormationSettings:
    """Settings of the ``formation`` assessor; each default is written here only.

    :param ltol: StructureMatcher's fractional length tolerance; ``None``: the default of
        :func:`~aiida_physgen.crystals.properties.uniqueness_and_novelty` (pymatgen's).
    :param stol: StructureMatcher's site tolerance; ``None``: the same function's default.
    :param angle_tol: StructureMatcher's angle tolerance in degrees; ``None``: the same function's default.
    :param baseline: how the training crystals are put at the cheap level for the baseline: ``relax``
        (relaxed with the cheap method, cell free, as the candidates were), ``single_point`` (their energy
        as given: quicker, slightly above the cheap minimum) or ``none``.
    :param max_baseline: at most this many training crystals (the first ones) in the baseline, as primitive cells
        (the 99 shipped half-Heuslers have 3 atoms each).
    :param bins: bins of the formation-energy histogram.
    :param symprec: spglib tolerance (Å) of the DFT minima's space groups.
    """

    ltol: float | None = None
    stol: float | None = None
    angle_tol: float | None = None
    baseline: str = "relax"
    max_baseline: int = 200
    bins: int = 30
    symprec: float = 0.1

    def __post_init__(self) -> None:
        for name, what in (
            ("ltol", "tolerance"),
            ("stol", "tolerance"),
            ("angle_tol", "angle in degrees"),
            ("symprec", "tolerance in Å"),
        ):
            if getattr(self, name) is not None or name == "symprec":
                setattr(self, name, _positive(name, getattr(self, name), what))
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline: got {self.baseline!r}, expected one of {list(BASELINES)}")
        for name in ("max_baseline", "bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a positive integer")

    @property
    def matcher(self) -> dict[str, float]:
        """The StructureMatcher tolerances that were given (the others keep their defaults)."""
        values = {"ltol": self.ltol, "stol": self.stol, "angle_tol": self.angle_tol}
        return {name: value for name, value in values.items() if value is not None}


# ---------------------------------------------------------------------- the pure stages, shared with the CLI
def reference_settings(cheap_settings: Mapping[str, Any] | None) -> cheap_relax.CheapSettings:
    """The cheap tier's settings for the elemental references: the same method and criteria, the cell always
    free (the references' starting cells are experimental or guessed, not the method's minimum)."""
    values = dict(cheap_settings or {})
    values["fix_cell"] = False
    settings = cheap_relax.CheapSettings.from_dict(values)
    if settings.method == "gfn2-xtb":
        raise ValueError(
            "cheap_settings.method: 'gfn2-xtb' relaxes molecules; formation energies of crystals need "
            "a crystal method ('chgnet' or 'auto')"
        )
    return settings


def elemental_references(elements, settings: cheap_relax.CheapSettings) -> tuple[dict[str, float], StructureBatch]:
    """Energy per atom of every element (eV/atom), from its reference structure relaxed with ``settings``;
    also the relaxed references. An element whose reference relaxation failed is left out (the formation
    energies that need it then say so)."""
    relaxed = cheap_relax.relax_batch(properties.elemental_reference_structures(sorted(set(elements))), settings)
    ok = (np.asarray(relaxed.info["cheap_failed"]) == 0) & np.isfinite(relaxed.info["cheap_energy"])
    return (properties.reference_energies(relaxed.subset(np.flatnonzero(ok))) if ok.any() else {}), relaxed


def _with_references(batch: StructureBatch, mu: Mapping[str, float]) -> np.ndarray:
    """Indices of the structures of ``batch`` whose elements all have a reference energy in ``mu``."""
    return np.array([i for i in range(len(batch)) if set(batch[i].get_chemical_symbols()) <= set(mu)], dtype=np.int64)


def mark_crystals(
    relaxed: StructureBatch,
    mu: Mapping[str, float],
    training: StructureBatch | None,
    matcher: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Formation energy, uniqueness and novelty of every cheaply relaxed crystal of ``relaxed``.

    Returns arrays of ``len(relaxed)``: ``formation_energy`` (eV/atom, NaN where the relaxation failed),
    ``ok`` (1 when it did not), ``group`` (index of the lowest-formation-energy crystal it matches, −1 when
    failed), ``unique`` (1 for that crystal), ``novel`` (1 when no training crystal matches, 0 when one does,
    −1 without training or when failed).
    """
    energy = np.asarray(relaxed.info["cheap_energy"], dtype=float)
    failed = np.asarray(relaxed.info.get("cheap_failed", np.zeros(len(relaxed))), dtype=bool)
    ok = ~failed & np.isfinite(energy)
    formation = np.full(len(relaxed), np.nan)
    group = np.full(len(relaxed), -1, dtype=np.int64)
    unique = np.zeros(len(relaxed), dtype=np.int64)
    novel = np.full(len(relaxed), -1, dtype=np.int64)
    which = np.flatnonzero(ok)
    if which.size:
        part = relaxed.subset(which)
        formation[which] = properties.formation_energies(part, dict(mu))
        part.info["formation_energy"] = formation[which]
        marks = properties.uniqueness_and_novelty(part, training, **(matcher or {}))
        group[which] = which[marks["group"]]
        unique[which] = marks["unique"]
        novel[which] = marks["novel"]
    return {"formation_energy": formation, "ok": ok.astype(np.int64), "group": group, "unique": unique, "novel": novel}


def funnel_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """The funnel rows (``stage`` + one count per column) as an aligned text table."""
    header = ["stage", *columns]
    cells = [[str(row.get(c, "")) for c in header] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]

    def line(values):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _structure(atoms):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def _space_group(atoms, symprec: float) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        analyzer = SpacegroupAnalyzer(_structure(atoms), symprec=symprec)
        return f"{analyzer.get_space_group_symbol()} ({analyzer.get_space_group_number()})"
    except Exception:  # noqa: BLE001 - spglib gives up on a distorted cell: say so in the table
        return "undetermined"


def _histogram(
    groups: dict[str, np.ndarray], baseline: np.ndarray, dft: list[tuple[float, float]], bins: int, baseline_label: str
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [v[np.isfinite(v)] for v in groups.values()]
    everything = np.concatenate(
        [*values, baseline[np.isfinite(baseline)], [x for pair in dft for x in pair if math.isfinite(x)]]
        or [np.zeros(0)]
    )
    edges = np.histogram_bin_edges(everything if everything.size else np.zeros(1), bins=bins)
    figure, axis = plt.subplots(figsize=(6, 3.8), dpi=120)
    total = sum(v.size for v in values)
    if total:
        axis.hist(
            values,
            bins=edges,
            stacked=True,
            weights=[np.full(v.size, 1 / total) for v in values],
            label=[f"unique candidates, {name} ({v.size})" for name, v in zip(groups, values)],
            alpha=0.8,
        )
    finite = baseline[np.isfinite(baseline)]
    if finite.size:
        axis.hist(
            finite,
            bins=edges,
            weights=np.full(finite.size, 1 / finite.size),
            histtype="step",
            color="k",
            lw=1.5,
            label=f"{baseline_label} ({finite.size})",
        )
    for i, (cheap, at_dft) in enumerate(dft):
        if math.isfinite(cheap):
            axis.axvline(cheap, color="C3", lw=1, label="DFT pick, cheap geometry" if i == 0 else None)
        if math.isfinite(at_dft):
            axis.axvline(at_dft, color="C3", lw=1, ls="--", label="DFT minimum, cheap level" if i == 0 else None)
    axis.axvline(0.0, color="0.4", lw=0.8)
    axis.set_xlabel("formation energy at the cheap level (eV/atom)")
    axis.set_ylabel("share of each set")
    axis.legend(fontsize=6)
    figure.tight_layout()
    handle = io.BytesIO()
    figure.savefig(handle, format="png")
    plt.close(figure)
    return handle.getvalue()


def _fmt(value, digits: int = 3, sign: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def dft_reference_energies(references: StructureBatch | None) -> dict[str, float]:
    """Energy per atom of every element whose DFT reference relaxation finished (info ``energy``); empty without
    references."""
    if references is None or not len(references):
        return {}
    energies = np.asarray(references.info["energy"], dtype=float)
    finished = np.flatnonzero(np.isfinite(energies))
    return properties.reference_energies(references.subset(finished), key="energy") if finished.size else {}


def dft_formation_energies(relaxed: StructureBatch, mu: Mapping[str, float], indices) -> list[float | None]:
    """DFT formation energy per atom of ``relaxed[indices]`` (info ``energy``) against ``mu``; ``None`` where an
    element has no reference or there are no references."""
    if not mu:
        return [None] * len(indices)
    with_references = set(_with_references(relaxed, mu).tolist())
    keep = [index for index in indices if index in with_references]
    found = properties.formation_energies(relaxed.subset(keep), dict(mu), key="energy") if keep else []
    values = {index: float(value) for index, value in zip(keep, found) if math.isfinite(value)}
    return [values.get(index) for index in indices]


# ---------------------------------------------------------------------- the assessor
class FormationNovelty(Assessor):
    """Formation energy, uniqueness and novelty of a crystal screening, at the cheap level, with the training
    set's own formation energies as the baseline and what DFT did to the minima."""

    name = "formation"
    title = "Crystals: formation energy, uniqueness, novelty"
    settings_class = FormationSettings

    def _check(self, data: ScreeningData) -> cheap_relax.CheapSettings:
        if data.cheap is None:
            raise ValueError(
                "the formation assessor reads the cheap tier's relaxed crystals; run the screening with "
                "the funnel (funnel=True) and a crystal cheap method (cheap_settings.method 'chgnet')"
            )
        if data.cheap_engine not in (None, CHEAP_ENGINE):
            raise ValueError(
                f"cheap_engine: the formation assessor relaxes its elemental references with the "
                f"{CHEAP_ENGINE!r} engine's method; the screening's cheap tier was {data.cheap_engine!r}"
            )
        if not data.cheap.pbc.all():
            raise ValueError(
                "the formation assessor measures crystals (periodic along every axis); the cheap tier's "
                "structures are not"
            )
        return reference_settings(data.cheap_settings)

    def assess(self, data: ScreeningData, settings: FormationSettings) -> Assessment:
        relax_settings = self._check(data)
        cheap = data.cheap
        training = data.training
        dft_relaxed = data.relaxed if data.relaxed is not None and len(data.relaxed) else None
        elements = set(cheap.elements())
        use_baseline = training is not None and len(training) and settings.baseline != "none"
        if use_baseline:
            training_part = training.subset(np.arange(min(len(training), settings.max_baseline)))
            elements |= set(training_part.elements())
        if dft_relaxed is not None:
            elements |= set(dft_relaxed.elements())
        mu, _ = elemental_references(elements, relax_settings)

        marks = mark_crystals(cheap, mu, training, settings.matcher)
        formation, ok = marks["formation_energy"], marks["ok"] == 1
        unique, novel = marks["unique"] == 1, marks["novel"] != 0  # −1 (no training) counts as novel
        negative = np.nan_to_num(formation, nan=np.inf) < 0

        # ---- the training set at the same cheap level
        baseline = np.zeros(0)
        baseline_label = "training set"
        if use_baseline:
            from ..ml.crystal_build import primitive_cells

            primitive = primitive_cells(training_part, tolerance=settings.symprec)
            if settings.baseline == "relax":
                at_level = cheap_relax.relax_batch(primitive, relax_settings)
                baseline_label = "training set, relaxed at the cheap level"
            else:
                at_level = cheap_relax.single_points(primitive, relax_settings)
                baseline_label = "training set as given, cheap level"
            failed = np.asarray(at_level.info["cheap_failed"], dtype=bool)
            baseline = np.full(len(at_level), np.nan)
            keep = np.intersect1d(np.flatnonzero(~failed), _with_references(at_level, mu))
            if keep.size:
                baseline[keep] = properties.formation_energies(at_level.subset(keep), mu)

        # ---- the DFT minima: what DFT changed, and the cheap level at the DFT geometry
        funnel = data.funnel or {}
        picked = dict(funnel.get("picked", {}))
        labels = sorted(member for row in data.basins for member in row.get("members", []))
        mu_dft = dft_reference_energies(data.dft_references)
        dft_rows, dft_pairs = self._dft_minima(data, dft_relaxed, labels, picked, marks, mu, relax_settings, settings)
        if dft_rows:
            values = dft_formation_energies(dft_relaxed, mu_dft, [row["index"] for row in dft_rows])
            for row, value in zip(dft_rows, values):
                row["formation_energy_dft"] = value

        # ---- the funnel, per condition
        names = list(data.generated)
        condition_of_cheap = np.asarray(cheap.info.get("condition_index", np.zeros(len(cheap))), dtype=np.int64)
        columns = names + (["total"] if len(names) > 1 else [])

        def per_condition(indices_of_condition) -> dict[str, int]:
            row = {name: int(indices_of_condition(i)) for i, name in enumerate(names)}
            if len(names) > 1:
                row["total"] = sum(row[name] for name in names)
            return row

        def count(mask, conditions):
            return lambda i: int(np.sum(mask & (conditions == i)))

        rows = [{"stage": "generated", **per_condition(lambda i: len(data.generated[names[i]]))}]
        generated = list(data.generated.values())
        if all("merge_needed" in batch.info for batch in generated):  # the crystal GAN's Wyckoff placement
            rows.append(
                {
                    "stage": "on Wyckoff positions",
                    **per_condition(lambda i: int(np.sum(data.generated[names[i]].info["merge_needed"] == 0))),
                }
            )
        if all("reassigned_sites" in batch.info for batch in generated):
            rows.append(
                {
                    "stage": "no position shared",
                    **per_condition(lambda i: int(np.sum(data.generated[names[i]].info["reassigned_sites"] == 0))),
                }
            )
        if all("symmetric" in batch.info for batch in data.generated.values()):
            rows.append(
                {
                    "stage": "symmetric",
                    **per_condition(lambda i: int(np.sum(data.generated[names[i]].info["symmetric"]))),
                }
            )
        if data.valid is not None:
            valid_conditions = np.asarray(data.valid.info.get("condition_index", np.zeros(len(data.valid))))
            rows.append({"stage": "valid", **per_condition(count(np.ones(len(data.valid), bool), valid_conditions))})
        if data.representatives is not None:
            selected = np.asarray(data.representatives.info.get("condition_index", np.zeros(len(data.representatives))))
            rows.append({"stage": "selected", **per_condition(count(np.ones(len(selected), bool), selected))})
        rows.append({"stage": "cheap-relaxed", **per_condition(count(ok, condition_of_cheap))})
        # converged, and (for crystals generated for a space group) still in it after the cheap relaxation: the rows
        # below count only those, so each row is a subset of the one above
        kept = ok & (np.asarray(cheap.info.get("cheap_converged", np.ones(len(cheap))), dtype=np.int64) == 1)
        rows.append({"stage": "cheap converged", **per_condition(count(kept, condition_of_cheap))})
        requested = cheap.info.get("space_group_requested")
        if requested is not None:
            found = np.array(
                [properties.space_group_number(cheap[i], settings.symprec) if kept[i] else 0 for i in range(len(cheap))]
            )
            kept &= found == np.asarray(requested)
            rows.append({"stage": "keeps its group", **per_condition(count(kept, condition_of_cheap))})
        rows += [
            {"stage": "unique", **per_condition(count(kept & unique, condition_of_cheap))},
            {"stage": "novel", **per_condition(count(kept & unique & novel, condition_of_cheap))},
            {"stage": "E_f < 0", **per_condition(count(kept & unique & novel & negative, condition_of_cheap))},
        ]
        dft_conditions = np.array(
            [condition_of_cheap[picked[label]] if label in picked else -1 for label in labels], dtype=np.int64
        )
        rows.append({"stage": "DFT relaxed", **per_condition(count(np.ones(len(labels), bool), dft_conditions))})
        basin_conditions = np.array([row["condition_index"] for row in dft_rows], dtype=np.int64)
        rows.append({"stage": "DFT basins", **per_condition(count(np.ones(len(dft_rows), bool), basin_conditions))})
        keeps_dft = np.ones(len(dft_rows), dtype=bool)
        if requested is not None:  # the requested group of each DFT basin's condition, kept through DFT
            keeps_dft = np.array([row["keeps_group"] for row in dft_rows], dtype=bool)
            rows.append({"stage": "DFT keeps its group", **per_condition(count(keeps_dft, basin_conditions))})
        if mu_dft:  # a subset of the row above: E_f against the references relaxed with the same DFT settings
            negative_dft = np.array([(row["formation_energy_dft"] or 0.0) < 0 for row in dft_rows], dtype=bool)
            rows.append({"stage": "DFT E_f < 0", **per_condition(count(keeps_dft & negative_dft, basin_conditions))})

        # ---- metrics and text
        total = "total" if len(names) > 1 else names[0]
        counts = {row["stage"]: row[total] for row in rows}
        good = ok & unique & novel
        metrics: dict[str, Any] = {
            "cheap_method": relax_settings.method if relax_settings.method != "auto" else "chgnet",
            "cheap_fix_cell": bool((data.cheap_settings or {}).get("fix_cell", cheap_relax.CheapSettings.fix_cell)),
            **{f"n_{STAGE_METRICS.get(key, key)}": value for key, value in counts.items()},
            "dft_sent": int(funnel.get("n_picked", len(picked))),
            "reference_energies": {symbol: float(value) for symbol, value in mu.items()},
            "formation_energy_min": float(np.nanmin(formation[good])) if good.any() else None,
            "formation_energy_median": float(np.nanmedian(formation[good])) if good.any() else None,
            "baseline": settings.baseline if use_baseline else "none",
            "baseline_count": int(np.isfinite(baseline).sum()),
            "baseline_median": float(np.nanmedian(baseline)) if np.isfinite(baseline).any() else None,
        }
        if metrics["baseline_median"] is not None and good.any():
            metrics["share_at_or_below_baseline_median"] = float(np.mean(formation[good] <= metrics["baseline_median"]))
        if dft_rows:
            changes = [row["volume_change"] for row in dft_rows if row["volume_change"] is not None]
            metrics.update(
                dft_mean_abs_volume_change=float(np.mean(np.abs(changes))) if changes else None,
                dft_kept_structure=sum(1 for row in dft_rows if row["kept"]),
                dft_negative_formation_energy=sum(1 for row in dft_rows if (row["formation_energy_at_dft"] or 0) < 0),
                dft_novel=sum(1 for row in dft_rows if row["novel"] != 0),
            )
        if mu_dft:
            metrics["dft_reference_energies"] = {symbol: float(value) for symbol, value in mu_dft.items()}
            metrics["dft_formation_energies"] = {row["name"]: row["formation_energy_dft"] for row in dft_rows}

        text = [funnel_text(rows, columns), ""]
        text.append(
            f"E_f: formation energy per atom at the cheap level ({metrics['cheap_method']}, references relaxed "
            f"the same way with the cell free: " + ", ".join(f"{s} {v:.3f}" for s, v in mu.items()) + " eV/atom)"
        )
        if metrics["formation_energy_median"] is not None:
            text.append(
                f"unique novel candidates: median E_f {metrics['formation_energy_median']:+.3f}, lowest "
                f"{metrics['formation_energy_min']:+.3f} eV/atom"
            )
        if metrics["baseline_median"] is not None:
            share = metrics.get("share_at_or_below_baseline_median")
            text.append(
                f"baseline, {baseline_label}: median E_f {metrics['baseline_median']:+.3f} eV/atom over "
                f"{metrics['baseline_count']} crystals"
                + (f"; {share:.0%} of the unique novel candidates lie at or below it" if share is not None else "")
            )
        if metrics["cheap_fix_cell"]:
            text.append(
                "note: the cheap tier kept the cells fixed, so the candidates' formation energies are at the "
                "generated volumes (relax the cell: cheap_settings.fix_cell false)"
            )
        if mu_dft:
            text.append(
                "E_f DFT: against elemental references relaxed with the screening's DFT settings: "
                + ", ".join(f"{s} {v:.3f}" for s, v in mu_dft.items())
                + " eV/atom"
            )
        if dft_rows:
            text += [
                "",
                "DFT minima (E_f at the cheap level: of the cheap geometry sent to DFT, and a single point "
                "at the DFT geometry; E_f DFT: with DFT references, when relaxed; ΔV: DFT volume against the "
                "cheap one):",
                funnel_text(
                    [
                        {
                            "stage": row["name"],
                            "condition": row["condition"],
                            "formula": row["formula"],
                            "space group": row["space_group"],
                            "E DFT (eV/atom)": _fmt(row["energy_per_atom"]),
                            "E_f cheap": _fmt(row["formation_energy_cheap"]),
                            "E_f @ DFT": _fmt(row["formation_energy_at_dft"]),
                            "E_f DFT": _fmt(row["formation_energy_dft"]),
                            "ΔV (%)": _fmt(row["volume_change"], 1),
                            "kept": "yes" if row["kept"] else "no",
                            "novel": {1: "yes", 0: "no"}.get(row["novel"], "-"),
                        }
                        for row in dft_rows
                    ],
                    [
                        "condition",
                        "formula",
                        "space group",
                        "E DFT (eV/atom)",
                        "E_f cheap",
                        "E_f @ DFT",
                        "E_f DFT",
                        "ΔV (%)",
                        "kept",
                        "novel",
                    ],
                ).replace("stage", "basin", 1),
            ]
        groups = {name: formation[ok & unique & (condition_of_cheap == i)] for i, name in enumerate(names)}
        figure = _histogram(groups, baseline, dft_pairs, settings.bins, baseline_label)
        return Assessment(metrics=metrics, rows=rows, text="\n".join(text), figures={"histogram": figure})

    def _dft_minima(self, data, dft_relaxed, labels, picked, marks, mu, relax_settings, settings):
        """One row per DFT basin: its condition, formula, space group, DFT energy, the cheap E_f of the geometry
        sent to DFT, the cheap E_f at the DFT geometry, the volume change, whether it still matches the cheap
        geometry, and its novelty."""
        from pymatgen.analysis.structure_matcher import StructureMatcher

        if dft_relaxed is None or not data.basins:
            return [], []
        if len(labels) != len(dft_relaxed):
            raise ValueError(f"relaxed: {len(dft_relaxed)} DFT-relaxed structures but the basins name {len(labels)}")
        names = list(data.generated)
        cheap = data.cheap
        condition_of_cheap = np.asarray(cheap.info.get("condition_index", np.zeros(len(cheap))), dtype=np.int64)
        at_dft = cheap_relax.single_points(dft_relaxed, relax_settings)
        failed = np.asarray(at_dft.info["cheap_failed"], dtype=bool)
        ef_at_dft = np.full(len(dft_relaxed), np.nan)
        keep = np.intersect1d(np.flatnonzero(~failed), _with_references(at_dft, mu))
        if keep.size:
            ef_at_dft[keep] = properties.formation_energies(at_dft.subset(keep), dict(mu))
        novelty = properties.uniqueness_and_novelty(dft_relaxed, data.training, **settings.matcher)["novel"]
        matcher = StructureMatcher(**settings.matcher, primitive_cell=True, scale=True)
        rows, pairs = [], []
        for basin in data.basins:
            label = basin["representative"]
            index = labels.index(label)
            atoms = dft_relaxed[index]
            cheap_index = picked.get(label)
            row = {
                "name": basin["name"],
                "formula": basin.get("formula", atoms.get_chemical_formula("metal")),
                "space_group": _space_group(atoms, settings.symprec),
                "keeps_group": False,
                "index": index,
                "energy_per_atom": basin.get("energy_per_atom"),
                "formation_energy_dft": None,
                "formation_energy_at_dft": float(ef_at_dft[index]) if math.isfinite(ef_at_dft[index]) else None,
                "novel": int(novelty[index]),
                "condition_index": -1,
                "condition": "-",
                "formation_energy_cheap": None,
                "volume_change": None,
                "kept": False,
            }
            if cheap_index is not None:
                before = cheap[int(cheap_index)]
                row["condition_index"] = int(condition_of_cheap[cheap_index])
                row["condition"] = names[row["condition_index"]] if 0 <= row["condition_index"] < len(names) else "-"
                value = marks["formation_energy"][cheap_index]
                row["formation_energy_cheap"] = float(value) if math.isfinite(value) else None
                row["volume_change"] = 100.0 * (
                    atoms.get_volume() / len(atoms) / (before.get_volume() / len(before)) - 1.0
                )
                row["kept"] = bool(matcher.fit(_structure(before), _structure(atoms)))
                requested = cheap.info.get("space_group_requested")
                if requested is not None:
                    wanted = int(np.asarray(requested)[int(cheap_index)])
                    row["keeps_group"] = properties.space_group_number(atoms, settings.symprec) == wanted
            rows.append(row)
            pairs.append(
                (
                    row["formation_energy_cheap"] if row["formation_energy_cheap"] is not None else math.nan,
                    row["formation_energy_at_dft"] if row["formation_energy_at_dft"] is not None else math.nan,
                )
            )
        return rows, pairs
