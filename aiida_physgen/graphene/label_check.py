"""Does a conditional generator give what was asked? Requested against obtained labels.

RUGAN's check (Mills, Casert, Tamblyn 2020): generate sheets at labels drawn from the training set,
compute the label the sheets actually have, and compare the two distributions with a two-sample
Kolmogorov–Smirnov test (the paper: KS 0.02, p 0.19 at training size; 0.02, p 0.18 at 4× area).
The paper could only ask its EDNN surrogate; here the obtained label comes from the surrogate and
from the reference method itself, side by side.

Labels are energies per in-plane area (eV/Å²); tables print them in meV/Å².
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = ["compare_labels", "ks_rows", "format_ks_table", "plot_label_check", "PAPER_KS"]

#: the paper's figures (EDNN energies of 10,000 generated sheets), by area multiple
PAPER_KS = {1: (0.02, 0.19), 4: (0.02, 0.18)}


def compare_labels(requested: Sequence[float], obtained: Sequence[float]) -> dict:
    """KS statistic and p-value between the two distributions, and how far each sheet is from its request.

    Non-finite obtained values (a sheet a method could not evaluate) are dropped and counted.
    """
    requested = np.asarray(requested, dtype=float)
    obtained = np.asarray(obtained, dtype=float)
    if requested.shape != obtained.shape or requested.ndim != 1 or requested.size < 2:
        raise ValueError(f"labels: expected two equal 1-D arrays of at least 2 values, got {requested.shape} and "
                         f"{obtained.shape}")
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


def ks_rows(requested: Mapping[int, np.ndarray], obtained: Mapping[str, Mapping[int, np.ndarray]]) -> list[dict]:
    """One row per (area multiple, method): :func:`compare_labels` plus ``scale``, ``area_multiple``, ``method``."""
    rows = []
    for scale in sorted(requested):
        for method in obtained:
            if scale not in obtained[method]:
                continue
            row = {"scale": int(scale), "area_multiple": int(scale) ** 2, "method": method}
            row.update(compare_labels(requested[scale], obtained[method][scale]))
            paper = PAPER_KS.get(int(scale) ** 2)
            if paper is not None:
                row["paper_ks"], row["paper_p"] = paper
            rows.append(row)
    return rows


def format_ks_table(rows: Sequence[Mapping]) -> str:
    """The KS table as aligned text (what the work chain reports and ``aiida-physgen report`` prints)."""
    header = (f"{'area':>5} {'obtained by':<12} {'sheets':>7} {'KS':>6} {'p':>9} {'paper KS (p)':>13} "
              f"{'MAE':>7} {'bias':>7} {'r':>6}")
    lines = [header, " " * 51 + "meV/Å²  meV/Å²", "-" * len(header)]
    for row in rows:
        paper = f"{row['paper_ks']:.2f} ({row['paper_p']:.2f})" if "paper_ks" in row else "-"
        lines.append(
            f"{str(row['area_multiple']) + '×':>5} {row['method']:<12} {row['count']:>7d} {row['ks']:>6.3f} "
            f"{row['p_value']:>9.3g} {paper:>13} {row['mae']:>7.2f} {row['bias']:>7.2f} {row['pearson_r']:>6.3f}"
        )
    return "\n".join(lines)


def plot_label_check(requested: Mapping[int, np.ndarray], obtained: Mapping[str, Mapping[int, np.ndarray]],
                     folder: str | Path) -> dict[str, Path]:
    """For every area multiple: a heat map (requested vs obtained, one panel per method) and histograms.

    Returns ``{'heatmap_<area>x': path, 'histogram_<area>x': path}`` of PNG files written to ``folder``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    methods = list(obtained)
    for scale in sorted(requested):
        area = int(scale) ** 2
        req = np.asarray(requested[scale]) * 1e3
        panels = [m for m in methods if scale in obtained[m]]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
        for ax, method in zip(axes[0], panels):
            obt = np.asarray(obtained[method][scale]) * 1e3
            keep = np.isfinite(obt)
            lo = min(req.min(), obt[keep].min())
            hi = max(req.max(), obt[keep].max())
            h = ax.hist2d(req[keep], obt[keep], bins=40, range=[[lo, hi], [lo, hi]], cmap="viridis", cmin=1)
            ax.plot([lo, hi], [lo, hi], color="white", lw=0.8, ls="--")
            ax.set_xlabel("requested energy (meV/Å²)")
            ax.set_ylabel(f"obtained, {method} (meV/Å²)")
            ax.set_title(f"{area}× area")
            fig.colorbar(h[3], ax=ax, label="sheets")
        fig.tight_layout()
        paths[f"heatmap_{area}x"] = folder / f"label_heatmap_{area}x.png"
        fig.savefig(paths[f"heatmap_{area}x"], dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        bins = np.histogram_bin_edges(req, bins=40)
        ax.hist(req, bins=bins, histtype="stepfilled", alpha=0.35, color="grey", label="requested")
        for method in panels:
            obt = np.asarray(obtained[method][scale]) * 1e3
            ax.hist(obt[np.isfinite(obt)], bins=bins, histtype="step", lw=1.5, label=f"obtained ({method})")
        ax.set_xlabel("energy per area (meV/Å²)")
        ax.set_ylabel("sheets")
        ax.set_title(f"requested and obtained labels, {area}× area")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths[f"histogram_{area}x"] = folder / f"label_histogram_{area}x.png"
        fig.savefig(paths[f"histogram_{area}x"], dpi=110)
        plt.close(fig)
    return paths
