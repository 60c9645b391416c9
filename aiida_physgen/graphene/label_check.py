"""Does a conditional generator give what was asked? Requested against obtained labels.

RUGAN's check (Mills, Casert, Tamblyn 2020): generate sheets at labels drawn from the training set,
compute the label the sheets actually have, and compare the two distributions with a two-sample
Kolmogorov–Smirnov test (the paper: KS 0.02, p 0.19 at training size; 0.02, p 0.18 at 4× area).
The paper could only ask its EDNN surrogate; here the obtained label comes from the surrogate and
from the reference method itself, side by side.

Labels are energies per in-plane area (eV/Å²); tables print them in meV/Å². The sets compared are keyed
by condition name (``scale_1``, ``scale_2``...) with the scale (side multiple) of each, or, for a plain
table, by the scale itself. :func:`obtained_labels` computes what the sheets have (surrogate and/or
reference method), :func:`baseline_rows` what the same numbers look like where the answer is known, and
the ``label_consistency`` assessor (:mod:`aiida_physgen.graphene.assessors`) and ``aiida-physgen
check-labels`` print the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..ml.batch import StructureBatch

__all__ = [
    "compare_labels",
    "ks_rows",
    "baseline_rows",
    "format_ks_table",
    "plot_label_check",
    "obtained_labels",
    "sheet_scales",
    "held_out_line",
    "PAPER_KS",
    "PAPER_EDNN_MEDIAN_AE",
    "BLIND_SEED",
]

#: the paper's figures (EDNN energies of 10,000 generated sheets), by area multiple
PAPER_KS = {1: (0.02, 0.19), 4: (0.02, 0.18)}
#: the EDNN paper's median absolute error against DFT on porous graphene (Mills et al. 2019), meV/Å²
PAPER_EDNN_MEDIAN_AE = 1.685
#: seed of the permutation of the label-blind baseline (a fixed shuffle, so the table is reproducible)
BLIND_SEED = 0


def compare_labels(requested: Sequence[float], obtained: Sequence[float]) -> dict:
    """KS statistic and p-value between the two distributions, and how far each sheet is from its request.

    Non-finite obtained values (a sheet a method could not evaluate) are dropped and counted.
    """
    requested = np.asarray(requested, dtype=float)
    obtained = np.asarray(obtained, dtype=float)
    if requested.shape != obtained.shape or requested.ndim != 1 or requested.size < 2:
        raise ValueError(
            f"labels: expected two equal 1-D arrays of at least 2 values, got {requested.shape} and {obtained.shape}"
        )
    finite = np.isfinite(obtained) & np.isfinite(requested)
    r, o = requested[finite], obtained[finite]
    ks = stats.ks_2samp(r, o)
    error = o - r
    return {
        "count": int(finite.sum()),
        "dropped": int((~finite).sum()),
        "ks": float(ks.statistic),
        "p_value": float(ks.pvalue),
        # per-sheet agreement (meV/Å²): what a KS test between distributions cannot show
        "mae": float(np.mean(np.abs(error)) * 1e3),
        "median_abs_error": float(np.median(np.abs(error)) * 1e3),
        "bias": float(np.mean(error) * 1e3),
        "pearson_r": float(np.corrcoef(r, o)[0, 1]) if r.std() > 0 and o.std() > 0 else float("nan"),
        "requested_mean": float(r.mean() * 1e3),
        "obtained_mean": float(o.mean() * 1e3),
    }


def _scale(key, scales: Mapping | None) -> int:
    return int(scales[key]) if scales is not None else int(key)


def ks_rows(requested: Mapping, obtained: Mapping[str, Mapping], scales: Mapping | None = None) -> list[dict]:
    """One row per (set, method): :func:`compare_labels` plus ``scale``, ``area_multiple``, ``method`` and, when
    the sets are named (``scales`` maps each name to its scale), ``condition``.

    :param requested: the requested labels (eV/Å²) of every set, keyed by name (or by scale).
    :param obtained: by method (``ednn``, ``tersoff``...), the labels the sets' sheets have, keyed alike.
    """
    rows = []
    for key in sorted(requested, key=lambda k: (_scale(k, scales), str(k))):
        scale = _scale(key, scales)
        for method in obtained:
            if key not in obtained[method]:
                continue
            row = {"condition": str(key)} if scales is not None else {}
            row.update({"scale": scale, "area_multiple": scale**2, "method": method})
            row.update(compare_labels(requested[key], obtained[method][key]))
            paper = PAPER_KS.get(scale**2)
            if paper is not None:
                row["paper_ks"], row["paper_p"] = paper
            rows.append(row)
    return rows


def baseline_rows(
    labels: Sequence[float],
    surrogate: Sequence[float] | None = None,
    labelled_by: str = "labels",
    surrogate_name: str = "ednn",
) -> list[dict]:
    """Two rows where the answer is known, computed on the training sheets (at scale 1), beside the generated
    sets' rows:

    ``training``: requested = the training labels, obtained = the surrogate's labels of the same sheets: the
    KS and MAE that the surrogate's own error gives a generator whose sheets have exactly the labels asked for
    (the floor of the ``ednn`` rows). ``label-blind``: requested = the training labels in a random order,
    obtained = the true labels: what a generator that ignores the label gets. The two distributions are equal
    (KS 0, p 1), but the per-sheet columns (MAE, r ≈ 0) show what the KS test cannot.

    :param labels: the training sheets' labels (eV/Å²).
    :param surrogate: the surrogate's labels of the same sheets; ``None``: no ``training`` row.
    :param labelled_by: the method that made the training labels (the ``label-blind`` row's method).
    """
    labels = np.asarray(labels, dtype=float)
    rows = []
    if surrogate is not None:
        rows.append(
            {
                "condition": "training",
                "scale": 1,
                "area_multiple": 1,
                "method": surrogate_name,
                "baseline": True,
                **compare_labels(labels, surrogate),
            }
        )
    shuffled = labels[np.random.default_rng(BLIND_SEED).permutation(labels.size)]
    rows.append(
        {
            "condition": "label-blind",
            "scale": 1,
            "area_multiple": 1,
            "method": labelled_by,
            "baseline": True,
            **compare_labels(shuffled, labels),
        }
    )
    return rows


def format_ks_table(rows: Sequence[Mapping]) -> str:
    """The KS table as aligned text (what the assessor reports and ``aiida-physgen report`` prints); with a
    ``condition`` column when the rows name their sets, and the baseline rows last, under a rule."""
    named = any("condition" in row for row in rows)
    width = max([len("condition")] + [len(str(row.get("condition", ""))) for row in rows]) if named else 0
    first = f"{'condition':<{width}} " if named else ""
    header = (
        f"{first}{'area':>5} {'obtained by':<12} {'sheets':>7} {'KS':>6} {'p':>9} {'paper KS (p)':>13} "
        f"{'MAE':>7} {'bias':>7} {'r':>6}"
    )
    lines = [header, " " * (len(first) + 51) + "meV/Å²  meV/Å²", "-" * len(header)]
    generated = [row for row in rows if not row.get("baseline")]
    baselines = [row for row in rows if row.get("baseline")]
    for block, group in enumerate((generated, baselines)):
        if block and group:
            lines.append("baselines (training sheets):")
        for row in group:
            paper = f"{row['paper_ks']:.2f} ({row['paper_p']:.2f})" if "paper_ks" in row else "-"
            start = f"{str(row.get('condition', '')):<{width}} " if named else ""
            lines.append(
                f"{start}{str(row['area_multiple']) + '×':>5} {row['method']:<12} {row['count']:>7d} {row['ks']:>6.3f} "
                f"{row['p_value']:>9.3g} {paper:>13} {row['mae']:>7.2f} {row['bias']:>7.2f} {row['pearson_r']:>6.3f}"
            )
    return "\n".join(lines)


def held_out_line(held_out: Mapping) -> str:
    """One line on the EDNN's error on its held-out training sheets (the ``held_out`` of its model config)."""
    return (
        f"EDNN held-out error against the training labels ({held_out['count']} sheets): median "
        f"{held_out['median_ae']:.3f} meV/Å², mean {held_out['mae']:.3f} meV/Å² (per-atom baseline alone: median "
        f"{held_out['baseline_median_ae']:.3f}; the paper, against DFT: median {PAPER_EDNN_MEDIAN_AE} meV/Å²)"
    )


def plot_label_check(
    requested: Mapping, obtained: Mapping[str, Mapping], folder: str | Path, scales: Mapping | None = None
) -> dict[str, Path]:
    """For every set: a heat map (requested vs obtained, one panel per method) and histograms.

    Returns ``{'heatmap_<name>': path, 'histogram_<name>': path}`` of PNG files written to ``folder``; ``<name>``
    is the set's name when ``scales`` names the sets, else ``<area>x``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    methods = list(obtained)
    for key in sorted(requested, key=lambda k: (_scale(k, scales), str(k))):
        area = _scale(key, scales) ** 2
        name = str(key) if scales is not None else f"{area}x"
        title = f"{key}, {area}× area" if scales is not None else f"{area}× area"
        req = np.asarray(requested[key]) * 1e3
        panels = [m for m in methods if key in obtained[m]]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
        for ax, method in zip(axes[0], panels):
            obt = np.asarray(obtained[method][key]) * 1e3
            keep = np.isfinite(obt)
            lo = min(req.min(), obt[keep].min()) if keep.any() else req.min()
            hi = max(req.max(), obt[keep].max()) if keep.any() else req.max()
            h = ax.hist2d(req[keep], obt[keep], bins=40, range=[[lo, hi], [lo, hi]], cmap="viridis", cmin=1)
            ax.plot([lo, hi], [lo, hi], color="white", lw=0.8, ls="--")
            ax.set_xlabel("requested energy (meV/Å²)")
            ax.set_ylabel(f"obtained, {method} (meV/Å²)")
            ax.set_title(title)
            fig.colorbar(h[3], ax=ax, label="sheets")
        fig.tight_layout()
        paths[f"heatmap_{name}"] = folder / f"label_heatmap_{name}.png"
        fig.savefig(paths[f"heatmap_{name}"], dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        bins = np.histogram_bin_edges(req, bins=40)
        ax.hist(req, bins=bins, histtype="stepfilled", alpha=0.35, color="grey", label="requested")
        for method in panels:
            obt = np.asarray(obtained[method][key]) * 1e3
            ax.hist(obt[np.isfinite(obt)], bins=bins, histtype="step", lw=1.5, label=f"obtained ({method})")
        ax.set_xlabel("energy per area (meV/Å²)")
        ax.set_ylabel("sheets")
        ax.set_title(f"requested and obtained labels, {title}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths[f"histogram_{name}"] = folder / f"label_histogram_{name}.png"
        fig.savefig(paths[f"histogram_{name}"], dpi=110)
        plt.close(fig)
    return paths


# ---------------------------------------------------------------------- computing the obtained labels
def sheet_scales(sets: Mapping[str, StructureBatch], base_area: float) -> dict[str, int]:
    """The scale (side multiple) of every set of sheets: the square root of its sheets' area over ``base_area``
    (the training sheets'); ``ValueError`` naming the set when it is not a whole multiple."""
    scales = {}
    for name, batch in sets.items():
        if len(batch) == 0:
            raise ValueError(f"generated.{name}: the set has no sheets")
        ratio = np.sqrt(abs(np.linalg.det(batch.cells[0][:2, :2])) / base_area)
        if abs(ratio - round(ratio)) > 1e-3 or round(ratio) < 1:
            raise ValueError(
                f"generated.{name}: its sheets are {ratio**2:.3g} times the training sheets' area, "
                "not a square of a whole side multiple (1, 4, 9...)"
            )
        scales[name] = int(round(ratio))
    return scales


def obtained_labels(
    sets: Mapping[str, StructureBatch], surrogate=None, reference=None, *, surrogate_name: str = "ednn", progress=None
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Requested and obtained labels (eV/Å²) of every set of generated sheets.

    :param sets: by name, the generated sheets, with the requested label of each as ``info['label']`` (what
        RUGAN writes).
    :param surrogate: a loaded surrogate model (the EDNN, :class:`~aiida_physgen.ml.family.TrainedModel`); its
        energies give the ``surrogate_name`` labels. ``None``: not asked.
    :param reference: :class:`~aiida_physgen.graphene.reference_energy.ReferenceSettings`; the reference
        method's energies give labels under its method's name. ``None``: not asked.
    :param progress: ``f(message)`` told what was computed, set by set.
    :returns: ``(requested, obtained)``: ``requested[name]`` and ``obtained[method][name]``; a sheet a method
        could not evaluate is NaN (the table drops and counts it).
    """
    from ..ml import graphene
    from .surrogate import score_sheets

    if surrogate is None and reference is None:
        raise ValueError("methods: ask for the surrogate's labels, the reference method's, or both")
    requested: dict[str, np.ndarray] = {}
    obtained: dict[str, dict[str, np.ndarray]] = {}
    if surrogate is not None:
        obtained[surrogate_name] = {}
    if reference is not None:
        obtained[reference.method] = {}
    tell = progress or (lambda message: None)
    for name, batch in sets.items():
        if "label" not in batch.info:
            raise ValueError(f"generated.{name}: the sheets have no requested 'label' (generate them with rugan)")
        _, lattice = graphene.batch_to_sheets(batch, where=f"generated.{name}")
        area = lattice.area
        requested[name] = np.asarray(batch.info["label"], dtype=float)
        if surrogate is not None:
            energies, _, _ = score_sheets(surrogate, batch)
            obtained[surrogate_name][name] = energies / area
            tell(f"{name}: {surrogate_name} energies of {len(batch)} sheets")
        if reference is not None:
            import warnings

            with warnings.catch_warnings():  # the failures are NaN, counted in the table
                warnings.simplefilter("ignore", RuntimeWarning)
                obtained[reference.method][name] = reference.label(batch) / area
            tell(f"{name}: {reference.method} energies of {len(batch)} sheets")
    return requested, obtained
